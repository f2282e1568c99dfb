#!/usr/bin/env bash
# Decides where the S3 gateway role runs: on every core (SO_REUSEPORT, the default)
# or on one dedicated core (--gateway-cores 1). Starts a release `tessera server`,
# stores a 4 KiB and a 64 MiB object, and measures GETs of presigned URLs with wrk,
# interleaving the two configurations (A B A B) so machine noise hits both alike.
#
#   scripts/bench-gateway.sh            # ROUNDS=2 DURATION=10 by default
#
# Needs wrk (apt) and boto3 (for presigning; installed into ~/.cache/tessera-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
rounds="${ROUNDS:-2}"
duration="${DURATION:-10}"
venv="$HOME/.cache/tessera-venv"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import boto3' 2>/dev/null || "$venv/bin/pip" install -q boto3
cargo build --release -p tessera --locked -q
bin="$CARGO_TARGET_DIR/release/tessera"

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
export TESSERA_ACCESS_KEY="bench$RANDOM$RANDOM" TESSERA_SECRET_KEY="secret$RANDOM$RANDOM$RANDOM"
pid=""
stop() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; pid=""; }
trap 'stop; rm -rf "$work"' EXIT

start() {
    "$bin" server --data "$work/data" --address "127.0.0.1:$port" --gateway-cores "$1" >"$work/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/ready" >/dev/null && return; sleep 0.1; done
    echo "server did not start"; cat "$work/server.log"; exit 1
}

py() {
    "$venv/bin/python" - "$@" <<EOF
import sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url="http://127.0.0.1:$port", aws_access_key_id="$TESSERA_ACCESS_KEY",
                  aws_secret_access_key="$TESSERA_SECRET_KEY", region_name="us-east-1",
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))
cmd = sys.argv[1]
if cmd == "setup":
    s3.create_bucket(Bucket="bench")
    s3.put_object(Bucket="bench", Key="small", Body=b"x" * 4096)
    s3.put_object(Bucket="bench", Key="big", Body=open("$work/big", "rb"))
else:
    print(s3.generate_presigned_url("get_object", Params={"Bucket": "bench", "Key": cmd}, ExpiresIn=3600))
EOF
}

head -c $((64 << 20)) /dev/urandom >"$work/big"
start 2
py setup
small_url="$(py small)"
big_url="$(py big)"
stop

# wrk's "Requests/sec" and "Transfer/sec" lines; any error response voids the run
# (wrk counts a 403 as a request like any other).
measure() {
    local url=$1 conns=$2 out
    out="$(wrk -t2 -c"$conns" -d"${duration}s" "$url")"
    if echo "$out" | grep -q "Non-2xx"; then
        echo "error responses during the run:" >&2
        echo "$out" >&2
        exit 1
    fi
    echo "$out" | awk '/Requests\/sec/ {r=$2} /Transfer\/sec/ {t=$2} END {print r, t}'
}

printf '%-6s %-14s %14s %16s\n' round config "4KiB req/s" "64MiB transfer/s"
for r in $(seq "$rounds"); do
    for g in 2 1; do
        start "$g"
        read -r small_rps _ < <(measure "$small_url" 32)
        read -r _ big_tput < <(measure "$big_url" 4)
        stop
        printf '%-6s %-14s %14s %16s\n' "$r" "gateway-cores=$g" "$small_rps" "$big_tput"
    done
done
