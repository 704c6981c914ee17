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
    ["petrel.ffi"] = "lua/petrel/ffi.lua",
    ["petrel.core"] = {
      sources = {
        "csrc/pt_buf.c",
        "csrc/pt_thrift.c",
        "csrc/pt_detect.c",
        "csrc/pt_scan.c",
        "csrc/pt_plan.c",
        "csrc/pt_simd.c",
        "csrc/pt_loop.c",
        "csrc/lua/lpt_core.c",
        "csrc/lua/lpt_buf.c",
        "csrc/lua/lpt_schema.c",
        "csrc/lua/lpt_array.c",
        "csrc/lua/lpt_wire.c",
        "csrc/lua/lpt_codec.c",
        "csrc/lua/lpt_loop.c",
      },
      incdirs = { "csrc", "$(URING_INCDIR)" },
      libdirs = { "$(URING_LIBDIR)" },
      libraries = { "uring", "m" },
      defines = {},
    },
  },
}
