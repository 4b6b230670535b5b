//! The lake's compaction against Delta's OPTIMIZE on the same files, in one command:
//!
//! ```sh
//! cargo bench -p krxflow-lake --bench compaction
//! ```
//!
//! A table of daily rows (a code, a date and eight prices, the shape of `features_daily` or
//! `predictions`) gets 15 daily files, written by the lake as a daily run writes them (one
//! below the 16 at which a write compacts); then either `Lake::compact` (its own commit, on the
//! version it planned on) or deltalake's OPTIMIZE with the lake's writer settings merges them.
//! Runs alternate between the two, each on a fresh table, for the 30 real tickers' size of day
//! and the full market's (2,300 codes). Synthetic rows: the cost is in the files, not in the
//! values. Both must leave the same rows, checked before the table is printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use krxflow_core::{TableDef, WriteMode};
use krxflow_lake::{Catalog, Lake, ReadOptions};

const DAYS: i32 = 15;
const RUNS: usize = 11;
const PRICES: usize = 8;

fn def() -> TableDef {
    let mut fields = vec![
        Field::new("code", DataType::Utf8, false),
        Field::new("date", DataType::Date32, false),
    ];
    fields.extend((0..PRICES).map(|i| Field::new(format!("p{i}"), DataType::Float64, true)));
    TableDef::new("daily", Arc::new(Schema::new(fields)))
        .keys(&["code", "date"])
        .date_column("date")
}

fn day(codes: usize, d: i32) -> RecordBatch {
    let mut cols: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            (0..codes).map(|c| format!("{c:06}")),
        )),
        Arc::new(Date32Array::from_iter_values(
            (0..codes).map(|_| 19_700 + d),
        )),
    ];
    for p in 0..PRICES {
        cols.push(Arc::new(Float64Array::from_iter_values((0..codes).map(
            |c| (c as f64 * 0.37 + f64::from(d) * 1.9 + p as f64).sin() * 1e4,
        ))));
    }
    RecordBatch::try_new(def().schema.clone(), cols).expect("a day's batch")
}

/// A lake whose table holds `DAYS` daily files of `codes` rows.
async fn fifteen_days(codes: usize) -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().expect("temp dir");
    let lake = Lake::open(
        dir.path().to_str().expect("utf-8 path"),
        Catalog::with_tables([def()]),
    )
    .expect("lake");
    for d in 0..DAYS {
        lake.write(
            &def(),
            vec![day(codes, d)],
            WriteMode::Merge,
            None,
            BTreeMap::new(),
        )
        .await
        .expect("a day's write");
    }
    (dir, lake)
}

/// Rows, and the sum of the first price, after the compaction: the same for both.
async fn contents(lake: &Lake) -> (usize, i64) {
    let read = lake
        .read("daily", ReadOptions::default())
        .await
        .expect("read");
    let (mut rows, mut sum) = (0, 0.0);
    for b in &read.batches {
        let p0 = b
            .column_by_name("p0")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .expect("p0");
        rows += b.num_rows();
        sum += p0.iter().flatten().sum::<f64>();
    }
    (rows, (sum * 1e3).round() as i64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    println!(
        "compaction of {DAYS} daily files: the lake's (Lake::compact) against Delta's OPTIMIZE \
         (deltalake 1.1), {RUNS} runs each, alternating, a fresh table each run, 2 threads"
    );
    println!(
        "| codes a day | rows | lake (ms, median) | Delta OPTIMIZE (ms, median) | lake faster by |"
    );
    println!("|---|---|---|---|---|");
    for codes in [30usize, 2_300] {
        let (mut ours, mut delta) = (Vec::new(), Vec::new());
        let mut seen = None;
        for run in 0..2 * RUNS {
            let (_dir, lake) = fifteen_days(codes).await;
            let t = Instant::now();
            if run % 2 == 0 {
                let c = lake
                    .compact("daily", 2)
                    .await
                    .expect("compact")
                    .expect("files");
                ours.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!((c.files_removed, c.files_added), (DAYS as u64, 1));
            } else {
                let table = lake
                    .load("daily", None)
                    .await
                    .expect("load")
                    .expect("table");
                let (table, metrics) = table
                    .optimize()
                    .with_writer_properties(krxflow_lake::writer_properties())
                    .await
                    .expect("optimize");
                delta.push(t.elapsed().as_secs_f64() * 1e3);
                assert_eq!(metrics.num_files_removed, DAYS as u64);
                drop(table);
            }
            let now = contents(&lake).await;
            assert_eq!(now.0, codes * DAYS as usize, "every row once");
            assert_eq!(*seen.get_or_insert(now), now, "the same rows either way");
        }
        let (o, d) = (median(ours), median(delta));
        println!(
            "| {codes} | {} | {o:.1} | {d:.1} | {:.2}x |",
            codes * DAYS as usize,
            d / o
        );
    }
}
