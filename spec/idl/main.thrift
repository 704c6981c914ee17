# The petrel IDL corpus: main file. Hash comment first.
include "common/shared.thrift"
include "extra.thrift"   // found only through include_dirs
cpp_include "<vector>"

namespace * petrel.all
namespace py petrel.main
namespace cpp petrel

/**
 * Kinds of things.
 *   Indented second line.
 */
enum Kind {
  /** the first */
  A,
  B = 10 (kind.value = "b"),
  C;
} (kind.ann = "yes")

// ---- consts of every form ----
const i32 DEC = 42
const i64 HEXC = 0x1F
const i32 NEG = -17
const i32 PLUS = +5
const i16 SMALL = -0x10
const i64 BIG = 1099511627776
const double D1 = 3.5
const double D2 = -1.25e3
const double D3 = 1E-2
const double D4 = 7
const string S1 = "double \"quoted\"\tand\\back"
const string S2 = 'single \'quoted\' "x"'
const bool T = true
const bool F = 0
const list<i32> L = [1, 2; 3 4]
const set<string> SET = ["a", "b"]
const map<string, i32> M = {"one": 1, "two": 2,}
const map<i32, list<string>> ML = {1: ["x"], 2: []}
const shared.Status ST = shared.Status.OK
const i32 REF = DEC
const i32 SREF = shared.LIMIT
const i32 ENUMREF = shared.Status.PARTIAL
const Kind KREF = Kind.B
const shared.Inner INNER = {"id": 7, "label": "lbl"}
const list<shared.Inner> INNERS = [{"id": 1}, {"id": 2, "label": "two"}];
const extra.Color COLOR = extra.Color.RED,
const map<Kind, shared.Status> KMAP = {Kind.A: shared.Status.OK, Kind.C: 5}

typedef list<shared.Inner> Inners
typedef shared.Id LocalAlias
typedef map<string, string> (cpp.template = "std::map") StrMap (td.ann = "t")

/// Triple-slash doc,
/// second line.
struct Everything {
  /** the id */
  1: required i64 id;
  2: optional string name = "anon" (field.ann = "f"),
  3: list<i32> (cpp.template = "std::vector") nums,
  4: map<string, list<i64>> nested
  5: set<Kind> kinds = [Kind.A, Kind.C]
  6: Kind kind = 10   # an integer default for an enum field
  7: shared.Status status = shared.Status.FAILED
  8: shared.Base base
  10: byte b
  11: i8 i = -128
  12: binary bin = "raw"
  13: double ratio = 1
  14: bool flag = true
  15: shared.Inner inner = {"id": 3}
  16: list<map<string, i32> (elem.ann = "y")> deep
  17: extra.Extra ex
  18: shared.Id sid = shared.LIMIT
  19: LocalAlias alias
  20: StrMap strs
  21: Inners inners = shared.DEFAULT_INNERS
  22: Everything me
} (struct.ann = "s", bare)

struct Implicit {
  i32 a,
  string b
  5: i32 c,
  optional i32 d
}

union Choice {
  1: i32 num,
  2: string text = "t",
  3: shared.Inner inner,
}

exception MainError {
  1: string msg,
  2: i32 code = DEC,
} (exc.ann = "e")

/** Main service. */
service MainService extends shared.BaseService {
  /// echo doc
  Everything echo(1: Everything e, 2: i32 times = 3)
    throws (1: MainError err, 2: shared.SharedError serr) (fn.ann = "x"),
  oneway void fire(1: string what);
  Inners list_inners(i32 limit, 3: Kind k = Kind.C)
  void nothing()
  map<string, Choice> pick(1: list<Choice> choices) throws (1: MainError err)
} (svc.ann = "svc")

service Child extends MainService {}
