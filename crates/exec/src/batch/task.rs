//! One task run over every run of the range it belongs to, in one process pass: its inputs
//! read once, each run's view of them cut from a [`Timeline`], the operator run once per day
//! exactly as a day's attempt would run it, and its outputs kept as versions for the readers
//! after it and for one commit at the end.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::{NaiveDate, Utc};
use krxflow_core::{
    InputBatches, Observation, OpError, ReadScope, TaskContext, TaskCounters, TaskObservations,
};
use krxflow_lake::{LakeError, ReadOptions};

use super::fresh::Fresh;
use super::plan::TaskId;
use super::timeline::{Timeline, Version, horizon, positions, stamp};
use super::{Range, Written};
use crate::records::{AttemptRecord, InputRead};
use crate::state::TaskState;

/// What one run of the range did for the task.
pub(crate) struct DayResult {
    pub(crate) ordinal: usize,
    pub(crate) state: TaskState,
    pub(crate) record: AttemptRecord,
    pub(crate) observations: Vec<Observation>,
    pub(crate) counters: BTreeMap<String, i64>,
    pub(crate) reads: Vec<InputRead>,
    pub(crate) duration_ms: u64,
}

/// A task's output versions: table → (ordinal, rows in the table's schema).
pub(crate) type Versions = BTreeMap<String, Vec<(usize, RecordBatch)>>;

/// The task over the range: each run's result and every output version.
pub(crate) struct Computed {
    pub(crate) days: Vec<DayResult>,
    pub(crate) versions: Versions,
    pub(crate) artifacts: Vec<String>,
}

/// One input binding, read once for the range.
struct Input {
    binding: String,
    table: String,
    scope: ReadScope,
    /// The read's columns to hand the operator (`None`: as read).
    columns: Option<Vec<usize>>,
    schema: SchemaRef,
    since: Option<NaiveDate>,
    /// `None`: the table does not exist and nothing in the batch writes it.
    stored: Option<(Vec<RecordBatch>, i64)>,
    keys: Vec<String>,
    date_column: Option<String>,
    /// The task reads its own output: the timeline grows with each run.
    own: bool,
    timeline: Option<Timeline>,
}

fn days32(d: NaiveDate) -> i32 {
    crate::records::days(d)
}

/// Runs task `id` over its runs in `range`; `written` holds the versions of the tasks before
/// it. `Err` says why it must run day by day instead (nothing of it is kept).
pub(crate) async fn compute(
    range: &Range,
    id: TaskId,
    written: &Written,
) -> Result<Computed, String> {
    let (dag, calendar) = &range.dags[id.0];
    let task = &dag.tasks[id.1];
    let lake = range.exec.lake();
    let ordinals: Vec<usize> = range
        .runs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.dag == id.0)
        .map(|(i, _)| i)
        .collect();
    let (Some(&first), Some(&last)) = (ordinals.first(), ordinals.last()) else {
        return Ok(Computed {
            days: Vec::new(),
            versions: BTreeMap::new(),
            artifacts: Vec::new(),
        });
    };
    let record = |ordinal: usize, started, state: TaskState, error: Option<String>| {
        let run = &range.runs[ordinal];
        AttemptRecord {
            state: state.to_string(),
            error,
            ..AttemptRecord::of_task(
                &run.run_id,
                &dag.spec.name,
                task,
                run.ds,
                started,
                Utc::now(),
            )
        }
    };
    // Not ready (a model folder missing): every run skipped, nothing read, as a day would.
    match task.configured.ready() {
        Ok(()) => {}
        Err(OpError::Skipped(m)) => {
            let days = ordinals
                .iter()
                .map(|&o| DayResult {
                    ordinal: o,
                    state: TaskState::Skipped,
                    record: record(
                        o,
                        Utc::now(),
                        TaskState::Skipped,
                        Some(format!("skipped: {m}")),
                    ),
                    observations: Vec::new(),
                    counters: BTreeMap::new(),
                    reads: Vec::new(),
                    duration_ms: 0,
                })
                .collect();
            return Ok(Computed {
                days,
                versions: BTreeMap::new(),
                artifacts: Vec::new(),
            });
        }
        Err(e) => return Err(format!("not ready: {e}")),
    }
    let my_tables: Vec<&str> = task.spec.outputs.values().map(String::as_str).collect();
    let watermark_ports: Vec<(String, String, String)> = task
        .op
        .outputs()
        .iter()
        .filter(|p| p.watermark && !range.full_refresh)
        .filter_map(|p| {
            Some((
                p.name.to_string(),
                task.spec.outputs.get(p.name)?.clone(),
                p.date_column.clone()?,
            ))
        })
        .collect();
    // Each run's watermarks: the lake's before the batch, or a later date the batch's versions
    // visible to the run hold (a merge never removes a row).
    let own_versions: Arc<Mutex<Versions>> = Default::default();
    let watermarks_at = |ordinal: usize| {
        let own_versions = own_versions.clone();
        let watermark_ports = &watermark_ports;
        async move {
            let ds = range.runs[ordinal].ds;
            let mut out = BTreeMap::new();
            for (port, table, col) in watermark_ports {
                let mut best = lake
                    .max_date(table, col, ds)
                    .await
                    .map_err(|e| format!("watermark of `{table}`: {e}"))?;
                let mine = own_versions
                    .lock()
                    .map(|v| v.get(table).cloned())
                    .ok()
                    .flatten();
                let others = written.get(table).cloned().unwrap_or_default();
                let visible = mine
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(o, _)| *o < ordinal)
                    .chain(
                        others
                            .into_iter()
                            .filter(|(w, o, _)| *w != id && *o <= ordinal)
                            .map(|(_, o, b)| (o, b)),
                    );
                for (_, b) in visible {
                    if let Some(d) = super::max_date_on_or_before(&b, col, ds) {
                        best = Some(best.map_or(d, |x: NaiveDate| x.max(d)));
                    }
                }
                if let Some(d) = best {
                    out.insert(port.clone(), d);
                }
            }
            Ok::<_, String>(out)
        }
    };
    // The inputs, read once: as of the last run, from the first run's start.
    let ports = task.op.inputs();
    let first_ds = range.runs[first].ds;
    let last_ds = range.runs[last].ds;
    let first_marks = watermarks_at(first).await?;
    let mut inputs = Vec::new();
    for (binding, table) in &task.spec.inputs {
        let Some(port) = ports.iter().find(|p| p.matches(binding)) else {
            continue;
        };
        let def = range.tables.get(table);
        let keys = def.map(|d| d.keys.clone()).unwrap_or_default();
        let date_column = def.and_then(|d| d.date_column.clone());
        let own = my_tables.contains(&table.as_str());
        let in_batch = own || written.contains_key(table);
        if in_batch && keys.is_empty() {
            return Err(format!(
                "reads `{table}`, which has no keys to follow its versions by"
            ));
        }
        let since = task
            .configured
            .read_from(binding, first_ds, &first_marks, calendar.as_ref());
        let wanted: Option<Vec<String>> = port.projected.then(|| {
            port.schema
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect()
        });
        let options = ReadOptions {
            as_of: (port.scope == ReadScope::AsOfPartition).then_some(last_ds),
            since,
            version: None,
            // A table the batch writes is read whole: its versions are matched by key.
            columns: if in_batch { None } else { wanted.clone() },
        };
        let (stored, schema) = match lake.read(table, options).await {
            Ok(read) => (Some((read.batches, read.version)), read.schema),
            Err(LakeError::NoSuchTable(_)) if port.optional || in_batch => {
                let schema = match lake.table_schema(table).await {
                    Ok(Some(s)) => s,
                    _ => match def {
                        Some(d) => d.schema.clone(),
                        None => port.schema.clone(),
                    },
                };
                (None, schema)
            }
            Err(e) => return Err(format!("reading `{table}`: {e}")),
        };
        let columns = match (&wanted, in_batch) {
            (Some(w), true) => positions(&schema, Some(w)).map_err(|e| e.to_string())?,
            _ => None,
        };
        inputs.push(Input {
            binding: binding.clone(),
            table: table.clone(),
            scope: port.scope,
            columns,
            schema,
            since,
            stored,
            keys,
            date_column,
            own,
            timeline: None,
        });
    }
    let timeline_of = |input: &Input, own: &Versions| {
        let mut versions: Vec<Version> = written
            .get(&input.table)
            .map(|v| {
                v.iter()
                    .filter(|(w, _, _)| *w != id)
                    .map(|(_, o, b)| Version {
                        batch: b.clone(),
                        stamp: stamp(*o, false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        if let Some(mine) = own.get(&input.table) {
            versions.extend(mine.iter().map(|(o, b)| Version {
                batch: b.clone(),
                stamp: stamp(*o, true),
            }));
        }
        let stored = input.stored.as_ref().map(|s| s.0.as_slice()).unwrap_or(&[]);
        let versions = versions
            .into_iter()
            .map(|v| {
                krxflow_lake::schema::conform(&v.batch, &input.schema).map(|batch| Version {
                    batch,
                    stamp: v.stamp,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Timeline::new(
            &input.schema,
            stored,
            versions,
            &input.keys,
            input.date_column.as_deref(),
        )
    };
    for input in inputs.iter_mut().filter(|i| !i.own) {
        input.timeline = Some(timeline_of(input, &BTreeMap::new()).map_err(|e| e.to_string())?);
    }

    // The tables only this task writes in the replay: their unchanged re-writes are dropped.
    let mut fresh: BTreeMap<String, Fresh> = BTreeMap::new();
    for port in task.op.outputs() {
        let Some(table) = task.spec.outputs.get(port.name) else {
            continue;
        };
        let writers = range
            .dags
            .iter()
            .flat_map(|(d, _)| d.tasks.iter())
            .filter(|t| t.spec.outputs.values().any(|o| o == table))
            .count();
        if writers == 1 {
            let def = lake.catalog().def_for_output(table, &port);
            fresh.insert(
                table.clone(),
                Fresh::new(&def.schema, &def.keys).map_err(|e| e.to_string())?,
            );
        }
    }
    let artifacts = Arc::new(Mutex::new(Vec::new()));
    let mut days = Vec::with_capacity(ordinals.len());
    for &ordinal in &ordinals {
        if range.exec.cancel.is_cancelled() {
            return Err("cancelled".into());
        }
        let run = &range.runs[ordinal];
        let started = Utc::now();
        let clock = Instant::now();
        let watermarks = watermarks_at(ordinal).await?;
        let own_now = own_versions.lock().map(|v| v.clone()).unwrap_or_default();
        let mut batches = InputBatches::default();
        let mut reads = Vec::new();
        for input in &inputs {
            let since =
                task.configured
                    .read_from(&input.binding, run.ds, &watermarks, calendar.as_ref());
            if let (Some(s), Some(first)) = (since, input.since)
                && s < first
            {
                return Err(format!(
                    "reads `{}` from {s} on {}, before the range's read from {first}",
                    input.table, run.ds
                ));
            }
            if since.is_none() && input.since.is_some() {
                return Err(format!("reads all of `{}` on {}", input.table, run.ds));
            }
            let rebuilt;
            let timeline = match &input.timeline {
                Some(t) => t,
                None => {
                    rebuilt = timeline_of(input, &own_now).map_err(|e| e.to_string())?;
                    &rebuilt
                }
            };
            let as_of = (input.scope == ReadScope::AsOfPartition).then(|| days32(run.ds));
            let view = timeline
                .view(
                    horizon(ordinal),
                    since.map(days32),
                    as_of,
                    input.columns.as_deref(),
                )
                .map_err(|e| e.to_string())?;
            let nothing = input.stored.is_none() && view.num_rows() == 0;
            reads.push(InputRead {
                table: input.table.clone(),
                version: input.stored.as_ref().map_or(-1, |s| s.1),
                rows: view.num_rows() as i64,
            });
            if nothing {
                // An optional table that does not exist yet: the port is not given.
                continue;
            }
            let schema = view.schema();
            let parts = if view.num_rows() > 0 {
                vec![view]
            } else {
                Vec::new()
            };
            batches.insert(&input.binding, &input.table, schema, parts);
        }
        let rows_in = batches.num_rows() as i64;
        let counters = Arc::new(TaskCounters::default());
        let observations = Arc::new(TaskObservations::default());
        let ctx = TaskContext {
            dag: dag.spec.name.clone(),
            task: task.spec.name.clone(),
            ds: run.ds,
            run_id: run.run_id.clone(),
            attempt: 1,
            calendar: calendar.clone(),
            cancel: range.exec.cancel.child_token(),
            counters: counters.clone(),
            observations: observations.clone(),
            artifacts: artifacts.clone(),
            watermarks,
            store: Some(Arc::new(krxflow_lake::LakeArtifacts::new(lake.clone()))),
        };
        let ran = tokio::time::timeout(
            task.spec.timeout,
            crate::faults::run(task.configured.as_ref(), &ctx, batches),
        )
        .await;
        let mut counter_snapshot = counters.snapshot();
        let mut rec;
        let state;
        match ran {
            Ok(Ok(mut out)) => {
                let mut rows_out = 0i64;
                let mut own = own_versions
                    .lock()
                    .map_err(|_| "a lock was poisoned".to_string())?;
                for port in task.op.outputs() {
                    let Some(table) = task.spec.outputs.get(port.name) else {
                        continue;
                    };
                    let def = lake.catalog().def_for_output(table, &port);
                    let parts = out.take(port.name).unwrap_or_default();
                    lake.validate_write(&def, &parts, port.mode, Some(run.ds))
                        .map_err(|e| format!("{} on {}: {e}", table, run.ds))?;
                    let parts = parts
                        .iter()
                        .map(|b| krxflow_lake::schema::conform(b, &def.schema))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| e.to_string())?;
                    let batch = arrow::compute::concat_batches(&def.schema, &parts)
                        .map_err(|e| e.to_string())?;
                    // Counted as a day's merge counts the rows it finds stored exactly, and
                    // left out of the rows written (against this writer's earlier days of the
                    // range, not the lake's rows).
                    let batch = match fresh.get_mut(table) {
                        Some(f) => {
                            let sent = batch.num_rows();
                            let kept = f.keep(batch).map_err(|e| format!("{table}: {e}"))?;
                            if kept.num_rows() < sent {
                                *counter_snapshot
                                    .entry(format!("unchanged_rows.{table}"))
                                    .or_default() += (sent - kept.num_rows()) as i64;
                            }
                            kept
                        }
                        None => batch,
                    };
                    rows_out += batch.num_rows() as i64;
                    if batch.num_rows() > 0 {
                        own.entry(table.clone()).or_default().push((ordinal, batch));
                    }
                }
                rec = record(ordinal, started, TaskState::Succeeded, None);
                rec.rows_out = rows_out;
                state = TaskState::Succeeded;
            }
            Ok(Err(OpError::Skipped(m))) => {
                rec = record(
                    ordinal,
                    started,
                    TaskState::Skipped,
                    Some(format!("skipped: {m}")),
                );
                state = TaskState::Skipped;
            }
            Ok(Err(e)) => return Err(format!("failed on {}: {e}", run.ds)),
            Err(_) => return Err(format!("timed out on {}", run.ds)),
        }
        rec.rows_in = rows_in;
        rec.counters = (!counter_snapshot.is_empty())
            .then(|| serde_json::to_string(&counter_snapshot).unwrap_or_default());
        days.push(DayResult {
            ordinal,
            state,
            record: rec,
            observations: observations.snapshot(),
            counters: counter_snapshot,
            reads,
            duration_ms: clock.elapsed().as_millis() as u64,
        });
    }
    let versions = own_versions
        .lock()
        .map(|v| v.clone())
        .map_err(|_| "a lock was poisoned".to_string())?;
    let artifacts = artifacts.lock().map(|a| a.clone()).unwrap_or_default();
    Ok(Computed {
        days,
        versions,
        artifacts,
    })
}
