/*
 * pt_conn.h — connections (pt_conn.c): ids, input, output, close, caps,
 * deferred sends. Part of pt_loop.h; see it for the model.
 */
#ifndef PT_CONN_H
#define PT_CONN_H

#include "pt_types.h"

/* Conn by id: live or closed-but-not-recycled; NULL after recycling. */
pt_conn *pt_loop_conn(pt_loop *l, uint64_t id);

/* Write conn->out now: PT_SEND_* or -1 (errno; the conn is closed and a
 * CLOSED completion is queued). While connecting, data waits and
 * PT_SEND_PENDING is returned. */
int pt_conn_send(pt_conn *c);
/* Deferred send: the conn's output leaves in the flush at the start of the
 * next pt_loop_poll (or pt_loop_flush), so all replies of a round go out in
 * one writev per conn. PT_SEND_DONE / PT_SEND_OVER, or -1 if closed. */
int pt_conn_send_later(pt_conn *c);
/* The user consumed input: resume reading if it was paused on in_cap. */
void pt_conn_consumed(pt_conn *c);
/* flush: close once output drained (bounded by close_timeout_ms); else now.
 * No CLOSED completion follows; queued ones for this conn are dropped. */
void pt_conn_close(pt_conn *c, int flush);
void pt_conn_set_caps(pt_conn *c, size_t in_cap, size_t out_cap);
/* Let the conn read into / write from caller storage (initialized buffers,
 * ideally on the loop's pool); current bytes move over and the buffers
 * become lean (pt_buf_set_lean), as the conn's own are. NULL keeps one.
 * The storage must stay valid until opts.on_release for this conn. */
void pt_conn_set_bufs(pt_conn *c, pt_buf *in, pt_buf *out);
void pt_loop_flush(pt_loop *l);     /* deferred sends now */
void pt_loop_wake(pt_loop *l);      /* any thread; coalesced */
void pt_loop_close_all(pt_loop *l); /* every conn and listener, no flush */

#endif
