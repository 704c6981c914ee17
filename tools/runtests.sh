#!/usr/bin/env bash
# Run every test: the canonical data check, busted on Lua 5.4 and on LuaJIT,
# the C tests; then the network specs and the loop's C tests again on
# io_uring. Usage: tools/runtests.sh BUILD_DIR (PETREL_PRELOAD is
# LD_PRELOADed, for asan).
#
# The last line counts TESTS (busted tests, C test cases and the data
# checks; not the conditions checked inside them) and names what was
# skipped and why:
#   N passed, N failed, N pending, N skipped[ (skipped: what: why; ...)]
# A test skips when the machine lacks what it needs (busted: pending("SKIP:
# why"); C: SKIP("why")); a whole run that cannot happen (io_uring refused)
# counts every test it would have run as skipped. Exits non-zero on any
# failure.
set -uo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
export PETREL_BUILD="$build"
# the RPC specs hold 2,000+ connections: raise the fd limit where allowed
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 8192 2>/dev/null || true
pass=0; fail=0; pend=0; skip=0
declare -A skip_n=()   # why -> how many tests skipped for it
skip_why=()            # the reasons, in order of first appearance
failed_names=()        # "runner: test: message", repeated before the summary
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

note_skip() { # note_skip WHY [N]
  [ -n "${skip_n[$1]:-}" ] || skip_why+=("$1")
  skip_n[$1]=$(( ${skip_n[$1]:-0} + ${2:-1} ))
}

run_busted() { # run_busted LABEL LUA [specs...]: busted under LUA, counted
  local label=$1 lua=$2 out
  shift 2
  out="$log/busted-$lua"
  echo "== busted --lua=$lua${label:+ ($label)}"
  LD_PRELOAD="${PETREL_PRELOAD:-}" busted --lua="$lua" -o spec/support/count_output.lua "$@" \
    < /dev/null 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]} line s=0 f=0 e=0 p=0 k=0
  line=$(grep -a '^petrel-count:' "$out" | tail -1)
  if [ -n "$line" ]; then
    s=$(sed -E 's/.*passed=([0-9]+).*/\1/' <<<"$line")
    f=$(sed -E 's/.*failed=([0-9]+).*/\1/' <<<"$line")
    e=$(sed -E 's/.*errors=([0-9]+).*/\1/' <<<"$line")
    p=$(sed -E 's/.*pending=([0-9]+).*/\1/' <<<"$line")
    k=$(sed -E 's/.*skipped=([0-9]+).*/\1/' <<<"$line")
  fi
  f=$((f + e))
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "busted under $lua crashed (status $rc)"; fi
  if [ $((s + f + p + k)) -eq 0 ]; then f=1; echo "no test ran under $lua"; fi
  while IFS=$'\t' read -r l _; do note_skip "${l#petrel-skip: }"; done \
    < <(grep -a '^petrel-skip:' "$out")
  while IFS=$'\t' read -r n m; do failed_names+=("busted $lua${label:+ ($label)}: ${n#petrel-fail: }: $m"); done \
    < <(grep -a '^petrel-fail:' "$out")
  if [ "$rc" -ne 0 ] && ! grep -qa '^petrel-fail:' "$out"; then
    failed_names+=("busted $lua${label:+ ($label)}: exited with status $rc")
  fi
  pass=$((pass + s)); fail=$((fail + f)); pend=$((pend + p)); skip=$((skip + k))
}

# count_cases LABEL FILE RC: adds a "N passed, N failed, N skipped" line
# (the C tests' and tools/check-data.sh's last line) to the totals
count_cases() {
  local label=$1 out=$2 rc=$3 line s=0 f=0 k=0
  line=$(grep -aE '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$out" | tail -1)
  if [ -n "$line" ]; then
    read -r s f k < <(sed -E 's/^([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped.*/\1 \2 \3/' <<<"$line")
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; echo "$label: exited with status $rc"; fi
  if [ $((s + f + k)) -eq 0 ]; then f=1; echo "$label: no test ran"; fi
  while IFS= read -r l; do note_skip "${l#SKIP }"; done < <(grep -a '^SKIP ' "$out")
  while IFS= read -r l; do failed_names+=("$label: $l"); done < <(grep -a '^FAIL ' "$out" | head -5)
  if [ "$rc" -ne 0 ] && ! grep -qa '^FAIL ' "$out"; then failed_names+=("$label: exited with status $rc"); fi
  pass=$((pass + s)); fail=$((fail + f)); skip=$((skip + k))
  last_cases=$((s + f + k))
}

run_c() { # run_c LABEL [GLOB]: the C tests (default: all)
  echo "== C tests${1:+ ($1)}"
  for t in "$build"/ctest/${2:-test_*}; do
    [ -x "$t" ] || continue
    LD_PRELOAD="" "$t" < /dev/null 2>&1 | tee "$log/c"
    count_cases "$(basename "$t")${1:+ ($1)}" "$log/c" "${PIPESTATUS[0]}"
    eval "cases_$(basename "$t")=$last_cases"
  done
}

echo "== data (bench/data against SHA256SUMS; regenerated with Apache Thrift's Python library)"
tools/check-data.sh < /dev/null 2>&1 | tee "$log/data"
count_cases "check-data" "$log/data" "${PIPESTATUS[0]}"

# Every spec on the default back end (epoll), then the network specs and
# the loop's C tests again on io_uring (PETREL_BACKEND is the one switch).
export PETREL_BACKEND=epoll
for lua in lua5.4 luajit; do run_busted "" "$lua"; done
run_c "epoll"

NET_SPECS=(spec/loop_spec.lua spec/rpc_spec.lua spec/zerocopy_spec.lua spec/crosstest_spec.lua
           spec/udp_spec.lua spec/cli_spec.lua spec/node_spec.lua)
why=$(LD_PRELOAD="${PETREL_PRELOAD:-}" lua5.4 -e '
  package.cpath = os.getenv("PETREL_BUILD") .. "/lua5.4/?.so;" .. package.cpath
  local core = require "petrel.core"
  local l, err = core.loop { backend = "uring" }
  if l then l:free() else io.write(err) end' 2>&1)
if [ -z "$why" ]; then
  export PETREL_BACKEND=uring
  for lua in lua5.4 luajit; do run_busted "io_uring" "$lua" "${NET_SPECS[@]}"; done
  for t in test_loop test_udp test_watch test_bench; do run_c "io_uring" "$t"; done
else
  # count what those runs would have run: the network specs on both
  # runtimes and the loop's C test cases (test_loop, test_udp, test_watch,
  # test_bench)
  n=$(( ${cases_test_loop:-0} + ${cases_test_udp:-0} + ${cases_test_watch:-0} + ${cases_test_bench:-0} ))
  for lua in lua5.4 luajit; do
    k=$(busted --lua="$lua" --list "${NET_SPECS[@]}" 2>/dev/null | grep -c ': ')
    n=$((n + k))
  done
  echo "== SKIPPED: the io_uring runs ($n tests): $why"
  skip=$((skip + n))
  note_skip "the io_uring runs: $why" "$n"
fi

# The build without liburing (make test builds it too and names it in
# PETREL_NOURING_BUILD): the network specs and the C tests again, with
# "auto", which must pick epoll there. `make URING=0 test` runs every spec
# on that build instead.
if [ -n "${PETREL_NOURING_BUILD:-}" ]; then
  export PETREL_BUILD=$PETREL_NOURING_BUILD PETREL_BACKEND=auto
  for lua in lua5.4 luajit; do run_busted "URING=0" "$lua" "${NET_SPECS[@]}" spec/uring_spec.lua; done
  build=$PETREL_NOURING_BUILD run_c "URING=0"
fi

# every failure again, so that the tail of the output names it
for n in "${failed_names[@]}"; do echo "FAILED: ${n:0:400}"; done
summary="$pass passed, $fail failed, $pend pending, $skip skipped"
if [ ${#skip_why[@]} -gt 0 ]; then
  list=""
  for w in "${skip_why[@]}"; do list="$list${list:+; }${skip_n[$w]} x $w"; done
  summary="$summary (skipped: $list)"
fi
echo "$summary"
[ "$fail" -eq 0 ]
