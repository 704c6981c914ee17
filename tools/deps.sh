#!/usr/bin/env bash
# Install the Debian packages petrel builds, tests and benches with, if any
# is missing. Safe to run repeatedly; needs root (or sudo) only to install.
set -euo pipefail
pkgs=(build-essential lua5.4 liblua5.4-dev luajit2 libluajit2-5.1-dev lua-busted
      luarocks liburing-dev python3-thrift libthrift-dev libboost-dev
      thrift-compiler lua-cjson lua-luv lua-lpeg valgrind libevent-dev clang
      libclang-rt-14-dev libhttp-parser-dev etcd-server)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
