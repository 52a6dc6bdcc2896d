#!/usr/bin/env bash
# Side-by-side benchmarks of gridkeeper against ZooKeeper, etcd and Ray, in one run on this machine.
#
#   benches/peers/run.sh [--quick] [--out FILE]
#
# Installs what is missing (Debian packages only if their commands are missing; Ray 2.60 into a
# virtualenv under target/peers/venv), builds gridkeeper and the harness in release mode, then runs
# each system alone: start its cluster, run its workloads, stop exactly what was started (also on
# error or Ctrl-C). gridkeeper runs over HTTP and again through its ZooKeeper protocol
# (gridkeeper-zk: the ZooKeeper client and workloads, on a fresh cluster). Results go to FILE
# (default target/peers/results.jsonl, one JSON line per measurement, truncated at the start); the
# Markdown table and the goals are printed at the end.
#
# Environment: PEERS_SYSTEMS (the systems to run, default all: zookeeper etcd gridkeeper gridkeeper_zk
# gridkeeper_1node gridkeeper_actors ray), PEERS_SHARED (the shared cluster scripts, default ../shared/peers beside the repo),
# PEERS_RAY_VERSION (default 2.60.*), PEERS_GK_ZK_BASE (gridkeeper's ZooKeeper ports are BASE+N,
# default 2280). Cluster data lives under target/peers/{zk,etcd,gk}.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
HERE=$ROOT/benches/peers
SHARED=${PEERS_SHARED:-$ROOT/../shared/peers}
RAY_VERSION=${PEERS_RAY_VERSION:-2.60.*}
WORK=$ROOT/target/peers
VENV=$WORK/venv
PEERS=$ROOT/target/peers-build/release/peers
QUICK=()
OUT=$WORK/results.jsonl

usage() { sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case $1 in
        --quick) QUICK=(--quick) ;;
        --out) OUT=${2:?--out needs a file}; shift ;;
        --out=*) OUT=${1#--out=} ;;
        -h | --help) usage; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
[[ $OUT == /* ]] || OUT=$ROOT/$OUT

say() { echo "== $*" >&2; }

for script in zk-cluster.sh etcd-cluster.sh; do
    if [[ ! -x $SHARED/$script ]]; then
        echo "run.sh: $SHARED/$script not found; set PEERS_SHARED to the shared peers scripts" >&2
        exit 1
    fi
done

# --- Install what is missing -------------------------------------------------------------------
install_packages() {
    local need=()
    command -v java >/dev/null && [[ -f /usr/share/java/zookeeper.jar ]] || need+=(zookeeper)
    command -v etcd >/dev/null || need+=(etcd-server)
    command -v etcdctl >/dev/null || need+=(etcd-client)
    command -v protoc >/dev/null || need+=(protobuf-compiler)
    [[ -d /usr/include/google/protobuf ]] || need+=(libprotobuf-dev)
    command -v nc >/dev/null || need+=(netcat-openbsd)
    command -v curl >/dev/null || need+=(curl)
    command -v python3 >/dev/null || need+=(python3)
    # Debian's python3 lacks venv's pip bootstrap until python3-venv is installed.
    python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
    ((${#need[@]})) || return 0
    say "installing ${need[*]}"
    local sudo=()
    [[ $(id -u) -eq 0 ]] || sudo=(sudo)
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}

install_ray() {
    if [[ -x $VENV/bin/python ]] && "$VENV/bin/python" -c 'import ray' 2>/dev/null; then
        return 0
    fi
    say "installing Ray $RAY_VERSION into $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "ray[default]==$RAY_VERSION"
}

# PEERS_SYSTEMS narrows the run, for example PEERS_SYSTEMS="zookeeper gridkeeper_zk" (default: all).
SYSTEMS=${PEERS_SYSTEMS:-zookeeper etcd gridkeeper gridkeeper_zk gridkeeper_1node gridkeeper_actors ray}
install_packages
[[ " $SYSTEMS " != *" ray "* ]] || install_ray

# --- Build ---------------------------------------------------------------------------------------
say "building gridkeeper and the harness (release)"
cargo build --release --bin gridkeeper
# The harness is its own project; start its lock file from the main package's, so it builds the
# same dependency versions CI tests.
[[ -f $HERE/Cargo.lock ]] || cp "$ROOT/Cargo.lock" "$HERE/Cargo.lock"
CARGO_TARGET_DIR=$ROOT/target/peers-build cargo build --release --manifest-path "$HERE/Cargo.toml"

# --- Run each system alone -----------------------------------------------------------------------
mkdir -p "$(dirname "$OUT")" "$WORK"
: >"$OUT"
export GK_BIN=$ROOT/target/release/gridkeeper
export PEERS_ZK_DIR=$WORK/zk PEERS_ETCD_DIR=$WORK/etcd PEERS_GK_DIR=$WORK/gk
GK_ADMINS=127.0.0.1:19201,127.0.0.1:19202,127.0.0.1:19203
# gk-cluster.sh gives node N the ZooKeeper port PEERS_GK_ZK_BASE+N; listed in node-id order, as the
# harness maps the leader's node number to its endpoint.
GK_ZK_BASE=${PEERS_GK_ZK_BASE:-2280}
GK_ZK_SERVERS=127.0.0.1:$((GK_ZK_BASE + 1)),127.0.0.1:$((GK_ZK_BASE + 2)),127.0.0.1:$((GK_ZK_BASE + 3))

# The stop command of the cluster now running; the EXIT trap runs it, so an error or Ctrl-C in the
# middle of a system still stops exactly what that system started.
STOP=()
stop_cluster() {
    if ((${#STOP[@]})); then
        "${STOP[@]}" || true
        STOP=()
    fi
}

# with_cluster <data dir> <control script> <bench args...>: a fresh cluster, the harness, a stop.
with_cluster() {
    local dir=$1 control=$2
    shift 2
    # Leftovers of a run that was killed outright: stop signals only processes its PID files name.
    "$control" stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    STOP=("$control" stop)
    "$control" start
    "$PEERS" bench --out "$OUT" --control "$control" "${QUICK[@]}" "$@"
    stop_cluster
}

run_zookeeper() {
    with_cluster "$PEERS_ZK_DIR" "$SHARED/zk-cluster.sh" --system zookeeper \
        --workloads write,create,read-local,failover
}

run_etcd() {
    with_cluster "$PEERS_ETCD_DIR" "$SHARED/etcd-cluster.sh" --system etcd \
        --workloads write,create,read,read-local,failover
}

run_gridkeeper() {
    local token=$PEERS_GK_DIR/certs/admin.token
    export PEERS_GK_NODES=3
    # The registry workloads on one cluster, failover last (it leaves two nodes)...
    with_cluster "$PEERS_GK_DIR" "$HERE/gk-cluster.sh" --system gridkeeper --endpoints "$GK_ADMINS" \
        --token-file "$token" --workloads write,create,read,read-local,failover
    # ...and the task workloads on a fresh one, as Ray gets a fresh instance.
    with_cluster "$PEERS_GK_DIR" "$HERE/gk-cluster.sh" --system gridkeeper --endpoints "$GK_ADMINS" \
        --token-file "$token" --workloads tasks,task-retry
}

run_gridkeeper_zk() {
    # A fresh 3-node cluster reached only through its ZooKeeper listeners, with ZooKeeper's client
    # and workloads; failover last (it leaves two nodes). gk-cluster.sh stays the control script
    # (leader and pid by node number). No token: the znodes are world-open, and a ZooKeeper session
    # needs no credential for them.
    export PEERS_GK_NODES=3
    with_cluster "$PEERS_GK_DIR" "$HERE/gk-cluster.sh" --system gridkeeper-zk --endpoints "$GK_ZK_SERVERS" \
        --workloads write,create,read-local,failover
}

run_gridkeeper_1node() {
    export PEERS_GK_NODES=1
    with_cluster "$PEERS_GK_DIR" "$HERE/gk-cluster.sh" --system gridkeeper-1node \
        --endpoints 127.0.0.1:19201 --token-file "$PEERS_GK_DIR/certs/admin.token" --workloads tasks
}

run_gridkeeper_actors() {
    # Issue 17's actor figures: benches/actors.rs runs its own in-process 3-node cluster (real QUIC,
    # Raft, fsync) and appends its records (system gridkeeper) to the same results file.
    cargo bench --bench actors -- --out "$OUT" "${QUICK[@]}"
}

run_ray() {
    # ray.init() starts the local instance and ray.shutdown() stops it, on SIGTERM too.
    "$VENV/bin/python" "$HERE/ray_bench.py" --out "$OUT" "${QUICK[@]}"
}

# Each system runs in a subshell of its own with errexit on, so a failure stops that system (and
# its cluster, through the subshell's EXIT trap) and the run goes on with the next one.
failed=()
for system in $SYSTEMS; do
    say "$system"
    set +e
    (
        set -e
        trap stop_cluster EXIT
        trap 'exit 130' INT TERM
        "run_$system"
    )
    rc=$?
    set -e
    ((rc == 130)) && exit 130
    ((rc == 0)) || failed+=("${system//_/-}")
done

# --- Report --------------------------------------------------------------------------------------
echo
echo "Run $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sr)"
echo "ZooKeeper $(dpkg-query -W -f '${Version}' zookeeper 2>/dev/null || echo '?'), etcd $(etcd --version 2>/dev/null | sed -n 's/^etcd Version: //p'), Ray $("$VENV/bin/python" -c 'import ray; print(ray.__version__)' 2>/dev/null || echo '?'), gridkeeper $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')${QUICK:+ (--quick)}"
echo
"$PEERS" table --results "$OUT"
if ((${#failed[@]})); then
    echo "run.sh: failed: ${failed[*]} (their rows are missing or partial)" >&2
    exit 1
fi
