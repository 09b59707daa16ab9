#!/usr/bin/env bash
# The scale benchmark behind docs/benchmarks.md "## Scale" (issue #7): does
# the broker's cost per request grow with the number of replicas or
# endpoints, and what does a queued request cost it in memory?
#
#   bench/scale.sh [--smoke] [--build-dir DIR] [--out DIR] [--duration S] [--reps N]
#
# Each run starts its own controller and broker (`zserve controller`,
# `zserve broker`, separate processes) and bench/sim_replicas, which
# simulates the replicas of backend `echo` in one process (one connection
# each), then loads one endpoint with `zserve bench` (1000 in flight, 100 B,
# broker CPU per request from /proc):
#   - replicas R = 1, 10, 100, 1000 with max(1, 1000/R) in flight per replica,
#     so the backend's total capacity stays ~1000;
#   - 1 and 10 000 endpoints (all routed to `echo`, 2 replicas), loading one;
#   - the broker's memory per queued request: Q calls to an endpoint whose
#     backend has no replica (bench/queue_memory);
#   - the router alone, no sockets (bench/router_dispatch): nanoseconds per
#     request at R = 1 ... 10 000 with the same slots per replica.
# Smoke mode (CTest): R = 1, 10; 100 endpoints; Q = 2000; 1 s runs; the
# router alone at R = 1, 10.
#
# Results: OUT/scale.jsonl, one JSON object per run (the bench's line plus
# broker_rss_kb; the queue-memory line); a markdown table on stdout (medians
# over repetitions). Every process is started here and stopped by its PID.
set -euo pipefail

MODE=full
BUILD=build
OUT=""
DUR=""
REPS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) MODE=smoke ;;
    --build-dir) BUILD="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --duration) DUR="$2"; shift ;;
    --reps) REPS="$2"; shift ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "scale.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
BUILD=$(cd "$BUILD" && pwd)
OUT=${OUT:-$BUILD/bench-scale}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ZSERVE=$BUILD/zserve
BIN=$BUILD/bench
RESULTS=$OUT/scale.jsonl
: > "$RESULTS"

if [ "$MODE" = full ]; then
  REPLICAS="1 10 100 1000"; MANY_ENDPOINTS=10000; QUEUED=100000; DUR=${DUR:-5}; WARM=1
  ROUTER_REPLICAS=1,10,100,1000,10000; ROUTER_REQUESTS=2000000
else
  REPLICAS="1 10"; MANY_ENDPOINTS=100; QUEUED=2000; DUR=${DUR:-1}; WARM=0.5
  ROUTER_REPLICAS=1,10; ROUTER_REQUESTS=100000
fi
TOTAL_CAPACITY=1000  # in flight across the replicas, and the bench's in-flight count
ENDPOINT_REPLICAS=2

for b in "$ZSERVE" "$BIN/sim_replicas" "$BIN/queue_memory" "$BIN/free_ports" "$BIN/router_dispatch"; do
  [ -x "$b" ] || { echo "scale.sh: $b is not built" >&2; exit 1; }
done
# 1000 replicas are 1000 connections at the broker and 2000 descriptors here.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

# --- processes: started here, stopped by PID --------------------------------
PROG=scale.sh
# shellcheck source=bench/procs.sh
source "$(dirname "$0")/procs.sh"
trap stop_all EXIT

rss_kb() { awk '$1 == "VmRSS:" {print $2}' "/proc/$1/status"; }

# --- one stack: controller + broker (+ simulated replicas) -------------------
CLIENT_ADDR="" WORKER_ADDR="" BROKER_PID=0

# deployment FILE REPLICAS CAPACITY ENDPOINTS: backend echo; endpoint echo,
# and echo-00001.. up to ENDPOINTS in all; backend hold (no replica) and its
# endpoint when ENDPOINTS is 0.
deployment() {
  local file=$1 r=$2 c=$3 e=$4
  if [ "$e" = 0 ]; then
    cat > "$file" <<YAML
backends:
  hold:
    handler: echo
    num_replicas: 0
    max_queued_requests: 10000000
endpoints:
  hold:
    backend: hold
    timeout_ms: 3600000
YAML
    return
  fi
  {
    printf 'backends:\n  echo:\n    handler: echo\n    num_replicas: %d\n' "$r"
    printf '    max_concurrent_queries: %d\n' "$c"
    printf 'endpoints:\n  echo:\n    backend: echo\n'
    awk -v n="$e" 'BEGIN { for (i = 1; i < n; i++) printf "  echo-%05d:\n    backend: echo\n", i }'
  } > "$file"
}

# True when the broker's STATUS shows a loaded configuration with ENDPOINT
# and BACKEND (keys of its JSON objects come sorted).
broker_configured() {
  local s
  s=$("$ZSERVE" status --broker "$CLIENT_ADDR" --json --timeout 1000 2>/dev/null) || return 1
  grep -q '"config_version":[1-9]' <<< "$s" &&
    grep -q "\"$1\":{\"errors_last_minute\"" <<< "$s" &&
    grep -q "\"$2\":{\"configured\":true" <<< "$s"
}

# stack_up NAME REPLICAS CAPACITY ENDPOINTS [BROKER FLAGS...]: REPLICAS 0
# starts no simulator; ENDPOINTS 0 is the queue deployment.
stack_up() {
  local name=$1 r=$2 c=$3 e=$4 dir="$OUT/$1" ports i
  shift 4
  rm -rf "$dir"
  mkdir -p "$dir"
  deployment "$dir/deployment.yaml" "$r" "$c" "$e"
  mapfile -t ports < <("$BIN/free_ports" 4)
  local admin="tcp://127.0.0.1:${ports[0]}" pub="tcp://127.0.0.1:${ports[1]}"
  CLIENT_ADDR="tcp://127.0.0.1:${ports[2]}"
  WORKER_ADDR="tcp://127.0.0.1:${ports[3]}"
  start_bg "$name/controller" "$ZSERVE" controller --store "$dir/controller.db" \
    --config "$dir/deployment.yaml" --admin-bind "$admin" --pub-bind "$pub" \
    --metrics-bind 127.0.0.1:0 --log-level warn
  local controller=$LAST_PID
  start_bg "$name/broker" "$ZSERVE" broker --client-bind "$CLIENT_ADDR" \
    --worker-bind "$WORKER_ADDR" --controller "$admin" --controller-pub "$pub" \
    --metrics-bind 127.0.0.1:0 --log-level warn "$@"
  BROKER_PID=$LAST_PID
  local endpoint=echo backend=echo
  [ "$e" = 0 ] && endpoint=hold backend=hold
  for ((i = 0; i < 600; i++)); do  # at most 60 s: 10 000 endpoints take a while
    broker_configured "$endpoint" "$backend" && break
    kill -0 "$BROKER_PID" 2>/dev/null && kill -0 "$controller" 2>/dev/null || break
    sleep 0.1
  done
  if ! broker_configured "$endpoint" "$backend"; then
    echo "scale.sh: broker of $name never had its configuration; logs in $dir" >&2
    tail -n 20 "$dir/controller.err" "$dir/broker.err" >&2 || true
    return 1
  fi
  if [ "$r" -gt 0 ]; then
    start_bg "$name/sim" "$BIN/sim_replicas" --broker "$WORKER_ADDR" --backend echo \
      --replicas "$r" --capacity "$c"
    wait_line "$dir/sim.out" "^ready $r\$" 60 "$LAST_PID"
  fi
}

# bench_run NAME ENDPOINT TAGS...: one closed-loop run, its JSON line (with the
# broker's RSS after it) appended to the results.
bench_run() {
  local name=$1 endpoint=$2 line tags=() t
  shift 2
  for t in "$@"; do tags+=(--tag "$t"); done
  line=$("$ZSERVE" bench --broker "$CLIENT_ADDR" --endpoint "$endpoint" \
    --inflight "$TOTAL_CAPACITY" --size 100 --duration "$DUR" --warmup "$WARM" --drain 10 \
    --json --broker-pid "$BROKER_PID" "${tags[@]}" 2> "$OUT/$name/bench.err")
  [ -n "$line" ] || { echo "scale.sh: no result from $name" >&2; return 1; }
  echo "{\"broker_rss_kb\":$(rss_kb "$BROKER_PID"),${line#\{}" >> "$RESULTS"
}

for ((rep = 1; rep <= REPS; rep++)); do
  for r in $REPLICAS; do
    c=$((TOTAL_CAPACITY / r)); [ "$c" -ge 1 ] || c=1
    echo "== rep $rep: $r replicas x $c in flight" >&2
    stack_up "r$r" "$r" "$c" 1
    bench_run "r$r" echo "run=replicas" "rep=$rep" "replicas=$r" "capacity=$c" "endpoints=1"
    stop_all
  done
  for e in 1 "$MANY_ENDPOINTS"; do
    c=$((TOTAL_CAPACITY / ENDPOINT_REPLICAS))
    target=echo
    [ "$e" -gt 1 ] && target=$(printf 'echo-%05d' $((e - 1)))
    echo "== rep $rep: $e endpoints, $ENDPOINT_REPLICAS replicas, loading $target" >&2
    stack_up "e$e" "$ENDPOINT_REPLICAS" "$c" "$e"
    bench_run "e$e" "$target" "run=endpoints" "rep=$rep" "replicas=$ENDPOINT_REPLICAS" \
      "capacity=$c" "endpoints=$e"
    stop_all
  done
  echo "== rep $rep: broker memory per queued request, $QUEUED queued" >&2
  stack_up queue 0 0 0 --max-inflight-per-client $((QUEUED + 1000)) \
    --max-queued $((QUEUED > 1000000 ? QUEUED : 1000000))
  line=$("$BIN/queue_memory" --broker "$CLIENT_ADDR" --endpoint hold --count "$QUEUED" \
    --size 100 --broker-pid "$BROKER_PID" --wait 60 2> "$OUT/queue/queue_memory.err") || {
    echo "scale.sh: queue_memory failed:" >&2
    cat "$OUT/queue/queue_memory.err" >&2
    exit 1
  }
  echo "{\"rep\":$rep,${line#\{}" >> "$RESULTS"
  stop_all
  echo "== rep $rep: the router alone, replicas $ROUTER_REPLICAS" >&2
  "$BIN/router_dispatch" --replicas "$ROUTER_REPLICAS" --inflight "$TOTAL_CAPACITY" \
    --requests "$ROUTER_REQUESTS" --json | sed "s/^{/{\"rep\":$rep,/" >> "$RESULTS"
done
echo "== $(wc -l < "$RESULTS") runs in $RESULTS" >&2

# --- the table: medians over repetitions ------------------------------------
field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2- | tr -d '"'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# metric_of RUN KEY VALUE METRIC: the median of METRIC over the lines of that run.
metric_of() {
  grep "\"run\":\"$1\"" "$RESULTS" | grep "\"$2\":\"$3\"" | while read -r l; do field "$4" <<< "$l"; done | median
}
row() {  # RUN KEY VALUE LABEL
  local rps p99 cpu rss err
  rps=$(metric_of "$1" "$2" "$3" throughput_rps)
  p99=$(metric_of "$1" "$2" "$3" p99_us)
  cpu=$(metric_of "$1" "$2" "$3" broker_cpu_us_per_request)
  rss=$(metric_of "$1" "$2" "$3" broker_rss_kb)
  err=$(grep "\"run\":\"$1\"" "$RESULTS" | grep "\"$2\":\"$3\"" | while read -r l; do field error_count <<< "$l"; done | awk '{ s += $1 } END { print s + 0 }')
  printf '| %s | %.0f | %.0f | %.2f | %.1f | %s |\n' "$4" "$rps" "$p99" "$cpu" "$(awk -v k="$rss" 'BEGIN { print k / 1024 }')" "$err"
}
echo
echo "Medians of $REPS repetition(s); $TOTAL_CAPACITY in flight, 100 B payloads, ${DUR} s measured."
echo
echo "| replicas (in flight each) | throughput (req/s) | p99 (µs) | broker CPU (µs/req) | broker RSS (MiB) | errors |"
echo "|---|---|---|---|---|---|"
for r in $REPLICAS; do
  c=$((TOTAL_CAPACITY / r)); [ "$c" -ge 1 ] || c=1
  row replicas replicas "$r" "$r ($c)"
done
echo
echo "| endpoints ($ENDPOINT_REPLICAS replicas) | throughput (req/s) | p99 (µs) | broker CPU (µs/req) | broker RSS (MiB) | errors |"
echo "|---|---|---|---|---|---|"
for e in 1 "$MANY_ENDPOINTS"; do row endpoints endpoints "$e" "$e"; done
echo
bpr=$(grep '"kind":"queue_memory"' "$RESULTS" | while read -r l; do field bytes_per_queued_request <<< "$l"; done | median)
printf 'queue memory: %.0f bytes per queued request (%d queued, 100 B payloads)\n' "$bpr" "$QUEUED"
echo
echo "The router alone (bench/router_dispatch: admit, choose a replica, complete; no sockets):"
echo
echo "| replicas (slots each) | router ns per request | × 1 replica's |"
echo "|---|---|---|"
base=""
for r in ${ROUTER_REPLICAS//,/ }; do
  c=$((TOTAL_CAPACITY / r)); [ "$c" -ge 1 ] || c=1
  ns=$(grep '"kind":"router"' "$RESULTS" | grep "\"replicas\":$r," | while read -r l; do field ns_per_request <<< "$l"; done | median)
  base=${base:-$ns}
  printf '| %s (%s) | %.0f | %.2f |\n' "$r" "$c" "$ns" "$(awk -v a="$ns" -v b="$base" 'BEGIN { print a / b }')"
done
