#!/usr/bin/env bash
# Whether the LSTM member earns its place (docs/quality.md, "An LSTM member"): over a lake a
# walk-forward of the 30 real tickers already filled (scripts/walkforward.sh), the loop's
# ensemble, match and weights are re-run day by day over FROM..TO twice, in two copies:
#   A: the members the lake holds (LightGBM, linear, ETS), everything re-learned as in B;
#   B: the same, plus the LSTM, trained on Sundays (dags/retrain_lstm.yaml) and forecasting
#      daily from FROM on, earning its weights from its own record.
# Then `krxflow eval` of both over FROM..TO and the paired daily Rank IC difference B − A.
# The members' own forecasts are the lake's; only the ensemble's side of the loop differs.
#
#   scripts/lstm_study.sh SRC_LAKE FROM TO [WORK]
#   scripts/lstm_study.sh ./storage/wf-linear 2023-01-02 2024-12-16
#   LSTM_VARIANT=wide scripts/lstm_study.sh ./storage/wf-linear 2023-01-02 2024-12-16 ./storage/wide
#
# LSTM_VARIANT=wide: the network reads all 36 features of each day and learns from 1,000
# dates (scripts/lstm_study/wide_*.yaml) instead of the default ten daily signals and 300.
#
# WORK (default SRC_LAKE-lstm-study) holds the copies a, b and their reports a-report,
# b-report. Each 45-day chunk is followed by a vacuum of the rewritten tables: re-running a
# day rewrites the compacted files holding it, and the removed ones would fill the disk.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 3 ] || { sed -n 2,21p "$0" >&2; exit 2; }
SRC="$1"; FROM="$2"; TO="$3"; WORK="${4:-$SRC-lstm-study}"
[ -d "$SRC/predictions" ] || { echo "no predictions table under $SRC" >&2; exit 2; }
source scripts/krx30.sh
mkdir -p "$WORK"
for v in a b; do rm -rf "$WORK/$v" && cp -r "$SRC" "$WORK/$v"; done
SEED=$("$KRXFLOW_BIN" backfill daily_batch --from "$(date -u -d "$FROM - 14 days" +%F)" \
  --to "$(date -u -d "$FROM - 1 day" +%F)" --dry-run | grep -oE '^[0-9]{4}-[0-9]{2}-[0-9]{2}' | tail -1)
SUNDAY=$(date -u -d "$SEED - $(date -u -d "$SEED" +%u) days" +%F)
start=$(date +%s)
case "${LSTM_VARIANT:-default}" in
  default) LSTM_DAGS="dags/retrain_lstm.yaml scripts/lstm_study/predict_lstm.yaml" ;;
  wide) LSTM_DAGS="scripts/lstm_study/wide_train.yaml scripts/lstm_study/wide_predict.yaml" ;;
  *) echo "LSTM_VARIANT: default or wide" >&2; exit 2 ;;
esac
# shellcheck disable=SC2086 # two DAG files
KRXFLOW_LSTM=on "$KRXFLOW_BIN" --lake "$WORK/b" backfill $LSTM_DAGS \
  --from "$SUNDAY" --to "$TO" --parallel 1
echo "(LSTM trained weekly and forecast daily, $SUNDAY..$TO: $(( $(date +%s) - start )) s)"
replay() { # LAKE
  local from="$SEED" to
  while [[ ! "$from" > "$TO" ]]; do
    to=$(date -u -d "$from + 45 days" +%F)
    [[ "$to" > "$TO" ]] && to="$TO"
    "$KRXFLOW_BIN" --lake "$1" backfill scripts/reensemble/ensemble_only.yaml \
      scripts/lstm_study/match_weights.yaml --from "$from" --to "$to" --reprocess all --parallel 1
    "$KRXFLOW_BIN" --lake "$1" vacuum --retain 1s predictions prediction_members \
      prediction_outcomes ensemble_weights model_performance > /dev/null
    from=$(date -u -d "$to + 1 day" +%F)
  done
}
for v in a b; do
  start=$(date +%s)
  replay "$WORK/$v" > "$WORK/$v.log"
  echo "($v: the loop re-run over $SEED..$TO in $(( $(date +%s) - start )) s)"
  "$KRXFLOW_BIN" --lake "$WORK/$v" eval --from "$FROM" --to "$TO" --out "$WORK/$v-report" |
    sed -n '1,12p'
done
python3 benches/study/paired_ic.py "$WORK/a-report" "$WORK/b-report"
