-- Runnable documentation: every fenced ```lua block of README.md and
-- docs/*.md is a complete program. Each runs as a subprocess (from the
-- repository root, on the runtime busted runs under: make test runs this
-- spec on Lua 5.4 and on LuaJIT), must exit 0 within 60 s, and must print
-- exactly what its output comments say.
--
-- Conventions (docs/examples.md says them for readers):
--   ```lua            runs on Lua 5.4 and on LuaJIT
--   ```lua luajit     runs on LuaJIT only (```lua lua5.4: Lua 5.4 only)
--   ```lua nginx      code for nginx's Lua phases (it needs ngx.*): not a
--                     standalone program, so it is only compiled here;
--                     spec/resty_spec.lua runs the same calls inside nginx
--   ```lua etcd       needs an etcd server: compiled here, and run by
--                     spec/etcd_spec.lua with the etcd it starts (ETCD)
--   print(x, y)  --> 6 7
--       every line the block prints has a --> comment, in order; values
--       are compared with runs of spaces and tabs taken as one space.
--       "--> ..." alone matches any number of lines; elsewhere "..." in a
--       --> text matches any run of characters (a port, a timing).
--   A comment that states values (starts with a number, a quoted string,
--   nil, true or false) must be a --> comment, so no claim goes unchecked.
local RT = jit and "luajit" or "lua5.4"
local BUILD = os.getenv("PETREL_BUILD") or "build"

local M = {}

-- Fenced lua blocks of a markdown file: { file, line, runtimes, code }.
function M.blocks(path, text)
  local out, cur = {}, nil
  local n = 0
  for line in (text .. "\n"):gmatch("(.-)\r?\n") do
    n = n + 1
    if cur then
      if line:match("^```%s*$") then
        cur.code = table.concat(cur.lines, "\n") .. "\n"
        out[#out + 1] = cur
        cur = nil
      else
        cur.lines[#cur.lines + 1] = line
      end
    else
      local attrs = line:match("^```lua(.*)$")
      if attrs and (attrs == "" or attrs:match("^%s")) then
        local rts = { ["lua5.4"] = true, luajit = true }
        if attrs:match("%f[%w]luajit%f[%W]") then rts = { luajit = true } end
        if attrs:match("%f[%w]lua5%.4%f[^%w.]") then rts = { ["lua5.4"] = true } end
        local nginx = attrs:match("%f[%w]nginx%f[%W]") ~= nil
        local etcd = attrs:match("%f[%w]etcd%f[%W]") ~= nil
        cur = { file = path, line = n, runtimes = rts, lines = {}, nginx = nginx, etcd = etcd }
      end
    end
  end
  if cur then error(path .. ":" .. cur.line .. ": unterminated ```lua block") end
  return out
end

local function norm(s)
  return (s:gsub("%s+$", ""):gsub("^%s+", ""):gsub("[ \t]+", " "))
end

-- Expected output of a block (its --> comments, in order), and the lines
-- whose comments state values without -->.
function M.expected(code)
  local want, bad, n = {}, {}, 0
  for line in code:gmatch("(.-)\n") do
    n = n + 1
    local out = line:match("%-%->(.*)$")
    if out then
      want[#want + 1] = norm(out)
    else
      local c = line:match("%-%-%s*(.-)%s*$")
      if c and not c:match("^%[") and (c:match("^%-?%d[%w%.]*$") or c:match("^%-?%d[%w%.]*[%s,]")
          or c:match("^[\"']")
          or c:match("^nil%f[%W]") or c:match("^true%f[%W]") or c:match("^false%f[%W]")) then
        bad[#bad + 1] = n
      end
    end
  end
  return want, bad
end

-- Does printed line g match the --> text w? "..." in w stands for any
-- run of characters (a port, a timing); otherwise the two are equal.
function M.line_matches(w, g)
  local pieces, from = {}, 1
  while true do
    local a, b = w:find("...", from, true)
    if not a then break end
    pieces[#pieces + 1] = w:sub(from, a - 1)
    from = b + 1
  end
  if #pieces == 0 then return w == g end
  pieces[#pieces + 1] = w:sub(from)
  local first, last = pieces[1], pieces[#pieces]
  if g:sub(1, #first) ~= first then return false end
  local pos = #first + 1
  for k = 2, #pieces - 1 do
    local a, b = g:find(pieces[k], pos, true)
    if not a then return false end
    pos = b + 1
  end
  return #g - pos + 1 >= #last and g:sub(#g - #last + 1) == last
end

-- Does the list of output lines `got` match the --> lines `want`?
function M.matches(want, got)
  local function at(i, j)
    if i > #want then return j > #got end
    local w = want[i]
    if w == "..." then
      for k = j, #got + 1 do
        if at(i + 1, k) then return true end
      end
      return false
    end
    if j > #got then return false end
    if not M.line_matches(w, norm(got[j])) then return false end
    return at(i + 1, j + 1)
  end
  return at(1, 1)
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- Runs code as a program on this runtime: ok, stdout, stderr, status.
function M.run(code)
  local base = os.tmpname()
  local src, out, err, st = base .. ".lua", base .. ".out", base .. ".err", base .. ".st"
  local f = assert(io.open(src, "wb"))
  f:write(code)
  f:close()
  local cpath = RT == "luajit" and "LUA_CPATH" or "LUA_CPATH_5_4"
  local cmd = string.format(
    "LUA_PATH='lua/?.lua;lua/?/init.lua;;' %s='%s/%s/?.so;;' timeout 60 %s %s < /dev/null > %s 2> %s; echo $? > %s",
    cpath, BUILD, RT, RT, src, out, err, st)
  os.execute(cmd)
  local stdout, stderr = slurp(out) or "", slurp(err) or ""
  local status = tonumber((slurp(st) or ""):match("%d+")) or -1
  for _, p in ipairs({ base, src, out, err, st }) do os.remove(p) end
  return status == 0, stdout, stderr, status
end

-- Checks one block: nil when it is right, else what is wrong.
function M.check(block)
  local want, bad = M.expected(block.code)
  if #bad > 0 then
    return string.format("%s:%d: block lines %s state values in a plain comment; write them as --> output",
      block.file, block.line, table.concat(bad, ", "))
  end
  local ok, stdout, stderr, status = M.run(block.code)
  if not ok then
    return string.format("%s:%d: exited with status %d\n%s%s", block.file, block.line, status,
      stderr, stdout)
  end
  if stderr ~= "" then
    return string.format("%s:%d: wrote to stderr (a warning or a log line the reader would see):\n%s",
      block.file, block.line, stderr)
  end
  local got = {}
  for l in stdout:gmatch("(.-)\n") do got[#got + 1] = l end
  if stdout:sub(-1) ~= "\n" and #stdout > 0 then got[#got + 1] = stdout:match("([^\n]*)$") end
  if not M.matches(want, got) then
    local first = ""
    for i = 1, math.max(#want, #got) do
      local w, g = want[i], got[i] and norm(got[i])
      if w == "..." or (w and w:find("...", 1, true)) then break end
      if w ~= g then
        first = string.format(" (output line %d: --> %s, printed %s)", i,
          w and ("'" .. w .. "'") or "nothing", g and ("'" .. g .. "'") or "nothing")
        break
      end
    end
    return string.format("%s:%d: the output differs from its --> comments%s\nwant:\n  %s\ngot:\n  %s\n%s",
      block.file, block.line, first, table.concat(want, "\n  "), table.concat(got, "\n  "), stderr)
  end
  return nil
end

local function doc_files()
  local files = { "README.md" }
  local p = io.popen("ls docs/*.md 2>/dev/null")
  for l in p:lines() do files[#files + 1] = l end
  p:close()
  return files
end

describe("documentation examples", function()
  local total = 0
  for _, path in ipairs(doc_files()) do
    local text = assert(slurp(path), path)
    for _, b in ipairs(M.blocks(path, text)) do
      total = total + 1
      if b.nginx or b.etcd then
        it(string.format("%s:%d (%s) compiles on %s", path, b.line,
          b.nginx and "nginx-only" or "run by etcd_spec", RT), function()
          local f, err = (loadstring or load)(b.code, "=" .. path .. ":" .. b.line)
          assert(f, err)
        end)
      elseif b.runtimes[RT] then
        it(string.format("%s:%d runs on %s and prints what its --> comments say", path, b.line, RT),
          function()
            local problem = M.check(b)
            assert(problem == nil, problem)
          end)
      end
    end
  end

  it("README.md has lua blocks to check", function()
    assert.is_true(#M.blocks("README.md", assert(slurp("README.md"))) >= 10)
  end)
end)

-- The checker itself: broken blocks must be caught.
describe("the documentation checker", function()
  local function block(code) return { file = "t.md", line = 1, code = code } end

  it("finds blocks, their runtimes and their line numbers", function()
    local md = "text\n```lua\nprint(1) --> 1\n```\n\n```lua luajit\nprint(2)\n```\n"
      .. "```lua lua5.4\nx()\n```\n```sh\nls\n```\n"
    local bs = M.blocks("x.md", md)
    assert.equal(3, #bs)
    assert.same({ 2, 6, 9 }, { bs[1].line, bs[2].line, bs[3].line })
    assert.same({ ["lua5.4"] = true, luajit = true }, bs[1].runtimes)
    assert.same({ luajit = true }, bs[2].runtimes)
    assert.same({ ["lua5.4"] = true }, bs[3].runtimes)
    assert.equal("print(1) --> 1\n", bs[1].code)
  end)

  it("accepts a block whose output matches", function()
    assert.is_nil(M.check(block('print(6, 7)   --> 6  7\nprint("x y")  --> x y\n')))
    assert.is_nil(M.check(block('for i = 1, 3 do print(i) end\n--> ...\nprint("end") --> end\n')))
    assert.is_nil(M.check(block('print("io_uring SQPOLL") --> io_uring ...\n')))
    assert.is_nil(M.check(block('print("port 4242: timeout") --> port ...: timeout\n')))
    assert.is_true(M.line_matches("a...c", "abc") and M.line_matches("a...c", "ac"))
    assert.is_false(M.line_matches("a...c", "abd") or M.line_matches("ab...bc", "abc"))
  end)

  it("catches wrong values, missing and extra output lines", function()
    assert.matches("differs", M.check(block("print(6, 7) --> 5 6\n")))
    assert.matches("differs", M.check(block("print(1)\n")))
    assert.matches("differs", M.check(block("local x = 1 --> 1\n")))
  end)

  it("catches a block that writes to stderr", function()
    assert.matches("wrote to stderr", M.check(block('io.stderr:write("warning\\n")\n')))
  end)

  it("catches a block that raises or cannot load", function()
    assert.matches("exited with status 1", M.check(block("local t = nil\nprint(t.x)\n")))
    assert.matches("exited with status 1", M.check(block("this is not lua\n")))
  end)

  it("refuses value comments that are not --> comments", function()
    assert.matches("block lines 2 state values", M.check(block("local b = 1\nlocal s, e = 5, 6 -- 5  6\n")))
    assert.matches("state values", M.check(block('x = 1 -- "hello"\n')))
    assert.matches("state values", M.check(block("x = 1 -- nil, err\n")))
    assert.is_nil(M.check(block("local x = 1 -- 1-based, a plain note\n")))
  end)
end)

return M
