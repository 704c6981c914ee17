/*
 * pt_xform.h — payload transforms of header frames (pt_header.h): zlib
 * (Apache's id 1, zlib format as Python's zlib.compress writes it) and
 * zstd (id 5, as fbthrift numbers it; a petrel extension that a build
 * without libzstd does not have). No Lua here.
 */
#ifndef PT_XFORM_H
#define PT_XFORM_H

#include <stddef.h>
#include <stdint.h>

/* The id of a transform's name ("zlib", "zstd"), 0 if none; its name, NULL
 * if none; whether this build has it. */
uint32_t pt_xform_id(const char *name);
const char *pt_xform_name(uint32_t id);
int pt_xform_built(uint32_t id);

/* Compress n bytes at in into a new malloc'd block (*out, *outn). 0, or
 * -1 (no memory, no such transform in this build). */
int pt_xform_apply(uint32_t id, const void *in, size_t n, unsigned char **out,
                   size_t *outn);
/* Decompress: the result may be at most max_out bytes (a larger one is
 * refused as it grows, never allocated whole). 0, or -1 with *why. */
int pt_xform_undo(uint32_t id, const void *in, size_t n, size_t max_out,
                  unsigned char **out, size_t *outn, const char **why);

#endif
