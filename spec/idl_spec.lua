-- petrel.idl: the run-time Thrift IDL loader, on Lua 5.4 and LuaJIT.
-- Needs only lua/petrel/idl.lua (not the C module). Run from the repo root.
local idl = require "petrel.idl"

local WORKLOAD = "bench/workload.thrift"
local CORPUS = "spec/idl"
local INCDIR = CORPUS .. "/incdir"
local THRIFT = "/usr/bin/thrift"

-- Load a corpus file with the corpus include dir; fails the test on error.
local function load(path, opts)
  local res, err = idl.load(path, opts or { include_dirs = { INCDIR } })
  assert(res, err)
  return res
end

-- Field of a def by name.
local function field(def, name)
  for _, f in ipairs(def.fields) do
    if f.name == name then return f end
  end
  error("no field " .. name)
end

-- Compact field tuple {id, name, type, required} for whole-list asserts.
local function fields_of(list)
  local out = {}
  for i, f in ipairs(list) do out[i] = { f.id, f.name, f.type, f.required } end
  return out
end

-- Make a fresh temporary directory; returns its path.
local function tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p '" .. p .. "'"))
  return p
end

-- Write text to path.
local function write(path, text)
  local fh = assert(io.open(path, "wb"))
  fh:write(text)
  fh:close()
end

-- Read a whole file.
local function read(path)
  local fh = assert(io.open(path, "rb"))
  local s = fh:read("*a")
  fh:close()
  return s
end

-- os.execute success across 5.1 (status number) and 5.2+ (true/nil).
local function exec_ok(cmd)
  local a, _, c = os.execute(cmd)
  if type(a) == "number" then return a == 0 end
  return a == true and c == 0
end

describe("petrel.idl", function()
  describe("the shared bench workload", function()
    local r
    setup(function() r = load(WORKLOAD) end)

    it("records namespaces, no includes, the path", function()
      assert.same({ cpp = "bench", py = "bench", js = "bench" }, r.namespaces)
      assert.same({}, r.includes)
      assert.equal(WORKLOAD, r.file)
    end)

    it("has exactly the expected definitions", function()
      local names = {}
      for name, def in pairs(r.defs) do names[#names + 1] = name .. ":" .. def.kind end
      table.sort(names)
      assert.same({ "Ano:struct", "Base:struct", "Blob:struct", "Echo:service",
        "Item:struct", "MyTest:struct", "Request:struct", "Status:enum",
        "Vectors:struct" }, names)
      assert.equal(r.defs.Request, r.types.Request)
      assert.equal(r.defs.Echo, r.services.Echo)
      assert.is_nil(r.types.Echo)
    end)

    it("parses every struct field", function()
      local d = r.defs
      assert.same({ { 1, "Num", "i64", "default" } }, fields_of(d.Ano.fields))
      assert.same({ { 1, "Num", "i64", "default" }, { 2, "Ano", "Ano", "default" },
        { 3, "Nums", "list<i64>", "default" } }, fields_of(d.MyTest.fields))
      assert.same({ { 1, "LogID", "string", "default" }, { 2, "Caller", "string", "default" },
        { 3, "Addr", "string", "default" }, { 4, "Client", "string", "default" },
        { 5, "Extra", "map<string,string>", "optional" } }, fields_of(d.Base.fields))
      for i = 1, 4 do assert.equal("", d.Base.fields[i].default) end
      assert.is_nil(d.Base.fields[5].default)
      assert.same({ { 1, "id", "i64", "default" }, { 2, "title", "string", "default" },
        { 3, "score", "double", "default" }, { 4, "tags", "list<string>", "default" },
        { 5, "active", "bool", "default" }, { 6, "rank", "i32", "default" },
        { 7, "thumb", "binary", "optional" } }, fields_of(d.Item.fields))
      assert.same({ { 1, "user_id", "i64", "default" }, { 2, "query", "string", "default" },
        { 3, "item_ids", "list<i64>", "default" }, { 4, "items", "list<Item>", "default" },
        { 5, "attrs", "map<string,string>", "default" }, { 6, "flags", "set<i32>", "default" },
        { 7, "status", "Status", "default" }, { 8, "shard", "i16", "default" },
        { 9, "priority", "byte", "default" }, { 255, "base", "Base", "default" } },
        fields_of(d.Request.fields))
      assert.same({ { 1, "name", "string", "default" }, { 2, "data", "binary", "default" } },
        fields_of(d.Blob.fields))
      assert.same({ { 1, "i32s", "list<i32>", "default" }, { 2, "i64s", "list<i64>", "default" },
        { 3, "f64s", "list<double>", "default" } }, fields_of(d.Vectors.fields))
      for _, name in ipairs { "Ano", "MyTest", "Base", "Item", "Request", "Blob", "Vectors" } do
        assert.equal("struct", d[name].kind)
      end
    end)

    it("parses the enum", function()
      assert.same({ kind = "enum", values = { OK = 0, PARTIAL = 1, FAILED = 2 },
        order = { "OK", "PARTIAL", "FAILED" } }, r.defs.Status)
    end)

    it("parses the service", function()
      local s = r.defs.Echo
      assert.equal("service", s.kind)
      assert.is_nil(s.extends)
      assert.same({ "echo", "fire", "big", "blob", "vectors" }, s.order)
      local expect = { echo = "Request", fire = "void", big = "MyTest", blob = "Blob",
                       vectors = "Vectors" }
      for name, result in pairs(expect) do
        local fn = s.functions[name]
        assert.equal(result, fn.result)
        assert.equal(name == "fire", fn.oneway)
        assert.same({}, fn.throws)
        local argt = result == "void" and "Request" or result
        assert.same({ { 1, "req", argt, "default" } }, fields_of(fn.args))
      end
    end)
  end)

  describe("the corpus main file", function()
    local r, d
    setup(function() r = load(CORPUS .. "/main.thrift"); d = r.defs end)

    it("records headers", function()
      assert.same({ ["*"] = "petrel.all", py = "petrel.main", cpp = "petrel" }, r.namespaces)
      assert.same({ "common/shared.thrift", "extra.thrift" }, r.includes)
      assert.same({ "<vector>" }, r.cpp_includes)
    end)

    it("flattens included files with qualified names", function()
      for _, n in ipairs { "shared.Status", "shared.Id", "shared.Inner", "shared.Base",
        "shared.SharedError", "shared.LIMIT", "shared.BaseService",
        "base_types.Stamp", "base_types.PI", "extra.Color", "extra.Extra" } do
        assert.is_table(d[n], n)
      end
      assert.is_nil(d.Status)
      assert.is_nil(d.Inner)
      -- references inside included files are rewritten
      assert.equal("shared.Id", field(d["shared.Inner"], "id").type)
      assert.same({ { 1, "inner", "shared.Inner", "default" },
        { 2, "status", "shared.Status", "default" },
        { 3, "stamp", "base_types.Stamp", "default" } }, fields_of(d["shared.Base"].fields))
      assert.equal(5, field(d["shared.Base"], "status").default)
      assert.equal("extra.Color", field(d["extra.Extra"], "color").type)
      assert.equal(2, field(d["extra.Extra"], "color").default)
      assert.same({ kind = "typedef", type = "i64" }, d["shared.Id"])
      assert.equal("shared.Status", d["shared.DEFAULT_STATUS"].type)
      assert.equal(6, d["shared.DEFAULT_STATUS"].value)
      assert.equal("list<shared.Inner>", d["shared.DEFAULT_INNERS"].type)
      assert.same({ { id = 100 } }, d["shared.DEFAULT_INNERS"].value)
      assert.same({ kind = "const", type = "double", value = 3.14159 }, d["base_types.PI"])
      assert.equal(d["shared.Base"], r.types["shared.Base"])
      assert.equal(d["shared.LIMIT"], r.consts["shared.LIMIT"])
      assert.equal(d["shared.BaseService"], r.services["shared.BaseService"])
    end)

    it("parses enums with implicit, hex and negative values", function()
      assert.same({ OK = 0, PARTIAL = 5, FAILED = 6, NEG = -16, HEX = 32 },
        d["shared.Status"].values)
      assert.same({ "OK", "PARTIAL", "FAILED", "NEG", "HEX" }, d["shared.Status"].order)
      assert.equal("Shared status.", d["shared.Status"].doc)
      local k = d.Kind
      assert.same({ A = 0, B = 10, C = 11 }, k.values)
      assert.same({ "A", "B", "C" }, k.order)
      assert.same({ ["kind.ann"] = "yes" }, k.annotations)
      assert.same({ B = { ["kind.value"] = "b" } }, k.value_annotations)
      assert.same({ A = "the first" }, k.value_docs)
      -- cleaned as Apache does: the relative indentation is kept
      assert.equal("Kinds of things.\n  Indented second line.", k.doc)
    end)

    it("evaluates consts of every form", function()
      local function v(name) return d[name].value end
      assert.equal(42, v "DEC")
      assert.equal(31, v "HEXC")
      assert.equal(-17, v "NEG")
      assert.equal(5, v "PLUS")
      assert.equal(-16, v "SMALL")
      assert.equal(1099511627776, v "BIG")
      assert.equal(3.5, v "D1")
      assert.equal(-1250, v "D2")
      assert.equal(0.01, v "D3")
      assert.equal(7, v "D4")
      if math.type then
        assert.equal("integer", math.type(v "DEC"))
        assert.equal("float", math.type(v "D4"))
      end
      assert.equal('double "quoted"\tand\\back', v "S1")
      assert.equal([[single 'quoted' "x"]], v "S2")
      assert.equal(true, v "T")
      assert.equal(false, v "F")
      assert.same({ 1, 2, 3, 4 }, v "L")
      assert.same({ "a", "b" }, v "SET")
      assert.same({ one = 1, two = 2 }, v "M")
      assert.same({ [1] = { "x" }, [2] = {} }, v "ML")
      assert.equal(0, v "ST")
      assert.equal(42, v "REF")
      assert.equal(100, v "SREF")
      assert.equal(5, v "ENUMREF")
      assert.equal(10, v "KREF")
      assert.same({ id = 7, label = "lbl" }, v "INNER")
      assert.same({ { id = 1 }, { id = 2, label = "two" } }, v "INNERS")
      assert.equal(1, v "COLOR")
      assert.same({ [0] = 0, [11] = 5 }, v "KMAP")
      assert.equal("map<Kind,shared.Status>", d.KMAP.type)
      assert.equal("list<shared.Inner>", d.INNERS.type)
      assert.equal("map<i32,list<string>>", d.ML.type)
      assert.equal("set<string>", d.SET.type)
      assert.equal("extra.Color", d.COLOR.type)
      for name, def in pairs(d) do
        if def.kind == "const" then assert.equal(def, r.consts[name]) end
      end
    end)

    it("parses typedefs with annotations", function()
      assert.same({ kind = "typedef", type = "list<shared.Inner>" }, d.Inners)
      assert.same({ kind = "typedef", type = "shared.Id" }, d.LocalAlias)
      assert.same({ kind = "typedef", type = "map<string,string>",
        type_annotations = { ["cpp.template"] = "std::map" },
        annotations = { ["td.ann"] = "t" } }, d.StrMap)
    end)

    it("parses a struct with every field form", function()
      local e = d.Everything
      assert.equal("struct", e.kind)
      assert.equal("Triple-slash doc,\nsecond line.", e.doc)
      assert.same({ ["struct.ann"] = "s", bare = "1" }, e.annotations)
      assert.same({
        { 1, "id", "i64", "required" }, { 2, "name", "string", "optional" },
        { 3, "nums", "list<i32>", "default" }, { 4, "nested", "map<string,list<i64>>", "default" },
        { 5, "kinds", "set<Kind>", "default" }, { 6, "kind", "Kind", "default" },
        { 7, "status", "shared.Status", "default" }, { 8, "base", "shared.Base", "default" },
        { 10, "b", "byte", "default" }, { 11, "i", "i8", "default" },
        { 12, "bin", "binary", "default" }, { 13, "ratio", "double", "default" },
        { 14, "flag", "bool", "default" }, { 15, "inner", "shared.Inner", "default" },
        { 16, "deep", "list<map<string,i32>>", "default" }, { 17, "ex", "extra.Extra", "default" },
        { 18, "sid", "shared.Id", "default" }, { 19, "alias", "LocalAlias", "default" },
        { 20, "strs", "StrMap", "default" }, { 21, "inners", "Inners", "default" },
        { 22, "me", "Everything", "default" },
      }, fields_of(e.fields))
      assert.equal("the id", field(e, "id").doc)
      assert.equal("anon", field(e, "name").default)
      assert.same({ ["field.ann"] = "f" }, field(e, "name").annotations)
      assert.same({ ["cpp.template"] = "std::vector" }, field(e, "nums").type_annotations)
      assert.same({ 0, 11 }, field(e, "kinds").default)
      assert.equal(10, field(e, "kind").default)
      assert.equal(6, field(e, "status").default)
      assert.equal(-128, field(e, "i").default)
      assert.equal("raw", field(e, "bin").default)
      assert.equal(1, field(e, "ratio").default)
      assert.equal(true, field(e, "flag").default)
      assert.same({ id = 3 }, field(e, "inner").default)
      assert.equal(100, field(e, "sid").default)
      assert.same({ { id = 100 } }, field(e, "inners").default)
      for _, n in ipairs { "nums", "nested", "base", "b", "deep", "me" } do
        assert.is_nil(field(e, n).default, n)
      end
    end)

    it("gives fields without ids Apache's implicit negative ids", function()
      assert.same({ { -1, "a", "i32", "default" }, { -2, "b", "string", "default" },
        { 5, "c", "i32", "default" }, { -3, "d", "i32", "optional" } },
        fields_of(d.Implicit.fields))
    end)

    it("parses unions (members optional) and exceptions", function()
      assert.equal("union", d.Choice.kind)
      assert.same({ { 1, "num", "i32", "optional" }, { 2, "text", "string", "optional" },
        { 3, "inner", "shared.Inner", "optional" } }, fields_of(d.Choice.fields))
      assert.equal("t", d.Choice.fields[2].default)
      assert.equal("exception", d.MainError.kind)
      assert.same({ { 1, "msg", "string", "default" }, { 2, "code", "i32", "default" } },
        fields_of(d.MainError.fields))
      assert.equal(42, d.MainError.fields[2].default)
      assert.same({ ["exc.ann"] = "e" }, d.MainError.annotations)
      assert.equal("exception", d["shared.SharedError"].kind)
      assert.equal(6, d["shared.SharedError"].fields[2].default)
    end)

    it("parses services with extends across files", function()
      local s = d.MainService
      assert.equal("shared.BaseService", s.extends)
      assert.equal("Main service.", s.doc)
      assert.same({ ["svc.ann"] = "svc" }, s.annotations)
      assert.same({ "echo", "fire", "list_inners", "nothing", "pick" }, s.order)
      local echo = s.functions.echo
      assert.equal("Everything", echo.result)
      assert.equal(false, echo.oneway)
      assert.equal("echo doc", echo.doc)
      assert.same({ ["fn.ann"] = "x" }, echo.annotations)
      assert.same({ { 1, "e", "Everything", "default" }, { 2, "times", "i32", "default" } },
        fields_of(echo.args))
      assert.equal(3, echo.args[2].default)
      assert.same({ { 1, "err", "MainError", "default" },
        { 2, "serr", "shared.SharedError", "default" } }, fields_of(echo.throws))
      local fire = s.functions.fire
      assert.equal("void", fire.result)
      assert.equal(true, fire.oneway)
      assert.same({ { 1, "what", "string", "default" } }, fields_of(fire.args))
      local li = s.functions.list_inners
      assert.equal("Inners", li.result)
      assert.same({ { -1, "limit", "i32", "default" }, { 3, "k", "Kind", "default" } },
        fields_of(li.args))
      assert.equal(11, li.args[2].default)
      assert.same({}, s.functions.nothing.args)
      assert.equal("void", s.functions.nothing.result)
      assert.equal("map<string,Choice>", s.functions.pick.result)
      assert.same({ { 1, "choices", "list<Choice>", "default" } }, fields_of(s.functions.pick.args))
      assert.same({ kind = "service", extends = "MainService", functions = {}, order = {} },
        d.Child)
      local b = d["shared.BaseService"]
      assert.same({ "ping", "reset" }, b.order)
      assert.equal("string", b.functions.ping.result)
      assert.same({ { 1, "err", "shared.SharedError", "default" } },
        fields_of(b.functions.reset.throws))
    end)

    it("finds includes only through include_dirs when not relative", function()
      local res, err = idl.load(CORPUS .. "/main.thrift")
      assert.is_nil(res)
      assert.matches("main.thrift:3:9: cannot find include file 'extra.thrift'", err, 1, true)
    end)

    it("parses the same text through M.parse with opts.path", function()
      local text = read(CORPUS .. "/main.thrift")
      local res = assert(idl.parse(text, { path = CORPUS .. "/main.thrift",
                                           include_dirs = { INCDIR } }))
      assert.same(r.defs, res.defs)
      local _, err = idl.parse(text, { name = "x.thrift", include_dirs = { INCDIR } })
      assert.matches("^x%.thrift:2:9: cannot find include file 'common/shared.thrift'", err)
    end)
  end)

  describe("the odd-formatting corpus", function()
    it("parses everything on one line with no separators", function()
      local d = load(CORPUS .. "/odd/oneline.thrift").defs
      assert.same({ { 1, "a", "i32", "default" }, { 2, "b", "string", "default" },
        { 3, "c", "list<i32>", "default" } }, fields_of(d.OneLine.fields))
      assert.equal("x", d.OneLine.fields[2].default)
      assert.same({ 1, 2 }, d.OneLine.fields[3].default)
      assert.same({ X = 0, Y = 3, Z = 4 }, d.E.values)
      assert.same({ x = 0, z = 4 }, d.EM.value)
      assert.same({ "f", "g" }, d.S.order)
      assert.equal(3, d.S.functions.f.args[2].default)
      assert.equal(true, d.S.functions.g.oneway)
    end)

    it("parses CRLF line ends, tabs, and every comment style", function()
      local d = load(CORPUS .. "/odd/crlf.thrift").defs
      assert.same({ { 1, "x", "i32", "default" }, { 2, "m", "map<string,list<i64>>", "optional" } },
        fields_of(d.Spaced.fields))
      assert.same({ kind = "typedef", type = "i32" }, d.Num)
      assert.same({ kind = "const", type = "Num", value = 1, doc = "CRLF doc" }, d.N)
      assert.equal(1, d.After.fields[1].default)
    end)

    it("tolerates xsd_*, cpp_type, '&' and async", function()
      local r = load(CORPUS .. "/odd/tolerated.thrift")
      local d = r.defs
      assert.same({ py = "tolerated" }, r.namespaces)
      assert.same({ { 1, "a", "i32", "default" }, { 2, "m", "map<i32,i32>", "default" },
        { 3, "l", "list<i32>", "default" }, { 4, "s", "set<i32>", "default" },
        { 5, "ref", "Xsd", "default" } }, fields_of(d.Xsd.fields))
      assert.equal(true, d.Legacy.functions.old.oneway)
    end)

    it("parses uuid, slist and senum (outside Apache 0.17)", function()
      local d = load(CORPUS .. "/extensions/modern.thrift").defs
      assert.same({ { 1, "id", "uuid", "default" }, { 2, "others", "list<uuid>", "default" },
        { 3, "legacy", "string", "default" } }, fields_of(d.Ids.fields))
      assert.equal("00112233-4455-6677-8899-aabbccddeeff", d.Ids.fields[1].default)
      assert.equal("00000000-0000-0000-0000-000000000000", d.NIL.value)
      assert.same({ kind = "typedef", type = "string", senum = { "vanilla", "chocolate" } },
        d.Flavor)
    end)
  end)

  describe("the compat corpus (constructs found in real-world IDL)", function()
    local COMPAT = CORPUS .. "/compat"

    it("resolves enum values in consts and defaults as Apache does", function()
      local d = load(COMPAT .. "/enums.thrift").defs
      assert.same({ LOW = 1, MID = 2, HIGH = 10 }, d.Level.values)
      assert.equal(2, d.VIA_OTHER.value)      -- Other.MID as a Level: Level.MID
      assert.equal(10, d.VIA_ALIAS.value)     -- through the typedef's name
      assert.equal(10, d.BY_NUMBER.value)
      assert.equal(50, d.AS_INT.value)        -- an i32: plain Other.MID
      assert.same({ 1, 2, 10 }, d.LEVELS.value)
      assert.same({ [10] = 51, [2] = 50 }, d.CROSS.value)
      local s = d.Settings
      assert.equal(10, field(s, "level").default)
      assert.equal(1, field(s, "alias").default)
      assert.same({ 2, 10 }, field(s, "history").default)
      assert.equal(51, field(s, "raw").default)
    end)

    it("converts literals as Apache does", function()
      local d = load(COMPAT .. "/literals.thrift").defs
      assert.equal(7.0, d.SEVEN_D.value)
      if math.type then
        assert.equal("float", math.type(d.SEVEN_D.value))
        assert.equal("float", math.type(d.DOUBLES.value[1]))
      end
      assert.same({ 7.0, 1.5 }, d.DOUBLES.value)
      assert.equal(true, d.YES.value)
      assert.equal(false, d.NO.value)
      assert.same({ 3, 1, 2 }, d.UNIQUE.value)
      assert.same({ { 1, 2 }, {} }, d.UNIQUE_LISTS.value)
      assert.same({ a = 3, b = 2 }, d.LAST_WINS.value)
      local e = d.Empties
      assert.same({}, field(e, "bins").default)
      assert.same({}, field(e, "nums").default)
      assert.same({}, field(e, "counts").default)
      assert.same({ "x", "y" }, field(e, "tags").default)
      assert.equal(3.0, field(e, "ratio").default)
      assert.equal(false, field(e, "flag").default) -- only positive is true
      assert.same({}, d.NONE_SET.value)
    end)

    it("gives explicit ids <= 0 implicit ids, and takes uuid as a name", function()
      local d = load(COMPAT .. "/fields.thrift").defs
      assert.same({ { -1, "zero", "i32", "default" }, { -2, "implicit", "i32", "default" },
        { -3, "negative", "i32", "default" }, { 3, "three", "i32", "default" },
        { -4, "again", "i32", "default" } }, fields_of(d.NonPositive.fields))
      assert.same({ { 1, "uuid", "string", "default" }, { 2, "id", "i64", "default" } },
        fields_of(d.Named.fields))
      assert.same({ uuid = 0, other = 1 }, d.Kind.values)
      local fn = d.Names.functions.uuid
      assert.equal("Named", fn.result)
      assert.same({ { 1, "uuid", "string", "default" }, { -1, "flags", "i32", "default" } },
        fields_of(fn.args))
      assert.same({ { -1, "failed", "Failed", "default" } }, fields_of(fn.throws))
    end)

    it("keeps explicit ids <= 0 with allow_neg_keys (Apache's --allow-neg-keys)", function()
      local r = assert(idl.parse("struct A { 0: i32 a, -5: i32 b, -2: i32 c, i32 d, 4: i32 e }",
        { allow_neg_keys = true }))
      assert.same({ { 0, "a", "i32", "default" }, { -5, "b", "i32", "default" },
        { -2, "c", "i32", "default" }, { -3, "d", "i32", "default" },
        { 4, "e", "i32", "default" } }, fields_of(r.defs.A.fields))
      -- as with Apache, the corpus file then has -1 twice
      local res, err = idl.load(COMPAT .. "/fields.thrift", { allow_neg_keys = true })
      assert.is_nil(res)
      assert.matches("fields.thrift:10:3: duplicate field id %-1 %('implicit' and 'again'%)", err)
      res, err = idl.parse("struct A { -40000: i32 a }", { name = "neg.thrift", allow_neg_keys = true })
      assert.is_nil(res)
      assert.equal("neg.thrift:1:12: bad field id -40000: must be within -32768..32767", err)
    end)

    it("cleans doc comments as Apache does", function()
      local d = load(COMPAT .. "/docs.thrift").defs
      local s = d.Starred
      assert.equal("Star-prefixed lines.\n\n  Indented code keeps its indentation.", s.doc)
      assert.equal("One line.", field(s, "a").doc)
      assert.equal("No stars here.\n  Relative indentation kept.", field(s, "b").doc)
      assert.equal("First line.\n*  Ragged\n * star column.", field(s, "c").doc)
      assert.equal("Trailing blanks\nare dropped.", field(s, "d").doc)
      assert.is_nil(d.NoText.doc)
    end)

    it("accepts unqualified enum values and braced uuids (outside Apache 0.17)", function()
      local d = load(CORPUS .. "/extensions/legacy.thrift").defs
      assert.equal(2, field(d.Read, "level").default)
      assert.same({ 1, 0 }, field(d.Read, "fallbacks").default)
      assert.equal(1, d.Store.functions.get.args[2].default)
      assert.equal(1, d.DEFAULT_LEVEL.value)
      assert.equal("00112233-4455-6677-8899-aabbccddeeff", d.BRACED.value)
      assert.equal("00000000-4444-cccc-ffff-0123456789ab", d.UPPER.value)
    end)
  end)

  describe("the corpus against the Apache compiler", function()
    -- extensions/ holds uuid, slist, senum and unqualified enum values,
    -- which thrift 0.17 rejects
    local files = {
      "main.thrift", "common/shared.thrift", "common/base_types.thrift",
      "incdir/extra.thrift", "odd/oneline.thrift", "odd/crlf.thrift",
      "odd/tolerated.thrift", "compat/enums.thrift", "compat/literals.thrift",
      "compat/fields.thrift", "compat/docs.thrift",
    }
    for _, f in ipairs(files) do
      it("thrift --gen py accepts " .. f, function()
        local fh = io.open(THRIFT, "rb")
        assert(fh, THRIFT .. " is missing: install the Debian package thrift-compiler "
          .. "(tools/deps.sh does) to check the IDL corpus against Apache Thrift")
        fh:close()
        local out = tmpdir()
        local cmd = ("%s -I %s --gen py -out %s %s/%s >%s/log 2>&1"):format(
          THRIFT, INCDIR, out, CORPUS, f, out)
        local ok = exec_ok(cmd)
        local log = read(out .. "/log")
        os.execute("rm -rf '" .. out .. "'")
        assert(ok, "thrift rejected " .. f .. ":\n" .. log)
      end)
    end
  end)

  describe("malformed input", function()
    -- { source, line, col, message fragment }
    local cases = {
      { "struct A {\n  1: Missing m\n}", 2, 6, "unknown type 'Missing'" },
      { "struct A { 1: nope.T t }", 1, 15, "unknown type 'nope.T'" },
      { "struct A {\n  1: i32 x,\n  1: i32 y\n}", 3, 3, "duplicate field id 1" },
      { "struct A {\n  1: i32 x,\n  2: string x\n}", 3, 3, "duplicate field name 'x'" },
      { "service S { void f(1: i32 a, 1: i32 b) }", 1, 30, "duplicate field id 1" },
      { 'const string S = "abc', 1, 18, "unterminated string literal" },
      { 'const string S = "ab\ncd"', 1, 18, "unterminated string literal (end of line)" },
      { "struct A {}\n  /* never closed", 2, 3, "unterminated comment" },
      { "struct A {\n  1: map<string, i32 m\n}", 2, 22,
        "expected '>' after map value type, got identifier 'm'" },
      { "struct A { 1: map<string i32> m }", 1, 26,
        "expected ',' after map key type, got keyword 'i32'" },
      { "typedef list<i32 L", 1, 18, "expected '>' after list element type, got identifier 'L'" },
      { 'const map<string,i32> M = {"a" 1}', 1, 32,
        "expected ':' after map constant key, got number 1" },
      { 'const i32 X = "str"', 1, 15,
        "bad value for const 'X': expected i32, got string literal" },
      { "const i32 X = 1.5", 1, 15, "expected i32, got number" },
      { 'const list<i32> L = {"a": 1}', 1, 21, "expected list literal" },
      { "const bool B = \"yes\"", 1, 16, "expected bool" },
      { "struct A {\n  1: x,\n}", 2, 7,
        "expected field name after type 'x' (is the field type missing?), got ','" },
      { "struct string { 1: i32 x }", 1, 8, "expected struct name, got keyword 'string'" },
      { "struct A { 1: i32 xsd_all }", 1, 19, "expected field name, got keyword 'xsd_all'" },
      { "struct A { 1: void x }", 1, 15, "expected field type, got keyword 'void'" },
      { "struct A { 1.5: i32 x }", 1, 12, "bad field id" },
      { "struct A { 40000: i32 x }", 1, 12, "bad field id 40000" },
      { "struct A { 1 i32 x }", 1, 14, "expected ':' after field id, got keyword 'i32'" },
      { "const i32 X = Y", 1, 15, "unknown constant or enum value 'Y'" },
      { "enum E { A }\nconst E X = E.B", 2, 13, "unknown constant or enum value 'E.B'" },
      { "struct A {}\nenum A { X }", 2, 6, "duplicate definition 'A' (first defined at line 1)" },
      { "service S extends T {}", 1, 19, "unknown service 'T' in extends" },
      { "struct T {}\nservice S extends T {}", 2, 19, "'T' is a struct, not a service" },
      { "service S {}\nstruct A { 1: S s }", 2, 15, "'S' is a service, not a type" },
      { "struct A { 1: i32 x @ }", 1, 21, "unexpected character '@'" },
      { "struct A {} / ", 1, 13, "unexpected character '/'" },
      { 'const string S = "a\\qb"', 1, 20, "bad escape sequence '\\q'" },
      { "const i64 X = 9223372036854775808", 1, 15,
        "integer constant 9223372036854775808 out of range" },
      { "const i64 X = 0x8000000000000000", 1, 15, "out of range" },
      { "const i8 X = 200", 1, 14, "200 out of i8 range" },
      { "enum E { A = 2147483648 }", 1, 14, "out of i32 range" },
      { "enum E { A, B, A }", 1, 16, "duplicate enum value 'A' in enum 'E'" },
      { "struct A {}\nnamespace py x", 2, 1, "'namespace' must come before all definitions" },
      { "service S { oneway i32 f() }", 1, 20, "oneway function 'f' must return void" },
      { "exception E {}\nservice S { oneway void f() throws (1: E e) }", 2, 37,
        "oneway function 'f' may not throw exceptions" },
      { "struct E {}\nservice S { void f() throws (1: E e) }", 2, 33,
        "may only list exceptions, 'E' is not one" },
      { "service S { void f(), void f() }", 1, 28, "duplicate function 'f' in service 'S'" },
      { "struct A {\n  1: i32 x", 2, 11, "expected '}' to close struct 'A', got end of file" },
      { 'include "nope.thrift"', 1, 9, "cannot find include file 'nope.thrift'" },
      { "const i32 A = B\nconst i32 B = A", 1, 11, "const 'A' refers to itself" },
      { "typedef A B\ntypedef B A", 1, 9, "typedef cycle involving 'A'" },
      { "struct A {} (x = 1)", 1, 18,
        "expected string literal as value of annotation 'x', got number 1" },
      { 'struct A { 1: i32 x }\nconst A C = {"y": 1}', 2, 14, "no field 'y' in struct 'A'" },
      { "union U { 1: i32 a = 1, 2: i32 b = 2 }", 1, 25,
        "union 'U' may give a default to one field only" },
      { "struct a..b {}", 1, 8, "malformed identifier 'a..b'" },
      { "struct a.b {}", 1, 8, "struct name 'a.b' may not contain '.'" },
      { "foo", 1, 1, "expected definition (struct, union, exception, enum, typedef, const or service), got identifier 'foo'" },
      { 'const uuid U = "xyz"', 1, 16, "malformed uuid 'xyz'" },
      { "struct A { 1: i32 x }\nstruct A {}", 2, 8, "duplicate definition 'A'" },
      { "enum E { A = B }", 1, 14, "expected integer value for enum value 'A', got identifier 'B'" },
      { "service S { void f( }", 1, 21, "expected ')' to close argument list of 'f'" },
      { "const i32 X 5", 1, 13, "expected '=' after const name, got number 5" },
      { "struct A { 1: list<i32> x = [1, \"a\"] }", 1, 33,
        "bad value for default of field 'x' in struct 'A': expected i32, got string literal" },
      { "\n\n   struct A { 1: i32 x = shared.X }", 3, 26,
        "unknown constant or enum value 'shared.X'" },
      -- found checking real-world IDL against Apache's compiler
      { "service S { void f() }\nservice T extends S { void f() }", 2, 28,
        "function 'f' is already defined in service 'S', which 'T' extends" },
      { "service S extends S {}", 1, 19, "service 'S' extends itself (through 'S')" },
      { "service A extends B {}\nservice B extends A {}", 1, 19,
        "service 'A' extends itself (through 'B')" },
      { "enum E { A = 1 }\nconst E X = 9", 2, 13, "bad value for const 'X': 9 is not a value of enum E" },
      { "enum E { A = 1 }\nstruct S { 1: list<E> l = [A, 3] }", 2, 31, "3 is not a value of enum E" },
      { "enum E { A }\nconst E X = F.B", 2, 13, "unknown constant or enum value 'F.B'" },
      { 'enum E { A }\nconst E X = "A"', 2, 13, "expected value of enum E, got string literal" },
      { "const set<i32> S = {1: 2}", 1, 20, "expected set literal [...], got map" },
      { "const map<i32,i32> M = [1]", 1, 24, "expected map literal {...}, got list" },
      { "const bool B = 1.5", 1, 16, "expected bool (true, false or an integer), got number" },
      { 'const uuid U = "{0011}"', 1, 16, "malformed uuid '{0011}'" },
      { "cpp_namespace foo", 1, 1, "'cpp_namespace' is not supported (Apache dropped it): write 'namespace cpp'" },
      { "const i32 X = Y.Z.W.V", 1, 15, "unknown constant or enum value 'Y.Z.W.V'" },
      { "struct A { 1: i32 uuid }\nstruct uuid {}", 2, 8, "expected struct name, got keyword 'uuid'" },
      { "const list<i32> A = [1]\nconst i32 B = A", 2, 15,
        "bad value for const 'B': expected i32, got list (in the value of const 'A', line 1 of bad.thrift)" },
    }

    for n, c in ipairs(cases) do
      it(("case %d at %d:%d: %s"):format(n, c[2], c[3], c[4]), function()
        local ok, res, err = pcall(idl.parse, c[1], { name = "bad.thrift" })
        assert.is_true(ok, "raised: " .. tostring(res))
        assert.is_nil(res)
        assert.is_string(err)
        local line, col, msg = err:match("^bad%.thrift:(%d+):(%d+): (.*)$")
        assert(line, "malformed error: " .. err)
        assert.equal(c[2] .. ":" .. c[3], line .. ":" .. col, err)
        assert(msg:find(c[4], 1, true), "message " .. msg .. " lacks: " .. c[4])
      end)
    end

    it("has at least 30 cases", function() assert.is_true(#cases >= 30) end)

    it("reports include cycles naming the cycle", function()
      local dir = tmpdir()
      write(dir .. "/a.thrift", 'include "b.thrift"\nstruct A {}\n')
      write(dir .. "/b.thrift", '// b\ninclude "c.thrift"\n')
      write(dir .. "/c.thrift", '\n\n  include "a.thrift"\n')
      local ok, res, err = pcall(idl.load, dir .. "/a.thrift")
      os.execute("rm -rf '" .. dir .. "'")
      assert.is_true(ok)
      assert.is_nil(res)
      assert.equal(("%s/c.thrift:3:11: include cycle: %s/a.thrift -> %s/b.thrift -> "
        .. "%s/c.thrift -> %s/a.thrift"):format(dir, dir, dir, dir, dir), err)
    end)

    it("reports errors inside included files with that file's name", function()
      local dir = tmpdir()
      write(dir .. "/top.thrift", 'include "sub/inc.thrift"\nstruct T { 1: inc.S s }\n')
      os.execute("mkdir -p '" .. dir .. "/sub'")
      write(dir .. "/sub/inc.thrift", "struct S {\n  1: Nope n\n}\n")
      local res, err = idl.load(dir .. "/top.thrift")
      os.execute("rm -rf '" .. dir .. "'")
      assert.is_nil(res)
      assert.equal(dir .. "/sub/inc.thrift:2:6: unknown type 'Nope'", err)
    end)

    it("rejects two included files with the same base name", function()
      local dir = tmpdir()
      os.execute("mkdir -p '" .. dir .. "/x' '" .. dir .. "/y'")
      write(dir .. "/x/s.thrift", "struct A {}\n")
      write(dir .. "/y/s.thrift", "struct B {}\n")
      write(dir .. "/top.thrift", 'include "x/s.thrift"\ninclude "y/s.thrift"\n')
      local res, err = idl.load(dir .. "/top.thrift")
      os.execute("rm -rf '" .. dir .. "'")
      assert.is_nil(res)
      assert.matches("top.thrift:2:9: included file '.*y/s.thrift' has the same name 's'", err)
    end)

    it("loads a file included twice only once", function()
      local dir = tmpdir()
      write(dir .. "/base.thrift", "struct B {}\n")
      write(dir .. "/mid.thrift", 'include "base.thrift"\nstruct M { 1: base.B b }\n')
      write(dir .. "/top.thrift",
        'include "mid.thrift"\ninclude "./base.thrift"\nstruct T { 1: mid.M m, 2: base.B b }\n')
      local r, err = idl.load(dir .. "/top.thrift")
      os.execute("rm -rf '" .. dir .. "'")
      assert(r, err)
      assert.equal("base.B", r.defs.T.fields[2].type)
      assert.equal("base.B", r.defs["mid.M"].fields[1].type)
      assert.equal("mid.M", r.defs.T.fields[1].type)
    end)

    it("never raises on any prefix of the corpus", function()
      local text = read(CORPUS .. "/main.thrift")
      for cut = 1, #text, 3 do
        local ok, res, err = pcall(idl.parse, text:sub(1, cut), {
          path = CORPUS .. "/main.thrift", include_dirs = { INCDIR } })
        assert(ok, "raised at cut " .. cut .. ": " .. tostring(res))
        if not res then
          assert(err:match("^[^:]+:%d+:%d+: "), err)
          assert(not err:find("internal error", 1, true), err)
        end
      end
    end)

    it("returns nil, err for bad arguments and missing files", function()
      local res, err = idl.parse(nil)
      assert.is_nil(res)
      assert.matches("^<string>:1:1:", err)
      res, err = idl.load("spec/idl/does-not-exist.thrift")
      assert.is_nil(res)
      assert.equal("spec/idl/does-not-exist.thrift:1:1: cannot open file", err)
    end)
  end)

  describe("large values", function()
    it("reads doubles as strtod does: inf or 0 past the exponent range, -0.0 kept", function()
      local d = assert(idl.parse("const list<double> L = [1e999, -1.7e+3085816, 1e-99999999, "
        .. "-2e-9999999, -0.0, 7]")).defs
      local v = d.L.value
      assert.equal(math.huge, v[1])
      assert.equal(-math.huge, v[2])
      assert.equal(0, v[3])
      assert.equal(0, v[4])
      assert.equal(-math.huge, 1 / v[4]) -- negative zero
      assert.equal(-math.huge, 1 / v[5])
      assert.equal(7, v[6])
      if math.type then assert.equal("float", math.type(v[6])) end
    end)

    it("converts a const named twice by each of a long chain once per type", function()
      -- 2^60 paths: converting each reference anew would never finish
      local lines = { "struct P { 1: optional P a, 2: optional P b }", "const P C0 = {}" }
      for i = 1, 60 do
        lines[#lines + 1] = ('const P C%d = {"a": C%d, "b": C%d}'):format(i, i - 1, i - 1)
      end
      local d = assert(idl.parse(table.concat(lines, "\n"))).defs
      assert.same({}, d.C60.value.a.b.a.a.b.b.a.b.a.a.b.b.a.b.a.a.b.b.a.b.a.a.b.b.a.b.a.a.b.b
        .a.b.a.a.b.b.a.b.a.a.b.b.a.b.a.a.b.b.a.b.a.a.b.b.a.b.a.a.b.b)
    end)

    it("keeps i64 extremes exact", function()
      local d = assert(idl.parse([[
const i64 MAX = 9223372036854775807
const i64 MIN = -9223372036854775808
const i64 HMAX = 0x7fffffffffffffff
const i64 P53 = 9007199254740993
]])).defs
      assert.equal("9223372036854775807", (tostring(d.MAX.value):gsub("LL$", "")))
      assert.equal("-9223372036854775808", (tostring(d.MIN.value):gsub("LL$", "")))
      assert.equal("9223372036854775807", (tostring(d.HMAX.value):gsub("LL$", "")))
      assert.equal("9007199254740993", (tostring(d.P53.value):gsub("LL$", "")))
    end)
  end)
end)
