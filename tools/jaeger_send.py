#!/usr/bin/python3
"""jaeger_send: Jaeger span batches sent to an agent over UDP with Apache
Thrift's Python library (python3-thrift, /usr/bin/python3), the way Jaeger's
Python client sent them: the Agent client generated from
examples/jaeger/agent.thrift by the thrift compiler (tools/pyinterop.py,
cached under build/), its protocol over a transport that sends each flushed
message as one datagram.

  jaeger_send.py --port P [--host 127.0.0.1] [--protocol binary|compact]
                 [--batches 3] [--spans 4] [--service py-sender]

Span i (from 0) of batch b (from 0) is fixed, so a receiver can be checked
line by line: operationName "op-b-i", traceIdHigh 0x0123456789abcdef,
traceIdLow 0x1000 + b, spanId 0x100 * (b + 1) + i + 1 (the last span of each
batch: -2, an id above 2^63 as an unsigned number), parentSpanId the previous
span's (0 for the first), startTime 1700000000000000 + i, duration 1000 + i,
flags 1, tags http.method=GET (string), retries=3 (long), error=false
(bool), ratio=0.5 (double), blob=<2 bytes> (binary), one log. Prints "sent N
batches" at the end.
"""
import argparse
import importlib
import io
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyinterop  # noqa: E402  (code generation, cached)

from thrift.protocol import TBinaryProtocol, TCompactProtocol  # noqa: E402
from thrift.transport import TTransport  # noqa: E402

AGENT = os.path.join(pyinterop.ROOT, "examples", "jaeger", "agent.thrift")


class UDPTransport(TTransport.TTransportBase):
    """Writes collect in a buffer; flush sends them as one datagram."""

    def __init__(self, host, port):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.connect((host, port))
        self.buf = io.BytesIO()

    def isOpen(self):
        return True

    def write(self, data):
        self.buf.write(data)

    def flush(self):
        data = self.buf.getvalue()
        self.buf = io.BytesIO()
        self.sock.send(data)

    def close(self):
        self.sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--protocol", choices=["binary", "compact"], default="binary")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--spans", type=int, default=4)
    ap.add_argument("--service", default="py-sender")
    args = ap.parse_args()

    gen = pyinterop.gen_python(AGENT)
    sys.path.insert(0, gen)
    agent = importlib.import_module("petrel_jaeger.agent.Agent")
    J = importlib.import_module("petrel_jaeger.model.ttypes")

    trans = UDPTransport(args.host, args.port)
    proto = (TBinaryProtocol.TBinaryProtocol(trans) if args.protocol == "binary"
             else TCompactProtocol.TCompactProtocol(trans))
    client = agent.Client(proto)
    for b in range(args.batches):
        spans = []
        for i in range(args.spans):
            sid = -2 if i == args.spans - 1 else 0x100 * (b + 1) + i + 1
            tags = [
                J.Tag(key="http.method", vType=J.TagType.STRING, vStr="GET"),
                J.Tag(key="retries", vType=J.TagType.LONG, vLong=3),
                J.Tag(key="error", vType=J.TagType.BOOL, vBool=False),
                J.Tag(key="ratio", vType=J.TagType.DOUBLE, vDouble=0.5),
                J.Tag(key="blob", vType=J.TagType.BINARY, vBinary=b"\x00\x01"),
            ]
            spans.append(J.Span(
                traceIdLow=0x1000 + b, traceIdHigh=0x0123456789abcdef, spanId=sid,
                parentSpanId=spans[-1].spanId if spans else 0,
                operationName="op-%d-%d" % (b, i), flags=1,
                startTime=1700000000000000 + i, duration=1000 + i, tags=tags,
                logs=[J.Log(timestamp=1700000000000100 + i, fields=[
                    J.Tag(key="event", vType=J.TagType.STRING, vStr="checkpoint")])]))
        batch = J.Batch(process=J.Process(serviceName=args.service, tags=[
            J.Tag(key="hostname", vType=J.TagType.STRING, vStr="localhost")]), spans=spans)
        client.emitBatch(batch)
    trans.close()
    print("sent %d batches" % args.batches)


if __name__ == "__main__":
    main()
