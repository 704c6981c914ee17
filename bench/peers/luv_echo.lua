-- luv_echo.lua: libuv (luv) TCP server for bench/rpc that echoes complete
-- frames (4-byte big-endian length prefix + body) back unchanged.
--
--   lua5.4 bench/peers/luv_echo.lua [PORT] [DURATION_S] [HOST]
--   luajit bench/peers/luv_echo.lua ...   (Debian lua-luv ships luv.so for
--                                          5.1, 5.2, 5.3 and 5.4)
--
-- Defaults: port 9091, duration 600 s, host 127.0.0.1. The server exits by
-- itself after DURATION_S so it never outlives a benchmark.
-- Per connection, partial input is kept as a list of chunks; each read looks
-- for complete frames and writes all the frames it found in one uv_write.

local uv = require("luv")

local port = tonumber(arg[1] or "9091")
local duration = tonumber(arg[2] or "600")
local host = arg[3] or "127.0.0.1"

-- frame length of a 4-byte big-endian header at position i of s
local be32
if string.unpack then
  be32 = function(s, i) return (string.unpack(">I4", s, i)) end
else -- LuaJIT / 5.1
  local byte = string.byte
  be32 = function(s, i)
    local a, b, c, d = byte(s, i, i + 3)
    return ((a * 256 + b) * 256 + c) * 256 + d
  end
end

local MAX_FRAME = 512 * 1024 * 1024

local function on_connection(client)
  -- unconsumed input: chunks[1..nchunks], `have` bytes in all; nothing is
  -- parsed until at least `need` bytes are there (a header or a whole frame)
  local chunks, nchunks, have = {}, 0, 0
  local need = 4

  client:read_start(function(err, data)
    if err or not data then
      client:close()
      return
    end
    nchunks = nchunks + 1
    chunks[nchunks] = data
    have = have + #data
    if have < need then return end
    -- enough bytes for at least a header or a whole frame: flatten
    local buf
    if nchunks == 1 then buf = chunks[1] else buf = table.concat(chunks, "", 1, nchunks) end
    for i = 1, nchunks do chunks[i] = nil end
    nchunks = 0
    local pos, len = 1, #buf
    local out, nout = nil, 0
    need = 4
    while len - pos + 1 >= 4 do
      local flen = be32(buf, pos)
      if flen > MAX_FRAME then
        client:close()
        return
      end
      if len - pos + 1 < 4 + flen then
        need = 4 + flen
        break
      end
      nout = nout + 1
      if nout == 1 then out = {} end
      out[nout] = (pos == 1 and flen + 4 == len) and buf or buf:sub(pos, pos + 3 + flen)
      pos = pos + 4 + flen
    end
    if pos > len then
      have = 0
    else
      local rest = pos == 1 and buf or buf:sub(pos)
      chunks[1], nchunks, have = rest, 1, #rest
    end
    if nout == 1 then
      client:write(out[1])
    elseif nout > 1 then
      client:write(out)
    end
  end)
end

local server = uv.new_tcp()
assert(server:bind(host, port))
assert(server:listen(4096, function(err)
  if err then return end
  local client = uv.new_tcp()
  if server:accept(client) then
    client:nodelay(true)
    on_connection(client)
  else
    client:close()
  end
end))

local timer = uv.new_timer()
timer:start(math.floor(duration * 1000), 0, function()
  io.stderr:write("luv_echo: duration limit reached, exiting\n")
  uv.stop()
end)

io.stderr:write(string.format("luv_echo: listening on %s:%d (%s)\n", host, port,
  jit and jit.version or _VERSION))
uv.run()
os.exit(0)
