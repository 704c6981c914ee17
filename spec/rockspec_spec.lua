-- The rockspec installs every module the checkout has: a new source file
-- that is not built or listed would work with the Makefile but not for
-- LuaRocks users.
describe("rockspec/petrel-scm-1.rockspec", function()
  local env = {}
  local chunk = assert((loadfile or load)("rockspec/petrel-scm-1.rockspec", "t", env))
  if setfenv then setfenv(chunk, env) end
  chunk()

  local function listing(cmd)
    local out, p = {}, io.popen(cmd)
    for line in p:lines() do out[#out + 1] = line end
    p:close()
    table.sort(out)
    return out
  end

  it("builds the C module from every C source, as make does", function()
    assert.equal("make", env.build.type)
    assert.equal("rock", env.build.build_target)
    assert.equal("build/rock/petrel/core.so", env.build.install.lib["petrel.core"])
    -- the sources the rock target compiles (dry run), with and without liburing
    for _, uring in ipairs { "1", "0" } do
      local cmd = "make -s -n rock URING=" .. uring .. " LUA_INCDIR=/usr/include/lua5.4"
      local p = io.popen(cmd)
      local out = p:read("*a")
      p:close()
      local srcs = {}
      for src in out:gmatch("(csrc/[%w_/]+%.c)") do srcs[#srcs + 1] = src end
      table.sort(srcs)
      local want = listing("ls csrc/*.c csrc/lua/*.c csrc/be/*.c")
      if uring == "0" then
        for i = #want, 1, -1 do if want[i] == "csrc/be/pt_uring.c" then table.remove(want, i) end end
      end
      assert.same(want, srcs)
      assert.equal(uring == "1", out:match("%-luring") ~= nil)
    end
  end)

  it("lists every Lua module", function()
    local mods = {}
    for name, path in pairs(env.build.install.lua) do
      mods[#mods + 1] = path
      local want = (name == "petrel" or name == "petrel.cli") and
        ("lua/" .. name:gsub("%.", "/") .. "/init.lua")
        or "lua/" .. name:gsub("%.", "/") .. ".lua"
      assert.equal(want, path)
    end
    table.sort(mods)
    assert.same(listing("ls lua/petrel/*.lua lua/petrel/cli/*.lua"), mods)
  end)

  it("installs the petrel command", function()
    assert.same({ petrel = "bin/petrel" }, env.build.install.bin)
    assert.same({ "petrel" }, listing("ls bin"))
  end)
end)
