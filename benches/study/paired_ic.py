"""The paired daily difference of two evaluations' Rank IC: `krxflow eval` reports of the same
forecasts' dates (say a walk-forward lake and the same lake re-combined without a member by
`scripts/reensemble.sh`). Per horizon, for MODEL (default `ensemble`): the mean Rank IC of each
report over the days both have, the mean daily difference B − A and its t (mean over standard
error, days taken as independent; at 3 and 5 days overlapping targets make the true error
larger). Standard library only.

    python3 benches/study/paired_ic.py REPORT_A REPORT_B [MODEL]
    python3 benches/study/paired_ic.py ./storage/wf-nolin-report ./storage/wf-linear-report
"""
import csv
import math
import sys


def daily(report, model):
    """{(horizon, date): Rank IC} of `model` from the report's rank_ic_daily.csv."""
    with open(f"{report}/rank_ic_daily.csv", newline="") as f:
        return {(int(r["horizon"]), r["date"]): float(r["value"])
                for r in csv.DictReader(f) if r["model"] == model}


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    a_dir, b_dir = sys.argv[1], sys.argv[2]
    model = sys.argv[3] if len(sys.argv) > 3 else "ensemble"
    a, b = daily(a_dir, model), daily(b_dir, model)
    print(f"{model}: A = {a_dir}, B = {b_dir}")
    print("| h | days | A | B | B − A (t) |")
    print("|---|---|---|---|---|")
    for h in sorted({k[0] for k in a}):
        keys = sorted(k for k in a if k[0] == h and k in b)
        if len(keys) < 2:
            print(f"| {h} | {len(keys)} | | | too few common days |")
            continue
        d = [b[k] - a[k] for k in keys]
        n = len(d)
        mean = sum(d) / n
        sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
        t = mean / sd * math.sqrt(n) if sd > 0 else float("nan")
        ma = sum(a[k] for k in keys) / n
        mb = sum(b[k] for k in keys) / n
        print(f"| {h} | {n:,} | {ma:.4f} | {mb:.4f} | {mean:+.4f} ({t:+.1f}) |")


if __name__ == "__main__":
    main()
