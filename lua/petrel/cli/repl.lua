-- petrel repl [IDL...]: a Lua prompt with petrel and the IDLs loaded,
-- where the loop keeps running while the prompt waits.
--
-- How: stdin is watched by the default loop (loop:watch, the core's
-- pt_loop_watch). With lua-readline on a terminal, the loop's readiness
-- drives readline's callback interface (handler_install / read_char: one
-- character per call, no blocking read), so a server started at the prompt
-- answers other processes and timers fire while nobody types. Without it
-- (no package, not a terminal, --plain) whole lines are read from the
-- watched fd. A complete line is evaluated outside the loop's dispatch,
-- so blocking calls (client calls, petrel.sleep, petrel.run) work as in a
-- script; meanwhile stdin is not watched (typed-ahead input waits in the
-- terminal). Ctrl-C at the prompt drops the line; during an evaluation it
-- interrupts it. Ctrl-D or :quit leaves.
local petrel = require "petrel"
local core = require "petrel.core"
local util = require "petrel.cli.util"

local M = {}

local HELP = [[
petrel repl: Lua with petrel loaded; the loop runs while the prompt waits.
  expressions print their values (petrel.dump); `=expr` works too
  :help             this text
  :load FILE [NAME] load an IDL as global NAME (default: the file's name)
  :idls             the IDLs loaded and their services
  :quit             leave (or Ctrl-D)
Things to try:
  srv = petrel.server { service = calc.Calc, port = 0, handler = { add = function(a, b) return a + b end } }
  srv.port                    -- other processes can call it now, while this prompt waits
  c = petrel.client { service = calc.Calc, port = srv.port }
  c:add(40, 2)                -- a call runs the loop until its reply
  petrel.default_loop():after(1000, function() print("a second later") end)]]

-- a global name for an IDL file: its base name, as an identifier
local function idl_name(path)
  local base = path:match("([^/]+)$"):gsub("%.thrift$", ""):gsub("[^%w_]", "_")
  if base:match("^%d") then base = "_" .. base end
  return base
end

local function loadchunk(text, name, env)
  if setfenv then
    local f, err = loadstring(text, name)
    if f then setfenv(f, env) end
    return f, err
  end
  return load(text, name, "t", env)
end

local function pack(...) return { n = select("#", ...), ... } end

local function show_results(n, res)
  while n > 1 and res[n] == nil do n = n - 1 end -- c:add(1, 2) gives 3, nil
  if n == 0 then return end
  local parts, multi = {}, false
  for i = 1, n do
    parts[i] = petrel.dump(res[i])
    if parts[i]:find("\n") then multi = true end
  end
  io.stdout:write(table.concat(parts, multi and "\n" or "\t"), "\n")
end

-- An error with its traceback, without the REPL's own frames.
function M.clean_error(e)
  e = tostring(e)
  if e:find("^[^\n]*interrupted\n") then return "interrupted" end
  local out = {}
  for line in (e .. "\n"):gmatch("([^\n]*)\n") do
    if line:find("petrel/cli/") then break end -- the REPL's own frames from here
    if not (line:find("in hook") or line:find("%[C%]: in function 'error'") or
        line:find("in upvalue 'f'") or line:find("in local 'f'")) then
      out[#out + 1] = line
    end
  end
  if out[#out] == "stack traceback:" then out[#out] = nil end
  return table.concat(out, "\n")
end

function M.run(args)
  local loop
  if args.backend then
    local err
    loop, err = petrel.loop { backend = args.backend }
    if not loop then util.failed("%s", err) end
    require("petrel.loop").set_default(loop)
  else
    loop = petrel.default_loop()
  end
  local env = _G
  env.petrel = petrel
  local idls = {}
  local function load_idl(path, name)
    local ns, err = petrel.load(path, { include_dirs = args.include })
    if not ns then return nil, err end
    name = name or idl_name(path)
    env[name] = ns
    idls[#idls + 1] = { name = name, path = path, ns = ns }
    return name, ns
  end
  for _, path in ipairs(args.idls or {}) do
    local name, err = load_idl(path)
    if not name then util.failed("%s", err) end
  end

  local tty_in = util.isatty(0)
  local rl
  if tty_in and not args.plain then
    local ok, m = pcall(require, "readline")
    if ok then rl = m end
  end
  local function idl_line()
    local t = {}
    for _, d in ipairs(idls) do
      t[#t + 1] = d.name .. " (" .. d.path .. (#util.services(d.ns) > 0 and (": " ..
        table.concat(util.services(d.ns), ", ")) or "") .. ")"
    end
    return #t > 0 and table.concat(t, "; ") or "none"
  end
  if tty_in then
    io.stdout:write(string.format("petrel repl (%s, %s back end%s). IDLs: %s. :help for help.\n",
      util.runtime, (loop:backend()), rl and "" or
      (args.plain and ", plain input" or ", no line editing: lua-readline is not installed for " .. util.runtime),
      idl_line()))
  end

  -- ---- input: complete lines into a queue, from the loop ----------------------
  local queue, eof, quit = {}, false, false
  local prompt_text = "> "
  local watch, handler_on = nil, false
  local pending = "" -- plain input: bytes of a line not yet complete
  local plain_file = false -- stdin a regular file: read between rounds

  local function on_line(line)
    if line == nil then eof = true else queue[#queue + 1] = line end
    if rl and handler_on then rl.handler_remove(); handler_on = false end
  end

  local function on_ready()
    if rl then
      if handler_on then rl.read_char() end
      return
    end
    local chunk = core.read_fd(0, 65536)
    if chunk == nil then return end
    if chunk == "" then
      if pending ~= "" then queue[#queue + 1] = pending; pending = "" end
      eof = true
      return
    end
    pending = pending .. chunk
    for line in pending:gmatch("([^\n]*)\n") do queue[#queue + 1] = line end
    pending = pending:match("[^\n]*$")
  end

  local function start_input()
    if rl and not handler_on then
      rl.handler_install(prompt_text, on_line)
      handler_on = true
    elseif not rl and tty_in then
      io.stdout:write(prompt_text)
      io.stdout:flush()
    end
    if not watch and not plain_file then
      local id, err = loop:watch(0, on_ready)
      if id then
        watch = id
      elseif err and err:find("regular file") then
        plain_file = true -- read lines between the loop's rounds
      else
        util.failed("cannot watch stdin: %s", tostring(err))
      end
    end
  end

  local function stop_input()
    if watch then loop:close(watch); watch = nil end
    if rl and handler_on then rl.handler_remove(); handler_on = false end
  end

  if rl then
    local home = os.getenv("HOME")
    pcall(rl.set_options, { histfile = home and (home .. "/.petrel_history") or "",
      keeplines = 1000, completion = true })
    if rl.set_readline_name then pcall(rl.set_readline_name, "petrel") end
    if rl.set_complete_function then
      -- names of globals and of fields along a.b.c
      pcall(rl.set_complete_function, function(text, from, to)
        local word = text:sub(from, to)
        local path, last = word:match("^(.-)([%w_]*)$")
        local t, ok = env, true
        for part in path:gmatch("([%w_]+)[.:]") do
          if type(t) ~= "table" then ok = false; break end
          t = rawget(t, part)
        end
        local out = {}
        if ok and type(t) == "table" then
          for k in pairs(t) do
            if type(k) == "string" and k:sub(1, #last) == last and k:match("^[%a_][%w_]*$") then
              out[#out + 1] = path .. k
            end
          end
        end
        table.sort(out)
        return out
      end)
    end
  end

  -- Ctrl-C: trapped by the loop; at the prompt it drops the line, during
  -- an evaluation a hook raises "interrupted" in the evaluated code
  loop.c:trap("INT")
  local function interrupted()
    for _, s in ipairs(core.signals()) do
      if s == "INT" then return true end
    end
    return false
  end

  -- ---- evaluation ------------------------------------------------------------------
  local buffer = nil -- lines of a statement not complete yet
  local function eval(line)
    if not buffer and line:match("^%s*:") then
      local cmd, rest = line:match("^%s*:(%S*)%s*(.-)%s*$")
      if cmd == "help" or cmd == "h" or cmd == "?" then
        print(HELP)
      elseif cmd == "quit" or cmd == "q" or cmd == "exit" then
        quit = true
      elseif cmd == "load" then
        local path, name = rest:match("^(%S+)%s*(%S*)$")
        if not path then
          print("usage: :load FILE.thrift [NAME]")
        else
          local n, err = load_idl(path, name ~= "" and name or nil)
          print(n and ("loaded " .. path .. " as " .. n) or tostring(err))
        end
      elseif cmd == "idls" then
        print(idl_line())
      else
        print("unknown command :" .. cmd .. " (:help lists them)")
      end
      return
    end
    local text = buffer and (buffer .. "\n" .. line) or line
    local src = text:gsub("^%s*=", "return ", 1)
    -- an expression list first: its values are the arguments of a call
    -- made in the chunk's own frame (not `return expr`, whose tail call
    -- would hide the chunk's position from errors on LuaJIT)
    local f, err = loadchunk("return (...)(" .. src .. "\n)", "=stdin", env)
    local is_expr = f ~= nil
    if not f then f, err = loadchunk(src, "=stdin", env) end
    if not f then
      if err:find("<eof>") then
        buffer = text
        prompt_text = ">> "
        return
      end
      print(err)
    else
      if rl and #text >= 1 then pcall(rl.add_history, text) end
      interrupted() -- forget a Ctrl-C from before
      -- Ctrl-C: seen by the loop's wake-up (a blocking call waiting in
      -- the loop) or by a count hook (Lua code running)
      local function check()
        if interrupted() then
          debug.sethook()
          loop.on_wake = nil
          error("interrupted", 2)
        end
      end
      loop.on_wake = check
      debug.sethook(check, "", 1000)
      local res = { n = 0 }
      local ok, e = xpcall(function()
        if is_expr then res = f(pack) else res = pack(f()) end
      end, function(m) return debug.traceback(tostring(m), 2) end)
      debug.sethook()
      loop.on_wake = nil
      if ok then
        show_results(res.n, res)
      else
        print(M.clean_error(e))
      end
    end
    buffer = nil
    prompt_text = "> "
    io.stdout:flush()
  end

  -- ---- the loop ----------------------------------------------------------------------
  while not quit do
    if #queue > 0 then
      stop_input()
      eval(table.remove(queue, 1))
    elseif eof then
      break
    else
      start_input()
      if plain_file then
        local line = io.stdin:read("*l")
        if line == nil then eof = true else queue[#queue + 1] = line end
        loop:step(0)
      else
        local ok, err = pcall(loop.step, loop, 250)
        if not ok then print(tostring(err)) end
        if interrupted() then
          if rl and handler_on then
            if rl.sigcleanup then pcall(rl.sigcleanup) end
            rl.handler_remove()
            handler_on = false
            io.stdout:write("\n")
          elseif tty_in then
            io.stdout:write("\n")
          end
          buffer, prompt_text, pending = nil, "> ", ""
        end
      end
    end
  end
  stop_input()
  if tty_in then io.stdout:write("\n") end
  if rl then pcall(rl.save_history) end
  io.stdout:flush()
  return util.OK
end

return M
