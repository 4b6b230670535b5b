"""What krxflow's full-market day means, shared by its two Python peers (daily_polars.py and
daily_pandas.py): the constants of the loop, the trading calendar, the quantile arithmetic and the
conformal replay (NumPy: there is no frame library's way to write them), the agreement check
against the lake krxflow wrote (Polars, not timed), and the driver that times the runs and prints
the report. Each peer writes its own steps in its own library.
"""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import sys
import time
from datetime import date, timedelta
from typing import Callable

import numpy as np
import polars as pl

FLAT_BAND = 0.003
EDGE_TOL = 1e-9
HORIZONS = (1, 3, 5)
PRIORS = {"chronos": 0.6, "lgbm": 0.4, "ets": 0.4}
CORE = [
    "ret_1d", "ret_3d", "ret_5d", "ret_10d", "ret_20d", "logret_1d", "logret_5d", "logret_20d",
    "ma5_ratio", "ma20_ratio", "ma60_ratio", "rsi14", "macd", "macd_signal", "macd_hist",
    "bb_pctb", "atr14_norm", "vol_20d", "volume_z20", "turnover_chg", "hl_range", "gap_open",
]
FEATURES = CORE[:22] + [
    "close_loc", "dist_52w_high", "dist_52w_low", "dow", "mkt_ret_1d", "mkt_ret_5d", "beta_60d",
    "rel_strength_20d", "sent_n_articles", "sent_mean", "sent_weighted", "sent_pos_ratio",
    "sent_neg_ratio", "sent_decay3",
]
# A row is warm-up when a feature that needs history is null (the optional ones excepted:
# close_loc is null on a day without a range).
HISTORY = CORE + ["dow"]
CONTEXT, MIN_CONTEXT = 250, 60
WINDOW_DAYS, MIN_SCORES, GROUPS, GAMMA, TARGET = 365, 50, 3, 0.005, 0.2


# The columns of `prediction_outcomes` the day reads (the skills, the calibration, the weights'
# record), as krxflow projects its reads.
OUTCOME_COLUMNS = ["code", "base_date", "horizon", "target_date", "model", "base_close", "point",
                   "q10", "q90", "actual_close", "weight", "direction_hit"]


def read(lake: str, table: str, since: date | None = None, col: str = "date",
         columns: list[str] | None = None) -> pl.DataFrame:
    lf = pl.scan_delta(os.path.join(lake, table))
    if since is not None:
        lf = lf.filter(pl.col(col) >= since)
    if columns is not None:
        lf = lf.select(columns)
    return lf.collect()


# --- a day's run ---------------------------------------------------------------------------


class Laps:
    """Step times of one run: `lap(name)` ends the step begun at the previous lap."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.times[name] = now - self.clock
        self.clock = now


# The day's tables each peer writes (as Parquet, one file each) and the frames they hold.
OUTPUT_TABLES = [("ohlcv_daily", "bars"), ("features_daily", "features"),
                 ("lgbm_predictions", "lgbm"), ("ets_forecasts", "ets"),
                 ("predictions", "predictions"), ("prediction_members", "members"),
                 ("prediction_outcomes", "outcomes"), ("ensemble_weights", "weights")]


def write_tables(out: str, frames: dict, save: Callable) -> None:
    """`save(frame, path)` for each of the day's tables (a member that did not run has none)."""
    os.makedirs(out, exist_ok=True)
    for table, key in OUTPUT_TABLES:
        if frames[key] is not None:
            save(frames[key], os.path.join(out, f"{table}.parquet"))


# --- calendar ------------------------------------------------------------------------------


class Calendar:
    """Trading days: the panel's dates, then weekdays (the panel ends before any target)."""

    def __init__(self, days: list[date]):
        self.days = sorted(set(days))

    def add(self, d: date, n: int) -> date:
        i = self.days.index(d)
        j = i + n
        if 0 <= j < len(self.days):
            return self.days[j]
        x, k = self.days[-1], j - len(self.days) + 1
        while k > 0:
            x += timedelta(days=1)
            if x.weekday() < 5:
                k -= 1
        return x


# --- quantiles -----------------------------------------------------------------------------


LEVELS = np.arange(1, 10) / 10.0


def lgbm_returns(card: dict, scores: np.ndarray) -> np.ndarray:
    """The regression's forecasts as returns: a `target: rank` model scores ranks, which its
    card's `return_map` line (lgbm/target.rs) turns into returns; other models predict returns."""
    m = card.get("return_map")
    return m["intercept"] + m["slope"] * scores if m else scores


def quantile_cdf(q: np.ndarray, x: np.ndarray) -> np.ndarray:
    """krxflow's piecewise-linear CDF through nine sorted quantiles (rows), extrapolated by
    the end segments and clamped to [0, 1]."""
    n = q.shape[1]
    i = np.clip((q <= x[:, None]).sum(axis=1) - 1, 0, n - 2)
    rows = np.arange(q.shape[0])
    x0, x1 = q[rows, i], q[rows, i + 1]
    y0, y1 = LEVELS[i], LEVELS[i + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(x1 > x0, y0 + (y1 - y0) * (x - x0) / (x1 - x0),
                     np.where(x < x0, y0, y1))
    return np.clip(v, 0.0, 1.0)


def derive(q: np.ndarray, close: np.ndarray) -> dict:
    q = np.sort(q, axis=1)
    down = quantile_cdf(q, close * (1 - FLAT_BAND))
    up = 1 - quantile_cdf(q, close * (1 + FLAT_BAND))
    return {"median": q[:, 4], "prob_up": up, "prob_flat": np.maximum(1 - up - down, 0.0),
            "prob_down": down}


# --- the conformal replay -------------------------------------------------------------------


def conformal_replay(base: np.ndarray, target: np.ndarray, score: np.ndarray,
                     scale: np.ndarray, ds: int):
    """The calibrations in force at `ds` for one horizon: (cuts, [(q, alpha, n) | None]) or
    None (no band has enough scores). The matured scores' base and target days (days since the
    epoch), their scores and scales, sorted by target."""
    n = len(target)
    band = np.full(n, -1, np.int64)
    bases = np.unique(np.append(base, ds))
    alpha = [TARGET] * GROUPS
    issued: dict[int, tuple] = {}
    lo = nxt = 0
    for b in bases:
        while nxt < n and target[nxt] < b:
            day = target[nxt]
            end = nxt + np.searchsorted(target[nxt:], day, side="right")
            misses, counts = [0] * GROUPS, [0] * GROUPS
            # The band and calibration each row's interval was issued with.
            for bb in np.unique(base[nxt:end]):
                cuts, cals = issued[int(bb)]
                sel = np.arange(nxt, end)[base[nxt:end] == bb]
                if len(cuts) + 1 != GROUPS:
                    continue
                g = np.searchsorted(cuts, scale[sel], side="right")
                band[sel] = g
                for k in range(GROUPS):
                    here = g == k
                    if not here.any():
                        continue
                    q = cals[k][0] if cals[k] is not None else 0.0
                    misses[k] += int((score[sel][here] > q).sum())
                    counts[k] += int(here.sum())
            for k in range(GROUPS):
                if counts[k] > 0:
                    err = misses[k] / counts[k]
                    alpha[k] = min(max(alpha[k] + GAMMA * (TARGET - err), 0.005), 0.995)
            nxt = end
        while lo < nxt and target[lo] < b - WINDOW_DAYS:
            lo += 1
        if nxt > lo:
            ks = [(nxt - lo) * i // GROUPS for i in range(1, GROUPS)]
            sc = np.partition(scale[lo:nxt], ks)
            cuts = [sc[k] for k in ks]
        else:
            cuts = []
        cals = []
        for k in range(GROUPS):
            s = score[lo:nxt][band[lo:nxt] == k]
            if len(s) >= MIN_SCORES:
                r = min(max(math.ceil((len(s) + 1) * (1 - alpha[k])), 1), len(s)) - 1
                cals.append((float(np.partition(s, r)[r]), alpha[k], len(s)))
            else:
                cals.append(None)
        issued[int(b)] = (np.array(cuts), cals)
    cuts, cals = issued[ds]
    return (cuts, cals) if any(c is not None for c in cals) else None


def band_quantiles(horizon: np.ndarray, scale: np.ndarray, scores: dict, ds: int) -> np.ndarray:
    """Each prediction's conformal quantile (NaN: uncalibrated), from its horizon and scale and
    `scores[h]` = (base, target, score, scale) of horizon h's matured scores sorted by target."""
    q = np.full(len(horizon), np.nan)
    for h in HORIZONS:
        if h not in scores:
            continue
        issued = conformal_replay(*scores[h], ds)
        if issued is None:
            continue
        cuts, cals = issued
        sel = (horizon == h) & np.isfinite(scale)
        g = np.searchsorted(cuts, scale[sel], side="right")
        q[np.flatnonzero(sel)] = [cals[k][0] if cals[k] is not None else np.nan for k in g]
    return q


# --- agreement with krxflow ----------------------------------------------------------------


def max_rel(a: pl.DataFrame, b: pl.DataFrame, on: list[str], cols: list[str]) -> dict:
    j = a.join(b, on=on, suffix="_k")
    out = {"rows_peer": a.height, "rows_krxflow": b.height, "joined": j.height}
    worst = 0.0
    for c in cols:
        x, y = j.get_column(c).to_numpy(), j.get_column(c + "_k").to_numpy()
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        both_nan = np.isnan(x) & np.isnan(y)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.abs(x - y) / np.maximum(np.maximum(np.abs(x), np.abs(y)), 1e-300)
        rel = np.where(both_nan, 0.0, rel)
        rel = np.where(np.isnan(rel), np.inf, rel)  # one side null or NaN
        rel = np.where((x == y), 0.0, rel)
        if len(rel):
            worst = max(worst, float(rel.max()))
    out["max_rel"] = worst
    return out


Recompute = Callable[[dict], tuple]


def check(check_lake: str, day: date, f: dict, recompute: Recompute) -> dict:
    """The peer's day (`f`: its tables as Polars frames, the calendar under "cal") against the
    lake where krxflow ran it; `recompute(members)` is the peer's ensemble run on krxflow's own
    member forecasts (Polars frames in, (predictions, members) Polars frames out)."""
    k = lambda t, col="date": read(check_lake, t, day, col)  # noqa: E731
    res = {}
    kf = k("features_daily").filter(pl.col("date") == day)
    res["features"] = max_rel(f["features"], kf.select("code", "date", *FEATURES),
                              ["code", "date"], FEATURES)
    kl = k("lgbm_predictions", "base_date").filter(pl.col("base_date") == day)
    if f["lgbm"] is not None:
        res["lgbm"] = max_rel(f["lgbm"], kl, ["code", "horizon"],
                              ["predicted_close", "q10", "q90", "prob_up", "prob_flat",
                               "prob_down"])
    else:
        res["lgbm"] = {"rows_peer": 0, "rows_krxflow": kl.height, "joined": 0, "max_rel": 0.0}
    ke = k("ets_forecasts", "base_date").filter(pl.col("base_date") == day)
    j = f["ets"].join(ke, on=["code", "horizon"], suffix="_k")
    rel = (j.get_column("median") / j.get_column("median_k") - 1).abs()
    res["ets"] = {"rows_peer": f["ets"].height, "rows_krxflow": ke.height, "joined": j.height,
                  "median_rel_diff_median": float(rel.median()),
                  "median_rel_diff_p99": float(rel.quantile(0.99)),
                  "median_rel_diff_max": float(rel.max())}
    kp = k("predictions", "base_date").filter(pl.col("base_date") == day)
    res["predictions_rows"] = {"rows_peer": f["predictions"].height, "rows_krxflow": kp.height}
    # The peer's ensemble on krxflow's own member forecasts: the same inputs, the same rows?
    members = {"ets": ke} | ({"lgbm": kl} if kl.height else {})
    same, parts = recompute(members)
    res["ensemble_on_krxflow_members"] = max_rel(
        same, kp, ["code", "horizon"],
        ["point", "q10", "q90", "prob_up", "prob_flat", "prob_down", "expected_return"])
    res["ensemble_on_krxflow_members"]["direction_differs"] = same.join(
        kp, on=["code", "horizon"], suffix="_k").filter(
        pl.col("direction") != pl.col("direction_k")).height
    km = k("prediction_members", "base_date").filter(pl.col("base_date") == day)
    res["members_on_krxflow_members"] = max_rel(parts, km, ["code", "horizon", "model"],
                                                ["weight", "point", "q10", "q90"])
    frm = f["cal"].add(day, -9)
    ko = read(check_lake, "prediction_outcomes", frm, "target_date").filter(
        pl.col("target_date").is_between(frm, day))
    o = max_rel(f["outcomes"], ko, ["code", "base_date", "horizon", "model"],
                ["actual_close", "abs_error", "abs_pct_error", "pinball_q10", "pinball_q50",
                 "pinball_q90", "weight"])
    j = f["outcomes"].join(ko, on=["code", "base_date", "horizon", "model"], suffix="_k")
    o["hit_differs"] = j.filter(pl.col("direction_hit") != pl.col("direction_hit_k")).height
    res["outcomes"] = o
    kw = k("ensemble_weights", "as_of").filter(pl.col("as_of") == day)
    res["weights"] = max_rel(f["weights"], kw, ["code", "horizon", "model"],
                             ["weight", "prior", "empirical", "prev_weight", "hit_rate"])
    res["disagreements"] = disagreements(res)
    return res


# How far each step may be from krxflow's, relatively. ETS is not bounded: statsforecast's
# AutoETS searches its parameters with its own optimiser, so its forecasts are reported.
BOUNDS = {"features": 1e-9, "lgbm": 1e-6, "ensemble_on_krxflow_members": 1e-6,
          "members_on_krxflow_members": 1e-9, "outcomes": 1e-9, "weights": 1e-9}


def disagreements(res: dict) -> list[str]:
    """Where the peer's day differs from krxflow's: rows, values beyond BOUNDS, directions,
    hits (empty: the same thing computed)."""
    out = []
    for step, bound in BOUNDS.items():
        r = res.get(step)
        if r is None:
            out.append(f"{step}: not compared")
            continue
        if not (r["rows_peer"] == r["rows_krxflow"] == r["joined"]):
            out.append(f"{step}: rows {r}")
        if not r["max_rel"] <= bound:
            out.append(f"{step}: max relative difference {r['max_rel']} > {bound}")
    if res["ensemble_on_krxflow_members"]["direction_differs"]:
        out.append("ensemble: directions differ")
    if res["outcomes"]["hit_differs"]:
        out.append("outcomes: hits differ")
    p = res["predictions_rows"]
    if p["rows_peer"] != p["rows_krxflow"]:
        out.append(f"predictions: rows {p}")
    return out



def main(engine: str, threads: int, import_s: float, run_day: Callable,
         to_check: Callable) -> None:
    """Runs the peer's day RUNS times and prints its report (one JSON line). `run_day(lake, day,
    panel, index_csv, out, jobs)` returns (step times, frames); `to_check(frames, day)` turns
    the checked run's frames (see below) into what `check` reads: (Polars frames, recompute).

    Each run is a process of its own, as krxflow's are (a daily job starts afresh): the first
    in this one, whose frames are checked, then RUNS - 1 in child processes of this script.
    Imports are not timed in any of them. With KRXFLOW_PEER_IN_PROCESS=1 every run is in this
    process instead, so runs after the first reuse what the first touched (its memory, lazy
    initialisation), and the last is checked: the earlier protocol, kept to compare with."""
    lake, day, panel, index_csv, out, runs = sys.argv[1:7]
    check_lake = sys.argv[7] if len(sys.argv) > 7 else None
    runs = int(runs)
    in_process = os.environ.get("KRXFLOW_PEER_IN_PROCESS") == "1"
    jobs, d = os.cpu_count() or 1, date.fromisoformat(day)
    walls, steps, frames = [], [], None
    for _ in range(runs if in_process else 1):
        start = time.perf_counter()
        t, frames = run_day(lake, d, panel, index_csv, out, jobs)
        walls.append(time.perf_counter() - start)
        steps.append(t)
    # Peak resident memory of each run's process and of its largest child (the ETS workers),
    # read before any run's process is started from here (it would count as a child): the
    # largest over the runs.
    imports = [import_s]
    peaks = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024]
    child_peaks = [resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024]
    for _ in range(0 if in_process else runs - 1):
        child = subprocess.run(
            [sys.executable, sys.argv[0], lake, day, panel, index_csv, out, "1"],
            check=True, stdout=subprocess.PIPE, text=True,  # its errors on our stderr
            env={**os.environ, "KRXFLOW_PEER_IN_PROCESS": "1"})
        r = json.loads(child.stdout.strip().splitlines()[-1])
        walls += r["wall_s"]
        imports.append(r["import_s"])
        peaks.append(r["peak_rss_mib"])
        child_peaks.append(r["peak_rss_children_mib"])
    lgbm = frames["lgbm"]
    report = {
        "engine": engine,
        "threads": threads,
        "ets_jobs": jobs,
        "process": "one for all runs" if in_process else "one per run",
        "import_s": import_s,
        "import_s_runs": imports,
        "wall_s": walls,
        "peak_rss_mib": max(peaks),
        "peak_rss_children_mib": max(child_peaks),
        "steps_s": steps,
        "rows": {"bars": len(frames["bars"]), "rejects": frames["rejects"],
                 "features": len(frames["features"]),
                 "lgbm": 0 if lgbm is None else len(lgbm),
                 "ets": len(frames["ets"]), "predictions": len(frames["predictions"]),
                 "outcomes": len(frames["outcomes"]), "weights": len(frames["weights"])},
    }
    if check_lake:
        tables, recompute = to_check(frames, d)
        report["agreement"] = check(check_lake, d, tables, recompute)
    print(json.dumps(report))
