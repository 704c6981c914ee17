/*
 * pt_zc.c — zero-copy jobs: pt_conn_sendfile queues a file range on a
 * conn's output (the output writer in pt_conn.c sends it with sendfile(2)
 * after the bytes queued before it); pt_conn_splice moves bytes from one
 * conn to another through a pipe (splice(2)), or with read + send where
 * splice says EINVAL (or PETREL_NO_SPLICE). A proxy is two splice jobs
 * (lua/petrel/loop.lua).
 *
 * A splice job reads its source only after the back end reported it
 * readable (PT_W_IN), which a back end does only once no read of its own is
 * in flight; bytes the back end had read into the source's input before
 * the job took over go first. The job writes its target only after the
 * target's own output.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pt_private.h"
#include "pt_zc.h"

#define PT_PIPE_SZ (1u << 20) /* splice pipe size asked for */

int pt_conn_sendfile(pt_conn *c, int fd, off_t off, size_t len) {
  if (c->kind != PT_KIND_STREAM || (c->flags & (PT_CF_CLOSED | PT_CF_USER_CLOSED))) {
    errno = c->kind != PT_KIND_STREAM ? ENOTCONN : EPIPE;
    return -1;
  }
  if (off < 0) {
    errno = EINVAL;
    return -1;
  }
  pt_fjob *j = calloc(1, sizeof *j);
  if (!j) return -1;
  j->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (j->fd < 0) {
    int e = errno;
    free(j);
    errno = e;
    return -1;
  }
  j->off = off;
  j->left = len;
  j->copy = (c->loop->o.zc_off & PT_ZC_NO_SENDFILE) != 0;
  size_t ahead = 0;
  pt_fjob **tail = &c->fjob;
  while (*tail) {
    ahead += (*tail)->pre;
    tail = &(*tail)->next;
  }
  size_t have = pt_buf_len(c->out);
  j->pre = have > ahead ? have - ahead : 0;
  *tail = j;
  c->flags |= PT_CF_WANT_DRAINED; /* DRAINED follows in any case */
  if (c->flags & (PT_CF_CONNECTING | PT_CF_WR_PENDING)) return 0;
  return pt__write(c) < 0 ? -1 : 0;
}

/* Copy mode from now on: what the pipe holds moves into buf. */
static int spj_to_copy(pt_spj *j) {
  size_t cap = j->staged > PT_ZC_CHUNK ? j->staged : PT_ZC_CHUNK;
  char *b = malloc(cap);
  if (!b) return -1;
  size_t got = 0;
  while (got < j->staged) {
    ssize_t r = read(j->p[0], b + got, j->staged - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      free(b);
      if (r == 0) errno = EIO;
      return -1;
    }
    got += (size_t)r;
  }
  close(j->p[0]);
  close(j->p[1]);
  j->p[0] = j->p[1] = -1;
  j->buf = b;
  j->bpos = 0;
  j->cap = cap;
  j->copy = 1;
  return 0;
}

/* Move what can move now: staged bytes to `to` (after to's own output),
 * then more from `from` once it was reported readable; park on
 * readability of `from` or writability of `to`, or end the job. */
static void spj_step(pt_loop *l, pt_spj *j) {
  pt_conn *from = j->from, *to = j->to, *bad = NULL;
  int err = 0, eof = 0;
  j->wait_out = 0;
  for (;;) {
    while (j->staged) {
      if (pt__has_out(to) && !(to->flags & PT_CF_WR_PENDING)) {
        /* to's own queued output goes first; a failure closes `to`,
         * which ends this job */
        if (pt__write(to) < 0) return;
      }
      if (pt__has_out(to) || (to->flags & PT_CF_WR_PENDING)) {
        j->wait_out = 1;
        goto park;
      }
      ssize_t r;
      if (j->copy)
        r = send(to->fd, j->buf + j->bpos, j->staged,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
      else
        r = splice(j->p[0], NULL, to->fd, NULL, j->staged,
                   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      l->st.writev_calls++;
      if (r > 0) {
        j->staged -= (size_t)r;
        j->moved += (size_t)r;
        if (j->copy) j->bpos += (size_t)r;
        l->st.bytes_out += (uint64_t)r;
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        j->wait_out = 1;
        goto park;
      }
      if (r < 0 && errno == EINVAL && !j->copy) {
        if (spj_to_copy(j) == 0) continue;
      }
      err = r < 0 ? errno : EIO;
      bad = to;
      goto end;
    }
    if (eof || (j->want && j->moved >= j->want)) goto end;
    if (!j->may_read) goto park; /* not reported readable yet */
    size_t n = j->want ? j->want - j->moved : j->cap;
    if (n > j->cap) n = j->cap;
    ssize_t r;
    if (j->copy)
      r = read(from->fd, j->buf, n);
    else
      r = splice(from->fd, NULL, j->p[1], NULL, n,
                 SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    l->st.readv_calls++;
    if (r > 0) {
      j->staged = (size_t)r;
      j->bpos = 0;
      l->st.bytes_in += (uint64_t)r;
      continue;
    }
    if (r == 0) {
      eof = 1;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      j->may_read = 0;
      goto park;
    }
    if (errno == EINVAL && !j->copy) {
      if (spj_to_copy(j) == 0) continue;
    }
    err = errno;
    bad = from;
    goto end;
  }
park:
  pt__rearm(from);
  pt__rearm(to);
  return;
end:
  pt__spj_end(l, j, err);
  if (bad) {
    pt__close(bad, err, 1);
  } else if (eof) {
    pt__read_eof(from);
  }
}

int pt_conn_splice(pt_conn *from, pt_conn *to, size_t len) {
  pt_loop *l = from->loop;
  if (from->kind != PT_KIND_STREAM || to->kind != PT_KIND_STREAM ||
      (from->flags & PT_CF_CONNECTING) || (to->flags & PT_CF_CONNECTING)) {
    errno = ENOTCONN;
    return -1;
  }
  if (from == to || to->loop != l) {
    errno = EINVAL;
    return -1;
  }
  if ((from->flags | to->flags) & (PT_CF_CLOSED | PT_CF_CLOSING)) {
    errno = EPIPE;
    return -1;
  }
  if (from->spj_in || to->spj_out) {
    errno = EBUSY;
    return -1;
  }
  pt_spj *j = calloc(1, sizeof *j);
  if (!j) return -1;
  j->p[0] = j->p[1] = -1;
  j->from = from;
  j->to = to;
  j->want = len;
  if (!(l->o.zc_off & PT_ZC_NO_SPLICE)) {
    if (l->zc_npipes > 0) { /* an emptied one from an earlier job */
      l->zc_npipes--;
      j->p[0] = l->zc_pipe[l->zc_npipes][0];
      j->p[1] = l->zc_pipe[l->zc_npipes][1];
    } else if (pipe2(j->p, O_NONBLOCK | O_CLOEXEC) != 0) {
      int e = errno;
      free(j);
      errno = e;
      return -1;
    } else {
      fcntl(j->p[1], F_SETPIPE_SZ, (int)PT_PIPE_SZ); /* best effort */
      l->st.splice_pipes++;
    }
    int sz = fcntl(j->p[1], F_GETPIPE_SZ);
    j->cap = sz > 0 ? (size_t)sz : 65536u;
  } else {
    j->copy = 1;
    j->cap = PT_ZC_CHUNK;
    if (!(j->buf = malloc(j->cap))) {
      free(j);
      errno = ENOMEM;
      return -1;
    }
  }
  /* bytes `from` already read go first */
  size_t have = pt_buf_len(from->in);
  if (have) {
    size_t k = len && len < have ? len : have;
    if (k == have) {
      pt_buf_move(to->out, from->in);
    } else if (pt_buf_slice(from->in, k, to->out) != 0) {
      pt__spj_free(j);
      errno = ENOMEM;
      return -1;
    }
    j->moved = k;
    if (!(to->flags & PT_CF_WR_PENDING) && pt__write(to) < 0) {
      int e = errno;
      pt__spj_free(j);
      errno = e;
      return -1;
    }
  }
  from->flags &= ~PT_CF_RD_PAUSED;
  from->spj_in = j;
  to->spj_out = j;
  spj_step(l, j); /* reads `from` once it is reported readable */
  return 0;
}

/* Bytes a back end's read (in flight when the job began) put into the
 * source's input: they go to `to` before anything the job reads. */
void pt__zc_input(pt_conn *c) {
  pt_spj *j = c->spj_in;
  pt_conn *to = j->to;
  size_t have = pt_buf_len(c->in);
  size_t left = j->want ? (j->want > j->moved ? j->want - j->moved : 0) : have;
  size_t k = have < left ? have : left;
  if (k) {
    int r = k == have ? (pt_buf_move(to->out, c->in), 0)
                      : pt_buf_slice(c->in, k, to->out);
    if (r != 0) {
      pt__spj_end(c->loop, j, ENOMEM);
      return;
    }
    j->moved += k;
  }
  /* a failed write closes `to`, which ends the job */
  if (pt__has_out(to) && !(to->flags & PT_CF_WR_PENDING) && pt__write(to) < 0)
    return;
  spj_step(c->loop, j); /* ends the job at its length, or parks */
}

/* The source's EOF came through the back end's read. */
void pt__zc_eof(pt_conn *c) {
  pt__spj_end(c->loop, c->spj_in, 0);
  pt__read_eof(c);
}

void pt__zc_ready(pt_conn *c, uint32_t m) {
  if ((m & PT_R_IN) && c->spj_in) {
    pt_spj *j = c->spj_in;
    j->may_read = 1;
    if (!j->wait_out) spj_step(c->loop, j);
  } else if ((m & PT_R_OUT) && c->spj_out && c->spj_out->wait_out) {
    spj_step(c->loop, c->spj_out);
  }
}

void pt__zc_sent(pt_conn *c) {
  if (c->spj_out && c->spj_out->wait_out) spj_step(c->loop, c->spj_out);
}

size_t pt_conn_pending(const pt_conn *c) {
  size_t n = pt_buf_len(c->out);
  for (const pt_fjob *j = c->fjob; j; j = j->next) {
    size_t k = j->left + (j->blen - j->bpos);
    n = k < SIZE_MAX - n ? n + k : SIZE_MAX;
  }
  if (c->spj_out) n += c->spj_out->staged;
  return n + c->loop->bo->held(c);
}
