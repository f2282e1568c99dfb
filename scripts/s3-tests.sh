#!/usr/bin/env bash
# Runs the "core S3" selection of ceph/s3-tests (208 tests of test_s3.py) against Tessera,
# exactly as ../shared/conformance/README.md describes, and prints the pass/fail counts.
#
# The suite is not part of this repository and must never be committed: unpack a checkout of
# ceph/s3-tests somewhere outside the repo and point S3TESTS_DIR at it.
#
#   S3TESTS_DIR=/tmp/s3-tests scripts/s3-tests.sh            # builds and starts a fresh tessera
#   S3TESTS_DIR=/tmp/s3-tests TESSERA_ENDPOINT=http://127.0.0.1:9000 \
#       TESSERA_ACCESS_KEY=ak TESSERA_SECRET_KEY=sk scripts/s3-tests.sh   # a running server
#   S3TESTS_DIR=/tmp/s3-tests scripts/s3-tests.sh -x -v      # extra arguments go to pytest
#
# Environment (defaults in brackets):
#   S3TESTS_DIR          unpacked ceph/s3-tests checkout, outside the repo [required]
#   CONFORMANCE_DIR      mk_conf.sh, core_selection.sh, s3conf_compat.py, summarize.py
#                        [<repo>/../shared/conformance]
#   TESSERA_ENDPOINT     http://HOST:PORT of a running server, which must hold no bucket (the
#                        suite lists all buckets); unset: build and start `tessera server` on a
#                        free port with an empty temporary data dir [unset]
#   TESSERA_ACCESS_KEY/TESSERA_SECRET_KEY   keys for TESSERA_ENDPOINT [generated when started here]
#   TESSERA_BIN          tessera binary to start instead of building one [unset]
#   TESSERA_SERVER_ARGS  extra arguments for `tessera server`, split on spaces [empty]
#   CARGO_TARGET_DIR     cargo's output [~/.cache/tessera-target]
#   S3TESTS_VENV         venv for the suite [~/.cache/tessera-s3tests-venv]
#   OUT                  output dir: s3t.conf, junit.xml, pytest.log, summary.txt [/tmp/tessera-s3tests]
#   S3TESTS_JOBS         pytest-xdist workers [2]
#   S3TESTS_TIMEOUT_SECS time limit for the whole pytest run [1800]
#   S3TESTS_MIN_PASSED   exit non-zero when fewer tests pass [0: only a broken run fails]
#
# Exit status: 0 when the suite ran and at least S3TESTS_MIN_PASSED tests passed; failing tests
# alone do not fail the script, since no server passes the whole selection (the README lists
# moto 5.2.5 164/208, Garage 2.5.0 150/208, s3s-fs 0.14.1 143/208).
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${S3TESTS_VENV:-$HOME/.cache/tessera-s3tests-venv}"
out="${OUT:-/tmp/tessera-s3tests}"
jobs="${S3TESTS_JOBS:-2}"
run_timeout_secs="${S3TESTS_TIMEOUT_SECS:-1800}"
min_passed="${S3TESTS_MIN_PASSED:-0}"
# Per-test limit, as in the README.
test_timeout_secs=60

log() { echo "s3-tests: $*" >&2; }
die() {
    log "$*"
    exit 2
}

# --- inputs -------------------------------------------------------------------------------

[[ -n "${S3TESTS_DIR:-}" ]] || die "set S3TESTS_DIR to an unpacked ceph/s3-tests checkout (outside the repo)"
[[ -f "$S3TESTS_DIR/s3tests/functional/test_s3.py" ]] || die "$S3TESTS_DIR is not a ceph/s3-tests checkout"
s3tests_dir="$(cd "$S3TESTS_DIR" && pwd -P)"
case "$s3tests_dir/" in
"$(cd "$repo_root" && pwd -P)"/*) die "S3TESTS_DIR must not be inside the repository: it is never committed" ;;
esac
conformance_dir="${CONFORMANCE_DIR:-$repo_root/../shared/conformance}"
for f in mk_conf.sh core_selection.sh s3conf_compat.py summarize.py; do
    [[ -f "$conformance_dir/$f" ]] || die "$conformance_dir/$f is missing (set CONFORMANCE_DIR)"
done
conformance_dir="$(cd "$conformance_dir" && pwd -P)"

# --- venv ---------------------------------------------------------------------------------
# Reinstalled only when the suite's requirements change: a stamp holds their hash.

install_venv() {
    local extra="pytest-timeout pytest-xdist" want
    want="$(cat "$s3tests_dir/requirements.txt" - <<<"$extra" | sha256sum | cut -d' ' -f1)"
    if [[ -x "$venv/bin/pytest" && "$(cat "$venv/.tessera-requirements" 2>/dev/null)" == "$want" ]]; then
        return 0
    fi
    log "installing the suite's requirements into $venv"
    [[ -x "$venv/bin/python" ]] || python3 -m venv "$venv"
    # shellcheck disable=SC2086 # $extra is a list of package names
    "$venv/bin/pip" install -q -r "$s3tests_dir/requirements.txt" $extra
    echo "$want" >"$venv/.tessera-requirements"
}

# --- server (as in clients-smoke.sh) ------------------------------------------------------

work=""

cleanup() {
    local rc=$?
    tessera_stop
    # The server's log is kept in $out; only its data goes.
    [[ -z "$work" ]] || rm -rf "$work"
    exit "$rc"
}

# shellcheck source=scripts/lib/tessera-server.sh
source "$repo_root/scripts/lib/tessera-server.sh"

start_server() {
    work="$(mktemp -d /tmp/tessera-s3tests-data.XXXXXX)"
    tessera_start "$work/data" "$out/server.log" || die "the server did not start: see $out/server.log"
}

# --- main -----------------------------------------------------------------------------------

install_venv
mkdir -p "$out"
rm -f "$out/junit.xml" "$out/summary.txt" "$out/pytest.log"
trap cleanup EXIT
trap 'exit 130' INT TERM

if [[ -n "${TESSERA_ENDPOINT:-}" ]]; then
    : "${TESSERA_ACCESS_KEY:?TESSERA_ENDPOINT is set: set TESSERA_ACCESS_KEY too}"
    : "${TESSERA_SECRET_KEY:?TESSERA_ENDPOINT is set: set TESSERA_SECRET_KEY too}"
else
    start_server
fi
[[ "$TESSERA_ENDPOINT" =~ ^http://([^:/]+):([0-9]+)/?$ ]] ||
    die "TESSERA_ENDPOINT must look like http://HOST:PORT (the suite's config here is plain http)"
host="${BASH_REMATCH[1]}"
port="${BASH_REMATCH[2]}"

# The suite's config: one user, whose keys the alt/tenant/iam sections reuse.
sh "$conformance_dir/mk_conf.sh" "$host" "$port" "$TESSERA_ACCESS_KEY" "$TESSERA_SECRET_KEY" >"$out/s3t.conf"
# shellcheck source=/dev/null # lives in shared/, outside the repo
. "$conformance_dir/core_selection.sh"

log "running the core selection against $TESSERA_ENDPOINT (log: $out/pytest.log)"
set +e
(
    cd "$s3tests_dir"
    PYTHONPATH="$conformance_dir:$s3tests_dir" S3TEST_CONF="$out/s3t.conf" \
        timeout --kill-after=30 "$run_timeout_secs" \
        "$venv/bin/pytest" -q -p no:cacheprovider -p s3conf_compat --timeout="$test_timeout_secs" -n "$jobs" \
        s3tests/functional/test_s3.py -k "$CORE_K" -m "$CORE_M" --junitxml="$out/junit.xml" "$@"
) >"$out/pytest.log" 2>&1
pytest_rc=$?
set -e
tail -n 3 "$out/pytest.log" >&2
# pytest: 0 all passed, 1 some failed; anything else means the run itself broke.
if ((pytest_rc > 1)) || [[ ! -s "$out/junit.xml" ]]; then
    die "pytest exited with status $pytest_rc (124: time limit of ${run_timeout_secs}s): see $out/pytest.log"
fi

# Failures grouped by message, as the README does it.
python3 "$conformance_dir/summarize.py" "$out/junit.xml" 25 | tee "$out/summary.txt"
read -r n_passed n_failed n_skipped < <(
    python3 - "$out/junit.xml" <<'PY'
import sys, xml.etree.ElementTree as ET
passed = failed = skipped = 0
for case in ET.parse(sys.argv[1]).iter("testcase"):
    if case.find("skipped") is not None:
        skipped += 1
    elif case.find("failure") is not None or case.find("error") is not None:
        failed += 1
    else:
        passed += 1
print(passed, failed, skipped)
PY
)
echo "s3-tests: ${n_passed} passed, ${n_failed} failed, ${n_skipped} skipped" | tee -a "$out/summary.txt"
log "junit: $out/junit.xml, summary: $out/summary.txt"
((n_passed >= min_passed)) || die "fewer than S3TESTS_MIN_PASSED=$min_passed tests passed"
