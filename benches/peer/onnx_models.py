"""The Python path around the same ONNX files krxflow's model operators run: what a quant
would write with the Hugging Face tokenizer, ONNX Runtime, NumPy and pandas.

    python onnx_models.py finbert MODEL_DIR TEXTS.json OUT.json RUNS BATCH THREADS
    python onnx_models.py chronos MODEL_DIR BARS.parquet OUT.json RUNS BATCH THREADS CONTEXT HORIZONS

Each timed run does what one operator run does: get the session (created once per process and
kept, as krxflow's operators keep theirs), load the tokenizer, prepare the inputs, run every
batch, post-process. FinBERT: headlines are tokenized (truncation at 128),
sorted by length and padded per batch as the operator does, so both run the same batches;
softmax of the logits. Chronos-Bolt: each code's last CONTEXT closes as float32 (left-padded
with NaN), batches of BATCH series, then for each horizon the nine quantile prices and what
krxflow derives from them (median, expected return, up/flat/down with the +-0.3% band,
confidence). Prints one JSON line: every timed run's seconds after one warm-up, the items
per run and the thread count; writes the last run's results to OUT.json for the agreement
check."""

import json
import sys
import time

import numpy as np
import onnxruntime as ort

FLAT_BAND = 0.003
LEVELS = np.arange(1, 10) / 10.0


SESSIONS: dict = {}


def session(model_dir: str, threads: int) -> ort.InferenceSession:
    """The model's session, created on first use and kept (krxflow caches its sessions too)."""
    key = (model_dir, threads)
    if key not in SESSIONS:
        SESSIONS[key] = new_session(model_dir, threads)
    return SESSIONS[key]


def new_session(model_dir: str, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(f"{model_dir}/model.onnx", so, providers=["CPUExecutionProvider"])


def finbert(model_dir: str, texts: list, batch: int, threads: int) -> list:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()  # padded per batch below, as the operator does
    tok.enable_truncation(128)
    sess = session(model_dir, threads)
    pad = tok.token_to_id("[PAD]") or 0
    enc = tok.encode_batch(texts)
    order = sorted(range(len(texts)), key=lambda i: len(enc[i].ids))
    probs = np.empty((len(texts), 3), dtype=np.float32)
    for s in range(0, len(order), batch):
        idx = order[s : s + batch]
        seq = max(1, max(len(enc[i].ids) for i in idx))
        ids = np.full((len(idx), seq), pad, dtype=np.int64)
        mask = np.zeros((len(idx), seq), dtype=np.int64)
        types = np.zeros((len(idx), seq), dtype=np.int64)
        for r, i in enumerate(idx):
            n = len(enc[i].ids)
            ids[r, :n] = enc[i].ids
            mask[r, :n] = 1
            types[r, :n] = enc[i].type_ids
        (logits,) = sess.run(
            ["logits"], {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        )
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs[idx] = e / e.sum(axis=1, keepdims=True)
    return probs.tolist()


def cdf(q: np.ndarray, x: float) -> float:
    """krxflow's piecewise-linear CDF through (q[k], k/10), extended linearly beyond the ends."""
    n = len(q)

    def seg(i: int) -> float:
        x0, x1, y0, y1 = q[i], q[i + 1], LEVELS[i], LEVELS[i + 1]
        if x1 > x0:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        return y0 if x < x0 else y1

    if x <= q[0]:
        v = seg(0)
    elif x >= q[n - 1]:
        v = seg(n - 2)
    else:
        i = min(max(int(np.searchsorted(q, x, side="right")) - 1, 0), n - 2)
        v = seg(i)
    return min(max(v, 0.0), 1.0)


def derive(q: np.ndarray, close: float) -> dict:
    s = np.sort(q)
    down = cdf(s, close * (1.0 - FLAT_BAND))
    up = 1.0 - cdf(s, close * (1.0 + FLAT_BAND))
    med_ret = s[4] / close - 1.0
    width = (s[8] - s[0]) / close
    return {
        "median": float(s[4]),
        "expected_return": float(s.sum() / 9.0 / close - 1.0),
        "prob_up": up,
        "prob_flat": max(1.0 - up - down, 0.0),
        "prob_down": down,
        "conf": min(max(1.0 - (width / max(abs(med_ret), 0.001)) / 2.0, 0.0), 1.0),
    }


def chronos(model_dir, bars, batch, threads, context, horizons) -> list:
    sess = session(model_dir, threads)
    last = bars.sort_values(["code", "date"]).groupby("code", sort=True).tail(context)
    codes, series = [], []
    for code, g in last.groupby("code", sort=True):
        codes.append(code)
        series.append(g["close"].to_numpy(dtype=np.float64))
    out = []
    for s in range(0, len(series), batch):
        chunk = series[s : s + batch]
        t = max(len(c) for c in chunk)
        ctx = np.full((len(chunk), t), np.nan, dtype=np.float32)
        for r, c in enumerate(chunk):
            ctx[r, t - len(c) :] = c.astype(np.float32)
        (q,) = sess.run(["quantiles"], {"context": ctx})
        for r, c in enumerate(chunk):
            close = float(c[-1])
            for h in horizons:
                prices = q[r, :, h - 1].astype(np.float64)
                row = {"code": codes[s + r], "horizon": h, "q": prices.tolist()}
                row.update(derive(prices, close))
                out.append(row)
    return out


def main() -> None:
    kind, model_dir, inp, out_path = sys.argv[1:5]
    runs, batch, threads = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    if kind == "finbert":
        with open(inp, encoding="utf-8") as f:
            texts = json.load(f)
        work = lambda: finbert(model_dir, texts, batch, threads)  # noqa: E731
        items = len(texts)
    elif kind == "chronos":
        import pandas as pd

        context = int(sys.argv[8])
        horizons = [int(h) for h in sys.argv[9].split(",")]
        bars = pd.read_parquet(inp, columns=["code", "date", "close"])
        work = lambda: chronos(model_dir, bars, batch, threads, context, horizons)  # noqa: E731
        items = bars["code"].nunique()
    else:
        raise SystemExit(f"unknown model kind {kind}")
    result = work()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - t)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(result, f)
    print(json.dumps({"engine": f"python {kind}", "compute_s": times, "items": items, "threads": threads}))


if __name__ == "__main__":
    main()
