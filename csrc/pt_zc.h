/*
 * pt_zc.h — zero-copy jobs (pt_zc.c): sendfile and splice. Part of
 * pt_loop.h; see it for the model.
 */
#ifndef PT_ZC_H
#define PT_ZC_H

#include "pt_types.h"

/* Zero-copy transfer.
 *
 * sendfile: queue len bytes of fd from offset off (SIZE_MAX: to the end of
 * the file) behind the conn's current output: bytes already in c->out go
 * first, bytes appended later go after. The core dups fd (the caller keeps
 * and closes its own). Driven by writability like any pending output;
 * sendfile(2), or pread/read + send in 64 KiB chunks where sendfile says
 * EINVAL/ENOSYS. A DRAINED completion follows once the file and the output
 * are written (always, even if everything left at once). A file shorter
 * than the range ends the job early. Errors close the conn (CLOSED, errno).
 * 0, or -1 with errno (EPIPE closed conn, ENOTCONN not a stream, ENOMEM,
 * EBADF from dup).
 *
 * splice: move len bytes (0: until EOF) from `from` to `to` through a pipe
 * (splice(2)), or read + write copies where splice says EINVAL. Bytes
 * already in from->in go first (they move to to->out). While the job runs,
 * `from` delivers no DATA, and `to` should not be sent on. `to`'s queued
 * output is written before spliced bytes. A SPLICED completion ends the
 * job (id = from). On EOF of `from` the job ends, then `from` reports
 * CLOSED(0) and closes as on any EOF. A failed side closes with errno
 * (CLOSED) and the job ends with that errno; a side that closes for any
 * reason ends the job (EPIPE). 0, or -1 with errno (EBUSY: `from` already
 * has a source job or `to` a target job; EINVAL from == to; EPIPE closed;
 * ENOTCONN not a connected stream; EMFILE pipe2). */
int pt_conn_sendfile(pt_conn *c, int fd, off_t off, size_t len);
int pt_conn_splice(pt_conn *from, pt_conn *to, size_t len);
/* Bytes still to write: output, file jobs, and bytes a splice job holds
 * for this conn. */
size_t pt_conn_pending(const pt_conn *c);

#endif
