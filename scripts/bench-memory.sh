#!/usr/bin/env bash
# The memory bound of GET streaming: a release `tessera server` must not buffer what slow
# clients have not read yet. Each GET stream holds at most 2 chunks of <= 1 MiB waiting for
# the socket, 2 chunks being read ahead (each with its 1 MiB of DMA piece buffers while the
# read runs) and the chunk hyper is sending: about 7 MiB. So STREAMS concurrent slow readers
# may add at most STREAMS x BOUND_MIB_PER_STREAM MiB (7 MiB) to the server's resident memory,
# whatever the object size. The read cache is memory on top of that, bounded by its own
# size (--cache-mib); this check runs the server with CACHE_MIB (0: off, so every stream
# reads the drives and holds its own chunks, the case the bound is about), and counts it
# in the bound (peak <= base + CACHE_MIB + STREAMS x 7 MiB). With the cache on, streams
# of one hot object share the cached chunks and add far less.
#
# For each object size (SIZES_MIB, 64 MiB then 1 GiB), on a fresh server and data directory:
# upload one object of random bytes (curl, SigV4), open STREAMS connections that each GET it
# and read READ_BYTES_PER_SEC (64 KiB) per second (raw sockets, one Python process, SigV4 in
# headers), sample the server's VmRSS every second for SAMPLE_SECS, and print
#   ready RSS (before the upload), base RSS (after it, before the streams), peak RSS,
#   (peak - base) / STREAMS bytes per stream, and PASS/FAIL of peak <= base + STREAMS x 7 MiB.
# Then the peaks of the sizes are compared: the added memory must not grow with object size
# (PASS when the largest size adds at most 25% + 16 MiB more than the smallest).
#
#   scripts/bench-memory.sh                                # 256 streams, 30 s, 64 MiB and 1 GiB
#   STREAMS=64 SAMPLE_SECS=10 SIZES_MIB="64" scripts/bench-memory.sh
#
# Env overrides (defaults): STREAMS (256), SAMPLE_SECS (30), READ_BYTES_PER_SEC (65536),
#   SIZES_MIB ("64 1024"), BOUND_MIB_PER_STREAM (7), CACHE_MIB (0; the server's --cache-mib), OUT (/tmp/tessera-bench-memory: the
#   per-second samples and the summary), TESSERA_LOG (warn), CARGO_TARGET_DIR
#   (~/.cache/tessera-target), TMPDIR (/tmp: data directory and object file, removed at exit).
# Exit status: 0 when every check passes, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
repo_root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
export TESSERA_LOG="${TESSERA_LOG:-warn}"
streams="${STREAMS:-256}"
sample_secs="${SAMPLE_SECS:-30}"
read_rate="${READ_BYTES_PER_SEC:-65536}"
read -ra sizes_mib <<<"${SIZES_MIB:-64 1024}"
bound_mib="${BOUND_MIB_PER_STREAM:-7}"
cache_mib="${CACHE_MIB:-0}"
out="${OUT:-/tmp/tessera-bench-memory}"
bucket=mem

log() { echo "[bench-memory] $*" >&2; }
die() {
    log "$*"
    exit 1
}

((${#sizes_mib[@]} > 0)) || die "SIZES_MIB is empty"
# Each stream is a socket in this shell's process and the server's.
(($(ulimit -n) > streams + 64)) || ulimit -n $((streams + 256)) ||
    die "open-file limit $(ulimit -n) is too low for $streams streams"

bash "$repo_root/scripts/install-deps.sh"
log "building tessera (release)"
cargo build --release -p tessera --locked -q
export TESSERA_BIN="$CARGO_TARGET_DIR/release/tessera"

# shellcheck source=scripts/lib/tessera-server.sh
source "$repo_root/scripts/lib/tessera-server.sh"

mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/tessera-bench-memory.XXXXXX")"
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    tessera_stop
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$tessera_pid/status"; }

# The slow readers, and the sampler: argv endpoint bucket key pid streams seconds rate.
# Prints one line per second and a final `SUMMARY peak_kib=... ok=... closed=... failed=...`:
# ok streams answered 200 and still open at the end, closed ones ended early (the server may
# not close a stream that has not been read), failed ones got another status or an error.
slow_readers() {
    python3 - "$@" <<'EOF'
import datetime, errno, hashlib, hmac, os, socket, sys, time

endpoint, bucket, key, pid, streams, seconds, rate = sys.argv[1:8]
pid, streams, seconds, rate = int(pid), int(streams), int(seconds), int(rate)
host = endpoint.split("://", 1)[1].rstrip("/")
addr, port = host.rsplit(":", 1)
ak, sk, region = os.environ["TESSERA_ACCESS_KEY"], os.environ["TESSERA_SECRET_KEY"], "us-east-1"


def request(path):
    amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    day, payload = amz_date[:8], "UNSIGNED-PAYLOAD"
    headers = f"host:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n"
    signed = "host;x-amz-content-sha256;x-amz-date"
    canonical = "\n".join(["GET", path, "", headers, signed, payload])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + sk).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = f"AWS4-HMAC-SHA256 Credential={ak}/{scope}, SignedHeaders={signed}, Signature={sig}"
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nx-amz-date: {amz_date}\r\n"
            f"x-amz-content-sha256: {payload}\r\nAuthorization: {auth}\r\n\r\n").encode()


def rss_kib():
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


req = request(f"/{bucket}/{key}")
conns = []  # [socket, head bytes or None once the status is known, state, bytes read]
for _ in range(streams):
    s = socket.create_connection((addr, int(port)))
    s.sendall(req)
    s.setblocking(False)
    conns.append([s, b"", "open", 0])

peak = 0
start = time.monotonic()
for second in range(1, seconds + 1):
    for c in conns:
        if c[2] != "open":
            continue
        budget = rate
        while budget > 0:
            try:
                chunk = c[0].recv(min(budget, 65536))
            except BlockingIOError:
                break
            except OSError:
                c[2] = "failed"
                break
            if not chunk:
                c[2] = "closed" if c[1] is None else "failed"
                break
            budget -= len(chunk)
            c[3] += len(chunk)
            if c[1] is not None:
                c[1] += chunk
                if b"\r\n" in c[1]:
                    if c[1].split(b" ", 2)[1] != b"200":
                        c[2] = "failed"
                        sys.stderr.write(c[1][:300].decode(errors="replace") + "\n")
                        break
                    c[1] = None
    rss = rss_kib()
    peak = max(peak, rss)
    states = [c[2] for c in conns]
    print(f"t={second:3d}s rss_kib={rss} open={states.count('open')} closed={states.count('closed')} "
          f"failed={states.count('failed')} read_mib={sum(c[3] for c in conns) / 2**20:.1f}", flush=True)
    time.sleep(max(0.0, start + second - time.monotonic()))

states = [c[2] for c in conns]
ok = sum(1 for c in conns if c[2] == "open" and c[1] is None)
print(f"SUMMARY peak_kib={peak} ok={ok} closed={states.count('closed')} failed={streams - ok - states.count('closed')}")
for c in conns:
    c[0].close()
EOF
}

# kv "k=v ..." KEY
kv() {
    local pair
    for pair in $1; do
        if [[ "$pair" == "$2="* ]]; then
            echo "${pair#*=}"
            return
        fi
    done
    die "no $2 in: $1"
}

mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

# report LINE: printed and kept in OUT/summary.txt.
: >"$out/summary.txt"
report() { echo "$1" | tee -a "$out/summary.txt"; }

failed=0
added_kib=()
report "memory bound: $streams streams reading $read_rate B/s each for ${sample_secs}s; bound: peak <= base + cache $cache_mib MiB + $streams x $bound_mib MiB"
for size in "${sizes_mib[@]}"; do
    rm -rf "$work/data"
    TESSERA_SERVER_ARGS="${TESSERA_SERVER_ARGS:-} --cache-mib $cache_mib" tessera_start "$work/data" "$work/server-$size.log"
    ready="$(rss_kib)"
    head -c $((size << 20)) /dev/urandom >"$work/object"
    curl_args=(-sS -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" --aws-sigv4 "aws:amz:us-east-1:s3"
        --user "$TESSERA_ACCESS_KEY:$TESSERA_SECRET_KEY" -w '%{http_code}')
    code="$(curl "${curl_args[@]}" -o "$work/put.body" -X PUT "$TESSERA_ENDPOINT/$bucket")"
    [[ "$code" == 200 ]] || die "create bucket: HTTP $code: $(cat "$work/put.body")"
    code="$(curl "${curl_args[@]}" -o "$work/put.body" -T "$work/object" "$TESSERA_ENDPOINT/$bucket/object")"
    [[ "$code" == 200 ]] || die "PUT ${size} MiB: HTTP $code: $(cat "$work/put.body")"
    rm -f "$work/object"
    # One complete GET first: what the first read touches once (the io_uring buffer arena,
    # pools) is not per stream.
    code="$(curl "${curl_args[@]}" -o /dev/null "$TESSERA_ENDPOINT/$bucket/object")"
    [[ "$code" == 200 ]] || die "GET ${size} MiB: HTTP $code"
    sleep 2
    base="$(rss_kib)"
    log "${size} MiB object stored; opening $streams slow GET streams"
    slow_readers "$TESSERA_ENDPOINT" "$bucket" object "$tessera_pid" "$streams" "$sample_secs" "$read_rate" \
        | tee "$out/samples-${size}MiB.txt" >&2
    summary="$(grep '^SUMMARY ' "$out/samples-${size}MiB.txt")"
    tessera_stop
    peak="$(kv "$summary" peak_kib)"
    ok="$(kv "$summary" ok)"
    bound=$((base + cache_mib * 1024 + streams * bound_mib * 1024))
    added=$((peak > base ? peak - base : 0))
    added_kib+=("$added")
    verdict=PASS
    if ((peak > bound)); then verdict=FAIL; fi
    if ((ok != streams)); then verdict="FAIL ($ok of $streams streams open with 200 at the end)"; fi
    [[ "$verdict" == PASS ]] || failed=1
    report "$(printf '%s MiB object: ready %s MiB, base %s MiB, peak %s MiB, (peak-base)/%s = %s KiB per stream; bound %s MiB: %s' \
        "$size" "$(mib "$ready")" "$(mib "$base")" "$(mib "$peak")" "$streams" $((added / streams)) "$(mib "$bound")" "$verdict")"
done

if ((${#sizes_mib[@]} > 1)); then
    first=${added_kib[0]}
    last=${added_kib[${#added_kib[@]} - 1]}
    limit=$((first * 5 / 4 + 16 * 1024))
    verdict=PASS
    if ((last > limit)); then verdict=FAIL; failed=1; fi
    report "$(printf 'size independence: %s MiB object adds %s MiB, %s MiB object adds %s MiB (limit %s MiB): %s' \
        "${sizes_mib[0]}" "$(mib "$first")" "${sizes_mib[${#sizes_mib[@]} - 1]}" "$(mib "$last")" "$(mib "$limit")" "$verdict")"
fi
if ((failed)); then exit 1; fi
