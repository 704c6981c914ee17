// Field ids out of declaration order and negative (implicit) ids, in the
// shapes of real IDLs (Cassandra CfDef / KeyRange, Evernote NoteFilter,
// Hive Decimal, Impala TDmlResult): Apache's generators write fields in
// ascending id order (get_sorted_members), whatever the declaration order.
namespace py order

struct Decimal {
  3: required binary unscaled,
  1: required i16 scale,
}

struct KeyRange {
  1: optional binary start_key,
  2: optional binary end_key,
  5: required i32 count = 100,
  3: optional string start_token,
  4: optional string end_token,
  6: optional list<string> row_filter,
}

struct NoteFilter {
  1: optional i32 order,
  2: optional bool ascending,
  3: optional string words,
  4: optional string notebookGuid,
  5: optional list<string> tagGuids,
  6: optional string timeZone,
  7: optional bool inactive,
  8: optional string emphasized,
  9: optional bool includeAllReadableNotebooks,
}

struct Mixed {
  20: bool flag,
  2: list<i16> nums,
  string first,
  7: map<string, i32> m,
  1: KeyRange range,
  -5: i64 old,
  15: double d,
  16: set<i32> s,
  i32 last_implicit,
  12: Decimal dec,
}

struct TDmlResult {
  2: optional map<string, i64> rows_modified,
  1: required map<string, i64> partition_row_counts,
  3: optional i64 num_row_errors,
}
