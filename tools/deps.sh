#!/usr/bin/env bash
# Install the Debian packages petrel builds, tests and benches with, if any
# is missing, then the npm peers of the specs (tools/npm-peers.sh). Safe to
# run repeatedly; needs root (or sudo) only to install.
# nginx + lua-nginx-module (spec/resty_spec.lua, bench-openresty) needs
# OpenResty's LuaJIT2 (luajit2, libluajit2-5.1-dev), which is also the
# project's LuaJIT: the Debian luajit / libluajit-5.1-dev packages conflict
# with the module. Installing nginx or redis-server may start their system
# services (ports 80, 6379); the specs and benches never use those, they
# start their own instances on ephemeral ports. The petrel command uses
# lua-argparse, lua-cjson and lua-readline (for Lua 5.4 and, through the 5.1
# modules, LuaJIT); its REPL spec drives it in a tmux pseudo-terminal.
set -euo pipefail
pkgs=(build-essential git lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev lua-busted
      luarocks liburing-dev python3-thrift libthrift-dev libboost-dev
      thrift-compiler lua-cjson lua-luv lua-lpeg valgrind libevent-dev clang
      libclang-rt-14-dev
      nginx libnginx-mod-http-ndk libnginx-mod-http-lua lua-resty-core lua-nginx-redis
      redis-server wrk lua-socket libhttp-parser-dev etcd-server zlib1g-dev libzstd-dev
      lua-argparse lua-readline tmux)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js and npm (the npm jaeger-client, spec/udp_spec.lua; the npm thrift
# package, spec/node_spec.lua): Debian's
# nodejs and npm where there is no node / npm command (checked by command,
# not by package: NodeSource's nodejs carries npm and conflicts with
# Debian's npm package)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# npm packages into build/npm (nothing is fetched when they are there). A
# machine that cannot reach npm's registry still builds; then
# spec/udp_spec.lua skips its npm sender LOUDLY (counted in make test's
# summary) and spec/node_spec.lua FAILS (the npm thrift package is the
# peer it is about).
if ! "$(dirname "$0")/npm-peers.sh"; then
  echo "deps: WARNING: the npm packages (jaeger-client, thrift) could not be installed" \
       "into build/npm; spec/udp_spec.lua will SKIP its npm sender and" \
       "spec/node_spec.lua will FAIL" >&2
fi
