/*
 * Shared definitions, included by main.thrift as "common/shared.thrift".
 */
namespace py petrel.shared
namespace java org.petrel.shared

include "base_types.thrift"

/** Shared status. */
enum Status {
  OK,
  PARTIAL = 5,
  FAILED,
  NEG = -0x10,
  HEX = 0x20,
}

typedef i64 Id

struct Inner {
  1: Id id,
  2: string label = "in",
}

struct Base {
  1: Inner inner,
  2: Status status = Status.PARTIAL,
  3: base_types.Stamp stamp,
}

exception SharedError {
  1: string message,
  2: Status code = 6,
}

const i32 LIMIT = 100
const Status DEFAULT_STATUS = Status.FAILED
const list<Inner> DEFAULT_INNERS = [{"id": LIMIT}]

service BaseService {
  string ping(),
  void reset() throws (1: SharedError err),
}
