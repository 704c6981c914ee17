/* ctest.h — a tiny C test harness. Each CHECK counts; the binary prints
 * "N passed, N failed" and exits non-zero on any failure. */
#ifndef CTEST_H
#define CTEST_H
#include <stdio.h>
#include <stdlib.h>

static int ct_pass, ct_fail;
static const char *ct_name = "";

#define CHECK(cond)                                                       \
  do {                                                                    \
    if (cond) {                                                           \
      ct_pass++;                                                          \
    } else {                                                              \
      ct_fail++;                                                          \
      fprintf(stderr, "FAIL %s (%s:%d): %s\n", ct_name, __FILE__, __LINE__, \
              #cond);                                                     \
    }                                                                     \
  } while (0)

#define TEST(fn)          \
  do {                    \
    ct_name = #fn;        \
    fn();                 \
  } while (0)

static inline int ct_report(void) {
  printf("%d passed, %d failed\n", ct_pass, ct_fail);
  return ct_fail ? 1 : 0;
}
#endif
