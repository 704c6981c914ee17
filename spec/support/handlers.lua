-- Handlers of the RPC specs: the workload's Echo service (every method
-- returns its argument) and spec/thrift/calc.thrift's Calc (add, echo,
-- ping, note / notes counting oneway calls, fail throwing `oops`, many
-- building a list of structs).
local petrel = require "petrel"

local M = {}

M.echo = {
  echo = function(req) return req end,
  fire = function() end,
  big = function(req) return req end,
  blob = function(req) return req end,
  vectors = function(req) return req end,
}

-- A fresh Calc handler and its state ({ notes = oneway calls seen }).
function M.calc()
  local st = { notes = 0 }
  local h = {
    add = function(a, b) return a + b end,
    echo = function(it) return it end,
    ping = function() end,
    note = function() st.notes = st.notes + 1 end,
    fail = function(code)
      error(petrel.throw("oops", { message = "failed with " .. code, code = code }))
    end,
    many = function(n, prefix)
      local out = {}
      for i = 0, n - 1 do
        local nums = {}
        for j = 0, i - 1 do nums[#nums + 1] = j end
        out[#out + 1] = { id = i, name = prefix .. i, nums = nums }
      end
      return out
    end,
    notes = function() return st.notes end,
  }
  return h, st
end

return M
