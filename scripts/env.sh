# Sourced by the project scripts: a persistent target dir outside the repo so reruns are
# incremental (the cold path still works: it is only a cache).
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/krxflow-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
