"""crosscommon: what tools/crossclient.py and tools/crossserver.py share.

The ThriftTest interface (spec/thrift/thrift_test.thrift) compiled with
`thrift --gen py` (once, cached under $PETREL_BUILD/pyinterop, see
pyinterop.gen_python), and the protocol and transport names of Apache
Thrift's cross-language tests (test/tests.json, test/py/TestClient.py and
TestServer.py of Apache Thrift 0.17) mapped to Apache's Python library.
Run the tools with /usr/bin/python3 (the interpreter python3-thrift is
installed for).
"""
import importlib
import optparse
import os
import sys

# An ASan runtime preloaded for the interpreters under test (make asan) must
# not reach CPython: LeakSanitizer would fail it at exit. Re-exec without it.
if "san" in os.environ.get("LD_PRELOAD", ""):
    _env = dict(os.environ)
    del _env["LD_PRELOAD"]
    os.execve(sys.executable, [sys.executable] + sys.argv, _env)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pyinterop  # noqa: E402  (code generation, cached)

IDL = os.path.join(pyinterop.ROOT, "spec", "thrift", "thrift_test.thrift")

# Apache's --protocol names: (base protocol, multiplexed?)
PROTOCOLS = {
    "binary": ("binary", False),
    "accel": ("accel", False),
    "compact": ("compact", False),
    "accelc": ("accelc", False),
    "json": ("json", False),
    "header": ("header", False),
    "multi": ("binary", True),
    "multia": ("accel", True),
    "multic": ("compact", True),
    "multiac": ("accelc", True),
    "multih": ("header", True),
    "multij": ("json", True),
}
TRANSPORTS = ("buffered", "framed")


def load_generated():
    """Import the generated ThriftTest package: (ThriftTest, SecondService, ttypes)."""
    gen = pyinterop.gen_python(IDL)
    if gen not in sys.path:
        sys.path.insert(0, gen)
    tt = importlib.import_module("ThriftTest.ThriftTest")
    second = importlib.import_module("ThriftTest.SecondService")
    ttypes = importlib.import_module("ThriftTest.ttypes")
    return tt, second, ttypes


def protocol_factory(base, server=False, strict=False):
    """A protocol factory of Apache's Python library for a base protocol name.

    Accelerated protocols do not fall back to pure Python (a missing
    extension is an error, as in Apache's TestClient). A header server
    accepts every client type Apache's TestServer accepts, or (strict) only
    THeader clients."""
    from thrift.protocol import (TBinaryProtocol, TCompactProtocol,
                                 THeaderProtocol, TJSONProtocol)
    if base == "binary":
        return TBinaryProtocol.TBinaryProtocolFactory()
    if base == "accel":
        return TBinaryProtocol.TBinaryProtocolAcceleratedFactory(fallback=False)
    if base == "compact":
        return TCompactProtocol.TCompactProtocolFactory()
    if base == "accelc":
        return TCompactProtocol.TCompactProtocolAcceleratedFactory(fallback=False)
    if base == "json":
        return TJSONProtocol.TJSONProtocolFactory()
    if base == "header":
        if not server:
            return THeaderProtocol.THeaderProtocolFactory()
        from thrift.transport.THeaderTransport import THeaderClientType as C
        if strict:
            return THeaderProtocol.THeaderProtocolFactory([C.HEADERS])
        return THeaderProtocol.THeaderProtocolFactory(
            [C.HEADERS, C.FRAMED_BINARY, C.UNFRAMED_BINARY, C.FRAMED_COMPACT,
             C.UNFRAMED_COMPACT])
    raise ValueError("unknown protocol " + base)


def check_choice(parser, what, value, choices):
    if value not in choices:
        parser.error("unknown %s %r (one of: %s)" % (what, value, ", ".join(sorted(choices))))


def option_parser(usage, host):
    """The options Apache's cross-test clients and servers share."""
    p = optparse.OptionParser(usage=usage)
    p.add_option("--host", default=host)
    p.add_option("--port", type="int", default=9090)
    p.add_option("--domain-socket", dest="domain_socket", default=None)
    p.add_option("--transport", dest="trans", default="buffered")
    p.add_option("--protocol", dest="proto", default="binary")
    p.add_option("--zlib", action="store_true", default=False)
    p.add_option("--ssl", action="store_true", default=False)
    p.add_option("--strict", action="store_true", default=False)
    p.add_option("--genpydir")   # accepted, unused: the code comes from IDL
    p.add_option("--libpydir")
    p.add_option("-v", "--verbose", action="store_const", const=2, dest="verbose", default=1)
    p.add_option("-q", "--quiet", action="store_const", const=0, dest="verbose")
    return p


def parse(parser, argv):
    """Parse and check the shared options: (opts, positional arguments)."""
    opts, args = parser.parse_args(argv)
    check_choice(parser, "--protocol", opts.proto, PROTOCOLS)
    check_choice(parser, "--transport", opts.trans, TRANSPORTS)
    if opts.ssl or getattr(opts, "http_path", None):
        parser.error("--ssl and --http are not part of this harness")
    return opts, args
