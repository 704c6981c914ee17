// ThriftTest for petrel's cross-language tests.
//
// Written for petrel to be wire-compatible with Apache Thrift's ThriftTest
// interface (test/ThriftTest.thrift of Apache Thrift 0.17), the service that
// Apache's cross-language test clients and servers speak: the same service
// names (ThriftTest, SecondService), method names, argument and field ids and
// types, exception types and enum values. Apache's test client and server
// (and tools/crossclient.py, tools/crossserver.py,
// examples/thrift_test_server.lua, examples/thrift_test_client.lua) can
// therefore talk to each other over any protocol both sides speak.
//
// Left out on purpose: testUuid (Apache 0.19's uuid type: the 0.17 compiler
// and Python library used here have no uuid) and the structs that no method
// uses except as the versioning tests of single-language suites.

namespace py ThriftTest
namespace lua ThriftTest

// Values chosen so that the numbering has gaps (3 -> 5 -> 8).
enum Numberz {
  ONE = 1,
  TWO,
  THREE,
  FIVE = 5,
  SIX,
  EIGHT = 8,
}

const Numberz myNumberz = Numberz.ONE

typedef i64 UserId

struct Bonk {
  1: string message,
  2: i32 type,
}

typedef map<string, Bonk> MapType

struct Bools {
  1: bool im_true,
  2: bool im_false,
}

// Field ids with gaps: decoders must follow ids, not positions.
struct Xtruct {
  1: string string_thing,
  4: i8 byte_thing,
  9: i32 i32_thing,
  11: i64 i64_thing,
}

struct Xtruct2 {
  1: i8 byte_thing,
  2: Xtruct struct_thing,
  3: i32 i32_thing,
}

struct Xtruct3 {
  1: string string_thing,
  4: i32 changed,
  9: i32 i32_thing,
  11: i64 i64_thing,
}

// python.immutable makes the generated Python class hashable, so that it
// can be a set element or a map key (as in CrazyNesting).
struct Insanity {
  1: map<Numberz, UserId> userMap,
  2: list<Xtruct> xtructs,
} (python.immutable = "")

struct CrazyNesting {
  1: string string_field,
  2: optional set<Insanity> set_field,
  3: required list<map<set<i32> (python.immutable = ""), map<i32, set<list<map<Insanity, string> (python.immutable = "")> (python.immutable = "")>>>> list_field,
  4: binary binary_field,
}

exception Xception {
  1: i32 errorCode,
  2: string message,
}

exception Xception2 {
  1: i32 errorCode,
  2: Xtruct struct_thing,
}

struct EmptyStruct {}

struct OneField {
  1: EmptyStruct field,
}

// Every method of ThriftTest echoes or builds a value of one kind; what each
// server returns is written next to it (and implemented the same way by
// examples/thrift_test_server.lua and tools/crossserver.py).
service ThriftTest {
  void testVoid(),                                   // nothing
  string testString(1: string thing),                // thing
  bool testBool(1: bool thing),                      // thing
  i8 testByte(1: i8 thing),                          // thing
  i32 testI32(1: i32 thing),                         // thing
  i64 testI64(1: i64 thing),                         // thing
  double testDouble(1: double thing),                // thing
  binary testBinary(1: binary thing),                // thing
  Xtruct testStruct(1: Xtruct thing),                // thing
  Xtruct2 testNest(1: Xtruct2 thing),                // thing
  map<i32, i32> testMap(1: map<i32, i32> thing),     // thing
  map<string, string> testStringMap(1: map<string, string> thing), // thing
  set<i32> testSet(1: set<i32> thing),               // thing
  list<i32> testList(1: list<i32> thing),            // thing
  Numberz testEnum(1: Numberz thing),                // thing
  UserId testTypedef(1: UserId thing),               // thing

  // {-4: {-4: -4, -3: -3, -2: -2, -1: -1}, 4: {1: 1, 2: 2, 3: 3, 4: 4}}
  map<i32, map<i32, i32>> testMapMap(1: i32 hello),

  // {1: {TWO: argument, THREE: argument}, 2: {SIX: Insanity{}}}
  map<UserId, map<Numberz, Insanity>> testInsanity(1: Insanity argument),

  // Xtruct{string_thing = "Hello2", byte_thing = arg0, i32_thing = arg1,
  // i64_thing = arg2}
  Xtruct testMulti(1: i8 arg0, 2: i32 arg1, 3: i64 arg2,
                   4: map<i16, string> arg3, 5: Numberz arg4, 6: UserId arg5),

  // "Xception": throws Xception{errorCode = 1001, message = arg};
  // "TException": fails with a TApplicationException; anything else returns.
  void testException(1: string arg) throws (1: Xception err1),

  // "Xception": Xception{1001, "This is an Xception"}; "Xception2":
  // Xception2{2002, Xtruct{string_thing = "This is an Xception2"}};
  // otherwise Xtruct{string_thing = arg1}.
  Xtruct testMultiException(1: string arg0, 2: string arg1)
    throws (1: Xception err1, 2: Xception2 err2),

  // Sleeps secondsToSleep seconds; the caller does not wait for it.
  oneway void testOneway(1: i32 secondsToSleep),
}

// The second service of a multiplexed server.
service SecondService {
  string secondtestString(1: string thing),          // 'testString("' thing '")'
}
