//! KR-FinBert-SC (BertForSequenceClassification) through ONNX Runtime.
//!
//! The model folder is what `crates/models/export/finbert.py` writes: `model.onnx` (inputs
//! `input_ids`, `attention_mask`, `token_type_ids` i64 `[B, S]`; outputs `logits` f32 `[B, 3]`
//! (0 negative, 1 neutral, 2 positive) and `last_hidden_state` f32 `[B, S, H]`) and
//! `tokenizer.json`, or a BERT `vocab.txt` (WordPiece, cased, Hangul kept composed).
//!
//! Texts are tokenised once, sorted by length and run in batches padded to their own longest
//! sequence (dynamic padding), then put back in input order.

use std::path::Path;
use std::sync::Arc;

use ort::value::Tensor;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{Model, Tokenizer, TruncationParams};

use crate::onnx::{self, Device, SharedSession};
use crate::{ModelError, ModelResult};

/// One text's scores.
#[derive(Debug, Clone, PartialEq)]
pub struct BertScore {
    pub p_neg: f32,
    pub p_neu: f32,
    pub p_pos: f32,
    /// P(pos) − P(neg) ∈ [−1, 1].
    pub score: f32,
    /// argmax: 0 neg, 1 neu, 2 pos.
    pub label: usize,
    /// Attention-masked mean of the last hidden state.
    pub embedding: Vec<f32>,
}

/// Tokenised batch: row-major `[B, S]` tensors.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub batch: usize,
    pub seq: usize,
    pub input_ids: Vec<i64>,
    pub attention_mask: Vec<i64>,
    pub token_type_ids: Vec<i64>,
}

pub struct FinBert {
    session: Arc<SharedSession>,
    tokenizer: Tokenizer,
    pad_id: i64,
    pub max_length: usize,
}

fn tok_err(e: impl std::fmt::Display) -> ModelError {
    ModelError::Artifact(format!("tokenizer: {e}"))
}

/// A BERT WordPiece tokenizer from `vocab.txt`: cased, accents kept (Hangul stays composed).
fn from_vocab(vocab: &Path) -> ModelResult<Tokenizer> {
    let path = vocab
        .to_str()
        .ok_or_else(|| tok_err("vocab path is not UTF-8"))?;
    let wp = WordPiece::from_file(path)
        .unk_token("[UNK]".into())
        .build()
        .map_err(tok_err)?;
    let id = |t: &str| {
        wp.get_vocab()
            .get(t)
            .copied()
            .ok_or_else(|| tok_err(format!("{} has no {t}", vocab.display())))
    };
    let (cls, sep) = (id("[CLS]")?, id("[SEP]")?);
    let mut tk = Tokenizer::new(wp);
    tk.with_normalizer(Some(BertNormalizer::new(true, true, Some(false), false)));
    tk.with_pre_tokenizer(Some(BertPreTokenizer));
    tk.with_post_processor(Some(BertProcessing::new(
        ("[SEP]".into(), sep),
        ("[CLS]".into(), cls),
    )));
    Ok(tk)
}

impl FinBert {
    /// Loads `dir/model.onnx` and `dir/tokenizer.json` (else `dir/vocab.txt`).
    pub fn load(
        dir: &Path,
        max_length: usize,
        device: Device,
        threads: usize,
    ) -> ModelResult<Self> {
        let tj = dir.join("tokenizer.json");
        let mut tokenizer = if tj.is_file() {
            Tokenizer::from_file(&tj).map_err(tok_err)?
        } else if dir.join("vocab.txt").is_file() {
            from_vocab(&dir.join("vocab.txt"))?
        } else {
            return Err(ModelError::ModelMissing(format!(
                "{}: neither tokenizer.json nor vocab.txt",
                dir.display()
            )));
        };
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length,
                ..Default::default()
            }))
            .map_err(tok_err)?;
        let pad_id = tokenizer.token_to_id("[PAD]").map(i64::from).unwrap_or(0);
        let session = onnx::session(&dir.join("model.onnx"), device, threads)?;
        onnx::expect_io(
            &session,
            &["input_ids", "attention_mask", "token_type_ids"],
            &["logits", "last_hidden_state"],
        )?;
        Ok(Self {
            session,
            tokenizer,
            pad_id,
            max_length,
        })
    }

    pub fn device(&self) -> &'static str {
        self.session.device
    }

    /// Tokenises `texts` (no padding): ids and type ids per text.
    pub fn tokenize(&self, texts: &[&str]) -> ModelResult<Vec<(Vec<i64>, Vec<i64>)>> {
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(tok_err)?;
        Ok(enc
            .iter()
            .map(|e| {
                (
                    e.get_ids().iter().map(|&i| i64::from(i)).collect(),
                    e.get_type_ids().iter().map(|&i| i64::from(i)).collect(),
                )
            })
            .collect())
    }

    /// Pads tokenised rows to the longest one.
    pub fn pad(&self, rows: &[&(Vec<i64>, Vec<i64>)]) -> Encoded {
        let seq = rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(1);
        let mut e = Encoded {
            batch: rows.len(),
            seq,
            input_ids: Vec::with_capacity(rows.len() * seq),
            attention_mask: Vec::with_capacity(rows.len() * seq),
            token_type_ids: Vec::with_capacity(rows.len() * seq),
        };
        for (ids, types) in rows {
            let pad = seq - ids.len();
            e.input_ids.extend(ids.iter().copied());
            e.input_ids.extend(std::iter::repeat_n(self.pad_id, pad));
            e.attention_mask.extend(std::iter::repeat_n(1, ids.len()));
            e.attention_mask.extend(std::iter::repeat_n(0, pad));
            e.token_type_ids.extend(types.iter().copied());
            e.token_type_ids.extend(std::iter::repeat_n(0, pad));
        }
        e
    }

    /// Raw run: (logits `[B, 3]`, last hidden state `[B, S, H]`, H).
    pub fn run_raw(&self, e: &Encoded) -> ModelResult<(Vec<f32>, Vec<f32>, usize)> {
        let t = |v: &Vec<i64>, name: &str| {
            Tensor::from_array(([e.batch, e.seq], v.clone().into_boxed_slice()))
                .map_err(|err| ModelError::Inference(format!("{name} tensor: {err}")))
        };
        let (ids, mask, types) = (
            t(&e.input_ids, "input_ids")?,
            t(&e.attention_mask, "attention_mask")?,
            t(&e.token_type_ids, "token_type_ids")?,
        );
        self.session.with(|s| {
            let out = s
                .run(ort::inputs![
                    "input_ids" => ids,
                    "attention_mask" => mask,
                    "token_type_ids" => types,
                ])
                .map_err(|err| ModelError::Inference(format!("finbert run: {err}")))?;
            let (ls, logits) = out["logits"]
                .try_extract_tensor::<f32>()
                .map_err(|err| ModelError::Inference(format!("logits: {err}")))?;
            let (hs, hidden) = out["last_hidden_state"]
                .try_extract_tensor::<f32>()
                .map_err(|err| ModelError::Inference(format!("last_hidden_state: {err}")))?;
            if ls.as_ref() != [e.batch as i64, 3]
                || hs.len() != 3
                || hs[0] != e.batch as i64
                || hs[1] != e.seq as i64
            {
                return Err(ModelError::Inference(format!(
                    "unexpected output shapes: logits {ls:?}, last_hidden_state {hs:?}"
                )));
            }
            Ok((logits.to_vec(), hidden.to_vec(), hs[2] as usize))
        })
    }

    /// Scores of one padded batch.
    pub fn score_encoded(&self, e: &Encoded) -> ModelResult<Vec<BertScore>> {
        let (logits, hidden, h) = self.run_raw(e)?;
        Ok((0..e.batch)
            .map(|b| {
                let l = &logits[b * 3..b * 3 + 3];
                let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let ex: Vec<f32> = l.iter().map(|v| (v - m).exp()).collect();
                let z: f32 = ex.iter().sum();
                let p = [ex[0] / z, ex[1] / z, ex[2] / z];
                let label = (0..3)
                    .max_by(|&i, &j| p[i].total_cmp(&p[j]).then(j.cmp(&i)))
                    .unwrap_or(1);
                let mut emb = vec![0f32; h];
                let mut n = 0f32;
                for s in 0..e.seq {
                    if e.attention_mask[b * e.seq + s] == 0 {
                        continue;
                    }
                    n += 1.0;
                    let row = &hidden[(b * e.seq + s) * h..(b * e.seq + s + 1) * h];
                    for (acc, v) in emb.iter_mut().zip(row) {
                        *acc += v;
                    }
                }
                for v in &mut emb {
                    *v /= n.max(1.0);
                }
                BertScore {
                    p_neg: p[0],
                    p_neu: p[1],
                    p_pos: p[2],
                    score: p[2] - p[0],
                    label,
                    embedding: emb,
                }
            })
            .collect())
    }

    /// Scores every text in length-bucketed batches of `batch_size`, in input order.
    pub fn score(&self, texts: &[&str], batch_size: usize) -> ModelResult<Vec<BertScore>> {
        let toks = self.tokenize(texts)?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| toks[i].0.len());
        let mut out: Vec<Option<BertScore>> = vec![None; texts.len()];
        for chunk in order.chunks(batch_size.max(1)) {
            let rows: Vec<&(Vec<i64>, Vec<i64>)> = chunk.iter().map(|&i| &toks[i]).collect();
            let scores = self.score_encoded(&self.pad(&rows))?;
            for (&i, s) in chunk.iter().zip(scores) {
                out[i] = Some(s);
            }
        }
        out.into_iter()
            .map(|s| s.ok_or_else(|| ModelError::Inference("a text was not scored".into())))
            .collect()
    }
}
