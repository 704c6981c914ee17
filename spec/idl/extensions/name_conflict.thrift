// Names that collide with target-language keywords, with their own types,
// and (since Apache 0.18, THRIFT-5626) with Thrift's own keywords: field
// names may be base types, container types and most other keywords.
// Apache 0.17 rejects the keyword field names, so this file is not in the
// list checked against the installed compiler.

struct using {
  1: double single
  2: double integer
}

struct delegate {
  1: string partial
  2: delegate delegate
}

struct get {
  1: bool sbyte
}

struct partial {
  1: using using
}

enum Maybe { JUST = 1, TRUE = 2, FALSE = 3 }
enum Either { LEFT = 1, RIGHT = 2 }

struct foldr { 1: string id }
struct of { 1: string let, 2: string where }
struct ofOf { 1: of Of }

struct ClassAndProp {
  1: bool ClassAndProp
  2: bool ClassAndProp_
  3: bool ClassAndProp__
  4: bool ClassAndProper
}

struct Nested {
  1: ClassAndProp ClassAndProp
  2: Nested Nested
  3: partial partial
}

exception Problem_ {
  1: bool problem
  2: bool Problem
}

// Thrift keywords as field names
struct Keywords {
  1: i8 i8
  2: i16 i16
  3: i32 i32
  4: i64 i64
  5: string string
  6: binary binary
  7: bool bool
  8: byte byte
  9: double double
  10: map<string, i32> map
  11: list<i32> list
  12: set<i32> set
  13: i32 void
  14: string namespace
  15: string include
  16: string cpp_include
  17: string cpp_type
  18: bool oneway
  19: bool async
  20: string uuid
  21: i32 typedef
  22: i32 struct
  23: i32 union
  24: i32 exception
  25: i32 extends
  26: i32 throws
  27: i32 service
  28: i32 enum
  29: i32 const
  30: optional i32 required
  31: required i32 optional
  32: list<i32> cpp_type "std::vector<int32_t>" deprecated_cpp_type
}

service extern {
  delegate event(1: partial get, 2: i32 i32, 3: string oneway)
  void Foo(1: Nested Foo_args) throws (1: Problem_ Foo_result)
  Keywords keywords(1: Keywords string, 2: map<string, i32> map) throws (1: Problem_ exception)
}

service qualified {
  Maybe maybe(1: Maybe foldr)
  Either either(1: foldr of)
}
