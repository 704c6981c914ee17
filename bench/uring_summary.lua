-- bench/uring_summary.lua SIZE=RESULTS ...: the io_uring ratios of
-- bench-uring from rpc_peers.sh result tables (one per message size), all
-- from the same run: calls/s and P99 of uring (and uring+SQPOLL) against
-- epoll, for the C pair and for petrel, and system calls per call.
local function load(path)
  local rows = {}
  for line in io.lines(path) do
    local f = {}
    for w in line:gmatch("%S+") do f[#f + 1] = w end
    if f[1] ~= "server" and #f >= 11 then
      rows[f[1] .. "|" .. f[2]] = { cps = tonumber(f[3]), p99 = tonumber(f[5]),
        sys = tonumber(f[12] or "") }
    end
  end
  return rows
end

local pairs_ = {
  { "C raw", "c-epoll-raw", "c-uring-raw", "c-uring-sqpoll-raw" },
  { "C thrift", "c-epoll-thrift", "c-uring-thrift", "c-uring-sqpoll-thrift" },
  { "petrel raw", "petrel-raw-5.4", "petrel-raw-5.4-uring", "petrel-raw-5.4-sqpoll" },
  { "petrel echo", "petrel-echo-5.4", "petrel-echo-5.4-uring", "petrel-echo-5.4-sqpoll" },
}
local function ratio(a, b, fmt)
  if not a or not b or b == 0 then return "-" end
  return (fmt or "%.2f"):format(a / b)
end
local function num(x, fmt) return x and (fmt or "%.3f"):format(x) or "-" end

print("| msg | conns | server | calls/s uring/epoll | sqpoll/epoll | P99 uring/epoll | sqpoll/epoll | sys/call epoll | uring | sqpoll |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for i = 1, #arg do
  local size, path = arg[i]:match("^([^=]+)=(.+)$")
  local rows = load(path)
  local conns = {}
  for k in pairs(rows) do conns[tonumber(k:match("|(%d+)$"))] = true end
  local cl = {}
  for c in pairs(conns) do cl[#cl + 1] = c end
  table.sort(cl)
  for _, c in ipairs(cl) do
    for _, p in ipairs(pairs_) do
      local e, u, s = rows[p[2] .. "|" .. c], rows[p[3] .. "|" .. c], rows[p[4] .. "|" .. c]
      if e and (u or s) then
        print(("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |"):format(size, c, p[1],
          ratio(u and u.cps, e.cps), ratio(s and s.cps, e.cps),
          ratio(u and u.p99, e.p99), ratio(s and s.p99, e.p99),
          num(e.sys), num(u and u.sys), num(s and s.sys)))
      end
    end
  end
end
