"""Which one more price feature helps the pooled 1-day LightGBM order the 30 real tickers?

The screen behind `close_loc` (docs/features.md): each candidate, computed here from the lake's
`ohlcv_daily`, is added to the features krxflow had before it (FEATURES of lgbm_label.py less
close_loc) and the retrain_weekly settings (ranks, last 750 days, slow trees) are replayed as
lgbm_label.py does. Judged on 2013-2018; 2019-2024 only for the one chosen.

    .venv-peer-daily/bin/python benches/study/feature_candidates.py LAKE 2013-01-02 2018-12-28 [SET...]

LAKE: a features lake built by scripts/lgbm_study.sh. SET: base, +x_<candidate>, +all.
"""
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


def candidates(lake):
    c = pl.col
    ret = c("close").pct_change().over("code")
    bars = (
        pl.from_arrow(DeltaTable(f"{lake}/ohlcv_daily").to_pyarrow_table())
        .select(["code", "date", "open", "high", "low", "close", "volume"])
        .filter(c("close") > 0)
        .unique(["code", "date"])
        .sort(["code", "date"])
    )
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


def main():
    lake, lo, hi = sys.argv[1], np.datetime64(sys.argv[2]), np.datetime64(sys.argv[3])
    ex = candidates(lake)
    extra = [x for x in ex.columns if x.startswith("x_")]
    df = L.panel(lake, 1, 1).join(ex, on=["code", "date"], how="left").sort(["date", "code"])
    sets = {"base": BEFORE, **{f"+{e}": BEFORE + [e] for e in extra}, "+all": BEFORE + extra}
    for name in sys.argv[4:] or sets:
        L.FEATURES = sets[name]
        t0 = time.time()
        ic, t, n, it = L.run(df, 1, lo, hi, L.VARIANTS["rank-750d-slow"])
        print(f"| {sys.argv[2]}..{sys.argv[3]} | {name} | {ic:+.4f} | {t:.1f} | {n} | {it} | {time.time() - t0:.0f} s |",
              flush=True)


if __name__ == "__main__":
    main()
