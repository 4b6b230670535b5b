#!/usr/bin/env bash
# The main job on the embedded default: validate the DAGs, run the demo DAG (synthetic KRX-like
# universe, local lake) for the latest trading day, then show what was written and its lineage.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -n "${KRXFLOW_SKIP_SETUP:-}" ] || scripts/setup.sh
source scripts/env.sh
if [ -z "${KRXFLOW_BIN:-}" ]; then
  cargo build --locked -p krxflow-cli
  KRXFLOW_BIN="$CARGO_TARGET_DIR/debug/krxflow"
fi
export KRXFLOW_LAKE="${KRXFLOW_LAKE:-./storage/lake}"
DATE="${KRXFLOW_DATE:-latest}"
kx() { echo "\$ krxflow $*"; "$KRXFLOW_BIN" "$@"; echo; }

kx validate dags/demo.yaml
kx run dags/demo.yaml --date "$DATE"
kx tables
kx sql "SELECT code, count(*) AS days, min(date) AS first, max(date) AS last, round(avg(ret_1d) * 100, 3) AS avg_ret_1d_pct, round(avg(vol_20d) * 100, 3) AS avg_vol_20d_pct FROM features_returns WHERE NOT warmup GROUP BY code ORDER BY code LIMIT 5"
CODE=$("$KRXFLOW_BIN" sql "SELECT min(code) AS c FROM features_returns" --format csv | sed -n 2p)
kx lineage features_returns --key "$CODE"
kx runs --limit 3
