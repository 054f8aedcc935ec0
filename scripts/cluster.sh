#!/usr/bin/env bash
# A local Volley cluster of real processes, all on free ports of 127.0.0.1:
# NODES `volley serve --engine redis` nodes, two Redis shards (shard 0 a
# single redis-server; shard 1 a master, a replica and one Sentinel) and
# HAProxy in front (tests/lib/haproxy.cfg: TCP mode, PROXY protocol v2,
# health checks). Everything is started here and stopped by PID.
#
#   scripts/cluster.sh                 # run until Ctrl-C, printing the URLs
#   scripts/cluster.sh start DIR       # start in the background; DIR/cluster.env says where
#   scripts/cluster.sh stop DIR        # stop everything started in DIR
#   scripts/cluster.sh kill-node DIR I     # SIGKILL node I (0-based)
#   scripts/cluster.sh start-node DIR I    # start node I again on its port
#   scripts/cluster.sh restart-redis DIR   # SIGKILL shard 0's Redis, start it again (same port and dir)
#   scripts/cluster.sh failover DIR        # force a Sentinel failover of shard 1; waits for the new master
#
# Environment:
#   NODES            nodes (default 3)
#   VOLLEY_BIN       the volley binary (default target/release/volley, built if missing)
#   NODE_CONFIG      a TOML file for every node (default: the demo, on every node)
#   SHARD0_AOF       1 (default): shard 0 keeps an append-only file, fsync always,
#                    so a restart loses nothing; 0: no persistence at all
#   API_KEY, ADMIN_KEY, TOKEN_SECRET   shared by the nodes (default: random)
#   CLUSTER_ENGINE   redis (default); `memory` starts the same processes with
#                    independent memory engines (only to check this script)
#   SHARDS           2 (default) or 1 (shard 0 alone; no failover then)
#   SHARD1_SENTINEL  1 (default): shard 1 is a master, a replica and a Sentinel;
#                    0: a single redis-server like shard 0 (bench/cluster.sh)
#   REDIS_CPUS, NODE_CPUS   CPU lists to pin the Redis servers and the nodes to
#                    with taskset (default: not pinned)
#
# The tests (the cluster chaos test, the browser test) drive it with the
# subcommands; docs/cluster.md explains the setup.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES="${NODES:-3}"
CLUSTER_ENGINE="${CLUSTER_ENGINE:-redis}"
SHARD0_AOF="${SHARD0_AOF:-1}"
SHARDS="${SHARDS:-2}"
SHARD1_SENTINEL="${SHARD1_SENTINEL:-1}"

die() { echo "cluster.sh: $*" >&2; exit 1; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

random_hex() { od -An -N16 -tx1 /dev/urandom | tr -d ' \n'; }

# wait_for SECS DESCRIPTION CMD...: run CMD every 50 ms until it succeeds.
wait_for() {
    local secs="$1" what="$2"
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "$what not ready within ${secs} s"
        sleep 0.05
    done
}

http_ok() { curl -fsS -m 2 -o /dev/null "$1"; }

redis_up() { [ "$(redis-cli -p "$1" ping 2>/dev/null)" = PONG ]; }

# ---- the pieces ---------------------------------------------------------------

# pin CPUS: the command prefix that pins to CPUS (taskset execs the command,
# so `$!` stays the server's PID), or nothing.
pin() {
    [ -z "$1" ] || printf '%s\n' taskset -c "$1"
}

# start_redis NAME PORT AOF(0|1) [redis-server args...]
start_redis() {
    local name="$1" port="$2" aof="$3"
    shift 3
    mkdir -p "$DIR/$name"
    local persistence=(--appendonly no) pinned
    mapfile -t pinned < <(pin "${REDIS_CPUS:-}")
    [ "$aof" = 1 ] && persistence=(--appendonly yes --appendfsync always)
    "${pinned[@]}" redis-server --port "$port" --bind 127.0.0.1 --dir "$DIR/$name" --save "" \
        "${persistence[@]}" --logfile "$DIR/$name/redis.log" "$@" </dev/null >/dev/null 2>&1 &
    echo $! >"$DIR/$name.pid"
    wait_for 10 "redis $name on port $port" redis_up "$port"
}

start_sentinel() {
    mkdir -p "$DIR/sentinel"
    # Sentinel rewrites its file: a copy of its own in DIR.
    cat >"$DIR/sentinel/sentinel.conf" <<EOF
port $SENTINEL_PORT
bind 127.0.0.1
dir $DIR/sentinel
logfile $DIR/sentinel/sentinel.log
sentinel monitor shard1 127.0.0.1 $SHARD1_MASTER_PORT 1
sentinel down-after-milliseconds shard1 1000
sentinel failover-timeout shard1 5000
sentinel parallel-syncs shard1 1
EOF
    local pinned
    mapfile -t pinned < <(pin "${REDIS_CPUS:-}")
    "${pinned[@]}" redis-sentinel "$DIR/sentinel/sentinel.conf" </dev/null >/dev/null 2>&1 &
    echo $! >"$DIR/sentinel.pid"
    wait_for 10 "sentinel on port $SENTINEL_PORT" redis_up "$SENTINEL_PORT"
}

replica_synced() {
    redis-cli -p "$SHARD1_REPLICA_PORT" info replication | grep -q 'master_link_status:up'
}

sentinel_knows_replica() {
    redis-cli -p "$SENTINEL_PORT" sentinel replicas shard1 | grep -q "$SHARD1_REPLICA_PORT"
}

node_args() { # I
    local i="$1" port_var="NODE$1_PORT"
    local args=(serve --listen "127.0.0.1:${!port_var}" --api-key "$API_KEY" --admin-key "$ADMIN_KEY"
        --token-secret "$TOKEN_SECRET" --trusted-proxy 127.0.0.1/32)
    [ -n "${NODE_CONFIG:-}" ] && args+=(--config "$NODE_CONFIG")
    if [ "$CLUSTER_ENGINE" = redis ]; then
        args+=(--engine redis --redis-url "redis://127.0.0.1:$SHARD0_PORT")
        if [ "$SHARDS" = 2 ] && [ "$SHARD1_SENTINEL" = 1 ]; then
            args+=(--redis-url "redis+sentinel://127.0.0.1:$SENTINEL_PORT/shard1")
        elif [ "$SHARDS" = 2 ]; then
            args+=(--redis-url "redis://127.0.0.1:$SHARD1_MASTER_PORT")
        fi
    fi
    printf '%s\n' "${args[@]}"
}

start_node() { # I
    local i="$1" port_var="NODE$1_PORT"
    local args pinned
    mapfile -t args < <(node_args "$i")
    mapfile -t pinned < <(pin "${NODE_CPUS:-}")
    "${pinned[@]}" "$VOLLEY_BIN" "${args[@]}" </dev/null >>"$DIR/node$i.log" 2>&1 &
    echo $! >"$DIR/node$i.pid"
    wait_for 30 "node $i on port ${!port_var}" http_ok "http://127.0.0.1:${!port_var}/health/ready"
}

start_haproxy() {
    local servers="" i port_var
    for ((i = 0; i < NODES; i++)); do
        port_var="NODE${i}_PORT"
        servers+="    server node$i 127.0.0.1:${!port_var}\n"
    done
    sed -e "s/@LISTEN@/127.0.0.1:$HAPROXY_PORT/" -e "s/@SERVERS@/$servers/" \
        "$ROOT/tests/lib/haproxy.cfg" >"$DIR/haproxy.cfg"
    haproxy -db -f "$DIR/haproxy.cfg" </dev/null >"$DIR/haproxy.log" 2>&1 &
    echo $! >"$DIR/haproxy.pid"
    wait_for 10 "haproxy on port $HAPROXY_PORT" http_ok "http://127.0.0.1:$HAPROXY_PORT/health/live"
}

stop_pid() { # NAME: SIGKILL the process of DIR/NAME.pid and reap it
    local f="$DIR/$1.pid"
    [ -f "$f" ] || return 0
    local pid
    pid="$(cat "$f")"
    kill -KILL "$pid" 2>/dev/null || true
    # Not our child when called from another invocation: wait until it is gone.
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.02; done
    rm -f "$f"
}

load() { # DIR
    DIR="$(cd "$1" && pwd)"
    [ -f "$DIR/cluster.env" ] || die "$DIR/cluster.env: no cluster started there"
    # shellcheck disable=SC1091
    source "$DIR/cluster.env"
}

# ---- the commands ---------------------------------------------------------------

start() { # DIR
    mkdir -p "$1"
    DIR="$(cd "$1" && pwd)"
    VOLLEY_BIN="${VOLLEY_BIN:-$ROOT/target/release/volley}"
    if [ ! -x "$VOLLEY_BIN" ]; then
        echo "building $VOLLEY_BIN" >&2
        (cd "$ROOT" && cargo build --release -p volley-cli >&2)
    fi
    for tool in haproxy curl python3; do
        command -v "$tool" >/dev/null || die "$tool is not installed (see .ci/run)"
    done
    if [ "$CLUSTER_ENGINE" = redis ]; then
        for tool in redis-server redis-sentinel redis-cli; do
            command -v "$tool" >/dev/null || die "$tool is not installed (see .ci/run)"
        done
        "$VOLLEY_BIN" serve --help | grep -q -- '--engine' ||
            die "$VOLLEY_BIN has no --engine (the Redis engine); CLUSTER_ENGINE=memory runs separate nodes"
    fi
    case "$SHARDS/$SHARD1_SENTINEL" in
        1/* | 2/0 | 2/1) ;;
        *) die "SHARDS must be 1 or 2 and SHARD1_SENTINEL 0 or 1" ;;
    esac
    API_KEY="${API_KEY:-$(random_hex)}"
    ADMIN_KEY="${ADMIN_KEY:-$(random_hex)}"
    TOKEN_SECRET="${TOKEN_SECRET:-$(random_hex)}"
    HAPROXY_PORT="$(free_port)"
    {
        echo "NODES=$NODES"
        echo "CLUSTER_ENGINE=$CLUSTER_ENGINE"
        echo "VOLLEY_BIN=$VOLLEY_BIN"
        echo "NODE_CONFIG=${NODE_CONFIG:-}"
        echo "SHARD0_AOF=$SHARD0_AOF"
        echo "SHARDS=$SHARDS"
        echo "SHARD1_SENTINEL=$SHARD1_SENTINEL"
        echo "REDIS_CPUS=${REDIS_CPUS:-}"
        echo "NODE_CPUS=${NODE_CPUS:-}"
        echo "API_KEY=$API_KEY"
        echo "ADMIN_KEY=$ADMIN_KEY"
        echo "TOKEN_SECRET=$TOKEN_SECRET"
        echo "HAPROXY_PORT=$HAPROXY_PORT"
        echo "CLUSTER_URL=http://127.0.0.1:$HAPROXY_PORT"
        echo "CLUSTER_WS=ws://127.0.0.1:$HAPROXY_PORT/connection/websocket"
    } >"$DIR/cluster.env"
    if [ "$CLUSTER_ENGINE" = redis ]; then
        SHARD0_PORT="$(free_port)"
        SHARD1_MASTER_PORT="$(free_port)"
        SHARD1_REPLICA_PORT="$(free_port)"
        SENTINEL_PORT="$(free_port)"
        {
            echo "SHARD0_PORT=$SHARD0_PORT"
            echo "SHARD1_MASTER_PORT=$SHARD1_MASTER_PORT"
            echo "SHARD1_REPLICA_PORT=$SHARD1_REPLICA_PORT"
            echo "SENTINEL_PORT=$SENTINEL_PORT"
        } >>"$DIR/cluster.env"
        start_redis redis0 "$SHARD0_PORT" "$SHARD0_AOF"
        if [ "$SHARDS" = 2 ] && [ "$SHARD1_SENTINEL" = 1 ]; then
            start_redis redis1a "$SHARD1_MASTER_PORT" 1
            start_redis redis1b "$SHARD1_REPLICA_PORT" 1 --replicaof 127.0.0.1 "$SHARD1_MASTER_PORT"
            wait_for 10 "the replica of shard 1" replica_synced
            start_sentinel
            wait_for 10 "the sentinel's view of the replica" sentinel_knows_replica
        elif [ "$SHARDS" = 2 ]; then
            start_redis redis1a "$SHARD1_MASTER_PORT" "$SHARD0_AOF"
        fi
    fi
    local i port
    for ((i = 0; i < NODES; i++)); do
        port="$(free_port)"
        echo "NODE${i}_PORT=$port" >>"$DIR/cluster.env"
        eval "NODE${i}_PORT=$port"
    done
    for ((i = 0; i < NODES; i++)); do
        start_node "$i"
    done
    start_haproxy
    cat "$DIR/cluster.env"
}

stop() { # DIR (after load)
    local i
    stop_pid haproxy
    for ((i = 0; i < NODES; i++)); do stop_pid "node$i"; done
    stop_pid sentinel
    stop_pid redis1b
    stop_pid redis1a
    stop_pid redis0
}

failover() {
    local before after
    before="$(redis-cli -p "$SENTINEL_PORT" sentinel get-master-addr-by-name shard1 | tail -1)"
    redis-cli -p "$SENTINEL_PORT" sentinel failover shard1 >/dev/null
    master_changed() {
        after="$(redis-cli -p "$SENTINEL_PORT" sentinel get-master-addr-by-name shard1 | tail -1)"
        [ "$after" != "$before" ]
    }
    wait_for 20 "the failover of shard 1" master_changed
    echo "shard1 master: port $before -> $after"
}

cmd="${1:-run}"
case "$cmd" in
    run)
        DIR="$(mktemp -d "${TMPDIR:-/tmp}/volley-cluster.XXXXXX")"
        trap 'load "$DIR"; stop; rm -rf "$DIR"' EXIT
        trap 'exit 0' INT TERM
        start "$DIR" >/dev/null
        load "$DIR"
        echo "Volley cluster: $NODES nodes ($CLUSTER_ENGINE engine) behind HAProxy"
        echo "  open:      $CLUSTER_URL/"
        echo "  WebSocket: $CLUSTER_WS"
        for ((i = 0; i < NODES; i++)); do
            port_var="NODE${i}_PORT"
            echo "  node $i:    http://127.0.0.1:${!port_var}/admin#key=$ADMIN_KEY"
        done
        echo "  HTTP API:  $CLUSTER_URL/api/<method>  (Authorization: apikey $API_KEY)"
        echo "  logs:      $DIR"
        echo "Ctrl-C stops everything."
        # `wait` (unlike a foreground sleep) returns at once on a trapped signal.
        while true; do
            sleep 3600 &
            wait $! || true
        done
        ;;
    start)
        [ $# -eq 2 ] || die "usage: $0 start DIR"
        start "$2"
        ;;
    stop)
        [ $# -eq 2 ] || die "usage: $0 stop DIR"
        load "$2"
        stop
        ;;
    kill-node | start-node)
        [ $# -eq 3 ] || die "usage: $0 $cmd DIR I"
        load "$2"
        [ "$3" -ge 0 ] && [ "$3" -lt "$NODES" ] || die "no node $3"
        if [ "$cmd" = kill-node ]; then stop_pid "node$3"; else start_node "$3"; fi
        ;;
    restart-redis)
        load "$2"
        stop_pid redis0
        start_redis redis0 "$SHARD0_PORT" "$SHARD0_AOF"
        ;;
    failover)
        load "$2"
        failover
        ;;
    *)
        die "unknown command $cmd (run, start, stop, kill-node, start-node, restart-redis, failover)"
        ;;
esac
