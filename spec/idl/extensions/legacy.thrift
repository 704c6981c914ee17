// Forms older IDL uses that the Debian thrift 0.17 compiler rejects, kept out
// of the Apache check: enum values without their enum's name (older
// compilers accepted them where the enum type is known) and uuid constants
// in braces or upper case (accepted by Apache Thrift 0.19+).
enum Consistency { ZERO = 0, ONE = 1, QUORUM = 2 }

struct Read {
  1: Consistency level = QUORUM,
  2: list<Consistency> fallbacks = [ONE, ZERO],
}

service Store {
  binary get(1: binary key, 2: Consistency level = ONE),
}

const Consistency DEFAULT_LEVEL = ONE
const uuid BRACED = "{00112233-4455-6677-8899-AABBCCDDEEFF}"
const uuid UPPER = "00000000-4444-CCCC-FFFF-0123456789AB"
