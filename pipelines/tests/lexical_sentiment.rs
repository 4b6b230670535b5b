//! The lexical sentiment model on the real labelled data: the fixed 80/20 holdout of the
//! native Korean stock headlines and of the Korean Financial PhraseBank. Prints accuracy,
//! macro-F1 and the confusion matrix. Skipped (with a message) when the data is absent.
//!
//! The holdout rows (seed 42, 20%) are never trained on, nor used to choose the settings:
//! `dims` and `alpha` were chosen by the 5-fold cross-validation on the native training rows
//! in `settings_chosen_by_cross_validation_on_training_rows` (ignored: ~3 min; run it with
//! `-- --ignored --nocapture`).

use std::path::PathBuf;

use krxflow_models::lexical::{Evaluation, Example, LexicalConfig, LexicalModel, in_holdout};
use krxflow_pipelines::sentiment::lexical::read_labelled;

const NATIVE: &str = "sentiment/news_headlines_labeled/news_train_labeling.csv";
const PHRASEBANK: &str = "sentiment/phrasebank_ko/finance_data.csv";

fn data_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("KRXFLOW_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    if dir.join("sentiment").is_dir() {
        Some(dir)
    } else {
        krxflow_core::skip::real_data_absent(&dir);
        None
    }
}

/// A labelled set split by the fixed holdout: (training rows, holdout rows).
struct Set {
    train: Vec<Example>,
    test: Vec<Example>,
}

fn load(file: &str) -> Option<Set> {
    let path = data_dir()?.join(file);
    let csv = std::fs::read_to_string(&path).unwrap();
    // The native file's labels are digits; the PhraseBank's are words, which map themselves.
    let map = if file == NATIVE {
        [("0", "neu"), ("1", "pos"), ("2", "neg")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    } else {
        Default::default()
    };
    let data = read_labelled(&csv, "kor_sentence", "labels", &map).unwrap();
    assert!(
        data.rejects.is_empty(),
        "{:?}",
        &data.rejects[..data.rejects.len().min(3)]
    );
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (line, ex) in data.examples {
        if in_holdout(line, 42, 0.2) {
            test.push(ex);
        } else {
            train.push(ex);
        }
    }
    Some(Set { train, test })
}

/// Trains on the training rows of `sets` with the default settings and evaluates on the
/// holdout of `on`.
fn holdout(sets: &[&Set], on: &Set, name: &str) -> Evaluation {
    let train: Vec<Example> = sets.iter().flat_map(|s| s.train.iter().cloned()).collect();
    let model = LexicalModel::train(&train, LexicalConfig::default()).unwrap();
    let eval = Evaluation::of(&model, &on.test);
    println!(
        "{name}: trained on {} rows, holdout:\n{}",
        train.len(),
        eval.report()
    );
    eval
}

#[test]
fn trained_on_both_sets_the_native_headline_holdout_passes_0_80() {
    let (Some(native), Some(pb)) = (load(NATIVE), load(PHRASEBANK)) else {
        return;
    };
    assert!(
        (350..420).contains(&native.test.len()),
        "about 20% of 1,897 rows: {}",
        native.test.len()
    );
    let both = [&native, &pb];
    // Measured (README): native accuracy 0.839, macro-F1 0.827; the majority class (positive)
    // alone scores ~0.44. Deterministic (seeded split, zero start, L-BFGS), so each bound sits
    // 0.01 below what it reaches: a regression of a point fails.
    let e = holdout(&both, &native, "native holdout, trained on both");
    assert!(e.accuracy > 0.829, "{}", e.report());
    assert!(e.macro_f1 > 0.817, "{}", e.report());
    // The same model on the PhraseBank's holdout: 0.784, macro-F1 0.743 (the majority
    // class, neutral, ~0.59).
    let e = holdout(&both, &pb, "PhraseBank holdout, trained on both");
    assert!(e.accuracy > 0.774, "{}", e.report());
    assert!(e.macro_f1 > 0.733, "{}", e.report());
}

#[test]
fn trained_on_the_native_headlines_alone_the_holdout_is_lower() {
    let Some(native) = load(NATIVE) else {
        return;
    };
    // Measured (README): 0.788. What the PhraseBank's 3,871 training rows add is the
    // difference to the test above.
    let e = holdout(
        &[&native],
        &native,
        "native holdout, trained on native only",
    );
    assert!(e.accuracy > 0.778, "{}", e.report());
    assert!(e.accuracy < 0.829, "{}", e.report());
}

#[test]
#[ignore = "the settings search: 45 fits, ~3 min in the dev profile"]
fn settings_chosen_by_cross_validation_on_training_rows() {
    let (Some(native), Some(pb)) = (load(NATIVE), load(PHRASEBANK)) else {
        return;
    };
    // Folds of the native TRAINING rows only (row index mod 5); the PhraseBank's training rows
    // are in every fold's training part. The holdouts are not read.
    let mut best = (0.0, 0, 0.0);
    for dims in [8192, 32768, 65536] {
        for alpha in [0.03, 0.1, 0.3] {
            let cfg = LexicalConfig {
                dims,
                alpha,
                ..LexicalConfig::default()
            };
            let mut acc = 0.0;
            for fold in 0..5 {
                let (mut train, mut valid) = (pb.train.clone(), Vec::new());
                for (i, ex) in native.train.iter().enumerate() {
                    if i % 5 == fold {
                        valid.push(ex.clone());
                    } else {
                        train.push(ex.clone());
                    }
                }
                let m = LexicalModel::train(&train, cfg).unwrap();
                acc += Evaluation::of(&m, &valid).accuracy / 5.0;
            }
            println!("dims {dims:>6} alpha {alpha:<5} 5-fold accuracy {acc:.4}");
            if acc > best.0 {
                best = (acc, dims, alpha);
            }
        }
    }
    println!("best: dims {} alpha {} ({:.4})", best.1, best.2, best.0);
}
