// Container and scalar constant forms the Apache compiler accepts.
namespace py compat.literals

const i32 SEVEN = 7
// a const copied into another type is converted for that type
const double SEVEN_D = SEVEN
const list<double> DOUBLES = [SEVEN, 1.5]
// bool from any integer (non-zero is true)
const bool YES = 2
const bool NO = 0
// sets keep one of equal elements; maps keep the last value of a key
const set<i32> UNIQUE = [3, 1, 3, 2, 1]
const set<list<i32>> UNIQUE_LISTS = [[1, 2], [1, 2], []]
const map<string, i32> LAST_WINS = { "a": 1, "b": 2, "a": 3 }

struct Empties {
  // an empty map literal is an empty list or set, an empty list an empty map
  1: optional set<binary> bins = {},
  2: optional list<i32> nums = {},
  3: optional map<string, i32> counts = [],
  4: set<string> tags = ["x", "y", "x"],
  5: double ratio = 3,
  6: bool flag = -1,
}
const list<Empties> NONE_SET = []
