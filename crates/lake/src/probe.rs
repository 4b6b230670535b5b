//! Probing a remote lake before any work: one listing under the lake's prefix, so a missing
//! bucket, refused keys or an endpoint that does not answer fail the command at once with what
//! to fix, instead of surfacing from deep inside the first Delta log read (and its retries).

use std::error::Error as _;

use crate::error::{LakeError, LakeResult};
use crate::table::Lake;

impl Lake {
    /// Lists the lake's prefix once on a remote store (`s3://`); local lakes are not probed
    /// (opening one creates its folder).
    pub async fn probe(&self) -> LakeResult<()> {
        if matches!(self.root().scheme(), "file" | "memory") {
            return Ok(());
        }
        let (store, prefix) = self.store();
        match store.list_with_delimiter(Some(&prefix)).await {
            Ok(_) => Ok(()),
            Err(source) => Err(LakeError::Unreachable {
                location: self.root().to_string(),
                why: explain(self.root().host_str().unwrap_or_default(), &source),
                source: Box::new(source),
            }),
        }
    }
}

/// What a failed listing means for the user, from the store's error and its causes (the S3
/// client reports a listing's failure as a generic error whose text carries S3's error code).
fn explain(bucket: &str, e: &object_store::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    if text.contains("NoSuchBucket") {
        format!("the bucket `{bucket}` does not exist: create it, or check AWS_ENDPOINT_URL")
    } else if [
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "AccessDenied",
    ]
    .iter()
    .any(|code| text.contains(code))
        || matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        )
    {
        format!(
            "access to `{bucket}` was refused: check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and the keys' permissions"
        )
    } else {
        let first = text.lines().next().unwrap_or_default();
        format!("the store did not answer a listing: {first}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generic(msg: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: msg.into(),
        }
    }

    #[test]
    fn a_missing_bucket_is_named_with_what_to_do() {
        let e = generic(
            "Error performing list request: 404 Not Found: <Error><Code>NoSuchBucket</Code></Error>",
        );
        assert_eq!(
            explain("lake-bucket", &e),
            "the bucket `lake-bucket` does not exist: create it, or check AWS_ENDPOINT_URL"
        );
    }

    #[test]
    fn refused_keys_point_at_the_credentials() {
        for code in [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
        ] {
            let e = generic(&format!("403 Forbidden: <Code>{code}</Code>"));
            assert!(explain("b", &e).contains("AWS_ACCESS_KEY_ID"), "{code}");
        }
        let e = object_store::Error::PermissionDenied {
            path: "lake".into(),
            source: "no".into(),
        };
        assert!(explain("b", &e).contains("refused"));
    }

    #[test]
    fn anything_else_keeps_the_first_line_of_the_cause() {
        let e = generic("connection refused\nmore detail");
        let why = explain("b", &e);
        assert!(why.contains("connection refused"), "{why}");
        assert!(!why.contains("more detail"), "{why}");
    }

    #[tokio::test]
    async fn a_local_lake_needs_no_probe() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(dir.path().to_str().unwrap(), crate::Catalog::new()).unwrap();
        lake.probe().await.unwrap();
    }
}
