# Jaeger-shaped span types for examples/jaeger_agent.lua, written for petrel
# after the public shape of Jaeger's Thrift model (jaegertracing/jaeger-idl,
# thrift/jaeger.thrift): the same field ids and types, so the batches
# Jaeger's clients send decode here. Comments are ours.

namespace py petrel_jaeger.model

# What a tag's value is; the value sits in the field of that type.
enum TagType { STRING, DOUBLE, BOOL, LONG, BINARY }

struct Tag {
  1: required string  key
  2: required TagType vType
  3: optional string  vStr
  4: optional double  vDouble
  5: optional bool    vBool
  6: optional i64     vLong
  7: optional binary  vBinary
}

# An event inside a span, at a time in microseconds since the epoch.
struct Log {
  1: required i64       timestamp
  2: required list<Tag> fields
}

enum SpanRefType { CHILD_OF, FOLLOWS_FROM }

struct SpanRef {
  1: required SpanRefType refType
  2: required i64         traceIdLow
  3: required i64         traceIdHigh
  4: required i64         spanId
}

# A unit of work. Trace ids are 128 bits in two halves (High is 0 for
# 64-bit ids); times in microseconds; flags: 1 sampled, 2 debug.
struct Span {
  1:  required i64           traceIdLow
  2:  required i64           traceIdHigh
  3:  required i64           spanId
  4:  required i64           parentSpanId
  5:  required string        operationName
  6:  optional list<SpanRef> references
  7:  required i32           flags
  8:  required i64           startTime
  9:  required i64           duration
  10: optional list<Tag>     tags
  11: optional list<Log>     logs
  12: optional bool          incomplete
}

# The service that emits the spans.
struct Process {
  1: required string    serviceName
  2: optional list<Tag> tags
}

# A client's counts of what it could not send (newer clients send them).
struct ClientStats {
  1: required i64 fullQueueDroppedSpans
  2: required i64 tooLargeDroppedSpans
  3: required i64 failedToEmitSpans
}

struct Batch {
  1: required Process    process
  2: required list<Span> spans
  3: optional i64        seqNo
  4: optional ClientStats stats
}
