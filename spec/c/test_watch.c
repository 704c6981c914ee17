/* test_watch.c — pt_loop_watch: readiness of fds the loop does not own
 * (pipes, a pseudo-terminal), on both back ends (io_uring skipped loudly
 * where the kernel or the build lacks it). Every wait is bounded. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ctest.h"
#include "pt_loop.h"

#define NEV 64
static pt_event evs[NEV];
static int BE; /* the back end under test (PETREL_BACKEND, as test_loop) */

static int64_t ms_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pt_loop *new_loop(void) {
  pt_loop_opts o;
  memset(&o, 0, sizeof o);
  o.backend = BE;
  return pt_loop_new(NULL, &o);
}

/* Poll for up to ms; the READY bits seen for id (0: none), how many
 * READYs, and whether a CLOSED for id came. Stops at the first READY when
 * stop is set. */
typedef struct seen {
  uint32_t bits;
  int readies, closed, timers;
} seen;

static seen poll_for(pt_loop *l, uint64_t id, int ms, int stop) {
  seen s = {0, 0, 0, 0};
  int64_t end = ms_now() + ms;
  while (ms_now() < end) {
    int n = pt_loop_poll(l, evs, NEV, 10);
    if (n < 0) {
      CHECK(n >= 0);
      break;
    }
    for (int i = 0; i < n; i++) {
      if (evs[i].type == PT_EV_READY && evs[i].id == id) {
        s.bits |= (uint32_t)evs[i].arg;
        s.readies++;
      }
      if (evs[i].type == PT_EV_CLOSED && evs[i].id == id) s.closed++;
      if (evs[i].type == PT_EV_TIMER) s.timers++;
    }
    if (stop && s.readies) break;
  }
  return s;
}

/* A pipe: nothing while empty; READY (IN) once written, again while bytes
 * remain, none once read; HUP after the writer closes; the caller's fd
 * stays open with its flags as they were. */
static void test_pipe_read(void) {
  pt_loop *l = new_loop();
  CHECK(l != NULL);
  if (!l) return;
  int p[2];
  CHECK(pipe(p) == 0);
  int flags = fcntl(p[0], F_GETFL);
  pt_conn *w = pt_loop_watch(l, p[0], PT_WATCH_IN);
  CHECK(w != NULL);
  if (!w) return;
  CHECK(w->kind == PT_KIND_WATCH);
  uint64_t id = w->id;
  pt_loop_stats st;
  pt_loop_stats_get(l, &st);
  CHECK(st.conns_open == 0); /* a watch is not a stream */
  seen s = poll_for(l, id, 150, 0);
  CHECK(s.readies == 0);
  CHECK(write(p[1], "ab", 2) == 2);
  s = poll_for(l, id, 3000, 1);
  CHECK(s.readies >= 1);
  CHECK(s.bits & PT_WATCH_IN);
  /* level-triggered: still readable, told again */
  s = poll_for(l, id, 3000, 1);
  CHECK(s.readies >= 1);
  char buf[8];
  CHECK(read(p[0], buf, sizeof buf) == 2);
  CHECK(memcmp(buf, "ab", 2) == 0);
  /* a READY of the round before the read may still be queued: drain */
  poll_for(l, id, 50, 0);
  s = poll_for(l, id, 150, 0);
  CHECK(s.readies == 0);
  close(p[1]);
  s = poll_for(l, id, 3000, 1);
  CHECK(s.readies >= 1);
  CHECK(s.bits & PT_WATCH_HUP);
  CHECK(read(p[0], buf, sizeof buf) == 0); /* EOF, as the bits said */
  pt_conn_close(w, 0);
  s = poll_for(l, id, 100, 0);
  CHECK(s.readies == 0 && s.closed == 0); /* stopped: nothing follows */
  CHECK(fcntl(p[0], F_GETFD) >= 0);       /* the caller's fd is open */
  CHECK(fcntl(p[0], F_GETFL) == flags);   /* and its flags untouched */
  close(p[0]);
  pt_loop_free(l);
}

/* Writability, and a watch for both directions. */
static void test_pipe_write(void) {
  pt_loop *l = new_loop();
  CHECK(l != NULL);
  if (!l) return;
  int p[2];
  CHECK(pipe(p) == 0);
  pt_conn *w = pt_loop_watch(l, p[1], PT_WATCH_OUT);
  CHECK(w != NULL);
  if (!w) return;
  seen s = poll_for(l, w->id, 3000, 1);
  CHECK(s.readies >= 1);
  CHECK(s.bits & PT_WATCH_OUT);
  CHECK(!(s.bits & PT_WATCH_IN));
  pt_conn_close(w, 0);
  close(p[0]); /* the reader is gone: the writer's end reports an error */
  pt_conn *w2 = pt_loop_watch(l, p[1], PT_WATCH_OUT);
  CHECK(w2 != NULL);
  if (w2) {
    s = poll_for(l, w2->id, 3000, 0);
    CHECK(s.closed == 1); /* POLLERR closes the watch */
  }
  close(p[1]);
  pt_loop_free(l);
}

/* A pseudo-terminal (what a REPL's stdin is): input typed on the master
 * side makes the slave readable; timers fire meanwhile. */
static void test_pty(void) {
  int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (m < 0 || grantpt(m) != 0 || unlockpt(m) != 0) {
    SKIP("no pseudo-terminal: %s", strerror(errno));
    if (m >= 0) close(m);
    return;
  }
  int sl = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
  CHECK(sl >= 0);
  pt_loop *l = new_loop();
  CHECK(l != NULL);
  if (!l || sl < 0) return;
  pt_conn *w = pt_loop_watch(l, sl, PT_WATCH_IN);
  CHECK(w != NULL);
  if (!w) return;
  pt_loop_timer(l, 30);
  seen s = poll_for(l, w->id, 200, 0);
  CHECK(s.readies == 0);
  CHECK(s.timers == 1); /* the loop runs while the terminal is quiet */
  CHECK(write(m, "hi\n", 3) == 3);
  s = poll_for(l, w->id, 3000, 1);
  CHECK(s.readies >= 1 && (s.bits & PT_WATCH_IN));
  char buf[16];
  ssize_t n = read(sl, buf, sizeof buf);
  CHECK(n == 3 && memcmp(buf, "hi\n", 3) == 0);
  pt_conn_close(w, 0);
  pt_loop_free(l);
  close(sl);
  close(m);
}

/* Misuse: regular files, no events, closed fds. */
static void test_refused(void) {
  pt_loop *l = new_loop();
  CHECK(l != NULL);
  if (!l) return;
  char path[] = "/tmp/petrel-watch-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  unlink(path);
  errno = 0;
  CHECK(pt_loop_watch(l, fd, PT_WATCH_IN) == NULL);
  CHECK(errno == EPERM);
  CHECK(strstr(pt_loop_error(l), "regular file") != NULL);
  close(fd);
  int p[2];
  CHECK(pipe(p) == 0);
  CHECK(pt_loop_watch(l, p[0], 0) == NULL);
  CHECK(errno == EINVAL);
  close(p[0]);
  close(p[1]);
  CHECK(pt_loop_watch(l, p[0], PT_WATCH_IN) == NULL); /* closed now */
  CHECK(errno == EBADF);
  pt_loop_free(l);
}

/* pt_watch_set_fn: readiness as calls inside the round, no READY queued;
 * the callback may read the fd, close its own watch and watch another fd
 * (whose calls come in later rounds); NULL brings READY completions back. */
static struct {
  int calls, reads, other;
  uint32_t bits;
  int close_at; /* close the watch at this call (0: never) */
  int fd;
  pt_loop *l;
  pt_conn *w2;
  int p2;
} cb;

static void on_other(pt_conn *w, uint32_t ready) {
  (void)w;
  if (ready & PT_WATCH_IN) cb.other++;
}

static void on_fd(pt_conn *w, uint32_t ready) {
  cb.calls++;
  cb.bits |= ready;
  char c;
  if (read(cb.fd, &c, 1) == 1) cb.reads++;
  if (cb.calls == 1 && !cb.w2) { /* start another watch from inside */
    cb.w2 = pt_loop_watch(cb.l, cb.p2, PT_WATCH_IN);
    if (cb.w2) pt_watch_set_fn(cb.w2, on_other);
  }
  if (cb.close_at && cb.calls == cb.close_at) pt_conn_close(w, 0);
}

static void test_ready_fn(void) {
  pt_loop *l = new_loop();
  CHECK(l != NULL);
  if (!l) return;
  int p[2], q[2];
  CHECK(pipe2(p, O_NONBLOCK) == 0 && pipe2(q, O_NONBLOCK) == 0);
  memset(&cb, 0, sizeof cb);
  cb.fd = p[0];
  cb.l = l;
  cb.p2 = q[0];
  pt_conn *w = pt_loop_watch(l, p[0], PT_WATCH_IN);
  CHECK(w != NULL);
  if (!w) return;
  uint64_t id = w->id;
  pt_watch_set_fn(w, on_fd);
  CHECK(write(p[1], "abc", 3) == 3);
  CHECK(write(q[1], "x", 1) == 1);
  /* one byte read per call, level-triggered: three calls, no READY */
  seen s = {0, 0, 0, 0};
  int64_t end = ms_now() + 3000;
  while (ms_now() < end && (cb.reads < 3 || !cb.other)) {
    int n = pt_loop_poll(l, evs, NEV, 10);
    CHECK(n >= 0);
    for (int i = 0; i < n; i++)
      if (evs[i].type == PT_EV_READY) s.readies++;
  }
  CHECK(cb.reads == 3);
  CHECK(cb.bits & PT_WATCH_IN);
  CHECK(cb.w2 != NULL);
  CHECK(cb.other >= 1); /* the watch started inside a call is called too */
  CHECK(s.readies == 0);
  /* empty: not called (io_uring may still report the round before the
   * last read: one-shot polls, re-armed after each report) */
  poll_for(l, id, 50, 0);
  int calls = cb.calls;
  s = poll_for(l, id, 100, 0);
  CHECK(cb.calls == calls && s.readies == 0);
  CHECK(cb.reads == 3);
  /* closed from inside its own call: no call, READY or CLOSED after */
  cb.close_at = cb.calls + 1;
  CHECK(write(p[1], "de", 2) == 2);
  end = ms_now() + 3000;
  while (ms_now() < end && cb.calls < cb.close_at) CHECK(pt_loop_poll(l, evs, NEV, 10) >= 0);
  CHECK(cb.calls == cb.close_at);
  CHECK(cb.reads == 4); /* "d"; "e" stays */
  s = poll_for(l, id, 100, 0);
  CHECK(cb.calls == cb.close_at && s.readies == 0 && s.closed == 0);
  /* NULL: READY completions again */
  if (cb.w2) {
    char c;
    pt_watch_set_fn(cb.w2, NULL);
    CHECK(write(q[1], "y", 1) == 1);
    s = poll_for(l, cb.w2->id, 3000, 1);
    CHECK(s.readies >= 1 && (s.bits & PT_WATCH_IN));
    while (read(q[0], &c, 1) == 1 && c != 'y') {
    }
  }
  pt_watch_set_fn(NULL, on_fd); /* ignored */
  close(p[0]);
  close(p[1]);
  close(q[0]);
  close(q[1]);
  pt_loop_free(l);
}

/* Freeing a loop with a live watch leaves the caller's fd open. */
static void test_free_with_watch(void) {
  pt_loop *l = new_loop();
  CHECK(l != NULL);
  if (!l) return;
  int p[2];
  CHECK(pipe(p) == 0);
  CHECK(pt_loop_watch(l, p[0], PT_WATCH_IN) != NULL);
  CHECK(write(p[1], "z", 1) == 1);
  poll_for(l, 0, 30, 0);
  pt_loop_free(l);
  char c;
  CHECK(read(p[0], &c, 1) == 1 && c == 'z');
  close(p[0]);
  close(p[1]);
}

int main(void) {
  pt_loop *probe = pt_loop_new(NULL, NULL); /* PETREL_BACKEND picks */
  if (!probe) {
    fprintf(stderr, "test_watch: no loop: %s\n", strerror(errno));
    return 1;
  }
  BE = strcmp(pt_loop_backend(probe), "io_uring") == 0 ? PT_BE_URING
                                                         : PT_BE_EPOLL;
  printf("test_watch: back end %s\n", pt_loop_backend(probe));
  pt_loop_free(probe);
  TEST(test_pipe_read);
  TEST(test_pipe_write);
  TEST(test_pty);
  TEST(test_refused);
  TEST(test_free_with_watch);
  TEST(test_ready_fn);
  return ct_report();
}
