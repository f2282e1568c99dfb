#!/usr/bin/env bash
# Engine IO vs fio, on the same file system, in the same run.
#
# Writes and reads TOTAL bytes of RECORD-sized pieces through the shard store
# (benches/benches/engine_io.rs) and the same sequential pattern with fio (O_DIRECT,
# io_uring, same block size, same number of requests in flight), alternating fio and
# engine ROUNDS times to even out a noisy machine, then prints the medians and the
# engine/fio ratios.
#
#   scripts/bench-engine.sh [extra engine_io flags...]
#
# Environment (defaults in brackets):
#   TESSERA_BENCH_DIR     directory on the disk to measure [/var/tmp/tessera-bench]
#   TESSERA_BENCH_TOTAL   bytes per pass [1G]
#   TESSERA_BENCH_RECORD  piece size = fio block size [1M]
#   TESSERA_BENCH_DEPTH   requests in flight: fio --iodepth, and the engine's total [32]
#   TESSERA_BENCH_CORES   engine configurations: "1 2" runs one store on one core
#                         (DEPTH in flight) and one store on each of 2 cores (DEPTH/2
#                         in flight on each, DEPTH in total) [1 2]
#   TESSERA_BENCH_ROUNDS  fio/engine alternations [3]
#   TESSERA_BENCH_TARGET  engine/fio ratio to reach [0.8]
#   TESSERA_BENCH_FIO_FIXEDBUFS  1: fio registers its buffers with io_uring
#                         (--fixedbufs), as the engine does with glommio's IO memory;
#                         needs RLIMIT_MEMLOCK >= DEPTH x RECORD unless root [1 if root]
#   TESSERA_BENCH_THP     1: fio and engine both get transparent huge pages for their
#                         malloc'd IO buffers (GLIBC_TUNABLES=glibc.malloc.hugetlb=1) [0]
# Extra arguments go to engine_io after the ones below and override them (see
# `cargo bench -p tessera-benches --bench engine_io -- --help`); e.g.
# e.g. `--drive tasks` to issue requests back to back.
#
# Engine configuration used: the store's defaults (StoreConfig::default(): group
# commits of at most 64 records / 16 MiB, disk reserved 64 MiB ahead alongside the
# writes), and
#   --drive paced (engine_io's default): requests start as if they came from a socket.
#
# Fairness of the write comparison (durability):
#   The engine acknowledges a put only once it is durable: its committer writes a
#   group of queued records with O_DIRECT, then fdatasyncs the segment once for the
#   group. With the 16 MiB group cap, one core's groups hold 16 records of 1 MiB (= DEPTH/2
#   at the default depth 32), so fio
#   runs with --fdatasync=DEPTH/2: one fdatasync per DEPTH/2 writes, the same cadence
#   (with 2 cores the engine syncs twice as often, its disadvantage; fio 3.33 also
#   issues a few syncs back to back, so fio is not favoured by syncing less). fio does
#   not drain its queue before an fdatasync, the engine must (a put cannot be
#   acknowledged before its sync); that cost is the engine's and the ratio shows it.
#   --end_fsync=1 (one fsync at the very end) would pit durable engine writes against
#   non-durable fio writes; it is printed only as an extra "device ceiling" row.
#   Both sides write fresh, fallocated files (fio's default fallocate=native; the
#   engine preallocates its segments), so both pay unwritten-extent conversion.
#   Reads: fio --direct=1 and the engine's O_DIRECT reads both bypass the page cache.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="${TESSERA_BENCH_DIR:-/var/tmp/tessera-bench}"
TOTAL="${TESSERA_BENCH_TOTAL:-1G}"
RECORD="${TESSERA_BENCH_RECORD:-1M}"
DEPTH="${TESSERA_BENCH_DEPTH:-32}"
SYNC_EVERY=$((DEPTH / 2 > 0 ? DEPTH / 2 : 1))
CORES_LIST="${TESSERA_BENCH_CORES:-1 2}"
ROUNDS="${TESSERA_BENCH_ROUNDS:-3}"
TARGET="${TESSERA_BENCH_TARGET:-0.8}"
FIXEDBUFS="${TESSERA_BENCH_FIO_FIXEDBUFS:-$([ "$(id -u)" -eq 0 ] && echo 1 || echo 0)}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
if [ "${TESSERA_BENCH_THP:-0}" = 1 ]; then
    export GLIBC_TUNABLES="glibc.malloc.hugetlb=1${GLIBC_TUNABLES:+:$GLIBC_TUNABLES}"
fi

if ! command -v fio >/dev/null 2>&1; then
    echo "bench-engine: installing fio"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends fio >/dev/null
fi
command -v python3 >/dev/null 2>&1 || { echo "bench-engine: python3 is required" >&2; exit 1; }

mkdir -p "$DIR"
FSTYPE="$(findmnt -n -o FSTYPE --target "$DIR" 2>/dev/null || stat -f -c %T "$DIR")"
case "$FSTYPE" in
    tmpfs | ramfs) echo "bench-engine: $DIR is on $FSTYPE, not a disk; set TESSERA_BENCH_DIR" >&2; exit 1 ;;
esac
DEV="$(df -P "$DIR" | awk 'NR == 2 { print $1 }')"
mkdir -p "$CARGO_TARGET_DIR"
BUILD_DEV="$(df -P "$CARGO_TARGET_DIR" | awk 'NR == 2 { print $1 }')"
[ "$DEV" = "$BUILD_DEV" ] || echo "bench-engine: note: $DIR ($DEV) is not on the build's file system ($BUILD_DEV)"
FIO_FILE="$DIR/fio-$$.dat"
LOG="$(mktemp -d)"
cleanup() { rm -f "$FIO_FILE"; rm -rf "$LOG"; }
trap cleanup EXIT

echo "bench-engine: dir=$DIR fs=$FSTYPE dev=$DEV total=$TOTAL record=$RECORD depth=$DEPTH" \
    "engine_cores=[$CORES_LIST] rounds=$ROUNDS fio_fixedbufs=$FIXEDBUFS thp=${TESSERA_BENCH_THP:-0} $(fio --version)"
echo "bench-engine: building engine_io (release)"
cargo bench -q -p tessera-benches --bench engine_io --no-run 2>&1 | grep -v '^ *Executable' || true

EXTRA=("$@")
engine_cmd() { # cores -> ENGINE_CMD; DEPTH is split over the cores
    local c="$1" d=$((DEPTH / $1))
    ((d > 0)) || d=1
    ENGINE_CMD=(cargo bench -q -p tessera-benches --bench engine_io --
        --dir "$DIR" --total "$TOTAL" --record "$RECORD" --cores "$c" --depth "$d"
        ${EXTRA[@]+"${EXTRA[@]}"})
}
FIO_COMMON=(--name=tessera --filename="$FIO_FILE" --direct=1 --ioengine=io_uring
    --bs="$RECORD" --iodepth="$DEPTH" --size="$TOTAL" --output-format=json)
if [ "$FIXEDBUFS" = 1 ]; then FIO_COMMON+=(--fixedbufs); fi
for c in $CORES_LIST; do
    engine_cmd "$c"
    echo "bench-engine: engine: ${ENGINE_CMD[*]}"
done
echo "bench-engine: fio:    fio ${FIO_COMMON[*]} --rw=write --fdatasync=$SYNC_EVERY (then --rw=read; then --rw=write --end_fsync=1)"

fio_mbps() { # direction json -> MB/s (10^6 B/s)
    python3 -c 'import json,sys; j=json.load(open(sys.argv[2])); print("%.1f" % (sum(x[sys.argv[1]]["bw_bytes"] for x in j["jobs"]) / 1e6))' "$1" "$2"
}

run_fio() { # round
    local r="$1"
    rm -f "$FIO_FILE"
    fio "${FIO_COMMON[@]}" --rw=write --fdatasync="$SYNC_EVERY" >"$LOG/fio-w-$r.json"
    fio "${FIO_COMMON[@]}" --rw=read >"$LOG/fio-r-$r.json"
    rm -f "$FIO_FILE"
    fio "${FIO_COMMON[@]}" --rw=write --end_fsync=1 >"$LOG/fio-c-$r.json"
    rm -f "$FIO_FILE"
    echo "fio round=$r write_MBps=$(fio_mbps write "$LOG/fio-w-$r.json") read_MBps=$(fio_mbps read "$LOG/fio-r-$r.json")" \
        "write_end_fsync_MBps=$(fio_mbps write "$LOG/fio-c-$r.json")" | tee -a "$LOG/results"
}

run_engine() { # round
    local r="$1" c w rd out
    for c in $CORES_LIST; do
        engine_cmd "$c"
        out="$LOG/engine-$c-$r.txt"
        "${ENGINE_CMD[@]}" >"$out"
        w="$(sed -n 's/^engine write_MBps=\([0-9.]*\).*/\1/p' "$out")"
        rd="$(sed -n 's/^engine read_MBps=\([0-9.]*\).*/\1/p' "$out")"
        [ -n "$w" ] && [ -n "$rd" ] || { echo "bench-engine: engine_io printed no result:" >&2; cat "$out" >&2; exit 1; }
        echo "engine_${c}core round=$r write_MBps=$w read_MBps=$rd" | tee -a "$LOG/results"
        grep -E '^engine (config|(write|read|range[0-9]+k_read)_MBps)' "$out" | sed 's/^/    /'
    done
}

# Alternate which goes first, so neither side always gets the fresher disk.
for r in $(seq 1 "$ROUNDS"); do
    if ((r % 2)); then run_fio "$r"; run_engine "$r"; else run_engine "$r"; run_fio "$r"; fi
done

python3 - "$LOG/results" "$RECORD" "$DEPTH" "$TARGET" "$SYNC_EVERY" "$FIXEDBUFS" <<'PY'
import statistics, sys
path, record, depth, target, sync_every, fixedbufs = sys.argv[1:7]
depth, target = int(depth), float(target)
runs = {}
for line in open(path):
    who, *kvs = line.split()
    for kv in kvs:
        k, v = kv.split("=")
        if k != "round":
            runs.setdefault(who, {}).setdefault(k, []).append(float(v))
med = lambda who, k: statistics.median(runs[who][k])
engines = [w for w in runs if w.startswith("engine_")]
def label(w):
    n = int(w[len("engine_"):-len("core")])
    return f"{n} core" + ("s" if n > 1 else "")
ops = [(f"seq write {record}, durable", "write_MBps"), (f"seq read {record}", "read_MBps")]
print()
print(f"median of {len(runs['fio']['write_MBps'])} rounds; MB/s = 10^6 B/s of payload; {depth} requests in flight on each side")
print(f"fio --direct=1 --ioengine=io_uring{' --fixedbufs' if fixedbufs == '1' else ''} --bs={record} --iodepth={depth}; "
      f"fio write: --fdatasync={sync_every}")
head = f"{'operation':<27} {'fio MB/s':>9}"
for w in engines:
    head += f" | {'engine ' + label(w):>15} {'engine/fio':>10}"
print(head)
print("-" * len(head))
for name, k in ops:
    f = med("fio", k)
    line = f"{name:<27} {f:>9.1f}"
    for w in engines:
        e = med(w, k)
        line += f" | {e:>15.1f} {e / f:>10.2f}"
    print(line)
c = med("fio", "write_end_fsync_MBps")
line = f"{'fio write, end_fsync only':<27} {c:>9.1f}"
for w in engines:
    line += f" | {'':>15} {med(w, 'write_MBps') / c:>10.2f}"
print(line + "  (engine durable write / non-durable ceiling)")
print()
for who, kv in runs.items():
    print(f"  {who:<12} per round: " + "  ".join(f"{k}={','.join('%.0f' % v for v in vs)}" for k, vs in kv.items()))
for w in engines:
    worst = min(med(w, k) / med("fio", k) for _, k in ops)
    print(f"target engine/fio >= {target} (write and read), engine {label(w)}: "
          f"{'MET' if worst >= target else 'NOT MET'} (lowest ratio {worst:.2f})")
PY
