// Included by examples/echo.thrift.
struct Base {
  1: string trace,
  2: optional map<string, string> extra,
}

service Service {
  string version(),
}
