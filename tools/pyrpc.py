#!/usr/bin/python3
"""pyrpc: Apache Thrift's Python library (python3-thrift, /usr/bin/python3) as
an RPC peer for petrel's interop specs.

  pyrpc.py serve  --service echo|calc --port P --transport framed|buffered
                  [--protocol binary|accel|compact|accelc] [--duration S]
                  [--multiplex NAME]
  pyrpc.py call   --service echo|calc --port P --transport framed|buffered
                  [--protocol binary|accel|compact|accelc]

--protocol (as Apache's cross-test names them): binary = TBinaryProtocol,
  accel = TBinaryProtocolAccelerated (default), compact = TCompactProtocol,
  accelc = TCompactProtocolAccelerated (the C extension).

serve: a TSimpleServer with the chosen protocol serving workload.thrift's Echo
  (echo/big/blob/vectors return their argument, fire is recorded) or
  spec/thrift/calc.thrift's Calc (fail(code) raises Oops(code); notes()
  returns how many oneway note() calls arrived). Prints "ready" once
  listening; exits after --duration seconds. --multiplex NAME serves the
  service through a TMultiplexedProcessor under NAME ("NAME:method").
call: calls every function of the service once against a server on 127.0.0.1
  and checks each result in Python; prints one "ok NAME" or "FAIL NAME: why"
  line per check and exits 1 if any failed.
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyinterop  # noqa: E402  (code generation, cached)

from thrift.protocol import TBinaryProtocol, TCompactProtocol  # noqa: E402
from thrift.server import TServer  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402

ROOT = pyinterop.ROOT
WORKLOAD = os.path.join(ROOT, "bench", "workload.thrift")
CALC = os.path.join(ROOT, "spec", "thrift", "calc.thrift")
DATA = os.path.join(ROOT, "bench", "data")


def service_module(which):
    path = WORKLOAD if which == "echo" else CALC
    gen = pyinterop.gen_python(path)
    if gen not in sys.path:
        sys.path.insert(0, gen)
    pkg = pyinterop.py_package(path)
    import importlib
    svc = importlib.import_module(pkg + (".Echo" if which == "echo" else ".Calc"))
    ttypes = importlib.import_module(pkg + ".ttypes")
    return svc, ttypes


PROTOCOLS = {
    "binary": (TBinaryProtocol.TBinaryProtocol, TBinaryProtocol.TBinaryProtocolFactory),
    "accel": (TBinaryProtocol.TBinaryProtocolAccelerated,
              TBinaryProtocol.TBinaryProtocolAcceleratedFactory),
    "compact": (TCompactProtocol.TCompactProtocol, TCompactProtocol.TCompactProtocolFactory),
    "accelc": (TCompactProtocol.TCompactProtocolAccelerated,
               TCompactProtocol.TCompactProtocolAcceleratedFactory),
}


def transport_factory(kind):
    return (TTransport.TFramedTransportFactory() if kind == "framed"
            else TTransport.TBufferedTransportFactory())


def serve(args):
    svc, ttypes = service_module(args.service)
    state = {"fired": 0, "notes": 0}

    class EchoHandler:
        def echo(self, req): return req
        def fire(self, req): state["fired"] += 1
        def big(self, req): return req
        def blob(self, req): return req
        def vectors(self, req): return req

    class CalcHandler:
        def add(self, a, b): return a + b
        def echo(self, it): return it
        def ping(self): return None
        def note(self, msg): state["notes"] += 1
        def fail(self, code): raise ttypes.Oops(message="failed with %d" % code, code=code)
        def many(self, n, prefix):
            return [ttypes.Item(id=i, name="%s%d" % (prefix, i), nums=list(range(i))) for i in range(n)]
        def notes(self): return state["notes"]

    handler = EchoHandler() if args.service == "echo" else CalcHandler()
    processor = svc.Processor(handler)
    if args.multiplex:
        from thrift.TMultiplexedProcessor import TMultiplexedProcessor
        mux = TMultiplexedProcessor()
        mux.registerProcessor(args.multiplex, processor)
        processor = mux
    sock = TSocket.TServerSocket(host="127.0.0.1", port=args.port)
    server = TServer.TSimpleServer(processor, sock, transport_factory(args.transport),
                                   PROTOCOLS[args.protocol][1]())
    t = threading.Thread(target=server.serve, daemon=True)
    t.start()
    import socket
    deadline = time.time() + 10
    while time.time() < deadline:          # ready once it accepts
        if not t.is_alive():
            print("failed: the server thread died", flush=True)
            return 1
        try:
            socket.create_connection(("127.0.0.1", args.port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.05)
    print("ready", flush=True)
    end = time.time() + args.duration
    while time.time() < end and t.is_alive():
        time.sleep(0.1)
    return 0


def call(args):
    svc, ttypes = service_module(args.service)
    sock = TSocket.TSocket("127.0.0.1", args.port)
    sock.setTimeout(30000)
    trans = (TTransport.TFramedTransport(sock) if args.transport == "framed"
             else TTransport.TBufferedTransport(sock))
    client = svc.Client(PROTOCOLS[args.protocol][0](trans))
    trans.open()
    failed = 0

    def check(name, ok, why=""):
        nonlocal failed
        if ok:
            print("ok", name, flush=True)
        else:
            failed += 1
            print("FAIL %s: %s" % (name, why), flush=True)

    def load(name, cls):
        obj = cls()
        obj.read(TBinaryProtocol.TBinaryProtocol(
            TTransport.TMemoryBuffer(open(os.path.join(DATA, name + ".bin"), "rb").read())))
        return obj

    if args.service == "echo":
        for fname, data, cls in (("echo", "small", ttypes.Request), ("echo", "medium", ttypes.Request),
                                 ("big", "mytest", ttypes.MyTest), ("blob", "blob", ttypes.Blob),
                                 ("vectors", "vectors", ttypes.Vectors)):
            v = load(data, cls)
            try:
                r = getattr(client, fname)(v)
                check(fname + ":" + data, r == v, "reply differs")
            except Exception as e:  # noqa: BLE001
                check(fname + ":" + data, False, repr(e))
        try:
            client.fire(load("small", ttypes.Request))
            check("fire", True)
            r = client.echo(load("small", ttypes.Request))   # still in sync after a oneway
            check("echo after fire", r.user_id == -7340032000123456789, "bad reply")
        except Exception as e:  # noqa: BLE001
            check("fire", False, repr(e))
    else:
        try:
            check("add", client.add(2, 40) == 42, "wrong sum")
            it = ttypes.Item(id=-9007199254740993, name="é", nums=[1, -2, 3], attrs={"x": 1.5})
            check("echo", client.echo(it) == it, "reply differs")
            check("ping", client.ping() is None, "ping returned something")
            client.note("a")
            client.note("b")
            check("note (oneway)", client.notes() == 2, "notes count")
            try:
                client.fail(7)
                check("fail raises Oops", False, "no exception")
            except ttypes.Oops as e:
                check("fail raises Oops", e.code == 7 and e.message == "failed with 7", repr(e))
            m = client.many(3, "n")
            check("many", [x.name for x in m] == ["n0", "n1", "n2"] and m[2].nums == [0, 1], repr(m))
        except Exception as e:  # noqa: BLE001
            check("calc", False, repr(e))
    trans.close()
    return 1 if failed else 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["serve", "call"])
    p.add_argument("--service", choices=["echo", "calc"], default="echo")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--transport", choices=["framed", "buffered"], default="framed")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="accel")
    p.add_argument("--duration", type=float, default=30)
    p.add_argument("--multiplex", default=None)
    args = p.parse_args()
    if args.mode == "serve":
        return serve(args)
    return call(args)


if __name__ == "__main__":
    sys.exit(main())
