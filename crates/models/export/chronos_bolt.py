#!/usr/bin/env python3
"""Export a Chronos-Bolt forecaster to ONNX for the krxflow Rust runtime.

Three modes (exactly one is required):

  --checkpoint DIR     Load a local Hugging Face Chronos-Bolt checkpoint and export it.
  --random-tiny        Randomly initialised Chronos-Bolt with the *real* architecture
                       (chronos.ChronosBoltModelForForecasting on a T5 config) but tiny
                       dimensions. Used for the committed test fixture.
  --random-size small  Randomly initialised, chronos-bolt-small sized model
                       (d_model 512, 6+6 layers, 8 heads, d_ff 2048, context_length 2048
                       like the published model) for benchmarks (~190 MB, not committed).

Using real weights (needs network once, on the user's machine):

    pip install -r crates/models/export/requirements.txt
    hf download amazon/chronos-bolt-small --local-dir ~/models/chronos-bolt-small
    # (older huggingface_hub < 1.0: huggingface-cli download amazon/chronos-bolt-small --local-dir ...)
    python crates/models/export/chronos_bolt.py \\
        --checkpoint ~/models/chronos-bolt-small --out ~/models/chronos-bolt-small-onnx

Regenerating the committed fixture (no network needed):

    python crates/models/export/chronos_bolt.py --random-tiny --seed 0 \\
        --out crates/models/tests/fixtures/chronos_bolt_tiny

Output folder:

  model.onnx      ONNX graph (single file, weights embedded)
  config.json     the HF config, plus top-level context_length / prediction_length /
                  quantiles / input_patch_size / input_patch_stride convenience keys
  reference.json  deterministic input and the PyTorch output for it (see below)

ONNX contract:

  input   context    float32 [batch, time]   dynamic batch and time; NaN = missing value
                                             (left-pad short series with NaN). Inputs longer
                                             than context_length are truncated to the last
                                             context_length steps inside the graph.
  output  quantiles  float32 [batch, Q, H]   Q = len(quantiles) (9), H = prediction_length
                                             (64); identical to
                                             ChronosBoltModelForForecasting.forward(context)
                                             .quantile_preds, i.e. already de-normalised to
                                             the input scale.

reference.json:

  {"inputs":  {"context":   {"shape": [B, T], "data": [row-major floats, NaN as null]}},
   "outputs": {"quantiles": {"shape": [B, Q, H], "data": [...]}}}

The reference output is computed with the *unmodified* PyTorch forward of
ChronosBoltModelForForecasting. Floats are written with the shortest decimal
representation that round-trips to the same float32 value.

Export notes: the legacy TorchScript exporter (torch.onnx.export(..., dynamo=False),
opset 17) is used. Four pieces of the Chronos-Bolt forward do not export correctly with
dynamic shapes as written, so they are replaced *only while exporting* with
numerically equivalent code (the script checks the equivalence in PyTorch and against
ONNX Runtime on other batch sizes / lengths):
  * InstanceNorm.forward: torch.nanmean has no ONNX symbolic -> explicit masked
    sum / count.
  * Patch.forward: the python `if length % patch_size != 0` would be frozen at trace
    time -> always left-pad by (-length) % patch_size NaNs (possibly zero); unfold with
    size == stride -> reshape.
  * context truncation (`if context.shape[-1] > context_length`) would be frozen at
    trace time -> the wrapper always slices context[:, -context_length:].
  * `torch.full((batch, 1), token_id)` for the [REG] / decoder-start ids is typed float
    by the exporter when batch is dynamic (invalid Gather) -> a forward pre-hook casts
    the ids to int64 in every nn.Embedding.
NaN handling in the graph: IsNaN / Not / Where / ReduceSum / Div (masked mean and std),
Pad with a NaN constant (left padding to a multiple of the patch size).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep __pycache__ out of the repo
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _export_common import compare, describe_onnx, ort_session, write_reference  # noqa: E402

OPSET = 17
QUANTILES = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


# ----------------------------------------------------------------------------- model


def _t5_chronos_config(
    *,
    d_model: int,
    num_layers: int,
    num_decoder_layers: int,
    num_heads: int,
    d_ff: int,
    context_length: int,
    prediction_length: int = 64,
    patch: int = 16,
    initializer_factor: float = 0.05,
):
    from transformers import T5Config

    cfg = T5Config(
        vocab_size=2,
        d_model=d_model,
        d_kv=d_model // num_heads,
        d_ff=d_ff,
        num_layers=num_layers,
        num_decoder_layers=num_decoder_layers,
        num_heads=num_heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,
        dropout_rate=0.1,
        layer_norm_epsilon=1e-6,
        initializer_factor=initializer_factor,
        feed_forward_proj="relu",
        is_encoder_decoder=True,
        use_cache=True,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        classifier_dropout=0.0,
    )
    cfg.architectures = ["ChronosBoltModelForForecasting"]
    cfg.chronos_pipeline_class = "ChronosBoltPipeline"
    cfg.chronos_config = {
        "context_length": context_length,
        "prediction_length": prediction_length,
        "input_patch_size": patch,
        "input_patch_stride": patch,
        "quantiles": list(QUANTILES),
        "use_reg_token": True,
    }
    return cfg


RANDOM_SIZES = {
    # committed fixture: keep model.onnx at a few hundred KB
    "tiny": dict(
        d_model=32, num_layers=2, num_decoder_layers=2, num_heads=2, d_ff=64, context_length=512,
        # Larger than the published 0.05 so that the random forecasts are not ~constant
        # (0.05 gives |normalised output| < 0.06; 0.3 gives roughly +-2.5 sigma), i.e. the
        # fixture actually exercises the network. Real checkpoints keep their own value.
        initializer_factor=0.3,
    ),
    # amazon/chronos-bolt-small shaped (context_length 2048 like the published model)
    "small": dict(
        d_model=512, num_layers=6, num_decoder_layers=6, num_heads=8, d_ff=2048, context_length=2048,
        initializer_factor=0.05,
    ),
}


def build_random(size: str, seed: int):
    from chronos.chronos_bolt import ChronosBoltModelForForecasting

    torch.manual_seed(seed)
    cfg = _t5_chronos_config(**RANDOM_SIZES[size])
    model = ChronosBoltModelForForecasting(cfg)
    model.eval()
    return model


def load_checkpoint(path: str):
    from chronos import BaseChronosPipeline
    from chronos.chronos_bolt import ChronosBoltModelForForecasting

    pipe = BaseChronosPipeline.from_pretrained(path, device_map="cpu", dtype=torch.float32)
    model = getattr(pipe, "model", None) or getattr(pipe, "inner_model", None)
    if not isinstance(model, ChronosBoltModelForForecasting):
        raise SystemExit(f"{path} is not a Chronos-Bolt checkpoint (got {type(model).__name__})")
    model = model.to(torch.float32)
    model.eval()
    return model


# ----------------------------------------------------------------------------- export


class ChronosBoltOnnx(nn.Module):
    """Thin wrapper: context [B, T] float32 (NaN = missing) -> quantile_preds [B, Q, H]."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.context_length = int(model.chronos_config.context_length)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        # Same as the `if context.shape[-1] > context_length` truncation in
        # ChronosBoltModelForForecasting.encode, but without a python branch
        # (slicing past the start clamps, so this is a no-op for short inputs).
        context = context[:, -self.context_length :]
        return self.model(context=context).quantile_preds


def _instance_norm_forward_export(self, x, loc_scale=None):
    """InstanceNorm.forward without torch.nanmean (no ONNX symbolic)."""
    orig_dtype = x.dtype
    x = x.to(torch.float32)
    if loc_scale is None:
        observed = torch.isnan(x).logical_not()
        count = observed.to(torch.float32).sum(dim=-1, keepdim=True)
        loc = torch.where(observed, x, 0.0).sum(dim=-1, keepdim=True) / count  # NaN if count == 0
        loc = torch.where(torch.isnan(loc), 0.0, loc)
        sq = (x - loc).square()
        var = torch.where(observed, sq, 0.0).sum(dim=-1, keepdim=True) / count
        scale = var.sqrt()
        scale = torch.where(torch.isnan(scale), 1.0, scale)
        scale = torch.where(scale == 0, self.eps, scale)
    else:
        loc, scale = loc_scale
    scaled_x = (x - loc) / scale
    if self.use_arcsinh:
        scaled_x = torch.arcsinh(scaled_x)
    return scaled_x.to(orig_dtype), (loc, scale)


def _patch_forward_export(self, x):
    """Patch.forward with a shape-independent left padding (0..patch_size-1 NaNs)."""
    length = x.shape[-1]
    pad = (self.patch_size - length % self.patch_size) % self.patch_size
    x = F.pad(x, (pad, 0), mode="constant", value=float("nan"))
    if self.patch_size == self.patch_stride:
        return x.reshape(x.shape[0], -1, self.patch_size)
    return x.unfold(dimension=-1, size=self.patch_size, step=self.patch_stride)


def _embedding_ids_to_long(module, args):
    # The legacy exporter types `torch.full((batch, 1), token_id)` (used for the [REG] and
    # decoder-start token ids) as float when `batch` is dynamic, which makes the Gather of
    # the embedding lookup invalid. Casting the ids to int64 is a no-op in eager mode.
    return (args[0].long(),) + tuple(args[1:])


class _ExportPatches:
    """Context manager swapping in the export-friendly forwards above."""

    def __init__(self, model=None):
        self.model = model

    def __enter__(self):
        from chronos import chronos_bolt as cb

        self._saved = (cb.InstanceNorm.forward, cb.Patch.forward)
        cb.InstanceNorm.forward = _instance_norm_forward_export
        cb.Patch.forward = _patch_forward_export
        self._hooks = []
        if self.model is not None:
            for m in self.model.modules():
                if isinstance(m, nn.Embedding):
                    self._hooks.append(m.register_forward_pre_hook(_embedding_ids_to_long))
        return self

    def __exit__(self, *exc):
        from chronos import chronos_bolt as cb

        cb.InstanceNorm.forward, cb.Patch.forward = self._saved
        for h in self._hooks:
            h.remove()
        return False


def export_onnx(wrapper: nn.Module, example: torch.Tensor, path: Path) -> None:
    with _ExportPatches(wrapper), torch.no_grad():
        torch.onnx.export(
            wrapper,
            (example,),
            str(path),
            input_names=["context"],
            output_names=["quantiles"],
            dynamic_axes={"context": {0: "batch", 1: "time"}, "quantiles": {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    m = onnx.load(str(path))
    onnx.checker.check_model(m)


# ----------------------------------------------------------------------------- data / io


def reference_context() -> np.ndarray:
    """B=3, T=100 deterministic price-like random walks; NaNs for missing values."""
    rng = np.random.default_rng(20240601)
    T = 100
    rows = []
    for start, vol in ((50000.0, 0.012), (70000.0, 0.015), (1200.0, 0.02)):
        steps = rng.normal(0.0005, vol, size=T)
        rows.append(start * np.exp(np.cumsum(steps)))
    ctx = np.stack(rows).astype(np.float32)
    ctx = np.round(ctx)  # KRX prices are integral won
    ctx[0, 57] = np.nan  # one missing value in the middle of the first series
    ctx[2, :40] = np.nan  # third series is short: left padded with NaN
    return ctx.astype(np.float32)


def series_scale(ctx: np.ndarray, context_length: int) -> np.ndarray:
    """Per-series std as used by Chronos-Bolt's InstanceNorm (fallbacks included)."""
    c = np.asarray(ctx, dtype=np.float64)[:, -context_length:]
    observed = ~np.isnan(c)
    count = observed.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        loc = np.where(observed, c, 0.0).sum(axis=1) / count
        loc = np.where(np.isnan(loc), 0.0, loc)
        s = np.sqrt(np.where(observed, (c - loc[:, None]) ** 2, 0.0).sum(axis=1) / count)
    s = np.where(np.isnan(s), 1.0, s)
    return np.where(s == 0, 1e-5, s)


# ----------------------------------------------------------------------------- main


def torch_quantiles(model, ctx: np.ndarray) -> np.ndarray:
    """Reference: the unmodified ChronosBoltModelForForecasting.forward."""
    with torch.no_grad():
        return model(context=torch.from_numpy(np.ascontiguousarray(ctx))).quantile_preds.numpy()


def verify_with_onnxruntime(model, onnx_path: Path, ctx: np.ndarray, ref: np.ndarray) -> None:
    sess = ort_session(onnx_path)
    if sess is None:
        print("WARNING: onnxruntime not importable: skipping ONNX verification", file=sys.stderr)
        return

    def run(c):
        return sess.run(["quantiles"], {"context": np.ascontiguousarray(c, dtype=np.float32)})[0]

    def atol_for(c):  # errors scale with the series' magnitude
        return 1e-3 * max(float(np.nanmax(np.abs(c))), 1.0)

    ctx_len = int(model.chronos_config.context_length)
    print("ONNX Runtime vs PyTorch (unpatched forward):")
    compare("reference B=3,T=100", run(ctx), ref, atol_for(ctx), row_scale=series_scale(ctx, ctx_len))

    rng = np.random.default_rng(7)
    cases = []
    # different batch and time length, T multiple of patch size, with NaN padding
    c = (1000.0 + np.cumsum(rng.normal(0, 5, size=(5, 64)), axis=1)).astype(np.float32)
    c[1, :20] = np.nan
    c[3, 10] = np.nan
    cases.append(("B=5,T=64", c))
    # single series, odd length
    cases.append(("B=1,T=37", (300.0 + np.cumsum(rng.normal(0, 1, size=(1, 37)), axis=1)).astype(np.float32)))
    # longer than context_length -> truncation inside the graph
    c = (80000.0 + np.cumsum(rng.normal(0, 300, size=(2, ctx_len + 23)), axis=1)).astype(np.float32)
    c[0, -5] = np.nan
    cases.append((f"B=2,T={ctx_len + 23}", c))
    # constant series (scale == 0 -> eps), a single observation, and an all-NaN row
    c = np.full((3, 50), np.nan, dtype=np.float32)
    c[0, :] = 4200.0
    c[1, -1] = 17.0
    cases.append(("B=3,T=50 constant/single-obs/all-NaN", c))
    for name, c in cases:
        compare(name, run(c), torch_quantiles(model, c), atol_for(c), row_scale=series_scale(c, ctx_len))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Export Chronos-Bolt (amazon/chronos-bolt-*) to ONNX: input `context` float32 "
        "[batch, time] (NaN = missing), output `quantiles` float32 [batch, 9, 64].",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Real weights: hf download amazon/chronos-bolt-small --local-dir DIR (or huggingface-cli download ...); "
        "then --checkpoint DIR.",
    )
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="DIR", help="local Hugging Face Chronos-Bolt checkpoint directory")
    src.add_argument("--random-tiny", action="store_true", help="random-init tiny model (test fixture)")
    src.add_argument("--random-size", choices=sorted(RANDOM_SIZES), help="random-init model of a named size")
    ap.add_argument("--out", required=True, metavar="OUTDIR", help="output folder (created if missing)")
    ap.add_argument("--seed", type=int, default=0, help="torch seed for random init (default 0)")
    ap.add_argument("--skip-verify", action="store_true", help="do not run the ONNX Runtime comparison")
    args = ap.parse_args(argv)

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))

    if args.checkpoint:
        model = load_checkpoint(args.checkpoint)
        source = {"checkpoint": os.path.basename(os.path.normpath(args.checkpoint))}
    else:
        size = "tiny" if args.random_tiny else args.random_size
        model = build_random(size, args.seed)
        source = {"random_size": size, "seed": args.seed}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path = out / "model.onnx"

    ctx = reference_context()
    ref = torch_quantiles(model, ctx)
    cc = model.chronos_config
    assert ref.shape == (ctx.shape[0], len(cc.quantiles), cc.prediction_length), ref.shape

    wrapper = ChronosBoltOnnx(model).eval()
    # the export-time replacements must not change the PyTorch result
    with _ExportPatches(wrapper), torch.no_grad():
        patched = wrapper(torch.from_numpy(ctx)).numpy()
    print("PyTorch export-patched forward vs unpatched forward:")
    compare("reference B=3,T=100", patched, ref, 1e-3 * float(np.nanmax(np.abs(ctx))),
            row_scale=series_scale(ctx, int(cc.context_length)))

    export_onnx(wrapper, torch.from_numpy(ctx), onnx_path)
    print(describe_onnx(onnx_path))
    if not args.skip_verify:
        verify_with_onnxruntime(model, onnx_path, ctx, ref)

    cfg = model.config.to_dict()
    cfg["context_length"] = int(cc.context_length)
    cfg["prediction_length"] = int(cc.prediction_length)
    cfg["quantiles"] = [float(q) for q in cc.quantiles]
    cfg["input_patch_size"] = int(cc.input_patch_size)
    cfg["input_patch_stride"] = int(cc.input_patch_stride)
    cfg["onnx"] = {
        "opset": OPSET,
        "inputs": {"context": {"dtype": "float32", "shape": ["batch", "time"]}},
        "outputs": {"quantiles": {"dtype": "float32", "shape": ["batch", len(cc.quantiles), cc.prediction_length]}},
        "source": source,
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True, default=str) + "\n")
    write_reference(out / "reference.json", {"context": ctx}, {"quantiles": ref})

    for f in sorted(out.iterdir()):
        print(f"wrote {f} ({f.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
