#!/usr/bin/env bash
# Run every test: busted on Lua 5.4, busted on LuaJIT, the C tests.
# Usage: tools/runtests.sh BUILD_DIR. Prints "N passed, N failed" last and
# exits non-zero on any failure. PETREL_PRELOAD is LD_PRELOADed (asan).
set -uo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
export PETREL_BUILD="$build"
# the RPC specs hold 2,000+ connections: raise the fd limit where allowed
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 8192 2>/dev/null || true
pass=0; fail=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

# busted's plainTerminal summary: "N successes / N failures / N errors / N pending"
count_busted() {
  local out=$1 s f e
  s=$(grep -Eo '[0-9]+ success(es)?' "$out" | tail -1 | grep -Eo '^[0-9]+')
  f=$(grep -Eo '[0-9]+ failures?' "$out" | tail -1 | grep -Eo '^[0-9]+')
  e=$(grep -Eo '[0-9]+ errors?' "$out" | tail -1 | grep -Eo '^[0-9]+')
  echo "${s:-0} $(( ${f:-0} + ${e:-0} ))"
}

run_busted() { # run_busted LABEL LUA [specs...]: busted under LUA, counted
  local label=$1 lua=$2
  shift 2
  echo "== busted --lua=$lua${label:+ ($label)}"
  LD_PRELOAD="${PETREL_PRELOAD:-}" busted --lua="$lua" -o plainTerminal "$@" 2>&1 | tee "$log/$lua"
  local rc=${PIPESTATUS[0]} s f
  read -r s f < <(count_busted "$log/$lua")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # crashed before the summary
  if [ "$s" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "no test ran under $lua"; fi
  pass=$((pass + s)); fail=$((fail + f))
}

run_c() { # run_c LABEL [GLOB]: the C tests (default: all)
  echo "== C tests${1:+ ($1)}"
  for t in "$build"/ctest/${2:-test_*}; do
    [ -x "$t" ] || continue
    "$t" 2>&1 | tee "$log/c"
    local rc=${PIPESTATUS[0]} s f
    s=$(grep -Eo '^[0-9]+ passed' "$log/c" | tail -1 | grep -Eo '^[0-9]+')
    f=$(grep -Eo '[0-9]+ failed' "$log/c" | tail -1 | grep -Eo '^[0-9]+')
    s=${s:-0}; f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + s)); fail=$((fail + f))
  done
}

# Every spec on the default back end (epoll), then the network specs and
# the loop's C tests again on io_uring (PETREL_BACKEND is the one switch).
export PETREL_BACKEND=epoll
for lua in lua5.4 luajit; do run_busted "" "$lua"; done
run_c "epoll"

NET_SPECS=(spec/loop_spec.lua spec/rpc_spec.lua spec/zerocopy_spec.lua)
why=$(LD_PRELOAD="${PETREL_PRELOAD:-}" lua5.4 -e '
  package.cpath = os.getenv("PETREL_BUILD") .. "/lua5.4/?.so;" .. package.cpath
  local core = require "petrel.core"
  local l, err = core.loop { backend = "uring" }
  if l then l:free() else io.write(err) end' 2>&1)
if [ -z "$why" ]; then
  export PETREL_BACKEND=uring
  for lua in lua5.4 luajit; do run_busted "io_uring" "$lua" "${NET_SPECS[@]}"; done
  run_c "io_uring" "test_loop"
else
  echo "== SKIPPED: the io_uring runs (the kernel or sandbox refuses it): $why"
fi

# The build without liburing (make URING=0; make test builds it and names
# it in PETREL_NOURING_BUILD): every spec and C test again, with "auto",
# which must pick epoll there.
if [ -n "${PETREL_NOURING_BUILD:-}" ]; then
  export PETREL_BUILD=$PETREL_NOURING_BUILD PETREL_BACKEND=auto
  for lua in lua5.4 luajit; do run_busted "URING=0" "$lua"; done
  build=$PETREL_NOURING_BUILD run_c "URING=0"
fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
