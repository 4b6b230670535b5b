//! placeholder until the calendar lands
