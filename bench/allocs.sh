#!/usr/bin/env bash
# Heap allocations per call of the broker, the worker and the client
# (issue #7: "no per-request allocation on the hot path"), counted by
# valgrind, so the figure does not depend on this machine's noise.
#
#   bench/allocs.sh [--build-dir DIR] [--calls N]
#
# Starts `zserve up` with one echo replica (max_batch_size 1,
# max_concurrent_queries 1000) and every process of it under valgrind, then
# `zserve bench --inflight 100 --size 100 --count N` under valgrind too, and
# prints each process's heap allocations divided by N. The figures include
# start-up and libzmq's own allocations (one per received payload frame):
# compare builds with the same N. Needs valgrind (apt-get install valgrind).
set -euo pipefail

BUILD=build
CALLS=20000
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir) BUILD="$2"; shift ;;
    --calls) CALLS="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "allocs.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
command -v valgrind > /dev/null || { echo "allocs.sh: needs valgrind" >&2; exit 1; }
BUILD=$(cd "$BUILD" && pwd)
OUT=$(mktemp -d /tmp/zserve-allocs.XXXXXX)
PROG=allocs.sh
. "$(dirname "$0")/procs.sh"
trap stop_all EXIT

cat > "$OUT/deployment.yaml" <<YAML
backends:
  echo:
    handler: echo
    num_replicas: 1
    max_batch_size: 1
    max_concurrent_queries: 1000
endpoints:
  echo:
    backend: echo
YAML
start_bg up valgrind --trace-children=yes --log-file="$OUT/vg.%p" "$BUILD/zserve" up \
  "$OUT/deployment.yaml" --client-port 0 --worker-port 0 --admin-port 0 --pub-port 0 \
  --metrics-port 0 --log-level warn --state-dir "$OUT/state"
wait_line "$OUT/up.out" "Ctrl-C stops" 120 "$LAST_PID"
ADDR=$(awk '$1 == "clients" {print $2}' "$OUT/up.out")
valgrind --log-file="$OUT/vg.client" "$BUILD/zserve" bench --broker "$ADDR" --endpoint echo \
  --inflight 100 --size 100 --count "$CALLS" --warmup 0 --json > "$OUT/bench.json" 2> "$OUT/bench.err"
stop_all
echo "| process | heap allocations | per call |"
echo "|---|---|---|"
for f in "$OUT"/vg.*; do
  role=$(awk '/Command:/ {print ($4 == "bench" ? "client (zserve bench)" : $4); exit}' "$f")
  allocs=$(sed -n 's/.*total heap usage: \([0-9,]*\) allocs.*/\1/p' "$f" | tr -d ,)
  case "$role" in broker|worker|client*) ;; *) continue ;; esac
  awk -v r="$role" -v a="$allocs" -v n="$CALLS" 'BEGIN {printf "| %s | %d | %.1f |\n", r, a, a / n}'
done
rm -rf "$OUT"
