#!/usr/bin/env bash
# Start/stop a gridkeeper cluster of 1 or 3 nodes on 127.0.0.1, in the manner of
# ../../../shared/peers/{zk,etcd}-cluster.sh, so the harness treats every system alike.
#
#   gk-cluster.sh start|stop|status|leader|pid <node>
#
# Binary: $GK_BIN (default target/release/gridkeeper under the repo root). Nodes: $PEERS_GK_NODES
# (1 or 3, default 3). Credentials, data, logs and PID files live under $PEERS_GK_DIR (default
# $TMPDIR/peers-gk); credentials are issued once and reused, data is never wiped here (the caller
# removes the directory for a fresh cluster). `start` refuses to run if a PID file already exists.
# `stop` signals only the PIDs written by `start` (and only if /proc/PID/cmdline still names this
# node's data dir), TERM first, KILL after 30 s. `leader` prints "<node> <pid>" for the coordinator
# leader; `pid <node>` prints that node's PID.
#
# Ports: mesh $PEERS_GK_MESH_BASE+N (default 17200+N), admin $PEERS_GK_ADMIN_BASE+N (default 19200+N),
# ZooKeeper client protocol $PEERS_GK_ZK_BASE+N (default 2280+N, gridkeeper's own default, clear of a
# real ZooKeeper's 2181-2183), always passed as an explicit --zk-listen. `start` waits until every
# node's ZooKeeper port answers `ruok` too. Every other node setting is left at gridkeeper's defaults
# (fsync on).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${GK_BIN:-$ROOT/target/release/gridkeeper}
BASE=${PEERS_GK_DIR:-${TMPDIR:-/tmp}/peers-gk}
NODES=${PEERS_GK_NODES:-3}
MESH_BASE=${PEERS_GK_MESH_BASE:-17200}
ADMIN_BASE=${PEERS_GK_ADMIN_BASE:-19200}
ZK_BASE=${PEERS_GK_ZK_BASE:-2280}

case "$NODES" in
    1 | 3) ;;
    *) echo "PEERS_GK_NODES must be 1 or 3, not $NODES" >&2; exit 2 ;;
esac

ids() { seq 1 "$NODES"; }
admin() { echo "127.0.0.1:$((ADMIN_BASE + $1))"; }
zk() { echo "127.0.0.1:$((ZK_BASE + $1))"; }

ours() { # ours <node> <pid>: the PID is alive and is the process started for this node
    local cmd
    kill -0 "$2" 2>/dev/null || return 1
    cmd=$(tr '\0' ' ' <"/proc/$2/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"--data-dir $BASE/d$1 "* ]]
}

leader_of() { # leader_of <node>: the leader id that node reports, or nothing
    { curl -s -m 2 --cacert "$BASE/certs/ca.pem" --cert "$BASE/certs/operator.pem" \
        --key "$BASE/certs/operator.key" "https://$(admin "$1")/status" 2>/dev/null || true; } |
        sed -n 's/.*"leader":\([0-9][0-9]*\).*/\1/p'
}

zk_ready() { # zk_ready <node>: the node's ZooKeeper port answers the four-letter word ruok
    local reply
    reply=$(timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" && printf ruok >&3 && cat <&3' _ "$((ZK_BASE + $1))" \
        2>/dev/null) || true
    [[ $reply == imok ]]
}

start() {
    for i in $(ids); do
        if [[ -f $BASE/d$i.pid ]]; then
            echo "gk$i: $BASE/d$i.pid exists; run stop first" >&2
            exit 1
        fi
    done
    if [[ ! -x $BIN ]]; then
        echo "no gridkeeper binary at $BIN (cargo build --release --bin gridkeeper)" >&2
        exit 1
    fi
    mkdir -p "$BASE"
    local list
    list=$(ids | tr '\n' ',')
    [[ -f $BASE/certs/admin-1.pem ]] || "$BIN" certs --out "$BASE/certs" --nodes "${list%,}" >/dev/null
    local peers=""
    for i in $(ids); do peers+="$i=127.0.0.1:$((MESH_BASE + i)),"; done
    peers=${peers%,}
    for i in $(ids); do
        setsid nohup "$BIN" node --id "$i" --peers "$peers" --certs "$BASE/certs" --data-dir "$BASE/d$i" \
            --admin "$(admin "$i")" --zk-listen "$(zk "$i")" >>"$BASE/d$i.log" 2>&1 </dev/null &
        echo $! >"$BASE/d$i.pid"
        echo "gk$i: pid $(cat "$BASE/d$i.pid")"
    done
    sleep 1
    for i in $(ids); do
        if ! ours "$i" "$(cat "$BASE/d$i.pid")"; then
            echo "gk$i: process $(cat "$BASE/d$i.pid") is not running; see $BASE/d$i.log" >&2
            exit 1
        fi
    done
    # Up when every node reports the same leader and answers on its ZooKeeper port.
    local seen silent
    for _ in $(seq 1 60); do
        seen=$(for i in $(ids); do leader_of "$i"; echo; done | sort | uniq -c)
        silent=""
        for i in $(ids); do zk_ready "$i" || silent+=" $(zk "$i")"; done
        if [[ -z $silent && $(wc -l <<<"$seen") -eq 1 && $seen =~ ^\ *$NODES\ +([0-9]+)$ ]]; then
            echo "cluster up: leader ${BASH_REMATCH[1]}"
            return 0
        fi
        sleep 1
    done
    echo "cluster not up within 60 s (leaders seen: $seen)${silent:+; ZooKeeper port silent:$silent}" >&2
    exit 1
}

stop() {
    local pids=()
    # Every node that has a PID file, whatever PEERS_GK_NODES says now.
    for i in 1 2 3; do
        f=$BASE/d$i.pid
        [[ -f $f ]] || continue
        pid=$(cat "$f")
        if ours "$i" "$pid"; then
            kill "$pid"
            pids+=("$i:$pid")
        else
            echo "gk$i: pid $pid not running (or not ours)"
        fi
    done
    for ip in "${pids[@]}"; do
        i=${ip%%:*} pid=${ip#*:}
        # Wait until the process is gone (not merely exiting), up to 30 s.
        for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if ours "$i" "$pid"; then
            echo "gk$i: pid $pid ignored TERM for 30 s, sending KILL"
            kill -9 "$pid"
            for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        if kill -0 "$pid" 2>/dev/null; then
            echo "gk$i: pid $pid still present (exiting)"
        else
            echo "gk$i: pid $pid stopped"
        fi
    done
    rm -f "$BASE"/d{1,2,3}.pid
}

status() {
    for i in $(ids); do
        f=$BASE/d$i.pid
        if [[ -f $f ]] && ours "$i" "$(cat "$f")"; then
            echo "gk$i: pid $(cat "$f") leader $(leader_of "$i") zk $(zk "$i")"
        else
            echo "gk$i: not running"
        fi
    done
}

leader() {
    local id
    for i in $(ids); do
        [[ -f $BASE/d$i.pid ]] && ours "$i" "$(cat "$BASE/d$i.pid")" || continue
        id=$(leader_of "$i")
        if [[ -n $id && -f $BASE/d$id.pid ]] && ours "$id" "$(cat "$BASE/d$id.pid")"; then
            echo "$id $(cat "$BASE/d$id.pid")"
            return 0
        fi
    done
    echo "no leader" >&2
    exit 1
}

pid() {
    local f=$BASE/d${1:?usage: pid <node>}.pid
    if [[ -f $f ]] && ours "$1" "$(cat "$f")"; then
        cat "$f"
    else
        echo "gk$1: not running" >&2
        exit 1
    fi
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    leader) leader ;;
    pid) pid "${2:-}" ;;
    *) echo "usage: $0 start|stop|status|leader|pid <node>" >&2; exit 2 ;;
esac
