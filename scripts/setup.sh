#!/usr/bin/env bash
# Installs every system package krxflow needs, idempotently and non-interactively.
# Safe to run repeatedly: it only installs what is missing.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

# A C toolchain for -sys crates (aws-lc, zstd, liblzma, ring ...).
have cc || need_apt+=(build-essential)
# C++ for libFuzzer, which the fuzz crate's build script compiles (linted by scripts/test.sh).
have c++ || need_apt+=(g++)
have pkg-config || need_apt+=(pkg-config)
have git || need_apt+=(git)
# Observability tests: promtool checks, a real Prometheus scraping `krxflow serve`, and a real
# Pushgateway for one-shot commands (tests/e2e/observability.rs).
have promtool || need_apt+=(prometheus)
have prometheus || need_apt+=(prometheus)
have prometheus-pushgateway || need_apt+=(prometheus-pushgateway)
# LightGBM's wheel library (loaded at run time) links OpenMP's runtime.
ldconfig -p 2>/dev/null | grep -q 'libgomp\.so\.1 ' || need_apt+=(libgomp1)
# The evaluation report's browser test (tests/e2e/eval.rs): headless Chromium driven through
# chromedriver. Only the test command needs it (`scripts/setup.sh --tests`).
if [ "${1:-}" = "--tests" ]; then
  have chromium || need_apt+=(chromium)
  have chromedriver || need_apt+=(chromium-driver)
  # The cluster test runs a Ray head in network and PID namespaces of its own.
  have unshare || need_apt+=(util-linux)
  have ip || need_apt+=(iproute2)
fi
# Python for the tool venv below.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)

if ((${#need_apt[@]})); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

# A project-local Python venv (.venv, git-ignored) with the pinned native runtimes krxflow loads
# at run time (nothing is compiled or linked at build time, and the build downloads nothing):
# - onnxruntime: libonnxruntime.so for `ort` (load-dynamic); its minor version must match ort's
#   `api-31` feature;
# - lightgbm: lib_lightgbm.so for crates/models/src/lightgbm.rs, installed without its Python
#   dependencies (numpy, scipy), which krxflow never imports.
ORT_PIN='onnxruntime==1.31.1'
LGBM_PIN='lightgbm==4.7.0'
VENV="$(cd "$(dirname "$0")/.." && pwd)/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  python3 -m venv "$VENV"
fi
have_pin() {
  "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' "$1" "$2" >/dev/null 2>&1
}
if ! have_pin onnxruntime 1.31.1; then
  echo "setup: installing $ORT_PIN into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$ORT_PIN"
fi
if ! have_pin lightgbm 4.7.0; then
  echo "setup: installing $LGBM_PIN (library only) into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$LGBM_PIN"
fi

# The interoperability test (tests/e2e/interop.rs) reads the lake with the readers users have:
# the `deltalake` Python package and Polars; the S3 tests (tests/e2e/s3.rs) run the lake on
# moto's standalone S3-compatible server on loopback. Only the test command needs them.
if [ "${1:-}" = "--tests" ]; then
  for pin in deltalake==1.6.6 polars==2.1.0; do
    if ! have_pin "${pin%%==*}" "${pin##*==}"; then
      echo "setup: installing $pin into $VENV" >&2
      "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$pin"
    fi
  done
  # The cluster test (tests/e2e/cluster.rs) submits backfill partitions to a real Ray head
  # (`ray[default]`: the dashboard serves the Job Submission API); ~380 MB, ~25 s.
  if ! have_pin ray 2.60.0 || ! "$VENV/bin/python" -c 'import aiohttp, ray.dashboard' >/dev/null 2>&1; then
    echo "setup: installing ray[default]==2.60.0 into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check 'ray[default]==2.60.0'
  fi
  # The server needs moto's `server` extra (Flask and Werkzeug) beside moto itself.
  if ! have_pin moto 5.2.5 || ! "$VENV/bin/python" -c 'import flask, werkzeug' >/dev/null 2>&1; then
    echo "setup: installing moto[server]==5.2.5 into $VENV" >&2
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check 'moto[server]==5.2.5'
  fi
fi

if ! have cargo; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 2
fi
echo "setup: ok" >&2
