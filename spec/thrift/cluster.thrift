// Clients over many instances (spec/balance_spec.lua, spec/cluster_spec.lua,
// bench/cluster.lua): replies name the instance that answered.
namespace py cluster

service Where {
  // the answering instance's name (idempotent: safe to retry anywhere)
  string where(1: i64 n) (idempotent = "true"),
  // n + 1, counted by the instance (not idempotent)
  i64 bump(1: i64 n),
  // answers after ms milliseconds
  string slow(1: i32 ms) (idempotent = "true"),
}
