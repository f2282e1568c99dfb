# shellcheck shell=bash
# Shared by the scripts that start their own `tessera server` (source it; bash).
#
#   tessera_start DATA_DIR LOG_FILE     builds the release binary unless TESSERA_BIN is set,
#                                       starts it on a free port with generated keys, waits for
#                                       /ready; sets TESSERA_ENDPOINT, TESSERA_ACCESS_KEY,
#                                       TESSERA_SECRET_KEY (exported) and tessera_pid.
#   tessera_stop                        SIGTERM and wait.
# Extra server arguments come from TESSERA_SERVER_ARGS (split on spaces). The caller's
# `log` function is used when it exists.

tessera_ready_secs_max=60
tessera_pid=""

tessera_free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

tessera_random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

tessera_log() {
    if declare -F log >/dev/null; then log "$@"; else echo "$*" >&2; fi
}

tessera_start() {
    local data=$1 logfile=$2 bin="${TESSERA_BIN:-}" repo_root
    repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
    if [[ -z "$bin" ]]; then
        bash "$repo_root/scripts/install-deps.sh"
        export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
        tessera_log "building tessera (release)"
        (cd "$repo_root" && cargo build --release -p tessera --locked)
        bin="$CARGO_TARGET_DIR/release/tessera"
    fi
    local port extra=()
    port="$(tessera_free_port)"
    read -ra extra <<<"${TESSERA_SERVER_ARGS:-}"
    TESSERA_ACCESS_KEY="TK$(tessera_random_hex 9 | tr a-f A-F)"
    TESSERA_SECRET_KEY="$(tessera_random_hex 20)"
    TESSERA_ENDPOINT="http://127.0.0.1:$port"
    export TESSERA_ACCESS_KEY TESSERA_SECRET_KEY TESSERA_ENDPOINT
    tessera_log "starting $bin server on 127.0.0.1:$port (log: $logfile)"
    "$bin" server --data "$data" --address "127.0.0.1:$port" "${extra[@]}" >"$logfile" 2>&1 &
    tessera_pid=$!
    local waited=0
    until curl -sf "$TESSERA_ENDPOINT/ready" >/dev/null; do
        if ! kill -0 "$tessera_pid" 2>/dev/null; then
            tessera_log "server exited before it was ready: see $logfile"
            return 1
        fi
        if ((waited >= tessera_ready_secs_max * 10)); then
            tessera_log "server not ready after ${tessera_ready_secs_max}s: see $logfile"
            return 1
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

tessera_stop_secs_max=30

# SIGTERM, then SIGKILL if it has not stopped within tessera_stop_secs_max.
tessera_stop() {
    if [[ -n "$tessera_pid" ]] && kill -0 "$tessera_pid" 2>/dev/null; then
        kill -TERM "$tessera_pid" 2>/dev/null || true
        local waited=0
        while kill -0 "$tessera_pid" 2>/dev/null && ((waited < tessera_stop_secs_max * 10)); do
            sleep 0.1
            waited=$((waited + 1))
        done
        if kill -0 "$tessera_pid" 2>/dev/null; then
            tessera_log "server did not stop within ${tessera_stop_secs_max}s of SIGTERM: killing it"
            kill -KILL "$tessera_pid" 2>/dev/null || true
        fi
        wait "$tessera_pid" 2>/dev/null || true
    fi
    tessera_pid=""
}
