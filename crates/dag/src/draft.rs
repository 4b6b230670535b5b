//! A task as parsed, before validation and planning.

use crate::spec::TaskSpec;

/// A task as parsed, with flags telling which parts are usable for further checks (a part
/// that already produced a diagnostic is not checked again, to avoid follow-on noise).
#[derive(Debug, Clone)]
pub(crate) struct TaskDraft {
    pub spec: TaskSpec,
    /// `op:` was a string.
    pub op_ok: bool,
    /// `with:` parsed and substituted without error (so the operator can configure it).
    pub with_ok: bool,
    /// `when:` held (or was absent): a task whose `when` is false is left out of the DAG.
    pub enabled: bool,
}
