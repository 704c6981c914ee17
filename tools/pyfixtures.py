#!/usr/bin/python3
"""pyfixtures: files written with Apache Thrift's Python library (run with
/usr/bin/python3) for petrel's Compact specs and examples.

    pyfixtures.py parquet OUT [--thrift spec/thrift/parquet_shaped.thrift]
    pyfixtures.py jaeger OUT [--thrift spec/thrift/jaeger/agent.thrift]

parquet: a Parquet-shaped file: "PAR1", column bytes, the FileMetaData
  footer in TCompactProtocol, its length (4 bytes little-endian), "PAR1".
jaeger: one Jaeger-agent UDP datagram: an Agent.emitBatch oneway call
  written by the generated client through TCompactProtocol.
stdout: the canonical JSON (tools/pyinterop.py) of the FileMetaData / the
  Batch, so a spec can compare what petrel decodes.
"""
import argparse
import importlib
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyinterop  # noqa: E402  (code generation, cached)

from thrift.protocol import TCompactProtocol  # noqa: E402
from thrift.transport import TTransport  # noqa: E402

ROOT = pyinterop.ROOT


def load(path, pkg):
    gen = pyinterop.gen_python(path)
    if gen not in sys.path:
        sys.path.insert(0, gen)
    return importlib.import_module(pkg + ".ttypes")


def parquet(args):
    t = load(args.thrift or os.path.join(ROOT, "spec", "thrift", "parquet_shaped.thrift"),
             "parquet_shaped")
    columns = [b"\x15\x00\x15\x1c" + bytes(range(24)), b"\x15\x00\x15\x30" + b"abc" * 9]
    data = b"PAR1"
    chunks = []
    for i, (col, ty, path) in enumerate([(columns[0], t.Type.INT64, ["id"]),
                                        (columns[1], t.Type.BYTE_ARRAY, ["name"])]):
        offset = len(data)
        data += col
        md = t.ColumnMetaData(type=ty, encodings=[t.Encoding.PLAIN, t.Encoding.RLE],
                              path_in_schema=path, codec=t.CompressionCodec.SNAPPY,
                              num_values=3, total_uncompressed_size=len(col) + 10,
                              total_compressed_size=len(col), data_page_offset=offset,
                              statistics=t.Statistics(null_count=i, min_value=b"\x01",
                                                      max_value=b"\x09"))
        chunks.append(t.ColumnChunk(file_offset=offset, meta_data=md))
    meta = t.FileMetaData(
        version=2, num_rows=3,
        schema=[t.SchemaElement(name="schema", num_children=2),
                t.SchemaElement(type=t.Type.INT64, repetition_type=t.FieldRepetitionType.REQUIRED,
                                name="id", field_id=1),
                t.SchemaElement(type=t.Type.BYTE_ARRAY,
                                repetition_type=t.FieldRepetitionType.OPTIONAL, name="name",
                                converted_type=t.ConvertedType.UTF8, field_id=2)],
        row_groups=[t.RowGroup(columns=chunks, total_byte_size=sum(len(c) for c in columns),
                               num_rows=3, file_offset=4, ordinal=0)],
        key_value_metadata=[t.KeyValue(key="writer", value="petrel tests")],
        created_by="petrel fixture (Apache Thrift Python TCompactProtocol)",
        column_orders=[t.ColumnOrder(TYPE_ORDER=t.TypeDefinedOrder()) for _ in columns])
    trans = TTransport.TMemoryBuffer()
    meta.write(TCompactProtocol.TCompactProtocol(trans))
    footer = trans.getvalue()
    with open(args.out, "wb") as f:
        f.write(data + footer + struct.pack("<I", len(footer)) + b"PAR1")
    print(pyinterop.ctext(pyinterop.struct_canon(meta)))
    return 0


def jaeger(args):
    path = args.thrift or os.path.join(ROOT, "spec", "thrift", "jaeger", "agent.thrift")
    j = load(path, "jaeger_shaped")
    agent = importlib.import_module("agent_shaped.Agent")
    T = j.TagType
    span = j.Span(traceIdLow=-7340032000123456789, traceIdHigh=42, spanId=1, parentSpanId=0,
                  operationName="GET /users", flags=1, startTime=1700000000000000,
                  duration=1234,
                  tags=[j.Tag(key="http.status_code", vType=T.LONG, vLong=200),
                        j.Tag(key="error", vType=T.BOOL, vBool=False),
                        j.Tag(key="ratio", vType=T.DOUBLE, vDouble=0.25)],
                  logs=[j.Log(timestamp=1700000000000100,
                              fields=[j.Tag(key="event", vType=T.STRING, vStr="cache miss")])])
    child = j.Span(traceIdLow=-7340032000123456789, traceIdHigh=42, spanId=2, parentSpanId=1,
                   operationName="SELECT users", flags=1, startTime=1700000000000200,
                   duration=600,
                   references=[j.SpanRef(refType=j.SpanRefType.CHILD_OF,
                                         traceIdLow=-7340032000123456789, traceIdHigh=42,
                                         spanId=1)],
                   tags=[j.Tag(key="db.type", vType=T.STRING, vStr="sql"),
                         j.Tag(key="blob", vType=T.BINARY, vBinary=b"\x00\xff")])
    batch = j.Batch(process=j.Process(serviceName="petrel-demo",
                                      tags=[j.Tag(key="hostname", vType=T.STRING, vStr="h1")]),
                    spans=[span, child], seqNo=7)
    trans = TTransport.TMemoryBuffer()
    agent.Client(TCompactProtocol.TCompactProtocol(trans)).emitBatch(batch)
    with open(args.out, "wb") as f:
        f.write(trans.getvalue())
    print(pyinterop.ctext(pyinterop.struct_canon(batch)))
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=["parquet", "jaeger"])
    p.add_argument("out")
    p.add_argument("--thrift")
    args = p.parse_args()
    return parquet(args) if args.what == "parquet" else jaeger(args)


if __name__ == "__main__":
    sys.exit(main())
