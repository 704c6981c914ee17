-- Install: luarocks --lua-version=5.4 --tree=DIR make rockspec/petrel-scm-1.rockspec
-- (LuaJIT: --lua-version=5.1). Builds offline from this checkout; needs a C
-- compiler, GNU make and zlib (zlib1g-dev: header frames' zlib transform);
-- liburing-dev and libzstd-dev are optional (see build below).
rockspec_format = "3.0"
package = "petrel"
version = "scm-1"
source = {
  url = "git+https://example.invalid/petrel.git",
}
description = {
  summary = "Fast Thrift RPC and networking for Lua 5.4 and LuaJIT",
  detailed = [[
petrel is a Lua extension with a C core: linked buffers over size-class
pools, a Thrift codec compiled from Lua-table schemas, and an epoll /
io_uring event loop for Thrift RPC.
]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.1",
}
-- The C module is built by the Makefile's `rock` target from the same
-- sources as `make` (no list here to drift). liburing is optional: where
-- <liburing.h> is found the io_uring back end is built in, else petrel has
-- epoll only (core.loop{ backend = "uring" } then says "io_uring was not
-- compiled in"). URING=0 in the environment leaves it out on purpose.
-- libzstd likewise: without it the "zstd" transform says "zstd was not
-- compiled in" (ZSTD=0 leaves it out).
build = {
  type = "make",
  build_target = "rock",
  build_variables = {
    CC = "$(CC)",
    CFLAGS = "$(CFLAGS)",
    LIBFLAG = "$(LIBFLAG)",
    LUA_INCDIR = "$(LUA_INCDIR)",
  },
  install_pass = false,
  install = {
    lua = {
      ["petrel"] = "lua/petrel/init.lua",
      ["petrel.schema"] = "lua/petrel/schema.lua",
      ["petrel.idl"] = "lua/petrel/idl.lua",
      ["petrel.dump"] = "lua/petrel/dump.lua",
      ["petrel.loop"] = "lua/petrel/loop.lua",
      ["petrel.rpc"] = "lua/petrel/rpc.lua",
      ["petrel.client"] = "lua/petrel/client.lua",
      ["petrel.supervisor"] = "lua/petrel/supervisor.lua",
      ["petrel.options"] = "lua/petrel/options.lua",
      ["petrel.ffi"] = "lua/petrel/ffi.lua",
      ["petrel.resty"] = "lua/petrel/resty.lua",
      ["petrel.http"] = "lua/petrel/http.lua",
      ["petrel.json"] = "lua/petrel/json.lua",
      ["petrel.etcd"] = "lua/petrel/etcd.lua",
      ["petrel.balance"] = "lua/petrel/balance.lua",
      ["petrel.breaker"] = "lua/petrel/breaker.lua",
      ["petrel.cluster"] = "lua/petrel/cluster.lua",
      ["petrel.transmeta"] = "lua/petrel/transmeta.lua",
      ["petrel.udp"] = "lua/petrel/udp.lua",
      ["petrel.cli"] = "lua/petrel/cli/init.lua",
      ["petrel.cli.util"] = "lua/petrel/cli/util.lua",
      ["petrel.cli.values"] = "lua/petrel/cli/values.lua",
      ["petrel.cli.walk"] = "lua/petrel/cli/walk.lua",
      ["petrel.cli.call"] = "lua/petrel/cli/call.lua",
      ["petrel.cli.serve"] = "lua/petrel/cli/serve.lua",
      ["petrel.cli.codec"] = "lua/petrel/cli/codec.lua",
      ["petrel.cli.bench"] = "lua/petrel/cli/bench.lua",
      ["petrel.cli.idl"] = "lua/petrel/cli/idl.lua",
      ["petrel.cli.repl"] = "lua/petrel/cli/repl.lua",
    },
    -- the command line (docs/cli.md); lua-argparse, lua-cjson and
    -- lua-readline are used where installed (not rock dependencies: the
    -- install stays offline; a missing one is named when it is needed)
    bin = {
      petrel = "bin/petrel",
    },
    lib = {
      ["petrel.core"] = "build/rock/petrel/core.so",
    },
  },
}
