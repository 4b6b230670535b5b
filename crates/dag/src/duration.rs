//! Human durations: `500ms`, `10s`, `5m`, `1h`, `2d`, compounds like `1h30m`; a bare number is
//! seconds.

use std::time::Duration;

/// Parses a duration such as `500ms`, `10s`, `5m`, `1h`, `2d` or `1h30m`.
///
/// Units: `ms`, `s`, `m`, `h`, `d`. A bare number (`30`, `1.5`) is seconds. Decimals are allowed
/// (`1.5s`). The error is a sentence naming the input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    let bad =
        |why: &str| format!("invalid duration `{s}`: {why} (examples: 500ms, 10s, 5m, 1h, 2d)");
    if text.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(secs) = text.parse::<f64>() {
        return secs_to_duration(secs).ok_or_else(|| bad("must be a finite, non-negative number"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err(bad("expected a number"));
        }
        let (num, after) = rest.split_at(num_len);
        let value: f64 = num.parse().map_err(|_| bad("expected a number"))?;
        let unit_len = after
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let factor = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "" => return Err(bad("missing unit after a number")),
            other => return Err(bad(&format!("unknown unit `{other}`"))),
        };
        let part = secs_to_duration(value * factor).ok_or_else(|| bad("out of range"))?;
        total = total.checked_add(part).ok_or_else(|| bad("out of range"))?;
        rest = after.trim_start();
    }
    Ok(total)
}

/// Seconds as a `Duration`; `None` for negative, NaN, infinite or huge values.
pub(crate) fn secs_to_duration(secs: f64) -> Option<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Duration::try_from_secs_f64(secs).ok()
    } else {
        None
    }
}

/// Formats a duration compactly (`1h30m`, `10s`, `500ms`), the inverse of [`parse_duration`].
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, size) in [("d", 86_400u128), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
    }

    #[test]
    fn bare_number_is_seconds() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn compound_and_decimal_durations() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration(" 2m 5s "), Ok(Duration::from_secs(125)));
    }

    #[test]
    fn rejects_bad_input_naming_it() {
        for bad in ["", "10x", "s", "-5s", "ten seconds", "5 m m", "1..2s"] {
            let err = parse_duration(bad).unwrap_err();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["500ms", "10s", "5m", "1h30m", "2d"] {
            let d = parse_duration(s).unwrap();
            assert_eq!(format_duration(d), s);
            assert_eq!(parse_duration(&format_duration(d)), Ok(d));
        }
    }
}
