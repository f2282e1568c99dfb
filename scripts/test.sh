#!/usr/bin/env bash
# Runs every test of the workspace. Installs what the tests need first.
# Build artefacts go to a cache outside the clone so repeated runs are incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/tessera-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# install-deps.sh installed libisal-dev: build (and test) the ISA-L codec for sure.
export TESSERA_ISAL="${TESSERA_ISAL:-1}"

# Unit, crash, bitrot, compaction, glommio-backend and binary end-to-end tests.
cargo test --workspace --locked
# The benches must keep compiling; they are run by scripts/bench-*.sh, not here.
cargo build --workspace --benches --locked
# Real clients against the real binary: AWS CLI, boto3, s3cmd and rclone (installed
# into ~/.cache/tessera-venv and with apt when missing). The debug binary cargo test
# just built is enough to check behaviour.
TESSERA_BIN="$CARGO_TARGET_DIR/debug/tessera" bash scripts/clients-smoke.sh
# The local cluster script as a user runs it (9 nodes, 3 gateways, the AWS CLI).
TESSERA_BIN="$CARGO_TARGET_DIR/debug/tessera" bash scripts/cluster-smoke.sh
