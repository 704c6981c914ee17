#!/usr/bin/python3
"""pyinterop: Python Thrift (Apache Thrift 0.17, Debian python3-thrift) as the
reference implementation in petrel's interop tests.  Run with /usr/bin/python3.

    pyinterop.py --thrift FILE.thrift --struct NAME --decode [--many] [options]
    pyinterop.py --thrift FILE.thrift --struct NAME --encode [--many] [options]
    pyinterop.py --selftest

--decode  stdin: Thrift bytes of one struct (no message header, no
          framing).  stdout: its canonical JSON + "\\n".
--encode  stdin: canonical JSON of one struct.  stdout: Thrift bytes.
--protocol binary|compact   the protocol of those bytes (default binary):
          TBinaryProtocol / TCompactProtocol and their Accelerated twins.
--construct  stdin: a JSON array of {"struct": NAME, "args": {...}}; each
          value is built by calling the generated class with the args as
          keyword arguments (JSON numbers, strings, booleans, arrays as
          lists, objects as dicts; {"$struct": NAME, "args": {...}} for a
          nested struct, {"$bytes": HEX} for binary, {"$map": [[k, v]...]}
          for a map in that order), then written with the generated pure-Python
          write() in both protocols.  stdout: a JSON array of
          {"binary": hex, "compact": hex}.  Works where thrift_spec is empty
          (structs with negative field ids), since write() does not use it.
--many    batch mode, one process for many values:
          --decode: stdin is a JSON array of hex strings -> stdout is a JSON
                    array of canonical values;
          --encode: stdin is a JSON array of canonical values -> stdout is a
                    JSON array of lowercase hex strings.
          An element that fails becomes {"$error": "message"} (no Thrift
          field can be named "$error"); the exit status is still 0.
Options:
  (env PETREL_THRIFT_INCLUDES=dir:dir adds -I include directories)
  --gen-dir DIR      where `thrift --gen py -r` output goes (default
                     $PETREL_BUILD|build/pyinterop/<hash of abs path + mtime
                     + size of FILE.thrift>; generated once, reused after).
  --reader R         decode with: accel (default; TBinaryProtocolAccelerated
                     or TCompactProtocolAccelerated, the fastbinary C
                     extension, when importable), pure (the generated read()
                     on the pure-Python protocol) or generic (a reader driven
                     by thrift_spec that uses only the protocol's
                     primitives).
  --writer W         encode with: pure (default: the generated write() on
                     the pure-Python protocol) or accel (the C extension).  accel/pure fall back to
                     generic when Python cannot build the value: sets and map
                     keys whose elements are lists/sets/maps are unhashable.
  --apply-defaults   give absent fields their IDL default values (Python
                     Thrift's constructor behaviour), on decode (fields not on
                     the wire) and on encode (fields not in the JSON).
                     Without it, the value is exactly what is on the wire /
                     in the JSON: an absent field stays absent.
  --keep-order       --encode writes set elements and map entries in the
                     order of the JSON arrays (duplicates included).  Default:
                     sorted in natural order (numbers numerically, false <
                     true, strings and binary by bytes, anything else by its
                     canonical text), which reproduces the byte order of the
                     canonical bench data.
  --validate         --encode calls the generated validate() (required
                     fields must be set).
  --allow-trailing   --decode ignores bytes after the struct's STOP (by
                     default they are an error).

Canonical JSON (what --decode prints and --encode reads)
  struct/union/exception -> object {field_name: value} holding only the
                  fields that are set (not None);
  bool          -> true / false
  byte, i8, i16, i32, enum -> JSON number (integer)
  i64           -> JSON string of the decimal value: "-7340032000123456789"
  double        -> JSON string: Python repr(x), the shortest text that reads
                  back as the same double ("0.1", "1e+300", "-0.0", "3.0",
                  "5e-324"); special values "nan", "inf", "-inf".  Lua's
                  tonumber() recovers the exact double from any of these
                  except the three specials.
  string        -> JSON string.  Invalid UTF-8 on the wire: the pure and
                  generic readers fail (UnicodeDecodeError); the accel reader
                  (fastbinary) replaces it with U+FFFD, as Python Thrift does.
  binary        -> {"hex": "<lowercase hex>"}
  list          -> JSON array, wire order
  set           -> JSON array sorted by the canonical text of the elements
  map           -> JSON array of [key, value] pairs sorted by the canonical
                  text of the keys
  uuid          -> not supported: thrift 0.17 has no uuid type.
Canonical text (used for sorting, and what is printed): no whitespace,
  object keys sorted, strings UTF-8 with only these escapes: \\" \\\\ \\n \\r
  \\t \\b \\f and \\u00XX (lowercase hex) for the other bytes < 0x20;
  everything else, including "/" and DEL, raw.  Sorting compares the UTF-8
  bytes of the texts (= code point order).  This is
  json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True).
Input (--encode) is read leniently: i64 may also be a JSON integer (or an
  integral float), double may also be a JSON number or a C99 hex string
  ("0x1.8p+1"), byte/i16/i32 may be integral floats, binary may be a plain
  string (its UTF-8 bytes), a map may be a JSON object when its keys are
  strings, "\\/" etc. are fine (any JSON).

Python Thrift limits noted: structs are unhashable in generated code; this
tool gives every generated struct a __hash__ (of its canonical text) so
set<struct> and map<struct, _> decode.  Exceptions are generated frozen.

--selftest  decodes every bench/data/*.bin (workload.thrift) with
  all three readers, checks they agree, re-encodes from the canonical JSON and
  checks the bytes are identical; then round-trips hand-written values of
  spec/thrift/alltypes.thrift (every type) and checks known byte strings.
"""
import hashlib
import importlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

# Under `make asan` the Lua tests run with libasan LD_PRELOADed and children
# inherit it: LeakSanitizer then fails CPython at exit.  Re-exec without it.
if "san" in os.environ.get("LD_PRELOAD", "") and __name__ == "__main__":
    _env = dict(os.environ)
    del _env["LD_PRELOAD"]
    os.execve(sys.executable, [sys.executable] + sys.argv, _env)

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from thrift.Thrift import TType  # noqa: E402
from thrift.protocol import TBinaryProtocol, TCompactProtocol  # noqa: E402
from thrift.transport import TTransport  # noqa: E402

try:
    import thrift.protocol.fastbinary  # noqa: F401
    HAVE_ACCEL = True
except ImportError:
    HAVE_ACCEL = False


class InteropError(Exception):
    pass


# ---------------------------------------------------------------- codegen

def build_dir():
    b = os.environ.get("PETREL_BUILD", "build")
    return b if os.path.isabs(b) else os.path.join(ROOT, b)


def gen_python(thrift_file, gen_dir=None):
    """Generate (once) and return the gen-py directory for thrift_file."""
    path = os.path.abspath(thrift_file)
    st = os.stat(path)
    incs = [d for d in os.environ.get("PETREL_THRIFT_INCLUDES", "").split(":") if d]
    if gen_dir is None:
        key = "%s\0%d\0%d\0%s" % (path, st.st_mtime_ns, st.st_size, ":".join(incs))
        h = hashlib.sha256(key.encode()).hexdigest()[:16]
        gen_dir = os.path.join(build_dir(), "pyinterop", h)
    marker = os.path.join(gen_dir, ".pyinterop-ok")
    if os.path.exists(marker):
        return gen_dir
    parent = os.path.dirname(os.path.abspath(gen_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gen-", dir=parent)
    try:
        inc_args = []
        for d in incs:                      # PETREL_THRIFT_INCLUDES=dir:dir
            inc_args += ["-I", d]
        r = subprocess.run(["thrift", "-r"] + inc_args + ["--gen", "py", "-out", tmp, path],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise InteropError("thrift --gen py failed for %s:\n%s"
                               % (path, r.stdout.decode(errors="replace")))
        open(os.path.join(tmp, ".pyinterop-ok"), "w").close()
        os.chmod(tmp, 0o755)
        if os.path.exists(marker):          # another process finished first
            return gen_dir
        if os.path.isdir(gen_dir):          # a stale/partial dir (no marker)
            shutil.rmtree(gen_dir, ignore_errors=True)
        try:
            os.rename(tmp, gen_dir)
        except OSError:
            if not os.path.exists(marker):  # lost a race: the winner is fine
                raise
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return gen_dir


def py_package(thrift_file):
    with open(thrift_file, encoding="utf-8") as f:
        m = re.search(r"^\s*namespace\s+py\s+([\w.]+)", f.read(), re.M)
    if m:
        return m.group(1)
    return os.path.splitext(os.path.basename(thrift_file))[0]


_loaded = {}


def load_module(thrift_file, gen_dir=None, apply_defaults=False):
    """Import the generated ttypes module of thrift_file (patched, see below)."""
    key = os.path.abspath(thrift_file)
    if key in _loaded:
        return _loaded[key]
    gen = gen_python(thrift_file, gen_dir)
    if gen not in sys.path:
        sys.path.insert(0, gen)
    pkg = py_package(thrift_file)
    mods = []
    for dirpath, _, files in os.walk(gen):
        if "ttypes.py" in files:
            rel = os.path.relpath(dirpath, gen).replace(os.sep, ".")
            mods.append(importlib.import_module(rel + ".ttypes"))
    main = importlib.import_module(pkg + ".ttypes")
    for mod in mods:
        for cls in list(vars(mod).values()):     # (all_structs is deleted)
            if (isinstance(cls, type) and cls.__module__ == mod.__name__
                    and "thrift_spec" in cls.__dict__):
                patch_class(cls, apply_defaults)
    _loaded[key] = main
    return main


def patch_class(cls, apply_defaults):
    if getattr(cls, "_pyinterop_patched", False):
        return
    # Hashable structs (for set<struct>, map<struct, _>): hash the canonical
    # text; generated __eq__ compares fields, which is consistent.
    type.__setattr__(cls, "__hash__", lambda self: hash(ctext(struct_canon(self))))
    if not apply_defaults:
        # Every constructor argument defaults to None, so nested structs made
        # by read() (pure and fastbinary alike) hold only what is on the wire.
        init = cls.__dict__.get("__init__")
        if init is not None and init.__defaults__:
            init.__defaults__ = (None,) * len(init.__defaults__)
    type.__setattr__(cls, "_pyinterop_patched", True)


def find_struct(mod, name):
    cls = getattr(mod, name, None)
    if cls is None or not hasattr(cls, "thrift_spec"):
        raise InteropError("no struct %r in %s" % (name, mod.__name__))
    return cls


def fields(cls):
    return [f for f in cls.thrift_spec if f is not None]


# ------------------------------------------------------- canonical values

def ctext(v):
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def ckey(v):
    return ctext(v).encode("utf-8")


def canon_double(x):
    return repr(float(x))          # 'nan', 'inf', '-inf' included


def to_canon(ttype, targs, v):
    if ttype == TType.BOOL:
        return bool(v)
    if ttype in (TType.BYTE, TType.I16, TType.I32):
        return int(v)
    if ttype == TType.I64:
        return str(int(v))
    if ttype == TType.DOUBLE:
        return canon_double(v)
    if ttype == TType.STRING:
        if targs == "BINARY":
            return {"hex": bytes(v).hex()}
        return v.decode("utf-8") if isinstance(v, bytes) else v
    if ttype == TType.STRUCT:
        return struct_canon(v)
    if ttype == TType.LIST:
        return [to_canon(targs[0], targs[1], e) for e in v]
    if ttype == TType.SET:
        return sorted((to_canon(targs[0], targs[1], e) for e in v), key=ckey)
    if ttype == TType.MAP:
        pairs = [[to_canon(targs[0], targs[1], k), to_canon(targs[2], targs[3], x)]
                 for k, x in v.items()]
        return sorted(pairs, key=lambda p: ckey(p[0]))
    raise InteropError("unsupported type %r" % ttype)


def struct_canon(obj):
    out = {}
    for f in fields(type(obj)):
        v = getattr(obj, f[2], None)
        if v is not None:
            out[f[2]] = to_canon(f[1], f[3], v)
    return out


# ------------------------------------------------ canonical JSON -> Python

class PairMap(object):
    """An ordered stand-in for dict that generated write() accepts."""
    __slots__ = ("pairs",)

    def __init__(self, pairs):
        self.pairs = pairs

    def items(self):
        return iter(self.pairs)

    def __len__(self):
        return len(self.pairs)


def _int(j, what):
    if isinstance(j, bool):
        raise InteropError("%s: expected a number, got %r" % (what, j))
    if isinstance(j, int):
        return j
    if isinstance(j, float) and j == int(j):
        return int(j)
    if isinstance(j, str) and what == "i64":
        try:
            return int(j, 10)
        except ValueError:
            pass
    raise InteropError("%s: bad value %r" % (what, j))


def _double(j):
    if isinstance(j, bool):
        raise InteropError("double: bad value %r" % (j,))
    if isinstance(j, (int, float)):
        return float(j)
    if isinstance(j, str):
        s = j.strip()
        try:
            return float(s)
        except ValueError:
            try:
                return float.fromhex(s)
            except ValueError:
                pass
    raise InteropError("double: bad value %r" % (j,))


def natural_key(ttype, targs, j):
    """Sort key of a canonical value for --encode's default ordering."""
    if ttype == TType.BOOL:
        return (0, bool(j))
    if ttype in (TType.BYTE, TType.I16, TType.I32, TType.I64):
        return (0, _int(j, "i64"))
    if ttype == TType.DOUBLE:
        d = _double(j)
        return (1, 0) if math.isnan(d) else (0, d)
    if ttype == TType.STRING:
        if isinstance(j, dict):
            return (0, bytes.fromhex(j["hex"]))
        return (0, j.encode("utf-8"))
    return (0, ckey(j))


def from_canon(ttype, targs, j, opts):
    if ttype == TType.BOOL:
        if not isinstance(j, bool):
            raise InteropError("bool: bad value %r" % (j,))
        return j
    if ttype == TType.BYTE:
        return _int(j, "byte")
    if ttype == TType.I16:
        return _int(j, "i16")
    if ttype == TType.I32:
        return _int(j, "i32")
    if ttype == TType.I64:
        return _int(j, "i64")
    if ttype == TType.DOUBLE:
        return _double(j)
    if ttype == TType.STRING:
        if targs == "BINARY":
            if isinstance(j, dict) and set(j) == {"hex"}:
                return bytes.fromhex(j["hex"])
            if isinstance(j, str):
                return j.encode("utf-8")
            raise InteropError("binary: bad value %r" % (j,))
        if not isinstance(j, str):
            raise InteropError("string: bad value %r" % (j,))
        return j
    if ttype == TType.STRUCT:
        return struct_from_canon(targs[0], j, opts)
    if ttype in (TType.LIST, TType.SET):
        if not isinstance(j, list):
            raise InteropError("list/set: expected an array, got %r" % (j,))
        et, ea = targs[0], targs[1]
        if ttype == TType.SET and not opts.get("keep_order"):
            j = sorted(j, key=lambda e: natural_key(et, ea, e))
        return [from_canon(et, ea, e, opts) for e in j]
    if ttype == TType.MAP:
        kt, ka, vt, va = targs[0], targs[1], targs[2], targs[3]
        if isinstance(j, dict) and kt == TType.STRING:
            j = [[k, x] for k, x in j.items()]
        if not isinstance(j, list) or not all(isinstance(p, list) and len(p) == 2 for p in j):
            raise InteropError("map: expected an array of [key, value], got %r" % (j,))
        if not opts.get("keep_order"):
            j = sorted(j, key=lambda p: natural_key(kt, ka, p[0]))
        pairs = [(from_canon(kt, ka, k, opts), from_canon(vt, va, x, opts)) for k, x in j]
        if opts.get("writer") == "accel":   # the C extension wants a dict
            return dict(pairs)              # (insertion order kept)
        return PairMap(pairs)
    raise InteropError("unsupported type %r" % ttype)


def struct_from_canon(cls, j, opts):
    if not isinstance(j, dict):
        raise InteropError("%s: expected an object, got %r" % (cls.__name__, j))
    by_name = {f[2]: f for f in fields(cls)}
    unknown = set(j) - set(by_name)
    if unknown:
        raise InteropError("%s has no field(s) %s" % (cls.__name__, ", ".join(sorted(unknown))))
    kwargs = {}
    for name, f in by_name.items():
        if name in j and j[name] is not None:
            kwargs[name] = from_canon(f[1], f[3], j[name], opts)
        elif not opts.get("apply_defaults"):
            kwargs[name] = None
    return cls(**kwargs)


# ------------------------------------------------------------- encode/decode

PROTOCOLS = {
    "binary": (TBinaryProtocol.TBinaryProtocol, TBinaryProtocol.TBinaryProtocolAccelerated),
    "compact": (TCompactProtocol.TCompactProtocol, TCompactProtocol.TCompactProtocolAccelerated),
}


def encode(cls, j, opts):
    obj = struct_from_canon(cls, j, opts)
    if opts.get("validate"):
        obj.validate()
    trans = TTransport.TMemoryBuffer()
    pure, accel = PROTOCOLS[opts.get("protocol", "binary")]
    obj.write((accel if opts.get("writer") == "accel" else pure)(trans))
    return trans.getvalue()


def construct(mod, j):
    """{"struct": NAME, "args": {...}} -> an instance (see --construct)."""
    def conv(v):
        if isinstance(v, dict) and "$struct" in v:
            return construct(mod, {"struct": v["$struct"], "args": v.get("args", {})})
        if isinstance(v, dict) and "$bytes" in v:
            return bytes.fromhex(v["$bytes"])
        if isinstance(v, dict) and "$map" in v:
            return {conv(k): conv(x) for k, x in v["$map"]}
        if isinstance(v, list):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    cls = getattr(mod, j["struct"])
    return cls(**{k: conv(v) for k, v in j.get("args", {}).items()})


def write_both(obj):
    out = {}
    for name, (pure, _) in PROTOCOLS.items():
        trans = TTransport.TMemoryBuffer()
        obj.write(pure(trans))
        out[name] = trans.getvalue().hex()
    return out


def _read_generated(cls, proto):
    if isinstance(cls.__dict__.get("read"), classmethod):   # frozen (exception)
        return cls.read(proto)
    obj = cls()
    obj.read(proto)
    return obj


def generic_read(proto, ttype, targs):
    """Spec-driven reader on TBinaryProtocol primitives -> canonical value.
    Follows the generated code: element types come from the IDL, a field
    whose wire type differs from the IDL is skipped."""
    if ttype == TType.BOOL:
        return proto.readBool()
    if ttype == TType.BYTE:
        return proto.readByte()
    if ttype == TType.I16:
        return proto.readI16()
    if ttype == TType.I32:
        return proto.readI32()
    if ttype == TType.I64:
        return str(proto.readI64())
    if ttype == TType.DOUBLE:
        return canon_double(proto.readDouble())
    if ttype == TType.STRING:
        b = proto.readBinary()
        return {"hex": b.hex()} if targs == "BINARY" else b.decode("utf-8")
    if ttype == TType.STRUCT:
        return generic_read_struct(proto, targs[0])
    if ttype == TType.LIST:
        _, n = proto.readListBegin()
        out = [generic_read(proto, targs[0], targs[1]) for _ in range(n)]
        proto.readListEnd()
        return out
    if ttype == TType.SET:
        _, n = proto.readSetBegin()
        out = {}
        for _ in range(n):
            e = generic_read(proto, targs[0], targs[1])
            out[ctext(e)] = e                    # a set: duplicates collapse
        proto.readSetEnd()
        return sorted(out.values(), key=ckey)
    if ttype == TType.MAP:
        _, _, n = proto.readMapBegin()
        out = {}
        for _ in range(n):
            k = generic_read(proto, targs[0], targs[1])
            out[ctext(k)] = [k, generic_read(proto, targs[2], targs[3])]  # last wins
        proto.readMapEnd()
        return sorted(out.values(), key=lambda p: ckey(p[0]))
    raise InteropError("unsupported type %r" % ttype)


def generic_read_struct(proto, cls):
    spec = cls.thrift_spec
    out = {}
    proto.readStructBegin()
    while True:
        _, ftype, fid = proto.readFieldBegin()
        if ftype == TType.STOP:
            break
        f = spec[fid] if 0 <= fid < len(spec) else None
        if f is not None and f[1] == ftype:
            out[f[2]] = generic_read(proto, f[1], f[3])
        else:
            proto.skip(ftype)
        proto.readFieldEnd()
    proto.readStructEnd()
    if not proto.trans_apply_defaults:
        return out
    for f in fields(cls):               # --apply-defaults: as the constructor
        if f[2] not in out and f[4] is not None:
            out[f[2]] = to_canon(f[1], f[3], f[4])
    return out


def decode(cls, data, opts):
    """Thrift Binary bytes -> canonical value."""
    reader = opts.get("reader", "accel")
    if reader == "accel" and not HAVE_ACCEL:
        reader = "pure"
    trans = TTransport.TMemoryBuffer(data)
    pure, accel = PROTOCOLS[opts.get("protocol", "binary")]
    if reader in ("accel", "pure"):
        Proto = accel if reader == "accel" else pure
        try:
            value = struct_canon(_read_generated(cls, Proto(trans)))
        except TypeError as e:
            if "unhashable" not in str(e) or not opts.get("fallback", True):
                raise
            reader = "generic"              # Python cannot build it; see --help
            trans = TTransport.TMemoryBuffer(data)
    if reader == "generic":
        proto = pure(trans)
        proto.trans_apply_defaults = bool(opts.get("apply_defaults"))
        value = generic_read_struct(proto, cls)
    elif reader not in ("accel", "pure"):
        raise InteropError("unknown reader %r" % reader)
    used = trans._buffer.tell()
    if used != len(data) and not opts.get("allow_trailing"):
        raise InteropError("%d trailing byte(s) after the struct (%d used)"
                           % (len(data) - used, used))
    return value


# ------------------------------------------------------------------- main

def _err(e):
    return {"$error": "%s: %s" % (type(e).__name__, str(e) or "(truncated input?)")}


def run(args):
    mod = load_module(args.thrift, args.gen_dir, args.apply_defaults)
    raw = sys.stdin.buffer.read()
    out = sys.stdout.buffer
    if args.construct:
        res = []
        for it in json.loads(raw.decode("utf-8")):
            try:
                res.append(write_both(construct(mod, it)))
            except Exception as e:  # noqa: BLE001  reported per element
                res.append(_err(e))
        out.write((ctext(res) + "\n").encode("utf-8"))
        out.flush()
        return 0
    cls = find_struct(mod, args.struct)
    opts = {"reader": args.reader, "apply_defaults": args.apply_defaults,
            "keep_order": args.keep_order, "validate": args.validate,
            "allow_trailing": args.allow_trailing, "protocol": args.protocol,
            "writer": args.writer}
    if args.many:
        items = json.loads(raw.decode("utf-8"))
        if not isinstance(items, list):
            raise InteropError("--many: stdin must be a JSON array")
        res = []
        for it in items:
            try:
                if args.decode:
                    res.append(decode(cls, bytes.fromhex(it), opts))
                else:
                    res.append(encode(cls, it, opts).hex())
            except Exception as e:  # noqa: BLE001  reported per element
                res.append(_err(e))
        out.write((ctext(res) + "\n").encode("utf-8"))
    elif args.decode:
        out.write((ctext(decode(cls, raw, opts)) + "\n").encode("utf-8"))
    else:
        out.write(encode(cls, json.loads(raw.decode("utf-8")), opts))
    out.flush()
    return 0


# --------------------------------------------------------------- selftest

BENCH_THRIFT = os.path.join(ROOT, "bench", "workload.thrift")
BENCH_DATA = os.path.join(ROOT, "bench", "data")
BENCH_STRUCTS = {"small": "Request", "medium": "Request", "large": "Request",
                 "mytest": "MyTest", "blob": "Blob", "vectors": "Vectors"}
ALLTYPES = os.path.join(ROOT, "spec", "thrift", "alltypes.thrift")

# Hand-written canonical values of alltypes.thrift structs.  Each must
# round-trip: encode -> bytes -> decode gives the same canonical text
# (after canonicalising the input's set/map order).
ALLTYPES_VALUES = [
    ("Empty", {}),
    ("Inner", {"a": -1, "s": "x"}),
    ("Inner", {"a": 2147483647}),
    ("Choice", {"nums": ["9223372036854775807", "-9223372036854775808", "0"]}),
    ("Choice", {"raw": {"hex": "00ff10"}}),
    ("Oops", {"code": 500, "message": "boom", "detail": {"a": 1}}),
    ("Node", {"value": 1, "children": [
        {"value": 2, "children": []},
        {"value": 3, "children": [{"value": 4, "children": [], "named": [["leaf", {"value": 5}]]}]}]}),
    ("ContainerKeys", {"s_list": [[3, 1], [1, 2, 3], []],
                       "m_list_key": [[["b", "a"], 1], [[], 0]],
                       "m_set_key": [[[1, 2], "12"], [[], "none"]],
                       "s_map": [[["k", 1]], []]}),
    ("AllTypes", {
        "f_bool": True, "f_byte": -128, "f_i8": 127, "f_i16": -32768, "f_i32": -2147483648,
        "f_i64": "-7340032000123456789", "f_double": "0.1", "f_string": "héllo, мир, 日本, 🎉 \"q\" \\ /\n\t\u0001",
        "f_binary": {"hex": "000102fffe80"}, "f_struct": {"a": 1, "s": ""}, "f_enum": -3,
        "f_union": {"str": "one"}, "f_exception": {"code": 1, "message": "m"},
        "f_tree": {"value": 0, "children": [{"value": 1, "children": []}]},
        "f_typedef": "1700000000000", "f_empty": {},
        "l_bool": [True, False, True], "l_i8": [-1, 0, 1], "l_i16": [300, -300], "l_i32": [5, 4, 5],
        "l_i64": ["9007199254740993", "-1"], "l_double": ["-0.0", "5e-324", "1.7976931348623157e+308", "nan", "inf", "-inf", "3.0"],
        "l_string": ["", "a", "a"], "l_binary": [{"hex": ""}, {"hex": "ff"}],
        "l_struct": [{"a": 1}, {}], "l_enum": [1, 2, 4, 2147483647], "l_union": [{"num": 1}, {"inner": {"a": 2}}],
        "l_list": [[1, 2], [], [3]], "l_set": [["b", "a"], []], "l_map": [[["x", "1"], ["a", "-2"]], []],
        "l_typedef": ["n1", "n2"],
        "s_bool": [True, False], "s_i8": [3, -3, 0], "s_i16": [10, 2, -1], "s_i32": [100, 20, 3, -4],
        "s_i64": ["-9223372036854775808", "9223372036854775807", "0"], "s_double": ["2.5", "-1.0", "1e+300"],
        "s_string": ["b", "a", "é", ""], "s_binary": [{"hex": "01"}, {"hex": "00"}],
        "s_struct": [{"a": 2}, {"a": 1, "s": "one"}], "s_enum": [4, 1],
        "m_bool": [[True, 1], [False, 0]], "m_i8": [[1, "one"], [-1, "minus one"]],
        "m_i16": [[2, "0.5"], [1, "-inf"]], "m_i32": [[7, True], [-7, False]],
        "m_i64": [["-5", {"hex": "05"}], ["5", {"hex": ""}]], "m_double": [["1.5", 3], ["-2.25", -3]],
        "m_string": [["k2", "v2"], ["k1", "v1"]], "m_binary": [[{"hex": "bb"}, "2"], [{"hex": "aa"}, "1"]],
        "m_enum": [[2, {"a": 2}], [1, {"a": 1}]], "m_struct_key": [[{"a": 2}, "two"], [{"a": 1, "s": "x"}, "one"]],
        "m_nested": [["b", [[3, 1, 2], []]], ["a", [[5]]]],
        "m_nested2": [[2, [["y", ["1.0", "2.0"]]]], [1, []]],
        "m_union": [["u", {"nums": ["1"]}]], "m_typedef": [["c", 3]],
        "l_map_set": [[["1", ["3", "2"]]], []],
        "r_i32": 0, "r_string": "", "r_struct": {}, "o_i32": 9, "o_string": "given", "o_list": [],
        "d_i32": 42, "d_string": "hello", "d_double": "3.5", "d_list": [1, 2, 3], "d_map": [["a", 1], ["b", 2]],
        "d_set": ["x", "y"], "d_enum": 2, "o_bool": False, "d_struct": {"a": 7, "s": "seven"},
        "d_i64": "-9007199254740993", "d_binary": {"hex": "726177"}, "d_i8": -128, "d_const": 42,
        "f_last": "last"}),
    ("AllTypes", {"r_i32": 1, "r_string": "only required", "r_struct": {"a": 0}}),
]

# Known encodings (hand-computed from the Thrift Binary spec).
ALLTYPES_BYTES = [
    ("Empty", {}, "00"),
    ("Inner", {"a": -1, "s": "x"}, "080001ffffffff0b00020000000178" "00"),
    ("Choice", {"nums": ["1"]}, "0f00040a00000001" "0000000000000001" "00"),
    # AllTypes: field 1 bool true; field 255 string "z"; the set<i32> s_i32
    # {3, -1} is written in natural order (-1, 3) by default.
    ("AllTypes", {"f_bool": True, "f_last": "z", "s_i32": [3, -1]},
     "020001" "01" "0e002b" "0800000002" "ffffffff" "00000003" "0b00ff" "000000017a" "00"),
    ("AllTypes", {"m_string": [["b", "2"], ["a", "1"]]},
     "0d0042" "0b0b00000002" "0000000161" "0000000131" "0000000162" "0000000132" "00"),
]


def canonicalise(cls, j):
    """A hand-written value in canonical form (sets/maps sorted), via Python."""
    return struct_canon(struct_from_canon(cls, j, {}))


def selftest():
    fails = 0

    def check(cond, msg):
        nonlocal fails
        if not cond:
            fails += 1
            print("FAIL " + msg)
        return cond

    readers = ["accel", "pure", "generic"] if HAVE_ACCEL else ["pure", "generic"]
    print("fastbinary accelerator: %s" % ("loaded" if HAVE_ACCEL else "NOT AVAILABLE"))
    bench = load_module(BENCH_THRIFT)
    for name, sname in BENCH_STRUCTS.items():
        path = os.path.join(BENCH_DATA, name + ".bin")
        if not os.path.exists(path):
            continue
        cls = find_struct(bench, sname)
        with open(path, "rb") as f:
            data = f.read()
        texts = {}
        for r in readers:
            if r != "accel" and len(data) > 2000000:
                continue        # pure Python on the 5-6 MB ones: too slow
            texts[r] = ctext(decode(cls, data, {"reader": r}))
        first = texts[readers[0]]
        for r, t in texts.items():
            check(t == first, "%s: reader %s disagrees with %s" % (name, r, readers[0]))
        back = encode(cls, json.loads(first), {})
        ok = check(back == data, "%s: re-encoded bytes differ (%d vs %d bytes)" % (name, len(back), len(data)))
        # the .json file (i64 as JSON integers, base64 binary) as input
        jpath = os.path.join(BENCH_DATA, name + ".json")
        if os.path.exists(jpath) and len(data) < 2000000:
            with open(jpath, encoding="utf-8") as f:
                doc = json.load(f)
            _b64_to_hex(cls, doc)
            ok = check(encode(cls, doc, {}) == data, "%s: encoding %s.json differs" % (name, name)) and ok
        print("%s %s.bin (%d bytes, readers %s)" % ("ok  " if ok else "FAIL", name, len(data), "/".join(texts)))
        # Compact: the pure and accelerated writers agree, every reader
        # gives the same value back
        cpt = encode(cls, json.loads(first), {"protocol": "compact"})
        ok = check(cpt == encode(cls, json.loads(first), {"protocol": "compact", "writer": "accel"}),
                   "%s: compact writers disagree" % name)
        for r in readers:
            if r != "accel" and len(data) > 2000000:
                continue
            t = ctext(decode(cls, cpt, {"reader": r, "protocol": "compact"}))
            ok = check(t == first, "%s: compact reader %s disagrees" % (name, r)) and ok
        print("%s %s compact (%d bytes)" % ("ok  " if ok else "FAIL", name, len(cpt)))

    at = load_module(ALLTYPES)
    for sname, j in ALLTYPES_VALUES:
        cls = find_struct(at, sname)
        want = ctext(canonicalise(cls, j))
        data = encode(cls, j, {})
        ok = True
        for r in readers:
            # no silent fallback to the generic reader, except where Python
            # Thrift cannot build the value (containers as set elements/keys)
            o = {"reader": r, "fallback": sname == "ContainerKeys"}
            got = ctext(decode(cls, data, o))
            ok = check(got == want, "alltypes %s via %s:\n  want %s\n  got  %s" % (sname, r, want, got)) and ok
        again = encode(cls, json.loads(want), {})
        ok = check(again == data, "alltypes %s: canonical re-encode differs" % sname) and ok
        print("%s alltypes %s round trip (%d bytes)" % ("ok  " if ok else "FAIL", sname, len(data)))
    for sname, j, hexwant in ALLTYPES_BYTES:
        got = encode(find_struct(at, sname), j, {}).hex()
        ok = check(got == hexwant, "alltypes %s bytes:\n  want %s\n  got  %s" % (sname, hexwant, got))
        print("%s alltypes %s known bytes" % ("ok  " if ok else "FAIL", sname))

    # --apply-defaults, trailing bytes, errors in --many, and the CLI itself.
    cls = find_struct(at, "AllTypes")
    d = decode(cls, bytes.fromhex("00"), {"apply_defaults": True, "reader": "generic"})
    ok = check(d.get("d_i32") == 42 and d.get("d_struct") == {"a": 7, "s": "seven"} and "f_bool" not in d,
               "generic reader --apply-defaults: %r" % d)
    ok = check(decode(cls, bytes.fromhex("00"), {}) == {}, "absent fields must stay absent") and ok
    try:
        decode(cls, bytes.fromhex("0000"), {})
        ok = check(False, "trailing byte not reported") and ok
    except InteropError:
        pass
    print("%s defaults / trailing bytes" % ("ok  " if ok else "FAIL"))
    ok = _cli_check(check)
    print("%s command line (--decode/--encode/--many, --apply-defaults)" % ("ok  " if ok else "FAIL"))

    print("selftest: %s" % ("%d FAILED" % fails if fails else "all passed"))
    return 1 if fails else 0


def _b64_to_hex(cls, doc):
    """data/*.json hold binary as base64; turn it into {"hex": ...} in place."""
    import base64
    for f in fields(cls):
        name = f[2]
        if name not in doc:
            continue
        if f[1] == TType.STRING and f[3] == "BINARY":
            doc[name] = {"hex": base64.b64decode(doc[name]).hex()}
        elif f[1] == TType.STRUCT:
            _b64_to_hex(f[3][0], doc[name])
        elif f[1] == TType.LIST and f[3][0] == TType.STRUCT:
            for e in doc[name]:
                _b64_to_hex(f[3][1][0], e)


def _cli_check(check):
    me = [sys.executable, os.path.abspath(__file__), "--thrift", ALLTYPES]
    ok = True

    def sh(extra, stdin):
        r = subprocess.run(me + extra, input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise InteropError("%s: %s" % (extra, r.stderr.decode(errors="replace")))
        return r.stdout

    val = {"a": 5, "s": "five"}
    b = sh(["--struct", "Inner", "--encode"], json.dumps(val).encode())
    ok = check(b.hex() == "08000100000005" "0b000200000004" + "66697665" + "00", "cli --encode: %s" % b.hex()) and ok
    t = sh(["--struct", "Inner", "--decode"], b)
    ok = check(t == (ctext(val) + "\n").encode(), "cli --decode: %r" % t) and ok
    hexes = json.loads(sh(["--struct", "Inner", "--encode", "--many"], json.dumps([val, {}, {"a": "x"}]).encode()))
    ok = check(len(hexes) == 3 and hexes[0] == b.hex() and hexes[1] == "00" and "$error" in hexes[2],
               "cli --encode --many: %r" % hexes) and ok
    vals = json.loads(sh(["--struct", "Inner", "--decode", "--many"], json.dumps([b.hex(), "00", "0800"]).encode()))
    ok = check(len(vals) == 3 and vals[0] == val and vals[1] == {} and "$error" in vals[2],
               "cli --decode --many: %r" % vals) and ok
    d = json.loads(sh(["--struct", "AllTypes", "--decode", "--apply-defaults"], b"\x00"))
    ok = check(d.get("d_i32") == 42 and d.get("d_struct") == {"a": 7, "s": "seven"} and d.get("d_set") == ["x", "y"],
               "cli --apply-defaults: %r" % d) and ok
    return ok


def main(argv):
    import argparse
    p = argparse.ArgumentParser(description="Python Thrift interop helper (see the module docstring).",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--thrift")
    p.add_argument("--struct")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--decode", action="store_true")
    g.add_argument("--encode", action="store_true")
    g.add_argument("--selftest", action="store_true")
    g.add_argument("--construct", action="store_true")
    p.add_argument("--many", action="store_true")
    p.add_argument("--protocol", choices=["binary", "compact"], default="binary")
    p.add_argument("--writer", choices=["pure", "accel"], default="pure")
    p.add_argument("--gen-dir")
    p.add_argument("--reader", choices=["accel", "pure", "generic"], default="accel")
    p.add_argument("--apply-defaults", action="store_true")
    p.add_argument("--keep-order", action="store_true")
    p.add_argument("--validate", action="store_true")
    p.add_argument("--allow-trailing", action="store_true")
    args = p.parse_args(argv)
    if args.selftest:
        return selftest()
    if not (args.thrift and (args.construct or (args.struct and (args.decode or args.encode)))):
        p.error("need --thrift, --struct and one of --decode/--encode (or --construct, --selftest)")
    try:
        return run(args)
    except Exception as e:  # noqa: BLE001
        print("pyinterop: %s: %s" % (type(e).__name__, str(e) or "(truncated input?)"),
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
