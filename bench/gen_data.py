#!/usr/bin/python3
"""Deterministic generator for the canonical benchmark messages.

Run with the system interpreter (it needs python3-thrift):

    /usr/bin/python3 gen_data.py [--out DIR] [--check]

It generates Python code for workload.thrift with `thrift --gen py` into a
temporary directory (nothing generated is kept), builds the messages from
fixed formulas and a fixed-seed SplitMix64 PRNG (no wall clock, no
`random` module), and writes, per message NAME:

    data/NAME.bin   Thrift Binary protocol bytes of the struct alone
                    (no message header, no framing)
    data/NAME.json  the equivalent JSON document (small, medium, large,
                    mytest, vectors; not blob)
    data/README.md  sizes, element counts, sha256 and how to regenerate
    data/SHA256SUMS the sums of all of these (`sha256sum -c SHA256SUMS`)

--check  regenerate into a temp dir and compare sha256 with DIR (exit 1 on
         any difference); used to prove reproducibility.

Canonical-order rules (so that every peer can round-trip byte-identically):
  * map keys are ASCII, inserted in ascending byte order (C++ std::map order,
    Python dict insertion order, JS object order for non-numeric keys);
  * set<i32> values are non-negative, ascending, and chosen so that CPython's
    set iteration order after decode equals ascending order (asserted below);
  * every non-optional field is set; optional fields are set where stated.
"""

import base64
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
IDL = os.path.join(HERE, "workload.thrift")
MASK64 = (1 << 64) - 1
INT64_MIN = -(1 << 63)
INT64_MAX = (1 << 63) - 1


# --------------------------------------------------------------------------
# Deterministic PRNG (SplitMix64; independent of the Python version)
# --------------------------------------------------------------------------
class SplitMix64:
    def __init__(self, seed):
        self.s = seed & MASK64

    def next(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & MASK64
        z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, n):
        return self.next() % n

    def i64_mixed(self):
        """Mixed magnitude (bit width 0..63) and sign."""
        r = self.next()
        width = r & 63
        neg = (r >> 6) & 1
        v = self.next() >> (64 - width) if width else 0
        return -v - 1 if neg else v  # covers INT64_MIN..INT64_MAX

    def i32_mixed(self):
        r = self.next()
        width = r & 31
        neg = (r >> 5) & 1
        v = (self.next() >> (64 - width)) if width else 0
        return -v - 1 if neg else v

    def unit(self):
        return (self.next() >> 11) * (1.0 / (1 << 53))

    def f64_mixed(self):
        """Finite, non-NaN doubles; 3/4 moderate, 1/4 any exponent."""
        r = self.next()
        if r & 3:
            scale = 10.0 ** ((r >> 2) % 13 - 6)  # 1e-6 .. 1e6
            v = (self.unit() * 2.0 - 1.0) * scale
        else:
            exp = 1 + self.below(2046)  # normal numbers only
            bits = ((r >> 63) << 63) | (exp << 52) | (self.next() & ((1 << 52) - 1))
            v = struct.unpack("<d", struct.pack("<Q", bits))[0]
        return v

    def bytes(self, n):
        out = bytearray()
        while len(out) < n:
            out += struct.pack("<Q", self.next())
        return bytes(out[:n])


WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo "
         "lima mike november oscar papa quebec romeo sierra tango uniform "
         "victor whiskey xray yankee zulu thrift codec lua buffer kernel "
         "vector struct field binary string").split()
UNICODE_WORDS = ["café", "naïve", "Ünïcödé", "日本語", "über", "Ελληνικά",
                 "русский", "🚀rocket"]


def words(rng, n, unicode_every=0, salt=0):
    out = []
    for i in range(n):
        if unicode_every and (i + salt) % unicode_every == 0:
            out.append(UNICODE_WORDS[rng.below(len(UNICODE_WORDS))])
        else:
            out.append(WORDS[rng.below(len(WORDS))])
    return " ".join(out)


def ordered_set(values):
    """Build a set the way a decoder does (sequential add) and assert its
    iteration order equals ascending order, so Python re-encodes the
    canonical bytes."""
    values = sorted(values)
    s = set()
    for v in values:
        s.add(v)
    assert list(s) == values, "set iteration order != ascending"
    assert all(0 <= v < 2**31 for v in values)
    return s


# --------------------------------------------------------------------------
# Message builders
# --------------------------------------------------------------------------
def build_request(T, rng, n_ids, n_items, n_tags, title_words, n_attrs,
                  n_flags, n_extra, thumb_every, thumb_len, unicode_every):
    items = []
    for i in range(n_items):
        tags = ["tag_%s_%d" % (WORDS[rng.below(len(WORDS))], rng.below(1000))
                for _ in range(n_tags)]
        it = T.Item(
            id=rng.i64_mixed(),
            title=words(rng, title_words, unicode_every, i),
            score=(rng.unit() * 2.0 - 1.0) * 1000.0,
            tags=tags,
            active=bool(rng.next() & 1),
            rank=rng.i32_mixed(),
        )
        if thumb_every and i % thumb_every == thumb_every - 1:
            it.thumb = rng.bytes(thumb_len)
        items.append(it)
    item_ids = [rng.i64_mixed() for _ in range(n_ids)]
    # a few extremes so that every peer meets the i64 edge cases
    for k, v in enumerate((INT64_MIN, INT64_MAX, -1, 0, 1 << 53, (1 << 53) + 1)):
        if k < n_ids:
            item_ids[(k * 7) % n_ids] = v
    attrs = {}
    for k in range(n_attrs):  # ascending ASCII keys, inserted in order
        attrs["attr_%06d" % k] = words(rng, 1 + rng.below(4))
    flags = ordered_set(2 * k + (k % 3 == 0) for k in range(n_flags))
    extra = {}
    for k in range(n_extra):
        extra["x_%04d" % k] = "v%016x" % rng.next()
    base = T.Base(LogID="20240101-%016x" % rng.next(), Caller="svc.frontend",
                  Addr="10.0.%d.%d:8888" % (rng.below(256), rng.below(256)),
                  Client="lua-bench/1.0", Extra=extra)
    return T.Request(
        user_id=-7340032000123456789,
        query="search: " + words(rng, 4, 2, 0),  # contains non-ASCII UTF-8
        item_ids=item_ids,
        items=items,
        attrs=attrs,
        flags=flags,
        status=T.Status.PARTIAL,
        shard=-1234,
        priority=-7,
        base=base,
    )


def build_all(T):
    msgs = {}
    msgs["small"] = build_request(
        T, SplitMix64(1), n_ids=20, n_items=3, n_tags=3, title_words=4,
        n_attrs=5, n_flags=4, n_extra=2, thumb_every=0, thumb_len=0,
        unicode_every=0)
    msgs["medium"] = build_request(
        T, SplitMix64(2), n_ids=400, n_items=85, n_tags=4, title_words=5,
        n_attrs=60, n_flags=32, n_extra=8, thumb_every=25, thumb_len=512,
        unicode_every=7)
    msgs["large"] = build_request(
        T, SplitMix64(3), n_ids=80000, n_items=26000, n_tags=4,
        title_words=6, n_attrs=8000, n_flags=1000, n_extra=16,
        thumb_every=10, thumb_len=384, unicode_every=7)
    rng = SplitMix64(4)
    nums = [rng.i64_mixed() for _ in range(131072)]
    for k, v in enumerate((INT64_MIN, INT64_MAX, -1, 0)):
        nums[k * 4096] = v
    msgs["mytest"] = T.MyTest(Num=1234567890123, Ano=T.Ano(Num=-42), Nums=nums)
    rng = SplitMix64(5)
    msgs["blob"] = T.Blob(name="blob-1MiB", data=rng.bytes(1 << 20))
    rng = SplitMix64(6)
    n = 262144
    msgs["vectors"] = T.Vectors(
        i32s=[rng.i32_mixed() for _ in range(n)],
        i64s=[rng.i64_mixed() for _ in range(n)],
        f64s=[rng.f64_mixed() for _ in range(n)],
    )
    return msgs


# --------------------------------------------------------------------------
# JSON equivalents (what a Lua user with lua-cjson would hold)
# --------------------------------------------------------------------------
def to_json_obj(m):
    name = type(m).__name__
    if name == "Request":
        return {
            "user_id": m.user_id, "query": m.query, "item_ids": m.item_ids,
            "items": [item_json(i) for i in m.items],
            "attrs": m.attrs, "flags": sorted(m.flags), "status": m.status,
            "shard": m.shard, "priority": m.priority,
            "base": {"LogID": m.base.LogID, "Caller": m.base.Caller,
                     "Addr": m.base.Addr, "Client": m.base.Client,
                     "Extra": m.base.Extra},
        }
    if name == "MyTest":
        return {"Num": m.Num, "Ano": {"Num": m.Ano.Num}, "Nums": m.Nums}
    if name == "Vectors":
        return {"i32s": m.i32s, "i64s": m.i64s, "f64s": m.f64s}
    return None


def item_json(i):
    d = {"id": i.id, "title": i.title, "score": i.score, "tags": i.tags,
         "active": i.active, "rank": i.rank}
    if i.thumb is not None:
        d["thumb"] = base64.b64encode(i.thumb).decode("ascii")
    return d


# --------------------------------------------------------------------------
def load_generated():
    tmp = tempfile.mkdtemp(prefix="bench-genpy-")
    subprocess.run(["thrift", "--gen", "py", "-out", tmp, IDL], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sys.path.insert(0, tmp)
    import bench.ttypes as T  # noqa: E402
    return T, tmp


def serialize(m):
    from thrift.transport import TTransport
    from thrift.protocol import TBinaryProtocol
    tr = TTransport.TMemoryBuffer()
    m.write(TBinaryProtocol.TBinaryProtocol(tr))  # pure-Python reference
    out = tr.getvalue()
    tr2 = TTransport.TMemoryBuffer()
    m.write(TBinaryProtocol.TBinaryProtocolAccelerated(tr2))
    assert tr2.getvalue() == out, "accelerated encoder disagrees"
    return out


def counts(m):
    name = type(m).__name__
    if name == "Request":
        n_thumb = sum(1 for i in m.items if i.thumb is not None)
        big = sum(1 for v in m.item_ids + [i.id for i in m.items]
                  if abs(v) > 2**53)
        thumbs = ("%d with a %d-byte thumb" % (n_thumb, max(len(i.thumb) for i in m.items if i.thumb))
                  if n_thumb else "no thumbs")
        return ("item_ids=%d, items=%d (%d tags each; %s), "
                "attrs=%d, flags=%d, base.Extra=%d; i64 values with abs(v)>2^53: %d"
                % (len(m.item_ids), len(m.items), len(m.items[0].tags), thumbs,
                   len(m.attrs), len(m.flags), len(m.base.Extra), big))
    if name == "MyTest":
        big = sum(1 for v in m.Nums if abs(v) > 2**53)
        return "Nums=%d i64 (abs(v)>2^53: %d)" % (len(m.Nums), big)
    if name == "Blob":
        return "data=%d bytes, name=%r" % (len(m.data), m.name)
    if name == "Vectors":
        big = sum(1 for v in m.i64s if abs(v) > 2**53)
        return ("i32s=%d, i64s=%d (abs(v)>2^53: %d), f64s=%d"
                % (len(m.i32s), len(m.i64s), big, len(m.f64s)))
    return ""


def write_all(outdir):
    T, tmp = load_generated()
    try:
        msgs = build_all(T)
        os.makedirs(outdir, exist_ok=True)
        rows = []
        for name, m in msgs.items():
            b = serialize(m)
            path = os.path.join(outdir, name + ".bin")
            with open(path, "wb") as f:
                f.write(b)
            jrow = None
            jo = to_json_obj(m)
            if jo is not None:
                js = json.dumps(jo, ensure_ascii=False, separators=(",", ":"),
                                allow_nan=False).encode("utf-8")
                with open(os.path.join(outdir, name + ".json"), "wb") as f:
                    f.write(js)
                jrow = (len(js), hashlib.sha256(js).hexdigest())
            rows.append((name, type(m).__name__, counts(m), len(b),
                         hashlib.sha256(b).hexdigest(), jrow))
        write_readme(outdir, rows)
        write_sums(outdir)
        return rows
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_readme(outdir, rows):
    L = []
    L.append("# Canonical benchmark messages\n")
    L.append("Generated by `../gen_data.py` from `../workload.thrift`; do not edit.\n")
    L.append("Regenerate (deterministic, no wall clock; identical sha256 every run):\n")
    L.append("    /usr/bin/python3 gen_data.py")
    L.append("    /usr/bin/python3 gen_data.py --check   # verify\n")
    L.append("`NAME.bin` is Thrift Binary protocol (big-endian, exactly as TBinaryProtocol "
             "writes a struct) of the struct alone: no message header, no framing.")
    L.append("`NAME.json` is the equivalent JSON document (field names as in the IDL; "
             "`binary` as base64 text; set as ascending array; i64 as JSON integers, "
             "which lose precision in any reader that maps numbers to doubles).\n")
    L.append("Canonical order: map keys ascending ASCII, set<i32> ascending non-negative "
             "(chosen so CPython's set iteration order after decode is ascending), all "
             "non-optional fields set. Thus C++ (std::map/std::set), Python and Node "
             "re-encode byte-identically.\n")
    L.append("| file | struct | contents | bytes | sha256 |")
    L.append("|---|---|---|---:|---|")
    for name, sname, cnt, size, sha, jrow in rows:
        L.append("| %s.bin | %s | %s | %d | `%s` |" % (name, sname, cnt, size, sha))
        if jrow:
            L.append("| %s.json | %s (JSON) | same values | %d | `%s` |"
                     % (name, sname, jrow[0], jrow[1]))
    L.append("\nValues: SplitMix64 PRNG, seeds 1..6 for small, medium, large, mytest, blob, vectors.\n")
    L.append("- i64 (item_ids, Item.id, MyTest.Nums, Vectors.i64s): bit width uniform in 0..63, "
             "random sign; item_ids and Nums also hold INT64_MIN, INT64_MAX, -1, 0 "
             "(item_ids: 2^53 and 2^53+1 too); user_id = -7340032000123456789. "
             "i32 (rank, Vectors.i32s): bit width 0..31, random sign.")
    L.append("- double: Item.score uniform in (-1000, 1000); Vectors.f64s finite and non-NaN, 3/4 at "
             "scales 1e-6..1e6, 1/4 with any normal exponent.")
    L.append("- strings: words from a fixed list; small's `query` holds Cyrillic and Japanese UTF-8; "
             "in medium/large about every 7th title word is non-ASCII (including a 4-byte emoji). "
             "shard=-1234, priority=-7, status=PARTIAL.")
    L.append("- blob.data and thumbs: PRNG bytes.")
    with open(os.path.join(outdir, "README.md"), "w") as f:
        f.write("\n".join(L) + "\n")


def write_sums(outdir):
    """SHA256SUMS in sha256sum(1) format, so `sha256sum -c` checks the data."""
    lines = []
    for fn in sorted(os.listdir(outdir)):
        if fn == "SHA256SUMS":
            continue
        with open(os.path.join(outdir, fn), "rb") as f:
            lines.append("%s  %s\n" % (hashlib.sha256(f.read()).hexdigest(), fn))
    with open(os.path.join(outdir, "SHA256SUMS"), "w") as f:
        f.write("".join(lines))


def sha_dir(d):
    out = {}
    for fn in sorted(os.listdir(d)):
        with open(os.path.join(d, fn), "rb") as f:
            out[fn] = hashlib.sha256(f.read()).hexdigest()
    return out


def main():
    args = sys.argv[1:]
    outdir = os.path.join(HERE, "data")
    if "--out" in args:
        outdir = args[args.index("--out") + 1]
    if "--check" in args:
        tmpout = tempfile.mkdtemp(prefix="bench-gencheck-")
        try:
            write_all(tmpout)
            a, b = sha_dir(outdir), sha_dir(tmpout)
            bad = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            for k in sorted(b):
                print("%s  %s" % (b[k], k))
            if bad:
                print("MISMATCH:", ", ".join(bad))
                sys.exit(1)
            print("reproducible: %d files identical" % len(b))
        finally:
            shutil.rmtree(tmpout, ignore_errors=True)
        return
    rows = write_all(outdir)
    for name, sname, cnt, size, sha, jrow in rows:
        print("%-8s %-8s %9d B  %s" % (name, sname, size, sha))


if __name__ == "__main__":
    main()
