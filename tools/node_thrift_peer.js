#!/usr/bin/env node
// A ThriftTest peer on the npm `thrift` package (Apache Thrift's Node.js
// library, installed into build/npm by tools/npm-peers.sh), with the code
// Debian's thrift compiler generates from spec/thrift/thrift_test.thrift
// (`thrift --gen js:node`; generated at run time, never committed). Used by
// spec/node_spec.lua against petrel's server and client.
//
//   node tools/node_thrift_peer.js client --port N [options] [CHECK ...]
//   node tools/node_thrift_peer.js server --port 0 [options]
//
// Options:
//   --host ADDR        (default 127.0.0.1)
//   --port N           server: 0 picks a free port
//   --transport T      framed | buffered | header (THeader frames, node's
//                      THeaderProtocol over its buffered transport) |
//                      framed-header (THeaderProtocol over the framed
//                      transport: each THeader frame inside a frame)
//   --protocol P       binary | compact | json (inside THeader: binary or
//                      compact, node has no JSON there; a THeader server
//                      answers in each request's protocol whatever this says)
//   --multiplexed      calls name "ThriftTest:method" (client), a
//                      MultiplexedProcessor with ThriftTest and
//                      SecondService (server)
//   --raw-header       client: node's THeader client as the library has it,
//                      which sends no THeader (see connect below); without
//                      it the peer writes the headers the library forgets
//   --gen DIR          the generated code (default: generated into a fresh
//                      directory under build/npm, removed at exit)
//   --lifetime S       server: exit after S seconds (default 300)
//   --timeout S        client: seconds per check (default 20)
// The client makes a fixed set of checks, each on a fresh connection, and
// prints "ok NAME" or "FAIL NAME: why" per check, then
// "node_thrift_peer: N/M passed"; exits 0 when all passed, 1 when one
// failed, 2 on bad usage. The server prints
// "node_thrift_peer: ready on HOST:PORT (...)" once listening and serves
// until SIGTERM or its lifetime ends.
'use strict';
const path = require('path');
const fs = require('fs');
const { execFileSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..');
const NPM = path.join(ROOT, 'build', 'npm');
const IDL = path.join(ROOT, 'spec', 'thrift', 'thrift_test.thrift');

function usage(msg) {
  process.stderr.write('node_thrift_peer: ' + msg + '\nusage: node_thrift_peer.js client|server' +
    ' --port N [--host A] [--transport framed|buffered|header|framed-header]' +
    ' [--protocol binary|compact|json] [--multiplexed] [--gen DIR] [--lifetime S] [--timeout S]\n');
  process.exit(2);
}

// ---- command line ---------------------------------------------------------
const argv = process.argv.slice(2);
const mode = argv.shift();
if (mode !== 'client' && mode !== 'server') usage('first argument: client or server');
const opts = { host: '127.0.0.1', transport: 'buffered', protocol: 'binary', lifetime: 300,
  timeout: 20 };
const FLAGS = { multiplexed: true, 'raw-header': true };
const VALUES = { host: 1, port: 1, transport: 1, protocol: 1, gen: 1, lifetime: 1, timeout: 1 };
const only = []; // client: the checks to make (default: all)
for (let i = 0; i < argv.length; i++) {
  let m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
  if (!m && mode === 'client' && /^test\w+$/.test(argv[i])) { only.push(argv[i]); continue; }
  if (!m) usage('unexpected argument ' + argv[i]);
  const name = m[1];
  if (FLAGS[name]) { opts[name] = true; continue; }
  if (!VALUES[name]) usage('unknown option --' + name);
  let v = m[2];
  if (v === undefined) { v = argv[++i]; if (v === undefined) usage('--' + name + ' needs a value'); }
  opts[name] = v;
}
for (const k of ['port', 'lifetime', 'timeout']) {
  if (opts[k] !== undefined) {
    const n = Number(opts[k]);
    if (!Number.isFinite(n) || n < 0) usage('--' + k + ': a number expected');
    opts[k] = n;
  }
}
if (opts.port === undefined) usage('--port is required');
if (!['framed', 'buffered', 'header', 'framed-header'].includes(opts.transport)) {
  usage('unknown transport ' + opts.transport);
}
if (!['binary', 'compact', 'json'].includes(opts.protocol)) usage('unknown protocol ' + opts.protocol);
const HEADER = opts.transport === 'header' || opts.transport === 'framed-header';
if (HEADER && opts.protocol === 'json') {
  usage("node's THeaderProtocol carries binary or compact only (no JSON)");
}

// ---- the library and the generated code -------------------------------------
const thrift = require(path.join(NPM, 'node_modules', 'thrift'));
let gen = opts.gen, genTemp = null;
if (!gen) {
  // under build/npm, so the generated require('thrift') finds build/npm/node_modules
  genTemp = fs.mkdtempSync(path.join(NPM, 'gen-'));
  execFileSync('thrift', ['--gen', 'js:node', '-out', genTemp, IDL]);
  gen = genTemp;
}
function cleanup() {
  if (genTemp) { fs.rmSync(genTemp, { recursive: true, force: true }); genTemp = null; }
}
process.on('exit', cleanup);
const ThriftTest = require(path.resolve(gen, 'ThriftTest.js'));
const SecondService = require(path.resolve(gen, 'SecondService.js'));
const ttypes = require(path.resolve(gen, 'thrift_test_types.js'));
const Int64 = thrift.Int64;
const TApplicationException = thrift.Thrift.TApplicationException;

// transport and protocol classes of a combination
const Transport = opts.transport === 'framed' || opts.transport === 'framed-header'
  ? thrift.TFramedTransport : thrift.TBufferedTransport;
let Protocol = { binary: thrift.TBinaryProtocol, compact: thrift.TCompactProtocol,
  json: thrift.TJSONProtocol }[opts.protocol];
if (HEADER) {
  Protocol = thrift.THeaderProtocol;
  if (opts.protocol === 'compact' && mode === 'client') {
    // node's THeaderProtocol writes the protocol id its transport holds
    // (binary unless set). A server keeps THeaderProtocol itself: node's
    // server then reads and answers on one transport, in the request's
    // protocol (any other class gets a separate reply transport)
    const THeaderProtocol = thrift.THeaderProtocol;
    Protocol = function HeaderCompact(trans) {
      trans.setProtocolId(2); // THeader's id of Compact
      THeaderProtocol.call(this, trans);
    };
    require('util').inherits(Protocol, THeaderProtocol);
  }
}
const TAG = `transport ${opts.transport}, protocol ${opts.protocol}` +
  `${opts.multiplexed ? ', multiplexed' : ''}, node ${process.version}, thrift ` +
  require(path.join(NPM, 'node_modules', 'thrift', 'package.json')).version;

// ---- values -----------------------------------------------------------------
const STR_SCRIPTS = 'Ελληνικά Русский עברית العربية हिन्दी 日本語 中文 한국어 ' +
  'Tiếng Việt Ñandú e\u0301 𝄞 𐍈 😀';
const STR_ESCAPES = 'tab\t lf\n cr\r bs\b ff\f quote" backslash\\ slash/ {}[]:, \u0001 \u007f';
const I64_MAX = new Int64('7fffffffffffffff');
const I64_MIN = new Int64('8000000000000000');
const SEVEN_FF = new Int64('00ffffffffffffff');
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
function xtruct(s, b, i, l) {
  return new ttypes.Xtruct({ string_thing: s, byte_thing: b, i32_thing: i, i64_thing: l });
}

// A canonical text of a value, for comparing what came back with what went:
// Int64 and numbers by their 64-bit value, buffers as hex, objects by sorted
// keys (an i32-keyed map comes back with string keys in JS).
function canon(v) {
  if (v instanceof Int64) return 'i64:' + v.toOctetString();
  if (Buffer.isBuffer(v)) return 'bin:' + v.toString('hex');
  if (typeof v === 'number') {
    if (Object.is(v, -0)) return 'n:-0';
    if (Number.isInteger(v) && Math.abs(v) <= 2 ** 53) return 'i64:' + new Int64(v).toOctetString();
    return 'n:' + String(v);
  }
  if (typeof v === 'string') return JSON.stringify(v);
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return '[' + v.map(canon).join(',') + ']';
  if (typeof v === 'object') {
    return '{' + Object.keys(v).filter(k => v[k] !== null && v[k] !== undefined).sort()
      .map(k => k + '=' + canon(v[k])).join(',') + '}';
  }
  return String(v);
}
function short(s) { return s.length > 80 ? s.slice(0, 80) + '...' : s; }
function expect(what, got, want) {
  const g = canon(got), w = canon(want);
  if (g !== w) throw new Error(`${what}: got ${short(g)}, want ${short(w)}`);
}
function sorted(arr) { return arr.slice().sort((a, b) => a - b); }

// ---- the server ---------------------------------------------------------------
// every handler declares all its arguments: the generated processor calls a
// handler with fewer in callback style (it would never answer)
const handler = {
  testVoid() {},
  testString(s) { return s; },
  testBool(b) { return b; },
  testByte(v) { return v; },
  testI32(v) { return v; },
  testI64(v) { return v; },
  testDouble(v) { return v; },
  testBinary(v) { return v; },
  testStruct(v) { return v; },
  testNest(v) { return v; },
  testMap(v) { return v; },
  testStringMap(v) { return v; },
  testSet(v) { return v; },
  testList(v) { return v; },
  testEnum(v) { return v; },
  testTypedef(v) { return v; },
  testMapMap(hello) {
    return { '-4': { '-4': -4, '-3': -3, '-2': -2, '-1': -1 }, 4: { 1: 1, 2: 2, 3: 3, 4: 4 } };
  },
  testInsanity(arg) {
    const N = ttypes.Numberz;
    return { 1: { [N.TWO]: arg, [N.THREE]: arg }, 2: { [N.SIX]: new ttypes.Insanity() } };
  },
  testMulti(a0, a1, a2, a3, a4, a5) { return xtruct('Hello2', a0, a1, a2); },
  testException(arg) {
    if (arg === 'Xception') throw new ttypes.Xception({ errorCode: 1001, message: arg });
    if (arg === 'TException') throw new thrift.Thrift.TException('This is a TException');
  },
  testMultiException(a0, a1) {
    if (a0 === 'Xception') {
      throw new ttypes.Xception({ errorCode: 1001, message: 'This is an Xception' });
    }
    if (a0 === 'Xception2') {
      throw new ttypes.Xception2({ errorCode: 2002,
        struct_thing: new ttypes.Xtruct({ string_thing: 'This is an Xception2' }) });
    }
    return new ttypes.Xtruct({ string_thing: a1 });
  },
  testOneway(seconds) { setTimeout(() => {}, seconds * 1000); },
};
const secondHandler = { secondtestString(s) { return 'testString("' + s + '")'; } };

function serve() {
  const so = { transport: Transport, protocol: Protocol };
  let server;
  if (opts.multiplexed) {
    const mp = new thrift.MultiplexedProcessor();
    mp.registerProcessor('ThriftTest', new ThriftTest.Processor(handler));
    mp.registerProcessor('SecondService', new SecondService.Processor(secondHandler));
    server = thrift.createMultiplexServer(mp, so);
  } else {
    server = thrift.createServer(ThriftTest, handler, so);
  }
  server.on('error', e => process.stderr.write('node_thrift_peer: server error: ' + e.message + '\n'));
  server.listen(opts.port, opts.host, () => {
    console.log(`node_thrift_peer: ready on ${opts.host}:${server.address().port} (${TAG}, pid ${process.pid})`);
  });
  const stop = () => { cleanup(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  setTimeout(() => {
    process.stderr.write('node_thrift_peer: lifetime over\n');
    stop();
  }, opts.lifetime * 1000).unref();
  // keep the bounded lifetime even while idle
  setInterval(() => {}, 1 << 30);
}

// ---- the client -----------------------------------------------------------------
// connect: { c: ThriftTest client, c2: SecondService client | null, close() }
function connect() {
  return new Promise((resolve, reject) => {
    const conn = thrift.createConnection(opts.host, opts.port, {
      transport: Transport, protocol: Protocol, max_attempts: 1, connect_timeout: 10000,
    });
    let done = false;
    conn.on('error', e => { if (!done) { done = true; reject(e); } else conn.lastError = e; });
    conn.on('connect', () => {
      done = true;
      let c, c2 = null;
      if (opts.multiplexed) {
        const mp = new thrift.Multiplexer();
        c = mp.createClient('ThriftTest', ThriftTest, conn);
        c2 = mp.createClient('SecondService', SecondService, conn);
      } else {
        c = thrift.createClient(ThriftTest, conn);
      }
      if (HEADER && !opts['raw-header']) {
        // node's generated clients flush the transport, never the
        // THeaderProtocol, so the library itself sends no THeader at all
        // (plain Binary or Compact, framed or not; docs/interop.md): write
        // the headers before each flush, as THeaderProtocol.flush would,
        // with info headers (non-ASCII too) the server must read past
        for (const cl of [c, c2]) {
          if (!cl) continue;
          const t = cl.output, flush = t.flush;
          t.setWriteHeader('petrel-peer', 'node');
          t.setWriteHeader('clé', 'välue ✓');
          t.flush = function() { this.writeHeaders(); return flush.call(this); };
        }
      }
      resolve({ c, c2, conn, close() { conn.end(); } });
    });
  });
}

const CHECKS = [];
function check(name, fn) { CHECKS.push({ name, fn }); }
async function echo(c, method, values) {
  for (const v of values) expect(`${method}(${short(canon(v))})`, await c[method](v), v);
}
async function rejects(what, p) {
  try { await p; } catch (e) { return e; }
  throw new Error(what + ': returned instead of raising');
}

check('testVoid', async s => { expect('testVoid()', await s.c.testVoid(), null); });
check('testString', async s => {
  await echo(s.c, 'testString', ['Python'.repeat(20), '', STR_ESCAPES, STR_SCRIPTS, 'x'.repeat(70000)]);
});
check('testMultiplexed', async s => {
  if (s.c2) expect('secondtestString', await s.c2.secondtestString('foo ✓'), 'testString("foo ✓")');
});
check('testBool', async s => { await echo(s.c, 'testBool', [true, false]); });
check('testByte', async s => { await echo(s.c, 'testByte', [63, -127, 127, -128, 0]); });
check('testI32', async s => { await echo(s.c, 'testI32', [-1, 0, 2147483647, -2147483648]); });
check('testI64', async s => {
  await echo(s.c, 'testI64', [1, -34359738368, I64_MAX, I64_MIN, 2 ** 53, -(2 ** 53)]);
});
check('testDouble', async s => {
  await echo(s.c, 'testDouble', [-5.235098235, 0, -1, -0.000341012439638598279, 1e300, -1e-300,
    5e-324, 2 ** 53 + 2, 0.1]);
});
check('testDoubleSpecial', async s => {
  await echo(s.c, 'testDouble', [Infinity, -Infinity]);
  const nan = await s.c.testDouble(NaN);
  if (!Number.isNaN(nan)) throw new Error('testDouble(NaN): got ' + nan);
});
check('testBinary', async s => {
  await echo(s.c, 'testBinary', [ALL_BYTES, Buffer.alloc(0), Buffer.from('\u00ff\u0000'.repeat(30000), 'latin1')]);
});
check('testStruct', async s => {
  await echo(s.c, 'testStruct', [xtruct('Zero ✓', 1, -3, I64_MIN)]);
});
check('testNest', async s => {
  await echo(s.c, 'testNest', [new ttypes.Xtruct2({ byte_thing: 0,
    struct_thing: xtruct('Zero', 1, -3, -5), i32_thing: 0 })]);
});
check('testMap', async s => {
  await echo(s.c, 'testMap', [{ 0: 1, 1: 2, 2: 3, 3: 4, '-1': -2, 2147483647: -2147483648 }, {}]);
});
check('testStringMap', async s => {
  await echo(s.c, 'testStringMap', [{ a: '2', b: 'blah', '': '', 'ключ': STR_ESCAPES, '😀': STR_SCRIPTS }]);
});
check('testSet', async s => {
  const r = await s.c.testSet([8, 1, 42, -7]);
  expect('testSet', sorted(r), [-7, 1, 8, 42]);
  expect('testSet([])', await s.c.testSet([]), []);
});
check('testList', async s => { await echo(s.c, 'testList', [[1, 4, 9, -42], []]); });
check('testEnum', async s => { await echo(s.c, 'testEnum', [ttypes.Numberz.FIVE, ttypes.Numberz.EIGHT]); });
check('testTypedef', async s => { await echo(s.c, 'testTypedef', [SEVEN_FF]); });
check('testMapMap', async s => {
  expect('testMapMap(42)', await s.c.testMapMap(42),
    { '-4': { '-4': -4, '-3': -3, '-2': -2, '-1': -1 }, 4: { 1: 1, 2: 2, 3: 3, 4: 4 } });
});
check('testInsanity', async s => {
  const N = ttypes.Numberz;
  const arg = new ttypes.Insanity({ userMap: { [N.FIVE]: 5, [N.EIGHT]: 8 },
    xtructs: [xtruct('Goodbye4', 4, 4, 4), xtruct('Hello2', 2, 2, 2)] });
  expect('testInsanity', await s.c.testInsanity(arg),
    { 1: { [N.TWO]: arg, [N.THREE]: arg }, 2: { [N.SIX]: {} } });
});
check('testMulti', async s => {
  expect('testMulti', await s.c.testMulti(74, 0xff00ff, new Int64('0000ffffffffd0d0'), { 0: 'abc' },
    ttypes.Numberz.FIVE, 0xf0f0f0), xtruct('Hello2', 74, 0xff00ff, new Int64('0000ffffffffd0d0')));
});
check('testException', async s => {
  expect('testException("Safe")', await s.c.testException('Safe'), null);
  let e = await rejects('testException("Xception")', s.c.testException('Xception'));
  if (!(e instanceof ttypes.Xception)) throw new Error('testException("Xception"): got ' + e);
  expect('testException("Xception")', { errorCode: e.errorCode, message: e.message },
    { errorCode: 1001, message: 'Xception' });
  e = await rejects('testException("TException")', s.c.testException('TException'));
  if (!(e instanceof TApplicationException)) {
    throw new Error('testException("TException"): got ' + e + ', want a TApplicationException');
  }
  expect('testException("success")', await s.c.testException('success'), null);
});
check('testMultiException', async s => {
  let e = await rejects('testMultiException("Xception")', s.c.testMultiException('Xception', 'x'));
  if (!(e instanceof ttypes.Xception)) throw new Error('testMultiException("Xception"): got ' + e);
  expect('err1', { errorCode: e.errorCode, message: e.message },
    { errorCode: 1001, message: 'This is an Xception' });
  e = await rejects('testMultiException("Xception2")', s.c.testMultiException('Xception2', 'x'));
  if (!(e instanceof ttypes.Xception2)) throw new Error('testMultiException("Xception2"): got ' + e);
  expect('err2', { errorCode: e.errorCode, string_thing: e.struct_thing.string_thing },
    { errorCode: 2002, string_thing: 'This is an Xception2' });
  expect('testMultiException("success")', await s.c.testMultiException('success', 'foobar'),
    new ttypes.Xtruct({ string_thing: 'foobar' }));
});
check('testOnewayThenNormal', async s => {
  const t0 = Date.now();
  expect('testOneway(1)', await s.c.testOneway(1), null);
  if (Date.now() - t0 > 2000) throw new Error('the oneway call waited for the server');
  expect('testString after oneway', await s.c.testString('after ✓'), 'after ✓');
});

function withTimeout(p, secs, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => {
    t = setTimeout(() => rej(new Error(what + ': no answer in ' + secs + ' s')), secs * 1000);
  })]).finally(() => clearTimeout(t));
}

async function runClient() {
  for (const n of only) {
    if (!CHECKS.some(ch => ch.name === n)) usage('unknown check ' + n);
  }
  const run = CHECKS.filter(ch => only.length === 0 || only.includes(ch.name));
  let passed = 0;
  for (const ch of run) {
    let s = null;
    try {
      s = await withTimeout(connect(), opts.timeout, 'connect');
      await withTimeout(ch.fn(s), opts.timeout, ch.name);
      passed++;
      console.log('ok ' + ch.name);
    } catch (e) {
      const why = (e && e.message) || String(e);
      console.log('FAIL ' + ch.name + ': ' + why.replace(/\n/g, ' '));
    } finally {
      if (s) s.close();
    }
  }
  console.log(`node_thrift_peer: ${passed}/${run.length} passed (${TAG})`);
  cleanup();
  process.exit(passed === run.length ? 0 : 1);
}

if (mode === 'server') serve(); else runClient();
