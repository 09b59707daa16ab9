#!/usr/bin/env bash
# The comparison behind docs/benchmarks.md: zserve (client -> broker ->
# worker, 1 and 2 replicas), NATS request-reply with a queue group (1 and 2
# responders), the raw ZeroMQ limit (DEALER -> ROUTER echo, no broker) and
# a baseline of zserve's path in raw ZeroMQ (DEALER -> zmq_forwarder -> 1 or
# 2 ROUTER echo servers), at the same payloads and in-flight counts,
# measured by the same load generator (bench/load_generator.h) in one run on
# one machine.
#
#   bench/run.sh [--smoke] [--build-dir DIR] [--out DIR] [--docs DIR]
#                [--halt-poll-ns N]
#
# Full mode (`make bench`): payloads 100 B and 4 KiB, 1/100/1000 in flight,
# 3 repetitions interleaved, then open loop at 25/50/75 % of zserve's peak and
# batching; writes DOCS/benchmarks.md and DOCS/benchmarks.png.
# Smoke mode (CTest): one short repetition of each kind, results only.
#
# --halt-poll-ns N (root, a KVM guest with the cpuidle-haltpoll driver): sets
# the guest's halt polling (/sys/module/haltpoll/parameters/guest_halt_poll_ns;
# the kernel's default is 200000, some hosts ship 0) for the run and puts the
# old value back at exit. The setting in force is written under the machine.
#
# Every server is started here on 127.0.0.1 with ports picked here, and
# stopped by its PID. Results: OUT/results.jsonl, one JSON object per run.
set -euo pipefail

MODE=full
BUILD=build
OUT=""
DOCS=docs
unset HALT_POLL_NS  # set only by --halt-poll-ns
while [ $# -gt 0 ]; do
  case "$1" in
    --build-dir|--out|--docs|--halt-poll-ns)
      [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; } ;;
  esac
  case "$1" in
    --smoke) MODE=smoke ;;
    --build-dir) BUILD="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --docs) DOCS="$2"; shift ;;
    --halt-poll-ns) HALT_POLL_NS=$2; shift ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "run.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
HALT_POLL=/sys/module/haltpoll/parameters/guest_halt_poll_ns
if [ -n "${HALT_POLL_NS+set}" ]; then
  # Decimal without leading zeros: the kernel would read 010 as octal.
  if ! [[ "$HALT_POLL_NS" =~ ^(0|[1-9][0-9]{0,8})$ ]]; then
    echo "run.sh: --halt-poll-ns needs a number of nanoseconds, not '$HALT_POLL_NS'" >&2
    exit 2
  fi
  if [ ! -w "$HALT_POLL" ]; then
    echo "run.sh: --halt-poll-ns: cannot write $HALT_POLL (needs root and the cpuidle-haltpoll driver)" >&2
    exit 2
  fi
fi
BUILD=$(cd "$BUILD" && pwd)
OUT=${OUT:-$BUILD/bench-results}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
ZSERVE=$BUILD/zserve
BIN=$BUILD/bench
RESULTS=$OUT/results.jsonl
: > "$RESULTS"

if [ "$MODE" = full ]; then
  SIZES="100 4096"; INFLIGHT=1,100,1000; REPS=3; DUR=4; WARM=1; REPLICAS="1 2"
  OPEN_FRACTIONS="0.25 0.5 0.75"; BATCH_SIZES="1 8 32"
else
  SIZES="100"; INFLIGHT=1,100; REPS=1; DUR=0.5; WARM=0.2; REPLICAS="1"
  OPEN_FRACTIONS=""; BATCH_SIZES=""
fi
# zserve's in-flight cap per replica; the default (8) is for real handlers.
MAX_CQ=${ZSERVE_BENCH_MAX_CQ:-1000}
# Open loop: the arrivals due are sent together this often (microseconds).
SEND_EVERY=${ZSERVE_BENCH_SEND_EVERY_US:-100}
LOAD=(--duration "$DUR" --warmup "$WARM" --drain 10 --json)

HAVE_NATS=1
if ! command -v nats-server >/dev/null || [ ! -x "$BIN/nats_bench_client" ]; then
  HAVE_NATS=0
  echo "run.sh: NATS skipped: needs nats-server and the bench/nats_* binaries (libnats-dev)" >&2
fi

# --- processes: started here, stopped by PID --------------------------------
PROG=run.sh
# shellcheck source=bench/procs.sh
source "$(dirname "$0")/procs.sh"
HALT_POLL_WAS=""
on_exit() {
  trap '' INT TERM HUP  # a second Ctrl-C must not cut the clean-up short
  if [ -n "$HALT_POLL_WAS" ]; then echo "$HALT_POLL_WAS" > "$HALT_POLL" || true; fi
  stop_all
}
trap on_exit EXIT
trap "exit 130" INT
trap "exit 143" TERM
if [ -n "${HALT_POLL_NS+set}" ]; then
  HALT_POLL_WAS=$(cat "$HALT_POLL")
  if ! echo "$HALT_POLL_NS" 2>/dev/null > "$HALT_POLL"; then
    echo "run.sh: --halt-poll-ns: the kernel refused $HALT_POLL_NS for $HALT_POLL" >&2
    exit 2
  fi
  echo "== guest_halt_poll_ns $HALT_POLL_NS for this run (was $HALT_POLL_WAS)" >&2
fi

# --- the four systems --------------------------------------------------------
ZS_ADDR="" ZS_BROKER_PID=0
zserve_up() {  # REPLICAS [MAX_BATCH_SIZE [HANDLER]]
  local replicas=$1 batch=${2:-1} handler=${3:-echo} dir="$OUT/zserve-r$1-b${2:-1}-${3:-echo}"
  mkdir -p "$dir"
  cat > "$dir/deployment.yaml" <<YAML
backends:
  echo:
    handler: $handler
    num_replicas: $replicas
    max_batch_size: $batch
    max_concurrent_queries: $MAX_CQ
endpoints:
  echo:
    backend: echo
YAML
  # Every port free, none fixed (flags that this build of `up` has).
  local extra=() help
  help=$("$ZSERVE" up --help)
  grep -q -- --state-dir <<< "$help" && extra+=(--state-dir "$dir/state")
  grep -q -- --metrics-port <<< "$help" && extra+=(--metrics-port 0)
  grep -q -- --http-port <<< "$help" && extra+=(--http-port 0)
  start_bg "zserve-up" "$ZSERVE" up "$dir/deployment.yaml" --client-port 0 --worker-port 0 \
    --admin-port 0 --pub-port 0 --log-level warn "${extra[@]}"
  local up=$LAST_PID
  wait_line "$OUT/zserve-up.out" "Ctrl-C stops everything" 60 "$up"
  ZS_ADDR=$(awk '$1 == "clients" {print $2}' "$OUT/zserve-up.out")
  # The broker is the child of `up` whose first argument is "broker".
  ZS_BROKER_PID=0
  local c
  for c in $(cat /proc/"$up"/task/*/children); do
    if [ "$(tr '\0' '\n' < /proc/"$c"/cmdline | sed -n 2p)" = broker ]; then ZS_BROKER_PID=$c; fi
  done
  [ "$ZS_BROKER_PID" -gt 0 ] || { echo "run.sh: no broker among up's children" >&2; return 1; }
}

NATS_URL="" NATS_PID=0
nats_up() {  # REPLICAS asap|buffered
  local replicas=$1 mode=$2 port i flags=()
  [ "$mode" = asap ] && flags=(--send-asap)
  port=$("$BIN/free_ports" 1)
  start_bg "nats-server" nats-server -a 127.0.0.1 -p "$port"
  NATS_PID=$LAST_PID
  wait_line "$OUT/nats-server.err" "Server is ready" 30 "$NATS_PID"
  NATS_URL="nats://127.0.0.1:$port"
  for ((i = 1; i <= replicas; i++)); do
    start_bg "nats-responder-$i" "$BIN/nats_responder" --url "$NATS_URL" "${flags[@]}"
    wait_line "$OUT/nats-responder-$i.out" "^ready" 30 "$LAST_PID"
  done
}

ZMQ_ADDR=""
zmq_up() {
  start_bg "zmq-echo" "$BIN/zmq_echo_server"
  wait_line "$OUT/zmq-echo.out" "listening on" 30 "$LAST_PID"
  ZMQ_ADDR=$(awk '/listening on/ {print $3}' "$OUT/zmq-echo.out")
}

FWD_ADDR="" FWD_PID=0
fwd_up() {  # REPLICAS: that many echo servers behind one zmq_forwarder
  local replicas=$1 i backends=()
  for ((i = 1; i <= replicas; i++)); do
    start_bg "zmq-echo-$i" "$BIN/zmq_echo_server"
    wait_line "$OUT/zmq-echo-$i.out" "listening on" 30 "$LAST_PID"
    backends+=(--backend "$(awk '/listening on/ {print $3}' "$OUT/zmq-echo-$i.out")")
  done
  start_bg "zmq-forwarder" "$BIN/zmq_forwarder" "${backends[@]}"
  FWD_PID=$LAST_PID
  wait_line "$OUT/zmq-forwarder.out" "listening on" 30 "$FWD_PID"
  FWD_ADDR=$(awk '/listening on/ {print $3}' "$OUT/zmq-forwarder.out")
}

# Runs a load client, appending its JSON lines to the results.
run_load() { "$@" "${LOAD[@]}" >> "$RESULTS"; }

machine() {
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores"
  echo "- memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "- kernel: $(uname -sr); $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "- libzmq $(dpkg-query -W -f='${Version}' libzmq5 2>/dev/null || echo '?'),"\
       "nats-server $(dpkg-query -W -f='${Version}' nats-server 2>/dev/null || echo '-'),"\
       "libnats $(dpkg-query -W -f='${Version}' libnats3.4 2>/dev/null || echo '-')"
  local idle=/sys/devices/system/cpu/cpuidle
  if [ -r "$idle/current_driver" ]; then
    echo -n "- idle: cpuidle driver $(cat "$idle/current_driver"), governor $(cat "$idle/current_governor_ro" 2>/dev/null || echo '?')"
    if [ -r "$HALT_POLL" ]; then echo ", guest_halt_poll_ns $(cat "$HALT_POLL") (kernel default 200000)"; else echo; fi
  fi
  echo "- build: $(grep -m1 CMAKE_BUILD_TYPE "$BUILD/CMakeCache.txt" | cut -d= -f2), date $(date -u +%F)"
}

# --- closed loop: every system, interleaved repetitions ----------------------
for ((rep = 1; rep <= REPS; rep++)); do
  echo "== repetition $rep of $REPS" >&2
  zmq_up
  for size in $SIZES; do
    run_load "$BIN/zmq_bench_client" --server "$ZMQ_ADDR" --inflight "$INFLIGHT" --size "$size" \
      --tag "rep=$rep,replicas=1,kind=closed"
  done
  stop_all
  for r in $REPLICAS; do
    zserve_up "$r"
    for size in $SIZES; do
      run_load "$ZSERVE" bench --broker "$ZS_ADDR" --inflight "$INFLIGHT" --size "$size" \
        --broker-pid "$ZS_BROKER_PID" --tag "rep=$rep,replicas=$r,kind=closed"
    done
    stop_all
    if [ "$HAVE_NATS" = 1 ]; then
      # The client's and the responders' fastest setting per mode: write at
      # once for one request in flight, buffered for many.
      for mode in asap buffered; do
        nats_up "$r" "$mode"
        inflight=$(tr ',' '\n' <<< "$INFLIGHT" | awk -v m="$mode" \
          '(m == "asap" && $1 == 1) || (m == "buffered" && $1 > 1)' | paste -sd,)
        if [ -n "$inflight" ]; then
          for size in $SIZES; do
            run_load "$BIN/nats_bench_client" --url "$NATS_URL" --send-mode "$mode" \
              --inflight "$inflight" --size "$size" --broker-pid "$NATS_PID" \
              --tag "rep=$rep,replicas=$r,kind=closed"
          done
        fi
        stop_all
      done
    fi
    fwd_up "$r"
    for size in $SIZES; do
      run_load "$BIN/zmq_bench_client" --system zmq-forwarder --server "$FWD_ADDR" \
        --inflight "$INFLIGHT" --size "$size" --broker-pid "$FWD_PID" \
        --tag "rep=$rep,replicas=$r,kind=closed"
    done
    stop_all
  done
done

# --- open loop: Poisson arrivals at fractions of zserve's peak ---------------
top=${REPLICAS##* }
if [ -n "$OPEN_FRACTIONS" ]; then
  peak=$("$BIN/bench_report" peak --results "$RESULTS" --system zserve --replicas "$top" --size 100)
else
  peak=2000  # smoke: one low rate
  OPEN_FRACTIONS=1
fi
rates=$(for f in $OPEN_FRACTIONS; do awk -v p="$peak" -v f="$f" 'BEGIN {printf "%d\n", p * f}'; done | paste -sd,)
echo "== open loop at $rates requests/s (zserve peak $peak)" >&2
for ((rep = 1; rep <= REPS; rep++)); do
  zserve_up "$top"
  run_load "$ZSERVE" bench --broker "$ZS_ADDR" --rate "$rates" --send-every "$SEND_EVERY" \
    --size 100 --broker-pid "$ZS_BROKER_PID" --tag "rep=$rep,replicas=$top,kind=open"
  stop_all
  if [ "$HAVE_NATS" = 1 ]; then
    nats_up "$top" buffered
    run_load "$BIN/nats_bench_client" --url "$NATS_URL" --send-mode buffered --rate "$rates" \
      --send-every "$SEND_EVERY" --size 100 --broker-pid "$NATS_PID" \
      --tag "rep=$rep,replicas=$top,kind=open"
    stop_all
  fi
  zmq_up
  run_load "$BIN/zmq_bench_client" --server "$ZMQ_ADDR" --rate "$rates" \
    --send-every "$SEND_EVERY" --size 100 \
    --tag "rep=$rep,replicas=1,kind=open"
  stop_all
  fwd_up "$top"
  run_load "$BIN/zmq_bench_client" --system zmq-forwarder --server "$FWD_ADDR" --rate "$rates" \
    --send-every "$SEND_EVERY" --size 100 --broker-pid "$FWD_PID" \
    --tag "rep=$rep,replicas=$top,kind=open"
  stop_all
done

# --- batching: max_batch_size under saturation, the `batch` handler ---------
# (a model on an accelerator: 1 ms per handler call plus 10 µs per request)
for batch in $BATCH_SIZES; do
  for ((rep = 1; rep <= REPS; rep++)); do
    zserve_up "$top" "$batch" batch
    run_load "$ZSERVE" bench --broker "$ZS_ADDR" --inflight 1000 --size 100 \
      --broker-pid "$ZS_BROKER_PID" --tag "rep=$rep,replicas=$top,kind=batch,max_batch_size=$batch"
    stop_all
  done
done

echo "== $(wc -l < "$RESULTS") runs in $RESULTS" >&2
if [ "$MODE" = full ]; then
  machine > "$OUT/machine.md"
  "$BIN/bench_report" write --results "$RESULTS" --machine "$OUT/machine.md" \
    --scale "$(dirname "$0")/scale.md" --profile "$(dirname "$0")/broker_profile.md" \
    --markdown "$DOCS/benchmarks.md" \
    --plot-dir "$OUT" --max-cq "$MAX_CQ" --duration "$DUR" --warmup "$WARM" --reps "$REPS"
  if command -v gnuplot >/dev/null; then
    gnuplot "$OUT/benchmarks.gp" && echo "== wrote $DOCS/benchmarks.png" >&2
  else
    echo "run.sh: gnuplot not found: no chart" >&2
  fi
fi
