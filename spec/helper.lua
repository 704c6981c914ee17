-- Loaded by busted before the specs: point package.cpath at the module
-- built for the running interpreter (build/lua5.4 or build/luajit).
local build = os.getenv("PETREL_BUILD") or "build"
local rt = jit and "luajit" or "lua5.4"
package.cpath = build .. "/" .. rt .. "/?.so;" .. package.cpath
package.path = "lua/?.lua;lua/?/init.lua;spec/?.lua;./?.lua;" .. package.path
