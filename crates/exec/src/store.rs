//! The record store: engine records (runs, task runs, lineage, backfills) appended to their
//! engine tables, directly or buffered into batched commits, and read back.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use chrono::NaiveDate;
use datafusion::prelude::{SessionContext, col, lit};
use krxflow_dag::ValidatedDag;
use krxflow_lake::Lake;

use crate::error::ExecResult;
use crate::records::{
    self, LineageRecord, RunRecord, attempts_from_batches, days, engine_tables,
    lineage_from_batches,
};
use crate::stale::{Changes, Ledger};

/// Where an executor's engine records go: the lake's engine tables, through an optional
/// buffer. Clones share the buffer and the write lock.
#[derive(Clone)]
pub(crate) struct RecordStore {
    lake: Lake,
    /// When set, engine records are buffered and committed in batches.
    record_buffer: Option<Arc<RecordBuffer>>,
    /// With a buffer: the records of the one run this clone executes, handed to the buffer
    /// only when the run is over, so a batch never holds half a run (a crash then loses whole
    /// runs, which re-run, never leaves tasks recorded without their run's end).
    run_local: Option<Arc<std::sync::Mutex<Vec<EngineRecord>>>>,
    /// The changes this store's executor (and its clones) committed since it was made: all
    /// newer than any success found done before them (see [`crate::stale`]).
    session: Arc<std::sync::Mutex<Changes>>,
}

/// Rows for one engine table.
pub(crate) type EngineRecord = (String, arrow::array::RecordBatch);

/// Engine records waiting for a batched commit.
struct RecordBuffer {
    max_rows: usize,
    max_age: std::time::Duration,
    pending: tokio::sync::Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    tables: BTreeMap<String, Vec<arrow::array::RecordBatch>>,
    rows: usize,
    since: Option<std::time::Instant>,
}

impl Pending {
    /// Puts back rows a failed commit did not write, ahead of any added since.
    fn keep(&mut self, table: String, mut batches: Vec<arrow::array::RecordBatch>) {
        self.rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
        self.since.get_or_insert_with(std::time::Instant::now);
        let queued = self.tables.entry(table).or_default();
        batches.append(queued);
        *queued = batches;
    }
}

impl RecordStore {
    pub(crate) fn new(lake: Lake) -> Self {
        Self {
            lake,
            record_buffer: None,
            run_local: None,
            session: Default::default(),
        }
    }

    /// Notes the changes the outputs of `lineage` made (see [`RecordStore::session`]).
    pub(crate) fn note_changes(&self, lineage: &[LineageRecord]) {
        self.session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(lineage);
    }

    /// `f` of the changes committed through this store so far.
    pub(crate) fn with_session_changes<T>(&self, f: impl FnOnce(&Changes) -> T) -> T {
        f(&self.session.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The lineage of `dag`'s successes on `first..=last` and every change recorded to the
    /// tables it reads: one scan of `_krxflow/lineage`.
    pub(crate) async fn ledger(
        &self,
        dag: &ValidatedDag,
        first: NaiveDate,
        last: NaiveDate,
    ) -> ExecResult<Ledger> {
        let name = dag.spec.name.as_str();
        let date = |d: NaiveDate| lit(datafusion::scalar::ScalarValue::Date32(Some(days(d))));
        let tables: HashSet<&String> = dag
            .tasks
            .iter()
            .flat_map(|t| t.spec.inputs.values())
            .collect();
        let mine = col("dag")
            .eq(lit(name))
            .and(col("ds").gt_eq(date(first)))
            .and(col("ds").lt_eq(date(last)));
        let batches = self
            .read_engine_matching(records::LINEAGE, |schema| {
                // Lineage written before the change dates were kept says nothing changed.
                if tables.is_empty() || schema.index_of("changed_from").is_err() {
                    return mine;
                }
                let tables = tables.into_iter().map(|t| lit(t.as_str())).collect();
                mine.or(col("changed_from")
                    .is_not_null()
                    .and(col("output_table").in_list(tables, false)))
            })
            .await?;
        Ok(Ledger::new(name, &lineage_from_batches(&batches)))
    }

    /// Buffers records and commits them one Delta commit per table once `max_rows` rows are
    /// waiting or the oldest is `max_age` old.
    pub(crate) fn with_buffered_records(
        mut self,
        max_rows: usize,
        max_age: std::time::Duration,
    ) -> Self {
        self.record_buffer = Some(Arc::new(RecordBuffer {
            max_rows,
            max_age,
            pending: tokio::sync::Mutex::new(Pending::default()),
        }));
        self
    }

    /// A store holding back the records of one run until it is over (see `run_local`): `None`
    /// without a buffer, or when this store already holds one run's records.
    pub(crate) fn for_one_run(&self) -> Option<Self> {
        if self.record_buffer.is_none() || self.run_local.is_some() {
            return None;
        }
        let mut local = self.clone();
        local.run_local = Some(Default::default());
        Some(local)
    }

    /// The records held back for the run (see [`RecordStore::for_one_run`]), taken.
    pub(crate) fn take_run_records(&self) -> Vec<EngineRecord> {
        self.run_local
            .as_ref()
            .map(|l| std::mem::take(&mut *l.lock().unwrap_or_else(|p| p.into_inner())))
            .unwrap_or_default()
    }

    /// Commits buffered engine records (no-op without a buffer).
    pub(crate) async fn flush_records(&self) -> ExecResult<()> {
        let Some(buf) = &self.record_buffer else {
            return Ok(());
        };
        let mut p = buf.pending.lock().await;
        self.commit_pending(&mut p).await
    }

    /// Commits what `p` holds, one commit per table. What could not be committed stays in
    /// `p` for the next flush (the error is returned): the runs it describes are over and
    /// their outputs written, so their records must not be dropped with a failed commit.
    async fn commit_pending(&self, p: &mut Pending) -> ExecResult<()> {
        let mut tables: Vec<_> = std::mem::take(&mut p.tables).into_iter().collect();
        p.rows = 0;
        p.since = None;
        // `task_runs` last: partitions count as done by their succeeded task fingerprints, so
        // a crash between these commits must leave them looking not done (they re-run,
        // idempotently) rather than done without their run records. The others commit
        // concurrently (one table each; the lake serialises writers of one table).
        let last = tables
            .iter()
            .position(|(t, _)| t == records::TASK_RUNS)
            .map(|i| tables.swap_remove(i));
        let written = futures::future::join_all(tables.into_iter().map(|(table, batches)| async {
            let result = self.write_engine(&table, batches.clone()).await;
            (table, batches, result)
        }))
        .await;
        let mut first_error = None;
        for (table, batches, result) in written {
            if let Err(e) = result {
                p.keep(table, batches);
                first_error.get_or_insert(e);
            }
        }
        if let Some((table, batches)) = last {
            if first_error.is_some() {
                // Not before the others are in (see above).
                p.keep(table, batches);
            } else if let Err(e) = self.write_engine(&table, batches.clone()).await {
                p.keep(table, batches);
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn write_engine(
        &self,
        table: &str,
        batches: Vec<arrow::array::RecordBatch>,
    ) -> ExecResult<()> {
        let Some(def) = engine_tables().into_iter().find(|d| d.name == table) else {
            return Ok(());
        };
        self.lake
            .write(
                &def,
                batches,
                krxflow_core::WriteMode::Append,
                None,
                BTreeMap::new(),
            )
            .await?;
        Ok(())
    }

    /// Fingerprints that already succeeded for this DAG and partition.
    pub(crate) async fn succeeded_fingerprints(
        &self,
        dag: &str,
        ds: NaiveDate,
    ) -> ExecResult<HashSet<String>> {
        let batches = self
            .read_engine_where(
                records::TASK_RUNS,
                col("dag")
                    .eq(lit(dag))
                    .and(col("ds").eq(lit(datafusion::scalar::ScalarValue::Date32(Some(days(ds))))))
                    .and(col("state").eq(lit("succeeded"))),
            )
            .await?;
        Ok(attempts_from_batches(&batches)
            .into_iter()
            .map(|a| a.fingerprint)
            .collect())
    }

    /// Reads engine-table rows matching `filter` (empty when the table does not exist yet).
    pub(crate) async fn read_engine_where(
        &self,
        table: &str,
        filter: datafusion::prelude::Expr,
    ) -> ExecResult<Vec<arrow::array::RecordBatch>> {
        self.read_engine_matching(table, |_| filter).await
    }

    /// [`RecordStore::read_engine_where`] with the filter made for the table's stored schema
    /// (a column added since the table was written is not there to filter on).
    pub(crate) async fn read_engine_matching(
        &self,
        table: &str,
        filter: impl FnOnce(&arrow::datatypes::Schema) -> datafusion::prelude::Expr,
    ) -> ExecResult<Vec<arrow::array::RecordBatch>> {
        let Some(t) = self.lake.load(table, None).await? else {
            return Ok(Vec::new());
        };
        let ctx = SessionContext::new();
        t.update_datafusion_session(&ctx.state())
            .map_err(krxflow_lake::LakeError::from)?;
        let provider = t
            .table_provider()
            .await
            .map_err(krxflow_lake::LakeError::from)?;
        let filter = filter(provider.schema().as_ref());
        let df = ctx
            .read_table(provider)
            .map_err(krxflow_lake::LakeError::from)?
            .filter(filter)
            .map_err(krxflow_lake::LakeError::from)?;
        let batches = df.collect().await.map_err(krxflow_lake::LakeError::from)?;
        let def = engine_tables()
            .into_iter()
            .find(|d| d.name == table)
            .map(|d| d.schema);
        match def {
            Some(schema) => Ok(batches
                .iter()
                .map(|b| krxflow_lake::schema::conform(b, &schema))
                .collect::<Result<Vec<_>, _>>()?),
            None => Ok(batches),
        }
    }

    pub(crate) async fn append_engine(
        &self,
        table: &str,
        batch: arrow::array::RecordBatch,
    ) -> ExecResult<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if let Some(local) = &self.run_local {
            local
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((table.to_string(), batch));
            return Ok(());
        }
        self.buffer_or_write(vec![(table.to_string(), batch)]).await
    }

    /// Adds whole records to the buffer (committing when it is full or old), or writes them
    /// now without a buffer.
    pub(crate) async fn buffer_or_write(
        &self,
        records: Vec<(String, arrow::array::RecordBatch)>,
    ) -> ExecResult<()> {
        let Some(buf) = &self.record_buffer else {
            for (table, batch) in records {
                self.write_engine(&table, vec![batch]).await?;
            }
            return Ok(());
        };
        let mut p = buf.pending.lock().await;
        for (table, batch) in records {
            p.rows += batch.num_rows();
            p.tables.entry(table).or_default().push(batch);
        }
        let since = *p.since.get_or_insert_with(std::time::Instant::now);
        if (p.rows >= buf.max_rows || since.elapsed() >= buf.max_age)
            && let Err(e) = self.commit_pending(&mut p).await
        {
            // The records stay buffered and the next flush tries again; the run that happened
            // to trigger this one is not failed for it. The last flush returns the error.
            tracing::warn!("engine records kept for the next flush: {e}");
        }
        Ok(())
    }

    pub(crate) async fn record_run(&self, rec: RunRecord) -> ExecResult<()> {
        let batch = records::runs_batch(&[rec])?;
        self.append_engine(records::RUNS, batch).await
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, StringArray};
    use chrono::Utc;
    use krxflow_lake::Catalog;

    use super::*;

    fn run(id: &str) -> RunRecord {
        RunRecord {
            run_id: id.into(),
            dag: "d".into(),
            ds: NaiveDate::from_ymd_opt(2024, 10, 1).unwrap_or_default(),
            state: "succeeded".into(),
            trigger: "backfill".into(),
            started: Utc::now(),
            ended: Some(Utc::now()),
            tasks_total: 1,
            tasks_failed: 0,
        }
    }

    #[tokio::test]
    async fn a_batched_commit_that_fails_keeps_its_records_for_the_next_flush() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            Catalog::with_tables(engine_tables()),
        )
        .unwrap();
        let hour = std::time::Duration::from_secs(3600);
        let store = RecordStore::new(lake).with_buffered_records(usize::MAX, hour);
        // A file where the runs table's folder goes: its commit fails.
        let blocked = dir.path().join(records::RUNS);
        std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
        std::fs::write(&blocked, b"").unwrap();
        store.record_run(run("a")).await.unwrap();
        assert!(store.flush_records().await.is_err());

        std::fs::remove_file(&blocked).unwrap();
        store.record_run(run("b")).await.unwrap();
        store.flush_records().await.unwrap();
        let batches = store
            .read_engine_where(records::RUNS, lit(true))
            .await
            .unwrap();
        let mut ids: Vec<String> = batches
            .iter()
            .flat_map(|b| {
                let ids = b
                    .column_by_name("run_id")
                    .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                    .unwrap()
                    .clone();
                (0..ids.len()).map(move |i| ids.value(i).to_string())
            })
            .collect();
        ids.sort();
        assert_eq!(ids, ["a", "b"], "the failed commit's run is not lost");
    }
}
