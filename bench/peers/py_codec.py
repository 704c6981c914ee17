#!/usr/bin/python3
"""Peer benchmark: Apache Thrift Python (0.17) with TBinaryProtocolAccelerated
and TCompactProtocolAccelerated (the `fastbinary` C extension) on the
canonical workload messages.

Run with /usr/bin/python3 (the Debian python3-thrift package is only there):

    /usr/bin/python3 bench/peers/py_codec.py [--data DIR] [--gen-dir DIR] [WORKLOAD...]

env PEER_TARGET_SEC: seconds per timed run (default 0.4); PEER_ROUNDS timed
runs, the best printed (default 3; bench/codec.lua runs 1 per round,
interleaved with the other peers). Times are CPU time of the process
(time.process_time), as every peer of bench/codec.lua measures.
Output, one line per operation (<bytes> = size of the .bin message, or of
its Compact form):

    py <workload> decode <ns_per_op> <bytes>
    py <workload> encode <ns_per_op> <bytes>
    py-compact <workload> decode|encode <ns_per_op> <bytes>

decode: Struct().read(proto) from a TMemoryBuffer over the .bin bytes; the
        buffer is rewound (seek(0), no copy) each iteration.
encode: struct.write(proto) into one reused TMemoryBuffer, truncated each
        iteration. The re-encoded bytes must equal the .bin (exit 1 if not).
The generated code comes from `thrift --gen py` into build/peers/gen-py
(bench/peers/build.sh makes it; this script also makes it if missing).
The cyclic GC stays enabled (as in a real process); gc.collect() runs before
each timed run.
"""
import gc
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WORKLOADS = ["small", "medium", "large", "mytest", "blob", "vectors"]
STRUCTS = {"small": "Request", "medium": "Request", "large": "Request",
           "mytest": "MyTest", "blob": "Blob", "vectors": "Vectors"}


def main():
    args = sys.argv[1:]
    data = os.path.join(ROOT, "bench", "data")
    thrift_file = os.path.join(ROOT, "bench", "workload.thrift")
    gen = os.path.join(ROOT, os.environ.get("BUILD", "build"), "peers", "gen-py")
    names = []
    while args:
        a = args.pop(0)
        if a == "--data":
            data = args.pop(0)
        elif a == "--gen-dir":
            gen = args.pop(0)
        elif a == "--thrift":
            thrift_file = args.pop(0)
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            names.append(a)
    names = names or WORKLOADS
    target = float(os.environ.get("PEER_TARGET_SEC", "0.4"))
    rounds = max(1, int(os.environ.get("PEER_ROUNDS", "3")))
    clock = time.process_time

    if not os.path.exists(os.path.join(gen, "bench", "ttypes.py")):
        os.makedirs(gen, exist_ok=True)
        subprocess.run(["thrift", "--gen", "py", "-out", gen, thrift_file],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sys.path.insert(0, gen)

    try:
        import thrift.protocol.fastbinary  # noqa: F401  (the C accelerator)
    except ImportError as e:
        print("py: ERROR thrift.protocol.fastbinary not importable: %s" % e, file=sys.stderr)
        return 1
    from thrift.protocol import TBinaryProtocol, TCompactProtocol
    from thrift.transport import TTransport
    import importlib
    ttypes = importlib.import_module("bench.ttypes")

    def bench_ns(fn):
        n = 1
        while True:
            t0 = clock()
            fn(n)
            el = clock() - t0
            if el >= target / 8:
                break
            n *= 10 if el < target / 80 else 2
        iters = max(1, int(n * target / el))
        best = float("inf")
        for _ in range(rounds):
            gc.collect()
            t0 = clock()
            fn(iters)
            best = min(best, (clock() - t0) * 1e9 / iters)
        return best

    for name in names:
        cls = getattr(ttypes, STRUCTS[name])
        with open(os.path.join(data, name + ".bin"), "rb") as f:
            blob = f.read()
        size = len(blob)

        rtrans = TTransport.TMemoryBuffer(blob)
        rproto = TBinaryProtocol.TBinaryProtocolAccelerated(rtrans)
        if rproto._fast_decode is None:
            print("py: ERROR accelerated protocol has no fast decoder", file=sys.stderr)
            return 1
        wtrans = TTransport.TMemoryBuffer()
        wproto = TBinaryProtocol.TBinaryProtocolAccelerated(wtrans)
        rbuf, wbuf = rtrans._buffer, wtrans._buffer   # io.BytesIO

        value = cls()
        value.read(rproto)
        if rbuf.tell() != size:
            print("py %s: ERROR decode consumed %d of %d bytes" % (name, rbuf.tell(), size),
                  file=sys.stderr)
            return 1
        value.write(wproto)
        if wtrans.getvalue() != blob:
            print("py %s: ERROR re-encoded bytes differ from %s.bin (%d vs %d bytes)"
                  % (name, name, len(wtrans.getvalue()), size), file=sys.stderr)
            return 1

        def dec(n, cls=cls, rbuf=rbuf, rproto=rproto):
            for _ in range(n):
                rbuf.seek(0)
                v = cls()
                v.read(rproto)

        def enc(n, value=value, wbuf=wbuf, wproto=wproto):
            for _ in range(n):
                wbuf.seek(0)
                wbuf.truncate()
                value.write(wproto)

        print("py %s decode %.1f %d" % (name, bench_ns(dec), size), flush=True)
        ns = bench_ns(enc)
        if wtrans.getvalue() != blob:
            print("py %s: ERROR encode output differs after benchmark" % name, file=sys.stderr)
            return 1
        print("py %s encode %.1f %d" % (name, ns, size), flush=True)

        # Compact: the same value through TCompactProtocolAccelerated
        ctrans = TTransport.TMemoryBuffer()
        value.write(TCompactProtocol.TCompactProtocolAccelerated(ctrans))
        cblob = ctrans.getvalue()
        crtrans = TTransport.TMemoryBuffer(cblob)
        crproto = TCompactProtocol.TCompactProtocolAccelerated(crtrans)
        cwtrans = TTransport.TMemoryBuffer()
        cwproto = TCompactProtocol.TCompactProtocolAccelerated(cwtrans)
        crbuf, cwbuf = crtrans._buffer, cwtrans._buffer

        def cdec(n, cls=cls, rbuf=crbuf, rproto=crproto):
            for _ in range(n):
                rbuf.seek(0)
                v = cls()
                v.read(rproto)

        def cenc(n, value=value, wbuf=cwbuf, wproto=cwproto):
            for _ in range(n):
                wbuf.seek(0)
                wbuf.truncate()
                value.write(wproto)

        print("py-compact %s decode %.1f %d" % (name, bench_ns(cdec), len(cblob)), flush=True)
        ns = bench_ns(cenc)
        if cwtrans.getvalue() != cblob:
            print("py %s: ERROR compact encode output differs" % name, file=sys.stderr)
            return 1
        print("py-compact %s encode %.1f %d" % (name, ns, len(cblob)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
