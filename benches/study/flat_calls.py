"""Would calling "flat" raise the hit rate? The ensemble's 1-day forecasts of a lake by decile
of their flat probability, with the share of moves that were up, flat and down in each.

The ensemble calls the most probable direction, and "flat" (within ±0.3%) never is: a call
would pay only where flat moves outnumber both up and down ones.

    .venv-peer-daily/bin/python benches/study/flat_calls.py LAKE [FROM TO] [H]
"""
import sys

import polars as pl
from deltalake import DeltaTable


def main():
    lake = sys.argv[1]
    lo, hi = (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else ("2019-01-02", "2024-12-16")
    h = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    key = ["code", "base_date", "horizon"]
    preds = pl.from_arrow(DeltaTable(f"{lake}/predictions").to_pyarrow_table(
        columns=key + ["prob_up", "prob_flat", "prob_down", "direction"]))
    outs = pl.from_arrow(DeltaTable(f"{lake}/prediction_outcomes").to_pyarrow_table(
        columns=key + ["model", "actual_direction", "direction_hit"]))
    in_range = (pl.col("base_date") >= pl.lit(lo).str.to_date()) & (
        pl.col("base_date") <= pl.lit(hi).str.to_date()) & (pl.col("horizon") == h)
    j = outs.filter(in_range & (pl.col("model") == "ensemble")).join(preds.filter(in_range), on=key)
    share = lambda d: (pl.col("actual_direction") == d).mean().round(3).alias(d)
    print(f"{j.height} ensemble forecasts, h={h}, {lo}..{hi}: hit rate {j['direction_hit'].mean():.3f}, "
          f"calls {dict(j['direction'].value_counts().iter_rows())}")
    print("| decile of prob_flat | n | mean prob_flat | up | flat | down |")
    print("|---|---|---|---|---|---|")
    deciles = j.with_columns(
        (pl.col("prob_flat").rank("ordinal") * 10 // (j.height + 1) + 1).alias("decile"))
    for r in deciles.group_by("decile").agg(
            pl.len().alias("n"), pl.col("prob_flat").mean().round(3).alias("p"),
            share("up"), share("flat"), share("down")).sort("decile").iter_rows(named=True):
        print(f"| {r['decile']} | {r['n']} | {r['p']} | {r['up']} | {r['flat']} | {r['down']} |")


if __name__ == "__main__":
    main()
