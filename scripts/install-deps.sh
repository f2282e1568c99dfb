#!/usr/bin/env bash
# Installs what Tessera's build, tests and benchmarks need on a fresh Debian machine.
# Idempotent and quiet: does nothing for what is already there.
#   libisal-dev  Intel ISA-L, the fastest erasure codec (engine/build.rs links it when present)
#   fio          the disk reference for scripts/bench-engine.sh
#   pkg-config   lets build scripts find system libraries
#   make         builds jemalloc (tikv-jemalloc-sys), the server's allocator
#   protobuf-compiler, libprotobuf-dev  etcd-client's build (gRPC stubs; protoc's
#                well-known types such as descriptor.proto are in libprotobuf-dev, a
#                recommends that --no-install-recommends leaves out)
#   etcd-server  the etcd the cluster tests start (Debian's, 3.4)
#   cmake, g++, libcurl4-openssl-dev  rdkafka's `cmake-build` of librdkafka 2.12
#                (Debian's librdkafka 2.0.2 cannot talk to tansu)
#   tansu        the Kafka-compatible broker the cluster tests start (crates.io, with
#                its `dynostore` feature for memory:// storage); built once, debug
#                profile: 5.5 min on 2 cores against ~38 for release, and fast enough for
#                tests. Its build cache lives in ~/.cache/tansu-target.
set -euo pipefail

need=()
dpkg -s libisal-dev >/dev/null 2>&1 || need+=(libisal-dev)
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v make >/dev/null 2>&1 || need+=(make)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
dpkg -s libprotobuf-dev >/dev/null 2>&1 || need+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)
dpkg -s libcurl4-openssl-dev >/dev/null 2>&1 || need+=(libcurl4-openssl-dev)

if ((${#need[@]})); then
    echo "install-deps: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# tansu: TESSERA_TANSU, ~/.cargo/bin or PATH, else built now (the tests look in the same places).
if [ -z "${TESSERA_TANSU:-}" ] && [ ! -x "$HOME/.cargo/bin/tansu" ] && ! command -v tansu >/dev/null 2>&1; then
    echo "install-deps: building tansu (the Kafka-compatible test broker; once, ~6 min)"
    CARGO_TARGET_DIR="$HOME/.cache/tansu-target" cargo install tansu --version 0.6.0 --features dynostore --locked --debug --quiet
fi
