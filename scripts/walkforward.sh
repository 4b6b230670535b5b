#!/usr/bin/env bash
# Walk-forward evaluation on the 30 real KOSPI tickers (issue 16): the whole prediction loop
# replayed day by day over a range, as the scheduler would have run it, then judged against
# naive baselines by `krxflow eval`. Nothing for a day D is computed from data after D's close:
# the daily batch reads every input as of D, LightGBM is retrained every Sunday on data strictly
# before it, the ensemble's weights and conformal band come from outcomes matured before D.
#
#   scripts/walkforward.sh                       # 2019-01-02..2024-12-16 (release build)
#   KRXFLOW_FROM=2024-01-02 scripts/walkforward.sh   # a shorter range
#   KRXFLOW_TO=2023-12-28 KRXFLOW_LGBM_TARGET=excess scripts/walkforward.sh   # end earlier; LightGBM on excess returns
#   KRXFLOW_LINEAR=off scripts/walkforward.sh    # without the linear ranker (LightGBM + ETS)
#
# Resumable: the same command again finishes what a killed run left (the replay skips the
# partitions already done). The lake goes to $KRXFLOW_LAKE (default ./storage/walkforward), the
# report to $KRXFLOW_REPORT (default ./storage/walkforward-report): report.html, metrics.json,
# a CSV per table. Needs ../shared/data (KRXFLOW_DATA).
#
# Seeding, before the first day: the lexical sentiment model is trained on the hand-labelled
# headlines and the Korean Financial PhraseBank (human sentiment labels, not returns; the files
# are undated, so the model is the one a user would have today: stated as such in the README), one cold daily batch on the trading day
# before FROM writes all history up to it, and one retrain on the Sunday before FROM trains
# LightGBM on data up to that day.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${KRXFLOW_SKIP_SETUP:-}" ] || scripts/setup.sh
source scripts/krx30.sh
export KRXFLOW_LAKE="${KRXFLOW_LAKE:-./storage/walkforward}"
FROM="${KRXFLOW_FROM:-2019-01-02}"
TO="${KRXFLOW_TO:-2024-12-16}"
OUT="${KRXFLOW_REPORT:-./storage/walkforward-report}"
kx() { echo "\$ krxflow $*"; "$KRXFLOW_BIN" "$@"; echo; }

# The trading day before FROM and the Sunday on or before it.
SEED=$("$KRXFLOW_BIN" backfill daily_batch --from "$(date -u -d "$FROM - 14 days" +%F)" \
  --to "$(date -u -d "$FROM - 1 day" +%F)" --dry-run | grep -oE '^[0-9]{4}-[0-9]{2}-[0-9]{2}' | tail -1)
SUNDAY=$(date -u -d "$SEED - $(date -u -d "$SEED" +%u) days" +%F)
start=$(date +%s)
kx run sentiment_lexical --date "$SEED"
kx run daily_batch --date "$SEED"
kx run retrain_weekly --date "$SUNDAY"
REPLAY="daily_batch match_outcomes retrain_weekly"
# The linear ranker, a member beside LightGBM and ETS, trained by retrain_linear.yaml
# (KRXFLOW_LINEAR=off: without it).
if [ "${KRXFLOW_LINEAR:-on}" = on ]; then
  kx run retrain_linear --date "$SUNDAY"
  REPLAY="$REPLAY retrain_linear"
fi
# shellcheck disable=SC2086
kx eval --replay $REPLAY --from "$FROM" --to "$TO" --out "$OUT"
echo "(walk-forward $FROM..$TO: $(( $(date +%s) - start )) s)"
