"""Would the ensemble rank the codes better if its members' forecasts were put on one scale
before they are blended? Mean daily Rank IC (Spearman across codes of predicted vs realised
return) at one horizon, from a walk-forward lake (scripts/walkforward.sh):

- `ensemble`: the ensemble's own points, as stored;
- `blend`: a re-computation of its point, each code's members' returns at the tilted weights
  w·s / Σ w·s (w: the member's learned weight for the code, from `prediction_members`; s: its
  trailing skill, the mean daily Rank IC of its last 60 matured base dates, floored at 0; the
  learned weights alone where a member has no skill yet) — the check that the re-computation
  is close to the stored ensemble;
- `same-day z`: the same weights on each member's returns standardised across the day's codes;
- `trailing scale`: the same weights on each member's returns less its trailing mean, over its
  trailing dispersion (60 matured base dates), computable one code at a time.

    .venv-peer-daily/bin/python benches/study/ensemble_blend.py LAKE [HORIZON]
"""
import sys

import deltalake
import numpy as np
import polars as pl

LAKE = sys.argv[1]
H = int(sys.argv[2]) if len(sys.argv) > 2 else 1
WINDOW, MIN_DAYS, MIN_CODES = 60, 20, 5

m = pl.from_arrow(deltalake.DeltaTable(LAKE + "/prediction_members").to_pyarrow_table(
    columns=["code", "base_date", "horizon", "model", "point", "base_close", "weight"]))
m = m.filter(pl.col("horizon") == H).with_columns(ret=pl.col("point") / pl.col("base_close") - 1)
o = pl.from_arrow(deltalake.DeltaTable(LAKE + "/prediction_outcomes").to_pyarrow_table(
    columns=["code", "base_date", "horizon", "model", "point", "base_close", "actual_return"]))
o = o.filter((pl.col("horizon") == H) & (pl.col("model") == "ensemble")).select(
    "code", "base_date", (pl.col("point") / pl.col("base_close") - 1).alias("ensemble"),
    "actual_return")
d = m.join(o, on=["code", "base_date"])
days = d["base_date"].unique().sort().to_list()
at = {x: i for i, x in enumerate(days)}


def daily_ic(df, col):
    r = df.filter(pl.col(col).is_not_null() & pl.col(col).is_not_nan()).group_by("base_date").agg(
        pl.corr(pl.col(col).rank(), pl.col("actual_return").rank()).alias("ic"),
        pl.len().alias("n"))
    return r.filter(pl.col("n") >= MIN_CODES)


def trailing(values, i):
    """The values of the base dates whose outcomes matured before day i (the last WINDOW)."""
    lo, hi = max(0, i - H - WINDOW), i - H
    w = values[lo:hi] if hi > lo else values[:0]
    return w[~np.isnan(w[:, 0])] if w.ndim == 2 else w[~np.isnan(w)]


rows = []
for model in d["model"].unique().to_list():
    own = d.filter(pl.col("model") == model)
    ic = np.full(len(days), np.nan)
    for day, v in daily_ic(own, "ret").fill_nan(None).drop_nulls().select("base_date", "ic").iter_rows():
        ic[at[day]] = v
    spread = np.full((len(days), 2), np.nan)
    for day, sd, mu in own.group_by("base_date").agg(pl.col("ret").std(), pl.col("ret").mean().alias("mu")).iter_rows():
        spread[at[day]] = (sd, mu)
    for i, day in enumerate(days):
        past = trailing(ic, i)[-WINDOW:]
        sc = trailing(spread, i)
        rows.append({
            "model": model, "base_date": day,
            "s": max(past.mean(), 0.0) if len(past) >= MIN_DAYS else None,
            "tsd": sc[:, 0].mean() if len(sc) >= 5 else None,
            "tmu": sc[:, 1].mean() if len(sc) >= 5 else None,
        })
d = d.join(pl.DataFrame(rows, schema={"model": pl.Utf8, "base_date": pl.Date, "s": pl.Float64,
                                      "tsd": pl.Float64, "tmu": pl.Float64}),
           on=["model", "base_date"], how="left")
key = ["code", "base_date"]
d = d.with_columns(
    z=(pl.col("ret") - pl.col("ret").mean().over(["base_date", "model"]))
    / pl.col("ret").std().over(["base_date", "model"]),
    ws=pl.col("weight") * pl.col("s"),
)
d = d.with_columns(
    ok=pl.col("s").is_not_null().all().over(key) & (pl.col("ws").sum().over(key) > 0),
    learned=pl.col("weight") / pl.col("weight").sum().over(key),
)
d = d.with_columns(t=pl.when(pl.col("ok")).then(pl.col("ws") / pl.col("ws").sum().over(key))
                   .otherwise(pl.col("learned")))
g = d.group_by(key).agg(
    pl.col("ensemble").first(), pl.col("actual_return").first(),
    blend=(pl.col("t") * pl.col("ret")).sum(),
    same_day_z=(pl.col("t") * pl.col("z").fill_nan(0)).sum(),
    trailing_scale=(pl.col("t") * ((pl.col("ret") - pl.col("tmu")) / pl.col("tsd"))
                    .fill_nan(0).fill_null(0)).sum(),
)
print(f"| horizon | points | days | mean daily Rank IC | t |")
for col, name in [("ensemble", "ensemble"), ("blend", "blend"), ("same_day_z", "same-day z"),
                  ("trailing_scale", "trailing scale")]:
    r = daily_ic(g, col)["ic"].drop_nans().to_numpy()
    print(f"| {H} | {name} | {len(r)} | {r.mean():.4f} | {r.mean() / r.std() * np.sqrt(len(r)):.1f} |")
