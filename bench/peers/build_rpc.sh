#!/bin/sh
# Build the bench/rpc harness pieces that do not depend on petrel:
#   build/bench/loadgen          (bench/loadgen.c)
#   build/bench/c_epoll_echo     (bench/peers/c_epoll_echo.c)
#   build/bench/c_uring_echo     (bench/peers/c_uring_echo.c, needs liburing-dev)
#   build/bench/cpp_echo_server  (bench/peers/cpp_echo_server.cpp, Apache Thrift
#                                 C++ TNonblockingServer; code generated into
#                                 build/peers/rpc-gen-cpp)
# Idempotent: rebuilds only what is stale.
# Env: BUILD (default build), WORKLOAD (default bench/workload.thrift),
#      CC (gcc), CXX (g++), THRIFT (thrift).
# Needs: gcc, g++, thrift-compiler, libthrift-dev, libevent-dev (TNonblockingServer.h
# includes <event.h>), libboost-dev. If the C++ side cannot be built the script
# says so, builds the C tools anyway and exits 1.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
WORKLOAD=${WORKLOAD:-$ROOT/bench/workload.thrift}
CC=${CC:-gcc}
CXX=${CXX:-g++}
THRIFT=${THRIFT:-thrift}
OUT=$BUILD/bench
GEN=$BUILD/peers/rpc-gen-cpp
mkdir -p "$OUT" "$GEN"

CFLAGS="-O2 -Wall -Wextra -Werror"
stale() { # stale TARGET DEPS... : true if TARGET is missing or older than a dep
    t=$1; shift
    [ -f "$t" ] || return 0
    for d in "$@"; do [ "$d" -nt "$t" ] && return 0; done
    return 1
}

if stale "$OUT/loadgen" bench/loadgen.c; then
    echo "build_rpc: $OUT/loadgen"
    $CC $CFLAGS -o "$OUT/loadgen" bench/loadgen.c
fi
if stale "$OUT/c_epoll_echo" bench/peers/c_epoll_echo.c; then
    echo "build_rpc: $OUT/c_epoll_echo"
    $CC $CFLAGS -o "$OUT/c_epoll_echo" bench/peers/c_epoll_echo.c
fi
if [ ! -f /usr/include/liburing.h ]; then
    echo "build_rpc: no liburing.h (apt-get install -y liburing-dev); c_uring_echo skipped" >&2
elif stale "$OUT/c_uring_echo" bench/peers/c_uring_echo.c; then
    echo "build_rpc: $OUT/c_uring_echo"
    $CC $CFLAGS -o "$OUT/c_uring_echo" bench/peers/c_uring_echo.c -luring
fi

# --- Apache Thrift C++ server --------------------------------------------
if [ ! -f /usr/include/event.h ] || [ ! -d /usr/include/thrift ]; then
    echo "build_rpc: missing headers for cpp_echo_server (need libthrift-dev and" \
         "libevent-dev: apt-get install -y libthrift-dev libevent-dev); skipped" >&2
    exit 1
fi
# g++ rejects the generated member `Ano Ano;` ("changes meaning of 'Ano'").
# Rename the *type* to AnoT in a private copy; the field keeps id 2 and type
# STRUCT, so the wire format is identical.
PATCHED=$GEN/workload.thrift
if stale "$PATCHED" "$WORKLOAD" "$0"; then
    sed -e 's/^struct Ano {/struct AnoT {/' \
        -e 's/^\([[:space:]]*2:[[:space:]]*\)Ano Ano\([,;]\{0,1\}\)/\1AnoT Ano\2/' \
        "$WORKLOAD" > "$PATCHED.tmp"
    if [ "$(grep -c 'AnoT' "$PATCHED.tmp")" != 2 ]; then
        echo "build_rpc: could not patch the Ano type in $WORKLOAD" >&2
        rm -f "$PATCHED.tmp"; exit 1
    fi
    mv "$PATCHED.tmp" "$PATCHED"
fi
if stale "$GEN/Echo.cpp" "$PATCHED"; then
    echo "build_rpc: thrift --gen cpp -> $GEN"
    rm -f "$GEN"/*.cpp "$GEN"/*.h
    "$THRIFT" --gen cpp -out "$GEN" "$PATCHED" >"$GEN/thrift.log" 2>&1 || {
        cat "$GEN/thrift.log" >&2; exit 1; }
    rm -f "$GEN/Echo_server.skeleton.cpp"
fi
if stale "$OUT/cpp_echo_server" bench/peers/cpp_echo_server.cpp "$GEN/Echo.cpp"; then
    echo "build_rpc: $OUT/cpp_echo_server"
    $CXX -O2 -std=c++17 -Wall -I"$GEN" -o "$OUT/cpp_echo_server" \
        bench/peers/cpp_echo_server.cpp "$GEN/Echo.cpp" "$GEN/workload_types.cpp" \
        -lthriftnb -lthrift -levent -lpthread
fi
echo "build_rpc: ok ($OUT: loadgen c_epoll_echo c_uring_echo cpp_echo_server)"
