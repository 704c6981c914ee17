#!/usr/bin/python3
"""crossserver: a ThriftTest cross-language test server on Apache Thrift's
Python library (python3-thrift 0.17; run with /usr/bin/python3).

Serves ThriftTest (spec/thrift/thrift_test.thrift) with the handlers Apache
Thrift's Python cross-test server has (test/py/TestServer.py of 0.17), so a
client under test (examples/thrift_test_client.lua) meets what it would meet
there, and takes the same options:

  crossserver.py [--host H] [--port P | --domain-socket PATH]
                 [--transport buffered|framed] [--protocol NAME] [--zlib]
                 [--strict] [--duration S] [-q | -v] [SERVER_TYPE]

  --protocol     binary (default), accel, compact, accelc, json, header,
                 multi, multia, multic, multiac, multih, multij (multi*: a
                 TMultiplexedProcessor with ThriftTest and SecondService
                 registered, ThriftTest also as the default for callers that
                 do not name a service)
  --transport    buffered (default) or framed
  --host         address to listen on (default 127.0.0.1)
  --port         0 picks a free port (the ready line names it)
  --strict       answer only what the protocol names: a header server
                 refuses plain framed/unframed Binary and Compact clients
                 (Apache's accepts them, so a client that does not speak
                 THeader passes there), a multiplexed server has no default
                 service (Apache's serves ThriftTest to callers that name
                 none, so a client that does not multiplex passes 21 of 22)
  --duration     exit after S seconds (default: serve until killed)
  SERVER_TYPE    TSimpleServer (default, as Apache's cross tests run it),
                 TThreadedServer, TThreadPoolServer or TForkingServer

Prints "crossserver: ready on HOST:PORT (...)" (or "on unix:PATH") once
listening.
"""
import logging
import os
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import crosscommon  # noqa: E402  (re-execs without an ASan preload)

from thrift.TMultiplexedProcessor import TMultiplexedProcessor  # noqa: E402
from thrift.Thrift import TException  # noqa: E402
from thrift.server import TServer  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402

ThriftTest, SecondService, T = crosscommon.load_generated()
log = logging.getLogger("crossserver")


class Handler(object):
    """ThriftTest as Apache's Python test server implements it."""

    def testVoid(self):
        log.debug("testVoid()")

    def testString(self, thing): return thing
    def testBool(self, thing): return thing
    def testByte(self, thing): return thing
    def testI32(self, thing): return thing
    def testI64(self, thing): return thing
    def testDouble(self, thing): return thing
    def testBinary(self, thing): return thing
    def testStruct(self, thing): return thing
    def testNest(self, thing): return thing
    def testMap(self, thing): return thing
    def testStringMap(self, thing): return thing
    def testSet(self, thing): return thing
    def testList(self, thing): return thing
    def testEnum(self, thing): return thing
    def testTypedef(self, thing): return thing

    def testMapMap(self, hello):
        return {-4: {-4: -4, -3: -3, -2: -2, -1: -1}, 4: {1: 1, 2: 2, 3: 3, 4: 4}}

    def testInsanity(self, argument):
        return {1: {T.Numberz.TWO: argument, T.Numberz.THREE: argument},
                2: {T.Numberz.SIX: T.Insanity()}}

    def testMulti(self, arg0, arg1, arg2, arg3, arg4, arg5):
        return T.Xtruct(string_thing="Hello2", byte_thing=arg0, i32_thing=arg1, i64_thing=arg2)

    def testException(self, arg):
        log.info("testException(%s)", arg)
        if arg == "Xception":
            raise T.Xception(errorCode=1001, message=arg)
        if arg == "TException":
            # not declared: the processor answers TApplicationException
            raise TException(message="This is a TException")

    def testMultiException(self, arg0, arg1):
        if arg0 == "Xception":
            raise T.Xception(errorCode=1001, message="This is an Xception")
        if arg0 == "Xception2":
            raise T.Xception2(errorCode=2002,
                              struct_thing=T.Xtruct(string_thing="This is an Xception2"))
        return T.Xtruct(string_thing=arg1)

    def testOneway(self, seconds):
        # Apache's Python server sleeps a third of the time asked (and, as a
        # TSimpleServer, serves nothing else meanwhile)
        time.sleep(seconds / 3)


class SecondHandler(object):
    def secondtestString(self, thing):
        return 'testString("%s")' % thing


class ReadySocket(TSocket.TServerSocket):
    """A server socket that says where it listens once it does."""

    def __init__(self, describe, *args, **kwargs):
        TSocket.TServerSocket.__init__(self, *args, **kwargs)
        self.describe = describe

    def listen(self):
        TSocket.TServerSocket.listen(self)
        if self._unix_socket:
            where = "unix:" + self._unix_socket
        else:
            addr = self.handle.getsockname()
            where = "%s:%d" % (addr[0], addr[1])
        print("crossserver: ready on %s (%s)" % (where, self.describe), flush=True)


def main(argv):
    p = crosscommon.option_parser("%prog [options] [SERVER_TYPE]", "127.0.0.1")
    p.add_option("--duration", type="float", default=None)
    opts, args = crosscommon.parse(p, argv)
    if len(args) > 1:
        p.error("one server type at most")
    server_type = args[0] if args else "TSimpleServer"
    types = ("TSimpleServer", "TThreadedServer", "TThreadPoolServer", "TForkingServer")
    crosscommon.check_choice(p, "server type", server_type, types)
    logging.basicConfig(level={0: logging.ERROR, 1: logging.WARNING}.get(opts.verbose, logging.DEBUG),
                        format="crossserver: %(levelname)s %(message)s")

    base, multiplexed = crosscommon.PROTOCOLS[opts.proto]
    processor = ThriftTest.Processor(Handler())
    if multiplexed:
        mux = TMultiplexedProcessor()
        if not opts.strict:
            mux.registerDefault(processor)
        mux.registerProcessor("ThriftTest", processor)
        mux.registerProcessor("SecondService", SecondService.Processor(SecondHandler()))
        processor = mux
    pfactory = crosscommon.protocol_factory(base, server=True, strict=opts.strict)
    if opts.trans == "framed":
        tfactory = TTransport.TFramedTransportFactory()
    else:
        tfactory = TTransport.TBufferedTransportFactory()
    describe = "protocol %s, transport %s, %s%s" % (opts.proto, opts.trans, server_type,
                                                   ", strict" if opts.strict else "")
    if opts.domain_socket:
        transport = ReadySocket(describe, unix_socket=opts.domain_socket)
    else:
        transport = ReadySocket(describe, opts.host, opts.port,
                                socket_family=socket.AF_INET6 if ":" in opts.host else socket.AF_INET)
    if opts.zlib:
        from thrift.transport import TZlibTransport
        tfactory = TZlibTransport.TZlibTransportFactory()
    server = getattr(TServer, server_type)(processor, transport, tfactory, pfactory)
    if opts.duration is None:
        server.serve()
        return 0
    t = threading.Thread(target=server.serve, daemon=True)
    t.start()
    t.join(opts.duration)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
