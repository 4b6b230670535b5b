//! Lake behaviour: idempotent writes, point-in-time reads, atomic commits, SQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Date32Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;
use krxflow_core::{TableDef, WriteMode};
use krxflow_lake::{Catalog, Lake, ReadOptions};

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
        Field::new("close", DataType::Float64, true),
    ]))
}

fn def() -> TableDef {
    TableDef::new("prices", schema())
        .keys(&["code", "date"])
        .date_column("date")
        .partition_column("date")
}

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn days(s: &str) -> i32 {
    (d(s) - NaiveDate::default()).num_days() as i32
}

fn batch(rows: &[(&str, &str, f64)]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(Date32Array::from(
                rows.iter().map(|r| days(r.1)).collect::<Vec<_>>(),
            )),
            Arc::new(Float64Array::from(
                rows.iter().map(|r| r.2).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap()
}

fn lake(dir: &tempfile::TempDir) -> Lake {
    Lake::open(dir.path().to_str().unwrap(), Catalog::with_tables([def()])).unwrap()
}

/// Merges `rows` into `prices`.
async fn merge(lake: &Lake, rows: &[(&str, &str, f64)]) -> krxflow_lake::WriteOutcome {
    lake.write(
        &def(),
        vec![batch(rows)],
        WriteMode::Merge,
        None,
        BTreeMap::new(),
    )
    .await
    .unwrap()
}

fn sorted_rows(batches: &[RecordBatch]) -> Vec<(String, i32, Option<f64>)> {
    let mut out = Vec::new();
    for b in batches {
        let code = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let date = b.column(1).as_any().downcast_ref::<Date32Array>().unwrap();
        let close = b.column(2).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push((
                code.value(i).to_string(),
                date.value(i),
                (!close.is_null(i)).then(|| close.value(i)),
            ));
        }
    }
    out.sort_by(|a, b| (a.0.as_str(), a.1).cmp(&(b.0.as_str(), b.1)));
    out
}

#[tokio::test]
async fn merge_twice_with_the_same_rows_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    let rows = batch(&[
        ("005930", "2024-12-16", 55000.0),
        ("000660", "2024-12-16", 170000.0),
    ]);
    let w1 = lake
        .write(
            &def(),
            vec![rows.clone()],
            WriteMode::Merge,
            None,
            BTreeMap::new(),
        )
        .await
        .unwrap();
    let first = lake.read("prices", ReadOptions::default()).await.unwrap();
    let w2 = lake
        .write(&def(), vec![rows], WriteMode::Merge, None, BTreeMap::new())
        .await
        .unwrap();
    let second = lake.read("prices", ReadOptions::default()).await.unwrap();
    assert_eq!(first.num_rows(), 2);
    assert_eq!(sorted_rows(&first.batches), sorted_rows(&second.batches));
    assert!(w1.committed);
    assert!(
        !w2.committed && w2.version == w1.version,
        "rows already stored exactly commit nothing"
    );
    assert_eq!((w2.rows, w2.unchanged), (0, 2));
}

#[tokio::test]
async fn a_merge_writes_only_new_and_changed_rows_and_keeps_files_it_does_not_touch_and_says_which_dates_changed()
 {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    let files = |lake: Lake| async move {
        let t = lake.load("prices", None).await.unwrap().unwrap();
        let mut f: Vec<String> = t.get_file_uris().unwrap().collect();
        f.sort();
        f
    };
    // History in one file, as a first (full) run writes it.
    merge(
        &lake,
        &[("005930", "2024-12-13", 1.0), ("005930", "2024-12-16", 2.0)],
    )
    .await;
    let before = files(lake.clone()).await;
    // A daily run re-sends the overlap day unchanged and adds the new day.
    let w = merge(
        &lake,
        &[("005930", "2024-12-16", 2.0), ("005930", "2024-12-17", 3.0)],
    )
    .await;
    assert!(w.committed);
    assert_eq!((w.rows, w.unchanged), (1, 1));
    // Only the new day changed: a reader of the overlap day sees what it saw.
    assert_eq!(w.changed, Some((d("2024-12-17"), d("2024-12-17"))));
    let after = files(lake.clone()).await;
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert!(
        before.iter().all(|f| after.contains(f)),
        "the history file was rewritten: {before:?} -> {after:?}"
    );
    // A changed value is written; the unchanged row beside it is not counted as written.
    let w = merge(
        &lake,
        &[("005930", "2024-12-16", 2.5), ("005930", "2024-12-17", 3.0)],
    )
    .await;
    assert_eq!((w.rows, w.unchanged), (1, 1));
    assert_eq!(w.changed, Some((d("2024-12-16"), d("2024-12-16"))));
    let read = lake.read("prices", ReadOptions::default()).await.unwrap();
    let rows = sorted_rows(&read.batches);
    let closes: Vec<Option<f64>> = rows.iter().map(|r| r.2).collect();
    assert_eq!(closes, vec![Some(1.0), Some(2.5), Some(3.0)]);
    // The same rows again: nothing committed, no date changed.
    let w = merge(
        &lake,
        &[("005930", "2024-12-13", 1.0), ("005930", "2024-12-16", 2.5)],
    )
    .await;
    assert_eq!((w.committed, w.changed), (false, None));
}

#[tokio::test]
async fn merge_updates_matching_keys_and_inserts_new_ones() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    lake.write(
        &def(),
        vec![batch(&[("005930", "2024-12-16", 1.0)])],
        WriteMode::Merge,
        None,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    lake.write(
        &def(),
        vec![batch(&[
            ("005930", "2024-12-16", 2.0),
            ("005930", "2024-12-17", 3.0),
        ])],
        WriteMode::Merge,
        None,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let read = lake.read("prices", ReadOptions::default()).await.unwrap();
    let rows = sorted_rows(&read.batches);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].2, Some(2.0));
    assert_eq!(rows[1].2, Some(3.0));
}

#[tokio::test]
async fn merge_rejects_duplicate_keys_in_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    let err = lake
        .write(
            &def(),
            vec![batch(&[
                ("005930", "2024-12-16", 1.0),
                ("005930", "2024-12-16", 2.0),
            ])],
            WriteMode::Merge,
            None,
            BTreeMap::new(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("duplicate key"), "{err}");
}

#[tokio::test]
async fn reads_as_of_a_date_hide_later_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    lake.write(
        &def(),
        vec![batch(&[
            ("005930", "2024-12-13", 1.0),
            ("005930", "2024-12-16", 2.0),
            ("005930", "2024-12-17", 3.0),
        ])],
        WriteMode::Merge,
        None,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let read = lake
        .read(
            "prices",
            ReadOptions {
                as_of: Some(d("2024-12-16")),
                since: None,
                version: None,
                columns: None,
            },
        )
        .await
        .unwrap();
    let rows = sorted_rows(&read.batches);
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.1 <= days("2024-12-16")));
}

#[tokio::test]
async fn a_write_that_fails_midway_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    let w = lake
        .write(
            &def(),
            vec![batch(&[("005930", "2024-12-16", 1.0)])],
            WriteMode::Append,
            None,
            BTreeMap::new(),
        )
        .await
        .unwrap();
    // Second batch lacks the required `date` column: the whole write must fail.
    let bad_schema = Arc::new(Schema::new(vec![Field::new("code", DataType::Utf8, false)]));
    let bad = RecordBatch::try_new(
        bad_schema,
        vec![Arc::new(StringArray::from(vec!["000660"]))],
    )
    .unwrap();
    let good = batch(&[("000660", "2024-12-16", 2.0)]);
    let err = lake
        .write(
            &def(),
            vec![good, bad],
            WriteMode::Append,
            None,
            BTreeMap::new(),
        )
        .await;
    assert!(err.is_err());
    assert_eq!(lake.version("prices").await.unwrap(), Some(w.version));
    let read = lake.read("prices", ReadOptions::default()).await.unwrap();
    assert_eq!(read.num_rows(), 1);
}

#[tokio::test]
async fn replace_partition_rewrites_only_its_date() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    let ds = d("2024-12-16");
    for close in [1.0, 2.0] {
        let w = lake
            .write(
                &def(),
                vec![batch(&[
                    ("005930", "2024-12-16", close),
                    ("000660", "2024-12-16", close),
                ])],
                WriteMode::ReplacePartition,
                Some(ds),
                BTreeMap::new(),
            )
            .await
            .unwrap();
        assert_eq!(w.changed, Some((ds, ds)));
    }
    lake.write(
        &def(),
        vec![batch(&[("005930", "2024-12-17", 9.0)])],
        WriteMode::ReplacePartition,
        Some(d("2024-12-17")),
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let rows = sorted_rows(
        &lake
            .read("prices", ReadOptions::default())
            .await
            .unwrap()
            .batches,
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r.2 == Some(2.0)).count(), 2);
    // A row for another date is refused.
    let err = lake
        .write(
            &def(),
            vec![batch(&[("005930", "2024-12-18", 1.0)])],
            WriteMode::ReplacePartition,
            Some(ds),
            BTreeMap::new(),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("2024-12-18"), "{err}");
}

#[tokio::test]
async fn sql_reads_latest_and_earlier_versions() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    let w1 = lake
        .write(
            &def(),
            vec![batch(&[("005930", "2024-12-16", 1.0)])],
            WriteMode::Merge,
            None,
            BTreeMap::new(),
        )
        .await
        .unwrap();
    lake.write(
        &def(),
        vec![batch(&[("000660", "2024-12-16", 1.0)])],
        WriteMode::Merge,
        None,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let count = |batches: Vec<RecordBatch>| {
        batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap()
            .value(0)
    };
    let (_, now) = krxflow_lake::sql::query(&lake, "SELECT count(*) AS n FROM prices")
        .await
        .unwrap();
    assert_eq!(count(now), 2);
    let q = format!("SELECT count(*) AS n FROM prices@v{}", w1.version);
    let (_, then) = krxflow_lake::sql::query(&lake, &q).await.unwrap();
    assert_eq!(count(then), 1);
    // Tables named only inside a CTE, a subquery or beside a version are found too.
    let q = format!(
        "WITH now AS (SELECT * FROM prices) SELECT count(*) AS n FROM now \
         WHERE code IN (SELECT code FROM prices@v{}) AND code IN (SELECT code FROM prices)",
        w1.version
    );
    let (_, nested) = krxflow_lake::sql::query(&lake, &q).await.unwrap();
    assert_eq!(count(nested), 1);
    match krxflow_lake::sql::query(&lake, "SELECT * FROM no_such_table").await {
        Err(krxflow_lake::LakeError::Sql(m)) => assert!(m.contains("no_such_table"), "{m}"),
        other => panic!("an unknown table is a query error: {other:?}"),
    }
    let latest = lake.version("prices").await.unwrap().unwrap();
    let past = format!("SELECT count(*) AS n FROM prices@v{}", latest + 1);
    match krxflow_lake::sql::query(&lake, &past).await {
        Err(e @ krxflow_lake::LakeError::NoSuchVersion { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "table `prices` has no version {}: its versions are 0..={latest}",
                latest + 1
            )
        ),
        other => panic!("a version past the latest must be named: {other:?}"),
    }
    let err = krxflow_lake::sql::query(&lake, "DROP TABLE prices")
        .await
        .unwrap_err();
    assert!(matches!(err, krxflow_lake::LakeError::Sql(_)));
    assert_eq!(
        lake.list_tables().await.unwrap(),
        vec!["prices".to_string()]
    );
}

/// `krxflow sql` is a reader: no DDL, DML, COPY, SET, file or URL tables, and the lake and
/// the file system are unchanged after each refusal.
#[tokio::test]
async fn sql_refuses_every_statement_that_writes_or_reaches_outside_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    merge(&lake, &[("005930", "2024-12-16", 1.0)]).await;
    let before = lake.version("prices").await.unwrap();
    let outside = dir.path().join("outside.csv");
    std::fs::write(&outside, "a,b\n1,2\n").unwrap();
    let copied = dir.path().join("copied.csv");
    let o = outside.display();
    let c = copied.display();
    let refused = [
        "DROP TABLE prices".to_string(),
        "CREATE TABLE t AS SELECT 1 AS x".into(),
        "CREATE VIEW v AS SELECT * FROM prices".into(),
        "INSERT INTO prices VALUES ('x', DATE '2024-12-16', 1.0)".into(),
        "DELETE FROM prices".into(),
        "UPDATE prices SET close = 0".into(),
        format!("COPY prices TO '{c}'"),
        format!("COPY (SELECT 1) TO '{c}' STORED AS CSV"),
        format!("CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '{o}'"),
        format!("SELECT * FROM '{o}'"),
        format!("SELECT * FROM 'file://{o}'"),
        "SELECT * FROM 'https://example.com/x.parquet'".into(),
        "SET datafusion.execution.batch_size = 1".into(),
        "SELECT 1; DROP TABLE prices".into(),
    ];
    for q in &refused {
        let r = krxflow_lake::sql::query(&lake, q).await;
        assert!(r.is_err(), "`{q}` was not refused");
    }
    assert!(!copied.exists(), "COPY wrote a file");
    assert_eq!(lake.version("prices").await.unwrap(), before);
    assert_eq!(
        lake.list_tables().await.unwrap(),
        vec!["prices".to_string()]
    );
    let (_, rows) = krxflow_lake::sql::query(&lake, "SELECT count(*) FROM prices")
        .await
        .unwrap();
    assert_eq!(rows[0].num_rows(), 1, "reading still works");
}

#[tokio::test]
async fn compaction_packs_small_files_into_one_and_changes_no_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    for (i, day) in ["2024-12-16", "2024-12-17", "2024-12-18", "2024-12-19"]
        .iter()
        .enumerate()
    {
        merge(&lake, &[("005930", day, i as f64)]).await;
    }
    let before = lake.read("prices", ReadOptions::default()).await.unwrap();
    assert_eq!(
        lake.compact("prices", 10).await.unwrap(),
        None,
        "4 files are below the threshold"
    );
    let c = lake.compact("prices", 3).await.unwrap().unwrap();
    assert_eq!((c.files_before, c.files_removed, c.files_added), (4, 4, 1));
    let after = lake.read("prices", ReadOptions::default()).await.unwrap();
    assert_eq!(after.version, c.version);
    assert_eq!(sorted_rows(&before.batches), sorted_rows(&after.batches));
    let t = lake.load("prices", None).await.unwrap().unwrap();
    assert_eq!(t.get_file_uris().unwrap().count(), 1);
    // The version before the compaction still reads the same rows (time travel).
    let old = lake
        .read(
            "prices",
            ReadOptions {
                version: Some(before.version),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(sorted_rows(&old.batches), sorted_rows(&after.batches));
    assert_eq!(lake.compact("absent", 1).await.unwrap(), None);
}

/// Two processes' first writes to one table race to create it: the loser must not land as
/// a blind append beside the winner (that duplicated every shared key); it is planned again
/// as a merge into the table the winner created.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_first_writes_of_the_same_keys_create_the_table_once_without_duplicates() {
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let rows = [("005930", "2024-12-13", 1.0), ("005930", "2024-12-16", 2.0)];
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let lake = lake(&dir); // its own Lake: no shared in-process lock
                tokio::spawn(async move {
                    lake.write(
                        &def(),
                        vec![batch(&rows)],
                        WriteMode::Merge,
                        None,
                        BTreeMap::new(),
                    )
                    .await
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap().unwrap();
        }
        let read = lake(&dir)
            .read("prices", ReadOptions::default())
            .await
            .unwrap();
        assert_eq!(
            read.num_rows(),
            2,
            "round {round}: {:?}",
            sorted_rows(&read.batches)
        );
    }
}

#[tokio::test]
async fn a_projected_read_returns_only_the_named_columns_still_filtered_by_date() {
    let dir = tempfile::tempdir().unwrap();
    let lake = lake(&dir);
    lake.write(
        &def(),
        vec![batch(&[
            ("005930", "2024-12-13", 1.0),
            ("005930", "2024-12-16", 2.0),
            ("000660", "2024-12-17", 3.0),
        ])],
        WriteMode::Merge,
        None,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let read = lake
        .read(
            "prices",
            ReadOptions {
                as_of: Some(d("2024-12-16")),
                columns: Some(vec!["close".into(), "code".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let names: Vec<&str> = read
        .schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    assert_eq!(
        names,
        ["close", "code"],
        "the asked columns, in the asked order"
    );
    let batch = arrow::compute::concat_batches(&read.schema, &read.batches).unwrap();
    assert_eq!(batch.num_columns(), 2);
    let mut closes: Vec<f64> = batch
        .column(0)
        .as_any()
        .downcast_ref::<Float64Array>()
        .unwrap()
        .values()
        .to_vec();
    closes.sort_by(f64::total_cmp);
    assert_eq!(
        closes,
        [1.0, 2.0],
        "the as-of filter on `date` still applies"
    );

    let err = lake
        .read(
            "prices",
            ReadOptions {
                columns: Some(vec!["code".into(), "volume".into()]),
                ..Default::default()
            },
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("prices") && err.contains("`volume`"), "{err}");
}

/// `quotes` (code, date, close) as first declared, and as declared later with `extra` columns.
fn quotes(extra: &[Field]) -> TableDef {
    let mut fields: Vec<Field> = schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend_from_slice(extra);
    TableDef::new("quotes", Arc::new(Schema::new(fields)))
        .keys(&["code", "date"])
        .date_column("date")
}

#[tokio::test]
async fn a_column_declared_after_the_table_was_written_is_added_and_old_rows_read_it_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().to_str().unwrap();
    let old = quotes(&[]);
    let old_lake = Lake::open(at, Catalog::with_tables([old.clone()])).unwrap();
    old_lake
        .write(
            &old,
            vec![batch(&[
                ("005930", "2024-12-13", 1.0),
                ("005930", "2024-12-16", 2.0),
            ])],
            WriteMode::Merge,
            None,
            BTreeMap::new(),
        )
        .await
        .unwrap();

    // The catalog gains a nullable column: the next write adds it to the stored table.
    let new = quotes(&[Field::new("volume", DataType::Float64, true)]);
    let lake = Lake::open(at, Catalog::with_tables([new.clone()])).unwrap();
    let rows = RecordBatch::try_new(
        new.schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["005930", "005930"])),
            Arc::new(Date32Array::from(vec![
                days("2024-12-16"),
                days("2024-12-17"),
            ])),
            Arc::new(Float64Array::from(vec![2.0, 3.0])),
            Arc::new(Float64Array::from(vec![10.0, 11.0])),
        ],
    )
    .unwrap();
    let wrote = lake
        .write(&new, vec![rows], WriteMode::Merge, None, BTreeMap::new())
        .await
        .unwrap();
    assert!(wrote.committed);
    let read = lake.read("quotes", ReadOptions::default()).await.unwrap();
    let mut got: Vec<(i32, Option<f64>)> = Vec::new();
    for b in &read.batches {
        let date = b.column_by_name("date").unwrap();
        let date = date.as_any().downcast_ref::<Date32Array>().unwrap();
        let vol = b.column_by_name("volume").unwrap();
        let vol = vol.as_any().downcast_ref::<Float64Array>().unwrap();
        got.extend(
            (0..b.num_rows()).map(|i| (date.value(i), (!vol.is_null(i)).then(|| vol.value(i)))),
        );
    }
    got.sort_by_key(|r| r.0);
    assert_eq!(
        got,
        vec![
            (days("2024-12-13"), None),
            (days("2024-12-16"), Some(10.0)),
            (days("2024-12-17"), Some(11.0)),
        ],
        "the old row reads null, the rewritten and new rows their values"
    );
    let (_, sql) = krxflow_lake::sql::query(
        &lake,
        "SELECT count(*) AS n FROM quotes WHERE volume IS NULL",
    )
    .await
    .unwrap();
    let n = sql[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    assert_eq!(n.value(0), 1, "SQL sees the added column too");

    // A lacking column that is not nullable cannot be added: the write names it.
    let strict = quotes(&[
        Field::new("volume", DataType::Float64, true),
        Field::new("venue", DataType::Utf8, false),
    ]);
    let lake = Lake::open(at, Catalog::with_tables([strict.clone()])).unwrap();
    let rows = RecordBatch::try_new(
        strict.schema.clone(),
        vec![
            Arc::new(StringArray::from(vec!["005930"])),
            Arc::new(Date32Array::from(vec![days("2024-12-18")])),
            Arc::new(Float64Array::from(vec![4.0])),
            Arc::new(Float64Array::from(vec![12.0])),
            Arc::new(StringArray::from(vec!["KRX"])),
        ],
    )
    .unwrap();
    let err = lake
        .write(&strict, vec![rows], WriteMode::Merge, None, BTreeMap::new())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`venue`") && err.contains("not nullable"),
        "{err}"
    );
}

/// A cached session (the lake's own scan under DataFusion, as a task's checks read) answers
/// what Delta's provider answers, whatever date filters the query pushes down.
#[tokio::test]
async fn a_cached_session_answers_what_the_delta_provider_answers() {
    let dir = tempfile::tempdir().unwrap();
    let plain = TableDef::new("quotes", schema())
        .keys(&["code", "date"])
        .date_column("date");
    let lake = Lake::open(
        dir.path().to_str().unwrap(),
        Catalog::with_tables([plain.clone()]),
    )
    .unwrap();
    for (i, day) in ["2024-12-12", "2024-12-13", "2024-12-16"]
        .iter()
        .enumerate()
    {
        let v = i as f64;
        lake.write(
            &plain,
            vec![batch(&[("005930", day, v), ("000660", day, v + 10.0)])],
            WriteMode::Merge,
            None,
            BTreeMap::new(),
        )
        .await
        .unwrap();
    }
    let pretty = |b: &[RecordBatch]| {
        arrow::util::pretty::pretty_format_batches(b)
            .unwrap()
            .to_string()
    };
    let cached = krxflow_lake::sql::Session::cached(&lake).unwrap();
    for q in [
        "SELECT * FROM quotes ORDER BY code, date",
        "SELECT code, close FROM quotes WHERE date = DATE '2024-12-13' ORDER BY code",
        "SELECT count(*) AS n FROM quotes WHERE date > DATE '2024-12-12' AND date <= DATE '2024-12-16'",
        "SELECT code FROM quotes WHERE date BETWEEN DATE '2024-12-13' AND DATE '2024-12-20' AND close > 5 ORDER BY code",
        "SELECT count(*) AS n FROM quotes WHERE DATE '2024-12-13' >= date",
        "SELECT count(*) AS n FROM quotes WHERE date > DATE '2024-12-16' - INTERVAL '3' DAY",
        "SELECT count(*) AS n FROM quotes WHERE date > DATE '2024-12-16' AND date < DATE '2024-12-13'",
        "SELECT code FROM quotes WHERE date <= DATE '2024-12-16' GROUP BY code HAVING count(*) > 2 EXCEPT SELECT code FROM quotes WHERE close > 11 ORDER BY code",
    ] {
        let (_, want) = krxflow_lake::sql::query(&lake, q).await.unwrap();
        let (_, got) = cached.query(q).await.unwrap();
        assert_eq!(pretty(&got), pretty(&want), "{q}");
    }
    // A later write is seen by the next statement of the same cached session.
    lake.write(
        &plain,
        vec![batch(&[("035420", "2024-12-16", 1.0)])],
        WriteMode::Merge,
        None,
        BTreeMap::new(),
    )
    .await
    .unwrap();
    let (_, n) = cached
        .query("SELECT count(*) AS n FROM quotes WHERE date = DATE '2024-12-16'")
        .await
        .unwrap();
    assert_eq!(
        pretty(&n),
        pretty(
            &krxflow_lake::sql::query(
                &lake,
                "SELECT count(*) AS n FROM quotes WHERE date = DATE '2024-12-16'"
            )
            .await
            .unwrap()
            .1
        )
    );
}
