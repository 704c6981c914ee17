"""zc_peer.py: the far ends of bench/zerocopy.lua, run in their own process
(pinned to the other core) so that the relay's CPU time counts none of their
work.

  zc_peer.py source HOST PORT       connect, send an endless byte stream
  zc_peer.py sink tcp HOST PORT     connect, read and discard until EOF
  zc_peer.py sink unix PATH         the same over a unix socket

On loopback the sender pays for waking a sleeping receiver (and the reader
for waking a blocked writer), so the peers ask to be woken seldom: the sink
wakes only once LOWAT bytes are waiting (SO_RCVLOWAT), the source has a
large send buffer (it is woken once a third of it drained).

Each exits when the relay closes its end (or after 300 s).
"""
import os
import signal
import socket
import sys

LOWAT = int(os.environ.get("ZC_LOWAT", 256 * 1024))
SNDBUF = int(os.environ.get("ZC_SNDBUF", 4 * 1024 * 1024))

signal.alarm(300)
mode = sys.argv[1]
if mode == "source":
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])))
    if SNDBUF:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    buf = bytes(range(256)) * 4096  # 1 MiB
    try:
        while True:
            s.sendall(buf)
    except OSError:
        pass
elif mode == "sink":
    if sys.argv[2] == "unix":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(sys.argv[3])
    else:
        s = socket.create_connection((sys.argv[3], int(sys.argv[4])))
    if LOWAT:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, LOWAT)
    buf = bytearray(1 << 20)
    try:
        while s.recv_into(buf):
            pass
    except OSError:
        pass
else:
    sys.exit("usage: zc_peer.py source HOST PORT | sink tcp HOST PORT | sink unix PATH")
