"""zc_peer.py: the far ends of bench/zerocopy.lua, run in their own process
(pinned to the other core) so that only the relay's own work is measured.

  zc_peer.py source HOST PORT       connect, send an endless byte stream
  zc_peer.py sink tcp HOST PORT     connect, read and discard until EOF
  zc_peer.py sink unix PATH         the same over a unix socket

Each exits when the relay closes its end (or after 300 s).
"""
import signal
import socket
import sys

signal.alarm(300)
mode = sys.argv[1]
if mode == "source":
    s = socket.create_connection((sys.argv[2], int(sys.argv[3])))
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
    buf = bytearray(1 << 20)
    try:
        while s.recv_into(buf):
            pass
    except OSError:
        pass
else:
    sys.exit("usage: zc_peer.py source HOST PORT | sink tcp HOST PORT | sink unix PATH")
