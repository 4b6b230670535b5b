#!/usr/bin/env bash
# Installs every system package krxflow needs, idempotently and non-interactively.
# Safe to run repeatedly: it only installs what is missing.
set -euo pipefail

need_apt=()
have() { command -v "$1" >/dev/null 2>&1; }

# A C toolchain for -sys crates (aws-lc, zstd, lz4 ...).
have cc || need_apt+=(build-essential)
have pkg-config || need_apt+=(pkg-config)
have git || need_apt+=(git)
# Observability tests: promtool checks, a real Prometheus scraping `krxflow serve`, and a real
# Pushgateway for one-shot commands (tests/observability.rs).
have promtool || need_apt+=(prometheus)
have prometheus || need_apt+=(prometheus)
have prometheus-pushgateway || need_apt+=(prometheus-pushgateway)

if ((${#need_apt[@]})); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

if ! have cargo; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 2
fi
echo "setup: ok" >&2
