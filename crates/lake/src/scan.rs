//! Direct scans: a plain table's live Parquet files read without a query plan.
//!
//! A read through DataFusion plans a query and has Delta's provider replay the log for the
//! file list on every scan; for the small reads an operator makes each day (tens of rows to a
//! few thousand), that fixed cost was most of the read. A table written by this lake is plain
//! Delta: reader protocol 1 (no deletion vectors, no column mapping) and no partition
//! columns, so its rows are exactly the rows of its live files, which the loaded snapshot
//! lists with their statistics. This reads those files directly: files and row groups whose
//! date statistics miss the range are skipped, only the wanted columns are decoded, and the
//! rows outside the range are filtered out. Any other table (written elsewhere with deletion
//! vectors, partitions, absolute file paths) is left to DataFusion.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Date32Array, RecordBatch, RecordBatchOptions};
use arrow::compute::kernels::cmp::{gt_eq, lt_eq};
use arrow::compute::{and, filter_record_batch};
use arrow::datatypes::{DataType, Field, Schema};
use deltalake::DeltaTable;
use deltalake::parquet::arrow::ProjectionMask;
use deltalake::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use deltalake::parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use deltalake::parquet::errors::ParquetError;
use deltalake::parquet::file::metadata::{
    ParquetMetaData, ParquetMetaDataReader, RowGroupMetaData,
};
use deltalake::parquet::file::statistics::Statistics;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::cache::{FileCache, file_key};
use crate::dates::date32;
use crate::error::LakeResult;

/// Which rows a direct scan keeps: those whose `column` (a Date32 column) lies in
/// `[from, to]`, either bound open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DateRange<'a> {
    pub column: &'a str,
    pub from: Option<i32>,
    pub to: Option<i32>,
}

impl DateRange<'_> {
    fn is_open(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }

    /// Whether `[lo, hi]` (a file's or row group's statistics) can hold a row in the range.
    fn overlaps(&self, lo: i32, hi: i32) -> bool {
        self.from.is_none_or(|f| hi >= f) && self.to.is_none_or(|t| lo <= t)
    }
}

/// Data files read at once by a scan: each is decoded on a task of its own, so a read that
/// decodes many files (a year of outcomes on a new process) uses every core, and a remote
/// store's requests overlap. Eight held more decoded files alive at once for no gain in time
/// (a 134-day full-market replay's peak 1.35 -> 1.83 GiB; benches/README.md).
pub(crate) const FILES_IN_FLIGHT: usize = 4;

/// The rows of `table` (as loaded) within `range`, with only `columns` (all when `None`; a
/// name the table does not have is left out, as the caller checks names), in the files'
/// stored types, in the order of the table's files. `None` when the table is not plain (see
/// the module doc): read it through DataFusion instead.
pub(crate) async fn scan(
    cache: &Arc<FileCache>,
    table: &DeltaTable,
    range: Option<DateRange<'_>>,
    columns: Option<&[String]>,
) -> LakeResult<Option<Vec<RecordBatch>>> {
    let snapshot = table.snapshot()?;
    if !plain(snapshot) {
        return Ok(None);
    }
    let range = range.filter(|r| !r.is_open());
    let mut files = Vec::new();
    for file in snapshot.log_data().iter() {
        if file.path().contains("://") {
            return Ok(None);
        }
        let stats = file
            .stats()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
        if let Some(stats) = &stats {
            if stats.get("numRecords").and_then(serde_json::Value::as_i64) == Some(0) {
                continue;
            }
            if let Some(r) = range
                && let Some((lo, hi)) = date_bounds(stats, r.column)
                && !r.overlaps(lo, hi)
            {
                continue;
            }
        }
        let Ok(size) = u64::try_from(file.size()) else {
            return Ok(None);
        };
        files.push((file.object_store_path(), size));
    }
    let want = Want {
        range: range.map(|r| (r.column.to_string(), r.from, r.to)),
        columns: columns.map(<[String]>::to_vec),
    };
    read_files(cache, table, files, want).await
}

/// Every row of `files` (paths in `table`'s store, with their sizes), file after file, in
/// the files' stored types; `None` when one is not a file this lake can read directly (see
/// the module doc). Compaction reads the files it merges with this.
pub(crate) async fn read_whole_files(
    cache: &Arc<FileCache>,
    table: &DeltaTable,
    files: Vec<(Path, u64)>,
) -> LakeResult<Option<Vec<RecordBatch>>> {
    let want = Want {
        range: None,
        columns: None,
    };
    read_files(cache, table, files, want).await
}

/// The rows of `files` that `want` keeps, in the order of `files`.
async fn read_files(
    cache: &Arc<FileCache>,
    table: &DeltaTable,
    files: Vec<(Path, u64)>,
    want: Want,
) -> LakeResult<Option<Vec<RecordBatch>>> {
    let want = Arc::new(want);
    let store = table.object_store();
    let url = table.table_url().to_string();
    let reads = files.into_iter().map(|(path, size)| {
        let key = file_key(&url, path.as_ref(), size);
        let reader = FileReader {
            store: store.clone(),
            path,
            size,
        };
        let (cache, want) = (cache.clone(), want.clone());
        async move { read_file(&cache, &key, reader, &want).await }
    });
    // On a task each where there is a runtime to spawn on (the binary's, the tests'); in
    // turn otherwise.
    let per_file: Vec<Option<Vec<RecordBatch>>> = match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            futures::stream::iter(reads.map(|read| rt.spawn(read)))
                .buffered(FILES_IN_FLIGHT)
                .map(|joined| joined?)
                .try_collect()
                .await?
        }
        Err(_) => {
            futures::stream::iter(reads)
                .buffered(1)
                .try_collect()
                .await?
        }
    };
    let mut out = Vec::new();
    for batches in per_file {
        match batches {
            Some(b) => out.extend(b),
            None => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// Whether the rows of `snapshot` are exactly those of its files, read as they are: no
/// deletion vectors or column mapping (reader protocol 1), no partition columns. (A file at
/// an absolute URL is the other case not read directly.)
pub(crate) fn plain(snapshot: &deltalake::table::state::DeltaTableState) -> bool {
    snapshot.protocol().min_reader_version() <= 1
        && snapshot.metadata().partition_columns().is_empty()
}

/// What a scan keeps, owned (each file is read on a task of its own): the range as
/// (column, from, to) and the columns.
struct Want {
    range: Option<(String, Option<i32>, Option<i32>)>,
    columns: Option<Vec<String>>,
}

impl Want {
    fn range(&self) -> Option<DateRange<'_>> {
        self.range.as_ref().map(|(column, from, to)| DateRange {
            column,
            from: *from,
            to: *to,
        })
    }
}

/// The rows of one data file that `want` keeps; `None` when its range column is not a date
/// (the table is not one this lake wrote: read it through DataFusion).
async fn read_file(
    cache: &FileCache,
    key: &str,
    mut reader: FileReader,
    want: &Want,
) -> LakeResult<Option<Vec<RecordBatch>>> {
    let (range, columns) = (want.range(), want.columns.as_deref());
    let meta = match cache.metadata(key) {
        Some(meta) => meta,
        None => {
            let meta = ArrowReaderMetadata::load_async(&mut reader, Default::default()).await?;
            let meta = without_views(meta)?;
            cache.put_metadata(key, meta.clone());
            meta
        }
    };
    let schema = meta.schema().clone();
    if let Some(r) = range {
        match schema.field_with_name(r.column).map(|f| f.data_type()) {
            Ok(arrow::datatypes::DataType::Date32) => {}
            // A file written before the column existed: its rows' dates are null, and a
            // null date is outside any range.
            Err(_) => return Ok(Some(Vec::new())),
            Ok(_) => return Ok(None),
        }
    }
    let parquet_schema = meta.parquet_schema();
    let wanted = |name: &str| {
        columns.is_none_or(|cols| cols.iter().any(|c| c == name))
            || range.is_some_and(|r| r.column == name)
    };
    let roots: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| wanted(f.name()))
        .map(|(i, _)| i)
        .collect();
    let projected = Arc::new(schema.project(&roots)?);
    let leaf = range.and_then(|r| {
        parquet_schema
            .columns()
            .iter()
            .position(|c| c.path().string() == r.column)
    });
    let mut out = Vec::new();
    let groups = meta.metadata().row_groups();
    for (g, group) in groups.iter().enumerate() {
        if group.num_rows() == 0
            || range.is_some_and(|r| {
                leaf.and_then(|l| row_group_bounds(group, l))
                    .is_some_and(|(lo, hi)| !r.overlaps(lo, hi))
            })
        {
            continue;
        }
        let chunks = decoded(cache, key, &reader, &meta, g, &roots).await?;
        let rows = usize::try_from(group.num_rows()).unwrap_or(0);
        let b = RecordBatch::try_new_with_options(
            projected.clone(),
            chunks,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        let b = match range {
            Some(r) => keep_range(&b, r)?,
            None => b,
        };
        if b.num_rows() == 0 {
            continue;
        }
        out.push(project(b, columns)?);
    }
    Ok(Some(out))
}

/// `meta` with the strings and binaries that its file's writer stored as views (Delta's
/// OPTIMIZE writes DataFusion's `Utf8View`) decoded as plain arrays, the types tables declare:
/// decoded as views, every read of a compacted file had them cast into a second copy.
fn without_views(meta: ArrowReaderMetadata) -> LakeResult<ArrowReaderMetadata> {
    let schema = meta.schema();
    let plain = |t: &DataType| match t {
        DataType::Utf8View => Some(DataType::Utf8),
        DataType::BinaryView => Some(DataType::Binary),
        _ => None,
    };
    if !schema
        .fields()
        .iter()
        .any(|f| plain(f.data_type()).is_some())
    {
        return Ok(meta);
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match plain(f.data_type()) {
            Some(t) => f.as_ref().clone().with_data_type(t),
            None => f.as_ref().clone(),
        })
        .collect();
    let hint = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    let options = ArrowReaderOptions::new().with_schema(hint);
    Ok(ArrowReaderMetadata::try_new(
        meta.metadata().clone(),
        options,
    )?)
}

/// The decoded chunks of root columns `roots` in row group `group` of the file `key`: those
/// the cache holds, the others decoded (only those) and cached.
async fn decoded(
    cache: &FileCache,
    key: &str,
    reader: &FileReader,
    meta: &ArrowReaderMetadata,
    group: usize,
    roots: &[usize],
) -> LakeResult<Vec<ArrayRef>> {
    let mut chunks = cache.chunks(key, group, roots);
    let missing: Vec<usize> = (0..roots.len()).filter(|&i| chunks[i].is_none()).collect();
    if missing.is_empty() {
        return Ok(chunks.into_iter().flatten().collect());
    }
    let rows = meta.metadata().row_group(group).num_rows();
    let mask = ProjectionMask::roots(meta.parquet_schema(), missing.iter().map(|&i| roots[i]));
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchStreamBuilder::new_with_metadata(reader.clone(), meta.clone())
            .with_projection(mask)
            .with_row_groups(vec![group])
            .with_batch_size(usize::try_from(rows).unwrap_or(usize::MAX).max(1))
            .build()?
            .try_collect()
            .await?;
    for (j, &i) in missing.iter().enumerate() {
        let parts: Vec<&dyn Array> = batches.iter().map(|b| b.column(j).as_ref()).collect();
        let chunk = match parts.as_slice() {
            [one] => one.slice(0, one.len()),
            _ => arrow::compute::concat(&parts)?,
        };
        cache.put_chunk(key, group, roots[i], chunk.clone());
        chunks[i] = Some(chunk);
    }
    Ok(chunks.into_iter().flatten().collect())
}

/// One data file read through the table's object store: the footer first, then the column
/// chunks of the row groups kept, in ranged reads (as DataFusion's Parquet reader does).
#[derive(Clone)]
struct FileReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
    size: u64,
}

/// Bytes to fetch from the end of a file for its footer in one read (most of ours are smaller).
const FOOTER_HINT: usize = 64 * 1024;

impl AsyncFileReader for FileReader {
    fn get_bytes(
        &mut self,
        range: std::ops::Range<u64>,
    ) -> BoxFuture<'_, deltalake::parquet::errors::Result<bytes::Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<std::ops::Range<u64>>,
    ) -> BoxFuture<'_, deltalake::parquet::errors::Result<Vec<bytes::Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(|e| ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, deltalake::parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let meta = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_HINT))
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

/// A file's min and max of date column `col` from its Delta statistics (ISO dates).
pub(crate) fn date_bounds(stats: &serde_json::Value, col: &str) -> Option<(i32, i32)> {
    let parse = |v: &serde_json::Value| {
        chrono::NaiveDate::parse_from_str(v.as_str()?, "%Y-%m-%d")
            .ok()
            .map(date32)
    };
    let lo = parse(stats.get("minValues")?.get(col)?)?;
    let hi = parse(stats.get("maxValues")?.get(col)?)?;
    Some((lo, hi))
}

/// A row group's min and max of leaf column `leaf` (a Date32 column is stored as INT32).
fn row_group_bounds(rg: &RowGroupMetaData, leaf: usize) -> Option<(i32, i32)> {
    match rg.column(leaf).statistics()? {
        Statistics::Int32(s) => Some((*s.min_opt()?, *s.max_opt()?)),
        _ => None,
    }
}

/// The rows of `b` whose range column lies in the range (a null date is outside it).
fn keep_range(b: &RecordBatch, r: DateRange<'_>) -> LakeResult<RecordBatch> {
    let dates = b
        .column_by_name(r.column)
        .and_then(|c| c.as_any().downcast_ref::<Date32Array>())
        .ok_or_else(|| {
            arrow::error::ArrowError::SchemaError(format!("no Date32 column `{}`", r.column))
        })?;
    let mut mask: Option<BooleanArray> = None;
    if let Some(f) = r.from {
        mask = Some(gt_eq(dates, &Date32Array::new_scalar(f))?);
    }
    if let Some(t) = r.to {
        let upto = lt_eq(dates, &Date32Array::new_scalar(t))?;
        mask = Some(match mask {
            Some(m) => and(&m, &upto)?,
            None => upto,
        });
    }
    match mask {
        // A null in the mask (a null date) is not a true: it counts as a row to drop.
        Some(m) if m.true_count() < b.num_rows() => Ok(filter_record_batch(b, &m)?),
        _ => Ok(b.clone()),
    }
}

/// `b` with only `columns` (in the file's order; the caller conforms to the declared order).
fn project(b: RecordBatch, columns: Option<&[String]>) -> LakeResult<RecordBatch> {
    let Some(cols) = columns else { return Ok(b) };
    let schema = b.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| cols.iter().any(|c| c == schema.field(i).name()))
        .collect();
    if keep.len() == schema.fields().len() {
        return Ok(b);
    }
    Ok(b.project(&keep)?)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use arrow::row::{RowConverter, SortField};
    use krxflow_core::WriteMode;

    use crate::catalog::Catalog;
    use crate::read::{ReadOptions, TableRead};
    use crate::table::Lake;
    use crate::testutil::{price_rows, prices, prices_lake};

    /// Every row of a read, sorted, in arrow's row format: equal multisets of rows compare equal.
    fn rows(r: &TableRead) -> Vec<Vec<u8>> {
        let conv = RowConverter::new(
            r.schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )
        .unwrap();
        let mut out: Vec<Vec<u8>> = Vec::new();
        for b in &r.batches {
            assert_eq!(b.schema(), r.schema, "batches in the declared schema");
            let rows = conv.convert_columns(b.columns()).unwrap();
            out.extend(rows.iter().map(|row| row.data().to_vec()));
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn a_direct_read_returns_the_rows_a_datafusion_plan_returns_for_every_option() {
        let (_dir, lake) = prices_lake();
        let def = prices();
        // 30 days of two codes, each day re-sending the previous day with a changed close (a
        // merge that rewrites files), and a compaction on the way (16 files).
        for d in 0..30 {
            let mut day = vec![("a", d, f64::from(d)), ("b", d, -f64::from(d))];
            if d > 0 {
                day.push(("a", d - 1, f64::from(d) + 0.5));
            }
            lake.write(
                &def,
                price_rows(&day),
                WriteMode::Merge,
                None,
                BTreeMap::new(),
            )
            .await
            .unwrap();
        }
        let latest = lake.version("prices").await.unwrap().unwrap();
        let options = [
            ReadOptions::default(),
            ReadOptions {
                as_of: Some(day(10)),
                ..Default::default()
            },
            ReadOptions {
                since: Some(day(25)),
                ..Default::default()
            },
            ReadOptions {
                since: Some(day(3)),
                as_of: Some(day(7)),
                ..Default::default()
            },
            ReadOptions {
                since: Some(day(40)),
                ..Default::default()
            },
            ReadOptions {
                columns: Some(vec!["close".into(), "code".into()]),
                as_of: Some(day(12)),
                ..Default::default()
            },
            ReadOptions {
                version: Some(5),
                ..Default::default()
            },
            ReadOptions {
                version: Some(latest - 3),
                as_of: Some(day(20)),
                ..Default::default()
            },
        ];
        for opts in options {
            let direct = lake.read("prices", opts.clone()).await.unwrap();
            let table = lake.load("prices", opts.version).await.unwrap().unwrap();
            let planned = lake.read_planned(&table, "prices", &opts).await.unwrap();
            assert_eq!(direct.schema, planned.schema, "{opts:?}");
            assert_eq!(direct.version, planned.version, "{opts:?}");
            assert_eq!(rows(&direct), rows(&planned), "{opts:?}");
        }
        let table = lake.load("prices", None).await.unwrap().unwrap();
        let served = super::scan(&lake.files, &table, None, None).await.unwrap();
        assert!(served.is_some(), "a table this lake wrote is read directly");
        let all = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(
            all.num_rows(),
            60,
            "one row per key: merges replaced, never duplicated"
        );
        let bad = ReadOptions {
            columns: Some(vec!["nope".into()]),
            ..Default::default()
        };
        let err = lake.read("prices", bad).await.unwrap_err().to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[tokio::test]
    async fn a_file_read_once_is_served_from_memory_and_a_wider_read_decodes_the_rest() {
        let (dir, lake) = prices_lake();
        let at = dir.path().to_str().unwrap();
        let day_rows = |d: i32| price_rows(&[("a", d, f64::from(d)), ("b", d, -f64::from(d))]);
        let def = prices();
        for d in 0..3 {
            let w = lake.write(&def, day_rows(d), WriteMode::Merge, None, BTreeMap::new());
            w.await.unwrap();
        }
        let narrow = ReadOptions {
            columns: Some(vec!["close".into()]),
            ..Default::default()
        };
        let first = lake.read("prices", narrow.clone()).await.unwrap();
        let uncached = Lake::open(at, Catalog::with_tables([prices()]))
            .unwrap()
            .with_file_cache(0);
        let all = uncached
            .read("prices", ReadOptions::default())
            .await
            .unwrap();
        // The wider read decodes `code` and `date` next to the cached `close`.
        let wide = lake.read("prices", ReadOptions::default()).await.unwrap();
        assert_eq!(rows(&wide), rows(&all));
        assert_eq!(wide.num_rows(), 6);

        // With the data files gone, what was decoded is still served; without a cache the
        // read fails, as it must.
        for f in std::fs::read_dir(dir.path().join("prices")).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "parquet") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let again = lake.read("prices", narrow).await.unwrap();
        assert_eq!(rows(&again), rows(&first));
        assert_eq!(
            rows(&lake.read("prices", ReadOptions::default()).await.unwrap()),
            rows(&all)
        );
        assert!(
            uncached
                .read("prices", ReadOptions::default())
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_file_delta_optimize_wrote_is_decoded_in_the_declared_types_not_as_views() {
        let (_dir, lake) = prices_lake();
        let def = prices();
        for d in 0..3 {
            let rows = price_rows(&[("a", d, f64::from(d)), ("b", d, -f64::from(d))]);
            let w = lake.write(&def, rows, WriteMode::Merge, None, BTreeMap::new());
            w.await.unwrap();
        }
        // Delta's OPTIMIZE (krxflow compacted with it before 2026-12; other engines still do)
        // writes DataFusion's view types.
        let table = lake.load("prices", None).await.unwrap().unwrap();
        let session = std::sync::Arc::new(lake.datafusion_session().state());
        let (table, _) = table.optimize().with_session_state(session).await.unwrap();
        assert_eq!(table.snapshot().unwrap().log_data().num_files(), 1);
        let batches = super::scan(&lake.files, &table, None, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 6);
        for b in &batches {
            for f in b.schema().fields() {
                assert!(
                    !matches!(
                        f.data_type(),
                        arrow::datatypes::DataType::Utf8View
                            | arrow::datatypes::DataType::BinaryView
                    ),
                    "{} decoded as {}",
                    f.name(),
                    f.data_type()
                );
            }
        }
    }

    fn day(d: i32) -> chrono::NaiveDate {
        crate::dates::from_date32(d).unwrap()
    }
}
