#!/usr/bin/python3
"""pymsg: whole Thrift messages written by Apache Thrift's Python library
(python3-thrift, /usr/bin/python3), for `petrel decode --message` in
spec/cli_spec.lua.

  pymsg.py    prints one line per message: NAME HEX

Messages (spec/thrift/calc.thrift's Calc, TBinaryProtocol, strict):
  call_echo    CALL echo(it = Item(id=-9007199254740993, name="é",
               nums=[1, -2, 3], attrs={"x": 1.5})), seqid 7, framed
  reply_fail   REPLY of fail: the declared exception Oops(message="failed
               with 7", code=7), seqid 8, unframed
  reply_add    REPLY of add: 42, seqid 9, unframed
  app_error    EXCEPTION: TApplicationException(UNKNOWN_METHOD, "nope"),
               seqid 10, unframed
  compact_add  CALL add(a=40, b=2) in TCompactProtocol, seqid 11, unframed
"""
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyinterop  # noqa: E402

from thrift.Thrift import TApplicationException, TMessageType  # noqa: E402
from thrift.protocol import TBinaryProtocol, TCompactProtocol  # noqa: E402
from thrift.transport import TTransport  # noqa: E402

CALC = os.path.join(pyinterop.ROOT, "spec", "thrift", "calc.thrift")


def message(name, mtype, seqid, obj, framed=False, compact=False):
    buf = TTransport.TMemoryBuffer()
    proto = (TCompactProtocol.TCompactProtocol(buf) if compact
             else TBinaryProtocol.TBinaryProtocol(buf))
    proto.writeMessageBegin(name, mtype, seqid)
    obj.write(proto)
    proto.writeMessageEnd()
    data = buf.getvalue()
    if framed:
        data = struct.pack("!i", len(data)) + data
    return data


def main():
    gen = pyinterop.gen_python(CALC)
    sys.path.insert(0, gen)
    import importlib
    pkg = pyinterop.py_package(CALC)
    calc = importlib.import_module(pkg + ".Calc")
    ttypes = importlib.import_module(pkg + ".ttypes")
    item = ttypes.Item(id=-9007199254740993, name="é", nums=[1, -2, 3], attrs={"x": 1.5})
    out = [
        ("call_echo", message("echo", TMessageType.CALL, 7, calc.echo_args(it=item), True)),
        ("reply_fail", message("fail", TMessageType.REPLY, 8,
                               calc.fail_result(oops=ttypes.Oops(message="failed with 7", code=7)))),
        ("reply_add", message("add", TMessageType.REPLY, 9, calc.add_result(success=42))),
        ("app_error", message("nope", TMessageType.EXCEPTION, 10,
                              TApplicationException(TApplicationException.UNKNOWN_METHOD, "nope"))),
        ("compact_add", message("add", TMessageType.CALL, 11, calc.add_args(a=40, b=2), compact=True)),
    ]
    for name, data in out:
        print(name, data.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
