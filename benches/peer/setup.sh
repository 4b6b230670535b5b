#!/usr/bin/env bash
# Installs the Python peers' packages (requirements.txt) into the project's .venv, idempotently:
# a second run installs nothing. The benchmarks call it themselves.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
"$root/scripts/setup.sh"
py="$root/.venv/bin/python"
missing=()
while read -r pin; do
  case "$pin" in '' | '#'*) continue ;; esac
  if ! "$py" -c 'import importlib.metadata as m, sys; sys.exit(m.version(sys.argv[1]) != sys.argv[2])' \
    "${pin%%==*}" "${pin##*==}" >/dev/null 2>&1; then
    missing+=("$pin")
  fi
done <"$(dirname "$0")/requirements.txt"
if ((${#missing[@]})); then
  echo "peer setup: installing ${missing[*]} into $root/.venv" >&2
  "$py" -m pip install -q --disable-pip-version-check "${missing[@]}"
fi
echo "peer setup: ok" >&2
