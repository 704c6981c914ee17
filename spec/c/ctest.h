/* ctest.h — a tiny C test harness.
 *
 * A test case is a function run with TEST(fn). CHECK(cond) inside it
 * reports a failed condition (file, line, text) and fails the case; a case
 * that calls SKIP("why %s", ...) because the machine lacks something (IPv6,
 * a kernel feature) counts as skipped unless a CHECK in it failed. The
 * binary's last line counts CASES, not checks:
 *   "N passed, N failed, N skipped (M checks)"
 * and it exits non-zero when a case failed. */
#ifndef CTEST_H
#define CTEST_H
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int ct_pass, ct_fail, ct_skip; /* cases */
static long ct_checks;                /* conditions evaluated */
static int ct_case_fails, ct_case_skipped;
static const char *ct_name = "";

#define CHECK(cond)                                                       \
  do {                                                                    \
    ct_checks++;                                                          \
    if (!(cond)) {                                                        \
      ct_case_fails++;                                                    \
      fprintf(stderr, "FAIL %s (%s:%d): %s\n", ct_name, __FILE__, __LINE__, \
              #cond);                                                     \
    }                                                                     \
  } while (0)

/* Marks the running case skipped and says why ("SKIP name: why"); the
 * case should return right after. */
static inline void SKIP(const char *fmt, ...) {
  va_list ap;
  ct_case_skipped = 1;
  printf("SKIP %s: ", ct_name);
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}

#define TEST(fn)                      \
  do {                                \
    ct_name = #fn;                    \
    ct_case_fails = 0;                \
    ct_case_skipped = 0;              \
    fn();                             \
    if (ct_case_fails)                \
      ct_fail++;                      \
    else if (ct_case_skipped)         \
      ct_skip++;                      \
    else                              \
      ct_pass++;                      \
  } while (0)

static inline int ct_report(void) {
  printf("%d passed, %d failed, %d skipped (%ld checks)\n", ct_pass, ct_fail,
         ct_skip, ct_checks);
  return ct_fail ? 1 : 0;
}
#endif
