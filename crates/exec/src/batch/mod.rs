//! Range batches: the tasks of a replay that read nothing the replay writes day by day run once
//! over the whole range (one read of each input, the operator once per day on that day's view,
//! one commit per table), and the rest run day by day as the scheduler would, finding them
//! settled. Like Dagster's single-run backfills, but decided per task from the tables the DAGs
//! bind, with each day's inputs exactly those of a day-by-day replay:
//!
//! * a task's view of a day is the lake's rows before the batch plus the versions the batch's
//!   writers produced in the runs before (or upstream in the same run), by key, cut to the
//!   day's as-of and read-from bounds ([`timeline`]);
//! * a task that reads what a day-by-day task writes runs day by day ([`plan`]), and so does
//!   everything downstream of it;
//! * a table a day-by-day task reads must look, as of each day, as it would have: no value
//!   replaced later in the range and no row dated after the run that wrote it; otherwise its
//!   writers run day by day too (checked before anything is committed);
//! * a task that fails, times out or is cancelled on any day keeps nothing of the batch and
//!   runs day by day, where the retry policy and the records treat it as usual.
//!
//! Each day of a batched task gets its own attempt record (same run id and fingerprint as a
//! day's run, so a resumed backfill sees it done) and lineage rows pointing at the one commit.

mod fresh;
mod plan;
mod task;
mod timeline;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow::array::{Array, Date32Array, RecordBatch};
use chrono::{NaiveDate, Utc};
use krxflow_core::{Calendar, Observation, WriteMode};
use krxflow_dag::ValidatedDag;
use krxflow_lake::ReadOptions;

use crate::error::ExecResult;
use crate::records::{self, LineageRecord};
use crate::runner::{Executor, Reprocess};
use crate::stale::Committed;
use crate::state::TaskState;
use plan::TaskId;
use task::Computed;
use timeline::{Timeline, Version, stamp};

/// One scheduled run of a replay: which DAG (index into the batch's DAGs), its day and the run
/// id it will be recorded under.
#[derive(Debug, Clone)]
pub struct ReplayRun {
    pub dag: usize,
    pub ds: NaiveDate,
    pub run_id: String,
}

/// What the batch did for one task of one run; the day's run settles the task with it.
#[derive(Debug, Clone)]
pub struct SettledTask {
    pub state: TaskState,
    pub error: Option<String>,
    pub rows_in: i64,
    pub rows_out: i64,
    pub duration_ms: u64,
    pub counters: BTreeMap<String, i64>,
    pub observations: Vec<Observation>,
    pub outputs: Vec<String>,
}

/// The outcome of a range batch.
#[derive(Debug, Default)]
pub struct BatchReport {
    /// Per run (the order given): the tasks the batch ran for it.
    pub settled: Vec<BTreeMap<String, SettledTask>>,
    /// `dag.task` of every task run over the range, in the order they ran.
    pub batched: Vec<String>,
    /// `dag.task` and why, for every task left to run day by day.
    pub per_day: Vec<(String, String)>,
}

/// The replay a batch covers.
pub(crate) struct Range {
    pub(crate) exec: Executor,
    pub(crate) dags: Vec<(Arc<ValidatedDag>, Arc<dyn Calendar>)>,
    pub(crate) runs: Vec<ReplayRun>,
    pub(crate) full_refresh: bool,
    pub(crate) tables: plan::Tables,
}

/// The versions written so far: table → (writer, ordinal, rows).
pub(crate) type Written = BTreeMap<String, Vec<(TaskId, usize, RecordBatch)>>;

/// Every version the computed tasks wrote.
fn written_by(computed: &BTreeMap<TaskId, Computed>) -> Written {
    let mut written = Written::new();
    for (id, c) in computed {
        for (table, versions) in &c.versions {
            written
                .entry(table.clone())
                .or_default()
                .extend(versions.iter().map(|(o, b)| (*id, *o, b.clone())));
        }
    }
    written
}

/// The latest date in `col` of `batch` on or before `ds`.
pub(crate) fn max_date_on_or_before(
    batch: &RecordBatch,
    col: &str,
    ds: NaiveDate,
) -> Option<NaiveDate> {
    let dates = batch
        .column_by_name(col)?
        .as_any()
        .downcast_ref::<Date32Array>()?;
    let limit = records::days(ds);
    let best = dates.iter().flatten().filter(|d| *d <= limit).max()?;
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(best as i64))
}

impl Executor {
    /// Runs, once over the range, every task of `dags` that can be (see the module docs), for
    /// the scheduled `runs` (in replay order), and commits their outputs; the day-by-day runs
    /// then pass each run's [`BatchReport::settled`] in [`crate::RunOptions::settled`].
    /// `reprocess` as for the runs: with `missing`, a task already done for every run it has
    /// (and whose upstream is too) is left to the runs, which find it up to date. With at most
    /// one run per DAG nothing is batched (there is nothing to save).
    pub async fn run_range_batch(
        &self,
        dags: &[(Arc<ValidatedDag>, Arc<dyn Calendar>)],
        runs: &[ReplayRun],
        known: &[HashSet<String>],
        reprocess: Reprocess,
    ) -> ExecResult<BatchReport> {
        // One run per DAG: each task would read and commit once anyway.
        let repeated = (0..dags.len()).any(|d| runs.iter().filter(|r| r.dag == d).count() > 1);
        if !repeated {
            return Ok(BatchReport {
                settled: vec![BTreeMap::new(); runs.len()],
                ..Default::default()
            });
        }
        let plain: Vec<&ValidatedDag> = dags.iter().map(|(d, _)| d.as_ref()).collect();
        let range = Arc::new(Range {
            exec: self.clone(),
            dags: dags.to_vec(),
            runs: runs.to_vec(),
            full_refresh: reprocess == Reprocess::All,
            tables: plan::Tables::of(&plain, self.lake().catalog()),
        });
        let done = Self::already_done(&range, known, reprocess);
        let mut forced: BTreeMap<TaskId, String> = BTreeMap::new();
        let mut computed: BTreeMap<TaskId, Computed> = BTreeMap::new();
        let plan = 'plan: loop {
            let plan = plan::plan(&plain, &range.tables, forced.clone());
            let order: Vec<TaskId> = plan
                .order
                .iter()
                .copied()
                .filter(|id| !done.contains(id))
                .collect();
            computed.retain(|id, _| order.contains(id));
            // Each task starts once the tasks it waits for are computed, up to `max_parallel`
            // at a time (each on the runtime's workers, so independent tasks share the cores).
            let mut running: tokio::task::JoinSet<(TaskId, Result<Computed, String>)> =
                tokio::task::JoinSet::new();
            let mut started: HashSet<TaskId> = computed.keys().copied().collect();
            let mut failed = false;
            loop {
                if !failed {
                    for &id in &order {
                        if running.len() >= self.max_parallel.max(1) {
                            break;
                        }
                        let ready = plan.deps.get(&id).is_none_or(|d| {
                            d.iter()
                                .all(|x| computed.contains_key(x) || done.contains(x))
                        });
                        if ready && started.insert(id) {
                            let written = Arc::new(written_by(&computed));
                            let range = range.clone();
                            running.spawn(async move {
                                let t0 = std::time::Instant::now();
                                let out = task::compute(&range, id, &written).await;
                                tracing::debug!(
                                    task = ?id,
                                    ms = t0.elapsed().as_secs_f64() * 1e3,
                                    "range batch: task over the range"
                                );
                                (id, out)
                            });
                        }
                    }
                }
                let Some(joined) = running.join_next().await else {
                    break;
                };
                let (id, out) = joined.map_err(|e| {
                    crate::error::ExecError::Invalid(format!("a range batch task panicked: {e}"))
                })?;
                match out {
                    Ok(c) => {
                        computed.insert(id, c);
                    }
                    Err(why) => {
                        tracing::info!(task = %name(&plain, id), %why, "range batch: runs day by day");
                        forced.insert(id, why);
                        // Let the others finish (what they computed stays valid), then plan again.
                        failed = true;
                    }
                }
            }
            if failed {
                continue 'plan;
            }
            let written = written_by(&computed);
            // Tables a day-by-day task reads must look to it as they would have on its day.
            if let Some((writer, why)) = self
                .seen_differently(&range, &plan, &order, &written)
                .await?
            {
                forced.insert(writer, why);
                continue 'plan;
            }
            break (plan, order, written);
        };
        let (plan, order, written) = plan;
        let outputs = self.commit(&range, &order, &written).await?;
        let mut report = BatchReport {
            settled: vec![BTreeMap::new(); runs.len()],
            batched: order.iter().map(|id| name(&plain, *id)).collect(),
            per_day: plan
                .per_day
                .iter()
                .map(|(id, why)| (name(&plain, *id), why.clone()))
                .collect(),
        };
        let mut attempts = Vec::new();
        let mut lineage = Vec::new();
        for id in &order {
            let Some(c) = computed.remove(id) else {
                continue;
            };
            let task = &dags[id.0].0.tasks[id.1];
            for day in c.days {
                let run = &runs[day.ordinal];
                let mut written_here = Vec::new();
                if day.state == TaskState::Succeeded {
                    for (port, table) in &task.spec.outputs {
                        let Some(&(version, changed, at)) = outputs.get(table) else {
                            continue;
                        };
                        let rows = c
                            .versions
                            .get(table)
                            .map(|v| {
                                v.iter()
                                    .filter(|(o, _)| *o == day.ordinal)
                                    .map(|(_, b)| b.num_rows() as i64)
                                    .sum()
                            })
                            .unwrap_or(0);
                        let mode = task
                            .op
                            .outputs()
                            .iter()
                            .find(|p| p.name == port)
                            .map(|p| p.mode)
                            .unwrap_or(WriteMode::Merge);
                        written_here.push(format!("{table}@v{version}"));
                        lineage.push(LineageRecord {
                            run_id: run.run_id.clone(),
                            dag: dags[id.0].0.spec.name.clone(),
                            task: task.spec.name.clone(),
                            ds: run.ds,
                            output_table: table.clone(),
                            output_version: version,
                            rows_written: rows,
                            write_mode: mode.to_string(),
                            inputs: crate::stale::as_committed(&day.reads, &outputs),
                            op_kind: task.op.kind().to_string(),
                            op_version: task.op.version() as i32,
                            params_hash: task.params_hash.clone(),
                            artifacts: c.artifacts.clone(),
                            krxflow_version: krxflow_core::KRXFLOW_VERSION.to_string(),
                            created: Utc::now(),
                            // The batch's one commit of the table, on its last day's row.
                            changed: changed.filter(|_| run.ds == at),
                        });
                    }
                }
                report.settled[day.ordinal].insert(
                    task.spec.name.clone(),
                    SettledTask {
                        state: day.state,
                        error: day.record.error.clone(),
                        rows_in: day.record.rows_in,
                        rows_out: day.record.rows_out,
                        duration_ms: day.duration_ms,
                        counters: day.counters,
                        observations: day.observations,
                        outputs: written_here,
                    },
                );
                attempts.push(day.record);
            }
        }
        if let Some(o) = &self.observer {
            for a in &attempts {
                o.attempt_finished(a);
            }
        }
        self.records.note_changes(&lineage);
        self.append_engine(records::LINEAGE, records::lineage_batch(&lineage)?)
            .await?;
        // Last, as for runs: a task counts as done by its succeeded attempts.
        self.append_engine(records::TASK_RUNS, records::task_runs_batch(&attempts)?)
            .await?;
        Ok(report)
    }

    /// Which tasks of `dags` a range batch would run once over a range (`dag.task`, in the
    /// order they would run) and which day by day, with why; computes nothing. A task that
    /// fails on a day, or whose table a day-by-day task would see differently, moves to the
    /// second list when the batch runs.
    pub fn plan_range_batch(
        &self,
        dags: &[(Arc<ValidatedDag>, Arc<dyn Calendar>)],
    ) -> (Vec<String>, Vec<(String, String)>) {
        let plain: Vec<&ValidatedDag> = dags.iter().map(|(d, _)| d.as_ref()).collect();
        let tables = plan::Tables::of(&plain, self.lake().catalog());
        let p = plan::plan(&plain, &tables, BTreeMap::new());
        (
            p.order.iter().map(|id| name(&plain, *id)).collect(),
            p.per_day
                .iter()
                .map(|(id, why)| (name(&plain, *id), why.clone()))
                .collect(),
        )
    }

    /// The fingerprints that already succeeded for each of `runs`, from two scans of the
    /// engine tables per DAG (a run reads them itself otherwise: a query per run).
    pub async fn succeeded_by_run(
        &self,
        dags: &[(Arc<ValidatedDag>, Arc<dyn Calendar>)],
        runs: &[ReplayRun],
    ) -> ExecResult<Vec<HashSet<String>>> {
        let mut by_dag = Vec::with_capacity(dags.len());
        for (d, (dag, calendar)) in dags.iter().enumerate() {
            let days: Vec<NaiveDate> = runs.iter().filter(|r| r.dag == d).map(|r| r.ds).collect();
            by_dag.push(
                self.partition_scan(dag, &days, None, calendar.as_ref())
                    .await?
                    .1,
            );
        }
        Ok(runs
            .iter()
            .map(|r| {
                by_dag
                    .get(r.dag)
                    .and_then(|m| m.get(&r.ds))
                    .cloned()
                    .unwrap_or_default()
            })
            .collect())
    }

    /// Tasks already done for every run they have (with `missing`), their upstream too.
    fn already_done(
        range: &Range,
        known: &[HashSet<String>],
        reprocess: Reprocess,
    ) -> HashSet<TaskId> {
        let mut done = HashSet::new();
        if reprocess == Reprocess::All {
            return done;
        }
        for (d, (dag, _)) in range.dags.iter().enumerate() {
            let mine: Vec<(&ReplayRun, &HashSet<String>)> = range
                .runs
                .iter()
                .zip(known)
                .filter(|(r, _)| r.dag == d)
                .collect();
            if mine.is_empty() {
                continue;
            }
            for (t, task) in dag.tasks.iter().enumerate() {
                let all = mine.iter().all(|(r, fps)| {
                    fps.contains(&crate::attempt::fingerprint(&dag.spec.name, task, r.ds))
                });
                let ups = task.upstream.iter().all(|u| {
                    dag.tasks
                        .iter()
                        .position(|x| &x.spec.name == u)
                        .is_some_and(|i| done.contains(&(d, i)))
                });
                if all && ups {
                    done.insert((d, t));
                }
            }
        }
        done
    }

    /// A batched writer whose table a day-by-day task would see differently than in a
    /// day-by-day replay, and why.
    async fn seen_differently(
        &self,
        range: &Range,
        plan: &plan::BatchPlan,
        order: &[TaskId],
        written: &Written,
    ) -> ExecResult<Option<(TaskId, String)>> {
        let ordinal_ds: Vec<i32> = range.runs.iter().map(|r| records::days(r.ds)).collect();
        let read_daily: HashSet<&str> = plan
            .per_day
            .keys()
            .flat_map(|id| plan::reads(&range.dags[id.0].0.tasks[id.1], &range.tables))
            .map(|r| r.table)
            .collect();
        for (table, versions) in written {
            if !read_daily.contains(table.as_str()) || versions.is_empty() {
                continue;
            }
            let Some(def) = range.tables.get(table) else {
                continue;
            };
            // The stored rows a version could replace: from the earliest date written.
            let since = def.date_column.as_deref().and_then(|c| {
                def.keys
                    .iter()
                    .any(|k| k == c)
                    .then(|| versions.iter().filter_map(|(_, _, b)| min_date(b, c)).min())?
            });
            let stored = match self
                .lake()
                .read(
                    table,
                    ReadOptions {
                        since,
                        ..Default::default()
                    },
                )
                .await
            {
                Ok(r) => r.batches,
                Err(krxflow_lake::LakeError::NoSuchTable(_)) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let vs = conformed(versions, &def.schema)?;
            let t = Timeline::new(
                &def.schema,
                &stored,
                vs,
                &def.keys,
                def.date_column.as_deref(),
            )?;
            if let Some(why) = t.revised_or_early(&def.keys, &ordinal_ds)? {
                let writer = versions
                    .first()
                    .map(|(w, _, _)| *w)
                    .filter(|w| order.contains(w));
                if let Some(w) = writer {
                    return Ok(Some((w, format!("`{table}` is read day by day and {why}"))));
                }
            }
        }
        Ok(None)
    }

    /// One commit per table the batch wrote: each key's last version. Returns each table's
    /// commit.
    async fn commit(
        &self,
        range: &Range,
        order: &[TaskId],
        written: &Written,
    ) -> ExecResult<BTreeMap<String, Committed>> {
        let lake = self.lake();
        let mut plans = Vec::new();
        for (table, versions) in written {
            let Some(&(writer, _, _)) = versions.first() else {
                continue;
            };
            if !order.contains(&writer) {
                continue;
            }
            let task = &range.dags[writer.0].0.tasks[writer.1];
            let Some(port) = task
                .op
                .outputs()
                .into_iter()
                .find(|p| task.spec.outputs.get(p.name) == Some(table))
            else {
                continue;
            };
            let def = lake.catalog().def_for_output(table, &port);
            let vs = conformed(versions, &def.schema)?;
            let latest =
                Timeline::new(&def.schema, &[], vs, &def.keys, def.date_column.as_deref())?
                    .latest()?;
            let last_ds = versions
                .iter()
                .map(|(_, o, _)| range.runs[*o].ds)
                .max()
                .unwrap_or_default();
            lake.validate_write(
                &def,
                std::slice::from_ref(&latest),
                WriteMode::Merge,
                Some(last_ds),
            )?;
            plans.push((table.clone(), def, latest, last_ds, writer));
        }
        let mut out = BTreeMap::new();
        for (table, def, latest, last_ds, writer) in plans {
            let (dag, _) = &range.dags[writer.0];
            let meta = BTreeMap::from([
                ("krxflow.dag".to_string(), dag.spec.name.clone()),
                (
                    "krxflow.task".to_string(),
                    dag.tasks[writer.1].spec.name.clone(),
                ),
                ("krxflow.ds".to_string(), last_ds.to_string()),
                (
                    "krxflow.range_batch".to_string(),
                    format!("{} runs", range.runs.len()),
                ),
            ]);
            let rows = latest.num_rows();
            let outcome = lake
                .write(&def, vec![latest], WriteMode::Merge, Some(last_ds), meta)
                .await?;
            if let Some(o) = &self.observer {
                o.output_written(&dag.spec.name, &table, rows);
            }
            out.insert(
                table,
                (
                    outcome.version,
                    crate::records::changed_by(&outcome),
                    last_ds,
                ),
            );
        }
        Ok(out)
    }
}

/// A table's versions from the batch in its schema, stamped as a reader that is not their
/// writer sees them.
fn conformed(
    versions: &[(TaskId, usize, RecordBatch)],
    schema: &arrow::datatypes::SchemaRef,
) -> Result<Vec<Version>, arrow::error::ArrowError> {
    versions
        .iter()
        .map(|(_, o, b)| {
            krxflow_lake::schema::conform(b, schema).map(|batch| Version {
                batch,
                stamp: stamp(*o, false),
            })
        })
        .collect()
}

fn min_date(batch: &RecordBatch, col: &str) -> Option<NaiveDate> {
    let dates = batch
        .column_by_name(col)?
        .as_any()
        .downcast_ref::<Date32Array>()?;
    let best = dates.iter().flatten().min()?;
    NaiveDate::from_ymd_opt(1970, 1, 1)?.checked_add_signed(chrono::Duration::days(best as i64))
}

fn name(dags: &[&ValidatedDag], id: TaskId) -> String {
    format!(
        "{}.{}",
        dags[id.0].spec.name, dags[id.0].tasks[id.1].spec.name
    )
}
