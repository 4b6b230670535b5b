# Sourced by the scripts that run the loop's release binary on the 30 real tickers
# (walkforward.sh, lgbm_study.sh): the persistent target dir, the release binary as
# $KRXFLOW_BIN (built unless set), the krx30 universe and its data (KRXFLOW_DATA, default
# ../shared/data); without the data it says so and exits 2.
source scripts/env.sh
if [ -z "${KRXFLOW_BIN:-}" ]; then
  cargo build --locked --release -p krxflow-cli
  KRXFLOW_BIN="$CARGO_TARGET_DIR/release/krxflow"
fi
export KRXFLOW_UNIVERSE=krx30
export KRXFLOW_DATA="${KRXFLOW_DATA:-../shared/data}"
if [ ! -d "$KRXFLOW_DATA/ohlcv/krx_daily_30" ]; then
  echo "skipped: the real data is absent ($KRXFLOW_DATA/ohlcv/krx_daily_30); set KRXFLOW_DATA" >&2
  exit 2
fi
