# petrel — build for Lua 5.4 and LuaJIT (5.1 ABI) from the same sources.
#   make            build both modules into build/
#   make test       install missing Debian packages, build, run every test
#                   (also the build without liburing, see URING)
#   make demo       install missing Debian packages, build, run the demo on
#                   Lua 5.4 and on LuaJIT
#   make check-data check bench/data (sums; regeneration with Apache's Python)
#   make mutate     mutation check: each listed bug must make a spec fail
#   make asan       the whole suite under ASan + UBSan
#   make valgrind   the C tests under valgrind (leak check)
#   make bench      run the benchmarks in bench/
#   make rock-test  luarocks make into a scratch tree for both runtimes
#   make rock       the one module LuaRocks installs (the rockspec runs it)
#
# URING=1 builds the io_uring back end (needs liburing-dev), URING=0 leaves
# it out (epoll only; backend = "uring" then says "io_uring was not compiled
# in"); the default is 1 where <liburing.h> is found. A URING=0 build goes
# to build-nouring/ unless BUILD says otherwise.

CC      ?= cc
OPT     ?= -O2
SAN     ?=
LUA54_INC  ?= /usr/include/lua5.4
LUAJIT_INC ?= /usr/include/luajit-2.1
URING   ?= $(shell $(CC) -E -include liburing.h -x c /dev/null >/dev/null 2>&1 && echo 1 || echo 0)
ifeq ($(URING),0)
BUILD   ?= build-nouring
BE_SRC   = csrc/be/pt_epoll.c
URING_DEF = -DPT_NO_URING
URING_LIB =
else
BUILD   ?= build
BE_SRC   = csrc/be/pt_epoll.c csrc/be/pt_uring.c
URING_DEF =
URING_LIB = -luring
endif
CFLAGS_ALL = $(OPT) -g -fPIC -std=gnu11 -Wall -Wextra -Werror \
             -fvisibility=hidden $(URING_DEF) $(SAN) $(CFLAGS)
# HTTP responses (the etcd client) are parsed by Debian's http_parser
# (libhttp-parser-dev); without it petrel builds and says "HTTP support not
# compiled in" when asked. HTTP_PARSER=0 forces that build.
HTTP_PARSER ?= $(shell printf '\043include <http_parser.h>\nint main(void){return http_parser_version() == 0;}\n' \
  | $(CC) -x c - -o /dev/null -lhttp_parser >/dev/null 2>&1 && echo 1 || echo 0)
ifeq ($(HTTP_PARSER),1)
HTTP_CFLAGS = -DPT_HAVE_HTTP_PARSER=1
HTTP_LIBS = -lhttp_parser
endif
CFLAGS_ALL += $(HTTP_CFLAGS)
# Header frames' payload transforms: zlib (zlib1g-dev) always; zstd
# (libzstd-dev) where <zstd.h> is found, else petrel builds without it and
# refuses the "zstd" transform ("zstd was not compiled in"). ZSTD=0 forces
# that build.
ZSTD ?= $(shell printf '\043include <zstd.h>\nint main(void){return ZSTD_versionNumber() == 0;}\n' \
  | $(CC) -x c - -o /dev/null -lzstd >/dev/null 2>&1 && echo 1 || echo 0)
ifeq ($(ZSTD),1)
ZSTD_CFLAGS = -DPT_HAVE_ZSTD=1
ZSTD_LIBS = -lzstd
endif
CFLAGS_ALL += $(ZSTD_CFLAGS)
LIBS    = $(URING_LIB) -lpthread -lm $(HTTP_LIBS) -lz $(ZSTD_LIBS)

CORE_SRC = $(wildcard csrc/*.c) $(BE_SRC)
CORE_HDR = $(wildcard csrc/*.h) $(FLAGS)
LUA_SRC  = $(wildcard csrc/lua/*.c)
LUA_HDR  = $(wildcard csrc/lua/*.h)
# rebuilds when the flags change (URING, SAN, CFLAGS) in the same BUILD
FLAGS    = $(BUILD)/.flags
CTESTS   = $(patsubst spec/c/%.c,$(BUILD)/ctest/%,$(wildcard spec/c/test_*.c))

MOD54 = $(BUILD)/lua5.4/petrel/core.so
MODJIT = $(BUILD)/luajit/petrel/core.so

.PHONY: all test test-run demo demo-run asan asan-run valgrind bench bench-buffer deps ctest rock-test clean fuzz bench-codec bench-view bench-idl bench-rpc bench-rpc-view bench-uring bench-zerocopy check-data mutate print-sources bench-openresty rock FORCE bench-cluster bench-memory bench-rpc-wires bench-udp bench-cli

TOOLS = $(BUILD)/tools/no_uring

all: $(MOD54) $(MODJIT) $(CTESTS) $(TOOLS)

$(FLAGS): FORCE
	@mkdir -p $(@D)
	@echo '$(CFLAGS_ALL) $(LIBS)' | cmp -s - $@ || echo '$(CFLAGS_ALL) $(LIBS)' > $@

# test helper: runs a command with io_uring_setup refused (seccomp)
$(BUILD)/tools/no_uring: tools/no_uring.c
	@mkdir -p $(@D)
	$(CC) $(OPT) -Wall -Wextra -Werror -o $@ $<

$(MOD54): $(CORE_SRC) $(CORE_HDR) $(LUA_SRC) $(LUA_HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -I$(LUA54_INC) -shared -o $@ $(CORE_SRC) $(LUA_SRC) $(LIBS)

$(MODJIT): $(CORE_SRC) $(CORE_HDR) $(LUA_SRC) $(LUA_HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -I$(LUAJIT_INC) -shared -o $@ $(CORE_SRC) $(LUA_SRC) $(LIBS)

$(BUILD)/ctest/%: spec/c/%.c spec/c/ctest.h $(CORE_SRC) $(CORE_HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Icsrc -o $@ $< $(CORE_SRC) $(LIBS)

# the walkers' guard-page test embeds Lua 5.4 with the binding linked in
$(BUILD)/ctest/test_walk: spec/c/test_walk.c spec/c/ctest.h $(CORE_SRC) $(CORE_HDR) $(LUA_SRC) $(LUA_HDR)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS_ALL) -Icsrc -I$(LUA54_INC) -o $@ $< $(CORE_SRC) $(LUA_SRC) -llua5.4 $(LIBS)

deps:
	@tools/deps.sh

# The suite on the normal build, then (where liburing is found) the
# epoll-only build's run (tools/test-nouring.sh) counted into the same
# summary line. The run is a make of its own, started once deps.sh has
# installed what was missing: URING and HTTP_PARSER are found from the
# headers present then (a fresh machine gets liburing-dev from deps.sh).
test: deps
	@$(MAKE) --no-print-directory test-run

test-run:
	@$(MAKE) --no-print-directory all
	@if [ "$(URING)" != 0 ]; then $(MAKE) --no-print-directory all URING=0 BUILD=build-nouring; fi
	@PETREL_NOURING_BUILD=$$([ "$(URING)" != 0 ] && echo build-nouring) tools/runtests.sh $(BUILD)

# The C sources of the core and of the binding, for tools that build from
# the same lists (tools/mutate.lua).
print-sources:
	@echo "CORE $(CORE_SRC)"
	@echo "BIND $(LUA_SRC)"
	@echo "LIBS $(LIBS)"
	@echo "DEFS $(URING_DEF) $(HTTP_CFLAGS) $(ZSTD_CFLAGS)"

# Mutation check (tools/mutate.lua, spec/mutations.txt): in a scratch copy
# (build-mutate/), each listed bug is applied, the modules are rebuilt for
# both runtimes and the named specs must fail; the table says which did.
mutate: deps
	@lua5.4 tools/mutate.lua spec/mutations.txt

# bench/data against its SHA256SUMS, and regenerated by Apache Thrift's
# Python library (make test runs this first)
check-data:
	@tools/check-data.sh

ctest: $(CTESTS)
	@for t in $(CTESTS); do $$t || exit 1; done

# the demo on both runtimes, one after the other
demo: deps
	@$(MAKE) --no-print-directory demo-run

demo-run:
	@$(MAKE) --no-print-directory all
	@echo "== examples/demo.lua on Lua 5.4"
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="$(BUILD)/lua5.4/?.so;;" \
	  lua5.4 examples/demo.lua < /dev/null
	@echo
	@echo "== examples/demo.lua on LuaJIT"
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/luajit/?.so;;" \
	  luajit examples/demo.lua < /dev/null

# ASan + UBSan: the interpreters are not instrumented, so the runtime is
# preloaded. Leaks are checked on the C tests (valgrind and LSan there).
ASAN_LIB = $(shell $(CC) -print-file-name=libasan.so)
UBSAN_LIB = $(shell $(CC) -print-file-name=libubsan.so)
asan: deps
	@$(MAKE) --no-print-directory asan-run

asan-run:
	@$(MAKE) --no-print-directory all BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
	@PETREL_PRELOAD="$(ASAN_LIB) $(UBSAN_LIB)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  tools/runtests.sh build-asan

valgrind: $(CTESTS)
	@for t in $(CTESTS); do \
	  valgrind -q --leak-check=full --show-leak-kinds=all --errors-for-leak-kinds=all \
	    --error-exitcode=99 $$t > /dev/null || exit 1; done; echo "valgrind: no errors, no leaks"

bench: all $(BUILD)/bench/c_epoll_echo
	@for b in bench/*.lua; do echo "== $$b"; \
	  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="$(BUILD)/lua5.4/?.so;;" \
	    lua5.4 $$b || exit 1; done

rock-test:
	@tools/rock-test.sh

clean:
	rm -rf build build-asan build-mutate build-nouring

# LuaRocks' build step (rockspec/petrel-scm-1.rockspec: build.type "make"):
# petrel/core.so from the same sources with the compiler, flags and Lua
# headers LuaRocks passes; liburing is used where its header is found.
ROCK_OUT = build/rock/petrel/core.so
LIBFLAG ?= -shared
rock:
	@mkdir -p $(dir $(ROCK_OUT))
	$(CC) $(CFLAGS) -fPIC -std=gnu11 -fvisibility=hidden $(URING_DEF) $(HTTP_CFLAGS) $(ZSTD_CFLAGS) -Icsrc \
	  -I$(LUA_INCDIR) $(LIBFLAG) -o $(ROCK_OUT) $(CORE_SRC) $(LUA_SRC) $(LIBS)

bench-buffer: all
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="$(BUILD)/lua5.4/?.so;;" \
	  taskset -c 1 lua5.4 bench/buffer.lua
	@echo
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH="$(BUILD)/luajit/?.so;;" \
	  taskset -c 1 luajit bench/buffer.lua

# Fuzzers: libFuzzer + ASan + UBSan, each bounded by FUZZ_SECONDS (default
# 60). FUZZ_TARGET picks them (default all, one after the other):
#   compact the codec over Lua tables in the Compact protocol, several
#           schemas and decode options (fuzz/fuzz_decode.lua, mode
#           compact); corpus: Compact encodings of random values and of
#           the workload messages
#   diff    differential: whatever decodes in either protocol is encoded
#           in both, and decode(Binary) and decode(Compact) must agree
#   decode  the same checks as compact in the Binary protocol; corpus
#           seeded from bench/data and random values
#   scan    the message scanner fed in random pieces against one-shot
#           feeding and the skippers; Binary and Compact envelopes
#   http    HTTP/1.1 responses (pt_http over http_parser) fed whole and in
#           random pieces, pipelined, closed at the end; corpus: spec/c
#           responses and etcd gateway answers (fuzz/http-seeds)
#   view    message views (T:view) read along random paths in Binary and
#           Compact: raises name a path and an offset, views agree with
#           decode where it accepts, expiry (fuzz/fuzz_view.lua); corpus:
#           the decode and compact seeds

#   header  the header frame parsers over every framing (THeader, TTHeader,
#           framed or not, TTHeaderFramed), their info entries written
#           back and parsed again, transforms undone, and the detector
#           (fuzz/fuzz_header.c); corpus: frames petrel writes
#           (fuzz/header_seeds.lua)
# A crash, leak or sanitizer report fails the target (its input is saved
# as build-fuzz/crash-*); the full log is build-fuzz/<target>.log.
FUZZ_SECONDS ?= 60
FUZZ_DATA ?= bench/data
FUZZ_TARGET ?= compact diff decode scan http view header
FUZZ_CFLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_CORE = csrc/pt_scan.c csrc/pt_thrift.c csrc/pt_simd.c csrc/pt_buf.c csrc/pt_plan.c csrc/pt_json.c

build-fuzz/fuzz_decode: fuzz/fuzz_decode.c $(CORE_SRC) $(CORE_HDR) $(LUA_SRC) $(LUA_HDR)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(URING_DEF) $(HTTP_CFLAGS) $(ZSTD_CFLAGS) -I$(LUA54_INC) -o $@ fuzz/fuzz_decode.c $(CORE_SRC) $(LUA_SRC) \
	  -llua5.4 $(LIBS)

build-fuzz/fuzz_http: fuzz/fuzz_http.c csrc/pt_http.c csrc/pt_buf.c $(CORE_HDR)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(HTTP_CFLAGS) -o $@ fuzz/fuzz_http.c csrc/pt_http.c csrc/pt_buf.c \
	  $(HTTP_LIBS)

build-fuzz/fuzz_compact build-fuzz/fuzz_diff build-fuzz/fuzz_view: build-fuzz/fuzz_%: fuzz/fuzz_decode.c $(CORE_SRC) $(CORE_HDR) $(LUA_SRC) $(LUA_HDR)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -DFUZZ_MODE='"$*"' $(URING_DEF) $(HTTP_CFLAGS) $(ZSTD_CFLAGS) -I$(LUA54_INC) -o $@ fuzz/fuzz_decode.c $(CORE_SRC) \
	  $(LUA_SRC) -llua5.4 $(LIBS)

build-fuzz/fuzz_header: fuzz/fuzz_header.c $(FUZZ_CORE) csrc/pt_header.c csrc/pt_detect.c csrc/pt_xform.c $(CORE_HDR)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(ZSTD_CFLAGS) -o $@ fuzz/fuzz_header.c $(FUZZ_CORE) csrc/pt_header.c \
	  csrc/pt_detect.c csrc/pt_xform.c -lz $(ZSTD_LIBS) -lm

build-fuzz/fuzz_scan: fuzz/fuzz_scan.c $(FUZZ_CORE) $(CORE_HDR)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_scan.c $(FUZZ_CORE)

fuzz: deps $(MOD54) $(patsubst %,build-fuzz/fuzz_%,$(FUZZ_TARGET))
	@mkdir -p build-fuzz/corpus-decode build-fuzz/corpus-scan build-fuzz/corpus-compact \
	  build-fuzz/corpus-diff build-fuzz/corpus-http build-fuzz/corpus-view build-fuzz/corpus-header
	@PETREL_BUILD=$(BUILD) lua5.4 fuzz/header_seeds.lua build-fuzz/corpus-header
	@PETREL_BUILD=$(BUILD) lua5.4 fuzz/fuzz_decode.lua seeds build-fuzz/corpus-decode binary
	@PETREL_BUILD=$(BUILD) lua5.4 fuzz/fuzz_decode.lua seeds build-fuzz/corpus-compact compact
	@cp build-fuzz/corpus-decode/seed-* build-fuzz/corpus-diff/ 2>/dev/null; \
	  for f in build-fuzz/corpus-compact/seed-*; do cp $$f build-fuzz/corpus-diff/c$$(basename $$f); done
	@cp build-fuzz/corpus-diff/*seed-* build-fuzz/corpus-view/ 2>/dev/null; true
	@for f in fuzz/http-seeds/*; do { printf '\7\2'; cat $$f; } > build-fuzz/corpus-http/$$(basename $$f); done
	@for f in $(FUZZ_DATA)/*.bin; do b=$$(basename $$f .bin); \
	  head -c 65536 $$f > build-fuzz/corpus-decode/$$b.bin; \
	  { printf '\0\0\0\0\200\1\0\1\0\0\0\4echo\0\0\0\7'; head -c 65000 $$f; } \
	    > build-fuzz/corpus-scan/$$b-strict.bin; \
	  { printf '\1\7\1\1\0\0\0\2hi\1\0\0\0\11'; head -c 65000 $$f; } \
	    > build-fuzz/corpus-scan/$$b-plain.bin; done
	@for f in build-fuzz/corpus-compact/seed-0*; do b=$$(basename $$f .bin); \
	  { printf '\0\0\0\0\202\41\7\4echo'; cat $$f; } > build-fuzz/corpus-scan/$$b-compact.bin; done
	@for t in $(FUZZ_TARGET); do echo "== fuzz $$t ($(FUZZ_SECONDS) s)"; \
	  build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -rss_limit_mb=4096 \
	    -print_final_stats=1 -artifact_prefix=build-fuzz/ build-fuzz/corpus-$$t \
	    > build-fuzz/$$t.log 2>&1; rc=$$?; \
	  grep -E '^#[0-9]+' build-fuzz/$$t.log | tail -1; \
	  if [ $$rc -ne 0 ]; then tail -60 build-fuzz/$$t.log; echo "fuzz $$t: FAILED"; exit $$rc; fi; \
	  grep -E '^stat::' build-fuzz/$$t.log; done

FLOOR54 = $(BUILD)/lua5.4/petrel_floor.so
$(FLOOR54): bench/floor.c
	$(CC) $(CFLAGS_ALL) -I$(LUA54_INC) -shared -o $@ $<

bench-codec: all $(FLOOR54)
	@bench/peers/build.sh >/dev/null
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="$(BUILD)/lua5.4/?.so;;" \
	  lua5.4 bench/codec.lua

# the message-view rows of bench-codec (medium and large, petrel and the
# C++ decode) and their target table
bench-view: all $(FLOOR54)
	@bench/peers/build.sh >/dev/null
	@PETREL_WORKLOADS=medium,large PETREL_VIEW_ONLY=1 \
	  LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="$(BUILD)/lua5.4/?.so;;" \
	  lua5.4 bench/codec.lua

bench-idl: all
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="$(BUILD)/lua5.4/?.so;;" \
	  taskset -c 1 lua5.4 bench/idl_load.lua

# RPC: C load generator against petrel, the C epoll floor, Apache Thrift
# C++ TNonblockingServer and luv; server pinned to core 0, loadgen to 1.
bench-rpc: all
	@bench/peers/build_rpc.sh >/dev/null
	@bench/peers/rpc_peers.sh

# petrel bench (the core's load generator) beside bench/loadgen.c on the C
# floor server, same run: server on core 0, generators on core 1.
bench-cli: all
	@bench/peers/build_rpc.sh >/dev/null || true
	@PETREL_BUILD=$(BUILD) lua5.4 bench/cli.lua

# the lazy (message view) rows of bench-rpc beside the table-decoding echo
# and the C epoll floor, at 100 connections
bench-rpc-view: all
	@bench/peers/build_rpc.sh >/dev/null
	@CONNS=$${CONNS:-100} ONLY="petrel-echo-5.4 petrel-echo-jit petrel-lazy-5.4 petrel-lazy-jit petrel-lazy3-5.4 petrel-lazy3-jit" \
	  bench/peers/rpc_peers.sh

# petrel's Echo server over framed Binary, framed Compact, THeader and
# TTHeader (the bench-rpc rows petrel-wire-*), ratios against framed
# Binary of the same runtime timed the same way (loadgen --payload): the
# headers' cost. ROUNDS interleaved rounds (default 5; each round starts
# with the next row), each row's best and median, and the median of its
# per-round ratios (med_vs: the steadiest figure at 1 connection, where a
# round trip is mostly wake-ups and one slow round moves a best-of a lot).
WIRE_ROWS = $(foreach r,5.4 jit,$(foreach w,binary compact theader ttheader,petrel-wire-$(w)-$(r)))
bench-rpc-wires: all
	@bench/peers/build_rpc.sh >/dev/null
	@ONLY="$(WIRE_ROWS)" FLOOR="petrel-wire-binary-5.4 petrel-wire-binary-jit" \
	  ROUNDS=$${ROUNDS:-5} CONNS="$${CONNS:-1 100}" bench/peers/rpc_peers.sh

# io_uring against epoll, C pair and petrel, 1 KiB and 64 KiB messages, 10,
# 100 and 1000 connections, system calls per call counted by perf.
URING_ROWS = c-epoll-raw c-uring-raw c-uring-sqpoll-raw c-epoll-thrift c-uring-thrift \
  c-uring-sqpoll-thrift petrel-raw-5.4 petrel-raw-5.4-uring petrel-raw-5.4-sqpoll \
  petrel-echo-5.4 petrel-echo-5.4-uring petrel-echo-5.4-sqpoll
bench-uring: all
	@bench/peers/build_rpc.sh >/dev/null
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="$(BUILD)/lua5.4/?.so;;" \
	  lua5.4 bench/payloads.lua $(BUILD)/bench
	@echo "== 1 KiB messages"
	@CONNS="10 100 1000" SYSCALLS=perf ONLY="$(URING_ROWS)" RESULTS=$(BUILD)/bench/uring-1k.txt \
	  bench/peers/rpc_peers.sh
	@echo "== 64 KiB messages"
	@CONNS="10 100 1000" SYSCALLS=perf ONLY="$(URING_ROWS)" RESULTS=$(BUILD)/bench/uring-64k.txt \
	  PAYLOAD=$(CURDIR)/$(BUILD)/bench/req64k.bin bench/peers/rpc_peers.sh
	@lua5.4 bench/uring_summary.lua 1KiB=$(BUILD)/bench/uring-1k.txt 64KiB=$(BUILD)/bench/uring-64k.txt

# Zero-copy transfers: splice / sendfile against the core's read/write
# fallback and a Lua copy loop (tcp-to-unix, tcp-to-tcp, file-to-tcp).
bench-zerocopy: all
	@LUA_PATH="lua/?.lua;lua/?/init.lua;;" LUA_CPATH_5_4="$(BUILD)/lua5.4/?.so;;" \
	  taskset -c 0 lua5.4 bench/zerocopy.lua

# Memory per connection: a petrel RPC server (Lua 5.4 and LuaJIT, epoll and
# io_uring) with 10,000 connections idle, then holding a partial frame
# each, then in steady traffic (pool counters); a C client holds them.
$(BUILD)/bench/mem_client: bench/peers/mem_client.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

bench-memory: all $(BUILD)/bench/mem_client
	@PETREL_BUILD=$(BUILD) lua5.4 bench/memory.lua

# petrel.resty inside nginx (1 worker on core 0) against lua-resty-redis,
# wrk and the upstreams on core 1; then the no-worker-stall check.
$(BUILD)/bench/c_epoll_echo: bench/peers/c_epoll_echo.c bench/peers/echo_common.h
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

bench-openresty: deps all $(BUILD)/bench/c_epoll_echo
	@PETREL_BUILD=$(BUILD) lua5.4 bench/openresty.lua

# UDP: 512-byte datagrams from a C sendmmsg sender (core 1) into a Lua
# handler (petrel, core 0) against a minimal C recvmmsg loop, timed the
# same way; datagrams/s, loss, CPU per datagram, rounds interleaved.
$(BUILD)/bench/udp_peer: bench/udp_peer.c
	@mkdir -p $(@D)
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $<

bench-udp: all $(BUILD)/bench/udp_peer
	@PETREL_BUILD=$(BUILD) lua5.4 bench/udp.lua

# Service discovery on etcd, balancing, resilience (issue 16): the overhead
# of resolving + balancing against a client pinned to one address (server
# on core 0, client on core 1), then the cluster scenarios with their
# figures (SIGKILL, servers added, etcd outage, graceful removal,
# consistent hashing). ROUNDS, SECONDS, WIDTH, OUTAGE, SCENARIOS=0;
# BENCH_LUA=luajit for LuaJIT.
BENCH_LUA ?= lua5.4
bench-cluster: deps all
	@PETREL_BUILD=$(BUILD) taskset -c 1 $(BENCH_LUA) bench/cluster.lua
