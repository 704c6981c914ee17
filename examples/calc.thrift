// The service of the README's RPC examples: arguments of several kinds,
// void and oneway functions, and a declared exception.
namespace py calc

exception Oops {
  1: string message,
  2: i32 code,
}

struct Item {
  1: i64 id,
  2: string name,
  3: list<i32> nums,
  4: optional map<string, double> attrs,
}

service Calc {
  i32 add(1: i32 a, 2: i32 b),
  Item echo(1: Item it),
  void ping(),
  oneway void note(1: string msg),
  string fail(1: i32 code) throws (1: Oops oops),
}
