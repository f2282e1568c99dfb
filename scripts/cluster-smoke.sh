#!/usr/bin/env bash
# scripts/cluster.sh as a user runs it: up, an object through one gateway and back
# through another with the AWS CLI, a node killed (reads decode around it) and
# started again, status, down. Run by scripts/test.sh after clients-smoke.sh (which
# installs the AWS CLI into ~/.cache/tessera-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
AWS="${AWS_CLI:-$HOME/.cache/tessera-venv/bin/aws}"
[ -x "$AWS" ] || { echo "cluster-smoke: no AWS CLI at $AWS (scripts/clients-smoke.sh installs it)" >&2; exit 1; }
export TESSERA_CLUSTER_DIR="${TESSERA_CLUSTER_DIR:-$(mktemp -d)/cluster}"
work=$(mktemp -d)
cleanup() { scripts/cluster.sh down >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT

scripts/cluster.sh up >"$work/up.log" 2>&1 || { cat "$work/up.log"; exit 1; }
eval "$(scripts/cluster.sh env)"
IFS=, read -r g1 g2 g3 <<<"$TESSERA_GATEWAYS"
head -c 7000000 /dev/urandom >"$work/obj"
"$AWS" --endpoint-url "$g1" s3 mb s3://smoke >/dev/null
"$AWS" --endpoint-url "$g1" s3 cp --only-show-errors "$work/obj" s3://smoke/obj
"$AWS" --endpoint-url "$g2" s3 cp --only-show-errors s3://smoke/obj "$work/back"
cmp "$work/obj" "$work/back"
scripts/cluster.sh kill-node 2 >/dev/null
"$AWS" --endpoint-url "$g3" s3 cp --only-show-errors s3://smoke/obj "$work/degraded"
cmp "$work/obj" "$work/degraded"
status=$(scripts/cluster.sh status)
grep -q "node2     stopped" <<<"$status"
scripts/cluster.sh start-node 2 >/dev/null
listed=$("$AWS" --endpoint-url "$g3" s3 ls s3://smoke/)
grep -q " 7000000 obj" <<<"$listed"
scripts/cluster.sh down >/dev/null
echo "cluster-smoke: passed (up, put/get across gateways, a node killed and restarted, down)"
