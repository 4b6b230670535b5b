"""Does the ensemble rank the codes as well as its best member? Daily Rank IC (1 day) of the
ensemble, each member, and blends of the members' cross-sectionally z-scored returns, from a
walk-forward lake's `prediction_outcomes` (scripts/walkforward.sh).

    .venv-peer-daily/bin/python benches/study/member_ic.py LAKE

Days with fewer than 10 codes are left out; "on lgbm days" keeps the rows LightGBM forecast.
"""
import sys, deltalake, polars as pl, numpy as np
lake = sys.argv[1]
o = pl.from_arrow(deltalake.DeltaTable(lake + "/prediction_outcomes").to_pyarrow_table(
    columns=["code", "base_date", "horizon", "model", "point", "base_close", "actual_return"]))
o = o.filter(pl.col("horizon") == 1).with_columns(ret=pl.col("point") / pl.col("base_close") - 1)
w = o.pivot(on="model", index=["code", "base_date"], values="ret")
act = o.group_by(["code", "base_date"]).agg(pl.col("actual_return").first())
w = w.join(act, on=["code", "base_date"])
print(w.columns, w.height)
def zs(c):
    return ((pl.col(c) - pl.col(c).mean().over("base_date")) / pl.col(c).std().over("base_date")).alias("z_" + c)
w = w.with_columns([zs(c) for c in ["lgbm", "ets", "ensemble"]])
def ic(expr, name, data=w):
    d = data.with_columns(s=expr).filter(pl.col("s").is_not_null() & pl.col("s").is_not_nan())
    r = d.group_by("base_date").agg(pl.corr(pl.col("s").rank(), pl.col("actual_return").rank()).alias("ic"), pl.len().alias("n"))
    r = r.filter(pl.col("n") >= 10)
    x = r["ic"].drop_nans().to_numpy()
    print(f"{name:40s} days {len(x):5d} IC {x.mean():.4f} t {x.mean()/x.std()*np.sqrt(len(x)):.1f}")
ic(pl.col("ensemble"), "ensemble")
ic(pl.col("lgbm"), "lgbm")
ic(pl.col("ets"), "ets")
both = w.filter(pl.col("lgbm").is_not_null())
ic(pl.col("ensemble"), "ensemble on lgbm days", both)
ic(pl.col("ets"), "ets on lgbm days", both)
for c in [0.0, 0.25, 0.5, 1.0]:
    ic(pl.col("z_lgbm") + c * pl.col("z_ets"), f"z_lgbm + {c} z_ets", both)
    ic(pl.col("z_lgbm") - c * pl.col("z_ets"), f"z_lgbm - {c} z_ets", both)
