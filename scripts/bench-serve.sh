#!/usr/bin/env bash
# Tessera's S3 serving path against references on this machine, with tessera-bench as the
# one client for both sides:
#   * nginx (sendfile, tcp_nopush, no access log, 2 workers) serving the same object bytes as
#     files: 64 MiB GETs of one hot object, 1 MiB ranged GETs at random offsets in a 1 GiB
#     object (throughput, p99, time to the body's first byte; and tessera's time to first byte
#     by the quarter of the object a range starts in, slowest against fastest), 4 KiB GETs
#     (requests/s);
#   * fio's O_DIRECT write bandwidth on the filesystem of the data directory (right before and
#     right after the PUTs, averaged: the disk's speed swings): 64 MiB PUTs (each row on an empty
#     server of its own),
#     with the target ratio tessera_put / (fio_write * k/(k+m)), k=4 m=2 (the drives share
#     one disk, so every byte PUT costs (k+m)/k bytes written); and, for context, not as a
#     target, fio writing the disk the way a PUT does (a log per drive per core, each
#     fdatasynced as a store's group commit does);
#   * itself healthy against itself with one drive directory missing (64 MiB GETs), both with
#     the read cache off so the drives are read and the degraded side decodes; the healthy
#     side is also set against nginx (tessera's cold path against nginx's page cache), and
#     reads 1 MiB ranges from the drives (time to first byte by quarter again).
# Everything else runs with the server's defaults, read cache included; every object is read
# once from both servers before measuring (nginx's page cache, tessera's read cache).
# Pairs are interleaved (A B A B ...) for ROUNDS rounds so machine noise hits both alike.
# Each run's summary, JSON and HTML report, and the final table (summary.txt) go to OUT.
#
#   scripts/bench-serve.sh                          # ROUNDS=2 DURATION=10s WARMUP=2s
#   ROUNDS=1 DURATION=5s WARMUP=1s scripts/bench-serve.sh
#
# Env overrides (defaults): ROUNDS (2), DURATION (10s), WARMUP (2s), PUT_DURATION (DURATION:
#   a PUT row writes ~2 GB of segments per second at ~1.2 GB/s, none reclaimed before it ends),
#   OUT (/tmp/tessera-bench-serve), BIG_CONCURRENCY (4), RANGE_CONCURRENCY (8),
#   SMALL_CONCURRENCY (32), PUT_CONCURRENCY ("8 4": a PUT row for each), PUT_OBJECTS (32: keys spread over the cores),
#   RANGE_OBJECT_MIB (1024), FIO_SIZE (1G), FIO_LOG_SIZE (128M), TESSERA_LOG (warn: no access log, like nginx),
#   CARGO_TARGET_DIR (~/.cache/tessera-target), TMPDIR (/tmp: the data directory, nginx's
#   files and fio's file live in a temporary directory there, removed at exit).
# Needs nginx (installed with apt when missing), fio (scripts/install-deps.sh), curl >= 7.75
# (SigV4 uploads), python3 (a free port).
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
export TESSERA_LOG="${TESSERA_LOG:-warn}"
rounds="${ROUNDS:-2}"
duration="${DURATION:-10s}"
put_duration="${PUT_DURATION:-$duration}"
warmup="${WARMUP:-2s}"
out="${OUT:-/tmp/tessera-bench-serve}"
big_conc="${BIG_CONCURRENCY:-4}"
range_conc="${RANGE_CONCURRENCY:-8}"
small_conc="${SMALL_CONCURRENCY:-32}"
# The issue's reference figures for PUT are 8 concurrent 64 MiB uploads; 4 shows
# what fewer uploads per core leave (their MD5s share fewer SIMD lanes).
put_conc="${PUT_CONCURRENCY:-8 4}"
put_objects="${PUT_OBJECTS:-32}"
range_mib="${RANGE_OBJECT_MIB:-1024}"
fio_size="${FIO_SIZE:-1G}"
# The fio run shaped like a PUT's writes (see fio_logs_run): one log per store, i.e. per
# drive (the server's default 6) per core (its default: one per CPU), FIO_LOG_SIZE each.
fio_logs=$((6 * $(nproc)))
fio_log_size="${FIO_LOG_SIZE:-128M}"
ec_k=4
ec_m=2
bucket=bench

log() { echo "[bench-serve] $*" >&2; }
die() {
    log "$*"
    exit 1
}

# --- tools -----------------------------------------------------------------------------------
bash "$repo_root/scripts/install-deps.sh"
if ! command -v nginx >/dev/null; then
    log "installing nginx (apt)"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends nginx >/dev/null
fi
nginx_bin="$(command -v nginx)"
curl_version="$(curl --version | awk 'NR == 1 {print $2}')"
printf '%s\n7.75.0\n' "$curl_version" | sort -V -C -r ||
    die "curl $curl_version has no --aws-sigv4 (7.75 or later needed)"

log "building tessera and tessera-bench (release)"
cargo build --release -p tessera -p tessera-tools --locked -q
export TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"
bench="$CARGO_TARGET_DIR/release/tessera-bench"
[ -x "$bench" ] || die "no $bench after the build"

# shellcheck source=scripts/lib/tessera-server.sh
source "$repo_root/scripts/lib/tessera-server.sh"

# --- temporary directory, cleanup ------------------------------------------------------------
mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench-serve.XXXXXX")"
data="$work/data"
www="$work/www"
ngx_dir="$work/nginx"
nginx_pid=""
server_logs=0

stop_nginx() {
    if [[ -n "$nginx_pid" ]] && kill -0 "$nginx_pid" 2>/dev/null; then
        kill -TERM "$nginx_pid" 2>/dev/null || true
        wait "$nginx_pid" 2>/dev/null || true
    fi
    nginx_pid=""
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    tessera_stop
    stop_nginx
    if ((rc != 0)) && ((server_logs > 0)) && [[ -s "$work/server-$server_logs.log" ]]; then
        log "last lines of the server log:"
        tail -n 20 "$work/server-$server_logs.log" >&2
    fi
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server [ARGS...]: extra server arguments (e.g. --cache-mib 0) for this start only.
start_server() {
    server_logs=$((server_logs + 1))
    TESSERA_SERVER_ARGS="${TESSERA_SERVER_ARGS:-} $*" tessera_start "$data" "$work/server-$server_logs.log"
}

# --- S3 through curl -------------------------------------------------------------------------
# curl signs with SigV4 itself; the payload hash header is the one it does not add.
s3curl() {
    curl -sS -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:us-east-1:s3" \
        --user "$TESSERA_ACCESS_KEY:$TESSERA_SECRET_KEY" "$@"
}

# s3_put URL [FILE]: a bucket (no file) or an object; the object's ETag must be the file's MD5,
# which is what makes the bytes nginx serves the bytes tessera serves.
s3_put() {
    local url=$1 file=${2:-} code etag md5
    local args=(-X PUT)
    [[ -z "$file" ]] || args=(-T "$file")
    code="$(s3curl "${args[@]}" -o "$work/put.body" -D "$work/put.headers" -w '%{http_code}' "$url")"
    [[ "$code" == 200 ]] || die "PUT $url: HTTP $code: $(cat "$work/put.body")"
    [[ -n "$file" ]] || return 0
    etag="$(tr -d '\r"' <"$work/put.headers" | awk 'tolower($1) == "etag:" {print $2}')"
    md5="$(md5sum "$file" | awk '{print $1}')"
    [[ "$etag" == "$md5" ]] || die "PUT $url: ETag $etag is not the file's MD5 $md5"
}

# --- nginx -----------------------------------------------------------------------------------
start_nginx() {
    nginx_port="$(tessera_free_port)"
    mkdir -p "$ngx_dir/tmp"
    cat >"$ngx_dir/nginx.conf" <<EOF
worker_processes 2;
daemon off;
pid $ngx_dir/nginx.pid;
error_log $ngx_dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    default_type application/octet-stream;
    client_body_temp_path $ngx_dir/tmp/body;
    proxy_temp_path $ngx_dir/tmp/proxy;
    fastcgi_temp_path $ngx_dir/tmp/fastcgi;
    uwsgi_temp_path $ngx_dir/tmp/uwsgi;
    scgi_temp_path $ngx_dir/tmp/scgi;
    server {
        listen 127.0.0.1:$nginx_port;
        root $www;
    }
}
EOF
    "$nginx_bin" -e "$ngx_dir/error.log" -p "$ngx_dir" -c "$ngx_dir/nginx.conf" &
    nginx_pid=$!
    local waited=0
    until curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/small"; do
        kill -0 "$nginx_pid" 2>/dev/null || die "nginx exited: $(cat "$ngx_dir/error.log" 2>/dev/null)"
        ((waited < 100)) || die "nginx not serving after 10 s: $(cat "$ngx_dir/error.log" 2>/dev/null)"
        sleep 0.1
        waited=$((waited + 1))
    done
}

# --- runs ------------------------------------------------------------------------------------
# field "RESULT k=v ..." KEY
field() {
    local kv
    for kv in $1; do
        if [[ "$kv" == "$2="* ]]; then
            echo "${kv#*=}"
            return
        fi
    done
    echo nan
}

# bench LABEL ARGS...: one tessera-bench run; its RESULT line in $result. Its summary, JSON and
# HTML report are kept in OUT. A run with failed requests is reported, and flagged in the table.
result=""
bench() {
    local label=$1 rc=0
    shift
    "$bench" "$@" --duration "$duration" --warmup "$warmup" --label "$label" \
        --json "$out/$label.json" --html "$out/$label.html" --quiet >"$out/$label.txt" 2>&1 || rc=$?
    result="$(grep '^RESULT ' "$out/$label.txt" | tail -n 1 || true)"
    if [[ -z "$result" ]] || ((rc > 1)); then
        cat "$out/$label.txt" >&2
        die "tessera-bench $label failed (exit $rc)"
    fi
    if [[ "$(field "$result" errors)" != 0 ]]; then
        log "WARNING: $label: $(field "$result" errors) failed requests (see $out/$label.txt)"
        flagged=1
    fi
}

# data_share MB: the body bandwidth MB/s of disk writes carry at RS k+m (every byte PUT is
# written (k+m)/k times, the drives sharing one disk).
data_share() {
    awk -v f="$1" -v k="$ec_k" -v m="$ec_m" 'BEGIN {printf "%.2f", f * k / (k + m)}'
}

# fio_write_mb JSON: the write bandwidth (MB/s, all jobs) in fio's JSON output.
fio_write_mb() {
    python3 -c 'import json, sys; print("%.2f" % (json.load(open(sys.argv[1]))["jobs"][0]["write"]["bw_bytes"] / 1e6))' "$1"
}

# fio_run LABEL: fio's O_DIRECT write bandwidth on the data directory's disk, in $fio_mb (MB/s).
fio_mb=""
fio_run() {
    fio --name=w --rw=write --direct=1 --ioengine=io_uring --bs=1M --iodepth=4 --size="$fio_size" \
        --filename="$work/fio.dat" --output-format=json >"$out/$1.json"
    rm -f "$work/fio.dat"
    fio_mb="$(fio_write_mb "$out/$1.json")"
}

# fio_logs_run LABEL: the same disk written as a PUT writes it, in $fio_mb (MB/s, all logs):
# $fio_logs files, each written in 1 MiB records 3 deep and fdatasynced every 8 (a store's
# group commit; a PUT at 8 connections measured ~1 sync per 5 writes). The disk served this
# at 0.81-1.06 of the one file above (2026-12-05, 5 interleaved pairs), so Tessera's PUT set
# against it separates what its write pattern costs on this disk from what is left to Tessera.
fio_logs_run() {
    mkdir -p "$work/fio-logs"
    fio --name=w --rw=write --direct=1 --ioengine=io_uring --bs=1M --iodepth=3 --fdatasync=8 \
        --numjobs="$fio_logs" --group_reporting --size="$fio_log_size" --directory="$work/fio-logs" \
        --output-format=json >"$out/$1.json"
    rm -rf "$work/fio-logs"
    fio_mb="$(fio_write_mb "$out/$1.json")"
}

# Each PUT row runs on a server of its own, on an empty data directory removed after it:
# the PUTs overwrite PUT_OBJECTS keys, and the space of what they overwrite comes back only
# when compaction runs (at each checkpoint interval), so 12 s of PUTs at ~1 GB/s leave ~20 GB
# of segments behind, and the rows after them (and a disk near full) would pay for it.
put_server_start() {
    tessera_stop
    mv "$data" "$work/data.main"
    local free_gib
    free_gib=$(($(df -Pk "$work" | awk 'NR == 2 {print $4}') >> 20))
    # Overwritten space comes back only at compaction (each checkpoint interval): the row
    # keeps all it writes, ~1.5 x the body (RS 4+2), at up to ~1.4 GB/s of body here.
    # (Estimated only for durations in whole seconds, as the defaults are.)
    if [[ ${put_duration%s} =~ ^[0-9]+$ && ${warmup%s} =~ ^[0-9]+$ ]]; then
        local need_gib=$(((${put_duration%s} + ${warmup%s}) * 2 + 2))
        ((free_gib >= need_gib)) ||
            log "WARNING: $free_gib GiB free for a PUT row that may write ~$need_gib GiB; set PUT_DURATION lower"
    fi
    start_server
    s3_put "$TESSERA_ENDPOINT/$bucket"
}
put_server_stop() {
    tessera_stop
    rm -rf "$data"
    mv "$work/data.main" "$data"
    start_server
    warm
}

tessera_run() {
    local label=$1
    shift
    bench "$label" --endpoint "$TESSERA_ENDPOINT" --bucket "$bucket" "$@"
}

nginx_run() {
    local label=$1 file=$2
    shift 2
    bench "$label" --url "http://127.0.0.1:$nginx_port/$file" "$@"
}

# row ROUND METRIC TESSERA REFERENCE: one line of the table, also kept for the final means;
# flagged (set by bench, cleared at the start of each pair) marks it.
rows="$work/rows.tsv"
: >"$rows"
flagged=0
row_format='%-6s %-52s %12s %12s %8s\n'
row() {
    local flag=""
    ((flagged == 0)) || flag="!"
    printf '%s\t%s\t%s\t%s\n' "$1" "$2$flag" "$3" "$4" >>"$rows"
    # shellcheck disable=SC2059 # the format is ours
    printf "$row_format" "$1" "$2$flag" "$3" "$4" "$(awk -v a="$3" -v b="$4" 'BEGIN {printf (b > 0 ? "%.3f" : "-"), a / b}')"
}

# offset_rows ROUND NAME RESULT: time to first byte independent of the offset: tessera's ranges
# grouped by the quarter of the object they start in, the slowest quarter against the fastest.
offset_rows() {
    row "$1" "$2 p50 ms, slowest 1/4 (fastest)" "$(field "$3" ttfb_band_p50_max_ms)" "$(field "$3" ttfb_band_p50_min_ms)"
    row "$1" "$2 p99 ms, slowest 1/4 (fastest)" "$(field "$3" ttfb_band_p99_max_ms)" "$(field "$3" ttfb_band_p99_min_ms)"
}
range_nginx=()

# --- objects ---------------------------------------------------------------------------------
mkdir -p "$www"
# nginx's workers drop root to nobody: the files must be readable by them.
chmod 711 "$work"
chmod 755 "$www"
log "writing the objects into $www (64 MiB, ${range_mib} MiB, 4 KiB from /dev/urandom)"
head -c $((64 << 20)) /dev/urandom >"$www/big"
head -c $((range_mib << 20)) /dev/urandom >"$www/range"
head -c 4096 /dev/urandom >"$www/small"
chmod 644 "$www"/*

start_nginx
log "nginx on 127.0.0.1:$nginx_port serving $www"
start_server
log "uploading them to tessera ($TESSERA_ENDPOINT, bucket $bucket)"
s3_put "$TESSERA_ENDPOINT/$bucket"
# tessera-bench addresses <prefix><index, 8 digits>; --objects 1 is index 0.
s3_put "$TESSERA_ENDPOINT/$bucket/big-00000000" "$www/big"
s3_put "$TESSERA_ENDPOINT/$bucket/range-00000000" "$www/range"
s3_put "$TESSERA_ENDPOINT/$bucket/small-00000000" "$www/small"
# One whole read of every object on both sides before measuring: nginx's files are in the
# page cache once written and read, tessera's objects in its read cache once read.
warm() {
    for name in big range small; do
        curl -sSf -o /dev/null "http://127.0.0.1:$nginx_port/$name"
        s3curl -f -o /dev/null "$TESSERA_ENDPOINT/$bucket/$name-00000000"
    done
}
warm

big_args=(--workload get --object-size 64MiB --objects 1 --concurrency "$big_conc")
range_args=(--workload range --range-size 1MiB --objects 1 --concurrency "$range_conc")
small_args=(--workload get --object-size 4KiB --objects 1 --concurrency "$small_conc")

header() {
    # shellcheck disable=SC2059 # the format is ours
    printf "$row_format" round "metric (tessera vs reference)" tessera reference ratio
}

echo "tessera vs nginx and fio: $rounds round(s) of $duration (PUTs $put_duration) (+$warmup warm-up) per figure; reports in $out"
header
for r in $(seq "$rounds"); do
    flagged=0
    tessera_run "r$r-get64m-tessera" --prefix big- "${big_args[@]}"
    t=$result
    nginx_run "r$r-get64m-nginx" big "${big_args[@]}"
    n=$result
    row "$r" "GET 64MiB c$big_conc MB/s (nginx)" "$(field "$t" mb_per_s)" "$(field "$n" mb_per_s)"
    # p50 beside p99: with glommio's default 100 ms task quota tessera's 64 MiB latencies
    # were bimodal (a connection that kept up was served back to back while the other on
    # its core waited); the p50/p99 pair shows whether that tail is back (README, Performance).
    row "$r" "GET 64MiB c$big_conc p50 ms (nginx)" "$(field "$t" p50_ms)" "$(field "$n" p50_ms)"
    row "$r" "GET 64MiB c$big_conc p99 ms (nginx)" "$(field "$t" p99_ms)" "$(field "$n" p99_ms)"

    flagged=0
    tessera_run "r$r-range1m-tessera" --prefix range- --object-size "${range_mib}MiB" "${range_args[@]}"
    t=$result
    nginx_run "r$r-range1m-nginx" range --object-size "${range_mib}MiB" "${range_args[@]}"
    n=$result
    row "$r" "range 1MiB of ${range_mib}MiB c$range_conc MB/s (nginx)" "$(field "$t" mb_per_s)" "$(field "$n" mb_per_s)"
    row "$r" "range 1MiB c$range_conc p99 ms (nginx)" "$(field "$t" p99_ms)" "$(field "$n" p99_ms)"
    row "$r" "range 1MiB c$range_conc ttfb p50 ms (nginx)" "$(field "$t" ttfb_p50_ms)" "$(field "$n" ttfb_p50_ms)"
    row "$r" "range 1MiB c$range_conc ttfb p99 ms (nginx)" "$(field "$t" ttfb_p99_ms)" "$(field "$n" ttfb_p99_ms)"
    # Time to first byte independent of the offset: tessera's ranges grouped by the quarter
    # of the object they start in, the slowest quarter against the fastest.
    offset_rows "$r" "range ttfb" "$t"
    range_nginx[$r]=$n

    flagged=0
    tessera_run "r$r-get4k-tessera" --prefix small- "${small_args[@]}"
    t=$result
    nginx_run "r$r-get4k-nginx" small "${small_args[@]}"
    n=$result
    row "$r" "GET 4KiB c$small_conc req/s (nginx)" "$(field "$t" ops_per_s)" "$(field "$n" ops_per_s)"
    row "$r" "GET 4KiB c$small_conc p99 ms (nginx)" "$(field "$t" p99_ms)" "$(field "$n" p99_ms)"

    # The disk's speed swings from minute to minute on this shared VM (1.0 to 2.2 GB/s
    # within one run), so fio runs right before and right after the PUTs, and their
    # mean is the reference.
    fio_run "r$r-fio-before"
    before=$fio_mb
    puts=()
    put_flags=()
    for c in $put_conc; do
        flagged=0
        put_server_start
        duration=$put_duration tessera_run "r$r-put64m-c$c-tessera" --prefix put- --workload put \
            --object-size 64MiB --objects "$put_objects" --concurrency "$c"
        puts+=("$result")
        put_flags+=("$flagged")
        put_server_stop
    done
    fio_run "r$r-fio-after"
    after=$fio_mb
    fio_logs_run "r$r-fio-logs"
    logs_mb=$fio_mb
    fio_mb="$(awk -v a="$before" -v b="$after" 'BEGIN {printf "%.2f", (a + b) / 2}')"
    echo "       (fio O_DIRECT write, bs 1M, iodepth 4, $fio_size: $before MB/s before the PUTs, $after after, mean $fio_mb;"
    echo "        shaped like a PUT's writes, $fio_logs logs, fdatasync every 8: $logs_mb MB/s)"
    i=0
    for c in $put_conc; do
        flagged=${put_flags[$i]}
        row "$r" "PUT 64MiB c$c MB/s (fio x $ec_k/($ec_k+$ec_m))" "$(field "${puts[$i]}" mb_per_s)" "$(data_share "$fio_mb")"
        row "$r" "PUT 64MiB c$c MB/s (fio as logs x $ec_k/($ec_k+$ec_m))" "$(field "${puts[$i]}" mb_per_s)" \
            "$(data_share "$logs_mb")"
        i=$((i + 1))
    done
done

# Degraded reads: the server restarted without one drive directory (moved aside, which the
# server sees exactly as `rm -rf <data>/d1`: offline, not recreated) against the same server
# restarted with it, interleaved. Both with the read cache off (--cache-mib 0), so every GET
# reads the drives and the degraded one decodes; the healthy one is also set against nginx.
for r in $(seq "$rounds"); do
    tessera_stop
    [[ -d "$data/d1" ]] || mv "$work/d1.removed" "$data/d1"
    start_server --cache-mib 0
    flagged=0
    tessera_run "r$r-get64m-nocache" --prefix big- "${big_args[@]}"
    h=$result
    nginx_run "r$r-get64m-nginx-again" big "${big_args[@]}"
    n=$result
    row "$r" "GET 64MiB c$big_conc, cache off, MB/s (nginx)" "$(field "$h" mb_per_s)" "$(field "$n" mb_per_s)"
    # Ranges read from the drives: the offset must not matter there either (nginx's figure is
    # this round's from its page cache, for context). The degraded rows below are set against
    # the healthy run, so they carry its flag, not this one's.
    healthy_flagged=$flagged
    flagged=0
    tessera_run "r$r-range1m-nocache" --prefix range- --object-size "${range_mib}MiB" "${range_args[@]}"
    row "$r" "range 1MiB c$range_conc, cache off, MB/s (nginx)" "$(field "$result" mb_per_s)" \
        "$(field "${range_nginx[$r]}" mb_per_s)"
    offset_rows "$r" "range ttfb cache off," "$result"
    flagged=$healthy_flagged
    tessera_stop
    mv "$data/d1" "$work/d1.removed"
    start_server --cache-mib 0
    grep -q 'd1 .*OFFLINE' "$work/server-$server_logs.log" || die "d1 is not offline after its removal"
    tessera_run "r$r-get64m-degraded" --prefix big- "${big_args[@]}"
    d=$result
    row "$r" "degraded GET 64MiB c$big_conc, cache off, MB/s (healthy)" "$(field "$d" mb_per_s)" "$(field "$h" mb_per_s)"
    row "$r" "degraded GET 64MiB c$big_conc p99 ms (healthy)" "$(field "$d" p99_ms)" "$(field "$h" p99_ms)"
done

{
    echo
    echo "means over $rounds round(s); ratio = tessera / reference (for PUT: the target ratio"
    echo "tessera_put / (fio_write x k/(k+m)), k=$ec_k m=$ec_m, against fio's one file; the 'fio as logs'"
    echo "rows set it against fio writing as a PUT does, for context; for degraded: degraded / healthy;"
    echo "for 'slowest 1/4': tessera's ranges by the quarter of the object they start in, slowest / fastest);"
    echo "'!' marks a figure from a run with failed requests"
    header
    awk -F'\t' -v fmt="$row_format" '
        !($2 in n) { order[++count] = $2 }
        { n[$2]++; a[$2] += $3; b[$2] += $4 }
        END {
            for (i = 1; i <= count; i++) {
                k = order[i]
                ma = a[k] / n[k]; mb = b[k] / n[k]
                digits = (ma < 10 && mb < 10) ? "%.3f" : "%.2f"
                printf fmt, "mean", k, sprintf(digits, ma), sprintf(digits, mb), (mb > 0 ? sprintf("%.3f", ma / mb) : "-")
            }
        }' "$rows"
} | tee "$out/summary.txt"
cp "$rows" "$out/rows.tsv"
