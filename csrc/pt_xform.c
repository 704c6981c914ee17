/*
 * pt_xform.c — zlib and zstd payload transforms (see pt_xform.h).
 * Decompression grows its output by doubling, up to max_out, so a small
 * frame that claims to inflate to gigabytes costs at most max_out.
 */
#include "pt_xform.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#if PT_HAVE_ZSTD
#include <zstd.h>
#endif

#include "pt_header.h"

uint32_t pt_xform_id(const char *name) {
  if (strcmp(name, "zlib") == 0) return PT_XF_ZLIB;
  if (strcmp(name, "zstd") == 0) return PT_XF_ZSTD;
  return 0;
}

const char *pt_xform_name(uint32_t id) {
  return id == PT_XF_ZLIB ? "zlib" : id == PT_XF_ZSTD ? "zstd" : NULL;
}

int pt_xform_built(uint32_t id) {
  if (id == PT_XF_ZLIB) return 1;
#if PT_HAVE_ZSTD
  if (id == PT_XF_ZSTD) return 1;
#endif
  return 0;
}

int pt_xform_apply(uint32_t id, const void *in, size_t n, unsigned char **out,
                   size_t *outn) {
  *out = NULL;
  if (id == PT_XF_ZLIB) {
    if (n > 0x7fffffffu) return -1;
    uLongf cap = compressBound((uLong)n);
    unsigned char *b = malloc(cap ? cap : 1);
    if (!b) return -1;
    if (compress2(b, &cap, in, (uLong)n, Z_DEFAULT_COMPRESSION) != Z_OK) {
      free(b);
      return -1;
    }
    *out = b;
    *outn = cap;
    return 0;
  }
#if PT_HAVE_ZSTD
  if (id == PT_XF_ZSTD) {
    size_t cap = ZSTD_compressBound(n);
    unsigned char *b = malloc(cap ? cap : 1);
    if (!b) return -1;
    size_t r = ZSTD_compress(b, cap, in, n, 1);
    if (ZSTD_isError(r)) {
      free(b);
      return -1;
    }
    *out = b;
    *outn = r;
    return 0;
  }
#endif
  return -1;
}

/* Grow *b (of *cap bytes, *used used) to hold more, at most max. */
static int grow(unsigned char **b, size_t *cap, size_t max) {
  if (*cap >= max) return -1;
  size_t nc = *cap ? *cap * 2 : 4096;
  if (nc > max) nc = max;
  unsigned char *q = realloc(*b, nc ? nc : 1);
  if (!q) return -1;
  *b = q;
  *cap = nc;
  return 0;
}

int pt_xform_undo(uint32_t id, const void *in, size_t n, size_t max_out,
                  unsigned char **out, size_t *outn, const char **why) {
  *out = NULL;
  unsigned char *b = NULL;
  size_t cap = 0, used = 0;
  if (id == PT_XF_ZLIB) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (n > 0x7fffffffu || inflateInit(&z) != Z_OK) {
      *why = "zlib: cannot start";
      return -1;
    }
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)n;
    int r = Z_OK;
    while (r != Z_STREAM_END) {
      if (used == cap && grow(&b, &cap, max_out)) {
        *why = cap >= max_out ? "zlib: the payload inflates past max_frame"
                              : "zlib: out of memory";
        goto zfail;
      }
      z.next_out = b + used;
      z.avail_out = (uInt)(cap - used);
      r = inflate(&z, Z_NO_FLUSH);
      used = cap - z.avail_out;
      if (r == Z_STREAM_END) break;
      if (r != Z_OK && !(r == Z_BUF_ERROR && z.avail_out == 0)) {
        *why = r == Z_BUF_ERROR ? "zlib: payload cut short" : "zlib: bad payload";
        goto zfail;
      }
    }
    if (z.avail_in) {
      *why = "zlib: bytes after the compressed payload";
      goto zfail;
    }
    inflateEnd(&z);
    *out = b;
    *outn = used;
    return 0;
  zfail:
    inflateEnd(&z);
    free(b);
    return -1;
  }
#if PT_HAVE_ZSTD
  if (id == PT_XF_ZSTD) {
    ZSTD_DStream *d = ZSTD_createDStream();
    if (!d) {
      *why = "zstd: out of memory";
      return -1;
    }
    ZSTD_inBuffer ib = {in, n, 0};
    size_t r = 1;
    while (r != 0) {
      if (used == cap && grow(&b, &cap, max_out)) {
        *why = cap >= max_out ? "zstd: the payload inflates past max_frame"
                              : "zstd: out of memory";
        goto dfail;
      }
      ZSTD_outBuffer ob = {b, cap, used};
      r = ZSTD_decompressStream(d, &ob, &ib);
      used = ob.pos;
      if (ZSTD_isError(r)) {
        *why = "zstd: bad payload";
        goto dfail;
      }
      if (r != 0 && ib.pos == ib.size && ob.pos < ob.size) {
        *why = "zstd: payload cut short";
        goto dfail;
      }
    }
    if (ib.pos != ib.size) {
      *why = "zstd: bytes after the compressed payload";
      goto dfail;
    }
    ZSTD_freeDStream(d);
    *out = b;
    *outn = used;
    return 0;
  dfail:
    ZSTD_freeDStream(d);
    free(b);
    return -1;
  }
#endif
  *why = "transform not built in";
  return -1;
}
