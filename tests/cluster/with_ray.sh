#!/usr/bin/env bash
# Starts a Ray head on 127.0.0.1 (Job Submission API on :8265), runs each COMMAND with
# `bash -c` (its output to OUT/N.log, its exit status to OUT/N.rc), then ends.
#
# Usage: unshare -r -n -p -f --mount-proc bash tests/cluster/with_ray.sh OUT COMMAND...
#
# Run it in user, network and PID namespaces of its own (tests/e2e/cluster.rs does): Ray's agents
# announce and dial the machine's own non-loopback address, which a namespace with only `lo`
# keeps on loopback; and when this script (PID 1 there) exits, every Ray process ends with it.
set -euo pipefail
out="$1"
shift
ip link set lo up
venv="$(cd "$(dirname "$0")/../.." && pwd)/.venv"
export RAY_USAGE_STATS_ENABLED=0
temp="$(mktemp -d /tmp/ray-XXXXXX)"
trap 'rm -rf "$temp"' EXIT
if ! "$venv/bin/ray" start --head --node-ip-address 127.0.0.1 --port 6379 \
  --dashboard-host 127.0.0.1 --dashboard-port 8265 --num-cpus 2 --disable-usage-stats \
  --temp-dir "$temp" >"$out/ray-start.log" 2>&1; then
  cat "$out/ray-start.log" >&2
  exit 90
fi
n=0
for command in "$@"; do
  n=$((n + 1))
  set +e
  bash -c "$command" >"$out/$n.log" 2>&1
  echo $? >"$out/$n.rc"
  set -e
done
