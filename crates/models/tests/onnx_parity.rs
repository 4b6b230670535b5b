//! The real ONNX loading code on tiny randomly initialised models of the real architectures,
//! exported by `crates/models/export/*.py --random-tiny`, against the PyTorch reference outputs
//! written by the same scripts (`tests/fixtures/*/reference.json`).
//!
//! Needs the ONNX Runtime library that `scripts/setup.sh` installs (the README's test command
//! runs it first); without it these tests fail with the fix in the message.

use std::path::{Path, PathBuf};

use krxflow_models::chronos::ChronosBolt;
use krxflow_models::finbert::FinBert;
use krxflow_models::onnx::Device;
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn reference(name: &str) -> Value {
    let p = fixture(name).join("reference.json");
    serde_json::from_str(&std::fs::read_to_string(&p).expect("reference.json")).expect("json")
}

/// (shape, values) of a reference tensor; `null` is NaN.
fn tensor(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let shape = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let data = v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|x| x.as_f64().unwrap_or(f64::NAN))
        .collect();
    (shape, data)
}

/// Max |a − b| over max |b| (the tensor's scale) below 1e-5, and each element within 1e-5·|b|
/// plus a floor of 5e-6 of the scale. Measured worst: 1.4e-7 (Chronos-Bolt quantiles), 1.0e-6
/// (FinBERT hidden states), so the bound leaves a 10× margin for other CPUs' float rounding.
fn assert_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs())).max(1e-12);
    let mut max_err = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (f64::from(*g) - w).abs();
        max_err = max_err.max(err);
        assert!(
            err <= 1e-5 * w.abs() + 5e-6 * scale,
            "{what}[{i}]: onnx {g} vs torch {w}"
        );
    }
    let rel = max_err / scale;
    eprintln!("{what}: max relative error {rel:.3e}");
    assert!(rel < 1e-5, "{what}: relative error {rel}");
}

fn chronos() -> ChronosBolt {
    ChronosBolt::load(&fixture("chronos_bolt_tiny"), Device::Cpu, 1).expect("load chronos")
}

#[test]
fn chronos_bolt_onnx_matches_the_pytorch_reference() {
    let r = reference("chronos_bolt_tiny");
    let (shape, context) = tensor(&r["inputs"]["context"]);
    let (_, want) = tensor(&r["outputs"]["quantiles"]);
    let m = chronos();
    assert_eq!(m.config.prediction_length, 64);
    let got = m
        .run_raw(
            shape[0],
            shape[1],
            context.iter().map(|v| *v as f32).collect(),
        )
        .expect("run");
    assert_close("chronos quantiles", &got, &want);
}

#[test]
fn chronos_left_pads_short_series_with_nan_and_batches_independently() {
    let r = reference("chronos_bolt_tiny");
    let (shape, context) = tensor(&r["inputs"]["context"]);
    let t = shape[1];
    let rows: Vec<Vec<f32>> = context
        .chunks(t)
        .map(|c| c.iter().map(|v| *v as f32).collect())
        .collect();
    // The third reference series is NaN-padded on the left: hand it over without the padding.
    let short: Vec<f32> = rows[2].iter().copied().skip_while(|v| v.is_nan()).collect();
    assert!(short.len() < t);
    let m = chronos();
    let batch = m.forecast(&[&rows[0], &rows[1], &short]).expect("forecast");
    let (_, want) = tensor(&r["outputs"]["quantiles"]);
    let flat: Vec<f32> = batch.iter().flat_map(|p| p.values.concat()).collect();
    assert_close("chronos padded batch", &flat, &want);
    // Alone, the short series gets the same forecast as inside the batch.
    let alone = m.forecast(&[&short]).expect("alone");
    let w: Vec<f64> = batch[2]
        .values
        .concat()
        .iter()
        .map(|v| f64::from(*v))
        .collect();
    assert_close("chronos alone vs batch", &alone[0].values.concat(), &w);
    // One path per quantile level of the config, each over the whole prediction length (the
    // tiny model's weights are random, so its quantiles need not be ordered; the pipeline's
    // `forecast::quantiles::derive` sorts them before use).
    for paths in &batch {
        assert_eq!(paths.values.len(), m.config.quantiles.len());
        assert!(paths.values.iter().all(|q| q.len() == 64));
    }
}

fn finbert() -> FinBert {
    FinBert::load(&fixture("finbert_tiny"), 128, Device::Cpu, 1).expect("load finbert")
}

fn sentences(r: &Value) -> Vec<String> {
    r["sentences"]
        .as_array()
        .expect("sentences")
        .iter()
        .map(|s| s.as_str().expect("sentence").to_string())
        .collect()
}

#[test]
fn finbert_tokenizer_reproduces_the_hugging_face_ids_exactly() {
    let r = reference("finbert_tiny");
    let texts = sentences(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let m = finbert();
    let toks = m.tokenize(&refs).expect("tokenize");
    let rows: Vec<&(Vec<i64>, Vec<i64>)> = toks.iter().collect();
    let e = m.pad(&rows);
    let ids = |k: &str| -> Vec<i64> {
        tensor(&r["inputs"][k])
            .1
            .iter()
            .map(|v| *v as i64)
            .collect()
    };
    assert_eq!(e.input_ids, ids("input_ids"));
    assert_eq!(e.attention_mask, ids("attention_mask"));
    assert_eq!(e.token_type_ids, ids("token_type_ids"));
    // The tiny vocab leaves some [UNK]s and splits words into ##pieces: not a trivial case.
    assert!(
        e.input_ids.contains(&1),
        "expected an [UNK] in the reference batch"
    );
}

#[test]
fn finbert_onnx_logits_hidden_state_and_pooled_embedding_match_pytorch() {
    let r = reference("finbert_tiny");
    let texts = sentences(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let m = finbert();
    let toks = m.tokenize(&refs).expect("tokenize");
    let rows: Vec<&(Vec<i64>, Vec<i64>)> = toks.iter().collect();
    let e = m.pad(&rows);
    let (logits, hidden, h) = m.run_raw(&e).expect("run");
    assert_close(
        "finbert logits",
        &logits,
        &tensor(&r["outputs"]["logits"]).1,
    );
    assert_close(
        "finbert last_hidden_state",
        &hidden,
        &tensor(&r["outputs"]["last_hidden_state"]).1,
    );
    let scores = m.score_encoded(&e).expect("scores");
    let emb: Vec<f32> = scores.iter().flat_map(|s| s.embedding.clone()).collect();
    assert_eq!(emb.len(), e.batch * h);
    assert_close(
        "finbert embedding",
        &emb,
        &tensor(&r["outputs"]["embedding"]).1,
    );
    let probs: Vec<f32> = scores
        .iter()
        .flat_map(|s| [s.p_neg, s.p_neu, s.p_pos])
        .collect();
    assert_close("finbert probs", &probs, &tensor(&r["outputs"]["probs"]).1);
    for s in &scores {
        assert!((s.score - (s.p_pos - s.p_neg)).abs() < 1e-7);
        assert!((-1.0..=1.0).contains(&s.score));
    }
}

#[test]
fn finbert_length_bucketed_batches_give_the_same_scores_in_input_order() {
    let r = reference("finbert_tiny");
    let texts = sentences(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let m = finbert();
    let one_batch = m.score(&refs, 64).expect("one batch");
    let bucketed = m.score(&refs, 3).expect("buckets of 3");
    assert_eq!(one_batch.len(), refs.len());
    for (a, b) in one_batch.iter().zip(&bucketed) {
        assert_eq!(a.label, b.label);
        assert!(
            (a.score - b.score).abs() < 1e-5,
            "{} vs {}",
            a.score,
            b.score
        );
    }
    // Scores follow the input order: the reference's probabilities row by row.
    let want = tensor(&r["outputs"]["probs"]).1;
    let got: Vec<f32> = bucketed
        .iter()
        .flat_map(|s| [s.p_neg, s.p_neu, s.p_pos])
        .collect();
    assert_close("bucketed probs", &got, &want);
}

#[test]
fn a_vocab_txt_tokenizer_equals_the_tokenizer_json() {
    let dir = tempfile::tempdir().expect("tmp");
    for f in ["model.onnx", "vocab.txt"] {
        std::fs::copy(fixture("finbert_tiny").join(f), dir.path().join(f)).expect("copy");
    }
    let r = reference("finbert_tiny");
    let texts = sentences(&r);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let from_vocab = FinBert::load(dir.path(), 128, Device::Cpu, 1).expect("vocab.txt");
    assert_eq!(
        from_vocab.tokenize(&refs).expect("vocab"),
        finbert().tokenize(&refs).expect("json")
    );
}

#[test]
fn a_missing_model_folder_is_a_model_missing_error() {
    let err = ChronosBolt::load(Path::new("/nonexistent/chronos"), Device::Cpu, 1)
        .err()
        .expect("missing");
    assert!(
        matches!(err, krxflow_models::ModelError::ModelMissing(_)),
        "{err}"
    );
}
