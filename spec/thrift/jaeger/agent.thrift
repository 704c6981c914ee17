// Shaped like Jaeger's agent.thrift: what a client library sends to the
// agent, one oneway emitBatch call per UDP datagram, Thrift Compact.
include "jaeger.thrift"

namespace py agent_shaped

service Agent {
  oneway void emitBatch(1: jaeger.Batch batch)
}
