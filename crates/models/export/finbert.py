#!/usr/bin/env python3
"""Export a (KR-)FinBERT sentence classifier to ONNX for the krxflow Rust runtime.

Three modes (exactly one is required):

  --checkpoint DIR    Load a local Hugging Face BertForSequenceClassification checkpoint
                      and its tokenizer (e.g. snunlp/KR-FinBert-SC: 0 negative,
                      1 neutral, 2 positive) and export it.
  --random-tiny       Random-init BertForSequenceClassification (3 labels, hidden 32,
                      2 layers, 2 heads, intermediate 64, 512 positions) with a small
                      WordPiece vocab built from Korean news headlines (see --corpus).
                      Used for the committed test fixture.
  --random-size base  Random-init BERT-base sized model (hidden 768, 12 layers, 12 heads,
                      intermediate 3072, vocab padded to 32000) for benchmarks.

Using real weights (needs network once, on the user's machine):

    pip install -r crates/models/export/requirements.txt
    hf download snunlp/KR-FinBert-SC --local-dir ~/models/kr-finbert-sc
    # (older huggingface_hub < 1.0: huggingface-cli download snunlp/KR-FinBert-SC --local-dir ...)
    python crates/models/export/finbert.py \\
        --checkpoint ~/models/kr-finbert-sc --out ~/models/kr-finbert-sc-onnx

Regenerating the committed fixture (no network needed; needs the headline CSV):

    python crates/models/export/finbert.py --random-tiny --seed 0 \\
        --corpus /work/shared/data/sentiment/news_headlines_labeled/news_train_labeling.csv \\
        --out crates/models/tests/fixtures/finbert_tiny

Output folder:

  model.onnx             ONNX graph (single file, weights embedded)
  config.json            the HF BertConfig (id2label etc.) plus an "onnx" section
  vocab.txt              WordPiece vocab, one token per line, line number = id
  tokenizer.json         Hugging Face `tokenizers` file (usable from the Rust tokenizers crate)
  tokenizer_config.json  transformers tokenizer settings
  special_tokens_map.json (when transformers writes it)
  reference.json         sentences, tokenizer output and PyTorch outputs (see below)

ONNX contract (all axes named batch / seq are dynamic):

  inputs   input_ids          int64   [batch, seq]
           attention_mask     int64   [batch, seq]
           token_type_ids     int64   [batch, seq]
  outputs  logits             float32 [batch, num_labels]   (3)
           last_hidden_state  float32 [batch, seq, hidden]

reference.json:

  {"sentences": [...], "max_length": 128,
   "inputs":  {"input_ids"|"attention_mask"|"token_type_ids": {"shape": [B, S], "data": [...]}},
   "outputs": {"logits": [B, 3], "last_hidden_state": [B, S, H],
               "embedding": [B, H]  (attention-mask weighted mean of last_hidden_state),
               "probs": [B, 3]      (softmax of logits)}}

Inputs are what the HF tokenizer returns for the sentences with padding=True (to the
longest sentence), truncation=True, max_length=128. Outputs come from PyTorch in eval
mode. Floats are the shortest decimal strings that round-trip to the same float32.

Tokenizer normalisation: BertNormalizer(clean_text, handle_chinese_chars, lowercase=False,
strip_accents=False). strip_accents must be False for Korean: stripping accents NFD-
decomposes Hangul syllables into jamo, which then do not match the vocab.

Export: legacy TorchScript exporter (torch.onnx.export(..., dynamo=False)), opset 17.
The wrapper calls model.bert(...) and model.classifier(model.dropout(pooler_output)),
which is exactly BertForSequenceClassification.forward's logits path (checked in torch).
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import string
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _export_common import compare, describe_onnx, ort_session, write_reference  # noqa: E402

OPSET = 17
MAX_LENGTH = 128
LABELS = {0: "negative", 1: "neutral", 2: "positive"}  # snunlp/KR-FinBert-SC
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
DEFAULT_CORPUS = "/work/shared/data/sentiment/news_headlines_labeled/news_train_labeling.csv"
CORPUS_SENTENCES = 2000  # how many headlines the tiny vocab is gathered from

# Headlines from news_train_labeling.csv used for reference.json: one long one (> 40 tokens
# with the tiny vocab), several with English / numbers / hanja / symbols.
REFERENCE_SENTENCES = [
    '비트코인, 기관 유입·골든크로스…"4만8000달러 안정적 돌파가 관건" [강민승의 트레이드나우]',
    "Today's Pick : 삼성SDI, LG디스플레이, 대웅제약",
    "한화시스템 4%↑‥ 470억 '천궁 다기능레이다 PBL' 사업계약",
    "'무돌 Hero blaze : Three kimgdoms', 日 등 아시아 4개국 서비스 시작",
    "코스피, 새해 첫날 3000선 돌파…외인 강한 순매수",
    '"대한항공, 화물운임 하락에 수익성 악화 전망…목표가↓"-흥국',
    " 원/달러 환율 2.3원 오른 1,194.1원(마감)",
    "시원찮은 여행주…中 관광객 믿고 담아도 될까",
]

RANDOM_SIZES = {
    # initializer_range 0.3 instead of BERT's 0.02: with 0.02 the random logits are all
    # ~0.003 (probs ~1/3, same argmax everywhere); 0.3 gives logits of order 1 with
    # different argmax per sentence, so the fixture exercises the classifier head.
    "tiny": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 initializer_range=0.3),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 initializer_range=0.02),
}
BASE_VOCAB_SIZE = 32000


# ----------------------------------------------------------------------------- tokenizer


def _normalizer():
    from tokenizers import normalizers

    # strip_accents=False: never NFD-decompose Hangul
    return normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False)


def read_corpus(path: str, limit: int = CORPUS_SENTENCES) -> list[str]:
    if not os.path.exists(path):
        raise SystemExit(f"corpus {path} not found (needed to build the tiny vocab); pass --corpus")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if "kor_sentence" not in (reader.fieldnames or []):
            raise SystemExit(f"{path}: expected a 'kor_sentence' column, got {reader.fieldnames}")
        return [row["kor_sentence"] for _, row in zip(range(limit), reader)]


def build_tiny_vocab(sentences: list[str]) -> list[str]:
    """Small deterministic WordPiece vocab.

    [PAD] [UNK] [CLS] [SEP] [MASK], ASCII letters/digits/punctuation (+ ##letters/##digits),
    then, gathered from the corpus (pre-tokenised exactly like BERT does):
      * frequent whole words (count >= 15, length >= 2),
      * frequent (count >= 25) word-initial pieces of 2-3 chars and ##word-final pieces of
        1-2 chars (Korean particles / endings such as ##의, ##에, ##는),
      * single characters seen >= 3 times (+ their ## form).
    Characters seen fewer than 3 times are left out, so words containing them become [UNK].
    """
    from tokenizers import pre_tokenizers

    norm, pre = _normalizer(), pre_tokenizers.BertPreTokenizer()
    words = collections.Counter()
    for s in sentences:
        for w, _ in pre.pre_tokenize_str(norm.normalize_str(s)):
            words[w] += 1
    chars = collections.Counter()
    prefixes = collections.Counter()
    suffixes = collections.Counter()
    for w, n in words.items():
        for ch in w:
            chars[ch] += n
        if len(w) >= 3:
            for k in (2, 3):
                if len(w) > k:
                    prefixes[w[:k]] += n
            for k in (1, 2):
                suffixes[w[-k:]] += n

    def by_freq(counter, min_count, min_len=1):
        items = [(t, n) for t, n in counter.items() if n >= min_count and len(t) >= min_len]
        return [t for t, _ in sorted(items, key=lambda x: (-x[1], x[0]))]

    common_chars = set(by_freq(chars, 3))
    vocab: list[str] = []
    seen: set[str] = set()

    def add(tok):
        if tok not in seen:
            seen.add(tok)
            vocab.append(tok)

    for t in SPECIAL_TOKENS:
        add(t)
    for ch in string.ascii_letters + string.digits + string.punctuation:
        add(ch)
    for ch in string.ascii_letters + string.digits:
        add("##" + ch)
    ok = lambda t: all(c in common_chars for c in t)  # noqa: E731
    for w in by_freq(words, 15, min_len=2):
        if ok(w) and not w.isascii():
            add(w)
    for p in by_freq(prefixes, 25):
        if ok(p):
            add(p)
    for p in by_freq(suffixes, 25):
        if ok(p):
            add("##" + p)
    for ch in sorted(common_chars, key=lambda c: (-chars[c], c)):
        add(ch)
        add("##" + ch)
    return vocab


def make_tokenizer(vocab: list[str]):
    from transformers import BertTokenizerFast  # == BertTokenizer (tokenizers backend) in v5

    tok = BertTokenizerFast(
        vocab={t: i for i, t in enumerate(vocab)},
        do_lower_case=False,
        tokenize_chinese_chars=True,
        strip_accents=False,
        model_max_length=512,
    )
    return tok


def check_tokenizer_normalizer(tok) -> None:
    """Warn if the tokenizer would NFD-decompose / lowercase (breaks Hangul)."""
    probe = "삼성전자 Hangul 한글"
    normalizer = tok.backend_tokenizer.normalizer
    if normalizer is not None:
        out = normalizer.normalize_str(probe)
        if out != probe:
            print(f"WARNING: tokenizer normalizer changes {probe!r} -> {out!r}", file=sys.stderr)
        if out.replace("hangul", "Hangul") != probe:
            print(
                "WARNING: the tokenizer NFD-decomposes Hangul (BertNormalizer strip_accents / lowercase);"
                " tokens will not match a composed-syllable vocab. This mirrors the checkpoint's own"
                " tokenizer settings, check its tokenizer_config.json (do_lower_case / strip_accents).",
                file=sys.stderr,
            )


# ----------------------------------------------------------------------------- model


def build_random(size: str, seed: int, vocab_size: int):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=vocab_size,
        max_position_embeddings=512,
        type_vocab_size=2,
        hidden_act="gelu",
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        layer_norm_eps=1e-12,
        pad_token_id=0,
        num_labels=3,
        id2label=dict(LABELS),
        label2id={v: k for k, v in LABELS.items()},
        architectures=["BertForSequenceClassification"],
        **RANDOM_SIZES[size],
    )
    model = BertForSequenceClassification(cfg)
    model.eval()
    return model


def load_checkpoint(path: str):
    from transformers import AutoTokenizer, BertForSequenceClassification

    model = BertForSequenceClassification.from_pretrained(path, dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(path)
    if not getattr(tok, "is_fast", False):
        raise SystemExit("need a fast (tokenizers-backed) tokenizer to write tokenizer.json")
    return model, tok


class FinBertOnnx(nn.Module):
    """(input_ids, attention_mask, token_type_ids) -> (logits, last_hidden_state)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        out = self.model.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            return_dict=True,
        )
        logits = self.model.classifier(self.model.dropout(out.pooler_output))
        return logits, out.last_hidden_state


def export_onnx(wrapper: nn.Module, example: dict, path: Path) -> None:
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            tuple(example[n] for n in names),
            str(path),
            input_names=names,
            output_names=["logits", "last_hidden_state"],
            dynamic_axes={
                **{n: {0: "batch", 1: "seq"} for n in names},
                "logits": {0: "batch"},
                "last_hidden_state": {0: "batch", 1: "seq"},
            },
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    onnx.checker.check_model(onnx.load(str(path)))


def encode(tok, sentences: list[str], max_length: int = MAX_LENGTH) -> dict:
    enc = tok(
        sentences,
        padding=True,
        truncation=True,
        max_length=max_length,
        return_tensors="np",
        return_token_type_ids=True,
        return_attention_mask=True,
    )
    return {k: np.asarray(enc[k], dtype=np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


def torch_outputs(model, inputs: dict) -> dict:
    """Reference outputs with the unmodified BertForSequenceClassification in eval mode."""
    t = {k: torch.from_numpy(v) for k, v in inputs.items()}
    with torch.no_grad():
        out = model(**t, output_hidden_states=True, return_dict=True)
        logits = out.logits
        hidden = out.hidden_states[-1]
        base = model.bert(**t, return_dict=True).last_hidden_state
    assert torch.equal(hidden, base), "hidden_states[-1] != bert(...).last_hidden_state"
    mask = t["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    embedding = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)
    probs = torch.softmax(logits, dim=-1)
    return {
        "logits": logits.numpy(),
        "last_hidden_state": hidden.numpy(),
        "embedding": embedding.numpy(),
        "probs": probs.numpy(),
    }


def verify_with_onnxruntime(model, tok, onnx_path: Path, inputs: dict, ref: dict, corpus: list[str]) -> None:
    sess = ort_session(onnx_path)
    if sess is None:
        print("WARNING: onnxruntime not importable: skipping ONNX verification", file=sys.stderr)
        return

    def run(inp):
        logits, hidden = sess.run(["logits", "last_hidden_state"], inp)
        return logits, hidden

    def check(name, inp, want):
        logits, hidden = run(inp)
        # elementwise floor: 1% of the tensor's largest magnitude (near-zero entries of a
        # LayerNorm output carry the same absolute float32 error as large ones)
        for key, got in (("logits", logits), ("last_hidden_state", hidden)):
            compare(f"{name} {key}", got, want[key], atol=1e-2 * float(np.abs(want[key]).max()))

    print("ONNX Runtime vs PyTorch:")
    check(f"reference B={inputs['input_ids'].shape[0]},S={inputs['input_ids'].shape[1]}", inputs, ref)
    others = corpus[100:102] if len(corpus) >= 102 else ["코스피 상승 마감", "삼성전자 주가 하락"]
    long_text = " ".join(corpus[200:215]) if len(corpus) >= 215 else " ".join(REFERENCE_SENTENCES * 3)
    for name, sents in (
        ("B=2", others),
        ("B=1 truncated", [long_text]),
        ("B=5", REFERENCE_SENTENCES[3:8]),
    ):
        inp = encode(tok, sents)
        name = f"{name},S={inp['input_ids'].shape[1]}"
        check(name, inp, torch_outputs(model, inp))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Export a BERT sentence classifier (KR-FinBert-SC) to ONNX: inputs input_ids / "
        "attention_mask / token_type_ids int64 [batch, seq]; outputs logits float32 [batch, 3] and "
        "last_hidden_state float32 [batch, seq, hidden].",
        epilog="Real weights: hf download snunlp/KR-FinBert-SC --local-dir DIR (or huggingface-cli download ...); then --checkpoint DIR.",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR", help="local HF BertForSequenceClassification checkpoint + tokenizer")
    src.add_argument("--random-tiny", action="store_true", help="random-init tiny model + tiny vocab (test fixture)")
    src.add_argument("--random-size", choices=sorted(RANDOM_SIZES), help="random-init model of a named size")
    ap.add_argument("--out", required=True, metavar="OUTDIR", help="output folder (created if missing)")
    ap.add_argument("--seed", type=int, default=0, help="torch seed for random init (default 0)")
    ap.add_argument(
        "--corpus",
        default=DEFAULT_CORPUS,
        help="headline CSV with a kor_sentence column; the first 2000 rows build the tiny vocab "
        "(random modes) and feed extra verification batches (default: %(default)s)",
    )
    ap.add_argument("--skip-verify", action="store_true", help="do not run the ONNX Runtime comparison")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))

    if args.checkpoint:
        model, tok = load_checkpoint(args.checkpoint)
        corpus = read_corpus(args.corpus) if os.path.exists(args.corpus) else []
        source = {"checkpoint": os.path.basename(os.path.normpath(args.checkpoint))}
        size = None
    else:
        size = "tiny" if args.random_tiny else args.random_size
        corpus = read_corpus(args.corpus)
        vocab = build_tiny_vocab(corpus)
        if size == "base":
            vocab += [f"[unused{i}]" for i in range(BASE_VOCAB_SIZE - len(vocab))]
        tok = make_tokenizer(vocab)
        model = build_random(size, args.seed, len(vocab))
        source = {"random_size": size, "seed": args.seed}
    check_tokenizer_normalizer(tok)
    assert model.config.num_labels == 3, model.config.num_labels

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"

    inputs = encode(tok, REFERENCE_SENTENCES)
    lengths = inputs["attention_mask"].sum(axis=1)
    n_unk = int((inputs["input_ids"] == tok.unk_token_id).sum())
    for s, ids in zip(REFERENCE_SENTENCES, inputs["input_ids"]):
        toks = tok.convert_ids_to_tokens([int(i) for i in ids if i != tok.pad_token_id])
        print(f"{len(toks):3d} tokens  {s!r}\n      {' '.join(toks)}")
    print(f"input shape {list(inputs['input_ids'].shape)}, lengths {lengths.tolist()}, [UNK] count {n_unk}")
    if size == "tiny":
        assert lengths.max() > 40, "expected one reference sentence longer than 40 tokens"
        assert n_unk > 0, "expected some [UNK] tokens with the tiny vocab"

    ref = torch_outputs(model, inputs)
    wrapper = FinBertOnnx(model).eval()
    with torch.no_grad():
        w_logits, w_hidden = wrapper(*(torch.from_numpy(inputs[n]) for n in ("input_ids", "attention_mask", "token_type_ids")))
    assert torch.equal(w_logits, torch.from_numpy(ref["logits"])), "wrapper logits != model logits"
    assert torch.equal(w_hidden, torch.from_numpy(ref["last_hidden_state"])), "wrapper hidden != model hidden"

    export_onnx(wrapper, {k: torch.from_numpy(v) for k, v in inputs.items()}, onnx_path)
    print(describe_onnx(onnx_path))
    if not args.skip_verify:
        verify_with_onnxruntime(model, tok, onnx_path, inputs, ref, corpus)

    # tokenizer files: vocab.txt, tokenizer.json, tokenizer_config.json (+ special_tokens_map.json).
    # Bake the reference settings into tokenizer.json explicitly (otherwise it would hold
    # whatever the last call left): truncation to 128, padding to the longest in the batch
    # with [PAD]; so `tokenizers` encode_batch() reproduces reference.json's inputs.
    backend = tok.backend_tokenizer
    backend.enable_truncation(max_length=MAX_LENGTH, stride=0, strategy="longest_first", direction="right")
    backend.enable_padding(
        direction="right", pad_id=tok.pad_token_id, pad_type_id=0, pad_token=tok.pad_token, pad_to_multiple_of=None
    )
    tok.save_pretrained(str(out))
    if not (out / "vocab.txt").exists():
        vocab_by_id = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
        assert [i for _, i in vocab_by_id] == list(range(len(vocab_by_id))), "vocab ids not contiguous"
        (out / "vocab.txt").write_text("".join(t + "\n" for t, _ in vocab_by_id), encoding="utf-8")
    # re-load the written tokenizer.json with the plain `tokenizers` library (what Rust uses)
    from tokenizers import Tokenizer

    rt = Tokenizer.from_file(str(out / "tokenizer.json"))
    encs = rt.encode_batch(REFERENCE_SENTENCES)
    for key, attr in (("input_ids", "ids"), ("attention_mask", "attention_mask"), ("token_type_ids", "type_ids")):
        got = np.array([getattr(e, attr) for e in encs], dtype=np.int64)
        assert np.array_equal(got, inputs[key]), f"tokenizer.json encode_batch mismatch for {key}"
    print("tokenizer.json (tokenizers.Tokenizer.encode_batch) reproduces reference inputs exactly")

    cfg = model.config.to_dict()
    cfg["max_length"] = MAX_LENGTH
    cfg["onnx"] = {
        "opset": OPSET,
        "inputs": {n: {"dtype": "int64", "shape": ["batch", "seq"]} for n in ("input_ids", "attention_mask", "token_type_ids")},
        "outputs": {
            "logits": {"dtype": "float32", "shape": ["batch", model.config.num_labels]},
            "last_hidden_state": {"dtype": "float32", "shape": ["batch", "seq", model.config.hidden_size]},
        },
        "source": source,
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n")
    write_reference(
        out / "reference.json",
        inputs,
        ref,
        extra={"sentences": REFERENCE_SENTENCES, "max_length": MAX_LENGTH},
    )
    for f in sorted(out.iterdir()):
        print(f"wrote {f} ({f.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
