#!/usr/bin/env bash
# Checks the canonical workload messages of bench/data (make check-data;
# tools/runtests.sh runs it first):
#   1. every file against bench/data/SHA256SUMS;
#   2. an independent regeneration from bench/workload.thrift with Apache
#      Thrift's Python library (bench/gen_data.py --check) gives the same
#      bytes. Skipped, loudly, where python3-thrift or the thrift compiler
#      is missing (tools/deps.sh installs both).
# Last line: "N passed, N failed, N skipped"; non-zero exit on a failure.
set -uo pipefail
cd "$(dirname "$0")/.."
pass=0; fail=0; skip=0
out=$(mktemp)
trap 'rm -f "$out"' EXIT

n=$(grep -c . bench/data/SHA256SUMS)
if (cd bench/data && sha256sum --quiet --strict -c SHA256SUMS) >"$out" 2>&1; then
  echo "check-data: $n files match bench/data/SHA256SUMS"
  pass=$((pass + 1))
else
  cat "$out"
  echo "check-data: FAILED: bench/data does not match its SHA256SUMS"
  fail=$((fail + 1))
fi

py=/usr/bin/python3
if [ -x "$py" ] && "$py" -c 'import thrift' 2>/dev/null && command -v thrift >/dev/null; then
  if "$py" bench/gen_data.py --check >"$out" 2>&1; then
    echo "check-data: regenerated with Apache Thrift's Python library: $(tail -1 "$out")"
    pass=$((pass + 1))
  else
    cat "$out"
    echo "check-data: FAILED: bench/gen_data.py --check"
    fail=$((fail + 1))
  fi
else
  echo "SKIP gen_data.py --check: python3-thrift or the thrift compiler is missing"
  skip=$((skip + 1))
fi
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
