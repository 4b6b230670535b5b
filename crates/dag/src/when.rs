//! `when:` on a task: after substitution, `true`/`false` or a comparison `A == B` / `A != B`
//! of two texts. A task whose `when` is false is left out of the DAG (with its `after:`
//! mentions), so one DAG file can serve several set-ups chosen by `params:` (e.g. the
//! synthetic universe or the real tickers).

use serde_json::Value;

/// Whether a substituted `when:` value holds; `Err` says what was wrong with it.
pub(crate) fn holds(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => {
            let t = s.trim();
            if t.eq_ignore_ascii_case("true") {
                return Ok(true);
            }
            if t.eq_ignore_ascii_case("false") {
                return Ok(false);
            }
            for (op, want) in [("!=", false), ("==", true)] {
                if let Some((a, b)) = t.split_once(op) {
                    return Ok((a.trim() == b.trim()) == want);
                }
            }
            Err(format!(
                "must be true, false, `A == B` or `A != B` after substitution, got `{s}`"
            ))
        }
        other => Err(format!(
            "must be true, false, `A == B` or `A != B`, got {other}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_and_comparisons_decide_and_anything_else_is_an_error() {
        assert_eq!(holds(&json!(true)), Ok(true));
        assert_eq!(holds(&json!("False")), Ok(false));
        assert_eq!(holds(&json!("synthetic == synthetic")), Ok(true));
        assert_eq!(holds(&json!("krx30 == synthetic")), Ok(false));
        assert_eq!(holds(&json!(" krx30 != synthetic ")), Ok(true));
        assert!(holds(&json!("maybe")).unwrap_err().contains("`maybe`"));
        assert!(holds(&json!(3)).is_err());
    }
}
