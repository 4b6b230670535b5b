//! The parser's state: the diagnostics sink and the environment. Its methods live in
//! `parse.rs` (the document) and `fields.rs` (typed fields).

use crate::context::EnvLookup;
use crate::sink::Sink;

/// Reads the YAML tree into specs, reporting into the sink.
pub(crate) struct Parser<'s, 'a> {
    pub sink: &'s mut Sink<'a>,
    pub env: &'s dyn EnvLookup,
}
