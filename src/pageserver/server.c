/*
 * server.c - the page server: one thread, one libev loop, one io_uring.
 *
 * libev waits; io_uring moves the bytes.  The listening socket and signals
 * are libev watchers; every connection's recv and send are io_uring
 * submissions.  An eventfd registered with the ring is watched by an ev_io
 * (wakes the loop when completions arrive), an ev_prepare submits queued
 * SQEs once per loop turn, and each wakeup drains the whole CQ.
 *
 * Per connection: one recv in flight into a receive buffer, and one send in
 * flight (a second buffer collects frames meanwhile), so the byte stream
 * never reorders.  A short recv or send advances an offset and resubmits.
 * Each connection is an explicit state machine; conn_accepts[] says which
 * frame types each state takes; anything else closes that connection with
 * -EPROTO and a one-line reason naming the peer.  Nothing is allocated
 * for a frame before its header passed wire_hdr_decode() against the limits
 * of the connection's state (4 KiB before authentication).
 *
 *   HELLO --Hello--> AUTH --Auth(mac ok)--> AUTHED --SessionOpen/Join-->
 *   READY <--Ack(RoundEnd)-- BARRIER <--RoundEnd-- ROUND <--RoundBegin-- READY
 *
 * Stall timeouts: from accept, a peer has stall_timeout to authenticate;
 * once a frame has begun to arrive it must complete within stall_timeout
 * (slow-loris peers are dropped).  An authenticated connection whose session
 * (or, before one, itself) received nothing for idle_timeout is closed, so
 * that idle key holders cannot fill the connection table; a session that is
 * serving (FETCH, or a post-copy between restore and commit) waits on faults,
 * not on its peer, and is never idle.  One address holds at most
 * PS_MAX_CONNS_PER_PEER authenticated connections.
 *
 * Every message is checked field by field (common/validate.h) before its
 * handler runs: a bad one closes its connection with the field named, and
 * the session it belongs to fails; other sessions carry on.
 *
 * Sessions: a SessionOpen declares pid, kind and stream count; the others
 * join by session id after authenticating.  Rounds have a barrier across
 * streams: the round is applied (sink round_end, or pstore commit) and acked
 * on every stream only when every stream has ended it; a STORE session's
 * pages stay staged (invisible) until then and are aborted when any stream
 * of the session fails.  Either side may send PAGE_REQ once in a session:
 * the server answers from its page store; a client answering a server's
 * PAGE_REQ (post-copy from the source) uses the same PAGE_REPLY.
 *
 * Post-copy recovery: once a lazy live session has resumed its process and
 * until it is committed, a stream that ends with a transport error (EOF,
 * reset, a failed send or receive, a stall mid-frame) does not fail the
 * session: it "detaches" (ps_session_park): every stream is dropped, the page
 * requests in flight are parked, new ones queue, and the source has the
 * stall timeout to rejoin every stream (SessionJoin.resume).  Then the
 * parked requests go out again under new req_ids (a reply to the old id,
 * were one still to arrive, matches nothing), and the "every page arrived"
 * notice again if it had gone out.  No rejoin in time: the session fails
 * as before.  Protocol and authentication errors, an Error from the peer,
 * and anything before the restore or after the commit still fail at once.
 *
 * Teardown of a connection: shutdown the socket, cancel its submissions,
 * wait until both are reaped (the kernel owns the buffers until then), then
 * free.
 *
 * Files: this one sets up the server, accepts connections and runs the
 * loop's watchers (ring, prepare, idle sweep, signals); server_conn.c moves
 * a connection's bytes; server_frame.c is the state machine and handshake;
 * server_direct.c receives raw pages straight into the store;
 * server_session.c keeps the session table; server_round.c handles a
 * session's messages; server_fetch.c is post-copy from the source with its
 * detach and rejoin.  server_int.h holds what they share.
 */
#define LOG_PREFIX "ps: "
#include <errno.h>
#include <ev.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/server_int.h"

static void ring_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ps_server *s = w->data;
	struct io_uring_cqe *cqe;
	uint64_t v;

	(void)loop;
	(void)revents;
	if (read(s->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		pr_warn("cannot read the io_uring eventfd: %s", strerror(errno));
	/* Drain the whole CQ; handlers may queue new SQEs, submitted by prepare. */
	while (io_uring_peek_cqe(&s->ring, &cqe) == 0) {
		struct io_uring_cqe copy = *cqe;

		io_uring_cqe_seen(&s->ring, cqe);
		ps_on_cqe(s, &copy);
	}
	ps_server_reap(s);
}

static void prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct ps_server *s = w->data;

	(void)loop;
	(void)revents;
	if (io_uring_sq_ready(&s->ring))
		io_uring_submit(&s->ring);
}

/*
 * At the connection limit, make room by dropping the oldest connection
 * that has not authenticated, so that a flood of idle or slow peers cannot
 * lock out a client with the key.  False when every connection is
 * authenticated.
 */
static bool evict_preauth(struct ps_server *s)
{
	struct ps_conn *oldest = NULL;

	/* New connections are pushed at the head: the last match is the oldest. */
	for (struct ps_conn *c = s->conns; c; c = c->next)
		if (!c->dead && c->state < PS_AUTHED)
			oldest = c;
	if (!oldest)
		return false;
	pr_warn("peer %s: dropped unauthenticated to make room for a new connection", oldest->peer);
	ps_conn_teardown(oldest);
	return true;
}

/*
 * Whether @x is waiting on something other than its peer: a FETCH session
 * (a lazy restore asks only on faults) or a post-copy between its restore
 * and its commit.  Such a session is never idle.
 */
static bool session_serving(const struct ps_session *x)
{
	return x->kind == HAUL__WIRE__SESSION_KIND__FETCH ||
	       (x->lazy && x->restored && !x->committed && !x->failed);
}

/* When @c, or any stream of its session, last received bytes. */
static ev_tstamp conn_last_rx(const struct ps_conn *c)
{
	ev_tstamp t = c->last_rx;

	if (!c->sess)
		return t;
	for (uint32_t i = 0; i < c->sess->nstreams; i++) {
		const struct ps_conn *o = c->sess->streams[i];

		if (o && o->last_rx > t)
			t = o->last_rx;
	}
	return t;
}

/* Close authenticated connections that received nothing for the idle timeout. */
static void idle_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ps_server *s = w->data;
	ev_tstamp now = ev_now(loop), limit = s->o.idle_timeout_ms / 1000.0;

	(void)revents;
	for (struct ps_conn *c = s->conns; c; c = c->next) {
		if (c->dead || c->state < PS_AUTHED || c->state == PS_CLOSING)
			continue;
		if ((c->sess && session_serving(c->sess)) || now - conn_last_rx(c) < limit)
			continue;
		/* an uncommitted session fails with its stream (ps_session_detach) */
		ps_conn_fail(c, -ETIMEDOUT,
			     "idle for %d ms after authenticating; closing it (the server's "
			     "--idle-timeout)",
			     s->o.idle_timeout_ms);
	}
	ps_server_reap(s);
}

static void accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	struct ps_server *s = w->data;

	(void)loop;
	(void)revents;
	for (;;) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		struct ps_conn *c;
		int one = 1;
		int fd = accept4(s->lfd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);

		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
				pr_warn("cannot accept a connection: %s", strerror(errno));
			return;
		}
		if (s->nconns >= PS_MAX_CONNS && !evict_preauth(s)) {
			pr_warn("refusing a connection: %u connections already open", s->nconns);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (!c || !(c->rbuf = malloc(RBUF_MIN))) {
			free(c);
			close(fd);
			continue;
		}
		c->srv = s;
		c->fd = fd;
		c->rcap = RBUF_MIN;
		c->addr = ss;
		c->last_rx = ev_now(s->loop);
		ps_addr_str((struct sockaddr *)&ss, c->peer, sizeof(c->peer));
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
		ev_init(&c->timer, ps_conn_timer_cb);
		c->timer.data = c;
		c->next = s->conns;
		s->conns = c;
		s->nconns++;
		pr_debug("peer %s connected", c->peer);
		ps_conn_timer_start(c);
		ps_conn_submit_recv(c, SIZE_MAX);
	}
}

static void signal_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	pr_info("signal %d: stopping", w->signum);
	ev_break(loop, EVBREAK_ALL);
}

static void stop_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)w;
	(void)revents;
	ev_break(loop, EVBREAK_ALL);
}

/* ---- public ------------------------------------------------------------------------------------ */

int ps_server_new(const struct ps_server_opts *o, struct ps_server **out)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct ps_server *s;
	int one = 1, ret;

	if (sodium_init() < 0)
		return -EIO;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->o = *o;
	s->efd = s->lfd = -1;
	pthread_mutex_init(&s->fmu, NULL);
	/* deadlines of ps_session_fetch() are CLOCK_MONOTONIC */
	pthread_condattr_init(&s->fca);
	pthread_condattr_setclock(&s->fca, CLOCK_MONOTONIC);
	if (s->o.stall_timeout_ms <= 0)
		s->o.stall_timeout_ms = PS_STALL_TIMEOUT_MS;
	if (s->o.idle_timeout_ms == 0)
		s->o.idle_timeout_ms = PS_IDLE_TIMEOUT_MS;
	if (o->images_dir) {
		s->images_dir = strdup(o->images_dir);
		s->o.images_dir = s->images_dir;
	}
	ret = ps_addr_parse(o->listen, true, &ss, &len);
	if (ret) {
		pr_err("cannot parse listen address '%s'; use ADDR:PORT, e.g. 127.0.0.1:7070",
		       o->listen);
		goto fail;
	}
	ret = pstore_open(o->images_dir, &s->store);
	if (ret)
		goto fail;
	s->scratch = malloc(WIRE_MAX_PAYLOAD);
	s->dptr = malloc(WIRE_MAX_REQ_PAGES * sizeof(*s->dptr));
	ret = s->scratch && s->dptr
		      ? wire_pages_enc_init(&s->enc, WIRE_MAX_REQ_PAGES + 1, WIRE_COMPRESS_AUTO)
		      : -ENOMEM;
	if (ret)
		goto fail;
	/* PAGE_REPLY payloads are copied into the send buffer: raw pages need no other copy. */
	s->enc.ref = true;
	ret = io_uring_queue_init(RING_DEPTH, &s->ring, 0);
	if (ret) {
		pr_err_r(ret, "cannot set up io_uring (is kernel.io_uring_disabled set?)");
		goto fail;
	}
	s->ring_ok = true;
	s->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->efd < 0 || io_uring_register_eventfd(&s->ring, s->efd)) {
		ret = -errno;
		pr_err_r(ret, "cannot register an eventfd with io_uring");
		goto fail;
	}
	s->lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->lfd < 0) {
		ret = -errno;
		goto fail;
	}
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(s->lfd, (struct sockaddr *)&ss, len) || listen(s->lfd, 64)) {
		ret = -errno;
		pr_err_r(ret, "cannot listen on %s", o->listen);
		goto fail;
	}
	len = sizeof(ss);
	getsockname(s->lfd, (struct sockaddr *)&ss, &len);
	s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
						: ((struct sockaddr_in6 *)&ss)->sin6_port);

	s->loop = ev_loop_new(EVFLAG_AUTO | EVFLAG_NOSIGMASK);
	if (!s->loop) {
		ret = -ENOMEM;
		goto fail;
	}
	ev_io_init(&s->eio, ring_cb, s->efd, EV_READ);
	s->eio.data = s;
	ev_io_start(s->loop, &s->eio);
	ev_io_init(&s->lio, accept_cb, s->lfd, EV_READ);
	s->lio.data = s;
	ev_io_start(s->loop, &s->lio);
	ev_prepare_init(&s->prep, prepare_cb);
	s->prep.data = s;
	ev_prepare_start(s->loop, &s->prep);
	ev_async_init(&s->stop, stop_cb);
	ev_async_start(s->loop, &s->stop);
	ev_async_init(&s->fasync, ps_fasync_cb);
	s->fasync.data = s;
	ev_async_start(s->loop, &s->fasync);
	if (s->o.idle_timeout_ms > 0) {
		/* a quarter of the timeout: idle connections go within 1.25 times it */
		ev_tstamp every = s->o.idle_timeout_ms / 4000.0;

		ev_timer_init(&s->idle, idle_cb, every, every);
		s->idle.data = s;
		ev_timer_start(s->loop, &s->idle);
	}
	*out = s;
	return 0;
fail:
	ps_server_free(s);
	return ret;
}

int ps_server_port(const struct ps_server *s)
{
	return s->port;
}

struct pstore *ps_server_store(struct ps_server *s)
{
	return s->store;
}

int ps_server_run(struct ps_server *s)
{
	s->loop_thread = pthread_self();
	s->loop_running = true;
	haul_cpuweight_init(&s->weight, 0);
	ev_signal_init(&s->sigint, signal_cb, SIGINT);
	ev_signal_init(&s->sigterm, signal_cb, SIGTERM);
	ev_signal_start(s->loop, &s->sigint);
	ev_signal_start(s->loop, &s->sigterm);
	ev_run(s->loop, 0);
	s->loop_running = false;
	ev_signal_stop(s->loop, &s->sigint);
	ev_signal_stop(s->loop, &s->sigterm);
	return s->result;
}

void ps_server_stop(struct ps_server *s)
{
	ev_async_send(s->loop, &s->stop);
}

void ps_server_free(struct ps_server *s)
{
	struct io_uring_cqe *cqe;

	if (!s)
		return;
	/* Teardown: shut every connection, cancel, reap until nothing is in flight, free. */
	s->o.once = false;
	s->closing = true;
	for (struct ps_session *x = s->sessions; x; x = x->next)
		if (x->detached) {
			x->detached = false;
			ev_timer_stop(s->loop, &x->detach_timer);
		}
	for (struct ps_conn *c = s->conns; c; c = c->next)
		ps_conn_teardown(c);
	ps_server_reap(s);
	while (s->ring_ok && s->conns) {
		io_uring_submit(&s->ring);
		if (io_uring_wait_cqe(&s->ring, &cqe))
			break;
		struct io_uring_cqe copy = *cqe;

		io_uring_cqe_seen(&s->ring, cqe);
		ps_on_cqe(s, &copy);
		ps_server_reap(s);
	}
	if (s->loop)
		ev_loop_destroy(s->loop);
	if (s->ring_ok)
		io_uring_queue_exit(&s->ring);
	if (s->efd >= 0)
		close(s->efd);
	if (s->lfd >= 0)
		close(s->lfd);
	pstore_close(s->store);
	wire_pages_enc_release(&s->enc);
	free(s->scratch);
	free(s->dptr);
	free(s->images_dir);
	pthread_mutex_destroy(&s->fmu);
	pthread_condattr_destroy(&s->fca);
	sodium_memzero(s->o.key, sizeof(s->o.key));
	free(s);
}
