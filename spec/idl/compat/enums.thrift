// Enum values in constants and defaults, resolved as Apache's compiler does.
namespace py compat.enums

enum Level { LOW = 1, MID, HIGH = 10 }
enum Other { MID = 50, X }
typedef Level LevelAlias

// For an enum type, PREFIX.NAME is NAME of that enum whatever the prefix:
// Other.MID below is Level.MID (2), not Other.MID (50).
const Level VIA_OTHER = Other.MID
const LevelAlias VIA_ALIAS = LevelAlias.HIGH
const Level BY_NUMBER = 10
// For an integer type, Other.MID is plain scope lookup: 50.
const i32 AS_INT = Other.MID
const list<Level> LEVELS = [Level.LOW, Other.MID, LevelAlias.HIGH]
const map<Level, Other> CROSS = { Level.HIGH: Other.X, Other.MID: Other.MID }

struct Settings {
  1: Level level = Other.HIGH,
  2: LevelAlias alias = 1,
  3: optional list<LevelAlias> history = [LevelAlias.MID, Level.HIGH],
  4: i32 raw = Other.X,
}
