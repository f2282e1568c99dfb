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
#   scripts/cluster.sh start-node N    start node N again on its data; N=10 adds a 10th
#                                      node (127.0.0.20:7000): the placement moves to it
#
# State (pids, logs, data, keys) lives in $TESSERA_CLUSTER_DIR (/tmp/tessera-cluster).
# The binary: $TESSERA_BIN, else the debug build in $CARGO_TARGET_DIR, built if missing.
# Tunables: TESSERA_PARTITIONS (64), TESSERA_LEASE_SECS (3), TESSERA_LOG (info),
#   TESSERA_CLUSTER_NAME (local), TESSERA_TANSU (the broker binary).
#
# Files in the state directory:
#   cluster.env    (mode 600) shell assignments every later subcommand sources: BIN, ETCD,
#                  KAFKA, CLUSTER, the ports, SECRET, ACCESS_KEY, SECRET_KEY, LEASE_SECS, LOG
#   secret         (600) the cluster secret; credentials (600) the S3 access and secret keys
#   etcd/          etcd's data; nodeN/ node N's data directory
#   X.pid, X.log   for X in etcd, tansu, node1..9, gateway1..3 (logs are appended to)
#   nodeN.from     line count of nodeN.log before its last start (where to look for "ready")
# Processes run in their own sessions (setsid), so they outlive this script.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="${TESSERA_CLUSTER_DIR:-/tmp/tessera-cluster}"
NODES=9
GATEWAYS=3
CLUSTER="${TESSERA_CLUSTER_NAME:-local}"

die() { echo "cluster.sh: $*" >&2; exit 1; }
usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

tessera_bin() {
    if [ -n "${TESSERA_BIN:-}" ]; then
        [ -x "$TESSERA_BIN" ] || die "TESSERA_BIN=$TESSERA_BIN is not an executable"
        echo "$TESSERA_BIN"; return
    fi
    local target="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
    if [ ! -x "$target/debug/tessera" ]; then
        echo "cluster.sh: building tessera (cargo build -p tessera)" >&2
        (cd "$ROOT" && CARGO_TARGET_DIR="$target" cargo build -q -p tessera) >&2 || die "cargo build -p tessera failed"
    fi
    echo "$target/debug/tessera"
}

tansu_bin() {
    if [ -n "${TESSERA_TANSU:-}" ]; then echo "$TESSERA_TANSU"; return; fi
    if [ -x "$HOME/.cargo/bin/tansu" ]; then echo "$HOME/.cargo/bin/tansu"; return; fi
    command -v tansu || die "tansu not found: run scripts/install-deps.sh"
}

running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_line FILE FROM_LINE PATTERN SECONDS [PIDFILE]: a line matching PATTERN after
# line FROM_LINE; gives up early when the process of PIDFILE has exited.
wait_line() {
    local file=$1 from=$2 pattern=$3 secs=$4 pidfile=${5:-} i
    for ((i = 0; i < secs * 5; i++)); do
        if tail -n +"$((from + 1))" "$file" 2>/dev/null | grep -qx "$pattern"; then return 0; fi
        if [ -n "$pidfile" ] && ! running "$pidfile"; then
            tail -n +"$((from + 1))" "$file" 2>/dev/null | grep -qx "$pattern" && return 0
            echo "cluster.sh: the process of $pidfile exited" >&2
            break
        fi
        sleep 0.2
    done
    echo "--- $file" >&2; tail -n 20 "$file" >&2
    return 1
}

# Sets BIN ETCD KAFKA CLUSTER SECRET ACCESS_KEY SECRET_KEY LEASE_SECS LOG and the ports.
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
    echo "$from" >"$STATE/node$i.from"
    TESSERA_CLUSTER_SECRET="$SECRET" TESSERA_LOG="${TESSERA_LOG:-$LOG}" setsid "$BIN" node \
        --etcd "$ETCD" --cluster "$CLUSTER" --kafka "$KAFKA" --id "node$i" --data "$STATE/node$i" \
        --drives 1 --listen "127.0.0.$((10 + i)):7000" --cores 1 --no-pin \
        --lease-secs "$LEASE_SECS" --segment-mib 16 --io-memory $((4 << 20)) >>"$log" 2>&1 </dev/null &
    # setsid execs in place (a background job of a script is no process group leader),
    # so $! is the node itself.
    echo $! >"$STATE/node$i.pid"
    disown
}

wait_node() {
    wait_line "$STATE/node$1.log" "$(cat "$STATE/node$1.from")" ready 60 "$STATE/node$1.pid" ||
        die "node $1 did not start (log: $STATE/node$1.log)"
}

# shellcheck disable=SC2153
start_gateway() {
    local j=$1
    TESSERA_CLUSTER_SECRET="$SECRET" TESSERA_ACCESS_KEY="$ACCESS_KEY" TESSERA_SECRET_KEY="$SECRET_KEY" \
        TESSERA_LOG="${TESSERA_LOG:-$LOG}" setsid "$BIN" gateway --etcd "$ETCD" --cluster "$CLUSTER" \
        --kafka "$KAFKA" --listen "127.0.0.$((20 + j)):9000" --cores 1 --no-pin \
        >>"$STATE/gateway$j.log" 2>&1 </dev/null &
    echo $! >"$STATE/gateway$j.pid"
    disown
}

any_running() {
    local f
    for f in "$STATE"/*.pid; do
        if running "$f"; then return 0; fi
    done
    return 1
}

cmd_up() {
    if [ -f "$STATE/cluster.env" ]; then
        if any_running; then die "a cluster from $STATE is running already (scripts/cluster.sh down first)"; fi
        die "$STATE holds a stopped cluster's state (scripts/cluster.sh down removes it)"
    fi
    command -v etcd >/dev/null || die "etcd not found: run scripts/install-deps.sh"
    command -v curl >/dev/null || die "curl not found"
    command -v python3 >/dev/null || die "python3 not found"
    mkdir -p "$STATE"
    local bin tansu etcd_port peer_port kafka_port i
    bin=$(tessera_bin)
    tansu=$(tansu_bin)
    etcd_port=$(free_port)
    peer_port=$(free_port)
    while [ "$peer_port" = "$etcd_port" ]; do peer_port=$(free_port); done
    kafka_port=$(free_port)
    while [ "$kafka_port" = "$etcd_port" ] || [ "$kafka_port" = "$peer_port" ]; do kafka_port=$(free_port); done
    local secret access secret_key
    secret=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
    access="TS$(python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(18)))')"
    secret_key=$(python3 -c 'import secrets, string; print("".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(40)))')
    # All three hold secrets: owner-only.
    (
        umask 077
        printf '%s\n' "$secret" >"$STATE/secret"
        printf 'access_key = %s\nsecret_key = %s\n' "$access" "$secret_key" >"$STATE/credentials"
        cat >"$STATE/cluster.env" <<EOF
BIN='$bin'
ETCD='http://127.0.0.1:$etcd_port'
ETCD_PORT='$etcd_port'
ETCD_PEER_PORT='$peer_port'
KAFKA='127.0.0.1:$kafka_port'
KAFKA_PORT='$kafka_port'
CLUSTER='$CLUSTER'
SECRET='$secret'
ACCESS_KEY='$access'
SECRET_KEY='$secret_key'
LEASE_SECS='${TESSERA_LEASE_SECS:-3}'
LOG='${TESSERA_LOG:-info}'
EOF
    )
    load
    # From here on a failure leaves processes behind: say how to clean up.
    trap 'echo "cluster.sh: up failed; logs in $STATE; scripts/cluster.sh down stops what started" >&2' EXIT

    setsid etcd --name n1 --data-dir "$STATE/etcd" \
        --listen-client-urls "$ETCD" --advertise-client-urls "$ETCD" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "n1=http://127.0.0.1:$peer_port" >"$STATE/etcd.log" 2>&1 </dev/null &
    echo $! >"$STATE/etcd.pid"
    disown
    # exec: $! is tansu itself (setsid does not fork outside a group leader).
    (cd "$STATE" && exec setsid "$tansu" broker --listener-url "tcp://$KAFKA" --advertised-listener-url "tcp://$KAFKA" \
        --storage-engine memory://tansu/ >"$STATE/tansu.log" 2>&1 </dev/null) &
    echo $! >"$STATE/tansu.pid"
    disown
    for ((i = 0; i < 150; i++)); do
        curl -sf "$ETCD/health" >/dev/null 2>&1 && break
        running "$STATE/etcd.pid" || break
        sleep 0.2
    done
    curl -sf "$ETCD/health" >/dev/null 2>&1 || { tail -n 20 "$STATE/etcd.log" >&2; die "etcd did not start"; }
    for ((i = 0; i < 150; i++)); do
        (echo >"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null && break
        running "$STATE/tansu.pid" || break
        sleep 0.2
    done
    (echo >"/dev/tcp/127.0.0.1/$kafka_port") 2>/dev/null || { tail -n 20 "$STATE/tansu.log" >&2; die "tansu did not start"; }

    "$BIN" cluster init --etcd "$ETCD" --cluster "$CLUSTER" --code 6+3 --partitions "${TESSERA_PARTITIONS:-64}"
    for ((i = 1; i <= NODES; i++)); do start_node "$i"; done
    for ((i = 1; i <= NODES; i++)); do wait_node "$i"; done
    for ((i = 1; i <= GATEWAYS; i++)); do start_gateway "$i"; done
    for ((i = 1; i <= GATEWAYS; i++)); do
        wait_line "$STATE/gateway$i.log" 0 ready 60 "$STATE/gateway$i.pid" ||
            die "gateway $i did not start (log: $STATE/gateway$i.log)"
    done
    trap - EXIT
    echo "cluster up: etcd $ETCD, Kafka (tansu) $KAFKA, cluster '$CLUSTER', state in $STATE"
    for ((i = 1; i <= NODES; i++)); do echo "  node$i     127.0.0.$((10 + i)):7000"; done
    for ((i = 1; i <= GATEWAYS; i++)); do echo "  gateway$i  http://127.0.0.$((20 + i)):9000"; done
    echo
    cmd_env
}

# stop_pids PIDFILE...: SIGTERM to all at once, up to 10 s for them to exit, then
# SIGKILL; removes the pid files.
stop_pids() {
    local f i left
    for f in "$@"; do
        if running "$f"; then kill -TERM "$(cat "$f")" 2>/dev/null || true; fi
    done
    for ((i = 0; i < 50; i++)); do
        left=0
        for f in "$@"; do if running "$f"; then left=1; fi; done
        ((left)) || break
        sleep 0.2
    done
    for f in "$@"; do
        if running "$f"; then kill -KILL "$(cat "$f")" 2>/dev/null || true; fi
    done
    for ((i = 0; i < 25; i++)); do
        left=0
        for f in "$@"; do if running "$f"; then left=1; fi; done
        ((left)) || break
        sleep 0.2
    done
    rm -f "$@"
}

cmd_down() {
    [ -d "$STATE" ] || { echo "nothing to stop"; return 0; }
    local f gateways=() nodes=() infra=()
    for f in "$STATE"/gateway*.pid; do [ -e "$f" ] && gateways+=("$f"); done
    for f in "$STATE"/node*.pid; do [ -e "$f" ] && nodes+=("$f"); done
    for f in "$STATE/tansu.pid" "$STATE/etcd.pid"; do [ -e "$f" ] && infra+=("$f"); done
    # Gateways first, then nodes, then the services they talk to.
    if ((${#gateways[@]})); then stop_pids "${gateways[@]}"; fi
    if ((${#nodes[@]})); then stop_pids "${nodes[@]}"; fi
    if ((${#infra[@]})); then stop_pids "${infra[@]}"; fi
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

# proc_line NAME PIDFILE: "NAME  running (pid P)" or "NAME  stopped".
proc_line() {
    if running "$2"; then
        printf '%-9s running (pid %s)\n' "$1" "$(cat "$2")"
    else
        printf '%-9s stopped\n' "$1"
    fi
}

cmd_status() {
    load
    "$BIN" cluster status --etcd "$ETCD" --cluster "$CLUSTER" || true
    local i
    for ((i = 1; i <= NODES; i++)); do proc_line "node$i" "$STATE/node$i.pid"; done
    if [ -d "$STATE/node10" ]; then proc_line node10 "$STATE/node10.pid"; fi
    for ((i = 1; i <= GATEWAYS; i++)); do proc_line "gateway$i" "$STATE/gateway$i.pid"; done
    proc_line tansu "$STATE/tansu.pid"
    proc_line etcd "$STATE/etcd.pid"
}

node_arg() {
    [[ "${1:-}" =~ ^([1-9]|10)$ ]] || die "node number 1..$NODES (or 10, a node added) expected, not '${1:-}'"
}

cmd_kill_node() {
    local n=$1 pid i
    running "$STATE/node$n.pid" || { rm -f "$STATE/node$n.pid"; die "node $n is not running"; }
    pid=$(cat "$STATE/node$n.pid")
    kill -KILL "$pid"
    # Gone for sure before returning, so that start-node can bind its address again.
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$STATE/node$n.pid"
    echo "node $n killed (SIGKILL)"
}

case "${1:-}" in
    up) [ $# -eq 1 ] || usage; cmd_up ;;
    down) [ $# -eq 1 ] || usage; cmd_down ;;
    status) [ $# -eq 1 ] || usage; cmd_status ;;
    env) [ $# -eq 1 ] || usage; cmd_env ;;
    kill-node)
        [ $# -eq 2 ] || usage
        node_arg "$2"; load
        cmd_kill_node "$2" ;;
    start-node)
        [ $# -eq 2 ] || usage
        node_arg "$2"; load
        if running "$STATE/node$2.pid"; then die "node $2 is running"; fi
        start_node "$2"; wait_node "$2"
        echo "node $2 started" ;;
    *) usage ;;
esac
