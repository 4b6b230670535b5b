#!/usr/bin/env bash
# The project's test command (README "Test", and .ci/run): set-up, format and lint checks,
# then every test of the workspace. Tests run offline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --tests
source scripts/env.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The S3 backend is not in the default build (+88 crates): lint it (with its tests) here, and
# run its tests against a real S3-compatible server below, so it cannot rot.
cargo clippy -p krxflow-cli --features s3 --tests --locked -- -D warnings
# The fuzz targets (their own workspace; run by scripts/fuzz.sh on nightly): linted on stable so
# an API change cannot leave them behind.
cargo fmt --manifest-path fuzz/Cargo.toml --check
cargo clippy --manifest-path fuzz/Cargo.toml --locked -- -D warnings
# Real-data tests skip without ../shared/data (or KRXFLOW_DATA); each skip is logged here, so
# a skip is counted in the summary, and is a failure when the data is there.
KRXFLOW_SKIP_LOG="$(mktemp)"
export KRXFLOW_SKIP_LOG
trap 'rm -f "$KRXFLOW_SKIP_LOG"' EXIT
cargo test --workspace --locked
# The lake on S3 (moto's server on loopback, tests/e2e/s3.rs): the binary built with `s3`.
cargo test -p krxflow-cli --features s3 --locked --test e2e s3::
skipped=$(sort -u "$KRXFLOW_SKIP_LOG" | grep -c . || true)
data="${KRXFLOW_DATA:-../shared/data}"
echo "real-data tests skipped: $skipped"
if [ "$skipped" -gt 0 ]; then
  sort -u "$KRXFLOW_SKIP_LOG"
  if [ -d "$data/ohlcv" ] || [ -d "$data/sentiment" ]; then
    echo "error: the real data is at $data but $skipped real-data tests skipped" >&2
    exit 1
  fi
fi
