/*
 * pt_loop.h — the event loop core: completions over a back end (epoll or
 * io_uring), nonblocking sockets, timers. No Lua in here.
 *
 * Where things are (csrc/)
 *   pt_loop.c      loops (pt_loop_new / _free) and the round (pt_loop_poll)
 *   pt_conn.c      connections: ids, completions, input, output, close,
 *                  caps and the memory budget, deferred sends
 *                  (pt_conn_send, _send_later, _close, _consumed, ...)
 *   pt_sock.c      sockets: pt_listen, pt_connect, accept, options,
 *                  addresses (pt_conn_addr, _port, _error)
 *   pt_dns.c       host names resolved on a thread, with a TTL cache
 *   pt_zc.c        zero-copy jobs: pt_conn_sendfile, pt_conn_splice
 *   pt_udp.c       datagram sockets: pt_udp_open, _recv, _send, _stats
 *   pt_watch.c     readiness of any fd (pt_loop_watch)
 *   pt_timer.c     the timer heap (pt_loop_timer, pt_loop_cancel in pt_loop.c)
 *   be/pt_epoll.c  the epoll back end; be/pt_uring.c the io_uring one,
 *                  both behind the private interface of pt_be.h
 *   pt_types.h     the types; pt_conn.h, pt_sock.h, pt_zc.h: the functions of
 *                  those files (this header includes them all)
 *   pt_private.h   what those files share (the layers, in order)
 *
 * Model
 *   pt_loop   one per thread of use. Owns the back end, a wake-up eventfd,
 *             a binary min-heap of timers (monotonic clock, ms), the
 *             connections, and a queue of completions. Not thread-safe except
 *             pt_loop_wake, which any thread may call.
 *   pt_conn   a listener, a byte stream or a datagram socket. A stream has
 *             an input buffer the loop reads into and an output buffer the
 *             loop writes from (MSG_NOSIGNAL: no SIGPIPE). Both are attached
 *             to the loop's pool. A datagram socket queues datagrams in
 *             them (pt_udp.h).
 *
 * Completions (pt_loop_poll fills an array of pt_event; the core never calls
 * back into the user except through opts.on_release, see below)
 *   ACCEPTED   id = new conn, arg = listener id.
 *   DATA       id = conn, arg = bytes read this round (now in conn->in).
 *   DRAINED    id = conn: a send that returned PT_SEND_PENDING/OVER has
 *              written everything. Not emitted for sends that completed at
 *              once (the return value says so) nor for closing conns.
 *   CLOSED     id = conn, err = errno (0: orderly EOF from the peer). Emitted
 *              once, for conns the loop or the peer ended; never for conns
 *              the user closed with pt_conn_close. On EOF (peer half-close)
 *              the loop stops reading but keeps the socket writable until the
 *              next pt_loop_poll has flushed what the user queued in reply to
 *              the batch; then the conn closes once its output drained (or
 *              after opts.close_timeout_ms). Replies produced later are lost.
 *   CONNECTED  id = conn, err = 0 (connected) or errno (ECONNREFUSED,
 *              ETIMEDOUT, ENXIO: the name did not resolve, ...). A failed
 *              conn is closed by the loop; no CLOSED follows;
 *              pt_conn_error says what failed.
 *   TIMER      id = timer id.
 *   WAKE       pt_loop_wake was called (coalesced: at most one per round).
 *   DGRAM      id = a datagram socket, one per datagram received, arg =
 *              its bytes kept, err = 0, EMSGSIZE (cut at max_datagram) or
 *              the socket's errno instead of a datagram (pt_udp.h).
 *   SPLICED    id = the source conn of a pt_conn_splice job that ended,
 *              arg = bytes moved, err = 0 (len moved, or EOF of the source)
 *              or errno (a side failed or closed). ev.conn is NULL: the
 *              completion is delivered even if the user closed a side.
 *   READY      id = a watch (pt_loop_watch: any fd, stdin of a REPL), arg =
 *              PT_WATCH_* bits: the fd is ready; again each round while it
 *              stays ready.
 *
 * Lifetime: a closed conn stays addressable (pt_loop_conn returns it, its
 * input stays readable, ev.conn stays valid) until the start of a later
 * pt_loop_poll whose completion queue is empty: closed conns are recycled
 * only at that batch boundary, so no event the user holds can point at freed
 * memory. Events still queued for a conn the user closed are dropped.
 *
 * Rounds: after a round that produced completions, the next pt_loop_poll
 * first waits with timeout 0 (Netpoll's habit) where the back end gains by
 * it (epoll); if that finds nothing it then blocks for timeout_ms (or until
 * the next timer). stats.wait_zero and stats.wait_block count the two
 * kinds; opts.no_spin disables the habit.
 *
 * Back ends (opts.backend, chosen per loop): epoll, readiness-driven (readv
 * into the input, sendmsg from the output), or io_uring, completion-driven:
 * multishot accept, multishot recv into a provided buffer ring whose bytes
 * are appended to the input, sendmsg (sendmsg_zc from opts.zc_min bytes)
 * straight from the output's blocks, poll requests where a job needs
 * readiness (sendfile, splice, connect), and the wait timeout given to the
 * ring. Both deliver the same completions with the same contracts. Under
 * io_uring pt_conn_send hands the output to the kernel and returns
 * PT_SEND_PENDING (DRAINED follows), and a closed conn is recycled only once
 * the kernel has finished every request on it. A build without liburing
 * (make URING=0) has epoll only: asking for io_uring fails with "io_uring
 * was not compiled in", and "auto" picks epoll and says so.
 *
 * Backpressure: a conn stops being read while its input holds in_cap bytes
 * (until pt_conn_consumed), and an accepted conn also while its unsent
 * output is over out_cap (until it drained to a quarter of that). Reads
 * take at most what is left of the loop's opts.budget (input plus unsent
 * output of every conn; 256 KiB at least); over it, accepted conns holding
 * 256 KiB or more of unsent output stop being read until the total is back
 * under 3/4 of the budget or their own output drained.
 *
 * Errors: functions returning pointers give NULL, int functions -1, with
 * errno set and a message in pt_loop_error().
 */
#ifndef PT_LOOP_H
#define PT_LOOP_H

#include "pt_types.h"
#include "pt_conn.h"
#include "pt_sock.h"
#include "pt_zc.h"
#include "pt_udp.h"
#include "pt_watch.h"

/* Loops. pool NULL: the loop makes its own. The loop keeps the pool alive
 * while it or any of its buffers lives. opts may be NULL. */
pt_loop *pt_loop_new(pt_pool *pool, const pt_loop_opts *opts);
/* Closes every conn (no flush), recycles them, frees the loop. */
void pt_loop_free(pt_loop *l);
pt_pool *pt_loop_pool(const pt_loop *l);
/* "epoll" or "io_uring" */
const char *pt_loop_backend(const pt_loop *l);
/* io_uring: the ring's features; epoll after "auto": why io_uring was not
 * used; else "". */
const char *pt_loop_backend_note(const pt_loop *l);
const char *pt_loop_error(const pt_loop *l); /* last failure, for messages */

/* Flush deferred sends, recycle closed conns (if no completion is queued),
 * wait for readiness (see Rounds), run due timers; copy up to max
 * completions into out and return their count (0 on timeout), or -1 if
 * the poller failed. timeout_ms < 0 waits until something happens. */
int pt_loop_poll(pt_loop *l, pt_event *out, int max, int timeout_ms);
void pt_loop_stats_get(const pt_loop *l, pt_loop_stats *out);
int64_t pt_loop_now(pt_loop *l);    /* monotonic ms */

/* Timers: one-shot, fire ms from now (TIMER event). Equal deadlines fire in
 * creation order. Returns the id, 0 on ENOMEM. cancel: 0, or -1 when the id
 * is unknown or already fired (its event may still be queued). */
uint64_t pt_loop_timer(pt_loop *l, int64_t ms);
int pt_loop_cancel(pt_loop *l, uint64_t id);

#endif
