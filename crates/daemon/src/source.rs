//! What the daemon asks of the program embedding it: validating DAG files, naming calendars.

use std::path::Path;
use std::sync::Arc;

use krxflow_core::Calendar;
use krxflow_dag::{Diagnostic, ValidatedDag};
use krxflow_lake::Lake;
use krxflow_schedule::ScheduleError;

/// Validates one DAG file.
pub type Validate = Box<dyn Fn(&Path) -> Result<ValidatedDag, Vec<Diagnostic>>>;

/// The operators and tables belong to the binary (the pipelines crate), not to the daemon.
pub trait DagSource {
    /// A validator for one (re)load of the DAG folder: the registered operators and the tables
    /// the lake knows now.
    fn validator(&self, lake: &Lake) -> impl Future<Output = Validate>;
    /// The trading calendar called `name` (`krx` is also the executor's default).
    fn calendar(&self, name: &str) -> Result<Arc<dyn Calendar>, ScheduleError>;
}
