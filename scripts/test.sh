#!/usr/bin/env bash
# The project's test command (README "Test", and .ci/run): set-up, format and lint checks,
# then every test of the workspace. Tests run offline.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The S3 backend is not in the default build (+88 crates): lint it once so it cannot rot.
cargo clippy -p krxflow-cli --features krxflow-lake/s3 --locked -- -D warnings
cargo test --workspace --locked
