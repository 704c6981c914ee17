/*
 * pt_watch.h — readiness of any file descriptor (pt_watch.c): a terminal,
 * a pipe, a character device, an eventfd, a socket the loop does not own.
 * Part of pt_loop.h; see it for the model.
 *
 * The loop reads and writes nothing on a watched fd: it says when the fd
 * is ready, and the user does the I/O (stdin of a REPL, driven by
 * readline's callback interface, is the case it was made for). Receiving
 * on a terminal or pipe with recv() fails (ENOTSOCK), and io_uring's
 * socket paths (multishot recv, buffer rings) do not apply, so both back
 * ends only poll: epoll registers the fd, io_uring sends one-shot poll
 * requests, re-armed after each report.
 */
#ifndef PT_WATCH_H
#define PT_WATCH_H

#include "pt_types.h"

/* Watch fd for events (PT_WATCH_IN, PT_WATCH_OUT or both). Level-
 * triggered: a READY completion (id = the watch, arg = PT_WATCH_* bits of
 * what the kernel reported, including ERR and HUP) comes in every round
 * while the fd is ready, so the user reads what it wants and gets told
 * again if more is there. The loop watches a duplicate of fd (F_DUPFD,
 * close-on-exec): the caller's fd stays open and its flags untouched
 * (no O_NONBLOCK is set on a shared terminal). Regular files and
 * directories are always ready and are refused (EPERM: read them
 * directly). On POLLERR the watch closes with a CLOSED completion.
 * Stop with pt_conn_close (no CLOSED follows, queued READYs are dropped).
 * NULL with errno and pt_loop_error() on failure. */
pt_conn *pt_loop_watch(pt_loop *l, int fd, uint32_t events);

/* For a C user's hot path: w's readiness as a call, fn(w, PT_WATCH_*
 * bits), made inside the round where the back end reports it, instead of
 * a READY completion (nothing is queued or copied per report). fn may do
 * I/O on the fd, send on conns, close w or any conn, and start or stop
 * watches; it must not poll or free the loop (the round is running).
 * POLLERR still closes w with a CLOSED completion. NULL: READY
 * completions again. */
void pt_watch_set_fn(pt_conn *w, void (*fn)(pt_conn *w, uint32_t ready));

#endif
