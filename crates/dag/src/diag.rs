//! Diagnostics: one problem of a DAG file, with its position and a stable code.

use std::fmt;
use std::path::PathBuf;

/// A 1-based position in a YAML source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
}

impl Pos {
    /// The first character of a file.
    pub const START: Pos = Pos { line: 1, col: 1 };

    /// A position from 1-based line and column.
    pub fn new(line: usize, col: usize) -> Self {
        Self {
            line: line.max(1),
            col: col.max(1),
        }
    }
}

/// The class of a [`Diagnostic`]. Displays as kebab-case (`unknown-op`, `no-producer`, ...),
/// which is stable and meant for machines (`krxflow validate --json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DiagCode {
    /// The file is not valid YAML.
    Syntax,
    /// `op:` names no registered operator.
    UnknownOp,
    /// `with:` has a field the operator does not know.
    UnknownParam,
    /// A `with:` field has the wrong type or value.
    InvalidParam,
    /// A required `with:` field is absent.
    MissingParam,
    /// Tasks depend on each other in a circle.
    Cycle,
    /// An input table is written by no task of the DAG and does not exist.
    NoProducer,
    /// A consumer needs a column the producer (or the existing table) lacks or types differently.
    SchemaMismatch,
    /// Two tasks have the same name.
    DuplicateTask,
    /// `schedule.cron` does not parse.
    BadCron,
    /// `schedule.timezone` is not an IANA time zone.
    BadTimezone,
    /// `${NAME}` names an environment variable that is not set (and has no default).
    UnsetEnv,
    /// `inputs:`/`outputs:` names a port the operator does not have.
    UnknownPort,
    /// A required input port of the operator is not bound in `inputs:`.
    UnboundPort,
    /// `after:` names a task that does not exist.
    UnknownTask,
    /// Two tasks (or two ports of one task) write the same table.
    DuplicateWriter,
    /// An `inputs:`/`outputs:` table name that could leave the lake (`..`, an absolute path, a
    /// URL) or is not a plain name.
    BadTableName,
    /// The DAG file cannot be read.
    Io,
    /// Any other structural problem: unknown or mistyped field of the DAG itself, duplicate key,
    /// bad `${params.x}` reference, bad duration.
    InvalidField,
}

impl DiagCode {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::UnknownOp => "unknown-op",
            Self::UnknownParam => "unknown-param",
            Self::InvalidParam => "invalid-param",
            Self::MissingParam => "missing-param",
            Self::Cycle => "cycle",
            Self::NoProducer => "no-producer",
            Self::SchemaMismatch => "schema-mismatch",
            Self::DuplicateTask => "duplicate-task",
            Self::BadCron => "bad-cron",
            Self::BadTimezone => "bad-timezone",
            Self::UnsetEnv => "unset-env",
            Self::UnknownPort => "unknown-port",
            Self::UnboundPort => "unbound-port",
            Self::UnknownTask => "unknown-task",
            Self::DuplicateWriter => "duplicate-writer",
            Self::BadTableName => "bad-table-name",
            Self::Io => "io",
            Self::InvalidField => "invalid-field",
        }
    }
}

impl fmt::Display for DiagCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem found while loading a DAG file.
///
/// Displays as `{file}:{line}:{col}: error[{code}]: {message}`, e.g.
/// `dags/bad.yaml:12:5: error[unknown-param]: task `features`: param `windw`: unknown field ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{}:{}: error[{}]: {}", .file.display(), .line, .col, .code, .message)]
pub struct Diagnostic {
    /// The DAG file.
    pub file: PathBuf,
    /// 1-based line of the offending YAML node.
    pub line: usize,
    /// 1-based column of the offending YAML node.
    pub col: usize,
    /// The class of problem.
    pub code: DiagCode,
    /// What is wrong, naming the task / field / table / column involved.
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic at `pos` of `file`.
    pub fn new(
        file: impl Into<PathBuf>,
        pos: Pos,
        code: DiagCode,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.into(),
            line: pos.line,
            col: pos.col,
            code,
            message: message.into(),
        }
    }

    /// The position as a [`Pos`].
    pub fn pos(&self) -> Pos {
        Pos::new(self.line, self.col)
    }
}

/// Renders diagnostics one per line, as `krxflow validate` prints them.
pub fn render(diags: &[Diagnostic]) -> String {
    let mut out = String::new();
    for d in diags {
        out.push_str(&d.to_string());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_file_line_col_code_message() {
        let d = Diagnostic::new(
            "dags/bad.yaml",
            Pos::new(12, 5),
            DiagCode::UnknownParam,
            "task `features`: param `windw`: unknown field `windw`",
        );
        assert_eq!(
            d.to_string(),
            "dags/bad.yaml:12:5: error[unknown-param]: task `features`: param `windw`: unknown field `windw`"
        );
    }

    #[test]
    fn codes_display_as_kebab_case() {
        assert_eq!(DiagCode::NoProducer.to_string(), "no-producer");
        assert_eq!(DiagCode::BadTimezone.to_string(), "bad-timezone");
        assert_eq!(DiagCode::Syntax.to_string(), "syntax");
    }
}
