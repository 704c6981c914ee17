-- busted output handler for tools/runtests.sh: busted's plainTerminal
-- output, then lines the runner sums up:
--   petrel-skip: <why><TAB><test name>     one per skipped test
--   petrel-fail: <test name><TAB><first line of its message>  one per failure or error
--   petrel-count: passed=N failed=N errors=N pending=N skipped=N
-- A test skips (rather than pends) by calling pending("SKIP: why") when the
-- machine lacks what it needs (a kernel feature, IPv6): it is then counted
-- as skipped, loudly, never as passed.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers.plainTerminal")(options)

  local function suite_end()
    local skipped = 0
    for _, p in pairs(handler.pendings) do
      local msg = type(p.message) == "string" and p.message or ""
      local why = msg:match("SKIP:%s*(.*)$")
      if why then
        skipped = skipped + 1
        io.write("petrel-skip: ", (why:gsub("%s+", " ")), "\t", p.name, "\n")
      end
    end
    for _, list in ipairs { handler.failures, handler.errors } do
      for _, f in ipairs(list) do
        local msg = type(f.message) == "string" and f.message or tostring(f.message)
        io.write("petrel-fail: ", (f.name or "?"):gsub("%s+", " "), "\t",
          (msg:match("[^\n]*") or ""):sub(1, 300), "\n")
      end
    end
    io.write(string.format("petrel-count: passed=%d failed=%d errors=%d pending=%d skipped=%d\n",
      handler.successesCount, handler.failuresCount, handler.errorsCount,
      handler.pendingsCount - skipped, skipped))
    io.flush()
    return nil, true
  end

  -- subscribed after plainTerminal's own suite end: runs after its summary
  busted.subscribe({ "suite", "end" }, suite_end)
  return handler
end
