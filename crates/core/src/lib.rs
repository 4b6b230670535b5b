//! The krxflow operator contract.
//!
//! The engine knows nothing about stocks: it runs [`Operator`]s that read Arrow record batches
//! from lake tables through typed [`InputPort`]s and return record batches for typed
//! [`OutputPort`]s. Everything domain-specific lives in `pipelines/`.

pub mod artifacts;
pub mod calendar;
pub mod error;
pub mod operator;
pub mod params;
pub mod registry;
pub mod skip;
pub mod table;

pub use artifacts::{ArtifactStore, valid_artifact_path};
pub use calendar::{Calendar, WeekdayCalendar};
pub use error::{ConfigError, OpError, OpResult};
pub use operator::{
    ConfiguredOp, InputBatches, InputPort, Observation, Operator, OutputBatches, OutputPort,
    ReadScope, TaskContext, TaskCounters, TaskObservations,
};
pub use params::{ParamSpec, params_hash, parse_params};
pub use registry::OperatorRegistry;
pub use table::{TableDef, WriteMode};

/// The logical date of a partition (a trading day).
pub type PartitionDate = chrono::NaiveDate;

/// Version string recorded in lineage.
pub const KRXFLOW_VERSION: &str = env!("CARGO_PKG_VERSION");
