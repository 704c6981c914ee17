// The service behind examples/nginx: nginx takes JSON, calls Calc over
// Thrift (petrel.resty), returns JSON. upstream.lua serves it with petrel.
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
  string fail(1: i32 code) throws (1: Oops oops),
  list<Item> many(1: i32 n, 2: string prefix),
}
