//! Per-DAG scheduling state (last tick, pending partitions) and its JSON form kept across restarts.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::{Value, json};

/// Per-DAG scheduling state; `last` and `pending` survive restarts.
pub(crate) struct DagState {
    /// The newest tick handled.
    pub(crate) last: DateTime<Utc>,
    /// Partitions queued or running and not yet finished.
    pub(crate) pending: BTreeSet<NaiveDate>,
    pub(crate) queue: VecDeque<NaiveDate>,
    pub(crate) active: usize,
    /// The queue's head waiting for other DAGs (`schedule.wait_for`); not kept across restarts.
    pub(crate) waiting: Option<crate::wait::Waiting>,
}

impl DagState {
    pub(crate) fn new(last: DateTime<Utc>) -> Self {
        Self {
            last,
            pending: BTreeSet::new(),
            queue: VecDeque::new(),
            active: 0,
            waiting: None,
        }
    }

    pub(crate) fn enqueue(&mut self, ds: NaiveDate) -> bool {
        if self.pending.insert(ds) {
            self.queue.push_back(ds);
            true
        } else {
            false
        }
    }
}

pub(crate) fn state_json(states: &BTreeMap<String, DagState>) -> Value {
    let m: serde_json::Map<String, Value> = states
        .iter()
        .map(|(name, s)| {
            (
                name.clone(),
                json!({
                    "last_tick": s.last.to_rfc3339(),
                    "pending": s.pending.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
                }),
            )
        })
        .collect();
    Value::Object(m)
}

pub(crate) fn states_from_json(v: &Value) -> BTreeMap<String, DagState> {
    let mut out = BTreeMap::new();
    let Some(m) = v.as_object() else {
        return out;
    };
    for (name, s) in m {
        let Some(last) = s
            .get("last_tick")
            .and_then(Value::as_str)
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        else {
            continue;
        };
        let mut st = DagState::new(last.with_timezone(&Utc));
        for d in s
            .get("pending")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(ds) = d
                .as_str()
                .and_then(|t| NaiveDate::parse_from_str(t, "%Y-%m-%d").ok())
            {
                st.enqueue(ds);
            }
        }
        out.insert(name.clone(), st);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_state_round_trips_with_pending_partitions_requeued() {
        let mut states = BTreeMap::new();
        let mut s = DagState::new("2024-12-16T07:00:00Z".parse().unwrap());
        let d = NaiveDate::from_ymd_opt(2024, 12, 16).unwrap();
        assert!(s.enqueue(d));
        assert!(!s.enqueue(d), "a partition is queued once");
        states.insert("daily".to_string(), s);
        let back = states_from_json(&state_json(&states));
        let s = &back["daily"];
        assert_eq!(s.last.to_rfc3339(), "2024-12-16T07:00:00+00:00");
        assert_eq!(s.queue.iter().copied().collect::<Vec<_>>(), [d]);
    }

    #[test]
    fn a_damaged_state_object_is_ignored_not_fatal() {
        assert!(states_from_json(&json!("garbage")).is_empty());
        let v = json!({"daily": {"last_tick": "not a time"}, "x": {"last_tick": "2024-12-16T07:00:00Z", "pending": ["bad", "2024-12-16"]}});
        let s = states_from_json(&v);
        assert_eq!(s.len(), 1);
        assert_eq!(s["x"].queue.len(), 1);
    }
}
