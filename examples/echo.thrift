// The README's IDL example: a struct using a type from an included file
// (found through include_dirs = { "examples/idl" }), names qualified by
// that file's name.
include "shared.thrift"

namespace py echo

enum Mode {
  FAST = 1,
  SAFE = 2,
}

struct Request {
  1: i64 id,
  2: string text,
  3: Mode mode = Mode.SAFE,
  4: shared.Base base,
}

service Echo extends shared.Service {
  Request echo(1: Request req),
}
