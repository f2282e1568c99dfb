#!/usr/bin/env bash
# A local Tessera cluster on one machine, for trying cluster mode and pointing any
# S3 client at it:
#   one etcd (Debian etcd-server), one Kafka-compatible broker (tansu, in-memory),
#   9 storage nodes on 127.0.0.11..19:7000, 3 S3 gateways on 127.0.0.21..23:9000,
#   RS 6+3 over 64 partitions.
#
#   scripts/cluster.sh up              start everything (refuses if already up)
#   scripts/cluster.sh down            stop everything it started, remove its state
#   scripts/cluster.sh status          `tessera cluster status` and which processes run
#   scripts/cluster.sh env             export lines: TESSERA_GATEWAYS, AWS_* keys, ...
#   scripts/cluster.sh kill-node N     SIGKILL node N (1..9)
#   scripts/cluster.sh start-node N    start node N again on its data
#
# State (pids, logs, data, keys) lives in $TESSERA_CLUSTER_DIR (/tmp/tessera-cluster).
# The binary: $TESSERA_BIN, else the debug build in $CARGO_TARGET_DIR, built if missing.
# Tunables: TESSERA_PARTITIONS (64), TESSERA_LEASE_SECS (3), TESSERA_LOG (info).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${TESSERA_CLUSTER_DIR:-/tmp/tessera-cluster}"
NODES=9
GATEWAYS=3
CLUSTER=local

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tessera_bin() {
    if [ -n "${TESSERA_BIN:-}" ]; then echo "$TESSERA_BIN"; return; fi
    local target="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
    if [ ! -x "$target/debug/tessera" ]; then
        (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build -q -p tessera) >&2
    fi
    echo "$target/debug/tessera"
}

tansu_bin() {
    if [ -n "${TESSERA_TANSU:-}" ]; then echo "$TESSERA_TANSU"; return; fi
    if [ -x "$HOME/.cargo/bin/tansu" ]; then echo "$HOME/.cargo/bin/tansu"; return; fi
    command -v tansu || die "tansu not found: run scripts/install-deps.sh"
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_line FILE FROM_LINE PATTERN SECONDS: a line matching PATTERN after line FROM_LINE.
wait_line() {
    local file=$1 from=$2 pattern=$3 secs=$4 i
    for ((i = 0; i < secs * 5; i++)); do
        if tail -n +"$((from + 1))" "$file" 2>/dev/null | grep -qx "$pattern"; then return 0; fi
        sleep 0.2
    done
    echo "--- $file" >&2; tail -n 20 "$file" >&2
    return 1
}

# Sets BIN ETCD KAFKA CLUSTER SECRET ACCESS_KEY SECRET_KEY LEASE_SECS.
# shellcheck disable=SC2153
load() {
    [ -f "$STATE/cluster.env" ] || die "no cluster in $STATE (run: scripts/cluster.sh up)"
    # shellcheck disable=SC1091
    source "$STATE/cluster.env"
}

# shellcheck disable=SC2153
start_node() {
    local i=$1 log="$STATE/node$1.log" from
    from=0
    if [ -f "$log" ]; then from=$(wc -l <"$log"); fi
    TESSERA_CLUSTER_SECRET="$SECRET" TESSERA_LOG="${TESSERA_LOG:-info}" setsid "$BIN" node \
        --etcd "$ETCD" --cluster "$CLUSTER" --kafka "$KAFKA" --id "node$i" --data "$STATE/node$i" \
        --drives 1 --listen "127.0.0.$((10 + i)):7000" --cores 1 --no-pin \
        --lease-secs "$LEASE_SECS" --segment-mib 16 --io-memory $((4 << 20)) >>"$log" 2>&1 </dev/null &
    echo $! >"$STATE/node$i.pid"
    echo "$from" >"$STATE/node$i.from"
}

wait_node() {
    wait_line "$STATE/node$1.log" "$(cat "$STATE/node$1.from")" ready 60 || die "node $1 did not start"
}

# shellcheck disable=SC2153
start_gateway() {
    local j=$1
    TESSERA_CLUSTER_SECRET="$SECRET" TESSERA_ACCESS_KEY="$ACCESS_KEY" TESSERA_SECRET_KEY="$SECRET_KEY" \
        TESSERA_LOG="${TESSERA_LOG:-info}" setsid "$BIN" gateway --etcd "$ETCD" --cluster "$CLUSTER" \
        --kafka "$KAFKA" --listen "127.0.0.$((20 + j)):9000" --cores 1 --no-pin \
        >>"$STATE/gateway$j.log" 2>&1 </dev/null &
    echo $! >"$STATE/gateway$j.pid"
}

cmd_up() {
    if [ -f "$STATE/cluster.env" ]; then
        die "a cluster from $STATE is up already (scripts/cluster.sh down first)"
    fi
    command -v etcd >/dev/null || die "etcd not found: run scripts/install-deps.sh"
    mkdir -p "$STATE"
    local bin tansu etcd_port peer_port kafka_port i
    bin=$(tessera_bin)
    tansu=$(tansu_bin)
    etcd_port=$(free_port); peer_port=$(free_port); kafka_port=$(free_port)
    local secret access secret_key
    secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    access="TS$(python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(18)))')"
    secret_key=$(python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40)))')
    (umask 077; printf '%s\n' "$secret" >"$STATE/secret"
     printf 'access_key = %s\nsecret_key = %s\n' "$access" "$secret_key" >"$STATE/credentials")
    cat >"$STATE/cluster.env" <<EOF
BIN='$bin'
ETCD='http://127.0.0.1:$etcd_port'
KAFKA='127.0.0.1:$kafka_port'
CLUSTER='$CLUSTER'
SECRET='$secret'
ACCESS_KEY='$access'
SECRET_KEY='$secret_key'
LEASE_SECS='${TESSERA_LEASE_SECS:-3}'
EOF
    load

    setsid etcd --name n1 --data-dir "$STATE/etcd" \
        --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "n1=http://127.0.0.1:$peer_port" >"$STATE/etcd.log" 2>&1 </dev/null &
    echo $! >"$STATE/etcd.pid"
    # exec: $! is tansu itself (setsid does not fork outside a group leader).
    (cd "$STATE" && exec setsid "$tansu" broker --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
        --storage-engine memory://tansu/ >"$STATE/tansu.log" 2>&1 </dev/null) &
    echo $! >"$STATE/tansu.pid"
    for ((i = 0; i < 150; i++)); do curl -sf "$ETCD/health" >/dev/null 2>&1 && break; sleep 0.2; done
    curl -sf "$ETCD/health" >/dev/null || { tail -n 20 "$STATE/etcd.log" >&2; die "etcd did not start"; }
    for ((i = 0; i < 150; i++)); do (echo >"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && break; sleep 0.2; done
    (echo >"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null || { tail -n 20 "$STATE/tansu.log" >&2; die "tansu did not start"; }

    "$BIN" cluster init --etcd "$ETCD" --cluster "$CLUSTER" --code 6+3 --partitions "${TESSERA_PARTITIONS:-64}"
    for ((i = 1; i <= NODES; i++)); do start_node "$i"; done
    for ((i = 1; i <= NODES; i++)); do wait_node "$i"; done
    for ((i = 1; i <= GATEWAYS; i++)); do start_gateway "$i"; done
    for ((i = 1; i <= GATEWAYS; i++)); do
        wait_line "$STATE/gateway$i.log" 0 ready 60 || die "gateway $i did not start"
    done
    echo "cluster up: etcd $ETCD, Kafka (tansu) $KAFKA, state in $STATE"
    for ((i = 1; i <= NODES; i++)); do echo "  node$i     127.0.0.$((10 + i)):7000"; done
    for ((i = 1; i <= GATEWAYS; i++)); do echo "  gateway$i  http://127.0.0.$((20 + i)):9000"; done
    echo
    cmd_env
}

stop_pid() {
    local f=$1 i
    running "$f" || { rm -f "$f"; return 0; }
    kill -TERM "$(cat "$f")" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do running "$f" || break; sleep 0.2; done
    if running "$f"; then kill -KILL "$(cat "$f")" 2>/dev/null || true; fi
    rm -f "$f"
}

cmd_down() {
    [ -d "$STATE" ] || { echo "nothing to stop"; return 0; }
    local f
    for f in "$STATE"/gateway*.pid "$STATE"/node*.pid "$STATE/tansu.pid" "$STATE/etcd.pid"; do
        [ -e "$f" ] && stop_pid "$f"
    done
    rm -rf "$STATE"
    echo "cluster down"
}

cmd_env() {
    load
    local urls="" j
    for ((j = 1; j <= GATEWAYS; j++)); do urls+="${urls:+,}http://127.0.0.$((20 + j)):9000"; done
    echo "export TESSERA_GATEWAYS=$urls"
    echo "export AWS_ACCESS_KEY_ID=$ACCESS_KEY"
    echo "export AWS_SECRET_ACCESS_KEY=$SECRET_KEY"
    echo "export AWS_DEFAULT_REGION=us-east-1"
    echo "export AWS_ENDPOINT_URL=http://127.0.0.21:9000"
    echo "export TESSERA_ETCD=$ETCD"
    echo "export TESSERA_KAFKA=$KAFKA"
}

cmd_status() {
    load
    "$BIN" cluster status --etcd "$ETCD" --cluster "$CLUSTER" || true
    local i
    for ((i = 1; i <= NODES; i++)); do
        if running "$STATE/node$i.pid"; then echo "node$i     running (pid $(cat "$STATE/node$i.pid"))"; else echo "node$i     stopped"; fi
    done
    for ((i = 1; i <= GATEWAYS; i++)); do
        if running "$STATE/gateway$i.pid"; then echo "gateway$i  running"; else echo "gateway$i  stopped"; fi
    done
}

node_arg() {
    [[ "${1:-}" =~ ^[1-9]$ ]] || die "node number 1..$NODES expected, not '${1:-}'"
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    env) cmd_env ;;
    kill-node)
        node_arg "${2:-}"; load
        running "$STATE/node$2.pid" || die "node $2 is not running"
        kill -KILL "$(cat "$STATE/node$2.pid")"; rm -f "$STATE/node$2.pid"
        echo "node $2 killed (SIGKILL)" ;;
    start-node)
        node_arg "${2:-}"; load
        running "$STATE/node$2.pid" && die "node $2 is running"
        start_node "$2"; wait_node "$2"
        echo "node $2 started" ;;
    *) usage ;;
esac
