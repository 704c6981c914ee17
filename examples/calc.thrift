// The service of the README's RPC examples: arguments, a declared
// exception, a bool and a void result, a oneway function.
namespace py calc

exception Oops {
  1: string message,
  2: i32 code,
}

service Calc {
  i32 add(1: i32 a, 2: i32 b),
  string fail(1: i32 code) throws (1: Oops oops),
  bool ready(),
  void ping(),
  oneway void note(1: string msg),
}
