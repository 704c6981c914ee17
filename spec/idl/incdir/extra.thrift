# Found only through include_dirs (spec/idl/incdir), never relative to main.
enum Color { RED = 1, GREEN = 2 }

struct Extra {
  1: Color color = Color.GREEN
}
