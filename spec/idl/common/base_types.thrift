// Included by shared.thrift from the same directory (transitive include).
namespace py petrel.base_types

struct Stamp {
  1: i64 seconds,
  2: i32 nanos,
}

const double PI = 3.14159
