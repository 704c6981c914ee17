-- bench/idl_load.lua: generate a ~150 KB Thrift IDL (structs, enums,
-- typedefs, consts, services), load it with petrel.idl on the interpreter
-- running this script, print the best time of several runs and whether it is
-- under the 100 ms budget. Run from the repo root:
--   lua5.4 bench/idl_load.lua    |   luajit bench/idl_load.lua
-- Exit status 1 if the loader fails or the budget is exceeded.
package.path = "lua/?.lua;lua/?/init.lua;" .. package.path
local idl = require "petrel.idl"

local BUDGET_MS = 100
local RUNS = 7

-- Append the IDL of group g (an enum, a typedef, 6 structs, consts, a
-- service) to out.
local function gen_group(out, g)
  local p = "G" .. g
  out[#out + 1] = ("/** Status values of group %d. */\nenum %sStatus {\n"):format(g, p)
  for v = 0, 7 do out[#out + 1] = ("  %s_V%d = %d,\n"):format(p, v, v * 3) end
  out[#out + 1] = "}\n\n"
  out[#out + 1] = ("typedef map<string, list<i64>> %sIndex\n\n"):format(p)
  for s = 1, 6 do
    out[#out + 1] = ("// struct %d of group %d\nstruct %sS%d {\n"):format(s, g, p, s)
    out[#out + 1] = "  1: required i64 id,\n"
    out[#out + 1] = ("  2: optional string name = \"%s-%d\",\n"):format(p, s)
    out[#out + 1] = "  3: list<i32> nums,\n"
    out[#out + 1] = ("  4: map<string, %sStatus> states,\n"):format(p)
    out[#out + 1] = ("  5: %sStatus status = %sStatus.%s_V2,\n"):format(p, p, p)
    out[#out + 1] = ("  6: %sIndex index (cpp.ref = \"true\"),\n"):format(p)
    out[#out + 1] = "  7: double ratio = 0.5,\n"
    out[#out + 1] = "  8: set<string> tags,\n"
    if s > 1 then out[#out + 1] = ("  9: %sS%d prev,\n"):format(p, s - 1) end
    out[#out + 1] = "  10: binary blob,\n"
    out[#out + 1] = "}\n\n"
  end
  out[#out + 1] = ("exception %sError {\n  1: string message,\n  2: i32 code = %d,\n}\n\n")
    :format(p, g)
  out[#out + 1] = ("const i32 %s_LIMIT = %d\n"):format(p, g * 10)
  out[#out + 1] = ("const list<string> %s_NAMES = [\"a\", \"b\", \"c\"]\n"):format(p)
  out[#out + 1] = ("const map<string, i32> %s_MAP = {\"x\": %s_LIMIT, \"y\": 2}\n\n")
    :format(p, p)
  out[#out + 1] = ("service %sService {\n"):format(p)
  for f = 1, 4 do
    out[#out + 1] = ("  %sS%d call%d(1: %sS%d req, 2: i32 limit = %s_LIMIT) throws (1: %sError err),\n")
      :format(p, f, f, p, f, p, p)
  end
  out[#out + 1] = ("  oneway void notify(1: %sS1 req)\n}\n\n"):format(p)
end

-- Generate IDL text of about target bytes.
local function gen(target)
  local out, g, size = { "namespace py bench.idl\n\n" }, 0, 0
  while size < target do
    g = g + 1
    local n0 = #out
    gen_group(out, g)
    for j = n0 + 1, #out do size = size + #out[j] end
  end
  return table.concat(out), g
end

local text, groups = gen(150 * 1024)
local clock = os.clock
local best = math.huge
for _ = 1, RUNS do
  local t0 = clock()
  local res, err = idl.parse(text, { name = "bench.thrift" })
  local dt = (clock() - t0) * 1000
  if not res then
    print("idl_load: FAILED: " .. tostring(err))
    os.exit(1)
  end
  if dt < best then best = dt end
end

-- The whole petrel.load path: parse, then compile into C plans.
local petrel_ok, petrel = pcall(require, "petrel")
local best_full = math.huge
if petrel_ok then
  for _ = 1, RUNS do
    local t0 = clock()
    local ns, err = petrel.load(text, { text = true, name = "bench.thrift" })
    local dt = (clock() - t0) * 1000
    if not ns then
      print("petrel.load: FAILED: " .. tostring(err))
      os.exit(1)
    end
    if dt < best_full then best_full = dt end
  end
end

local rt = jit and jit.version or _VERSION
local ok = best < BUDGET_MS and (not petrel_ok or best_full < BUDGET_MS)
print(("idl_load (%s): %.1f KB IDL, %d groups: parse best %.2f ms of %d runs -- %s %d ms")
  :format(rt, #text / 1024, groups, best, RUNS, best < BUDGET_MS and "under" or "OVER", BUDGET_MS))
if petrel_ok then
  print(("petrel.load (%s): parse + compile best %.2f ms of %d runs -- %s %d ms")
    :format(rt, best_full, RUNS, best_full < BUDGET_MS and "under" or "OVER", BUDGET_MS))
end
os.exit(ok and 0 or 1)
