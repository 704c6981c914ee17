#!/bin/sh
# Build the peer benchmarks (idempotent; regenerates only what is stale).
#   bench/peers/build.sh            -> build/peers/cpp_codec, build/peers/gen-py
# Env: BUILD (default build), WORKLOAD (default bench/workload.thrift),
#      CXX (default g++), THRIFT (default thrift).
# Generated code is never committed: it lives under $BUILD/peers/.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
WORKLOAD=${WORKLOAD:-$ROOT/bench/workload.thrift}
CXX=${CXX:-g++}
THRIFT=${THRIFT:-thrift}
OUT=$BUILD/peers
mkdir -p "$OUT"

# g++ rejects the generated `Ano Ano;` member ("changes meaning of 'Ano'"),
# and thrift has no way to qualify a type by its own file name. Rename the
# *type* in a private copy: struct names are not on the wire (only field ids
# and type codes are), so the encoding is identical. Python gets the original.
PATCHED=$OUT/workload.thrift
if [ ! -f "$PATCHED" ] || [ "$WORKLOAD" -nt "$PATCHED" ] || [ "$0" -nt "$PATCHED" ]; then
    sed -e 's/^struct Ano {/struct Ano_ {/' \
        -e 's/^\([[:space:]]*2:[[:space:]]*\)Ano Ano\([,;]\?\)/\1Ano_ Ano\2/' \
        "$WORKLOAD" > "$PATCHED.tmp"
    if [ "$(grep -c 'Ano_' "$PATCHED.tmp")" != 2 ]; then
        echo "build.sh: could not patch the Ano type in $WORKLOAD" >&2
        rm -f "$PATCHED.tmp"; exit 1
    fi
    mv "$PATCHED.tmp" "$PATCHED"
fi

GENCPP=$OUT/gen-cpp
if [ ! -f "$GENCPP/workload_types.tcc" ] || [ "$PATCHED" -nt "$GENCPP/workload_types.tcc" ]; then
    rm -rf "$GENCPP"; mkdir -p "$GENCPP"
    "$THRIFT" --gen cpp:templates -out "$GENCPP" "$PATCHED" >"$OUT/thrift-cpp.log" 2>&1 || {
        cat "$OUT/thrift-cpp.log" >&2; exit 1; }
fi

GENPY=$OUT/gen-py
if [ ! -f "$GENPY/bench/ttypes.py" ] || [ "$WORKLOAD" -nt "$GENPY/bench/ttypes.py" ]; then
    rm -rf "$GENPY"; mkdir -p "$GENPY"
    "$THRIFT" --gen py -out "$GENPY" "$WORKLOAD" >"$OUT/thrift-py.log" 2>&1 || {
        cat "$OUT/thrift-py.log" >&2; exit 1; }
fi

BIN=$OUT/cpp_codec
SRC=bench/peers/cpp_codec.cpp
if [ ! -x "$BIN" ] || [ "$SRC" -nt "$BIN" ] || [ "$GENCPP/workload_types.tcc" -nt "$BIN" ]; then
    echo "build.sh: compiling $BIN" >&2
    "$CXX" -O2 -std=c++17 -DNDEBUG -I"$GENCPP" -o "$BIN.tmp" \
        "$SRC" "$GENCPP/workload_types.cpp" -lthrift
    mv "$BIN.tmp" "$BIN"
fi
echo "build.sh: ok ($BIN, $GENPY)" >&2
