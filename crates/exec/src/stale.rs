//! Staleness: whether a task's earlier success for a day still stands.
//!
//! A task whose rerun fingerprint already succeeded for `ds` is `up_to_date` unless a table
//! it reads has changed since, in the dates it reads, by another task: another DAG's (the
//! daily batch re-run after the matcher scored its predictions), or the same DAG's for
//! another day; or unless the same task for `ds` has since written its outputs with other
//! params or another operator version (a success with these params, then one with others).
//! Same-run upstream changes are the runner's business (an upstream task that ran makes its
//! downstream run).
//!
//! Each committed output records in its lineage row the first and last date of the rows it
//! changed ([`crate::records::changed_by`]: a merge's unchanged rows are no change, a
//! compaction is no write); each success records the version of every table it read. The
//! success is stale when a change with a later version, by a task other than itself for the
//! same day, falls in the window its port reads: from the operator's first date
//! (`read_from`, asked without watermarks: the widest, as a full refresh reads) to `ds` (the
//! day before for a port used before `ds` only; no end for an `all_rows` port). Lineage rows
//! written before this was kept carry no dates, and change nothing.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use krxflow_core::{Calendar, ReadScope};
use krxflow_dag::{PlannedTask, ValidatedDag};

use crate::attempt::fingerprint;
#[cfg(test)]
use crate::records::changed_by;
use crate::records::{InputRead, LineageRecord, all_dates};

/// A table a range batch committed: its version, the dates it changed (see
/// [`crate::records::changed_by`]) and the run day the commit is recorded on (the last it
/// wrote).
pub(crate) type Committed = (i64, Option<(NaiveDate, NaiveDate)>, NaiveDate);

/// A range batch's day reads, with each table the batch committed read at its commit: the
/// batch gave the day what that commit holds as of the day (the batch runs only when that
/// is so), and the commit's change must not make the day's own success stale.
pub(crate) fn as_committed(
    reads: &[InputRead],
    committed: &BTreeMap<String, Committed>,
) -> Vec<InputRead> {
    reads
        .iter()
        .map(|r| match committed.get(&r.table) {
            Some(&(version, _, _)) => InputRead {
                version: r.version.max(version),
                ..r.clone()
            },
            None => r.clone(),
        })
        .collect()
}

/// One write that changed rows of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    version: i64,
    dag: String,
    task: String,
    ds: NaiveDate,
    dates: (NaiveDate, NaiveDate),
}

/// Changes by table.
#[derive(Debug, Default)]
pub(crate) struct Changes(HashMap<String, Vec<Change>>);

impl Changes {
    /// Adds the changes `records` describe (rows that changed nothing are left out).
    pub(crate) fn add<'a>(&mut self, records: impl IntoIterator<Item = &'a LineageRecord>) {
        for r in records {
            if let Some(dates) = r.changed {
                self.0
                    .entry(r.output_table.clone())
                    .or_default()
                    .push(Change {
                        version: r.output_version,
                        dag: r.dag.clone(),
                        task: r.task.clone(),
                        ds: r.ds,
                        dates,
                    });
            }
        }
    }

    /// The first change to an input of `task` for `ds` in the dates it reads, by a task other
    /// than itself for `ds`, newer than what it read (`read`: the version of a table it read;
    /// -1 when it did not read the table), as a reason to show.
    pub(crate) fn overtaking(
        &self,
        dag: &str,
        task: &PlannedTask,
        ds: NaiveDate,
        calendar: &dyn Calendar,
        read: impl Fn(&str) -> i64,
    ) -> Option<String> {
        for (binding, table) in &task.spec.inputs {
            let Some(changes) = self.0.get(table) else {
                continue;
            };
            let Some((from, to)) = window(task, binding, ds, calendar) else {
                continue;
            };
            let seen = read(table);
            let hit = changes.iter().find(|c| {
                c.version > seen
                    && (c.dag.as_str(), c.task.as_str(), c.ds) != (dag, task.spec.name.as_str(), ds)
                    && overlaps(c.dates, from, to)
            });
            if let Some(c) = hit {
                let dates = if c.dates == all_dates() {
                    "its rows".to_string()
                } else if c.dates.0 == c.dates.1 {
                    format!("rows of {}", c.dates.0)
                } else {
                    format!("rows of {}..{}", c.dates.0, c.dates.1)
                };
                return Some(format!(
                    "`{table}` changed since its success ({dates} written by {}.{} for {})",
                    c.dag, c.task, c.ds
                ));
            }
        }
        None
    }
}

/// Whether `dates` (first, last) meet the window `from..=to` (`None`: open on that side).
fn overlaps(dates: (NaiveDate, NaiveDate), from: Option<NaiveDate>, to: Option<NaiveDate>) -> bool {
    from.is_none_or(|f| dates.1 >= f) && to.is_none_or(|t| dates.0 <= t)
}

/// The dates input `binding` of `task` reads for `ds`, both ends included (`None`: open).
/// `None` for a binding the operator has no port for.
fn window(
    task: &PlannedTask,
    binding: &str,
    ds: NaiveDate,
    calendar: &dyn Calendar,
) -> Option<(Option<NaiveDate>, Option<NaiveDate>)> {
    let ports = task.op.inputs();
    let port = ports.iter().find(|p| p.matches(binding))?;
    let from = task
        .configured
        .read_from(binding, ds, &BTreeMap::new(), calendar);
    let to = match port.scope {
        ReadScope::AllRows => None,
        ReadScope::AsOfPartition if port.before_ds => Some(ds.pred_opt().unwrap_or(ds)),
        ReadScope::AsOfPartition => Some(ds),
    };
    Some((from, to))
}

/// The tasks of `dag` among `done` (fingerprints that succeeded for `ds`) whose success no
/// longer stands (`stale`: why not), by name.
pub(crate) fn overtaken(
    done: &HashSet<String>,
    dag: &ValidatedDag,
    ds: NaiveDate,
    stale: impl Fn(&PlannedTask) -> Option<String>,
) -> BTreeMap<String, String> {
    if done.is_empty() {
        return BTreeMap::new();
    }
    dag.tasks
        .iter()
        .filter(|t| done.contains(&fingerprint(&dag.spec.name, t, ds)))
        .filter_map(|t| Some((t.spec.name.clone(), stale(t)?)))
        .collect()
}

/// `done` without the fingerprints of the `overtaken` tasks, each logged with its reason (the
/// run about to start runs them again).
pub(crate) fn without(
    mut done: HashSet<String>,
    dag: &ValidatedDag,
    ds: NaiveDate,
    overtaken: &BTreeMap<String, String>,
) -> HashSet<String> {
    for task in dag
        .tasks
        .iter()
        .filter(|t| overtaken.contains_key(&t.spec.name))
    {
        let why = &overtaken[&task.spec.name];
        tracing::info!(dag = %dag.spec.name, task = %task.spec.name, %ds, "runs again: {why}");
        done.remove(&fingerprint(&dag.spec.name, task, ds));
    }
    done
}

/// `done` without the fingerprints of `dag`'s tasks whose success no longer stands.
pub(crate) fn standing(
    done: HashSet<String>,
    dag: &ValidatedDag,
    ds: NaiveDate,
    stale: impl Fn(&PlannedTask) -> Option<String>,
) -> HashSet<String> {
    let overtaken = overtaken(&done, dag, ds, stale);
    without(done, dag, ds, &overtaken)
}

/// What the lineage says of one DAG's successes: what each task-day read at its latest
/// success and with which params, and the changes since to the tables the DAG reads.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    /// Each task-day's latest lineage row.
    latest: HashMap<(String, NaiveDate), LineageRecord>,
    changes: Changes,
}

impl Ledger {
    /// From lineage `records`: the DAG `dag`'s rows give the reads, every row with dates
    /// gives a change.
    pub(crate) fn new(dag: &str, records: &[LineageRecord]) -> Self {
        let mut latest: HashMap<(String, NaiveDate), &LineageRecord> = HashMap::new();
        for r in records.iter().filter(|r| r.dag == dag) {
            let key = (r.task.clone(), r.ds);
            match latest.get(&key) {
                Some(had) if had.created > r.created => {}
                _ => {
                    latest.insert(key, r);
                }
            }
        }
        let mut changes = Changes::default();
        changes.add(records);
        Self {
            latest: latest.into_iter().map(|(k, r)| (k, r.clone())).collect(),
            changes,
        }
    }

    /// Why the success of `task` for `ds` no longer stands (`None`: it stands, or no lineage
    /// says what it read).
    pub(crate) fn stale(
        &self,
        dag: &str,
        task: &PlannedTask,
        ds: NaiveDate,
        calendar: &dyn Calendar,
    ) -> Option<String> {
        let latest = self.latest.get(&(task.spec.name.clone(), ds))?;
        // Its outputs were written again since, by the same task with other params or another
        // operator version (a success of these params earlier, then of others).
        if (latest.op_version, latest.params_hash.as_str())
            != (task.op.version() as i32, task.params_hash.as_str())
        {
            return Some(format!(
                "its outputs were last written with other params or operator version (run {})",
                latest.run_id
            ));
        }
        self.changes.overtaking(dag, task, ds, calendar, |table| {
            latest
                .inputs
                .iter()
                .filter(|r| r.table == table)
                .map(|r| r.version)
                .max()
                .unwrap_or(-1)
        })
    }
}

#[cfg(test)]
mod tests {
    use krxflow_lake::WriteOutcome;

    use super::*;

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 1, day).unwrap()
    }

    #[test]
    fn a_change_counts_only_where_it_meets_the_dates_read() {
        // Read 01-05..=01-10.
        let window = (Some(d(5)), Some(d(10)));
        assert!(overlaps((d(10), d(10)), window.0, window.1));
        assert!(overlaps((d(1), d(5)), window.0, window.1));
        assert!(overlaps((d(1), d(31)), window.0, window.1));
        assert!(
            !overlaps((d(11), d(12)), window.0, window.1),
            "after the day"
        );
        assert!(
            !overlaps((d(1), d(4)), window.0, window.1),
            "before the read-from"
        );
        // An all-rows port, and every date of an undated table.
        assert!(overlaps((d(20), d(20)), None, None));
        assert!(overlaps(all_dates(), window.0, window.1));
    }

    fn outcome(committed: bool, changed: Option<(NaiveDate, NaiveDate)>) -> WriteOutcome {
        WriteOutcome {
            table: "t".into(),
            version: 3,
            rows: 1,
            unchanged: 0,
            committed,
            previous: Some(2),
            latest: 3,
            changed,
        }
    }

    #[test]
    fn a_write_that_committed_nothing_changed_nothing_and_an_undated_one_changed_every_date() {
        assert_eq!(changed_by(&outcome(false, None)), None);
        assert_eq!(
            changed_by(&outcome(true, Some((d(2), d(3))))),
            Some((d(2), d(3)))
        );
        assert_eq!(changed_by(&outcome(true, None)), Some(all_dates()));
    }

    #[test]
    fn a_batched_day_reads_what_the_batch_committed_at_its_commit() {
        let read = |table: &str, version| InputRead {
            table: table.into(),
            version,
            rows: 5,
        };
        let committed = BTreeMap::from([("features".to_string(), (9, Some((d(2), d(8))), d(8)))]);
        let reads = as_committed(&[read("features", 4), read("ohlcv", 7)], &committed);
        assert_eq!(reads, [read("features", 9), read("ohlcv", 7)]);
    }

    fn record(
        task: &str,
        version: i64,
        changed: Option<(NaiveDate, NaiveDate)>,
        at: i64,
    ) -> LineageRecord {
        LineageRecord {
            run_id: format!("r{at}"),
            dag: "daily".into(),
            task: task.into(),
            ds: d(8),
            output_table: "predictions".into(),
            output_version: version,
            rows_written: 1,
            write_mode: "merge".into(),
            inputs: vec![InputRead {
                table: "features".into(),
                version: at,
                rows: 1,
            }],
            op_kind: "k".into(),
            op_version: 1,
            params_hash: "p".into(),
            artifacts: vec![],
            krxflow_version: "0".into(),
            created: chrono::DateTime::from_timestamp(at, 0).unwrap_or_default(),
            changed,
        }
    }

    #[test]
    fn the_ledger_keeps_each_task_days_latest_success_and_every_dated_change() {
        let ledger = Ledger::new(
            "daily",
            &[
                record("ensemble", 5, Some((d(8), d(8))), 20),
                record("ensemble", 4, Some((d(8), d(8))), 10),
                record("ensemble", 6, None, 30),
            ],
        );
        let latest = &ledger.latest[&("ensemble".to_string(), d(8))];
        assert_eq!(latest.run_id, "r30");
        assert_eq!(latest.inputs[0].version, 30);
        let versions: Vec<i64> = ledger.changes.0["predictions"]
            .iter()
            .map(|c| c.version)
            .collect();
        assert_eq!(
            versions,
            [5, 4],
            "the write that changed nothing is no change"
        );
    }
}
