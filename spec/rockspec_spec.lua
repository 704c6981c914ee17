-- The rockspec installs every module the checkout has: a new source file
-- that is not listed would build in the Makefile but not for LuaRocks users.
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

  it("lists every C source of the core and the binding", function()
    local srcs = {}
    for _, s in ipairs(env.build.modules["petrel.core"].sources) do srcs[#srcs + 1] = s end
    table.sort(srcs)
    assert.same(listing("ls csrc/*.c csrc/lua/*.c"), srcs)
  end)

  it("lists every Lua module", function()
    local mods = {}
    for name, path in pairs(env.build.modules) do
      if type(path) == "string" then
        mods[#mods + 1] = path
        local want = name == "petrel" and "lua/petrel/init.lua"
          or "lua/" .. name:gsub("%.", "/") .. ".lua"
        assert.equal(want, path)
      end
    end
    table.sort(mods)
    assert.same(listing("ls lua/petrel/*.lua"), mods)
  end)
end)
