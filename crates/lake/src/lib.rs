//! The krxflow lakehouse: Delta tables on object_store.
//!
//! * One folder per table under the lake root (`file://` by default, `s3://` with the `s3`
//!   feature); engine tables live under `_krxflow/`.
//! * Every table is declared once in the [`Catalog`]; reads return batches in the declared
//!   schema whatever the physical encoding (Delta stores timestamps in UTC microseconds, and
//!   DataFusion may read strings as views).
//! * Every write is one Delta commit: `append`, `replace_partition` (by the partition column)
//!   or `merge` (upsert on keys). A failed write leaves the table at its previous version.

pub mod catalog;
pub mod error;
pub mod lake;
pub mod lease;
pub mod schema;
pub mod sql;

pub use catalog::Catalog;
pub use error::{LakeError, LakeResult};
pub use lake::{COMPACT_AT_FILES, Compaction, Lake, ReadOptions, TableRead, WriteOutcome};
pub use lease::{Claim, LakeArtifacts, Lease, LeaseInfo};
