#!/usr/bin/env bash
# Differential test: one scripted kazoo scenario against Apache ZooKeeper 3.8 and against gridkeeper.
#
#   tests/zk/differential/run.sh
#
# Starts a 3-member ZooKeeper ensemble (127.0.0.1:22181-22183, own zoo.cfg: TTL nodes, all 4lw, no
# superDigest), runs the scenario, stops it; starts a 3-node gridkeeper cluster with
# target/debug/gridkeeper (ports 24100+), runs the scenario, stops it; prints a unified diff of the
# normalized results and a summary. Not run by CI; does not build (run `cargo build` yourself first).
# Exit 0 when both targets ran (differences are findings, not failures), 2 if a target failed to start.
# Environment knobs: see differential.py (DIFF_WORKDIR, DIFF_ZK_PORT_BASE, DIFF_GK_PORT_BASE,
# DIFF_ZK_SIZE, GK_ZK_BINARY, KAZOO_PYTHON).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
PY=${KAZOO_PYTHON:-$REPO/target/zk-tools/kazoo-venv/bin/python}
export GK_ZK_BINARY=${GK_ZK_BINARY:-$REPO/target/debug/gridkeeper}
[[ -x $GK_ZK_BINARY ]] || { echo "no gridkeeper binary at $GK_ZK_BINARY (cargo build first)" >&2; exit 2; }
[[ -x $PY ]] || { echo "no kazoo venv python at $PY" >&2; exit 2; }
exec "$PY" "$HERE/differential.py" "$@"
