#!/usr/bin/env bash
# rpc_peers.sh: RPC throughput/latency of the peer servers (no petrel needed).
#
# For each server and each connection count: start the server pinned to
# SERVER_CPU on a free 127.0.0.1 port, run build/bench/loadgen pinned to
# CLIENT_CPU (WARMUP s unmeasured + DURATION s measured), stop the server,
# then print one table on stdout: server, conns, calls/s, p50/p99/p999 (us),
# errors, CPU use (srv_cpu, lg_cpu: % of one core used by the server and by
# loadgen; other: % of one core used by anything else on the two cores, a
# noise flag) and calls/s relative to the C epoll floor (FLOOR) at the same
# conn count. Progress and each raw loadgen line go to stderr.
#
#   bench/peers/rpc_peers.sh
#
# Env (all optional):
#   CONNS="1 10 100 1000"  connection counts
#   DURATION=3 WARMUP=1    seconds per run (measured / unmeasured)
#   MODE=pingpong DEPTH=1  loadgen --mode / --depth (pipeline: DEPTH in flight)
#   PAYLOAD=bench/data/small.bin   args struct / frame body
#   ONLY="name ..."        run only these servers (FLOOR is always kept)
#   FLOOR=c-epoll-raw      the server the ratio column divides by; several
#                          names: a row is divided by the one whose last
#                          "-" part is the row's ("petrel-wire-binary-5.4
#                          petrel-wire-binary-jit": each runtime by its
#                          own), else by the first
#   ROUNDS=1               run every row ROUNDS times, round after round
#                          (interleaved: load from other processes falls
#                          on all rows alike); the table gives each row's
#                          best round and (ROUNDS > 1) its spread: (best -
#                          worst) / best calls/s, its median calls/s and
#                          med_vs: the median over the rounds of the row's
#                          calls/s over its floor's in the same round (a
#                          paired ratio: load that comes and goes between
#                          rounds falls on both). Each round starts one
#                          row later than the one before, so no row is
#                          always the first to run
#   SERVER_CPU=0 CLIENT_CPU=1  taskset cores
#   PORT_BASE=19000        first port tried; each run takes the next free one
#   BUILD=build            build dir (binaries in $BUILD/bench; logs in
#                          $BUILD/bench/rpc-logs); build_rpc.sh runs first
#   RESULTS=FILE           also write the table there
#   SYSCALLS=1             add a sys/call column (see below); also =perf
#
# SYSCALLS=1: system calls per call. Once the warmup is over, `strace -c -f
# -p SERVER_PID` is attached to the running server (all its threads; strace
# is apt-get installed if missing) and detached (SIGINT) when loadgen ends,
# so only (about) the measured window is counted, not startup or warmup; the
# few teardown syscalls after loadgen's window (a shutdown + close per
# connection) are included. sys/call = strace's "total" calls / the calls
# loadgen completed in its measured window (its strace -c summary is kept in
# $LOGS/NAME-CONNS.syscalls). strace stops the server on every syscall and
# slows it down several times, so in a SYSCALLS=1 run only the sys/call
# column means anything: calls/s, latency and CPU columns are not comparable
# with a normal run. The slowdown also changes batching (a slower server
# finds more ready events per epoll_wait / io_uring_enter), which lowers
# sys/call for servers that batch. It hits servers with many syscalls much
# harder (c-epoll-raw at 100 conns: ~20k calls/s under strace, ~2 sys/call)
# than io_uring ones (c-uring-raw hardly slowed).
# Either way sys/call of a batching server is noisy whenever loadgen, not
# the server, is the limit (lg_cpu near 100): the count of waits depends on
# how many completions each one finds; c-uring-raw at 100 conns gave
# anywhere from 0.03 to 0.4 across runs, traced or not. Compare sizes, not
# digits, and repeat runs.
# SYSCALLS=perf counts the same window with `perf stat -e
# raw_syscalls:sys_enter -p SERVER_PID` instead (an in-kernel counter: no
# stops, small overhead, so the other columns stay roughly valid and the
# batching is the real one); it needs perf and tracepoint access.
# io_uring servers: without SQPOLL, expect at most one io_uring_enter per
# loop iteration (submit + wait in one call), i.e. sys/call <= 1 and lower
# with more connections (bigger batches). Under --sqpoll (c-uring-sqpoll-*)
# submission needs no syscall at all (the kernel SQ thread, which strace and
# perf -p do not count as syscalls, polls the SQ), so sys/call should be
# near 0 under load. What c_uring_echo still does is one io_uring_enter
# (GETEVENTS) to wait whenever the CQ is empty, which happens a lot while
# loadgen is the limit (first runs here: ~0.1-0.3 sys/call with --sqpoll,
# against ~0.1-0.4 without and ~2 for c-epoll-raw); only an application that
# spins on the CQ gets to ~0, which makes no sense with the SQ thread on the
# server's own core. The SQ thread's CPU shows up in srv_cpu, and on this
# 2-core setup it competes with the server thread for SERVER_CPU.
#
# Adding a server is one add_server line (see below): a name, a start command
# and the loadgen arguments. Both are eval'ed with $PORT (the port chosen),
# $LIMIT (seconds the server must exit after), $BIN ($BUILD/bench), $ROOT and
# $PAYLOAD set. The start command must stay in the foreground (it is started
# with exec, so its PID is the one killed) and listen on 127.0.0.1:$PORT.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

CONNS=${CONNS:-"1 10 100 1000"}
DURATION=${DURATION:-3}
WARMUP=${WARMUP:-1}
MODE=${MODE:-pingpong}
DEPTH=${DEPTH:-1}
PAYLOAD=${PAYLOAD:-$ROOT/bench/data/small.bin}
ONLY=${ONLY:-}
FLOOR=${FLOOR:-c-epoll-raw}
ROUNDS=${ROUNDS:-1}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT_BASE=${PORT_BASE:-19000}
BUILD=${BUILD:-build}
RESULTS=${RESULTS:-}
SYSCALLS=${SYSCALLS:-}
case $BUILD in /*) BIN=$BUILD/bench ;; *) BIN=$ROOT/$BUILD/bench ;; esac
LOGS=$BIN/rpc-logs

# ---------------------------------------------------------------- servers
SERVERS=()
add_server() { SERVERS+=("$1|$2|$3"); } # name | start command | loadgen args

add_server c-epoll-raw     '$BIN/c_epoll_echo --port $PORT --duration $LIMIT' \
                           '--echo-frame $PAYLOAD --wrap'
add_server c-epoll-thrift  '$BIN/c_epoll_echo --thrift --port $PORT --duration $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server c-uring-raw     '$BIN/c_uring_echo --port $PORT --duration $LIMIT' \
                           '--echo-frame $PAYLOAD --wrap'
add_server c-uring-thrift  '$BIN/c_uring_echo --thrift --port $PORT --duration $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server c-uring-sqpoll-raw '$BIN/c_uring_echo --sqpoll --port $PORT --duration $LIMIT' \
                           '--echo-frame $PAYLOAD --wrap'
add_server c-uring-sqpoll-thrift '$BIN/c_uring_echo --sqpoll --thrift --port $PORT --duration $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server cpp-nonblocking '$BIN/cpp_echo_server --port $PORT --duration $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server luv-raw         'lua5.4 $ROOT/bench/peers/luv_echo.lua $PORT $LIMIT' \
                           '--echo-frame $PAYLOAD --wrap'
add_server luv-raw-jit     'luajit $ROOT/bench/peers/luv_echo.lua $PORT $LIMIT' \
                           '--echo-frame $PAYLOAD --wrap'
add_server petrel-echo-5.4 'env PETREL_BACKEND=epoll lua5.4 $ROOT/bench/rpc_server.lua thrift $PORT $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server petrel-echo-jit 'env PETREL_BACKEND=epoll luajit $ROOT/bench/rpc_server.lua thrift $PORT $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server petrel-lazy-5.4  'env PETREL_BACKEND=epoll lua5.4 $ROOT/bench/rpc_server.lua lazy $PORT $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server petrel-lazy-jit  'env PETREL_BACKEND=epoll luajit $ROOT/bench/rpc_server.lua lazy $PORT $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server petrel-lazy3-5.4 'env PETREL_BACKEND=epoll lua5.4 $ROOT/bench/rpc_server.lua lazy3 $PORT $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server petrel-lazy3-jit 'env PETREL_BACKEND=epoll luajit $ROOT/bench/rpc_server.lua lazy3 $PORT $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server petrel-raw-5.4  'env PETREL_BACKEND=epoll lua5.4 $ROOT/bench/rpc_server.lua raw $PORT $LIMIT' \
                           '--echo-frame $PAYLOAD --wrap'
add_server petrel-raw-jit  'env PETREL_BACKEND=epoll luajit $ROOT/bench/rpc_server.lua raw $PORT $LIMIT' \
                           '--echo-frame $PAYLOAD --wrap'
# the same petrel servers on the io_uring back end, and with SQPOLL
add_server petrel-echo-5.4-uring 'env PETREL_BACKEND=uring lua5.4 $ROOT/bench/rpc_server.lua thrift $PORT $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server petrel-echo-5.4-sqpoll 'env PETREL_BACKEND=uring PETREL_SQPOLL=1 lua5.4 $ROOT/bench/rpc_server.lua thrift $PORT $LIMIT' \
                           '--thrift-call echo --args-struct $PAYLOAD'
add_server petrel-raw-5.4-uring 'env PETREL_BACKEND=uring lua5.4 $ROOT/bench/rpc_server.lua raw $PORT $LIMIT' \
                           '--echo-frame $PAYLOAD --wrap'
add_server petrel-raw-5.4-sqpoll 'env PETREL_BACKEND=uring PETREL_SQPOLL=1 lua5.4 $ROOT/bench/rpc_server.lua raw $PORT $LIMIT' \
                           '--echo-frame $PAYLOAD --wrap'

# petrel's server (the same Echo server) over each wire its header rows
# compare, every row timed the same way (loadgen --payload with a request
# bench/rpc_frames.lua wrote): framed Binary, framed Compact, Apache
# THeader, Kitex TTHeader (`make bench-rpc-wires` runs these alone, with
# framed Binary as the ratio's base)
for rt in 5.4 jit; do
    lua=lua5.4; [ $rt = jit ] && lua=luajit
    for w in binary compact theader ttheader; do
        add_server petrel-wire-$w-$rt "env PETREL_BACKEND=epoll $lua \$ROOT/bench/rpc_server.lua thrift \$PORT \$LIMIT" \
                                   "--payload \$BIN/frames/echo-$w.bin"
    done
done

# ---------------------------------------------------------------- process care
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null
    done
    for p in "${PIDS[@]}"; do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$p" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    PIDS=()
}
trap cleanup EXIT
trap 'echo "rpc_peers: interrupted" >&2; exit 130' INT TERM

forget_pid() { # remove $1 from PIDS
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

stop_pid() {
    local p=$1
    kill "$p" 2>/dev/null
    for _ in $(seq 20); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    forget_pid "$p"
}

NEXT_PORT=$PORT_BASE
port_free() { [ -z "$(ss -Htln "sport = :$1" 2>/dev/null)" ]; }
next_port() {
    while ! port_free "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
    [ "$NEXT_PORT" -lt $((PORT_BASE + 900)) ] || NEXT_PORT=$PORT_BASE
}

# start_server NAME CMD LOG: sets SPID and PORT, returns 1 if it never listened
start_server() {
    local name=$1 cmd=$2 log=$3 attempt
    for attempt in 1 2 3 4 5; do
        next_port
        ( eval "exec taskset -c $SERVER_CPU $cmd" ) >"$log" 2>&1 </dev/null &
        SPID=$!
        PIDS+=("$SPID")
        for _ in $(seq 50); do
            if ! kill -0 "$SPID" 2>/dev/null; then break; fi
            if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then return 0; fi
            sleep 0.1
        done
        stop_pid "$SPID"
        echo "rpc_peers: $name did not come up on port $PORT (attempt $attempt; log $log)" >&2
    done
    return 1
}

# ---------------------------------------------------------------- syscall counting
case $SYSCALLS in
'' | 0) SYSCALLS= ;;
1 | strace)
    SYSCALLS=strace
    if ! command -v strace >/dev/null 2>&1; then
        echo "rpc_peers: SYSCALLS=1: installing strace" >&2
        apt-get install -y strace >/dev/null 2>&1
    fi
    command -v strace >/dev/null 2>&1 || { echo "rpc_peers: SYSCALLS=1 needs strace" >&2; exit 1; }
    ;;
perf)
    command -v perf >/dev/null 2>&1 || { echo "rpc_peers: SYSCALLS=perf needs perf" >&2; exit 1; }
    ;;
*) echo "rpc_peers: SYSCALLS must be 1 (strace) or perf" >&2; exit 1 ;;
esac
# trace_start PID FILE: attach the syscall counter to PID (all threads),
# output in FILE; sets TPID ('' if it could not attach)
trace_start() {
    local pid=$1 out=$2
    rm -f "$out" "$out.err"
    if [ "$SYSCALLS" = strace ]; then
        taskset -c "$SERVER_CPU" strace -c -f -p "$pid" -o "$out" 2>"$out.err" &
    else
        taskset -c "$SERVER_CPU" perf stat -x, -e raw_syscalls:sys_enter -p "$pid" \
            -o "$out" 2>"$out.err" &
    fi
    TPID=$!
    PIDS+=("$TPID")
    if [ "$SYSCALLS" = strace ]; then # strace says "attached"
        for _ in $(seq 30); do
            grep -q attached "$out.err" 2>/dev/null && return 0
            kill -0 "$TPID" 2>/dev/null || break
            sleep 0.1
        done
    else # perf says nothing: give it 0.2 s to open its counters
        sleep 0.2
        kill -0 "$TPID" 2>/dev/null && return 0
    fi
    echo "rpc_peers: could not attach $SYSCALLS to $pid:" "$(head -2 "$out.err" 2>/dev/null)" >&2
    stop_pid "$TPID"
    TPID=
    return 1
}
# trace_stop FILE: detach (SIGINT makes both print their summary), set
# NSYS to the number of syscalls counted ('' if unknown)
trace_stop() {
    local out=$1
    NSYS=
    [ -n "$TPID" ] || return 0
    kill -INT "$TPID" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$TPID" 2>/dev/null || break; sleep 0.1; done
    stop_pid "$TPID"
    TPID=
    if [ "$SYSCALLS" = strace ]; then
        NSYS=$(awk '$NF == "total" && $4 ~ /^[0-9]+$/ { print $4 }' "$out" 2>/dev/null)
    else
        NSYS=$(awk -F, '$3 == "raw_syscalls:sys_enter" && $1 ~ /^[0-9]+$/ { print $1 }' \
            "$out" 2>/dev/null)
    fi
}

# ---------------------------------------------------------------- run
ulimit -n "$(ulimit -Hn)" 2>/dev/null
mkdir -p "$LOGS"
if ! bench/peers/build_rpc.sh >"$LOGS/build.log" 2>&1; then
    echo "rpc_peers: build_rpc.sh failed (servers without a binary will show n/a):" >&2
    tail -5 "$LOGS/build.log" >&2
fi
[ -x "$BIN/loadgen" ] || { echo "rpc_peers: no $BIN/loadgen" >&2; exit 1; }
[ -f "$PAYLOAD" ] || { echo "rpc_peers: no payload $PAYLOAD" >&2; exit 1; }
# the petrel-wire-* rows' requests (needs the petrel module built)
mkdir -p "$BIN/frames"
if ! PETREL_BUILD=$BUILD lua5.4 bench/rpc_frames.lua "$PAYLOAD" "$BIN/frames" >"$LOGS/frames.log" 2>&1; then
    echo "rpc_peers: bench/rpc_frames.lua failed (petrel-wire-* rows will fail):" >&2
    tail -3 "$LOGS/frames.log" >&2
fi
LIMIT=$(awk "BEGIN { print int($DURATION + $WARMUP + 20) }")
LG_TIMEOUT=$(awk "BEGIN { print int($DURATION + $WARMUP + 10) }")

declare -A CPS P50 P99 P999 ERR SCPU LGCPU OTHER SYSC WORST
proc_ticks() { # utime + stime of a live PID, in clock ticks (0 if gone)
    local st
    st=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
    st=${st##*) }  # drop "pid (comm) "
    awk '{ print $12 + $13 }' <<<"$st"
}
get() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$line"; } # field of loadgen's line
ROWS=()
selected() {
    [ -z "$ONLY" ] && return 0
    local n
    for n in $FLOOR $ONLY; do [ "$n" = "$1" ] && return 0; done
    return 1
}
floor_of() { # the FLOOR entry row $1 is divided by
    local f
    for f in $FLOOR; do [ "${f##*-}" = "${1##*-}" ] && { echo "$f"; return; }; done
    echo "${FLOOR%% *}"
}

for n in $ONLY; do
    known=0
    for entry in "${SERVERS[@]}"; do [ "${entry%%|*}" = "$n" ] && known=1; done
    [ "$known" = 1 ] || echo "rpc_peers: WARNING: ONLY names unknown server '$n'" >&2
done

# Other CPU-heavy processes on the two cores make the numbers noisy: warn.
cpu_ticks() { # "busy total" jiffies of cores $SERVER_CPU and $CLIENT_CPU
    awk -v a="cpu$SERVER_CPU" -v b="cpu$CLIENT_CPU" \
        '$1 == a || $1 == b { for (i = 2; i <= 9; i++) t += $i; idle += $5 + $6 }
         END { print t - idle, t }' /proc/stat
}
busy_pct() { # busy % of the two cores over the last 0.5 s
    local b0 t0 b1 t1
    read -r b0 t0 <<<"$(cpu_ticks)"; sleep 0.5; read -r b1 t1 <<<"$(cpu_ticks)"
    awk "BEGIN { d = $t1 - $t0; printf \"%.0f\", (d > 0 ? 100 * ($b1 - $b0) / d : 0) }"
}
BUSY=$(busy_pct)
if [ "$BUSY" -gt 10 ]; then
    echo "rpc_peers: WARNING: cores $SERVER_CPU,$CLIENT_CPU are already ${BUSY}% busy;" \
         "other processes compete and the results will be noisy:" >&2
    ps -eo pid,pcpu,psr,comm --sort=-pcpu | sed -n '2,4p' | sed 's/^/    /' >&2
fi
echo "rpc_peers: server cpu $SERVER_CPU, loadgen cpu $CLIENT_CPU, mode $MODE depth $DEPTH," \
     "warmup ${WARMUP}s + ${DURATION}s, payload $PAYLOAD, $ROUNDS round(s)" >&2
SEL=()
for entry in "${SERVERS[@]}"; do
    IFS='|' read -r name _ _ <<<"$entry"
    selected "$name" && { SEL+=("$entry"); ROWS+=("$name"); }
done
declare -A RCPS # "name|conns|round" -> that round's calls/s
for round in $(seq "$ROUNDS"); do
[ "$ROUNDS" = 1 ] || echo "rpc_peers: round $round of $ROUNDS" >&2
# each round starts one row later than the one before (the rows take
# turns at running first, right after the previous round's last row)
for i in $(seq 0 $((${#SEL[@]} - 1))); do
    entry=${SEL[$(( (i + round - 1) % ${#SEL[@]} ))]}
    IFS='|' read -r name cmd lgargs <<<"$entry"
    for c in $CONNS; do
        key="$name|$c"
        if [ -z "${CPS[$key]:-}" ]; then
            CPS[$key]=n/a; P50[$key]=-; P99[$key]=-; P999[$key]=-; ERR[$key]=-
            SCPU[$key]=-; LGCPU[$key]=-; OTHER[$key]=-; SYSC[$key]=-; WORST[$key]=
        fi
        slog="$LOGS/$name-$c.server.log"
        if ! start_server "$name" "$cmd" "$slog"; then
            [ "$round" = 1 ] && grep -q "io_uring unavailable" "$slog" 2>/dev/null &&
                CPS[$key]=unavailable
            continue
        fi
        lgout="$LOGS/$name-$c.loadgen.out"
        eval "set -- $lgargs"
        timeout -k 1 "$LG_TIMEOUT" taskset -c "$CLIENT_CPU" "$BIN/loadgen" \
            --port "$PORT" --conns "$c" --duration "$DURATION" --warmup "$WARMUP" \
            --mode "$MODE" --depth "$DEPTH" "$@" >"$lgout" 2>"$LOGS/$name-$c.loadgen.err" &
        LPID=$!
        PIDS+=("$LPID")
        # CPU accounting over (about) the measured window: server ticks and
        # busy ticks of both cores, sampled after the warmup and at the end.
        sleep "$WARMUP"
        TPID=; sysout="$LOGS/$name-$c.syscalls"
        [ -z "$SYSCALLS" ] || trace_start "$SPID" "$sysout"
        s0=$(proc_ticks "$SPID"); read -r b0 t0 <<<"$(cpu_ticks)"
        wait "$LPID"
        lrc=$?
        s1=$(proc_ticks "$SPID"); read -r b1 t1 <<<"$(cpu_ticks)"
        NSYS=; [ -z "$SYSCALLS" ] || trace_stop "$sysout"
        forget_pid "$LPID"
        stop_server_rc=0
        kill -0 "$SPID" 2>/dev/null || stop_server_rc=1
        stop_pid "$SPID"
        line=$(tail -1 "$lgout")
        echo "  $name: $line (rc $lrc)" >&2
        [ "$stop_server_rc" = 0 ] || echo "  $name: server had exited before the end of the run (see $slog)" >&2
        cps=$(get calls_per_s)
        [[ "$cps" =~ ^[0-9]+$ ]] && RCPS[$key|$round]=$cps
        if [[ "$cps" =~ ^[0-9]+$ ]] && [[ -z "${WORST[$key]}" || "$cps" -lt "${WORST[$key]}" ]]; then
            WORST[$key]=$cps
        fi
        # the row keeps its best round (all of its columns from that round)
        if [ -n "$cps" ] && ! [[ "${CPS[$key]}" =~ ^[0-9]+$ && "$cps" =~ ^[0-9]+$ &&
                                 "$cps" -le "${CPS[$key]}" ]]; then
            CPS[$key]=$cps; P50[$key]=$(get p50_us)
            P99[$key]=$(get p99_us); P999[$key]=$(get p999_us); ERR[$key]=$(get errors)
            LGCPU[$key]=$(get loadgen_cpu_pct)
            if [ -n "$SYSCALLS" ] && [ -n "$NSYS" ] && [ "$(get calls)" -gt 0 ] 2>/dev/null; then
                SYSC[$key]=$(awk "BEGIN { printf \"%.3f\", $NSYS / $(get calls) }")
            fi
            # per-core wall ticks = (t1 - t0) / 2; other = busy - server - loadgen
            read -r SCPU[$key] OTHER[$key] <<<"$(awk "BEGIN { w = ($t1 - $t0) / 2;
                if (w <= 0) { print \"- -\"; exit }
                s = 100 * ($s1 - $s0) / w; o = 100 * ($b1 - $b0) / w - s - ${LGCPU[$key]:-0};
                printf \"%.0f %.0f\", s, (o < 0 ? 0 : o) }")"
        fi
    done
done
done

median() { # of the numbers given (- for none)
    [ $# -gt 0 ] || { echo -; return; }
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { printf "%.4f\n", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
medians() { # row $1 at $2 conns -> "median calls/s" "median of its per-round ratios"
    local r f k=() q=() fl m n
    fl=$(floor_of "$1")
    for r in $(seq "$ROUNDS"); do
        [ -n "${RCPS[$1|$2|$r]:-}" ] || continue
        k+=("${RCPS[$1|$2|$r]}")
        f=${RCPS[$fl|$2|$r]:-}
        [[ "$f" =~ ^[0-9]+$ && "$f" -gt 0 ]] &&
            q+=("$(awk "BEGIN { printf \"%.4f\", ${RCPS[$1|$2|$r]} / $f }")")
    done
    n=$(median "${k[@]}"); m=$(median "${q[@]}")
    [ "$n" = - ] || n=$(awk "BEGIN { printf \"%.0f\", $n }")
    [ "$m" = - ] || m=$(awk "BEGIN { printf \"%.2f\", $m }")
    echo "$n $m"
}
table() {
    local sc='' sh='' rc='' rh=''  # sys/call (SYSCALLS), spread (ROUNDS > 1)
    [ -z "$SYSCALLS" ] || { sc=' %8s'; sh=sys/call; }
    [ "$ROUNDS" = 1 ] || { rc=' %7s %10s %8s'; rh=spread; }
    printf "%-24s %6s %10s %8s %8s %8s %7s %7s %6s %6s %8s$rc$sc\n" server conns calls/s \
        p50_us p99_us p999_us errors srv_cpu lg_cpu other vs_floor ${rh:+"$rh" median med_vs} \
        ${sh:+"$sh"}
    local name c key ratio floor spread med medr
    for name in "${ROWS[@]}"; do
        for c in $CONNS; do
            key="$name|$c"
            floor=${CPS[$(floor_of "$name")|$c]:-n/a}
            ratio=-
            if [[ "${CPS[$key]}" =~ ^[0-9]+$ && "$floor" =~ ^[0-9]+$ && "$floor" -gt 0 ]]; then
                ratio=$(awk "BEGIN { printf \"%.2f\", ${CPS[$key]} / $floor }")
            fi
            spread=-
            if [[ "${CPS[$key]}" =~ ^[0-9]+$ && "${WORST[$key]}" =~ ^[0-9]+$ && "${CPS[$key]}" -gt 0 ]]; then
                spread=$(awk "BEGIN { printf \"%.0f%%\", 100 * (${CPS[$key]} - ${WORST[$key]}) / ${CPS[$key]} }")
            fi
            read -r med medr <<<"$(medians "$name" "$c")"
            printf "%-24s %6s %10s %8s %8s %8s %7s %7s %6s %6s %8s$rc$sc\n" "$name" "$c" \
                "${CPS[$key]}" "${P50[$key]}" "${P99[$key]}" "${P999[$key]}" "${ERR[$key]}" \
                "${SCPU[$key]}" "${LGCPU[$key]}" "${OTHER[$key]}" "$ratio" \
                ${rh:+"$spread" "$med" "$medr"} ${sh:+"${SYSC[$key]}"}
        done
    done
}
table
echo "(srv_cpu, lg_cpu: % of one core used by the server / loadgen in the measured window;" \
     "other: % of one core used by anything else on the two cores: above ~10 the row is noisy;" \
     "lg_cpu near 100: the generator may be the limit)" >&2
[ "$SYSCALLS" != strace ] || echo "(SYSCALLS=1: servers ran under strace: only sys/call means" \
     "anything, and strace slows syscall-heavy servers most, which changes their batching;" \
     "SYSCALLS=perf avoids that)" >&2
[ -z "$RESULTS" ] || table >"$RESULTS"
