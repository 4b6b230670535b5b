//! The embedded sentiment model: multinomial logistic regression ([`crate::softmax`], sparse
//! L-BFGS) over hashed, Korean-aware n-grams. No downloads: it is trained from a labelled CSV by
//! `sentiment.train_lexical` and stored as a JSON artifact.
//!
//! Features of a text: every word (split on anything that is not a letter, digit or Hangul
//! syllable, lower-cased) as a unigram, plus the syllable 1-, 2- and 3-grams of each word with
//! boundary marks (`<주가`, `가>`) so particles and stems are matched inside words (Korean glues
//! particles to nouns: `삼성전자가`, `삼성전자는`). Each feature is hashed (FNV-1a, stable across
//! builds) into `dims` buckets; counts are log-scaled (1 + ln c) and the vector L2-normalised.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ModelError, ModelResult};
use crate::softmax::{self, FitSettings};

/// Class order of every probability vector: negative, neutral, positive.
pub const CLASSES: [&str; 3] = ["neg", "neu", "pos"];

/// Index in [`CLASSES`] of a label name (`neg`/`negative`, `neu`/`neutral`, `pos`/`positive`).
pub fn class_index(label: &str) -> Option<usize> {
    match label.trim().to_ascii_lowercase().as_str() {
        "neg" | "negative" => Some(0),
        "neu" | "neutral" => Some(1),
        "pos" | "positive" => Some(2),
        _ => None,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The words of a text: runs of letters/digits (Hangul included), lower-cased.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Feature strings of a text (before hashing).
pub fn features(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for w in words(text) {
        out.push(format!("w:{w}"));
        let chars: Vec<char> = w.chars().collect();
        for c in &chars {
            out.push(format!("c1:{c}"));
        }
        let marked: Vec<char> = std::iter::once('<')
            .chain(chars.iter().copied())
            .chain(std::iter::once('>'))
            .collect();
        for n in 2..=3 {
            for g in marked.windows(n) {
                out.push(format!("c{n}:{}", g.iter().collect::<String>()));
            }
        }
    }
    out
}

/// Sparse hashed feature vector: (bucket, value), L2-normalised.
pub fn vectorize(text: &str, dims: u32) -> Vec<(usize, f64)> {
    let mut counts: HashMap<usize, f64> = HashMap::new();
    let dims = u64::from(dims.max(1));
    for f in features(text) {
        let bucket = (fnv1a(f.as_bytes()) % dims) as usize;
        *counts.entry(bucket).or_default() += 1.0;
    }
    let mut v: Vec<(usize, f64)> = counts.into_iter().map(|(i, c)| (i, 1.0 + c.ln())).collect();
    // Sorted before the norm is summed: floating-point addition is not associative, and a
    // HashMap's order differs between calls, so summing in its order changed the last bit.
    v.sort_by_key(|(i, _)| *i);
    let norm = v.iter().map(|(_, x)| x * x).sum::<f64>().sqrt();
    if norm > 0.0 {
        for (_, x) in &mut v {
            *x /= norm;
        }
    }
    v
}

/// Training settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LexicalConfig {
    /// Hash buckets.
    pub dims: u32,
    /// L2 penalty on the weights (scikit-learn's `1/C`).
    pub alpha: f64,
    pub max_iterations: u64,
}

impl Default for LexicalConfig {
    fn default() -> Self {
        Self {
            // Chosen by 5-fold cross-validation on the training rows of the native headlines
            // (trained with the Financial PhraseBank's training rows; README "Sentiment").
            dims: 32768,
            alpha: 0.03,
            max_iterations: 200,
        }
    }
}

/// A trained lexical model: everything needed to score, serialisable as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LexicalModel {
    /// Artifact format version.
    pub format: u32,
    pub config: LexicalConfig,
    /// Always [`CLASSES`].
    pub classes: Vec<String>,
    /// Row-major `[dims][3]` weights (stored as IEEE-754 bit patterns: exact round trip).
    #[serde(with = "f64_bits")]
    pub weights: Vec<f64>,
    #[serde(with = "f64_bits")]
    pub intercept: Vec<f64>,
    pub trained_rows: usize,
}

/// `Vec<f64>` as the numbers' bit patterns, so save → load is bit-identical (decimal text
/// can lose the last ulp).
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.to_bits()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(f64::from_bits)
            .collect())
    }
}

/// One labelled example: text and class index into [`CLASSES`].
pub type Example = (String, usize);

impl LexicalModel {
    /// Fits on `examples` (every class must occur at least once).
    pub fn train(examples: &[Example], config: LexicalConfig) -> ModelResult<Self> {
        let dims = config.dims.max(16) as usize;
        for (c, name) in CLASSES.iter().enumerate() {
            if !examples.iter().any(|(_, y)| *y == c) {
                return Err(ModelError::Training(format!(
                    "no `{name}` example: every class needs at least one"
                )));
            }
        }
        let rows: Vec<softmax::SparseRow> = examples
            .iter()
            .map(|(text, _)| vectorize(text, dims as u32))
            .collect();
        let y: Vec<usize> = examples.iter().map(|(_, y)| *y).collect();
        let fitted = softmax::fit(
            &rows,
            &y,
            dims,
            CLASSES.len(),
            FitSettings {
                alpha: config.alpha,
                max_iterations: config.max_iterations,
                gradient_tolerance: 1e-4,
            },
        )
        .map_err(ModelError::Training)?;
        let (weights, intercept) = (fitted.weights, fitted.intercept);
        Ok(Self {
            format: 1,
            config: LexicalConfig {
                dims: dims as u32,
                ..config
            },
            classes: CLASSES.iter().map(|s| s.to_string()).collect(),
            weights,
            intercept,
            trained_rows: examples.len(),
        })
    }

    /// P(neg), P(neu), P(pos).
    pub fn predict_proba(&self, text: &str) -> [f64; 3] {
        let k = CLASSES.len();
        let mut z = [0.0; 3];
        z.copy_from_slice(&self.intercept[..k]);
        for (i, v) in vectorize(text, self.config.dims) {
            for (c, zc) in z.iter_mut().enumerate() {
                *zc += v * self.weights.get(i * k + c).copied().unwrap_or(0.0);
            }
        }
        let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e = z.map(|x| (x - m).exp());
        let s: f64 = e.iter().sum();
        e.map(|x| x / s)
    }

    /// Class index with the highest probability.
    pub fn predict(&self, text: &str) -> usize {
        argmax(&self.predict_proba(text))
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn from_json(bytes: &[u8]) -> ModelResult<Self> {
        let m: Self =
            serde_json::from_slice(bytes).map_err(|e| ModelError::Artifact(e.to_string()))?;
        let want = m.config.dims as usize * CLASSES.len();
        if m.format != 1 || m.weights.len() != want || m.intercept.len() != CLASSES.len() {
            return Err(ModelError::Artifact(format!(
                "lexical model: format {} with {} weights for {} dims (want format 1, {want})",
                m.format,
                m.weights.len(),
                m.config.dims
            )));
        }
        Ok(m)
    }

    /// Content hash of the serialised model (artifact identity).
    pub fn content_hash(&self) -> String {
        Sha256::digest(self.to_json())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn argmax(p: &[f64; 3]) -> usize {
    let mut best = 0;
    for i in 1..p.len() {
        if p[i] > p[best] {
            best = i;
        }
    }
    best
}

/// Holdout metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub n: usize,
    pub accuracy: f64,
    pub macro_f1: f64,
    /// `confusion[true][predicted]` in [`CLASSES`] order.
    pub confusion: [[usize; 3]; 3],
}

impl Evaluation {
    pub fn of(model: &LexicalModel, examples: &[Example]) -> Self {
        let mut confusion = [[0usize; 3]; 3];
        for (text, y) in examples {
            confusion[*y][model.predict(text)] += 1;
        }
        let n = examples.len();
        let correct: usize = (0..3).map(|i| confusion[i][i]).sum();
        let mut f1 = 0.0;
        for (c, row) in confusion.iter().enumerate() {
            let tp = row[c] as f64;
            let predicted: usize = confusion.iter().map(|r| r[c]).sum();
            let actual: usize = row.iter().sum();
            let p = if predicted > 0 {
                tp / predicted as f64
            } else {
                0.0
            };
            let r = if actual > 0 { tp / actual as f64 } else { 0.0 };
            f1 += if p + r > 0.0 {
                2.0 * p * r / (p + r)
            } else {
                0.0
            };
        }
        Self {
            n,
            accuracy: if n > 0 {
                correct as f64 / n as f64
            } else {
                0.0
            },
            macro_f1: f1 / 3.0,
            confusion,
        }
    }

    /// A printable report: accuracy, macro-F1 and the confusion matrix.
    pub fn report(&self) -> String {
        let mut s = format!(
            "n={}  accuracy={:.3}  macro-F1={:.3}\ntrue\\pred    neg    neu    pos\n",
            self.n, self.accuracy, self.macro_f1
        );
        for (i, row) in self.confusion.iter().enumerate() {
            s.push_str(&format!(
                "{:<9} {:>6} {:>6} {:>6}\n",
                CLASSES[i], row[0], row[1], row[2]
            ));
        }
        s
    }
}

/// A fixed, seeded 80/20-style split: row `i` goes to the holdout when its hash with `seed`
/// falls in the last `holdout` fraction. Independent of row order and platform.
pub fn in_holdout(i: usize, seed: u64, holdout: f64) -> bool {
    let h = fnv1a(format!("{seed}:{i}").as_bytes());
    (h % 10_000) as f64 / 10_000.0 >= 1.0 - holdout
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> Vec<Example> {
        let mut v = Vec::new();
        for (t, y) in [
            ("삼성전자 주가 급등 사상 최고치", 2),
            ("현대차 실적 호조 목표가 상향", 2),
            ("신고가 경신 강세 지속", 2),
            ("주가 급락 실적 쇼크", 0),
            ("적자 전환 목표가 하향", 0),
            ("급락 우려 약세 지속", 0),
            ("이사회 개최 공시", 1),
            ("정기 주주총회 일정 안내", 1),
            ("대표이사 선임 공시", 1),
        ] {
            for k in 0..3 {
                v.push((format!("{t} {k}"), y));
            }
        }
        v
    }

    #[test]
    fn korean_words_give_syllable_ngrams_with_boundaries() {
        let f = features("삼성전자가 급등!");
        assert!(f.contains(&"w:삼성전자가".to_string()));
        assert!(f.contains(&"c2:<삼".to_string()));
        assert!(f.contains(&"c2:가>".to_string()));
        assert!(f.contains(&"c3:전자가".to_string()));
        assert!(f.contains(&"c1:급".to_string()));
        assert!(!f.iter().any(|x| x.contains('!')));
    }

    #[test]
    fn vectors_are_unit_length_and_stable() {
        let v = vectorize("주가 급등 급등", 1024);
        let n: f64 = v.iter().map(|(_, x)| x * x).sum();
        assert!((n - 1.0).abs() < 1e-12);
        // Bit-identical on every call (HashMap iteration order differs per instance).
        for _ in 0..50 {
            assert_eq!(v, vectorize("주가 급등 급등", 1024));
        }
        assert!(vectorize("", 1024).is_empty());
        // FNV-1a is fixed: a saved model scores the same text the same way in any build.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c); // the published FNV-1a 64 test vector
    }

    #[test]
    fn training_separates_a_toy_set() {
        let ex = toy();
        let cfg = LexicalConfig {
            dims: 512,
            alpha: 0.001,
            max_iterations: 100,
        };
        let m = LexicalModel::train(&ex, cfg).unwrap();
        let eval = Evaluation::of(&m, &ex);
        assert!(eval.accuracy > 0.95, "{}", eval.report());
        assert_eq!(m.predict("목표가 상향 급등"), 2);
        assert_eq!(m.predict("실적 쇼크 급락"), 0);
        let p = m.predict_proba("주주총회 공시");
        assert!((p.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(argmax(&p), 1);
    }

    #[test]
    fn save_then_load_scores_identically_and_damaged_artifacts_are_errors() {
        let m = LexicalModel::train(
            &toy(),
            LexicalConfig {
                dims: 256,
                alpha: 0.01,
                max_iterations: 50,
            },
        )
        .unwrap();
        let back = LexicalModel::from_json(&m.to_json()).unwrap();
        assert_eq!(back, m);
        assert_eq!(
            back.predict_proba("급등 호조"),
            m.predict_proba("급등 호조")
        );
        assert_eq!(back.content_hash(), m.content_hash());
        assert!(LexicalModel::from_json(b"{}").is_err());
        let mut bad = m.clone();
        bad.weights.pop();
        assert!(LexicalModel::from_json(&bad.to_json()).is_err());
    }

    #[test]
    fn a_missing_class_is_a_training_error() {
        let ex: Vec<Example> = toy().into_iter().filter(|(_, y)| *y != 0).collect();
        let e = LexicalModel::train(&ex, LexicalConfig::default()).unwrap_err();
        assert!(e.to_string().contains("neg"), "{e}");
    }

    #[test]
    fn the_holdout_split_is_fixed_and_about_the_asked_fraction() {
        let held: Vec<usize> = (0..10_000).filter(|i| in_holdout(*i, 42, 0.2)).collect();
        assert!((1_850..2_150).contains(&held.len()), "{}", held.len());
        let again: Vec<usize> = (0..10_000).filter(|i| in_holdout(*i, 42, 0.2)).collect();
        assert_eq!(held, again);
    }

    #[test]
    fn evaluation_counts_macro_f1_over_the_three_classes() {
        let m = LexicalModel::train(
            &toy(),
            LexicalConfig {
                dims: 256,
                alpha: 0.01,
                max_iterations: 50,
            },
        )
        .unwrap();
        let e = Evaluation::of(&m, &[("급등".into(), 2)]);
        assert_eq!(e.n, 1);
        assert!(e.report().contains("macro-F1"));
    }
}
