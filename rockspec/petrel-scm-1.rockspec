-- Install: luarocks --lua-version=5.4 --tree=DIR make rockspec/petrel-scm-1.rockspec
-- (LuaJIT: --lua-version=5.1). Builds offline from this checkout.
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
external_dependencies = {
  URING = { header = "liburing.h", library = "uring" },
  -- HTTP responses of the etcd client (Debian: libhttp-parser-dev)
  HTTP_PARSER = { header = "http_parser.h", library = "http_parser" },
}
build = {
  type = "builtin",
  modules = {
    ["petrel"] = "lua/petrel/init.lua",
    ["petrel.schema"] = "lua/petrel/schema.lua",
    ["petrel.idl"] = "lua/petrel/idl.lua",
    ["petrel.workload"] = "lua/petrel/workload.lua",
    ["petrel.loop"] = "lua/petrel/loop.lua",
    ["petrel.rpc"] = "lua/petrel/rpc.lua",
    ["petrel.client"] = "lua/petrel/client.lua",
    ["petrel.supervisor"] = "lua/petrel/supervisor.lua",
    ["petrel.options"] = "lua/petrel/options.lua",
    ["petrel.http"] = "lua/petrel/http.lua",
    ["petrel.json"] = "lua/petrel/json.lua",
    ["petrel.etcd"] = "lua/petrel/etcd.lua",
    ["petrel.balance"] = "lua/petrel/balance.lua",
    ["petrel.breaker"] = "lua/petrel/breaker.lua",
    ["petrel.cluster"] = "lua/petrel/cluster.lua",
    ["petrel.ffi"] = "lua/petrel/ffi.lua",
    ["petrel.core"] = {
      sources = {
        "csrc/pt_buf.c",
        "csrc/pt_hash.c",
        "csrc/pt_http.c",
        "csrc/pt_plan.c",
        "csrc/pt_simd.c",
        "csrc/pt_loop.c",
        "csrc/lua/lpt_core.c",
        "csrc/lua/lpt_buf.c",
        "csrc/lua/lpt_codec.c",
        "csrc/lua/lpt_http.c",
        "csrc/lua/lpt_loop.c",
      },
      incdirs = { "csrc", "$(URING_INCDIR)", "$(HTTP_PARSER_INCDIR)" },
      libdirs = { "$(URING_LIBDIR)", "$(HTTP_PARSER_LIBDIR)" },
      libraries = { "uring", "m", "http_parser" },
      defines = { "PT_HAVE_HTTP_PARSER=1" },
    },
  },
}
