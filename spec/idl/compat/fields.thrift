// Field ids and names as Apache's compiler (without --allow-neg-keys) sees them.
namespace py compat.fields

// Explicit ids <= 0 are replaced by the next implicit id (-1, -2, ...).
struct NonPositive {
  0: i32 zero,
  i32 implicit,
  -7: i32 negative,
  3: i32 three,
  -1: i32 again,
}

// "uuid" is not reserved by Apache 0.17: a common field and method name.
struct Named {
  1: string uuid,
  2: i64 id,
}

enum Kind { uuid, other }

exception Failed { 1: string uuid }

service Names {
  Named uuid(1: string uuid, 0: i32 flags) throws (0: Failed failed),
}
