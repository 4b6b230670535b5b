#!/usr/bin/env bash
# The full market replayed over months (benches/README.md, "The full market replayed"): a lake
# seeded with a cold `daily_batch` (2019-03-04) and a `retrain_weekly` (2019-03-03), then
# `backfill daily_batch match_outcomes` over the 134 trading days 2019-03-05..2019-09-16 (the
# range batch, then the loop day by day), timed with its peak RSS, once per binary given, each
# on a fresh copy of the one seed. With two or more binaries it then checks that every table of
# their lakes is the same (md5 of sorted CSV dumps). The lakes stay under WORK for a look (the
# last one is a mature lake for the daily bench's day 2019-09-17). Then, DAY_RUNS times (default
# 3; 0 skips it), each binary runs that next day, 2019-09-17, on a fresh copy of its own lake,
# the binaries alternating (this machine's speed drifts within minutes: compare pairs).
# With PEER_RUNS=N (default 0), the Python peers (benches/peer/daily_polars.py and
# daily_pandas.py, set up by `benches/peer/setup.sh daily`; PEERS="polars pandas" picks them) then
# run the same day N times each on the first binary's lake and check their results against a
# copy where that binary ran the day. REPLAY=0 reuses the lakes a
# previous run left under WORK (no seed, no replay, no table comparison). UNCHECKED=1 adds, to
# each day run, one without daily_batch's checks (below).
# KRXFLOW_LINEAR=on replays the default DAGs' loop instead, the linear ranker a member (its
# model trained on the seed's Sunday too); the peers implement LightGBM + ETS, so PEER_RUNS
# needs it off (the default here).
#
#   scripts/fullmarket_replay.sh [BIN ...]      # default: this checkout's release build
#   WORK=/tmp/fm scripts/fullmarket_replay.sh ./krxflow-before ./krxflow-after
#
# Needs the full-market panel under KRXFLOW_DATA (default ../shared/data).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ROOT_PY="$(pwd)/.venv-peer-daily/bin/python"
# The loop the peers implement (LightGBM + ETS) unless KRXFLOW_LINEAR=on.
export KRXFLOW_UNIVERSE=fullmarket KRXFLOW_DATA="${KRXFLOW_DATA:-../shared/data}"
export KRXFLOW_LINEAR="${KRXFLOW_LINEAR:-off}"
if [ "$KRXFLOW_LINEAR" != off ] && [ "${PEER_RUNS:-0}" -gt 0 ]; then
  echo "PEER_RUNS needs KRXFLOW_LINEAR=off: the Python peers implement LightGBM + ETS" >&2
  exit 2
fi
[ -d "$KRXFLOW_DATA/ohlcv/krx_fullmarket_2018_2019" ] || {
  echo "skipped: no full-market panel under $KRXFLOW_DATA/ohlcv/krx_fullmarket_2018_2019" >&2
  exit 0
}
if [ $# -eq 0 ]; then
  cargo build --locked --release -p krxflow-cli
  set -- "$CARGO_TARGET_DIR/release/krxflow"
fi
WORK="${WORK:-$(mktemp -d)}"
mkdir -p "$WORK"
if [ "${REPLAY:-1}" = 0 ]; then
  for ((i = 0; i < $#; i++)); do
    [ -d "$WORK/lake$i" ] || { echo "REPLAY=0: no $WORK/lake$i to reuse" >&2; exit 2; }
  done
else
  rm -rf "$WORK/seed"
  KRXFLOW_LAKE="$WORK/seed" "$1" run daily_batch --date 2019-03-04 >/dev/null
  KRXFLOW_LAKE="$WORK/seed" "$1" run retrain_weekly --date 2019-03-03 >/dev/null
  if [ "$KRXFLOW_LINEAR" != off ]; then
    KRXFLOW_LAKE="$WORK/seed" "$1" run retrain_linear --date 2019-03-03 >/dev/null
  fi
  dump() { # BIN LAKE: one line per table, its md5
    for t in $(ls "$2" | grep -v '^_'); do
      [ -d "$2/$t/_delta_log" ] || continue
      printf '%s %s\n' "$t" "$(KRXFLOW_LAKE="$2" "$1" sql "SELECT * FROM $t" --format csv | sort | md5sum | cut -c1-16)"
    done
  }
  i=0
  for bin in "$@"; do
    lake="$WORK/lake$i"
    rm -rf "$lake" && cp -a "$WORK/seed" "$lake"
    echo "== $bin"
    KRXFLOW_LAKE="$lake" /usr/bin/time -f "wall %e s  user %U s  sys %S s  peak RSS %M KB" \
      "$bin" backfill daily_batch match_outcomes --from 2019-03-05 --to 2019-09-16 2>&1 |
      grep -E 'once over the range in|^wall'
    dump "$bin" "$lake" >"$WORK/tables$i.txt"
    i=$((i + 1))
  done
fi
# The mature lake's next day: the daily job of a user with half a year of outcomes. With
# UNCHECKED=1 each run is followed by one with a copy of daily_batch without its `checks:`
# (what they cost; the rule of the benches' `without_checks`).
batches=daily_batch
if [ "${UNCHECKED:-0}" = 1 ]; then
  awk '/^    checks:$/ { skip = 1; next } skip && (/^     / || /^$/) { next } { skip = 0; print }' \
    dags/daily_batch.yaml >"$WORK/daily_batch_unchecked.yaml"
  if grep -q 'checks:' "$WORK/daily_batch_unchecked.yaml"; then
    echo "UNCHECKED=1: a checks block was left in the copy" >&2
    exit 2
  fi
  batches="daily_batch $WORK/daily_batch_unchecked.yaml"
fi
for ((r = 1; r <= ${DAY_RUNS:-3}; r++)); do
  i=0
  for bin in "$@"; do
    for batch in $batches; do
      rm -rf "$WORK/day" && cp -a "$WORK/lake$i" "$WORK/day"
      printf 'day 2019-09-17, run %d, %s, %s: ' "$r" "$bin" "$batch"
      KRXFLOW_LAKE="$WORK/day" /usr/bin/time -f "wall %e s  user %U s  sys %S s  peak RSS %M KB" \
        "$bin" backfill "$batch" match_outcomes --from 2019-09-17 --to 2019-09-17 2>&1 |
        grep -E '^wall'
    done
    i=$((i + 1))
  done
done
rm -rf "$WORK/day"
if [ "${PEER_RUNS:-0}" -gt 0 ]; then
  bash benches/peer/setup.sh daily
  data="$(cd "$KRXFLOW_DATA" && pwd)"
  rm -rf "$WORK/peer-check" "$WORK/peer-out"* && cp -a "$WORK/lake0" "$WORK/peer-check"
  KRXFLOW_LAKE="$WORK/peer-check" "$1" backfill daily_batch match_outcomes \
    --from 2019-09-17 --to 2019-09-17 >/dev/null
  for engine in ${PEERS:-polars pandas}; do
    (cd benches/peer && ../../.venv-peer-daily/bin/python "daily_$engine.py" "$WORK/lake0" \
      2019-09-17 \
      "$data/ohlcv/krx_fullmarket_2018_2019/kr_fullmarket_daily_20181126_20190918.csv.gz" \
      "$data/ohlcv/kospi_index/KS11_yahoo_espark11.csv" "$WORK/peer-out-$engine" \
      "$PEER_RUNS" "$WORK/peer-check") >"$WORK/peer-$engine.json"
    "$ROOT_PY" - "$WORK/peer-$engine.json" <<'PY'
import json, statistics, sys
r = json.load(open(sys.argv[1]))
w = r["wall_s"]
print(f"{r['engine']} peer, day 2019-09-17 on lake0, {len(w)} runs, a process {r['process']}: "
      f"min {min(w):.2f} / median {statistics.median(w):.2f} / max {max(w):.2f} s, "
      f"peak RSS {r['peak_rss_mib']:.0f} MiB (ETS workers {r['peak_rss_children_mib']:.0f} MiB)")
print("  steps, the checked run (s):", {k: round(v, 3) for k, v in r["steps_s"][-1].items()})
print("  rows:", r["rows"])
print("  agreement:", json.dumps(r["agreement"]))
d = r["agreement"]["disagreements"]
print("  the same results as krxflow's" if not d else f"  DISAGREES: {d}")
sys.exit(1 if d else 0)
PY
  done
fi
for ((j = 1; j < i && ${REPLAY:-1} != 0; j++)); do
  if diff -q "$WORK/tables0.txt" "$WORK/tables$j.txt" >/dev/null; then
    echo "lake$j: all $(wc -l <"$WORK/tables0.txt") tables identical to lake0's"
  else
    echo "lake$j: tables differ from lake0's:" && diff "$WORK/tables0.txt" "$WORK/tables$j.txt"
    exit 1
  fi
done
echo "lakes under $WORK"
