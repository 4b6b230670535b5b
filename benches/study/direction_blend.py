"""Should the members' up/flat/down probabilities be blended at their direction skill? The
ensemble calls the argmax of the members' probabilities averaged at the learned per-(code,
horizon) weights (`ensemble.combine`), so the members whose probabilities call directions
worse than a constant (ETS: 0.423 at 1 day on 2019–2024, against "always down"'s 0.431) weigh
about as much as the classifier. Re-computed from a walk-forward lake's `prediction_members`
and matured outcomes, the ensemble's hit rate with the probabilities blended by:

- `learned (built)`: the stored weights (the re-computation of the built blend);
- `equal`: one weight per member;
- `<member> alone`: one member's probabilities; `learned without <member>`: the others' at
  their learned weights;
- `best of 60 by log loss` / `by hit`: all the weight on the member with the best pooled
  (every code) log loss, or hit rate, over its latest `WINDOW` matured base dates;
- `learned × Brier skill`: the learned weight times the member's pooled Brier skill score
  over those dates against the same dates' class frequencies, floored at 0;
- `learned × exp(−n·Δlog loss)`: the learned weight times the likelihood ratio per row of the
  member's mean log loss to the best member's (Bayesian model averaging's tempered weights,
  with `n` = `TEMPER` rows' worth of evidence);
- and the 250-date versions of the two skill rows.

Only outcomes whose target date is before a day count for it (the ensemble runs at 16:00, the
match at 16:30). The last column is each row's paired daily difference to the built blend and
its t (days as the unit; overlapping horizons make the t of 3 and 5 days optimistic).

    .venv-peer-daily/bin/python benches/study/direction_blend.py LAKE [FROM TO]
"""
import sys
from datetime import date

import deltalake
import numpy as np
import polars as pl

LAKE = sys.argv[1]
FROM = date.fromisoformat(sys.argv[2]) if len(sys.argv) > 2 else date.min
TO = date.fromisoformat(sys.argv[3]) if len(sys.argv) > 3 else date.max
WINDOW, LONG, TEMPER, EPS = 60, 250, 30, 1e-6
CLASSES = ["up", "flat", "down"]
PROBS = ["prob_up", "prob_flat", "prob_down"]
KEY = ["code", "base_date", "horizon"]

members = pl.from_arrow(deltalake.DeltaTable(LAKE + "/prediction_members").to_pyarrow_table(
    columns=KEY + ["target_date", "model", "weight"] + PROBS))
actual = pl.from_arrow(deltalake.DeltaTable(LAKE + "/prediction_outcomes").to_pyarrow_table(
    columns=KEY + ["model", "actual_direction"])).filter(pl.col("model") == "ensemble").drop("model")
rows = members.join(actual, on=KEY).with_columns(
    pl.col("actual_direction").replace_strict({c: i for i, c in enumerate(CLASSES)}).alias("y"))
names = sorted(rows["model"].unique().to_list())


def member_daily(df):
    """Per (horizon, model, base date): rows, hits, Brier and log-loss sums, class counts."""
    p = np.stack([df[c].to_numpy() for c in PROBS], axis=1)
    y = df["y"].to_numpy()
    onehot = np.eye(3)[y]
    return df.select("horizon", "model", "base_date", "target_date").with_columns(
        pl.Series("hit", (p.argmax(axis=1) == y).astype(float)),
        pl.Series("brier", ((p - onehot) ** 2).sum(axis=1)),
        pl.Series("ll", -np.log(np.clip(p[np.arange(len(y)), y], EPS, 1.0))),
        *[pl.Series(f"n_{c}", onehot[:, i]) for i, c in enumerate(CLASSES)],
    ).group_by("horizon", "model", "base_date").agg(
        pl.len().alias("n"), pl.col("target_date").max(),
        pl.col("hit", "brier", "ll", "n_up", "n_flat", "n_down").sum()).sort("base_date")


daily = member_daily(rows)


def skills(h, days, window):
    """{model: (hit, log loss, Brier skill score) per day of `days`}, pooled over the latest
    `window` base dates matured before each day (NaN before any)."""
    out = {}
    for m in names:
        d = daily.filter((pl.col("horizon") == h) & (pl.col("model") == m))
        target = d["target_date"].to_numpy().astype("datetime64[D]")
        cum = {c: np.concatenate([[0.0], np.cumsum(d[c].to_numpy().astype(float))])
               for c in ["n", "hit", "brier", "ll", "n_up", "n_flat", "n_down"]}
        k = np.searchsorted(target, days.astype("datetime64[D]"), side="left")
        lo = np.maximum(0, k - window)
        s = {c: cum[c][k] - cum[c][lo] for c in cum}
        with np.errstate(invalid="ignore", divide="ignore"):
            n = s["n"]
            freq = np.stack([s["n_up"], s["n_flat"], s["n_down"]], axis=1) / n[:, None]
            clim = 1.0 - (freq ** 2).sum(axis=1)  # Brier of always forecasting the frequencies
            out[m] = (s["hit"] / n, s["ll"] / n, 1.0 - (s["brier"] / n) / clim)
    return out


def main():
    scope = rows.filter((pl.col("base_date") >= FROM) & (pl.col("base_date") <= TO))
    print(f"{LAKE}, base dates {scope['base_date'].min()}..{scope['base_date'].max()}, "
          f"members {', '.join(names)}")
    for h in sorted(scope["horizon"].unique().to_list()):
        r = scope.filter(pl.col("horizon") == h).sort("code", "base_date", "model")
        days = np.unique(r["base_date"].to_numpy())
        sk = {w: skills(h, days, w) for w in (WINDOW, LONG)}
        day_ix = np.searchsorted(days, r["base_date"].to_numpy())
        model = r["model"].to_numpy()
        w = r["weight"].to_numpy()
        p = np.stack([r[c].to_numpy() for c in PROBS], axis=1)
        y = r["y"].to_numpy()
        group = r.select(pl.struct("code", "base_date").rank("dense") - 1).to_series().to_numpy()

        def per_row(f):
            """A (day, model) quantity for every row."""
            v = np.full(len(r), np.nan)
            for m in names:
                sel = model == m
                v[sel] = f(m)[day_ix[sel]]
            return v

        def best(metric, lower):
            table = np.stack([sk[WINDOW][m][metric] for m in names], axis=1)
            filled = np.where(np.isnan(table), np.inf if lower else -np.inf, table)
            pick = filled.argmin(axis=1) if lower else filled.argmax(axis=1)
            have = ~np.isnan(table).all(axis=1)
            return lambda m: ((pick == names.index(m)) | ~have).astype(float)

        def tempered(window):
            lls = np.stack([sk[window][m][1] for m in names], axis=1)
            low = np.nanmin(np.where(np.isnan(lls), np.inf, lls), axis=1)
            return lambda m: np.nan_to_num(np.exp(-TEMPER * (sk[window][m][1] - low)), nan=1.0)

        rules = {
            "learned (built)": w,
            "equal": np.ones(len(r)),
            **{f"{m} alone": (model == m).astype(float) for m in names},
            **{f"learned without {m}": w * (model != m) for m in names},
            f"best of {WINDOW} by log loss": per_row(best(1, True)),
            f"best of {WINDOW} by hit": per_row(best(0, False)),
            f"learned × Brier skill ({WINDOW})":
                w * per_row(lambda m: np.nan_to_num(np.maximum(sk[WINDOW][m][2], 0.0), nan=1.0)),
            f"learned × Brier skill ({LONG})":
                w * per_row(lambda m: np.nan_to_num(np.maximum(sk[LONG][m][2], 0.0), nan=1.0)),
            f"learned × exp(−{TEMPER}·Δlog loss) ({WINDOW})": w * per_row(tempered(WINDOW)),
            f"learned × exp(−{TEMPER}·Δlog loss) ({LONG})": w * per_row(tempered(LONG)),
        }
        groups = group.max() + 1
        truth = np.zeros(groups, dtype=int)
        truth[group] = y
        g_day = np.zeros(groups, dtype=int)
        g_day[group] = day_ix
        hits = {}
        for name, wt in rules.items():
            blend = np.zeros((groups, 3))
            np.add.at(blend, group, p * wt[:, None])
            total = blend.sum(axis=1)
            # A row whose rule gives every member 0 falls back to the learned blend.
            fallback = np.zeros((groups, 3))
            np.add.at(fallback, group, p * w[:, None])
            blend = np.where(total[:, None] > 0, blend, fallback)
            hit = (blend.argmax(axis=1) == truth).astype(float)
            daily_hit = np.bincount(g_day, weights=hit, minlength=len(days)) / np.bincount(
                g_day, minlength=len(days))
            hits[name] = (hit.mean(), daily_hit)
        base = hits["learned (built)"][1]
        print(f"\nh={h}, {groups} forecasts over {len(days)} days")
        print("| probabilities blended by | hit | Δ vs built (t) |")
        print("|---|---|---|")
        for name, (pooled, d) in hits.items():
            diff = d - base
            t = diff.mean() / (diff.std(ddof=1) / np.sqrt(len(diff))) if diff.std() > 0 else 0.0
            cell = "" if name == "learned (built)" else f"{diff.mean():+.4f} ({t:+.1f})"
            print(f"| {name} | {pooled:.4f} | {cell} |")


if __name__ == "__main__":
    main()
