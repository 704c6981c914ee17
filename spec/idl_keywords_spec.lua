-- Field names that are Thrift keywords, as current Apache Thrift accepts
-- them (THRIFT-5626, 0.18 and later: base and container types, void,
-- namespace, include, cpp_include, cpp_type, oneway, async, uuid, and the
-- definition keywords), and IDL shaped like Apache's NameConflictTest.
local petrel = require "petrel"
local idl = require "petrel.idl"

local FILE = "spec/idl/extensions/name_conflict.thrift"

local KEYWORDS = {
  "i8", "i16", "i32", "i64", "string", "binary", "bool", "byte", "double",
  "map", "list", "set", "void", "namespace", "include", "cpp_include", "cpp_type",
  "oneway", "async", "uuid", "typedef", "struct", "union", "exception", "extends",
  "throws", "service", "enum", "const", "required", "optional",
}

describe("IDL: keywords as field names", function()
  it("accepts every keyword Apache accepts as a field, argument and throws name", function()
    for _, kw in ipairs(KEYWORDS) do
      local src = ("exception E { 1: string %s }\n"
        .. "struct S { 1: i32 %s = 3, 2: optional list<i32> x }\n"
        .. "service V { i32 f(1: i32 %s) throws (1: E %s) }\n"):format(kw, kw, kw, kw)
      local ns, err = petrel.load(src, { text = true, name = kw .. ".thrift" })
      assert.is_table(ns, err)
      local s = ns.S:decode(ns.S:encode({ [kw] = 7 }))
      assert.equal(7, s[kw], kw)
      assert.equal(3, ns.S:decode(ns.S:encode({}))[kw], kw) -- the default
      local fn = ns.V.functions.f
      assert.equal(kw, fn.args:fields()[1].name)
      assert.equal(kw, fn.throws[1].name)
    end
  end)

  it("still reads cpp_type annotations, and still refuses the xsd keywords", function()
    local ns = assert(petrel.load([[struct S {
      1: list<i32> cpp_type "std::vector<int>" a,
      2: set cpp_type "std::set<int>" <i32> b,
      3: i32 cpp_type,
    }]], { text = true }))
    local names = {}
    for i, f in ipairs(ns.S:fields()) do names[i] = f.name end
    assert.same({ "a", "b", "cpp_type" }, names)
    for _, kw in ipairs({ "xsd_all", "xsd_optional", "xsd_nillable", "xsd_attrs", "senum", "slist" }) do
      local res, err = idl.parse(("struct S { 1: i32 %s }"):format(kw), { name = "x.thrift" })
      assert.is_nil(res, kw)
      assert.matches("x.thrift:1:19: ", err)
    end
  end)

  it("loads IDL shaped like Apache's NameConflictTest.thrift", function()
    local ns = assert(petrel.load(FILE))
    local d = ns.delegate:decode(ns.delegate:encode({ partial = "p",
      delegate = { partial = "q" } }))
    assert.equal("q", d.delegate.partial)
    local k = {
      i8 = -1, i16 = 2, i32 = 3, i64 = 4, string = "s", binary = "\0\1", bool = true,
      byte = 5, double = 1.5, map = { a = 1 }, list = { 1, 2 }, set = { 3 },
      void = 6, namespace = "n", include = "i", cpp_include = "c", cpp_type = "t",
      oneway = false, async = true, uuid = "u", typedef = 7, struct = 8, union = 9,
      exception = 10, extends = 11, throws = 12, service = 13, enum = 14, const = 15,
      required = 16, optional = 17, deprecated_cpp_type = { 18 },
    }
    local back = ns.Keywords:decode(ns.Keywords:encode(k))
    for key, v in pairs(k) do
      if type(v) == "table" then assert.same(v, setmetatable(back[key], nil), key)
      else assert.equal(v, back[key], key) end
    end
    local fn = ns.extern.functions.keywords
    local args = {}
    for i, f in ipairs(fn.args:fields()) do args[i] = f.name end
    assert.same({ "string", "map" }, args)
    assert.equal("exception", fn.throws[1].name)
    assert.is_table(ns.extern.functions.event)
    assert.equal(2, ns.Maybe.TRUE)
  end)
end)
