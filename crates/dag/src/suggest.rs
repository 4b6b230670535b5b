//! "Did you mean ...?" suggestions by edit distance.

/// The candidate closest to `word` when it is close enough to be a plausible typo
/// (distance at most `max(2, len/3)`, or up to `len` when they share a 4-character prefix;
/// ties broken by the candidates' order).
pub(crate) fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let len = word.chars().count();
    let word_lc = word.to_lowercase();
    candidates
        .into_iter()
        .filter(|c| *c != word)
        .map(|c| {
            let c_lc = c.to_lowercase();
            let d = distance(&word_lc, &c_lc);
            // A long shared prefix (`retry` / `retries`) makes a larger distance plausible.
            let shared = word_lc
                .chars()
                .zip(c_lc.chars())
                .take_while(|(a, b)| a == b)
                .count();
            let limit = if shared >= 4 {
                len.max(2)
            } else {
                (len / 3).max(2)
            };
            (d, limit, c)
        })
        .filter(|(d, limit, _)| d <= limit)
        .map(|(d, _, c)| (d, c))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// ` (did you mean `x`?)` or nothing.
pub fn did_you_mean<'a, I>(word: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(word, candidates)
        .map(|c| format!(" (did you mean `{c}`?)"))
        .unwrap_or_default()
}

/// `` `a`, `b`, `c` ``.
pub(crate) fn backticked<'a, I>(items: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    items
        .into_iter()
        .map(|s| format!("`{s}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        let ops = ["forecast.chronos", "features.returns", "ingest.ohlcv"];
        assert_eq!(closest("forecast.chronoz", ops), Some("forecast.chronos"));
        assert_eq!(closest("retry", ["retries", "timeout"]), Some("retries"));
        assert_eq!(closest("totally.different", ops), None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
