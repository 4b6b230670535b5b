//! Text of a source file in whatever encoding Korean exports use: UTF-8 (with or without a
//! BOM), UTF-16 LE/BE with a BOM (Excel's "Unicode text"), or CP949/EUC-KR (most broker and
//! HTS exports). Anything else is an error naming what was tried, so the caller can quarantine
//! the file and go on with the others.

use std::borrow::Cow;

use encoding_rs::{EUC_KR, Encoding, UTF_8};

/// The decoded text and the encoding it was read as.
pub fn decode_text(bytes: &[u8]) -> Result<(Cow<'_, str>, &'static str), String> {
    if let Some((enc, bom)) = Encoding::for_bom(bytes) {
        let (text, had_errors) = enc.decode_without_bom_handling(&bytes[bom..]);
        if had_errors {
            return Err(format!(
                "malformed {} after its byte-order mark",
                enc.name()
            ));
        }
        return Ok((text, enc.name()));
    }
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok((Cow::Borrowed(text), UTF_8.name()));
    }
    // EUC-KR in encoding_rs is the WHATWG one: Windows code page 949 (CP949, UHC).
    let (text, had_errors) = EUC_KR.decode_without_bom_handling(bytes);
    if had_errors || text.contains('\0') {
        return Err(
            "not text: neither UTF-8, UTF-16 with a byte-order mark nor CP949/EUC-KR".into(),
        );
    }
    Ok((text, "CP949"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str =
        "Date,Open,High,Low,Close,Volume,종목\n2024-12-13,100,110,90,105,1000,삼성전자\n";

    #[test]
    fn utf8_with_and_without_bom_utf16_and_cp949_all_decode_to_the_same_text() {
        let mut bom8 = vec![0xEF, 0xBB, 0xBF];
        bom8.extend_from_slice(CSV.as_bytes());
        let le = crate::testutil::utf16le_with_bom(CSV);
        let mut be = vec![0xFE, 0xFF];
        be.extend(CSV.encode_utf16().flat_map(u16::to_be_bytes));
        let (cp949, _, lossy) = EUC_KR.encode(CSV);
        assert!(!lossy);
        for (bytes, enc) in [
            (CSV.as_bytes().to_vec(), "UTF-8"),
            (bom8, "UTF-8"),
            (le, "UTF-16LE"),
            (be, "UTF-16BE"),
            (cp949.into_owned(), "CP949"),
        ] {
            let (text, got) = decode_text(&bytes).unwrap();
            assert_eq!((text.as_ref(), got), (CSV, enc));
        }
    }

    #[test]
    fn random_bytes_are_an_error_naming_what_was_tried() {
        let noise = crate::testutil::noise(4096);
        let e = decode_text(&noise).unwrap_err();
        assert!(e.contains("UTF-8") && e.contains("CP949"), "{e}");
    }
}
