#!/usr/bin/env bash
# Installs what Tessera's build, tests and benchmarks need on a fresh Debian machine.
# Idempotent and quiet: does nothing for what is already there.
#   libisal-dev  Intel ISA-L, the fastest erasure codec (engine/build.rs links it when present)
#   fio          the disk reference for scripts/bench-engine.sh
#   pkg-config   lets build scripts find system libraries
#   make         builds jemalloc (tikv-jemalloc-sys), the server's allocator
#   protobuf-compiler  etcd-client's build (gRPC stubs)
#   etcd-server  the etcd the cluster tests start (Debian's, 3.4)
set -euo pipefail

need=()
dpkg -s libisal-dev >/dev/null 2>&1 || need+=(libisal-dev)
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v make >/dev/null 2>&1 || need+=(make)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)

if ((${#need[@]})); then
    echo "install-deps: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
