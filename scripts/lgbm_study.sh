#!/usr/bin/env bash
# The study behind retrain_weekly.yaml's LightGBM settings (docs/quality.md, "LightGBM's label
# and history"): benches/study/lgbm_label.py replays a monthly retrain of the pooled model over a
# range of days and prints each variant's mean daily Rank IC on the 30 real tickers. The
# variants are judged on 2013-2018 (chosen there), then shown on 2019-2024 (the walk-forward's
# years). About 10 minutes on 2 cores (405 s, plus ~160 s for the half-life variant); run it
# on an idle machine (LightGBM's threads spin).
#
#   scripts/lgbm_study.sh                    # both periods, horizon 1, every variant
#   H=3 VARIANTS="raw rank-750d-slow" scripts/lgbm_study.sh
#
# Needs ../shared/data (KRXFLOW_DATA). The features lake goes to $STUDY_LAKE (default
# ./storage/lgbm-study): one cold daily batch on 2024-12-16 writes every day's features.
set -euo pipefail
cd "$(dirname "$0")/.."
benches/peer/setup.sh daily
source scripts/krx30.sh
LAKE="${STUDY_LAKE:-./storage/lgbm-study}"
H="${H:-1}"
VARIANTS="${VARIANTS:-raw-noloc raw rank rank-750d rank-1250d rank-750d-slow-noloc rank-750d-slow raw-750d-slow rank-all-slow-hl500-v150}"
# A lake built before close_loc existed is built again (its features lack the column).
if [ -d "$LAKE/features_daily" ] && ! .venv-peer-daily/bin/python -c "import sys; from deltalake \
    import DeltaTable; sys.exit('close_loc' not in [f.name for f in DeltaTable(sys.argv[1]).schema().fields])" \
    "$LAKE/features_daily"; then
  rm -rf "$LAKE"
fi
if [ ! -d "$LAKE/features_daily" ]; then
  "$KRXFLOW_BIN" run sentiment_lexical --date 2024-12-16 --lake "$LAKE" >/dev/null
  "$KRXFLOW_BIN" run daily_batch --date 2024-12-16 --lake "$LAKE" >/dev/null
fi
echo "| days | h | variant | mean daily Rank IC | t | days | median rounds | time |"
echo "|---|---|---|---|---|---|---|---|"
for period in "2013-01-02 2018-12-28" "2019-01-02 2024-12-16"; do
  # shellcheck disable=SC2086
  .venv-peer-daily/bin/python benches/study/lgbm_label.py "$LAKE" $period "$H" $VARIANTS
done
