"""How long a memory should the ensemble's ranking skill have? Mean daily Rank IC (Spearman
across codes of predicted vs realised return) of the ensemble's point re-computed from a
walk-forward lake (scripts/walkforward.sh) as `ensemble.combine` builds it, members on one
scale (each return less its trailing centre over its trailing spread, 60 matured base dates)
blended at w·s / Σ w·s, where only the skill s changes between the rows:

- `60 dates (built)`: the mean daily Rank IC of the member's latest 60 matured base dates;
- `120` / `250 dates`: the same over a longer window;
- `all dates`: over every matured base date in the lake (an expanding mean);
- `shrunk to all`: the 60-date mean shrunk toward the expanding mean by how noisy it is
  (the 60-date mean's sampling variance against the spread of the member's true skill over
  time, both estimated from the member's own past; see `shrunk` below);
- `shrunk to 250`: the same toward the 250-date mean (what `ensemble.combine` reads: 400
  calendar days of outcomes);
- `mean of 60 and 250`: the two windows' means averaged;
- `inverse correlation`: the members' trailing ICs (60 dates) through the inverse of their
  forecasts' trailing mean rank correlation across codes (Σ⁻¹·ic, the least-squares blend of
  standardised signals; Σ over `CORR_WINDOW` dates, default 60), floored at 0; and the same
  with Σ over 250 dates, and with Σ's correlations shrunk halfway toward 0 (toward the
  identity, the usual remedy for a noisy Σ whose inverse overreacts), and both;
- `best member`: all the weight on the member with the best 60-date skill (a reference);
- `without <member>`: the built skill with that member's set to 0 (the others' blend);
- and each member alone.

The skill's history is everything in the lake before a day; only days in [FROM, TO] are scored.
The last column is each row's paired daily difference to the built blend and its t: the rows
are blends of the same members, so their own t values cannot tell them apart.

    .venv-peer-daily/bin/python benches/study/skill_memory.py LAKE [FROM TO]
"""
import os
import sys
from datetime import date

import deltalake
import numpy as np
import polars as pl

LAKE = sys.argv[1]
FROM = date.fromisoformat(sys.argv[2]) if len(sys.argv) > 2 else date.min
TO = date.fromisoformat(sys.argv[3]) if len(sys.argv) > 3 else date.max
SCALE_WINDOW, MIN_DAYS, MIN_CODES = 60, 20, 5
CORR_WINDOW = int(os.environ.get("CORR_WINDOW", "60"))
# Σ⁻¹·ic variants: (row name, the correlations' window in dates, their shrinkage toward 0)
INVERSE = [
    ("inverse correlation", CORR_WINDOW, 0.0),
    ("inverse correlation, 250-date Σ", 250, 0.0),
    ("inverse correlation, Σ shrunk ½", CORR_WINDOW, 0.5),
    ("inverse correlation, 250-date Σ shrunk ½", 250, 0.5),
]
INVERSE_NAMES = [name for name, _, _ in INVERSE]

members = pl.from_arrow(deltalake.DeltaTable(LAKE + "/prediction_members").to_pyarrow_table(
    columns=["code", "base_date", "horizon", "model", "point", "base_close", "weight"]))
outcomes = pl.from_arrow(deltalake.DeltaTable(LAKE + "/prediction_outcomes").to_pyarrow_table(
    columns=["code", "base_date", "horizon", "model", "actual_return"]))
# `without <member>`: the built skill, but 0 for that member (the blend of the others).
WITHOUT = [f"without {m}" for m in sorted(members["model"].unique().to_list())]


def daily_ic(df, col):
    r = df.filter(pl.col(col).is_not_null() & pl.col(col).is_not_nan()).group_by("base_date").agg(
        pl.corr(pl.col(col).rank(), pl.col("actual_return").rank()).alias("ic"),
        pl.len().alias("n"))
    return r.filter(pl.col("n") >= MIN_CODES).drop_nans().sort("base_date")


class Trailing:
    """A member's daily values with a value, and the means of those matured before a day."""

    def __init__(self, idx, values):
        self.idx, self.values = np.asarray(idx), np.asarray(values, dtype=float)
        self.sum = np.concatenate([[0.0], np.cumsum(self.values)])
        self.sq = np.concatenate([[0.0], np.cumsum(self.values ** 2)])

    def count(self, i, h):
        return int(np.searchsorted(self.idx, i - h, side="left"))

    def mean(self, k, window):
        lo = max(0, k - window) if window else 0
        return (self.sum[k] - self.sum[lo]) / (k - lo) if k > lo else np.nan

    def sd(self, k, window):
        lo = max(0, k - window) if window else 0
        if k - lo < 2:
            return np.nan
        m = self.mean(k, window)
        return np.sqrt(max((self.sq[k] - self.sq[lo]) / (k - lo) - m * m, 1e-12))


def shrunk(tr, k, h, window=60, long_window=0):
    """The `window`-date mean shrunk toward the expanding mean: weight τ² / (τ² + σ²·h / n) on
    the short mean, σ² the variance of daily ICs (h: overlapping outcomes at h days share
    returns), τ² the variance of the member's non-overlapping `window`-date means less their
    own sampling variance (how much its true skill moves), floored at 0."""
    n = min(window, k)
    if n < MIN_DAYS:
        return np.nan
    lo = max(0, k - long_window) if long_window else 0
    short, long_ = tr.mean(k, window), tr.mean(k, long_window)
    var = max((tr.sq[k] - tr.sq[lo]) / (k - lo) - long_ ** 2, 1e-12)
    blocks = [tr.mean(e, window) for e in range(k, lo + window - 1, -window)]
    noise = var * h / window
    tau2 = max(np.var(blocks) - noise, 0.0) if len(blocks) >= 3 else 0.0
    a = tau2 / (tau2 + var * h / n)
    return long_ + a * (short - long_)


SKILLS = {
    "60 dates (built)": lambda tr, k, h: tr.mean(k, 60) if k >= MIN_DAYS else np.nan,
    "120 dates": lambda tr, k, h: tr.mean(k, 120) if k >= MIN_DAYS else np.nan,
    "250 dates": lambda tr, k, h: tr.mean(k, 250) if k >= MIN_DAYS else np.nan,
    "all dates": lambda tr, k, h: tr.mean(k, 0) if k >= MIN_DAYS else np.nan,
    "shrunk to all": shrunk,
    "shrunk to 250": lambda tr, k, h: shrunk(tr, k, h, 60, 250),
    "mean of 60 and 250": lambda tr, k, h: (tr.mean(k, 60) + tr.mean(k, 250)) / 2
    if k >= MIN_DAYS else np.nan,
    "60·h dates": lambda tr, k, h: tr.mean(k, 60 * h) if k >= MIN_DAYS else np.nan,
    "60·h dates less one se": lambda tr, k, h: tr.mean(k, 60 * h) - tr.sd(k, 60 * h) * np.sqrt(h / min(k, 60 * h))
    if k >= MIN_DAYS else np.nan,
    "ICIR (60 dates)": lambda tr, k, h: tr.mean(k, 60) / tr.sd(k, 60) if k >= MIN_DAYS else np.nan,
    "ICIR (250 dates)": lambda tr, k, h: tr.mean(k, 250) / tr.sd(k, 250) if k >= MIN_DAYS else np.nan,
    "60 dates squared": lambda tr, k, h: max(tr.mean(k, 60), 0) ** 2 if k >= MIN_DAYS else np.nan,
    "60 dates less one se": lambda tr, k, h: tr.mean(k, 60) - tr.sd(k, 60) * np.sqrt(h / min(k, 60))
    if k >= MIN_DAYS else np.nan,
    "250 dates less one se": lambda tr, k, h: tr.mean(k, 250) - tr.sd(k, 250) * np.sqrt(h / min(k, 250))
    if k >= MIN_DAYS else np.nan,
}


def study(h):
    m = members.filter(pl.col("horizon") == h).with_columns(
        ret=pl.col("point") / pl.col("base_close") - 1)
    o = outcomes.filter((pl.col("horizon") == h) & (pl.col("model") == "ensemble")).select(
        "code", "base_date", "actual_return")
    d = m.join(o, on=["code", "base_date"])
    days = d["base_date"].unique().sort().to_list()
    at = {x: i for i, x in enumerate(days)}
    rows, ics = [], {}
    models = sorted(d["model"].unique().to_list())
    for model in models:
        own = d.filter(pl.col("model") == model)
        ic = daily_ic(own, "ret")
        tr = ics[model] = Trailing([at[x] for x in ic["base_date"]], ic["ic"].to_numpy())
        sc = own.group_by("base_date").agg(pl.col("ret").std().alias("sd"),
                                           pl.col("ret").mean().alias("mu")).sort("base_date")
        sc_idx = np.array([at[x] for x in sc["base_date"]])
        sd, mu = sc["sd"].to_numpy(), sc["mu"].to_numpy()
        for i, day in enumerate(days):
            if not FROM <= day <= TO:
                continue
            k = tr.count(i, h)
            ks = int(np.searchsorted(sc_idx, i - h, side="left"))
            lo = max(0, ks - SCALE_WINDOW)
            row = {"model": model, "base_date": day,
                   "tsd": float(np.nanmean(sd[lo:ks])) if ks - lo >= 5 else None,
                   "tmu": float(np.nanmean(mu[lo:ks])) if ks - lo >= 5 else None}
            for name, f in SKILLS.items():
                s = f(tr, k, h)
                row[name] = None if np.isnan(s) else max(float(s), 0.0)
            rows.append(row)
    # Σ⁻¹·ic: each member's trailing IC (60 dates) through the inverse of the trailing mean
    # daily rank correlation between the members' forecasts across codes (the weights a
    # least-squares blend of standardised signals would take), floored at 0; Σ over 60 or 250
    # dates, its off-diagonal as measured or shrunk halfway toward 0 (toward the identity: a
    # noisy Σ's inverse overreacts).
    wide = d.pivot(on="model", index=["code", "base_date"], values="ret")
    pair = {}
    for a in models:
        for b in models:
            if a < b:
                c = wide.drop_nulls([a, b]).group_by("base_date").agg(
                    pl.corr(pl.col(a).rank(), pl.col(b).rank()).alias("c"), pl.len().alias("n")
                ).filter(pl.col("n") >= MIN_CODES).drop_nans().sort("base_date")
                pair[(a, b)] = Trailing([at[x] for x in c["base_date"]], c["c"].to_numpy())
    for row in rows:
        i = at[row["base_date"]]
        v = np.array([ics[m].mean(ics[m].count(i, h), 60) for m in models])
        ok = all(ics[m].count(i, h) >= MIN_DAYS for m in models) and not np.isnan(v).any()
        for name, window, shrink in INVERSE:
            cm = np.eye(len(models))
            for (a, b), tr in pair.items():
                x = (1 - shrink) * tr.mean(tr.count(i, h), window)
                cm[models.index(a), models.index(b)] = cm[models.index(b), models.index(a)] = x
            wts = np.linalg.solve(cm, v) if ok and not np.isnan(cm).any() else None
            row[name] = None if wts is None else max(float(wts[models.index(row["model"])]), 0.0)
        for name in WITHOUT:
            built = row["60 dates (built)"]
            row[name] = 0.0 if name == f"without {row['model']}" else built
    schema = {"model": pl.Utf8, "base_date": pl.Date, "tsd": pl.Float64, "tmu": pl.Float64}
    schema.update({name: pl.Float64 for name in SKILLS})
    schema.update({name: pl.Float64 for name, _, _ in INVERSE})
    schema.update({name: pl.Float64 for name in WITHOUT})
    d = d.join(pl.DataFrame(rows, schema=schema), on=["model", "base_date"], how="inner")
    key = ["code", "base_date"]
    d = d.with_columns(
        z=((pl.col("ret") - pl.col("tmu")) / pl.col("tsd")).fill_nan(0).fill_null(0),
        learned=pl.col("weight") / pl.col("weight").sum().over(key))
    aggs = [pl.col("actual_return").first()]
    for name in list(SKILLS) + INVERSE_NAMES + WITHOUT:
        ws = pl.col("weight") * pl.col(name)
        ok = pl.col(name).is_not_null().all().over(key) & (ws.sum().over(key) > 0)
        t = pl.when(ok).then(ws / ws.sum().over(key)).otherwise(pl.col("learned"))
        # restated at the weighted centre and spread (a monotone map within a day only when
        # those are the same for every code, so it is kept to rank as the build does)
        aggs.append(((t * pl.col("tmu").fill_null(0)).sum()
                     + (t * pl.col("tsd").fill_null(0)).sum() * (t * pl.col("z")).sum()).alias(name))
    best = d.with_columns(s=pl.col("60 dates (built)").fill_null(-1.0)).with_columns(
        top=pl.col("s") == pl.col("s").max().over(key))
    g = d.group_by(key).agg(aggs).join(
        best.filter(pl.col("top")).group_by(key).agg(pl.col("ret").first().alias("best member")),
        on=key, how="left")
    solo = wide.join(g.select(key + ["actual_return"]), on=key)
    out = []
    for name in list(SKILLS) + INVERSE_NAMES + WITHOUT + ["best member"]:
        out.append((name, daily_ic(g, name).select("base_date", "ic")))
    for model in models:
        out.append((model + " alone", daily_ic(solo, model).select("base_date", "ic")))
    return out


def versus(r, built):
    """The mean daily difference to the built blend on the days both rank, and its t."""
    x = r.join(built, on="base_date", suffix="_b").select(pl.col("ic") - pl.col("ic_b"))
    x = x.to_series().to_numpy()
    return x.mean(), x.mean() / x.std() * np.sqrt(len(x)) if x.std() > 0 else 0.0


print(f"lake {LAKE}, base dates {FROM}..{TO}")
print("| skill | days (h1) | Rank IC 1 day (t) | 3 days (t) | 5 days (t) | mean |"
      " Δ vs built 1 / 3 / 5 days (t) |")
print("|---|---|---|---|---|---|---|")
res = {h: study(h) for h in (1, 3, 5)}
for j, (name, r1) in enumerate(res[1]):
    cells, means, deltas = [], [], []
    for h in (1, 3, 5):
        r = res[h][j][1]["ic"].to_numpy()
        cells.append(f"{r.mean():.4f} ({r.mean() / r.std() * np.sqrt(len(r)):.1f})")
        means.append(r.mean())
        dm, dt = versus(res[h][j][1], res[h][0][1])
        deltas.append(f"{dm:+.4f} ({dt:+.1f})")
    print(f"| {name} | {len(r1)} | {' | '.join(cells)} | {np.mean(means):.4f} |"
          f" {' / '.join(deltas)} |")
