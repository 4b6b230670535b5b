#!/usr/bin/env bash
# Installs the Python peers' packages into a venv, idempotently: a second run installs nothing.
# The benchmarks call it themselves.
#   setup.sh         requirements.txt       -> the project's .venv (the feature and ONNX peers)
#   setup.sh daily   requirements-daily.txt -> .venv-peer-daily (the full-market daily peer)
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$root/scripts/setup.sh"
case "${1:-}" in
  '') venv="$root/.venv" reqs="$(dirname "$0")/requirements.txt" ;;
  daily) venv="$root/.venv-peer-daily" reqs="$(dirname "$0")/requirements-daily.txt" ;;
  *) echo "usage: $0 [daily]" >&2; exit 2 ;;
esac
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
missing=()
while read -r pin; do
  case "$pin" in '' | '#'*) continue ;; esac
  if ! "$py" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' \
    "${pin%%==*}" "${pin##*==}" >/dev/null 2>&1; then
    missing+=("$pin")
  fi
done <"$reqs"
if ((${#missing[@]})); then
  echo "peer setup: installing ${missing[*]} into $venv" >&2
  "$py" -m pip install -q --disable-pip-version-check "${missing[@]}"
fi
echo "peer setup: ok ($venv)" >&2
