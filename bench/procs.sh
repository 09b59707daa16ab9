# Process handling shared by bench/run.sh and bench/scale.sh (sourced).
# Every process is started here in the background and stopped by its PID.
# Needs OUT (where NAME.out/NAME.err go) and PROG (the script's name, for
# messages) set by the caller.

STARTED=()
LAST_PID=0

start_bg() {  # NAME CMD...: stdout to OUT/NAME.out, stderr to OUT/NAME.err
  local name=$1; shift
  # Emptied here, not by the background job's own redirection: that runs
  # after the fork, and a wait_line in between would read the last run's
  # lines (it did: "no broker among up's children").
  : > "$OUT/$name.out"
  : > "$OUT/$name.err"
  "$@" >> "$OUT/$name.out" 2>> "$OUT/$name.err" &
  LAST_PID=$!
  STARTED+=("$LAST_PID")
}

# Waits until FILE has a line matching PATTERN, at most SECONDS, while PID lives.
wait_line() {
  local file=$1 pattern=$2 seconds=$3 pid=$4 i
  for ((i = 0; i < seconds * 20; i++)); do
    grep -q -- "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05  # the condition is re-checked; the bound is what counts
  done
  echo "$PROG: no '$pattern' in $file; its stderr:" >&2
  tail -n 20 "${file%.out}.err" >&2 || true
  return 1
}

# SIGTERM to every process started here at once (each takes a moment to
# exit), a bounded wait for each, then SIGKILL for any left.
stop_all() {
  local pid i
  for pid in "${STARTED[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${STARTED[@]}"; do
    for ((i = 0; i < 300; i++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.05
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  STARTED=()
}
