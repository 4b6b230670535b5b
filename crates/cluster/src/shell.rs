//! Quoting for the job's entrypoint, which Ray runs through a shell.

/// `s` as one shell word: single-quoted, with `'` written as `'\''`.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn a_word_with_quotes_and_spaces_stays_one_word() {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf '%s|' {}", quote("a b'c $HOME")))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b'c $HOME|");
    }
}
