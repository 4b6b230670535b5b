#!/usr/bin/env bash
# The main job on the embedded default: the whole prediction loop on the SYNTHETIC universe
# (no data, no weights needed) in a local lake. It replays ~120 trading days of the four
# scheduled DAGs in schedule order — daily_batch (16:00: ingest, features, LightGBM, linear
# ranker and ETS members, ensemble -> predictions), match_outcomes (16:30: matured predictions
# scored against the real close, weights updated), retrain_weekly and retrain_linear (Sunday
# 02:00: LightGBM, the linear ranker) — then prints
# the latest predictions, each member's hit rate and weight, the evaluation against naive
# baselines (krxflow eval: storage/report/report.html), and where to look next.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${KRXFLOW_SKIP_SETUP:-}" ] || scripts/setup.sh
source scripts/env.sh
if [ -z "${KRXFLOW_BIN:-}" ]; then
  cargo build --locked -p krxflow-cli
  KRXFLOW_BIN="$CARGO_TARGET_DIR/debug/krxflow"
fi
export KRXFLOW_LAKE="${KRXFLOW_LAKE:-./storage/lake}"
export KRXFLOW_UNIVERSE="${KRXFLOW_UNIVERSE:-synthetic}"
TO="${KRXFLOW_DATE:-$(date -u -d yesterday +%F)}"
FROM="${KRXFLOW_FROM:-$(date -u -d "$TO - 175 days" +%F)}"
kx() { echo "\$ krxflow $*"; "$KRXFLOW_BIN" "$@"; echo; }

for d in sentiment_lexical daily_batch match_outcomes retrain_weekly retrain_linear; do kx validate "dags/$d.yaml"; done
start=$(date +%s)
echo "The sentiment model first (labelled synthetic headlines; holdout accuracy in its metrics):"
kx run sentiment_lexical --date "$(date -u -d "$FROM - 1 day" +%F)"
kx backfill daily_batch match_outcomes retrain_weekly retrain_linear --from "$FROM" --to "$TO"
echo "(the loop over $FROM..$TO took $(( $(date +%s) - start )) s)"
echo
echo "Members that could not run say why (Chronos needs exported weights; FinBERT/lexical a model):"
kx sql "SELECT task, state, error FROM _krxflow.task_runs WHERE state = 'skipped' AND ds = (SELECT max(ds) FROM _krxflow.task_runs WHERE dag = 'daily_batch') ORDER BY task"
echo "The latest predictions (point close, q10–q90, up/flat/down, the members used):"
kx sql "SELECT code, horizon AS h, base_date, target_date, round(base_close) AS close, round(point) AS point, round(q10) AS q10, round(q90) AS q90, round(prob_up, 2) AS up, round(prob_flat, 2) AS flat, round(prob_down, 2) AS down, direction, sources_used FROM predictions WHERE base_date = (SELECT max(base_date) FROM predictions) ORDER BY code, horizon LIMIT 15"
echo "Hit rate (direction, ±0.3% flat band), MAPE and q10–q90 coverage of every model over the last 30 trading days:"
kx sql "SELECT model, horizon AS h, n, round(hit_rate, 3) AS hit_rate, round(mape * 100, 2) AS mape_pct, round(coverage, 3) AS coverage FROM model_performance WHERE as_of = (SELECT max(as_of) FROM model_performance) ORDER BY horizon, model"
REPORT="${KRXFLOW_REPORT:-./storage/report}"
echo "The whole replay judged against naive baselines (always up / down / flat, momentum, random walk), with 95% block-bootstrap intervals; the report with its charts goes to $REPORT/:"
kx eval --from "$FROM" --to "$TO" --out "$REPORT"
echo "The planted signal: a day's headline sentiment moves the next day's return. 1-day hit rate on days whose features carry scored news against days without (LightGBM reads the sentiment features; ETS sees prices only):"
kx sql "SELECT o.model, CASE WHEN coalesce(f.sent_weighted, 0) <> 0 THEN 'news' ELSE 'no news' END AS base_day, count(*) AS n, round(avg(CASE WHEN o.direction_hit THEN 1.0 ELSE 0.0 END), 3) AS hit_rate FROM prediction_outcomes o JOIN features_daily f ON f.code = o.code AND f.date = o.base_date WHERE o.horizon = 1 GROUP BY 1, 2 ORDER BY 1, 2"
echo "How the weights moved as outcomes matured (mean over codes, 1-day horizon, by month):"
kx sql "SELECT CAST(date_trunc('month', as_of) AS DATE) AS month, model, round(avg(weight), 3) AS weight, round(avg(hit_rate), 3) AS hit_rate_60d, round(avg(sample_count)) AS n FROM ensemble_weights WHERE horizon = 1 GROUP BY 1, 2 ORDER BY 1, 2"
echo "The weights learned per member and horizon (mean over codes, latest update; prior = the shrinkage target):"
kx sql "SELECT model, horizon AS h, count(*) AS codes, round(avg(weight), 3) AS weight, round(min(weight), 3) AS min_w, round(max(weight), 3) AS max_w, round(avg(prior), 3) AS prior, round(avg(sample_count)) AS n FROM ensemble_weights WHERE as_of = (SELECT max(as_of) FROM ensemble_weights) GROUP BY model, horizon ORDER BY horizon, model"
CODE=$("$KRXFLOW_BIN" sql "SELECT min(code) AS c FROM predictions" --format csv | sed -n 2p)
cat <<NEXT
Where to look next:
  $REPORT/report.html    # the evaluation: tables and charts (metrics.json, CSVs beside it)
  krxflow sql "SELECT * FROM prediction_members WHERE code = '$CODE' ORDER BY base_date DESC LIMIT 6"
  krxflow lineage predictions --key $CODE          # member forecasts, models, features, raw bars
  krxflow runs --limit 5                           # task states, why one was skipped (--json: rows, counters)
  krxflow tables                                   # every table, its version and rows
NEXT
