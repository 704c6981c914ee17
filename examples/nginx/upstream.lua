-- examples/nginx/upstream.lua: the Thrift service the nginx example calls,
-- a petrel server for calc.thrift. From the checkout, after `make`:
--   lua5.4 examples/nginx/upstream.lua [port]      (default 9090)
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = "build/lua5.4/?.so;" .. package.cpath
local petrel = require "petrel"

local ns = assert(petrel.load("examples/nginx/calc.thrift"))
assert(petrel.serve {
  service = ns.Calc, host = "127.0.0.1", port = tonumber(arg[1]) or 9090,
  handler = {
    add = function(a, b) return a + b end,
    echo = function(it) return it end,
    fail = function(code)
      error(petrel.throw("oops", { message = "failed with " .. code, code = code }))
    end,
    many = function(n, prefix)
      local out = {}
      for i = 1, n do out[i] = { id = i, name = prefix .. i, nums = { i } } end
      return out
    end,
  },
})
