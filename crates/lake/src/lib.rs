//! The krxflow lakehouse: Delta tables on object_store.
//!
//! * One folder per table under the lake root (`file://` by default, `s3://` with the `s3`
//!   feature); engine tables live under `_krxflow/`.
//! * Every table is declared once in the [`Catalog`]; reads return batches in the declared
//!   schema whatever the physical encoding (Delta stores timestamps in UTC microseconds, and
//!   DataFusion may read strings as views).
//! * Every write is one Delta commit: `append`, `replace_partition` (by the partition column)
//!   or `merge` (upsert on keys). A failed write leaves the table at its previous version.
//!
//! One file per operation on a [`Lake`]: `table` (open, locations, snapshot cache), `read`,
//! `write` (with `write/merge` and `write/append`), `compact`, `vacuum`, `rollback`, `log_cleanup`, `control`, `lease`,
//! `artifacts` and `probe` (a remote lake's first listing); `files` and `dates` hold what several of them share, `scan` the direct Parquet
//! scan that reads and merge diffs use for plain tables (DataFusion serves the rest), `cache`
//! the decoded files it keeps.

pub mod catalog;
pub mod error;
pub mod lease;
pub mod schema;
pub mod sql;

mod artifacts;
mod cache;
mod cached_table;
mod commit;
mod compact;
mod control;
mod count;
mod dates;
mod files;
mod log_cleanup;
mod probe;
mod read;
mod rollback;
mod scan;
pub mod store;
mod table;
#[cfg(test)]
mod testutil;
mod vacuum;
mod write;

pub use artifacts::LakeArtifacts;
pub use cache::DEFAULT_CACHE_BYTES;
pub use catalog::Catalog;
pub use compact::{COMPACT_AT_FILES, Compaction};
pub use count::RowCount;
pub use error::{LakeError, LakeResult};
pub use files::writer_properties;
pub use lease::{Claim, Lease, LeaseInfo};
pub use read::{ReadOptions, TableRead};
pub use rollback::RolledBack;
pub use table::{ENGINE_PREFIX, Lake, version_of};
pub use vacuum::{DEFAULT_RETAIN, Vacuumed};
pub use write::WriteOutcome;
