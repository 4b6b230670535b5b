#!/usr/bin/env bash
# Re-runs the ensemble (and the matching of its outcomes) over a lake that a walk-forward or a
# backfill already filled, then evaluates it: what a change to `ensemble.combine` (the blend,
# the ranking tilt, the conformal band) does to the track record, in minutes instead of a
# replay with its weekly retrains (10 minutes for six years of the 30 tickers). The members'
# forecasts, their outcomes and the learned weights are what the lake holds; only
# `predictions`, `prediction_members` and the ensemble's outcomes are rewritten, in a copy.
#
#   scripts/reensemble.sh SRC_LAKE FROM TO [OUT_LAKE] [REPORT]
#   scripts/reensemble.sh ./storage/wf1y-native 2023-01-02 2023-12-28
#   KRXFLOW_REENSEMBLE_WITHOUT=linear scripts/reensemble.sh ./storage/wf-linear 2019-01-02 2021-10-22   # without a member
#
# FROM..TO are base dates; the predictions of the trading day before FROM are re-combined too
# (a walk-forward's seed day). OUT_LAKE (default SRC_LAKE-reensemble) is replaced by a copy of
# SRC_LAKE; the report goes to REPORT (default OUT_LAKE-report).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 2,14p "$0" >&2; exit 2; }
SRC="$1"; FROM="$2"; TO="$3"
OUT="${4:-$SRC-reensemble}"; REPORT="${5:-$OUT-report}"
[ -d "$SRC/predictions" ] || { echo "no predictions table under $SRC" >&2; exit 2; }
source scripts/env.sh
if [ -z "${KRXFLOW_BIN:-}" ]; then
  cargo build --locked --release -p krxflow-cli
  KRXFLOW_BIN="$CARGO_TARGET_DIR/release/krxflow"
fi
rm -rf "$OUT" && cp -r "$SRC" "$OUT"
# KRXFLOW_REENSEMBLE_WITHOUT="linear …": those members' forecast tables are left out of the
# copy, so the ensemble is re-combined without them (their own rows in prediction_members and
# prediction_outcomes stay, and are still evaluated as members).
for m in ${KRXFLOW_REENSEMBLE_WITHOUT:-}; do
  case "$m" in
    linear) rm -rf "$OUT/linear_predictions" ;;
    lgbm) rm -rf "$OUT/lgbm_predictions" ;;
    ets) rm -rf "$OUT/ets_forecasts" ;;
    chronos) rm -rf "$OUT/chronos_forecasts" ;;
    lstm) rm -rf "$OUT/lstm_predictions" ;;
    *) echo "KRXFLOW_REENSEMBLE_WITHOUT: unknown member \`$m\` (linear, lgbm, ets, chronos, lstm)" >&2; exit 2 ;;
  esac
done
SEED=$("$KRXFLOW_BIN" backfill daily_batch --from "$(date -u -d "$FROM - 14 days" +%F)" \
  --to "$(date -u -d "$FROM - 1 day" +%F)" --dry-run | grep -oE '^[0-9]{4}-[0-9]{2}-[0-9]{2}' | tail -1)
# In 45-day chunks, the rewritten tables vacuumed after each: every day's match merges into
# the outcome files of the days before it, and over a six-year lake the replaced files (kept
# 7 days for time travel) grew past 20 GB before the run ended.
from="$SEED"
while [[ ! "$from" > "$TO" ]]; do
  to=$(date -u -d "$from + 45 days" +%F)
  [[ "$to" > "$TO" ]] && to="$TO"
  "$KRXFLOW_BIN" --lake "$OUT" backfill scripts/reensemble/ensemble_only.yaml \
    scripts/reensemble/match_only.yaml --from "$from" --to "$to" --reprocess all --parallel 1
  "$KRXFLOW_BIN" --lake "$OUT" vacuum --retain 1s predictions prediction_members \
    prediction_outcomes > /dev/null
  from=$(date -u -d "$to + 1 day" +%F)
done
"$KRXFLOW_BIN" --lake "$OUT" eval --from "$FROM" --to "$TO" --out "$REPORT"
