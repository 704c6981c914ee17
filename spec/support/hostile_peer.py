#!/usr/bin/python3
"""hostile_peer: misbehaving Thrift servers on 127.0.0.1 for the resty spec.

    hostile_peer.py [--duration S]

Binds one listener per behaviour on an ephemeral port, prints
"NAME=PORT" for each and then "ready", and serves until --duration seconds
have passed (default 120). Behaviours (each connection on its own thread):

  garbage   reads the call, answers "HTTP/1.1 400 Bad Request" and closes
  reset     reads the call, closes with SO_LINGER 0 (the peer sees a RST)
  close     reads the call, closes normally (FIN) without a reply
  cut       reads the call, sends the first 8 bytes of a framed reply, closes
  seq       answers a framed add() with a good reply under another seqid
  trailing  answers an unframed add() (result 42) followed by stray bytes
  second    answers the first framed add() of each connection (42), reads
            the second and closes without a reply (a pooled connection the
            server dropped just as it was reused)
  silent    reads the call and never answers (keeps the connection open)
  stall     never reads (4 KiB receive buffer), so large sends block
  full      never accepts; its accept queue is filled at start, so further
            connection attempts get no answer (connect timeouts)
"""
import argparse
import socket
import struct
import sys
import threading
import time


def recv_exact(c, n):
    out = b""
    while len(out) < n:
        b = c.recv(n - len(out))
        if not b:
            raise EOFError
        out += b
    return out


def read_framed_call(c):
    """name, seqid of one framed strict-binary call"""
    (n,) = struct.unpack(">i", recv_exact(c, 4))
    body = recv_exact(c, n)
    (nlen,) = struct.unpack(">i", body[4:8])
    name = body[8:8 + nlen]
    (seqid,) = struct.unpack(">i", body[8 + nlen:12 + nlen])
    return name, seqid


def read_unframed_call(c):
    """name, seqid of one unframed strict-binary call to add(i32 a, i32 b)"""
    head = recv_exact(c, 8)
    (nlen,) = struct.unpack(">i", head[4:8])
    name = recv_exact(c, nlen)
    (seqid,) = struct.unpack(">i", recv_exact(c, 4))
    recv_exact(c, 3 + 4 + 3 + 4 + 1)  # a: i32, b: i32, stop
    return name, seqid


def reply(name, seqid, value=42):
    """a strict-binary REPLY whose result struct has i32 success = value"""
    return (struct.pack(">iI", -2147418110, len(name)) + name + struct.pack(">i", seqid)
            + b"\x08\x00\x00" + struct.pack(">i", value) + b"\x00")


def handle(kind, c):
    try:
        if kind == "stall":
            time.sleep(3600)
            return
        if kind == "garbage":
            c.recv(65536)
            c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        elif kind == "reset":
            c.recv(65536)
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif kind == "close":
            c.recv(65536)
        elif kind == "cut":
            c.recv(65536)
            c.sendall(b"\x00\x00\x00\x20\x80\x01\x00\x02")
        elif kind == "seq":
            name, seqid = read_framed_call(c)
            r = reply(name, seqid + 1)
            c.sendall(struct.pack(">i", len(r)) + r)
            c.recv(65536)
        elif kind == "second":
            name, seqid = read_framed_call(c)
            r = reply(name, seqid)
            c.sendall(struct.pack(">i", len(r)) + r)
            read_framed_call(c)
        elif kind == "trailing":
            while True:
                name, seqid = read_unframed_call(c)
                c.sendall(reply(name, seqid) + b"\x00junk")
        elif kind == "silent":
            c.recv(65536)
            time.sleep(3600)
    except (EOFError, OSError):
        pass
    finally:
        try:
            c.close()
        except OSError:
            pass


def serve(kind, ls):
    while True:
        c, _ = ls.accept()
        threading.Thread(target=handle, args=(kind, c), daemon=True).start()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--duration", type=float, default=120)
    args = p.parse_args()
    keep = []
    for kind in ("garbage", "reset", "close", "cut", "seq", "trailing", "second", "silent", "stall",
                 "full"):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if kind == "stall":
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ls.bind(("127.0.0.1", 0))
        port = ls.getsockname()[1]
        if kind == "full":
            ls.listen(0)
            # fill the accept queue: later SYNs are dropped, never answered
            for _ in range(4):
                f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                f.setblocking(False)
                try:
                    f.connect(("127.0.0.1", port))
                except BlockingIOError:
                    pass
                keep.append(f)
            time.sleep(0.2)
        else:
            ls.listen(64)
            threading.Thread(target=serve, args=(kind, ls), daemon=True).start()
        keep.append(ls)
        print("%s=%d" % (kind, port), flush=True)
    print("ready", flush=True)
    time.sleep(args.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main())
