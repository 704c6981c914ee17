#!/usr/bin/python3
"""crossclient: the ThriftTest cross-language test client, on Apache Thrift's
Python library (python3-thrift 0.17; run with /usr/bin/python3).

Makes the checks Apache Thrift's own cross-test client makes (test/py/
TestClient.py of 0.17: 22 checks, one per test method there, each on a
fresh connection, with the same values and the same pass criteria) against
any ThriftTest server, and takes the same options:

  crossclient.py [--host H] [--port P | --domain-socket PATH]
                 [--transport buffered|framed] [--protocol NAME] [--zlib]
                 [--strict] [--timeout S] [-q | -v] [CHECK ...]

  --protocol   binary (default), accel, compact, accelc, json, header,
               multi, multia, multic, multiac, multih, multij (multi*: the
               calls go through TMultiplexedProtocol as "ThriftTest:name",
               and testMultiplexed calls SecondService too)
  --transport  buffered (default) or framed
  --strict     also fail where Apache's client is lenient: testMultiException
               must raise, testException("TException") must end in a
               TApplicationException (not a dropped connection), and the
               connection must serve a call after each exception
  --timeout    socket timeout per read, seconds (default 10)
  CHECK        run only these checks (names as printed)

Prints one line per check ("ok NAME" or "FAIL NAME: why") and a summary
"crossclient: N/M passed (...)"; exits 0 when every check passed, 1 when one
failed, 2 on bad usage. --genpydir and --libpydir are accepted and ignored
(the code is generated from spec/thrift/thrift_test.thrift).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crosscommon  # noqa: E402  (re-execs without an ASan preload)

from thrift.Thrift import TApplicationException, TException  # noqa: E402
from thrift.protocol import TMultiplexedProtocol, TProtocol  # noqa: E402
from thrift.protocol.TProtocolDecorator import TProtocolDecorator  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402

ThriftTest, SecondService, T = crosscommon.load_generated()


class CheckFailed(Exception):
    pass


def expect(got, want, what=""):
    if got != want:
        raise CheckFailed("%sgot %r, want %r" % (what + ": " if what else "", got, want))


# ---- sequence ids ---------------------------------------------------------
# Apache's client wraps every protocol in a checker: a request must not reuse
# the previous request's nonzero sequence id, and a reply must carry the id of
# the request it answers. One value for all protocols on the transport (the
# multiplexed ones share it).
last_seqid = [None]


class SeqidChecker(TProtocolDecorator):
    def __init__(self, protocol):
        pass  # TProtocolDecorator.__new__ copies the protocol's state

    def writeMessageBegin(self, name, mtype, seqid):
        if last_seqid[0] and last_seqid[0] == seqid:
            raise TProtocol.TProtocolException(
                TProtocol.TProtocolException.INVALID_DATA,
                "the client reused sequence id %d" % seqid)
        last_seqid[0] = seqid
        super(SeqidChecker, self).writeMessageBegin(name, mtype, seqid)

    def readMessageBegin(self):
        name, mtype, seqid = super(SeqidChecker, self).readMessageBegin()
        if seqid != last_seqid[0]:
            raise TProtocol.TProtocolException(
                TProtocol.TProtocolException.INVALID_DATA,
                "sent sequence id %r, the reply carries %r" % (last_seqid[0], seqid))
        return name, mtype, seqid


# ---- connections ----------------------------------------------------------

class Session(object):
    """One connection with a ThriftTest client (and a SecondService client
    when multiplexed), as each of Apache's test methods opens in setUp."""

    def __init__(self, opts):
        base, multiplexed = crosscommon.PROTOCOLS[opts.proto]
        sock = TSocket.TSocket(opts.host, opts.port, opts.domain_socket)
        sock.setTimeout(opts.timeout * 1000)
        if opts.trans == "framed":
            trans = TTransport.TFramedTransport(sock)
        else:
            trans = TTransport.TBufferedTransport(sock)
        if opts.zlib:
            from thrift.transport import TZlibTransport
            trans = TZlibTransport.TZlibTransport(trans, 9)
        self.transport = trans
        trans.open()
        factory = crosscommon.protocol_factory(base)

        def proto(service):
            p = SeqidChecker(factory.getProtocol(trans))
            if service:
                p = TMultiplexedProtocol.TMultiplexedProtocol(p, service)
            return p
        self.client = ThriftTest.Client(proto("ThriftTest" if multiplexed else None))
        self.client2 = SecondService.Client(proto("SecondService")) if multiplexed else None

    def close(self):
        self.transport.close()


# ---- the checks -----------------------------------------------------------
# Values and criteria as in Apache's TestClient.py; the test strings are
# petrel's own (escapes, every JSON special character, several scripts,
# combining marks, characters outside the BMP).

STR_ESCAPES = 'tab\t lf\n cr\r bs\b ff\f quote" backslash\\\\ slash/ {}[]:, ペトレル'
STR_SCRIPTS = """Ελληνικά · Русский · Українська · Српски · עברית · العربية ·
  فارسی · हिन्दी · বাংলা · தமிழ் · ಕನ್ನಡ · ไทย · ລາວ · ქართული · Հայերեն ·
  한국어 · 日本語 · 中文 · 粵語 · Tiếng Việt · Türkçe · Íslenska · Føroyskt ·
  Čeština · Ærøskøbing · Ñandú · ᏣᎳᎩ · Ṁìng-dĕ̤ng-ngṳ̄ (combining marks) ·
  𝄞 𐍈 😀 (outside the BMP) · ∮ E⋅da = Q · ½ ≠ 0.5̅"""

CHECKS = []


def check(fn):
    CHECKS.append((fn.__name__, fn))
    return fn


@check
def testVoid(s, o):
    expect(s.client.testVoid(), None)


@check
def testString(s, o):
    for v in ("Python" * 20, "", STR_ESCAPES, STR_SCRIPTS):
        expect(s.client.testString(v), v)


@check
def testMultiplexed(s, o):
    # passes without a call unless the protocol is multiplexed (as Apache's)
    if s.client2 is not None:
        expect(s.client2.secondtestString("foobar"), 'testString("foobar")')


@check
def testBool(s, o):
    expect(s.client.testBool(True), True)
    expect(s.client.testBool(False), False)


@check
def testByte(s, o):
    expect(s.client.testByte(63), 63)
    expect(s.client.testByte(-127), -127)


@check
def testI32(s, o):
    expect(s.client.testI32(-1), -1)
    expect(s.client.testI32(0), 0)


@check
def testI64(s, o):
    expect(s.client.testI64(1), 1)
    expect(s.client.testI64(-34359738368), -34359738368)


@check
def testDouble(s, o):
    for v in (-5.235098235, 0, -1, -0.000341012439638598279):
        expect(s.client.testDouble(v), v)


@check
def testBinary(s, o):
    v = bytes(range(256))
    expect(bytes(s.client.testBinary(v)), v)


def xtruct(string, byte, i32, i64):
    return T.Xtruct(string_thing=string, byte_thing=byte, i32_thing=i32, i64_thing=i64)


@check
def testStruct(s, o):
    x = xtruct("Zero", 1, -3, -5)
    expect(s.client.testStruct(x), x)


@check
def testNest(s, o):
    x = T.Xtruct2(byte_thing=0, struct_thing=xtruct("Zero", 1, -3, -5), i32_thing=0)
    expect(s.client.testNest(x), x)


@check
def testMap(s, o):
    x = {0: 1, 1: 2, 2: 3, 3: 4, -1: -2}
    expect(s.client.testMap(x), x)


@check
def testSet(s, o):
    x = {8, 1, 42}
    expect(s.client.testSet(x), x)


@check
def testList(s, o):
    x = [1, 4, 9, -42]
    expect(s.client.testList(x), x)


@check
def testEnum(s, o):
    expect(s.client.testEnum(T.Numberz.FIVE), T.Numberz.FIVE)


@check
def testTypedef(s, o):
    expect(s.client.testTypedef(0xffffffffffffff), 0xffffffffffffff)


@check
def testMapMap(s, o):
    want = {-4: {-4: -4, -3: -3, -2: -2, -1: -1}, 4: {1: 1, 2: 2, 3: 3, 4: 4}}
    expect(s.client.testMapMap(42), want)


@check
def testMulti(s, o):
    want = xtruct("Hello2", 74, 0xff00ff, 0xffffffffd0d0)
    got = s.client.testMulti(74, 0xff00ff, 0xffffffffd0d0, {0: "abc"}, T.Numberz.FIVE, 0xf0f0f0)
    expect(got, want)


def still_serves(s, o, after):
    if o.strict:
        expect(s.client.testString("after " + after), "after " + after, "call after " + after)


@check
def testException(s, o):
    s.client.testException("Safe")
    try:
        s.client.testException("Xception")
        raise CheckFailed('testException("Xception") returned without an exception')
    except T.Xception as x:
        expect(x.errorCode, 1001, "errorCode")
        expect(x.message, "Xception", "message")
    still_serves(s, o, "Xception")
    try:
        s.client.testException("TException")
        raise CheckFailed('testException("TException") returned without an exception')
    except CheckFailed:
        raise
    except TException as x:
        if o.strict and not isinstance(x, TApplicationException):
            raise CheckFailed('testException("TException") ended in %r, '
                              "not a TApplicationException" % (x,))
    still_serves(s, o, "TException")
    s.client.testException("success")


@check
def testMultiException(s, o):
    # Apache's client lets these two calls return normally; --strict does not
    try:
        s.client.testMultiException("Xception", "ignore")
        if o.strict:
            raise CheckFailed('testMultiException("Xception") returned normally')
    except T.Xception as x:
        expect(x.errorCode, 1001, "errorCode")
        expect(x.message, "This is an Xception", "message")
    still_serves(s, o, "Xception")
    try:
        s.client.testMultiException("Xception2", "ignore")
        if o.strict:
            raise CheckFailed('testMultiException("Xception2") returned normally')
    except T.Xception2 as x:
        expect(x.errorCode, 2002, "errorCode")
        expect(x.struct_thing.string_thing, "This is an Xception2", "struct_thing.string_thing")
    still_serves(s, o, "Xception2")
    expect(s.client.testMultiException("success", "foobar").string_thing, "foobar")


@check
def testOneway(s, o):
    start = time.time()
    s.client.testOneway(1)
    took = time.time() - start
    if took >= 3:
        raise CheckFailed("the oneway call took %.3f s" % took)


@check
def testOnewayThenNormal(s, o):
    s.client.testOneway(1)
    expect(s.client.testString("Python"), "Python")


# ---- running --------------------------------------------------------------

def describe(e):
    if isinstance(e, TApplicationException):
        return "TApplicationException(type %s): %s" % (e.type, e.message)
    text = str(e) or getattr(e, "message", None) or ""
    return "%s: %s" % (type(e).__name__, text)


def run(opts, names):
    passed, ran = 0, 0
    for name, fn in CHECKS:
        if names and name not in names:
            continue
        ran += 1
        start = time.time()
        try:
            s = Session(opts)
        except Exception as e:
            print("FAIL %s: cannot connect: %s" % (name, describe(e)), flush=True)
            continue
        try:
            fn(s, opts)
            passed += 1
            if opts.verbose > 0:
                print("ok %s (%.3f s)" % (name, time.time() - start), flush=True)
        except CheckFailed as e:
            print("FAIL %s: %s" % (name, e), flush=True)
        except Exception as e:
            print("FAIL %s: %s" % (name, describe(e)), flush=True)
        finally:
            try:
                s.close()
            except Exception:
                pass
    where = opts.domain_socket or "%s:%d" % (opts.host, opts.port)
    print("crossclient: %d/%d passed (protocol %s, transport %s, %s%s)" % (
        passed, ran, opts.proto, opts.trans, where, ", strict" if opts.strict else ""), flush=True)
    return 0 if ran > 0 and passed == ran else 1


def main(argv):
    p = crosscommon.option_parser("%prog [options] [CHECK ...]", "localhost")
    p.add_option("--http", dest="http_path", default=None)
    p.add_option("--timeout", type="float", default=10.0)
    opts, names = crosscommon.parse(p, argv)
    known = set(n for n, _ in CHECKS)
    for n in names:
        if n not in known:
            p.error("unknown check %r (one of: %s)" % (n, ", ".join(n for n, _ in CHECKS)))
    return run(opts, names)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
