// jaeger_node_send.js: spans reported to a Jaeger agent over UDP by the npm
// jaeger-client (installed into build/npm by tools/npm-peers.sh), whose UDP
// sender sends emitBatch as Thrift Binary datagrams (the agent's port 6832).
//
//   node tools/jaeger_node_send.js PORT [SPANS=5] [SERVICE=node-sender]
//
// Span i (from 0) is "node-op-i", a child of span 0 (span 0 is the root),
// with tags http.method=POST, attempt=i, ok=true and one log. The tracer is
// closed at the end, which flushes the reporter; then "sent N spans" is
// printed (the sender's own errors go to stderr).
'use strict';
const path = require('path');
const dir = process.env.PETREL_NPM_DIR || path.join(__dirname, '..', 'build', 'npm');
const { initTracer } = require(path.join(dir, 'node_modules', 'jaeger-client'));

const port = parseInt(process.argv[2], 10);
const n = parseInt(process.argv[3] || '5', 10);
const service = process.argv[4] || 'node-sender';
if (!port) {
  console.error('usage: node tools/jaeger_node_send.js PORT [SPANS] [SERVICE]');
  process.exit(2);
}

const logger = { info() {}, error(msg) { console.error('jaeger-client:', msg); } };
const tracer = initTracer({
  serviceName: service,
  sampler: { type: 'const', param: 1 },
  reporter: { agentHost: '127.0.0.1', agentPort: port, flushIntervalMs: 50 },
}, { logger });

let root = null;
for (let i = 0; i < n; i++) {
  const span = i === 0 ? tracer.startSpan('node-op-0') : tracer.startSpan('node-op-' + i, { childOf: root });
  if (i === 0) root = span;
  span.setTag('http.method', 'POST');
  span.setTag('attempt', i);
  span.setTag('ok', true);
  span.log({ event: 'step', n: i });
  if (i > 0) span.finish();
}
root.finish();
tracer.close(() => { console.log('sent ' + n + ' spans'); });
