"""Would a linear ranker beside LightGBM raise the ensemble's ranking? (issue 16, session 23)

The ensemble's 1-day Rank IC sits below LightGBM's own, and the studies of how the members are
blended (ensemble_blend.py, skill_memory.py) found the ranking bounded by the members. This asks
whether a third member of another kind, a pooled ridge regression on the same features and the
same label (each date's return ranks), would order the codes better together with LightGBM than
LightGBM does alone. It replays lgbm_label.py's retrain (every STEP = 20 trading days, rows
whose label closed before the first day predicted) with LightGBM at retrain_weekly.yaml's
settings (`rank-all-slow-hl500-v150`) and, from the same training rows, the linear variants:

- `z`: each feature standardised by its training rows' median and scaled MAD (Qlib's
  RobustZScoreNorm), clipped to +-3, missing as 0;
- `cs`: each feature's centred rank among the date's codes (Qlib's CSRankNorm), missing as 0;
  market-wide features (dow, mkt_ret_*) dropped, as they do not differ across a date's codes;

each fitted by least squares with a ridge penalty `alpha` times the row count, rows weighted by
age as LightGBM's are (halving every 500 trading days). The blend is the equal-weight mean of
the two members' forecasts, each z-scored across the date's codes (a study shortcut: the
ensemble scales members by their trailing spread, not by the same day's).

Prints, per variant, the mean daily Rank IC of LightGBM, the linear member and the blend with
their t, the mean daily rank correlation between the two members' forecasts, and the paired
daily difference blend - LightGBM with its t. Choose on 2013-2018; 2019-2024 only to show:

    .venv-peer-daily/bin/python benches/study/linear_member.py LAKE FROM TO [H] [VARIANT...]

LAKE: a features lake built by scripts/lgbm_study.sh. VARIANT: z-a0.01 (default set below).
"""
import importlib.util
import pathlib
import sys
import time

import numpy as np
import polars as pl

spec = importlib.util.spec_from_file_location(
    "lgbm_label", pathlib.Path(__file__).with_name("lgbm_label.py"))
L = importlib.util.module_from_spec(spec)
spec.loader.exec_module(L)

MARKET_WIDE = ("dow", "mkt_ret_1d", "mkt_ret_5d")
VARIANTS = ["z-a0.001", "z-a0.1", "cs-a0.001", "cs-a0.1"]
HALF_LIFE = 500


def parse(name):
    kind, a = name.split("-a")
    return kind, float(a)


def robust_z(x, tr):
    med = np.nanmedian(x[tr], axis=0)
    mad = np.nanmedian(np.abs(x[tr] - med), axis=0) * 1.4826
    mad[~(mad > 0)] = 1.0
    return np.nan_to_num(np.clip((x - med) / mad, -3, 3))


def ridge(x, y, w, alpha):
    xw = x * w[:, None]
    a = x.T @ xw + alpha * w.sum() * np.eye(x.shape[1])
    return np.linalg.solve(a, xw.T @ y)


def daily_ic(dates, pred, y):
    d = pl.DataFrame({"d": dates, "p": pred, "y": y}).drop_nulls().drop_nans()
    return (
        d.with_columns(pl.col("p").rank().over("d"), pl.col("y").rank().over("d"))
        .group_by("d").agg(pl.corr("p", "y"), pl.len())
        .filter(pl.col("len") >= L.MIN_CODES).sort("d")
        .select("d", pl.col("p").fill_nan(0.0).alias("ic"))
    )


def cs_z(dates, p):
    d = pl.DataFrame({"d": dates, "p": p})
    return d.select(((pl.col("p") - pl.col("p").mean().over("d")) / pl.col("p").std().over("d"))
                    .fill_nan(0.0)).to_series().to_numpy()


def replay(df, h, lo, hi, variants):
    dates = df["date"].to_numpy()
    matures = df["label_matures"].to_numpy()
    y = df["y"].to_numpy()
    tgt = L.per_date(df, "y_label", "rank")
    v = L.VARIANTS["rank-all-slow-hl500-v150"]
    x = df.select(L.FEATURES).to_numpy().astype(float)
    coded = [f for f in L.FEATURES if f not in MARKET_WIDE]
    xcs = np.nan_to_num(df.select(
        ((pl.col(f).rank("average").over("date") - 0.5) / pl.col(f).count().over("date") - 0.5)
        for f in coded).to_numpy().astype(float))
    params = {**L.DEFAULTS, **v["params"]}
    all_dates = np.unique(dates)
    day_no = np.searchsorted(all_dates, dates)
    days = all_dates[(all_dates >= lo) & (all_dates <= hi)]
    lgbm = np.full(len(y), np.nan)
    lin = {name: np.full(len(y), np.nan) for name in variants}
    for k in range(0, len(days), L.STEP):
        first, last = days[k], days[min(k + L.STEP, len(days)) - 1]
        known = (matures < first) & ~np.isnan(tgt)
        kd = np.unique(dates[known])
        nv = min(int(len(kd) * 0.2), v["valid_days"])
        valid_from, train_end = kd[len(kd) - nv], kd[len(kd) - nv - h]
        tr, va = known & (dates < train_end), known & (dates >= valid_from)
        sel = (dates >= first) & (dates <= last)
        age = np.searchsorted(all_dates, first) - day_no
        lgbm[sel], _ = L.fit_predict(x, tgt, dates, age, tr, va, sel, params, v)
        # The linear member learns from every known row (no early stopping to validate).
        w = 0.5 ** (age[known] / HALF_LIFE)
        for name in variants:
            kind, alpha = parse(name)
            feats = robust_z(x, known) if kind == "z" else xcs
            beta = ridge(feats[known], tgt[known], w, alpha)
            lin[name][sel] = feats[sel] @ beta
    ev = (dates >= lo) & (dates <= hi)
    return dates[ev], y[ev], lgbm[ev], {n: p[ev] for n, p in lin.items()}


def stats(ic):
    return ic.mean(), ic.mean() / ic.std() * np.sqrt(len(ic))


def main():
    lake, lo, hi = sys.argv[1], np.datetime64(sys.argv[2]), np.datetime64(sys.argv[3])
    h = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    variants = sys.argv[5:] or VARIANTS
    t0 = time.time()
    df = L.panel(lake, h, h)
    dates, y, lgbm, lin = replay(df, h, lo, hi, variants)
    base = daily_ic(dates, lgbm, y)
    m, t = stats(base["ic"].to_numpy())
    print(f"{sys.argv[2]}..{sys.argv[3]}, h={h}: LightGBM {m:+.4f} (t {t:.1f}), {len(base)} days, "
          f"{time.time() - t0:.0f} s")
    print("| linear | alone (t) | rank corr. with LightGBM | blend (t) | blend - LightGBM (t) |")
    print("|---|---|---|---|---|")
    for name, p in lin.items():
        alone = daily_ic(dates, p, y)
        corr = daily_ic(dates, p, lgbm)["ic"].to_numpy().mean()
        blend = daily_ic(dates, cs_z(dates, lgbm) + cs_z(dates, p), y)
        diff = blend.join(base, on="d", suffix="_b").select(pl.col("ic") - pl.col("ic_b")).to_series().to_numpy()
        (a, ta), (b, tb), (dm, td) = stats(alone["ic"].to_numpy()), stats(blend["ic"].to_numpy()), stats(diff)
        print(f"| {name} | {a:+.4f} ({ta:.1f}) | {corr:.2f} | {b:+.4f} ({tb:.1f}) | {dm:+.4f} ({td:+.1f}) |",
              flush=True)


if __name__ == "__main__":
    main()
