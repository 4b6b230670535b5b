//! Operator overhead of the model operators, each against the bare library call on the same
//! data, measured in one process (ratios, not absolute targets):
//!
//! * `lgbm.train` (per-ticker, 30 real tickers x horizons 1/3/5, one worker) vs the same
//!   LightGBM C API calls alone (`krxflow_models::lightgbm` `Dataset` + `Booster::train`, the
//!   thin binding the operator uses; target overhead <= 10%);
//! * `forecast.chronos` on a Chronos-Bolt-small-sized random model (d_model 512, 6+6 layers)
//!   vs bare `session.run` on the same batches (series/s; target overhead <= 5%);
//! * `sentiment.finbert` on a BERT-base-sized random model vs bare `session.run` on the same
//!   padded batches (sentences/s; target overhead <= 5%).
//!
//! Then, for the two ONNX members, the same work on the same inputs through **the Python path**
//! a quant would write (`benches/peer/onnx_models.py`: the Hugging Face `tokenizers` package,
//! ONNX Runtime's Python API, NumPy/pandas; installed into `.venv` by `benches/peer/setup.sh`):
//! min / median / max over 5 runs after a warm-up (both keep the ONNX session between runs, as
//! krxflow's operators do within a process; the tokenizer is loaded each run on both sides),
//! and the ratio of medians, after checking that both produced the same values
//! (probabilities and quantile prices within 1e-6).
//!
//! Models: `KRXFLOW_BENCH_MODELS` (default ~/.cache/krxflow-bench) holding `chronos_bolt_small`
//! and `finbert_base`, made by `crates/models/export/chronos_bolt.py --random-size small` and
//! `finbert.py --random-size base`; each part is skipped with a message when its input is absent.
//! Run: `cargo bench -p krxflow-pipelines --bench models`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, Date32Array, RecordBatch, StringArray};
use async_trait::async_trait;
use chrono::NaiveDate;
use krxflow_core::calendar::WeekdayCalendar;
use krxflow_core::{
    ArtifactStore, InputBatches, OpResult, Operator, TaskContext, TaskCounters, TaskObservations,
};
use krxflow_models::finbert::FinBert;
use krxflow_models::lgbm::{self as gbm, GbmTask};
use krxflow_models::lightgbm;
use krxflow_models::onnx::{self, Device};
use krxflow_pipelines::common::dates::days;
use krxflow_pipelines::common::direction::Direction;
use krxflow_pipelines::features::build::build_features;
use krxflow_pipelines::lgbm::target::Labels;
use krxflow_pipelines::lgbm::train::{TrainParams, labels_for, plan};
use krxflow_pipelines::lgbm::{Closes, FeatureRows, Scope, default_features};
use krxflow_pipelines::tables;
use ort::session::Session;
use ort::session::builder::GraphOptimizationLevel;
use ort::value::Tensor;

mod common;
use common::{
    RUNS, Stats, compare, krx30_bars, machine, peer_setup, peer_timings, run_python, shared_data,
    time_runs, write_parquet,
};

#[derive(Default)]
struct MemStore(Mutex<BTreeMap<String, Vec<u8>>>);

#[async_trait]
impl ArtifactStore for MemStore {
    async fn put(&self, path: &str, bytes: Vec<u8>) -> OpResult<()> {
        self.0.lock().expect("store").insert(path.into(), bytes);
        Ok(())
    }
    async fn get(&self, path: &str) -> OpResult<Option<Vec<u8>>> {
        Ok(self.0.lock().expect("store").get(path).cloned())
    }
}

fn ctx(ds: NaiveDate) -> TaskContext {
    TaskContext {
        dag: "bench".into(),
        task: "bench".into(),
        ds,
        run_id: "bench".into(),
        attempt: 1,
        calendar: Arc::new(WeekdayCalendar::default()),
        cancel: Default::default(),
        counters: Arc::new(TaskCounters::default()),
        observations: Arc::new(TaskObservations::default()),
        artifacts: Arc::new(Mutex::new(Vec::new())),
        watermarks: BTreeMap::new(),
        store: Some(Arc::new(MemStore::default())),
    }
}

fn bench_lgbm(rt: &tokio::runtime::Runtime, data: &Path) {
    let ds = NaiveDate::from_ymd_opt(2024, 12, 13).expect("date");
    let Some(bars) = krx30_bars(data, ds) else {
        eprintln!(
            "lgbm: skipped: {} not found",
            data.join("ohlcv/krx_daily_30").display()
        );
        return;
    };
    let features = rt
        .block_on(build_features(&bars, None, None, "KS11", false))
        .expect("features");
    let params = serde_json::json!({"scope": "per_ticker", "workers": 1});
    let p: TrainParams = serde_json::from_value(params.clone()).expect("params");

    // Bare: the same jobs' matrices (prepared outside the timing), then only LightGBM calls.
    let names = default_features();
    let closes = Closes::from_bars(&bars).expect("closes");
    let rows = FeatureRows::from_batch(&features, &names, |_, _| true).expect("rows");
    let labels = Labels::new(p.target, &rows, labels_for(&rows, &closes, &p.horizons));
    let jobs = plan(&p, Scope::PerTicker, &rows, &labels, &mut BTreeMap::new());
    let mut threads = serde_json::Map::new();
    threads.insert("num_threads".into(), 1.into());
    let reg = gbm::merged_params(GbmTask::Regression, &threads, 30).expect("params");
    let dir = gbm::merged_params(GbmTask::Direction, &threads, 30).expect("params");
    let nf = names.len();
    let mats: Vec<_> = jobs
        .iter()
        .map(|j| {
            let lab = &labels.regression[&j.horizon];
            let take = |idx: &[usize]| {
                let mut x = Vec::new();
                let mut y = Vec::new();
                for &i in idx {
                    x.extend_from_slice(rows.row(i));
                    y.push(lab[i].unwrap_or(f64::NAN) as f32);
                }
                let c: Vec<f32> = y
                    .iter()
                    .map(|r| f32::from(Direction::of_return(f64::from(*r)).class()))
                    .collect();
                (x, y, c)
            };
            // Both models share one split here: no per-model lookback in this bench.
            (take(&j.regression.train), take(&j.regression.valid))
        })
        .collect();
    let bare_once = || {
        for ((xt, yt, ct), (xv, yv, cv)) in &mats {
            for (ty, vy, prm) in [(yt, yv, &reg), (ct, cv, &dir)] {
                let dt = lightgbm::Dataset::from_rows(xt, ty, nf, None).expect("train set");
                let dv = lightgbm::Dataset::from_rows(xv, vy, nf, Some(&dt)).expect("valid set");
                let b = lightgbm::Booster::train(&dt, Some(&dv), prm).expect("train");
                std::hint::black_box(b.save_string().expect("save"));
            }
        }
    };
    let op = krxflow_pipelines::lgbm::train::LgbmTrain;
    let configured = op.configure(&params).expect("configure");
    let mut models = 0;
    let run_op = || {
        let mut inputs = InputBatches::default();
        inputs.insert(
            "features",
            "features_daily",
            features.schema(),
            vec![features.clone()],
        );
        inputs.insert("bars", "ohlcv_daily", bars.schema(), vec![bars.clone()]);
        let c = ctx(ds);
        let out = rt.block_on(configured.run(&c, inputs)).expect("lgbm.train");
        models = out
            .batches("registry")
            .map(|b| b[0].num_rows())
            .unwrap_or(0);
    };
    let (b, o) = compare(bare_once, run_op);
    println!(
        "lgbm.train        {:>8.3} s  ({models} model pairs, {} feature rows; median of {RUNS})",
        o.as_secs_f64(),
        rows.len()
    );
    println!(
        "bare LightGBM     {:>8.3} s  -> operator / bare = {:.3}x (target <= 1.10x)",
        b.as_secs_f64(),
        o.as_secs_f64() / b.as_secs_f64()
    );
}

fn ort_session(model: &Path) -> Session {
    let env = onnx::runtime().expect("onnxruntime");
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    Session::builder(env)
        .expect("builder")
        .with_optimization_level(GraphOptimizationLevel::All)
        .expect("opt")
        .with_intra_threads(threads)
        .expect("threads")
        .commit_from_file(model)
        .expect("session")
}

fn synthetic_bars(codes: usize, days: usize, ds: NaiveDate) -> RecordBatch {
    let cal = WeekdayCalendar::default();
    use krxflow_core::Calendar;
    let mut dates = Vec::with_capacity(days);
    let mut d = ds;
    for _ in 0..days {
        dates.push(d);
        d = cal.add_trading_days(d, -1);
    }
    dates.reverse();
    let (mut c, mut dt, mut px) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..codes {
        let mut p = 10_000.0 + 1_000.0 * k as f64;
        for (i, day) in dates.iter().enumerate() {
            p *= 1.0 + 0.01 * (((i * 7919 + k * 104_729) % 200) as f64 / 100.0 - 1.0);
            c.push(format!("{:06}", k + 1));
            dt.push(krxflow_pipelines::common::dates::days(*day));
            px.push(p);
        }
    }
    let n = c.len();
    let f = |v: &Vec<f64>| Arc::new(arrow::array::Float64Array::from(v.clone())) as ArrayRef;
    RecordBatch::try_new(
        tables::ohlcv_daily().schema,
        vec![
            Arc::new(StringArray::from(c)),
            Arc::new(Date32Array::from(dt)),
            f(&px),
            f(&px),
            f(&px),
            f(&px),
            Arc::new(arrow::array::Int64Array::from(vec![1_000i64; n])),
            Arc::new(StringArray::from(vec!["bench"; n])),
        ],
    )
    .expect("bars")
}

fn bench_chronos(rt: &tokio::runtime::Runtime, models: &Path, peer: Option<(&Path, &Path)>) {
    let dir = models.join("chronos_bolt_small");
    if !dir.join("model.onnx").exists() {
        eprintln!(
            "chronos: skipped: {} missing (crates/models/export/chronos_bolt.py --random-size small --out {})",
            dir.display(),
            dir.display()
        );
        return;
    }
    let ds = NaiveDate::from_ymd_opt(2024, 12, 13).expect("date");
    let (series, batch, ctx_len) = (64usize, 32usize, 512usize);
    let bars = synthetic_bars(series, ctx_len + 10, ds);
    let params = serde_json::json!({
        "model": dir.to_string_lossy(), "batch_size": batch, "context_length": ctx_len,
        "horizons": [1, 3, 5]
    });
    let configured = krxflow_pipelines::forecast::chronos::ChronosForecast
        .configure(&params)
        .expect("configure");
    // Bare: the same [32, 512] context batches through session.run.
    let mut session = ort_session(&dir.join("model.onnx"));
    let closes = bars
        .column_by_name("close")
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::Float64Array>())
        .expect("close")
        .values()
        .to_vec();
    let per = ctx_len + 10;
    let contexts: Vec<f32> = (0..series)
        .flat_map(|k| {
            closes[k * per + 10..(k + 1) * per]
                .iter()
                .map(|v| *v as f32)
                .collect::<Vec<_>>()
        })
        .collect();
    let run_bare = |s: &mut Session| {
        for chunk in contexts.chunks(batch * ctx_len) {
            let t = Tensor::from_array((
                [chunk.len() / ctx_len, ctx_len],
                chunk.to_vec().into_boxed_slice(),
            ))
            .expect("tensor");
            let out = s.run(ort::inputs!["context" => t]).expect("run");
            std::hint::black_box(out["quantiles"].try_extract_tensor::<f32>().expect("q").1[0]);
        }
    };
    let forecast = || -> RecordBatch {
        let mut inputs = InputBatches::default();
        inputs.insert("bars", "ohlcv_daily", bars.schema(), vec![bars.clone()]);
        let out = rt
            .block_on(configured.run(&ctx(ds), inputs))
            .expect("forecast.chronos");
        let batch = out
            .batches("forecasts")
            .map(|b| b[0].clone())
            .expect("forecasts");
        assert_eq!(batch.num_rows(), series * 3);
        batch
    };
    let run_op = || drop(forecast());
    let (b, o) = compare(|| run_bare(&mut session), run_op);
    println!(
        "forecast.chronos  {:>8.3} s  {:>8.1} series/s ({series} series x {ctx_len} closes, batch {batch})",
        o.as_secs_f64(),
        series as f64 / o.as_secs_f64()
    );
    println!(
        "bare session.run  {:>8.3} s  {:>8.1} series/s -> operator / bare = {:.3}x (target <= 1.05x)",
        b.as_secs_f64(),
        series as f64 / b.as_secs_f64(),
        o.as_secs_f64() / b.as_secs_f64()
    );
    let Some((root, python)) = peer else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let bars_path = tmp.path().join("bars.parquet");
    write_parquet(&bars, &bars_path);
    let ours = time_runs(PEER_RUNS, run_op);
    let out_path = tmp.path().join("chronos.json");
    let extra = [ctx_len.to_string(), "1,3,5".into()];
    let theirs = match onnx_python_path(
        root, python, "chronos", &dir, &bars_path, &out_path, batch, &extra,
    ) {
        Ok(t) => t,
        Err(why) => return println!("skipped: chronos, the Python path: {why}"),
    };
    // Agreement: every (code, horizon) row, its nine quantile prices and what is derived.
    let rows: Vec<serde_json::Value> =
        serde_json::from_slice(&std::fs::read(&out_path).expect("peer output")).expect("json");
    let batch_out = forecast();
    let code = batch_out
        .column_by_name("code")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        .expect("code");
    let horizon = batch_out
        .column_by_name("horizon")
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<arrow::array::Int32Array>()
                .cloned()
        })
        .expect("horizon");
    let f = |name: &str| -> arrow::array::Float64Array {
        batch_out
            .column_by_name(name)
            .and_then(|c| {
                c.as_any()
                    .downcast_ref::<arrow::array::Float64Array>()
                    .cloned()
            })
            .unwrap_or_else(|| panic!("{name}"))
    };
    let mut worst = 0f64;
    let mut index = BTreeMap::new();
    for i in 0..batch_out.num_rows() {
        index.insert((code.value(i).to_string(), horizon.value(i) as i64), i);
    }
    assert_eq!(rows.len(), batch_out.num_rows(), "rows");
    for r in &rows {
        let key = (
            r["code"].as_str().expect("code").to_string(),
            r["horizon"].as_i64().expect("h"),
        );
        let i = *index
            .get(&key)
            .unwrap_or_else(|| panic!("{key:?} missing from krxflow's rows"));
        let q = r["q"].as_array().expect("q");
        for k in 1..=9 {
            let (a, b) = (f(&format!("q{k}0")).value(i), q[k - 1].as_f64().expect("q"));
            worst = worst.max((a - b).abs() / a.abs().max(b.abs()).max(1.0));
        }
        for name in [
            "median",
            "expected_return",
            "prob_up",
            "prob_flat",
            "prob_down",
            "conf",
        ] {
            let (a, b) = (f(name).value(i), r[name].as_f64().expect(name));
            worst = worst.max((a - b).abs() / a.abs().max(b.abs()).max(1.0));
        }
    }
    assert!(
        worst <= 1e-6,
        "krxflow and the Python path differ by {worst:e}"
    );
    peer_table(
        &format!(
            "forecast.chronos vs the Python path ({series} series x {ctx_len} closes, batch {batch}, horizons 1/3/5; agreement: {} rows, largest difference {worst:.1e})",
            rows.len()
        ),
        "series/s",
        series,
        ours,
        theirs,
    );
}

/// The Python path's timings: `benches/peer/onnx_models.py KIND MODEL INPUT OUT RUNS BATCH
/// THREADS [EXTRA...]`, which writes its results to `out`.
#[allow(clippy::too_many_arguments)]
fn onnx_python_path(
    root: &Path,
    python: &Path,
    kind: &str,
    model: &Path,
    input: &Path,
    out: &Path,
    batch: usize,
    extra: &[String],
) -> Result<Stats, String> {
    let mut args = vec![
        "onnx_models.py".to_string(),
        kind.to_string(),
        model.to_string_lossy().into_owned(),
        input.to_string_lossy().into_owned(),
        out.to_string_lossy().into_owned(),
        PEER_RUNS.to_string(),
        batch.to_string(),
        cores().to_string(),
    ];
    args.extend(extra.iter().cloned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run_python(root, python, &refs)
        .and_then(|r| peer_timings(&r))
        .map(|(t, _)| t)
}

/// Timed runs per side of the Python-path comparisons (after one warm-up each).
const PEER_RUNS: usize = 5;

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The Python-path table: both sides' min / median / max and throughput, the ratio of medians.
fn peer_table(title: &str, unit: &str, items: usize, ours: Stats, theirs: Stats) {
    println!(
        "\n{title}; {PEER_RUNS} runs after a warm-up, the ONNX session kept between runs on both \
         sides (seconds):"
    );
    println!("| path | min | median | max | {unit} | krxflow is faster by |");
    println!("|---|---|---|---|---|---|");
    for (name, s) in [
        ("krxflow operator", ours),
        ("Python (onnxruntime + NumPy)", theirs),
    ] {
        println!(
            "| {name} | {:.3} | {:.3} | {:.3} | {:.1} | {:.2}x |",
            s.min.as_secs_f64(),
            s.median.as_secs_f64(),
            s.max.as_secs_f64(),
            items as f64 / s.median.as_secs_f64(),
            s.median.as_secs_f64() / ours.median.as_secs_f64()
        );
    }
}

fn bench_finbert(
    rt: &tokio::runtime::Runtime,
    models: &Path,
    data: &Path,
    peer: Option<(&Path, &Path)>,
) {
    let dir = models.join("finbert_base");
    let csv = data.join("sentiment/news_headlines_labeled/news_train_labeling.csv");
    if !dir.join("model.onnx").exists() || !csv.exists() {
        eprintln!(
            "finbert: skipped: {} or {} missing (crates/models/export/finbert.py --random-size base)",
            dir.display(),
            csv.display()
        );
        return;
    }
    let n = 64usize;
    let mut rdr = csv::Reader::from_path(&csv).expect("csv");
    let headers = rdr.headers().expect("headers").clone();
    let col = headers
        .iter()
        .position(|h| h == "kor_sentence")
        .unwrap_or(0);
    let texts: Vec<String> = rdr
        .records()
        .flatten()
        .filter_map(|r| r.get(col).map(str::to_string))
        .take(n)
        .collect();
    let ds = NaiveDate::from_ymd_opt(2024, 12, 13).expect("date");
    let day = days(ds);
    let news = RecordBatch::try_new(
        tables::news().schema,
        tables::news()
            .schema
            .fields()
            .iter()
            .map(|f| -> ArrayRef {
                match f.name().as_str() {
                    "id" => Arc::new(StringArray::from_iter_values(
                        (0..n).map(|i| format!("{i:04}")),
                    )),
                    "code" => Arc::new(StringArray::from(vec!["005930"; n])),
                    "date" => Arc::new(Date32Array::from(vec![day; n])),
                    "title" => Arc::new(StringArray::from_iter_values(texts.iter())),
                    "source" => Arc::new(StringArray::from(vec!["bench"; n])),
                    "published_at" => Arc::new(
                        arrow::array::TimestampMillisecondArray::from(vec![0i64; n])
                            .with_timezone("Asia/Seoul"),
                    ),
                    _ => arrow::array::new_null_array(f.data_type(), n),
                }
            })
            .collect(),
    )
    .expect("news");
    let batch = 16usize;
    let params =
        serde_json::json!({"model": dir.to_string_lossy(), "batch_size": batch, "limit": n});
    let configured = krxflow_pipelines::sentiment::finbert::FinbertScorer
        .configure(&params)
        .expect("configure");
    // Bare: the operator's own length-bucketed, padded batches, through session.run only.
    let fb = FinBert::load(&dir, 128, Device::Cpu, 0).expect("finbert");
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let toks = fb.tokenize(&refs).expect("tokenize");
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| toks[i].0.len());
    let encoded: Vec<_> = order
        .chunks(batch)
        .map(|c| fb.pad(&c.iter().map(|&i| &toks[i]).collect::<Vec<_>>()))
        .collect();
    let mut session = ort_session(&dir.join("model.onnx"));
    let run_bare = |s: &mut Session| {
        for e in &encoded {
            let t = |v: &Vec<i64>| {
                Tensor::from_array(([e.batch, e.seq], v.clone().into_boxed_slice()))
                    .expect("tensor")
            };
            let out = s
                .run(ort::inputs![
                    "input_ids" => t(&e.input_ids),
                    "attention_mask" => t(&e.attention_mask),
                    "token_type_ids" => t(&e.token_type_ids),
                ])
                .expect("run");
            std::hint::black_box(out["logits"].try_extract_tensor::<f32>().expect("logits").1[0]);
        }
    };
    let score = || -> RecordBatch {
        let mut inputs = InputBatches::default();
        inputs.insert("news", "news", news.schema(), vec![news.clone()]);
        let out = rt
            .block_on(configured.run(&ctx(ds), inputs))
            .expect("sentiment.finbert");
        let batch = out.batches("scores").map(|b| b[0].clone()).expect("scores");
        assert_eq!(batch.num_rows(), n);
        batch
    };
    let run_op = || drop(score());
    let (b, o) = compare(|| run_bare(&mut session), run_op);
    println!(
        "sentiment.finbert {:>8.3} s  {:>8.1} sentences/s ({n} headlines, batch {batch})",
        o.as_secs_f64(),
        n as f64 / o.as_secs_f64()
    );
    println!(
        "bare session.run  {:>8.3} s  {:>8.1} sentences/s -> operator / bare = {:.3}x (target <= 1.05x)",
        b.as_secs_f64(),
        n as f64 / b.as_secs_f64(),
        o.as_secs_f64() / b.as_secs_f64()
    );
    let Some((root, python)) = peer else { return };
    let tmp = tempfile::tempdir().expect("temp dir");
    let texts_path = tmp.path().join("texts.json");
    std::fs::write(&texts_path, serde_json::to_vec(&texts).expect("json")).expect("write texts");
    let ours = time_runs(PEER_RUNS, run_op);
    let out_path = tmp.path().join("finbert.json");
    let theirs = match onnx_python_path(
        root,
        python,
        "finbert",
        &dir,
        &texts_path,
        &out_path,
        batch,
        &[],
    ) {
        Ok(t) => t,
        Err(why) => return println!("skipped: finbert, the Python path: {why}"),
    };
    // Agreement: each headline's three probabilities (labels 0 negative, 1 neutral, 2 positive).
    let probs: Vec<Vec<f64>> =
        serde_json::from_slice(&std::fs::read(&out_path).expect("peer output")).expect("json");
    let scores = score();
    let id = scores
        .column_by_name("id")
        .and_then(|c| c.as_any().downcast_ref::<StringArray>().cloned())
        .expect("id");
    let p = |name: &str| -> arrow::array::Float64Array {
        scores
            .column_by_name(name)
            .and_then(|c| {
                c.as_any()
                    .downcast_ref::<arrow::array::Float64Array>()
                    .cloned()
            })
            .unwrap_or_else(|| panic!("{name}"))
    };
    let (neg, neu, pos) = (p("p_neg"), p("p_neu"), p("p_pos"));
    let mut worst = 0f64;
    for i in 0..scores.num_rows() {
        let k: usize = id.value(i).parse().expect("bench ids are indexes");
        for (col, j) in [(&neg, 0), (&neu, 1), (&pos, 2)] {
            worst = worst.max((col.value(i) - probs[k][j]).abs());
        }
    }
    assert!(
        worst <= 1e-6,
        "krxflow and the Python path differ by {worst:e}"
    );
    peer_table(
        &format!(
            "sentiment.finbert vs the Python path ({n} headlines, batch {batch}, max length 128; agreement: {n} x 3 probabilities, largest difference {worst:.1e})"
        ),
        "sentences/s",
        n,
        ours,
        theirs,
    );
}

fn main() {
    let data = shared_data();
    let models = std::env::var_os("KRXFLOW_BENCH_MODELS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/krxflow-bench")))
        .unwrap_or_else(|| PathBuf::from(".cache/krxflow-bench"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    println!("{}", machine());
    let python = match peer_setup(&root) {
        Ok(p) => Some(p),
        Err(why) => {
            println!("skipped: the Python path: {why}");
            None
        }
    };
    let peer = python.as_deref().map(|py| (root.as_path(), py));
    let only = std::env::args().nth(1).unwrap_or_default();
    let want = |part: &str| only.is_empty() || only.starts_with('-') || only == part;
    if want("lgbm") {
        bench_lgbm(&rt, &data);
    }
    if want("chronos") {
        bench_chronos(&rt, &models, peer);
    }
    if want("finbert") {
        bench_finbert(&rt, &models, &data, peer);
    }
}
