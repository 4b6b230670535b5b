#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers of untrusted input (issue 17), with libFuzzer and
# AddressSanitizer:
#
#   scripts/fuzz.sh dag_loader 600     # the DAG loader and validator, 10 minutes
#   scripts/fuzz.sh csv_router 600     # decode + the OHLCV CSV router
#   scripts/fuzz.sh kis_page 600       # the KIS daily-chart answer parser + row checks
#   scripts/fuzz.sh all 600            # each target in turn
#
# Installs what it needs, idempotently: the nightly toolchain (rustup) and cargo-fuzz
# (crates.io, pinned). The fuzzers work on a scratch copy of the committed seeds in
# fuzz/corpus/TARGET (under the target dir), so a run never changes the repository; a crash is
# saved in fuzz/artifacts/TARGET/ with the command that replays it. Not part of the test
# command: a 10-minute run per target is a job for a developer or a nightly CI, and needs a
# separate nightly build of the pipelines (13 min cold on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

target="${1:?usage: scripts/fuzz.sh dag_loader|csv_router|kis_page|all SECONDS}"
seconds="${2:-600}"
CARGO_FUZZ_VERSION=0.13.2

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  cargo +nightly install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# The fuzz build has its own flags (sanitizer, coverage): its own target dir, kept warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR}-fuzz"

run() {
  local t="$1" scratch="$CARGO_TARGET_DIR/corpus/$1"
  mkdir -p "$scratch"
  cp -n fuzz/corpus/"$t"/* "$scratch"/ 2>/dev/null || true
  echo "== fuzzing $t for ${seconds}s (corpus: $scratch)"
  (cd fuzz && cargo +nightly fuzz run -O "$t" "$scratch" -- \
    -max_total_time="$seconds" -rss_limit_mb=4096 -max_len=65536 -timeout=10 \
    -print_final_stats=1)
}

if [ "$target" = all ]; then
  for t in dag_loader csv_router kis_page; do run "$t"; done
else
  run "$target"
fi
