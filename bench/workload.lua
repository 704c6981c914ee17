-- The benchmark workload of bench/workload.thrift written as petrel schema
-- tables: a fixture of the demo, the specs, the benches and the fuzzer, not
-- part of the installed library. From the repository root: require "bench.workload".
local petrel = require "petrel"

return petrel.schema {
  Ano = petrel.struct { {1, "Num", "i64"} },
  MyTest = petrel.struct {
    {1, "Num", "i64"},
    {2, "Ano", "Ano"},
    {3, "Nums", "list<i64>"},
  },
  Base = petrel.struct {
    {1, "LogID", "string", default = ""},
    {2, "Caller", "string", default = ""},
    {3, "Addr", "string", default = ""},
    {4, "Client", "string", default = ""},
    {5, "Extra", "map<string,string>", "optional"},
  },
  Status = petrel.enum { OK = 0, PARTIAL = 1, FAILED = 2 },
  Item = petrel.struct {
    {1, "id", "i64"},
    {2, "title", "string"},
    {3, "score", "double"},
    {4, "tags", "list<string>"},
    {5, "active", "bool"},
    {6, "rank", "i32"},
    {7, "thumb", "binary", "optional"},
  },
  Request = petrel.struct {
    {1, "user_id", "i64"},
    {2, "query", "string"},
    {3, "item_ids", "list<i64>"},
    {4, "items", "list<Item>"},
    {5, "attrs", "map<string,string>"},
    {6, "flags", "set<i32>"},
    {7, "status", "Status"},
    {8, "shard", "i16"},
    {9, "priority", "byte"},
    {255, "base", "Base"},
  },
  Blob = petrel.struct { {1, "name", "string"}, {2, "data", "binary"} },
  Vectors = petrel.struct {
    {1, "i32s", "list<i32>"},
    {2, "i64s", "list<i64>"},
    {3, "f64s", "list<double>"},
  },
  Echo = petrel.service {
    echo = { args = { {1, "req", "Request"} }, result = "Request" },
    fire = { args = { {1, "req", "Request"} }, oneway = true },
    big = { args = { {1, "req", "MyTest"} }, result = "MyTest" },
    blob = { args = { {1, "req", "Blob"} }, result = "Blob" },
    vectors = { args = { {1, "req", "Vectors"} }, result = "Vectors" },
  },
}
