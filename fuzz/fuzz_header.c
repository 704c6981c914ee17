/* fuzz_header.c — libFuzzer harness for the header frame parsers
 * (pt_frame_parse over every framing, pt_hdr_parse, pt_hdr_next), the
 * connection detector (pt_detect_wire) and the transforms' readers
 * (pt_xform_undo), make fuzz FUZZ_TARGET=header.
 *
 * Input: 2 control bytes (the framing, max_frame choice), then the bytes
 * a peer sent. Each input is parsed whole and at every prefix, each copy
 * in a block of exactly its size so ASan sees any read past it. Checked:
 *   - a prefix of a complete frame needs more bytes (never an error, never
 *     another size); a prefix refused means the whole is refused too;
 *   - a complete frame lies within the input, its payload within it, its
 *     info entries within the header (walked to the end, bounded count);
 *   - what is parsed is written back (pt_hdr_size / pt_hdr_write) and
 *     parses again to the same entries;
 *   - a frame's info blocks, copied out alone, are taken by pt_hdr_info
 *     with the same entries and deadline entry (pt_hdr_timeout), and any
 *     bytes given to pt_hdr_info are refused or walk within themselves;
 *   - a transform's undo stays under its bound;
 *   - detection decided on a prefix decides the same on the whole. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../csrc/pt_header.h"
#include "../csrc/pt_thrift.h"
#include "../csrc/pt_xform.h"

#define CHECK(c)                                                        \
  do {                                                                  \
    if (!(c)) {                                                         \
      fprintf(stderr, "fuzz_header: check failed at line %d: %s\n",     \
              __LINE__, #c);                                            \
      abort();                                                          \
    }                                                                   \
  } while (0)

static const pt_framing framings[] = {
    {0, 1, PT_HDR_NONE, 0},     {0, 0, PT_HDR_THEADER, 0},
    {0, 1, PT_HDR_THEADER, 0},  {0, 0, PT_HDR_TTHEADER, 0},
    {0, 0, PT_HDR_TTHEADER, 1}, {0, 1, PT_HDR_TTHEADER, 0},
};
#define NFRAMINGS (sizeof framings / sizeof *framings)

static int parse_copy(const pt_framing *f, const uint8_t *p, size_t n,
                      uint64_t max, pt_frame *fr) {
  unsigned char *c = malloc(n ? n : 1);
  memcpy(c, p, n);
  int r = pt_frame_parse(f, c, n, max, fr);
  free(c);
  return r;
}

/* Walk the entries of a parsed header frame; returns their count. */
static size_t walk(const unsigned char *frame, const pt_hdr *h,
                   pt_hdr_kv *out, size_t cap) {
  pt_hdr_iter it;
  pt_hdr_kv kv;
  size_t k = 0;
  unsigned sum = 0;
  pt_hdr_iter_init(h, &it);
  while (pt_hdr_next(frame, h, &it, &kv)) {
    CHECK(k <= h->nkv + 1);
    CHECK(kv.vlen <= h->frame_len);
    if (kv.vlen) {
      CHECK(kv.v >= frame + h->info_at && kv.v + kv.vlen <= frame + h->info_end);
      sum += kv.v[0] + kv.v[kv.vlen - 1];
    }
    if (kv.type == PT_INFO_KV && kv.klen) {
      CHECK(kv.k >= frame + h->info_at && kv.k + kv.klen <= frame + h->info_end);
      sum += kv.k[0] + kv.k[kv.klen - 1];
    }
    if (k < cap) out[k] = kv;
    k++;
  }
  (void)sum;
  return k;
}

static void rewrite(const unsigned char *frame, const pt_hdr *h,
                    const unsigned char *payload, size_t plen) {
  pt_hdr_kv kv[64];
  size_t k = walk(frame, h, kv, 64);
  if (k > 64) return;
  pt_hdr_out o;
  memset(&o, 0, sizeof o);
  o.kind = h->kind;
  o.flags = h->flags;
  o.seqid = h->seqid;
  o.proto_id = h->proto_id;
  o.nxf = h->nxf;
  memcpy(o.xf, h->xf, sizeof o.xf);
  o.kv = kv;
  o.nkv = k;
  if (h->proto_id > 0xff && h->kind == PT_HDR_TTHEADER) return;
  size_t s = pt_hdr_size(&o);
  if (!s) return;
  unsigned char *w = malloc(s + plen);
  unsigned char *e = pt_hdr_write(w, &o);
  CHECK((size_t)(e - w) == s);
  memcpy(e, payload, plen);
  pt_hdr_set_len(w, s + plen);
  pt_hdr h2;
  int r = pt_hdr_parse(w, s + plen, (uint64_t)1 << 31, &h2);
  CHECK(r == (int)(s + plen));
  CHECK(h2.kind == h->kind && h2.seqid == h->seqid && h2.nxf == h->nxf);
  pt_hdr_kv kv2[64];
  size_t k2 = walk(w, &h2, kv2, 64);
  CHECK(k2 == k);
  for (size_t i = 0; i < k; i++) {
    CHECK(kv2[i].type == kv[i].type || h->kind == PT_HDR_TTHEADER);
    CHECK(kv2[i].vlen == kv[i].vlen);
  }
  free(w);
}

/* n bytes at p as info blocks of this kind (pt_hdr_info), in a block of
 * exactly their size: refused, or their entries and deadline entry lie
 * within them. Returns the entry count (walk), or -1 when refused. */
static long info_alone(int kind, const unsigned char *p, size_t n,
                       const unsigned char **tv, uint32_t *tl) {
  unsigned char *c = malloc(n ? n : 1);
  memcpy(c, p, n);
  pt_hdr h;
  long k = -1;
  *tv = NULL;
  *tl = 0;
  if (pt_hdr_info(kind, c, n, &h) == 0) {
    CHECK(h.info_at == 0 && h.info_end <= n);
    pt_hdr_kv kv[1];
    k = (long)walk(c, &h, kv, 0);
    CHECK((size_t)k >= h.nkv); /* and the ACL tokens */
    const unsigned char *v;
    uint32_t vl;
    if (pt_hdr_timeout(c, &h, &v, &vl)) {
      CHECK(v >= c && v + vl <= c + n);
      *tv = p + (v - c);
      *tl = vl;
    }
  } else {
    CHECK(h.why != NULL);
  }
  free(c);
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  const pt_framing *f = &framings[data[0] % NFRAMINGS];
  uint64_t max;
  switch (data[1] & 3) {
    case 0: max = 1 + (data[1] >> 2) * 64u; break;
    case 1: max = 16u << 20; break;
    case 2: max = size; break;
    default: max = (uint64_t)1 << 31; break;
  }
  const uint8_t *p = data + 2;
  size_t n = size - 2;

  pt_frame whole;
  int rw = parse_copy(f, p, n, max, &whole);
  CHECK(rw == PT_NEED || rw == PT_BAD || (rw > 0 && (size_t)rw <= n));
  /* every prefix up to 512 bytes, then 32 spread over the rest, and the
   * one before a complete frame's end */
  size_t step = n > 512 ? (n - 512) / 32 + 1 : 1;
  for (size_t k = 0; k < n; k = k < 512 ? k + 1 : k + step) {
    pt_frame pf;
    int r = parse_copy(f, p, k, max, &pf);
    if (rw > 0 && k < (size_t)rw) CHECK(r == PT_NEED);
    if (r == PT_BAD) CHECK(rw == PT_BAD);
    if (r > 0) CHECK(r == rw);
  }
  if (rw > 0) {
    pt_frame pf;
    CHECK(parse_copy(f, p, (size_t)rw - 1, max, &pf) == PT_NEED);
    CHECK(whole.payload_at + whole.payload_len <= (size_t)rw);
    if (f->header) {
      const unsigned char *frame = p + (f->outer ? 4 : 0);
      const pt_hdr *h = &whole.hdr;
      CHECK(h->info_at <= h->info_end && h->info_end <= h->payload_at);
      CHECK(h->nxf >= 0 && h->nxf <= PT_HDR_MAX_XFORMS);
      pt_hdr_kv kv[1];
      size_t k = walk(frame, h, kv, 0);
      rewrite(frame, h, p + whole.payload_at, whole.payload_len);
      /* the info blocks alone (what a server's framer keeps for
       * petrel.context): the same entries, the same deadline entry */
      const unsigned char *tv, *fv = NULL;
      uint32_t tl, fl = 0;
      long ka = info_alone(h->kind, frame + h->info_at, h->info_end - h->info_at, &tv, &tl);
      CHECK(ka == (long)k);
      CHECK(pt_hdr_timeout(frame, h, &fv, &fl) == (tv != NULL));
      if (tv) CHECK(fv == tv && fl == tl);
      for (int i = 0; i < h->nxf; i++) {
        if (!pt_xform_built(h->xf[i])) continue;
        unsigned char *out = NULL;
        size_t outn = 0;
        const char *why = NULL;
        if (pt_xform_undo(h->xf[i], p + whole.payload_at, whole.payload_len,
                          1u << 20, &out, &outn, &why) == 0) {
          CHECK(outn <= 1u << 20);
          free(out);
        } else {
          CHECK(why != NULL);
        }
      }
    }
  }

  /* any bytes as info blocks of either kind */
  {
    const unsigned char *tv;
    uint32_t tl;
    info_alone(PT_HDR_THEADER, p, n, &tv, &tl);
    info_alone(PT_HDR_TTHEADER, p, n, &tv, &tl);
  }

  /* detection: a decision on a prefix is the decision on the whole */
  pt_detect dw;
  int dr = pt_detect_wire(p, n, max, 65536, &dw);
  for (size_t k = 1; k < n && k < 64; k++) {
    pt_detect d;
    unsigned char *c = malloc(k);
    memcpy(c, p, k);
    int r = pt_detect_wire(c, k, max, 65536, &d);
    free(c);
    if (r == 1) {
      CHECK(dr == 1);
      CHECK(d.wire == dw.wire);
      if (d.wire == PT_WIRE_THRIFT)
        CHECK(d.transport == dw.transport && d.header == dw.header &&
              d.proto == dw.proto);
    }
  }
  return 0;
}
