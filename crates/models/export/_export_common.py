"""Helpers shared by the krxflow ONNX export scripts (chronos_bolt.py, finbert.py).

Not a CLI. Imported from the scripts' own directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

# ONNX Runtime vs PyTorch: max |err| / max |ref| must stay below this
REL_TOL = 1e-4


def f32_token(v) -> str:
    """Shortest decimal string that round-trips to the same float32; NaN -> null."""
    v = np.float32(v)
    if np.isnan(v):
        return "null"
    if np.isinf(v):
        raise ValueError("inf cannot be written to JSON")
    return str(v)  # numpy >= 1.14 prints the shortest round-trip repr of a float32


def tensor_json(arr: np.ndarray) -> str:
    arr = np.asarray(arr)
    shape = json.dumps([int(d) for d in arr.shape])
    if arr.dtype.kind == "f":
        data = ",".join(f32_token(v) for v in arr.astype(np.float32).ravel())
    elif arr.dtype.kind in "iub":
        data = ",".join(str(int(v)) for v in arr.ravel())
    else:
        raise TypeError(f"unsupported dtype {arr.dtype}")
    return '{"shape": %s, "data": [%s]}' % (shape, data)


def write_reference(path: Path, inputs: dict, outputs: dict, extra: dict | None = None) -> None:
    """Write {extra..., "inputs": {name: {shape, data}}, "outputs": {...}} and re-read it to
    check that every value survives the JSON round trip bit-exactly (as float32)."""
    parts = []
    for k, v in (extra or {}).items():
        parts.append("%s: %s" % (json.dumps(k), json.dumps(v, ensure_ascii=False)))
    for group, tensors in (("inputs", inputs), ("outputs", outputs)):
        body = ",\n    ".join("%s: %s" % (json.dumps(n), tensor_json(a)) for n, a in tensors.items())
        parts.append("%s: {\n    %s\n  }" % (json.dumps(group), body))
    path.write_text("{\n  " + ",\n  ".join(parts) + "\n}\n", encoding="utf-8")

    back = json.loads(path.read_text(encoding="utf-8"))
    for group, tensors in (("inputs", inputs), ("outputs", outputs)):
        for n, a in tensors.items():
            a = np.asarray(a)
            entry = back[group][n]
            assert entry["shape"] == list(a.shape), f"JSON shape mismatch for {n}"
            if a.dtype.kind == "f":
                got = np.array([np.nan if x is None else x for x in entry["data"]], dtype=np.float32)
                want = a.astype(np.float32).ravel()
                ok = np.array_equal(got.view(np.uint32)[~np.isnan(got)], want.view(np.uint32)[~np.isnan(want)])
                ok = ok and np.array_equal(np.isnan(got), np.isnan(want))
            else:
                ok = np.array_equal(np.array(entry["data"], dtype=np.int64), a.astype(np.int64).ravel())
            assert ok, f"JSON round-trip mismatch for {n}"


def compare(
    name: str, got: np.ndarray, ref: np.ndarray, atol: float, rel_tol: float = REL_TOL, row_scale=None
) -> dict:
    """Print and assert error metrics between an ONNX Runtime result and the PyTorch reference.

    rel       = max|got-ref| / max(max|ref|, 1e-6)           (asserted < rel_tol)
    elem_rel  = max_i |got-ref|_i / max(|ref_i|, atol)        (asserted < 10 * rel_tol)
    norm      = max |got-ref| / per-row scale (optional; for Chronos: the error in units of
                the series' standard deviation, i.e. in the model's normalised space;
                asserted < 10 * rel_tol)
    """
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert got.shape == ref.shape, f"{name}: shape {got.shape} != {ref.shape}"
    assert np.isfinite(got).all() and np.isfinite(ref).all(), f"{name}: non-finite values"
    diff = np.abs(got - ref)
    max_abs = float(diff.max())
    rel = max_abs / max(float(np.abs(ref).max()), 1e-6)
    elem_rel = float((diff / np.maximum(np.abs(ref), atol)).max())
    msg = (
        f"  {name}: max_abs_err={max_abs:.3e}  max_abs_err/max|ref|={rel:.3e}  "
        f"max_elem |err|/max(|ref|,atol={atol:.4g})={elem_rel:.3e}"
    )
    norm = None
    if row_scale is not None:
        rs = np.asarray(row_scale, dtype=np.float64).reshape((-1,) + (1,) * (diff.ndim - 1))
        norm = float((diff / rs).max())
        msg += f"  max |err|/series_std={norm:.3e}"
    print(msg, flush=True)
    assert rel < rel_tol, f"{name}: relative error {rel:.3e} >= {rel_tol}"
    assert elem_rel < rel_tol * 10, f"{name}: elementwise relative error {elem_rel:.3e} >= {10 * rel_tol}"
    if norm is not None:
        # float32 rounding of the de-normalised output alone is ~1.2e-7 * |ref| / std, which
        # can approach 1e-4 for flat series at a high price level, hence the looser bound.
        assert norm < 10 * rel_tol, f"{name}: normalised error {norm:.3e} >= {10 * rel_tol}"
    return {"max_abs": max_abs, "rel": rel, "elem_rel": elem_rel, "norm": norm}


def ort_session(onnx_path: Path):
    """CPU ONNX Runtime session, or None when onnxruntime is not importable."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def describe_onnx(onnx_path: Path) -> str:
    """One line per graph input/output: name, dtype, shape (symbolic dims by name)."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    opsets = ", ".join("%s=%d" % (o.domain or "ai.onnx", o.version) for o in m.opset_import)
    lines = [f"opset: {opsets}"]
    for kind, vals in (("input", m.graph.input), ("output", m.graph.output)):
        for v in vals:
            t = v.type.tensor_type
            dims = [d.dim_param if d.HasField("dim_param") else d.dim_value for d in t.shape.dim]
            lines.append(f"{kind} {v.name}: {onnx.TensorProto.DataType.Name(t.elem_type)} {dims}")
    return "\n".join(lines)
