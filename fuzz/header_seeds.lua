-- fuzz/header_seeds.lua DIR: seed inputs for fuzz/fuzz_header.c, written
-- by petrel's own framers: every framing of the harness (its first
-- control byte: the index into its framings[]), with and without info
-- entries, ACL token and zlib; the second control byte picks a 16 MiB
-- max_frame. Run by `make fuzz` with the module in $PETREL_BUILD.
local build = os.getenv("PETREL_BUILD") or "build"
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
package.cpath = build .. "/lua5.4/?.so;" .. package.cpath
local petrel = require "petrel"
local core = require "petrel.core"
local dir = assert(arg[1], "usage: header_seeds.lua DIR")

local S = assert(petrel.load([[
struct P { 1: string s, 2: list<i32> l, 3: map<string, i64> m }
service S { P echo(1: P p) }
]], { text = true }))
local args = S.S.functions.echo.args
local value = { p = { s = "hello", l = { 1, 2, 3 }, m = { a = 1 } } }

local framings = { "framed", "header", "framed-header", "ttheader", "ttheader-framed",
  "framed-ttheader" }
local n = 0
for i, tr in ipairs(framings) do
  local tt = tr:find("ttheader", 1, true) ~= nil
  for _, v in ipairs({
    {},
    { headers = tt and { [2] = "log-1", k = "v" } or { k = "v", client_timeout = "100" },
      acl = tt and "token" or nil },
    { transforms = { "zlib" }, headers = { k = "v" } },
  }) do
    for _, proto in ipairs({ "binary", "compact" }) do
      if not (tr == "framed" and (v.headers or v.transforms)) then
        local fr = core.framer { transport = tr, transforms = v.transforms, acl_token = v.acl }
        local b = core.buffer()
        args:encode_message(value, b, "echo", 1, 7, fr, proto, tr ~= "framed" and v.headers or nil)
        n = n + 1
        local f = assert(io.open(string.format("%s/seed-%02d.bin", dir, n), "wb"))
        f:write(string.char(i - 1, 1), tostring(b))
        f:close()
      end
    end
  end
end
