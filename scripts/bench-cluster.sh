#!/usr/bin/env bash
# Cluster mode against the embedded server, on this machine, in one run, with the
# same client: tessera-bench through one gateway of a local cluster
# (scripts/cluster.sh: 9 nodes, 3 gateways, RS 6+3, all on this machine) and
# against `tessera server` (RS 4+2 over 6 drive directories), interleaved A B A B.
# Prints each figure and the ratio cluster/embedded.
#   ROUNDS (2), DURATION (10s), WARMUP (2s), OUT (/tmp/tessera-bench-cluster)
# On one 2-core machine the cluster's 12 processes and the client share the cores,
# so the ratio is a floor: it measures the cost of the extra hops (gateway → nodes,
# Kafka commit, quorum waits), not what a cluster of machines would serve.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
rounds="${ROUNDS:-2}" duration="${DURATION:-10s}" warmup="${WARMUP:-2s}"
out="${OUT:-/tmp/tessera-bench-cluster}"
mkdir -p "$out"
cargo build --release -p tessera -p tessera-tools --locked -q
bin="$CARGO_TARGET_DIR/release/tessera"
bench="$CARGO_TARGET_DIR/release/tessera-bench"
work=$(mktemp -d)
export TESSERA_CLUSTER_DIR="$work/cluster"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    scripts/cluster.sh down >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

TESSERA_BIN="$bin" TESSERA_LOG=warn scripts/cluster.sh up >"$out/cluster-up.log"
eval "$(scripts/cluster.sh env)"
cluster_ep="${TESSERA_GATEWAYS%%,*}"
cluster_keys=(--access-key "$AWS_ACCESS_KEY_ID" --secret-key "$AWS_SECRET_ACCESS_KEY")
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TESSERA_ACCESS_KEY=TSBENCHEMBEDDED01 TESSERA_SECRET_KEY=bench-embedded-secret-key-01 TESSERA_LOG=warn \
    "$bin" server --data "$work/embedded" --address "127.0.0.1:$port" --cache-mib 0 >"$out/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -qx ready "$out/server.log" && break; sleep 0.2; done
grep -qx ready "$out/server.log" || { cat "$out/server.log"; exit 1; }
embedded_ep="http://127.0.0.1:$port"
embedded_keys=(--access-key TSBENCHEMBEDDED01 --secret-key bench-embedded-secret-key-01)

field() { tr ' ' '\n' <<<"$1" | sed -n "s/^$2=//p"; }
run() { # run LABEL ENDPOINT KEYS... -- ARGS...
    local label=$1 ep=$2 r
    shift 2
    "$bench" --endpoint "$ep" "$@" --duration "$duration" --warmup "$warmup" --label "$label" \
        --json "$out/$label.json" --quiet >"$out/$label.txt" 2>&1 || true
    r=$(grep '^RESULT ' "$out/$label.txt" | tail -n 1)
    [ -n "$r" ] || { cat "$out/$label.txt" >&2; exit 1; }
    echo "$r"
}

declare -A sums
# GET first: its --prepare creates the bucket the PUTs go to.
workloads=(
    "get16|-w get -s 16MiB -n 8 -c 4 --prepare|mb_per_s"
    "put16|-w put -s 16MiB -n 32 -c 4|mb_per_s"
    "get4k|-w get -s 4KiB -n 100 -c 16 --prepare|ops_per_s"
)
for ((round = 1; round <= rounds; round++)); do
    for w in "${workloads[@]}"; do
        IFS='|' read -r name args metric <<<"$w"
        # shellcheck disable=SC2086
        for side in embedded cluster; do
            if [ "$side" = embedded ]; then ep=$embedded_ep keys=("${embedded_keys[@]}"); else ep=$cluster_ep keys=("${cluster_keys[@]}"); fi
            r=$(run "$name-$side-$round" "$ep" "${keys[@]}" --bucket bench --prefix "$name-" $args)
            v=$(field "$r" "$metric")
            e=$(field "$r" errors)
            printf '%-8s round %d %-9s %12s %s (errors %s)\n' "$name" "$round" "$side" "$v" "$metric" "$e"
            sums[$name-$side]=$(python3 -c "print(${sums[$name-$side]:-0} + $v)")
        done
    done
done
echo
printf '%-8s %14s %14s %8s\n' workload embedded cluster ratio
for w in "${workloads[@]}"; do
    IFS='|' read -r name _ metric <<<"$w"
    python3 -c "e=${sums[$name-embedded]}/$rounds; c=${sums[$name-cluster]}/$rounds; print(f'{\"$name\":8} {e:14.1f} {c:14.1f} {c/e:8.3f}  ($metric)')"
done
