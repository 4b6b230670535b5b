//! Typed `with:` parameters: deserialisation with field paths, documentation, hashing.

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::ConfigError;

/// Documentation of one parameter, shown by `krxflow ops`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ParamSpec {
    pub name: &'static str,
    /// Human type name, e.g. `u32`, `string`, `list<u32>`.
    pub ty: &'static str,
    /// `None` means required.
    pub default: Option<&'static str>,
    pub doc: &'static str,
}

impl ParamSpec {
    pub const fn required(name: &'static str, ty: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            ty,
            default: None,
            doc,
        }
    }
    pub const fn optional(
        name: &'static str,
        ty: &'static str,
        default: &'static str,
        doc: &'static str,
    ) -> Self {
        Self {
            name,
            ty,
            default: Some(default),
            doc,
        }
    }
}

/// Deserialise an operator's `with:` block into its typed parameter struct.
///
/// Use `#[serde(deny_unknown_fields)]` on the struct: errors then name the unknown or mistyped
/// field (by its path inside `with:`) and the expected type.
pub fn parse_params<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ConfigError> {
    let value = if value.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        value.clone()
    };
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { String::new() } else { path };
        let inner = e.into_inner().to_string();
        // serde_json appends " at line 0 column 0" for values without a position.
        let message = inner
            .strip_suffix(" at line 0 column 0")
            .unwrap_or(&inner)
            .to_string();
        // For unknown/missing fields serde reports the name only in the message.
        let field = if field.is_empty() {
            extract_backticked(&message).unwrap_or_default()
        } else {
            field
        };
        ConfigError::new(field, message)
    })
}

fn extract_backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// Stable hash of a parameter block: SHA-256 of its canonical JSON (object keys sorted),
/// first 16 hex digits. Part of the rerun fingerprint and of lineage.
pub fn params_hash(value: &serde_json::Value) -> String {
    let canonical = serde_json::to_string(value).unwrap_or_default();
    let digest = Sha256::digest(canonical.as_bytes());
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        #[allow(dead_code)]
        tickers: u32,
        #[serde(default)]
        #[allow(dead_code)]
        seed: u64,
    }

    #[test]
    fn mistyped_param_names_field_and_expected_type() {
        let err = parse_params::<P>(&serde_json::json!({"tickers": "many"})).unwrap_err();
        assert_eq!(err.field, "tickers");
        assert!(err.message.contains("u32"), "{}", err.message);
    }

    #[test]
    fn unknown_param_is_named() {
        let err = parse_params::<P>(&serde_json::json!({"tickers": 3, "sed": 1})).unwrap_err();
        assert_eq!(err.field, "sed");
        assert!(err.message.contains("unknown field"), "{}", err.message);
    }

    #[test]
    fn missing_param_is_named() {
        let err = parse_params::<P>(&serde_json::json!({})).unwrap_err();
        assert_eq!(err.field, "tickers");
    }

    #[test]
    fn params_hash_ignores_key_order() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":[1,2],"a":1}"#).unwrap();
        assert_eq!(params_hash(&a), params_hash(&b));
        assert_ne!(params_hash(&a), params_hash(&serde_json::json!({"a": 2})));
    }
}
