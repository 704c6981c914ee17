// Every Thrift type, requiredness and default-value form that thrift 0.17
// accepts, for interop tests against Python Thrift (tools/pyinterop.py).
// Not supported by thrift 0.17 (so absent): the `uuid` type.
// Python Thrift cannot *decode* sets/map keys whose elements are containers
// (list/set/map are unhashable); tools/pyinterop.py then falls back to its
// spec-driven reader on TBinaryProtocol primitives (see ContainerKeys).

namespace py alltypes
namespace cpp alltypes

typedef i64 Timestamp
typedef list<string> Names
typedef map<string, i32> Counts

const i32 ANSWER = 42
const string GREETING = "hello"

enum Color {
  RED = 1,
  GREEN = 2,
  BLUE = 4,
  NEGATIVE = -3,
  BIG = 2147483647,
}

struct Empty {}

struct Inner {
  1: i32 a,
  2: optional string s,
}

// Recursive: a tree node owning its children.
struct Node {
  1: i32 value,
  2: list<Node> children,
  3: optional map<string, Node> named,
}

union Choice {
  1: i32 num,
  2: string str,
  3: Inner inner,
  4: list<i64> nums,
  5: binary raw,
}

exception Oops {
  1: i32 code,
  2: string message,
  3: optional Inner detail,
}

struct AllTypes {
  // scalars
  1: bool f_bool,
  2: byte f_byte,
  3: i8 f_i8,
  4: i16 f_i16,
  5: i32 f_i32,
  6: i64 f_i64,
  7: double f_double,
  8: string f_string,
  9: binary f_binary,
  10: Inner f_struct,
  11: Color f_enum,
  12: Choice f_union,
  13: Oops f_exception,
  14: Node f_tree,
  15: Timestamp f_typedef,
  16: Empty f_empty,

  // lists of every element kind
  20: list<bool> l_bool,
  21: list<i8> l_i8,
  22: list<i16> l_i16,
  23: list<i32> l_i32,
  24: list<i64> l_i64,
  25: list<double> l_double,
  26: list<string> l_string,
  27: list<binary> l_binary,
  28: list<Inner> l_struct,
  29: list<Color> l_enum,
  30: list<Choice> l_union,
  31: list<list<i32>> l_list,
  32: list<set<string>> l_set,
  33: list<map<string, i64>> l_map,
  34: Names l_typedef,

  // sets of every element kind
  40: set<bool> s_bool,
  41: set<i8> s_i8,
  42: set<i16> s_i16,
  43: set<i32> s_i32,
  44: set<i64> s_i64,
  45: set<double> s_double,
  46: set<string> s_string,
  47: set<binary> s_binary,
  48: set<Inner> s_struct,
  49: set<Color> s_enum,

  // maps: every key kind, every value kind
  60: map<bool, i32> m_bool,
  61: map<i8, string> m_i8,
  62: map<i16, double> m_i16,
  63: map<i32, bool> m_i32,
  64: map<i64, binary> m_i64,
  65: map<double, i16> m_double,
  66: map<string, string> m_string,
  67: map<binary, i64> m_binary,
  68: map<Color, Inner> m_enum,
  69: map<Inner, string> m_struct_key,
  70: map<string, list<set<i32>>> m_nested,
  71: map<i32, map<string, list<double>>> m_nested2,
  72: map<string, Choice> m_union,
  73: Counts m_typedef,
  74: list<map<i64, set<i64>>> l_map_set,

  // requiredness and default values
  80: required i32 r_i32,
  81: required string r_string,
  82: required Inner r_struct,
  83: optional i32 o_i32,
  84: optional string o_string = "dflt",
  85: optional list<i32> o_list,
  86: i32 d_i32 = 42,
  87: string d_string = "hello",
  88: double d_double = 3.5,
  89: list<i32> d_list = [1, 2, 3],
  90: map<string, i32> d_map = {"a": 1, "b": 2},
  91: set<string> d_set = ["x", "y"],
  92: Color d_enum = Color.GREEN,
  93: optional bool o_bool = true,
  94: Inner d_struct = {"a": 7, "s": "seven"},
  95: i64 d_i64 = -9007199254740993,
  96: binary d_binary = "raw",
  97: i8 d_i8 = -128,
  98: i32 d_const = ANSWER,
  255: optional string f_last,
}

// Containers as set elements / map keys: legal Thrift, but Python's
// generated read() cannot build them (unhashable list/set/map).
struct ContainerKeys {
  1: set<list<i32>> s_list,
  2: map<list<string>, i32> m_list_key,
  3: map<set<i32>, string> m_set_key,
  4: set<map<string, i32>> s_map,
}
