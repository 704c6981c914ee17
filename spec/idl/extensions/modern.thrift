// Constructs the Debian thrift 0.17 compiler rejects, kept out of the Apache
// check: uuid (added in Apache Thrift 0.19), slist and senum (removed).
struct Ids {
  1: uuid id = "00112233-4455-6677-8899-aabbccddeeff",
  2: list<uuid> others,
  3: slist legacy,
}
const uuid NIL = "00000000-0000-0000-0000-000000000000"
senum Flavor { "vanilla", "chocolate" }
