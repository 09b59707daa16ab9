#!/usr/bin/env bash
# Runs libFuzzer targets built in BUILD_DIR (`make fuzz`, `make fuzz-smoke`;
# docs/security.md, "Fuzzing"):
#
#   fuzz/run.sh BUILD_DIR SECONDS TARGET...
#
# Each target first replays fuzz/regressions/<target>/ (inputs that once
# crashed it), then fuzzes for SECONDS starting from a copy of
# fuzz/corpus/<target>/ (new inputs stay in the copy, under /tmp, never in the
# repository). FUZZ_JOBS targets run at a time (default 2: one per core of
# the CI machine). Exits non-zero if any target crashes, leaks, trips ASan or
# UBSan, times out or runs out of memory, and prints the input that did it.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ $# -lt 3 ]; then
  echo "usage: fuzz/run.sh BUILD_DIR SECONDS TARGET..." >&2
  exit 2
fi
build=$1
seconds=$2
shift 2
jobs=${FUZZ_JOBS:-2}

work=$(mktemp -d /tmp/fuzz-run.XXXXXX)
# Any sanitizer report is fatal; libFuzzer then saves the input.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
flags=(-rss_limit_mb=2048 -malloc_limit_mb=2048 -max_len=4096 -detect_leaks=1 -timeout=30
  -print_final_stats=1)

dict_of() {
  case $1 in
    fuzz_deployment) echo fuzz/dicts/yaml.dict ;;
    fuzz_broker_*) echo fuzz/dicts/broker.dict ;;
    *) echo fuzz/dicts/zsp.dict ;;
  esac
}

# One target; its verdict goes to $work/<target>/result, details to stderr.
run_target() {
  local target=$1 bin=$build/fuzz/$1 dir=$work/$1
  mkdir -p "$dir/corpus" "$dir/artifacts"
  if [ ! -x "$bin" ]; then
    echo "FUZZ FAILURE: $bin is not built" >&2
    echo "$target: FAILED (not built)" > "$dir/result"
    return 1
  fi
  cp fuzz/corpus/"$target"/* "$dir/corpus/"

  if compgen -G "fuzz/regressions/$target/*" > /dev/null; then
    if ! "$bin" "${flags[@]}" -artifact_prefix="$dir/artifacts/" fuzz/regressions/"$target"/* \
        > "$dir/regressions.log" 2>&1; then
      local input
      input=$(grep '^Running: ' "$dir/regressions.log" | tail -1 | cut -d' ' -f2-)
      tail -n 60 "$dir/regressions.log" >&2
      echo "FUZZ FAILURE: $target fails on the regression input $input" >&2
      echo "  log: $dir/regressions.log" >&2
      echo "$target: FAILED on regression input $input" > "$dir/result"
      return 1
    fi
  fi

  echo "== $target: fuzzing for ${seconds}s in $dir"
  "$bin" "${flags[@]}" -max_total_time="$seconds" -dict="$(dict_of "$target")" \
    -artifact_prefix="$dir/artifacts/" "$dir/corpus" > "$dir/fuzz.log" 2>&1
  local rc=$? execs cov findings
  execs=$(grep -E '^stat::average_exec_per_sec' "$dir/fuzz.log" | awk '{print $2}')
  cov=$(sed -nE 's/^#[0-9]+[[:space:]].*cov: ([0-9]+).*/\1/p' "$dir/fuzz.log" | tail -1)
  # crash-, leak-, timeout- or oom-<sha1> (slow-unit- files are no failure).
  findings=$(find "$dir/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o \
    -name 'timeout-*' -o -name 'oom-*' \))
  if [ $rc -ne 0 ] || [ -n "$findings" ]; then
    tail -n 80 "$dir/fuzz.log" >&2
    echo "FUZZ FAILURE: $target exited $rc" >&2
    local artifact
    for artifact in $findings; do
      echo "  input: $artifact (replay: $bin $artifact)" >&2
    done
    echo "  log: $dir/fuzz.log" >&2
    echo "$target: FAILED, input ${findings:-none saved} (cov ${cov:-?}, ${execs:-?} exec/s)" \
      > "$dir/result"
    return 1
  fi
  echo "$target: ok, cov ${cov:-?}, ${execs:-?} exec/s" > "$dir/result"
}

running=0
for target in "$@"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_target "$target" &
  running=$((running + 1))
done
wait

echo "== fuzz summary (${seconds}s per target; inputs and logs in $work)"
failed=0
for target in "$@"; do
  result=$(cat "$work/$target/result" 2> /dev/null || echo "$target: FAILED (no result)")
  echo "  $result"
  case $result in *FAILED*) failed=1 ;; esac
done
if [ $failed -ne 0 ]; then
  echo "FUZZ FAILURE: see above" >&2
  exit 1
fi
