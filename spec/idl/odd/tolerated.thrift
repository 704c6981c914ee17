// Legacy and generator-specific syntax that Apache still accepts.
namespace py tolerated (ns.ann = "n")
cpp_include "<map>"

struct Xsd xsd_all {
  1: i32 a xsd_optional xsd_nillable xsd_attrs { 1: i32 attr },
  2: map cpp_type "std::unordered_map<int,int>" <i32, i32> m,
  3: list<i32> cpp_type "std::deque<int>" l,
  4: set cpp_type "std::set<int>" <i32> s,
  5: Xsd &ref,
}

service Legacy {
  async void old(1: i32 x)
}
