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
# LightGBM (lightgbm3-sys) generates its bindings with bindgen, which needs libclang.
have clang || need_apt+=(clang)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need_apt+=(libclang-dev)
# Python for the tool venv below.
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)

if ((${#need_apt[@]})); then
  SUDO=""
  if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
  echo "setup: installing ${need_apt[*]}" >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(printf '%s\n' "${need_apt[@]}" | sort -u) >/dev/null
fi

# A project-local Python venv (.venv, git-ignored) with pinned build and runtime tools:
# - cmake >= 3.28 for lightgbm3-sys (Debian 12 ships 3.25); .cargo/config.toml points CMAKE here;
# - the onnxruntime wheel whose libonnxruntime.so `ort` loads at run time (load-dynamic: the
#   build downloads nothing). Its minor version must match ort's `api-31` feature.
CMAKE_PIN='cmake>=3.28,<4'
ORT_PIN='onnxruntime==1.31.1'
VENV="$(cd "$(dirname "$0")/.." && pwd)/.venv"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV" >&2
  python3 -m venv "$VENV"
fi
if ! "$VENV/bin/python" - <<'PY' >/dev/null 2>&1
import importlib.metadata as m, sys
cm = tuple(int(x) for x in m.version("cmake").split(".")[:2])
sys.exit(0 if (3, 28) <= cm < (4, 0) and m.version("onnxruntime") == "1.31.1" else 1)
PY
then
  echo "setup: installing $CMAKE_PIN $ORT_PIN into $VENV" >&2
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$CMAKE_PIN" "$ORT_PIN"
fi

if ! have cargo; then
  echo "setup: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 2
fi
echo "setup: ok" >&2
