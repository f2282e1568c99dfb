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
