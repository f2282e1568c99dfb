#!/usr/bin/env bash
# Is tessera-bench fast enough not to be the bottleneck? Measures it against wrk on the
# same URLs: nginx (temporary config, sendfile on, 2 workers, no access log) on a spare
# loopback port serving a 4 KiB and a 64 MiB file; 4 KiB GETs with 32 connections and
# 64 MiB GETs with 4, both clients with 2 threads, interleaved (wrk, bench, wrk, bench...)
# for ROUNDS rounds so machine noise hits both alike. Also prints each client's CPU time
# per request or per GB (user+sys), which noise from other processes disturbs less.
#
#   scripts/bench-client.sh                 # ROUNDS=3 DURATION=10
#
# Needs nginx and wrk (installed with apt when missing), python3 (a free port).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
rounds="${ROUNDS:-3}"
duration="${DURATION:-10}"

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    apt-get update -qq && apt-get install -y -qq nginx wrk >/dev/null
fi
cargo build --release -p tessera-tools --bin tessera-bench --locked -q
bench="$CARGO_TARGET_DIR/release/tessera-bench"

work="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
stop() {
    if [ -f "$work/nginx.pid" ]; then kill "$(cat "$work/nginx.pid")" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap stop EXIT
mkdir -p "$work/www" "$work/tmp"
chmod 755 "$work" "$work/www"
head -c $((64 << 20)) /dev/urandom >"$work/www/big"
head -c 4096 /dev/urandom >"$work/www/small"
chmod 644 "$work/www"/*
cat >"$work/nginx.conf" <<EOF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    client_body_temp_path $work/tmp;
    proxy_temp_path $work/tmp;
    fastcgi_temp_path $work/tmp;
    uwsgi_temp_path $work/tmp;
    scgi_temp_path $work/tmp;
    server { listen 127.0.0.1:$port; root $work/www; }
}
EOF
nginx -c "$work/nginx.conf" -p "$work"
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/small" >/dev/null && break; sleep 0.1; done

# cpu CMD...: runs CMD, prints its stdout, and "cpu=<user+sys seconds>" last.
cpu() {
    local t="$work/time"
    /usr/bin/time -f "%U %S" -o "$t" "$@"
    awk '{printf "cpu=%.2f\n", $1 + $2}' "$t"
}

# wrk's "Requests/sec" and bytes read (its GB are GiB); any non-2xx voids the run.
wrk_run() {
    local out
    out="$(cpu wrk -t2 -c"$2" -d"${duration}s" "http://127.0.0.1:$port/$1")"
    if echo "$out" | grep -q "Non-2xx"; then echo "wrk saw error responses: $out" >&2; exit 1; fi
    echo "$out" | awk -v d="$duration" '
        /requests in/ {n=$1; v=$5; sub(/[A-Za-z]+,?$/, "", v); u=$5; gsub(/[0-9.,]/, "", u);
                       m = (u=="GB") ? 1073741824 : (u=="MB") ? 1048576 : (u=="KB") ? 1024 : 1; bytes = v * m}
        /Requests\/sec/ {r=$2}
        /^cpu=/ {c=substr($0, 5)}
        END {printf "%.0f %.1f %s %d\n", r, bytes / 1e6 / d, c, n}'
}

# tessera-bench's ops/s, MB/s, cpu seconds and operation count.
bench_run() {
    local out
    out="$(cpu "$bench" --url "http://127.0.0.1:$port/$1" -c "$2" -t 2 -d "${duration}s" --warmup 0s --quiet)"
    echo "$out" | awk '
        /^RESULT/ {for (i = 2; i <= NF; i++) {split($i, kv, "="); f[kv[1]] = kv[2]}}
        /^  get / {n=$2}
        /^cpu=/ {c=substr($0, 5)}
        END {if (f["errors"] != 0) {print "errors" > "/dev/stderr"; exit 1}
             printf "%.0f %.1f %s %d\n", f["ops_per_s"], f["mb_per_s"], c, n}'
}

printf '%-5s %-18s %12s %12s %10s %12s %12s %10s\n' round case "wrk req/s" "wrk MB/s" "wrk cpu" \
    "bench ops/s" "bench MB/s" "bench cpu"
for r in $(seq "$rounds"); do
    for case in "small 32" "big 4"; do
        # shellcheck disable=SC2086 # "file connections", split on purpose
        set -- $case
        read -r wr wm wc wn < <(wrk_run "$1" "$2")
        read -r br bm bc bn < <(bench_run "$1" "$2")
        if [ "$1" = small ]; then
            # CPU microseconds per request.
            wcpu="$(awk -v c="$wc" -v n="$wn" 'BEGIN {printf "%.1fus/req", c * 1e6 / n}')"
            bcpu="$(awk -v c="$bc" -v n="$bn" 'BEGIN {printf "%.1fus/req", c * 1e6 / n}')"
        else
            # CPU seconds per GB received.
            wcpu="$(awk -v c="$wc" -v m="$wm" -v d="$duration" 'BEGIN {printf "%.2fs/GB", c / (m * d / 1000)}')"
            bcpu="$(awk -v c="$bc" -v m="$bm" -v d="$duration" 'BEGIN {printf "%.2fs/GB", c / (m * d / 1000)}')"
        fi
        printf '%-5s %-18s %12s %12s %10s %12s %12s %10s\n' "$r" "GET $1 c$2" "$wr" "$wm" "$wcpu" "$br" "$bm" "$bcpu"
    done
done
