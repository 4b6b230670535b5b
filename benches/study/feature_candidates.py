"""Which one more price feature helps the pooled 1-day LightGBM order the 30 real tickers?

The screen behind `close_loc` (docs/features.md): each candidate, computed here from the lake's
`ohlcv_daily`, is added to the features krxflow had before it (FEATURES of lgbm_label.py less
close_loc) and the retrain_weekly settings (ranks, last 750 days, slow trees) are replayed as
lgbm_label.py does. Judged on 2013-2018; 2019-2024 only for the one chosen.

    .venv-peer-daily/bin/python benches/study/feature_candidates.py LAKE 2013-01-02 2018-12-28 [SET...]

LAKE: a features lake built by scripts/lgbm_study.sh. SET: base, +x_<candidate>, +all.

With ROUND=2 in the environment, the second screen (session 18): the base is the features with
`close_loc` (its stand-in x_clv) and the candidates are Alpha158's candle shapes, price-volume
correlations, stochastic and count features (`round2`).
"""
import os
import importlib.util
import pathlib
import sys
import time

import numpy as np
import polars as pl
from deltalake import DeltaTable

spec = importlib.util.spec_from_file_location(
    "lgbm_label", pathlib.Path(__file__).with_name("lgbm_label.py"))
L = importlib.util.module_from_spec(spec)
spec.loader.exec_module(L)
BEFORE = [f for f in L.FEATURES if f != "close_loc"]


def daily_bars(lake):
    """The lake's bars with a positive close, one per (code, date), in date order per code."""
    return (
        pl.from_arrow(DeltaTable(f"{lake}/ohlcv_daily").to_pyarrow_table())
        .select(["code", "date", "open", "high", "low", "close", "volume"])
        .filter(pl.col("close") > 0)
        .unique(["code", "date"])
        .sort(["code", "date"])
    )


def candidates(lake):
    c = pl.col
    ret = c("close").pct_change().over("code")
    bars = daily_bars(lake)
    return bars.with_columns(
        # the day's return from its open
        (c("close") / c("open") - 1).alias("x_intraday"),
        # where the close sits in the day's range (= close_loc)
        pl.when(c("high") > c("low")).then((c("close") - c("low")) / (c("high") - c("low"))).alias("x_clv"),
        (c("volume").rolling_mean(5).over("code") / c("volume").rolling_mean(20).over("code")).alias("x_vol5_20"),
        (ret.rolling_std(5).over("code") / ret.rolling_std(60).over("code")).alias("x_volratio"),
        ret.rolling_skew(20).over("code").alias("x_skew20"),
        (c("close") * c("volume")).log().rolling_mean(20).over("code").alias("x_logdv20"),
        ret.rolling_max(20).over("code").alias("x_max20"),
    ).select(["code", "date"] + [f"x_{n}" for n in
                                  ("intraday", "clv", "vol5_20", "volratio", "skew20", "logdv20", "max20")])


def round2(lake):
    """Alpha158-style candidates (Qlib's names in the comments), each from bars dated <= the row."""
    c = pl.col
    ret = c("close").pct_change().over("code")
    lv = (c("volume") + 1).log()
    bars = daily_bars(lake)
    clv = pl.when(c("high") > c("low")).then((c("close") - c("low")) / (c("high") - c("low")))
    bars = bars.with_columns(clv.alias("x_clv"), ret.alias("_ret"),
                             lv.alias("_lv"), (lv - lv.shift(1).over("code")).alias("_dlv"))
    lo20, hi20 = c("low").rolling_min(20).over("code"), c("high").rolling_max(20).over("code")
    return bars.with_columns(
        ((c("high") - pl.max_horizontal("open", "close")) / c("open")).alias("x_kup"),    # KUP
        ((pl.min_horizontal("open", "close") - c("low")) / c("open")).alias("x_klow"),    # KLOW
        pl.rolling_corr(c("close"), c("_lv"), window_size=20).over("code").alias("x_corr20"),  # CORR20
        pl.rolling_corr(c("_ret"), c("_dlv"), window_size=20).over("code").alias("x_cord20"),  # CORD20
        pl.when(hi20 > lo20).then((c("close") - lo20) / (hi20 - lo20)).alias("x_rsv20"),   # RSV20
        (c("_ret") > 0).cast(pl.Float64).rolling_mean(20).over("code").alias("x_cntp20"),  # CNTP20
        c("x_clv").rolling_mean(5).over("code").alias("x_clv5"),
        (c("volume").rolling_std(20).over("code") / (c("volume") + 1)).alias("x_vstd20"),  # VSTD20
        (c("close").rolling_quantile(0.8, window_size=20).over("code") / c("close")).alias("x_qtlu20"),  # QTLU20
        (c("close").rolling_quantile(0.2, window_size=20).over("code") / c("close")).alias("x_qtld20"),  # QTLD20
        ((c("_ret").abs() * c("volume")).rolling_std(20).over("code")
         / (c("_ret").abs() * c("volume")).rolling_mean(20).over("code")).alias("x_wvma20"),  # WVMA20
    ).select(["code", "date", "x_clv"] + [f"x_{n}" for n in (
        "kup", "klow", "corr20", "cord20", "rsv20", "cntp20", "clv5", "vstd20", "qtlu20", "qtld20", "wvma20")])


def main():
    lake, lo, hi = sys.argv[1], np.datetime64(sys.argv[2]), np.datetime64(sys.argv[3])
    second = os.environ.get("ROUND") == "2"
    ex = round2(lake) if second else candidates(lake)
    base = BEFORE + ["x_clv"] if second else BEFORE
    extra = [x for x in ex.columns if x.startswith("x_") and x not in base]
    df = L.panel(lake, 1, 1).join(ex, on=["code", "date"], how="left").sort(["date", "code"])
    sets = {"base": base, **{f"+{e}": base + [e] for e in extra}, "+all": base + extra}
    if second:
        sets["+x_kup+x_klow"] = base + ["x_kup", "x_klow"]
    for name in sys.argv[4:] or sets:
        L.FEATURES = sets[name]
        t0 = time.time()
        ic, t, n, it = L.run(df, 1, lo, hi, L.VARIANTS["rank-750d-slow"])
        print(f"| {sys.argv[2]}..{sys.argv[3]} | {name} | {ic:+.4f} | {t:.1f} | {n} | {it} | {time.time() - t0:.0f} s |",
              flush=True)


if __name__ == "__main__":
    main()
