-- make mutate: the mutation check. Usage (from the repository root):
--   lua5.4 tools/mutate.lua [LIST]          (LIST: spec/mutations.txt)
-- Environment: MUTATE_ONLY=name,name (run these entries only),
-- MUTATE_TIMEOUT=seconds per spec run (default 120), MUTATE_JOBS=parallel
-- compiles (default 2), CC, LUA54_INC, LUAJIT_INC.
--
-- Each entry of LIST is a small deliberate bug: an exact piece of one
-- source file and its replacement. For each, in a scratch copy of the
-- tree (build-mutate/src: the working tree and build/ are never touched),
-- the text is replaced, the modules are rebuilt for Lua 5.4 and LuaJIT
-- (only the object files that depend on the mutated file are recompiled),
-- the entry's specs run on
-- each runtime (busted specs under busted, spec/c/*.c as C tests), and the
-- source is put back. A mutation is KILLED when, on every runtime the
-- entry names, one of its specs fails (an assertion, an error, a crash or
-- the time bound; busted stops at a spec's first failure); otherwise it
-- SURVIVED. Before any mutation the same
-- specs must pass on the unmutated copy, or nothing is proven.
--
-- Fails (exit 1) when an entry's text is missing or not unique (code that
-- moved must be noticed and the entry re-targeted), when the baseline
-- fails, or when any mutation survives. Prints a table: mutation -> the
-- spec and test that killed it, per runtime.
--
-- LIST format: entries start with "== name"; then "key: value" lines:
--   file:     the source file (a path from the repository root)
--   in:       (optional) scope for the finds after it: an exact text that
--             occurs once in the file (a function's first line); the find
--             is then looked for from there to the end of that top-level
--             block (the next line starting with "}" or "end"), where it
--             must occur exactly once (for twins such as the Binary and
--             Compact skippers, which share lines)
--   find:     the exact original text, one line (leading and trailing
--             blanks ignored); it must occur exactly once in the file (or
--             in its scope)
--   replace:  the text put in its place (may be empty)
--             (find/replace pairs may repeat: all are applied)
--   specs:    spec files, in the order tried (spec/x_spec.lua, spec/c/test_y.c)
--   runtimes: lua5.4 luajit (the default; a LuaJIT-only code path names one)
--   why:      what the mutation stands for (free text, may repeat)
-- Lines starting with "#" and blank lines are ignored.

local LIST = arg[1] or "spec/mutations.txt"
local WORK = "build-mutate"
local CC = os.getenv("CC") or "cc"
local INC = {
  ["lua5.4"] = os.getenv("LUA54_INC") or "/usr/include/lua5.4",
  luajit = os.getenv("LUAJIT_INC") or "/usr/include/luajit-2.1",
}
local TIMEOUT = tonumber(os.getenv("MUTATE_TIMEOUT") or "") or 120
local JOBS = tonumber(os.getenv("MUTATE_JOBS") or "") or 2
local CFLAGS = "-O2 -fPIC -std=gnu11 -Wall -Wextra -fvisibility=hidden"
local RUNTIMES = { "lua5.4", "luajit" }

local function die(msg)
  io.stderr:write("mutate: ", msg, "\n")
  os.exit(1)
end

local function sh(cmd) -- -> ok, exit code or signal
  local ok, how, code = os.execute(cmd)
  if how == "signal" and (code == 2 or code == 15) then error("mutate: interrupted", 0) end
  return ok == true, code
end

local function q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- occurrences of plain text t in s between positions from and to
local function occurrences(s, t, from, to)
  local list, init = {}, from or 1
  while true do
    local a, b = s:find(t, init, true)
    if not a or (to and b > to) then break end
    list[#list + 1] = a
    init = b + 1
  end
  return list
end

-- Where edit ed's find text is in text: start, end; or nil, the problem.
-- With a scope, only within the top-level block its anchor opens.
local function locate(text, ed)
  local from, to, where = 1, nil, ""
  if ed.scope then
    local at = occurrences(text, ed.scope)
    if #at ~= 1 then
      return nil, (#at == 0 and "the scope is not found (moved or changed? re-target the entry): "
        or "the scope occurs " .. #at .. " times: ") .. ed.scope
    end
    from = at[1]
    local e1 = text:find("\n}", from, true)
    local e2 = text:find("\nend%f[%W]", from)
    to = math.min(e1 or #text, e2 or #text)
    where = " in " .. ed.scope
  end
  local at = occurrences(text, ed.find, from, to)
  if #at ~= 1 then
    return nil, (#at == 0 and "the text is not found" .. where .. " (moved or changed? re-target the entry): "
      or "the text occurs " .. #at .. " times" .. where .. ": ") .. ed.find
  end
  return at[1], at[1] + #ed.find - 1
end

-- ---- the list --------------------------------------------------------------

local function parse(path)
  local text = slurp(path) or die("cannot read " .. path)
  local entries, cur, n = {}, nil, 0
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    n = n + 1
    local name = line:match("^==%s*(%S.-)%s*$")
    if name then
      cur = { name = name, line = n, edits = {}, specs = {}, why = {} }
      entries[#entries + 1] = cur
    elseif not line:match("^%s*#") and line:match("%S") then
      local key, val = line:match("^(%w+):%s?(.*)$")
      if not key or not cur then die(path .. ":" .. n .. ": expected '== name' or 'key: value'") end
      if key == "file" then
        cur.file = trim(val)
      elseif key == "in" then
        cur.scope = trim(val) ~= "" and trim(val) or nil
      elseif key == "find" then
        cur.edits[#cur.edits + 1] = { find = trim(val), scope = cur.scope }
      elseif key == "replace" then
        local e = cur.edits[#cur.edits]
        if not e or e.replace then die(path .. ":" .. n .. ": replace without find") end
        e.replace = trim(val)
      elseif key == "specs" then
        for s in val:gmatch("%S+") do cur.specs[#cur.specs + 1] = s end
      elseif key == "runtimes" then
        cur.runtimes = {}
        for s in val:gmatch("%S+") do cur.runtimes[#cur.runtimes + 1] = s end
      elseif key == "why" then
        cur.why[#cur.why + 1] = trim(val)
      else
        die(path .. ":" .. n .. ": unknown key " .. key)
      end
    end
  end
  for _, e in ipairs(entries) do
    local where = path .. ":" .. e.line .. " (" .. e.name .. ")"
    if not e.file then die(where .. ": no file") end
    if #e.edits == 0 then die(where .. ": no find/replace") end
    for _, ed in ipairs(e.edits) do
      if ed.find == "" then die(where .. ": empty find") end
      if not ed.replace then die(where .. ": find without replace") end
    end
    if #e.specs == 0 then die(where .. ": no specs") end
    e.runtimes = e.runtimes or RUNTIMES
  end
  return entries
end

local entries = parse(LIST)
local only = os.getenv("MUTATE_ONLY")
if only and only ~= "" then
  local want, kept = {}, {}
  for s in only:gmatch("[^,%s]+") do want[s] = true end
  for _, e in ipairs(entries) do if want[e.name] then kept[#kept + 1] = e; want[e.name] = nil end end
  for s in pairs(want) do die("MUTATE_ONLY names no entry " .. s) end
  entries = kept
end

-- ---- the scratch copy --------------------------------------------------------

local ROOT = io.popen("pwd"):read("l")
local SRC = WORK .. "/src"
local BUILD = ROOT .. "/" .. WORK .. "/build"
sh("rm -rf " .. q(SRC) .. " && mkdir -p " .. q(SRC) .. " " .. q(WORK .. "/obj"))
-- tracked and new files as they are in the working tree; bench/data (large,
-- only read) is linked instead
do
  local files = {}
  for f in io.popen("git ls-files --cached --others --exclude-standard"):lines() do
    if not f:match("^bench/data/") and slurp(f) then files[#files + 1] = f end
  end
  spit(WORK .. "/files.txt", table.concat(files, "\n") .. "\n")
  assert(sh("tar -cf - -T " .. q(WORK .. "/files.txt") .. " | tar -xf - -C " .. q(SRC)), "cannot copy the tree")
end
assert(sh("ln -s " .. q(ROOT .. "/bench/data") .. " " .. q(SRC .. "/bench/data")))

-- every find text exactly once, before anything is built
local problems = {}
for _, e in ipairs(entries) do
  local text = slurp(SRC .. "/" .. e.file)
  if not text then
    problems[#problems + 1] = e.name .. ": no file " .. e.file
  else
    for _, ed in ipairs(e.edits) do
      local a, why = locate(text, ed)
      if not a then problems[#problems + 1] = string.format("%s: %s: %s", e.name, e.file, why) end
    end
    for _, s in ipairs(e.specs) do
      if not slurp(SRC .. "/" .. s) then problems[#problems + 1] = e.name .. ": no spec " .. s end
    end
  end
end
if #problems > 0 then die("the list does not match the source:\n  " .. table.concat(problems, "\n  ")) end

-- ---- building ------------------------------------------------------------------

-- the same source lists as the Makefile's
local CORE, BIND, LIBS, DEFS = {}, {}, {}, {}
for l in io.popen("make -s --no-print-directory -C " .. q(SRC) .. " print-sources"):lines() do
  local kind, rest = l:match("^(%u+) (.*)$")
  for f in (rest or ""):gmatch("%S+") do
    if kind == "CORE" then CORE[#CORE + 1] = f elseif kind == "BIND" then BIND[#BIND + 1] = f
    elseif kind == "LIBS" then LIBS[#LIBS + 1] = f elseif kind == "DEFS" then DEFS[#DEFS + 1] = f end
  end
end
if #CORE == 0 or #BIND == 0 then die("make print-sources gave no sources") end
LIBS = table.concat(LIBS, " ")
CFLAGS = CFLAGS .. (#DEFS > 0 and " " .. table.concat(DEFS, " ") or "")

local function obj(src, rt) -- core objects are shared; binding objects are per runtime
  local base = src:gsub("[/.]", "_")
  return WORK .. "/obj/" .. (src:match("^csrc/lua/") and rt .. "-" or "") .. base .. ".o"
end

local function compile_cmd(src, rt, log)
  local inc = src:match("^csrc/lua/") and (" -I" .. q(INC[rt])) or ""
  return string.format("%s %s -I%s/csrc%s -c %s -o %s 2>%s", CC, CFLAGS, q(SRC), inc,
    q(SRC .. "/" .. src), q(obj(src, rt)), q(log))
end

-- Compiles the {src, rt} pairs of list, JOBS at a time; true, or false
-- with the first failure's messages in cc.log.
local function compile_all(list)
  for i = 1, #list, JOBS do
    local cmds = {}
    for j = i, math.min(i + JOBS - 1, #list) do
      local log = WORK .. "/cc." .. j .. ".log"
      cmds[#cmds + 1] = string.format("( %s; echo $? > %s ) &", compile_cmd(list[j][1], list[j][2], log),
        q(WORK .. "/cc." .. j .. ".rc"))
    end
    sh(table.concat(cmds, " ") .. " wait")
    for j = i, math.min(i + JOBS - 1, #list) do
      local rc = slurp(WORK .. "/cc." .. j .. ".rc")
      if not rc or tonumber(rc) ~= 0 then
        spit(WORK .. "/cc.log", slurp(WORK .. "/cc." .. j .. ".log") or "")
        return false
      end
    end
  end
  return true
end

-- the pairs that build a source: core objects once, binding ones per runtime
local function builds_of(src, list)
  if src:match("^csrc/lua/") then
    for _, rt in ipairs(RUNTIMES) do list[#list + 1] = { src, rt } end
  else
    list[#list + 1] = { src, "lua5.4" }
  end
  return list
end

-- the repository files each source includes (itself too), from cc -MM
local DEPS = {}
local function normalize(path)
  local prev
  repeat
    prev = path
    path = path:gsub("[^/]+/%.%./", "", 1)
  until path == prev
  return path
end
for _, group in ipairs({ CORE, BIND }) do
  for _, src in ipairs(group) do
    local inc = src:match("^csrc/lua/") and (" -I" .. q(INC["lua5.4"])) or ""
    local out = io.popen(string.format("cd %s && %s %s -Icsrc%s -MM %s 2>/dev/null", q(SRC), CC,
      CFLAGS, inc, q(src))):read("a")
    local set = { [src] = true }
    for f in out:gsub("\\\n", " "):gsub("^[^:]*:", ""):gmatch("%S+") do
      if not f:match("^/") then set[normalize(f)] = true end
    end
    DEPS[src] = set
  end
end

local function link(rt)
  local objs = {}
  for _, s in ipairs(CORE) do objs[#objs + 1] = q(obj(s, rt)) end
  for _, s in ipairs(BIND) do objs[#objs + 1] = q(obj(s, rt)) end
  sh("mkdir -p " .. q(BUILD .. "/" .. rt .. "/petrel"))
  return sh(string.format("%s -shared -o %s %s %s 2>%s/cc.log", CC,
    q(BUILD .. "/" .. rt .. "/petrel/core.so"), table.concat(objs, " "), LIBS, WORK))
end

local function ctest(name) -- spec/c/test_x.c -> its binary, built on the current core objects
  local bin = BUILD .. "/ctest/" .. name:match("([^/]+)%.c$")
  local objs = {}
  for _, s in ipairs(CORE) do objs[#objs + 1] = q(obj(s, "lua5.4")) end
  sh("mkdir -p " .. q(BUILD .. "/ctest"))
  local ok = sh(string.format("%s %s -I%s/csrc -o %s %s %s %s 2>%s/cc.log", CC, CFLAGS, q(SRC),
    q(bin), q(SRC .. "/" .. name), table.concat(objs, " "), LIBS, WORK))
  return ok and bin
end

-- (re)builds what depends on file (the objects whose sources include it;
-- every object if cc -MM named none), nothing for Lua
local function rebuild(file)
  if not file:match("^csrc/") then return true end
  local todo = {}
  for _, group in ipairs({ CORE, BIND }) do
    for _, s in ipairs(group) do
      if DEPS[s] and DEPS[s][file] then builds_of(s, todo) end
    end
  end
  if #todo == 0 then
    for _, group in ipairs({ CORE, BIND }) do
      for _, s in ipairs(group) do builds_of(s, todo) end
    end
  end
  if not compile_all(todo) then return false end
  for _, rt in ipairs(RUNTIMES) do if not link(rt) then return false end end
  return true
end

-- ---- running ---------------------------------------------------------------------

-- Runs one spec on rt in the copy: nil when it passes, else what failed.
local function run_spec(spec, rt)
  local out = ROOT .. "/" .. WORK .. "/run.log"
  local cmd
  if spec:match("%.c$") then
    local bin = ctest(spec)
    if not bin then return "does not build: " .. (slurp(WORK .. "/cc.log") or "") end
    cmd = string.format("cd %s && PETREL_BACKEND=epoll timeout %d %s", q(SRC), TIMEOUT, q(bin))
  else
    cmd = string.format("cd %s && PETREL_BUILD=%s PETREL_BACKEND=epoll timeout %d busted --lua=%s --no-keep-going -o plainTerminal %s",
      q(SRC), q(BUILD), TIMEOUT, rt, q(spec))
  end
  local ok, code = sh(cmd .. " < /dev/null > " .. q(out) .. " 2>&1")
  if ok then return nil end
  local log = slurp(out) or ""
  if code == 124 then return "timed out after " .. TIMEOUT .. " s" end
  local test = log:match("\nFailure %-> [^\n]*\n([^\n]*)") or log:match("\nError %-> [^\n]*\n([^\n]*)")
    or log:match("FAIL (%S+)")
  if test then return test end
  if code and code > 128 then return "crashed (signal " .. (code - 128) .. ")" end
  if log:match("Segmentation fault") then return "crashed (segmentation fault)" end
  if log:match("Aborted") then return "crashed (aborted)" end
  return "exit status " .. tostring(code)
end

-- ---- baseline ----------------------------------------------------------------------

local STARTED = os.time()
io.write("mutate: building the scratch copy in ", WORK, "/ (Lua 5.4 and LuaJIT)\n")
do
  local all = {}
  for _, group in ipairs({ CORE, BIND }) do
    for _, s in ipairs(group) do builds_of(s, all) end
  end
  if not compile_all(all) then die("baseline build failed: " .. (slurp(WORK .. "/cc.log") or "")) end
end
for _, rt in ipairs(RUNTIMES) do if not link(rt) then die("baseline link failed") end end
sh("mkdir -p " .. q(WORK .. "/obj.base") .. " && cp " .. q(WORK) .. "/obj/*.o " .. q(WORK .. "/obj.base/"))

local needed = {}
for _, e in ipairs(entries) do
  for _, s in ipairs(e.specs) do
    for _, rt in ipairs(s:match("%.c$") and { "lua5.4" } or e.runtimes) do
      needed[#needed + 1] = { s, rt }
    end
  end
end
local seen = {}
for _, sr in ipairs(needed) do
  local key = sr[1] .. " " .. sr[2]
  if not seen[key] then
    seen[key] = true
    io.write("mutate: baseline ", key, " ... ")
    io.flush()
    local bad = run_spec(sr[1], sr[2])
    if bad then
      io.write("FAILS\n")
      die("the unmutated tree fails " .. key .. ": " .. bad .. "\n" .. (slurp(WORK .. "/run.log") or ""))
    end
    io.write("passes\n")
  end
end

-- ---- mutations ------------------------------------------------------------------

local results, survived = {}, 0
for i, e in ipairs(entries) do
  local path = SRC .. "/" .. e.file
  local original = assert(slurp(path))
  local mutated = original
  for _, ed in ipairs(e.edits) do
    local a, b = locate(mutated, ed)
    if not a then die(e.name .. ": " .. b) end
    mutated = mutated:sub(1, a - 1) .. ed.replace .. mutated:sub(b + 1)
  end
  local t0 = os.time()
  io.write(string.format("mutate: [%d/%d] %s (%s)\n", i, #entries, e.name, e.file))
  io.flush()
  spit(path, mutated)
  local res = { entry = e, by = {} }
  local ok, err = pcall(function()
    if not rebuild(e.file) then
      -- a mutation that does not compile proves nothing: an error in the list
      res.error = "does not build: " .. (slurp(WORK .. "/cc.log") or "")
      return
    end
    for _, spec in ipairs(e.specs) do
      local left = false
      for _, rt in ipairs(e.runtimes) do if not res.by[rt] then left = true end end
      if not left then break end
      if spec:match("%.c$") then
        local bad = run_spec(spec, "lua5.4")
        if bad then
          for _, rt in ipairs(e.runtimes) do res.by[rt] = res.by[rt] or (spec .. ": " .. bad) end
        end
      else
        for _, rt in ipairs(e.runtimes) do
          if not res.by[rt] then
            local bad = run_spec(spec, rt)
            if bad then res.by[rt] = spec .. ": " .. bad end
          end
        end
      end
    end
  end)
  -- put the source and the objects back, whatever happened
  spit(path, original)
  if e.file:match("^csrc/") then
    sh("cp " .. q(WORK) .. "/obj.base/*.o " .. q(WORK .. "/obj/"))
    for _, rt in ipairs(RUNTIMES) do link(rt) end
  end
  if not ok then die("while running " .. e.name .. ": " .. tostring(err)) end
  res.killed = not res.error
  for _, rt in ipairs(e.runtimes) do
    if not res.by[rt] then res.killed = false end
  end
  if not res.killed then survived = survived + 1 end
  for _, rt in ipairs(e.runtimes) do
    io.write(string.format("  %-7s %s\n", rt, res.by[rt] and ("killed by " .. res.by[rt]) or "SURVIVED"))
  end
  if res.error then io.write("  ERROR   ", res.error, "\n") end
  io.write(string.format("  (%d s)\n", os.time() - t0))
  results[#results + 1] = res
end

-- ---- the table ----------------------------------------------------------------------

io.write("\n| mutation | file | Lua 5.4 | LuaJIT |\n|---|---|---|---|\n")
for _, r in ipairs(results) do
  local cells = {}
  for _, rt in ipairs(RUNTIMES) do
    local named = false
    for _, x in ipairs(r.entry.runtimes) do if x == rt then named = true end end
    cells[#cells + 1] = not named and "(not run)" or r.by[rt] and ("killed: " .. r.by[rt])
      or (r.error and "ERROR" or "**SURVIVED**")
  end
  io.write(string.format("| %s | %s | %s | %s |\n", r.entry.name, r.entry.file, cells[1], cells[2]))
end
io.write(string.format("\nmutate: %d killed, %d survived (of %d) in %d s\n", #results - survived, survived,
  #results, os.time() - STARTED))
os.exit(survived == 0 and 0 or 1)
