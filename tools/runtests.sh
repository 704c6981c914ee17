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

for lua in lua5.4 luajit; do
  echo "== busted --lua=$lua"
  LD_PRELOAD="${PETREL_PRELOAD:-}" busted --lua=$lua -o plainTerminal 2>&1 | tee "$log/$lua"
  rc=${PIPESTATUS[0]}
  read -r s f < <(count_busted "$log/$lua")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi  # crashed before the summary
  if [ "$s" -eq 0 ] && [ "$f" -eq 0 ]; then f=1; echo "no test ran under $lua"; fi
  pass=$((pass + s)); fail=$((fail + f))
done

echo "== C tests"
for t in "$build"/ctest/test_*; do
  [ -x "$t" ] || continue
  "$t" 2>&1 | tee "$log/c"
  rc=${PIPESTATUS[0]}
  s=$(grep -Eo '^[0-9]+ passed' "$log/c" | tail -1 | grep -Eo '^[0-9]+')
  f=$(grep -Eo '[0-9]+ failed' "$log/c" | tail -1 | grep -Eo '^[0-9]+')
  s=${s:-0}; f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  pass=$((pass + s)); fail=$((fail + f))
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
