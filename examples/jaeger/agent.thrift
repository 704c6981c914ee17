# The agent's side of Jaeger's UDP protocol, written for petrel after the
# public shape of jaegertracing/jaeger-idl thrift/agent.thrift: clients send
# emitBatch as a oneway call, one message per datagram (port 6831 Compact,
# 6832 Binary). Zipkin's emitZipkinBatch is left out.

include "jaeger.thrift"

namespace py petrel_jaeger.agent

service Agent {
  oneway void emitBatch(1: jaeger.Batch batch)
}
