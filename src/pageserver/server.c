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
 * session: it "detaches" (session_park): every stream is dropped, the page
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

#define RING_DEPTH 512
#define OP_RECV	   1u
#define OP_SEND	   2u
#define OP_MASK	   3u
#define RBUF_MIN   (64u << 10)

enum ps_state {
	PS_HELLO,   /* waiting for the peer's Hello */
	PS_AUTH,    /* Hello exchanged, waiting for the peer's Auth */
	PS_AUTHED,  /* authenticated, no session yet */
	PS_READY,   /* in a session, between rounds */
	PS_ROUND,   /* in a round */
	PS_BARRIER, /* ended the round, waiting for the other streams */
	PS_CLOSING, /* flushing an Error, accepts nothing */
	PS_NSTATES
};

static const char *const state_names[] = {"hello", "auth",    "authed", "ready",
					  "round", "barrier", "closing"};

#define T(x) (1u << (x))
/* Which frame types each state accepts; the rest close the connection. */
static const uint32_t conn_accepts[PS_NSTATES] = {
	[PS_HELLO] = T(WIRE_HELLO),
	[PS_AUTH] = T(WIRE_AUTH),
	[PS_AUTHED] = T(WIRE_SESSION_OPEN) | T(WIRE_SESSION_JOIN) | T(WIRE_ERROR),
	[PS_READY] = T(WIRE_LAYOUT) | T(WIRE_ROUND_BEGIN) | T(WIRE_STATE) | T(WIRE_RESTORE) |
		     T(WIRE_COMMIT) | T(WIRE_PAGE_REQ) | T(WIRE_PAGE_REPLY) | T(WIRE_ERROR),
	[PS_ROUND] = T(WIRE_LAYOUT) | T(WIRE_PAGES) | T(WIRE_ROUND_END) | T(WIRE_PAGE_REQ) |
		     T(WIRE_PAGE_REPLY) | T(WIRE_ERROR),
	[PS_BARRIER] = T(WIRE_PAGE_REQ) | T(WIRE_PAGE_REPLY) | T(WIRE_ERROR),
	[PS_CLOSING] = 0,
};
#undef T

struct ps_session;

/*
 * A post-copy page request of another thread (ps_session_fetch).  On the
 * heap: the requester frees it once done; one that timed out is marked
 * abandoned and freed by the loop thread, which may still hold it.  All
 * fields after `next` are under ps_server.fmu.
 */
struct ps_fetch {
	struct ps_session *sess;
	uint64_t id, addr;
	uint32_t npages;
	uint8_t *buf;
	bool urgent; /* a fault waits for it: first in the queue, on the fault stream */
	struct ps_fetch *next;
	int err;
	bool done, abandoned;
	struct timespec dl; /* CLOCK_MONOTONIC deadline; moved on by a detach and a rejoin */
};

struct ps_conn {
	struct ps_server *srv;
	int fd;
	char peer[64];
	struct sockaddr_storage addr; /* the peer, for the per-address cap */
	ev_tstamp last_rx;	      /* when bytes last arrived (idle timeout) */
	enum ps_state state;
	struct ps_conn *next;
	/* receive */
	uint8_t *rbuf;
	size_t rcap, rhead, rfill; /* unparsed bytes are rbuf[rhead, rfill) */
	bool recv_busy;
	uint32_t rx_seq;
	/* send: obuf[cur] is in flight (from ooff), obuf[!cur] collects */
	uint8_t *obuf[2];
	size_t ocap[2], olen[2], ooff;
	int ocur;
	bool send_busy;
	uint32_t tx_seq;
	/* auth */
	uint8_t cnonce[WIRE_NONCE_LEN], snonce[WIRE_NONCE_LEN];
	bool encrypt;
	uint8_t skey[WIRE_KEY_LEN];
	/* session */
	struct ps_session *sess;
	uint32_t stream;
	uint64_t round, round_pages, round_bytes;
	/* a RAW page payload received straight into the page store */
	bool direct;
	struct iovec *diov; /* WIRE_MAX_REQ_PAGES entries, allocated on first use */
	unsigned dn, di;    /* iovecs in use; the first not yet filled */
	struct msghdr dmsg;
	struct wire_hdr dh; /* that frame's header */
	uint64_t dpages;
	struct ps_session *sref; /* the session, until this connection is freed */
	/* deadline */
	ev_timer timer;
	bool timer_on;
	bool dead; /* torn down: waiting for submissions to be reaped */
};

struct ps_session {
	struct ps_server *srv;
	uint64_t id;
	Haul__Wire__SessionKind kind;
	int32_t pid;
	char comm[32];
	char peer[64];
	uint32_t nstreams;
	bool lazy;
	struct ps_conn *streams[PS_MAX_STREAMS];
	uint32_t nconns;  /* streams currently attached */
	uint32_t nrefs;	  /* connections not yet freed (their receives may write staged pages) */
	uint32_t njoined; /* streams that ever attached */
	bool in_round;
	uint64_t round, last_round;
	uint32_t nended;
	uint64_t round_pages, total_pages, total_bytes;
	uint64_t round_base;	   /* STORE: the store's round when the session opened */
	struct haul_layout layout; /* LIVE with a sink: to check pages against */
	struct pstore_proc *proc;
	void *sink_sess;
	bool committed, failed;
	/* post-copy recovery (loop thread) */
	bool restored;	       /* lazy: the sink resumed the process */
	bool detached;	       /* streams lost, waiting for the source to rejoin */
	bool done_sent;	       /* the "every page arrived" notice went out (again after a rejoin) */
	ev_timer detach_timer; /* stall timeout of a detach */
	struct timespec detach_dl; /* a request waits at least until then while detached */
	uint64_t detach_ns;	   /* when it detached */
	unsigned rejoins;
	/* post-copy, under srv->fmu */
	struct ps_fetch *parked;   /* requests to (re)send once the source rejoined */
	struct ps_fetch *inflight; /* PAGE_REQs sent, waiting for their PAGE_REPLY */
	bool fclosed;		   /* no more requests: the session failed or ended */
	bool fdone;		   /* the target has every page: tell the source */
	bool has_frep;		   /* with fdone: send frep with the notice */
	struct ps_lazy_report frep;
	unsigned next_stream; /* loop thread: round-robin of requests over streams */
	struct ps_session *next;
};

struct ps_server {
	struct ps_server_opts o;
	char *images_dir;
	struct ev_loop *loop;
	struct io_uring ring;
	bool ring_ok;
	int efd, lfd;
	ev_io eio, lio;
	ev_prepare prep;
	ev_signal sigint, sigterm;
	ev_async stop;
	/* post-copy requests from other threads */
	ev_async fasync;
	pthread_mutex_t fmu;
	pthread_cond_t fcv;
	struct ps_fetch *fqueue; /* to send */
	uint64_t next_req_id;
	pthread_t loop_thread;
	bool loop_running;
	struct pstore *store;
	struct ps_conn *conns;
	unsigned nconns;
	struct ps_session *sessions;
	unsigned nsessions_done;
	struct wire_pages_enc enc; /* PAGE_REPLY encoder */
	uint8_t **dptr;		   /* WIRE_MAX_REQ_PAGES page addresses, for direct receives */
	uint8_t *scratch;	   /* LZ4 decode, and PAGE_REQ reads */
	int port;
	int result;
	bool closing;  /* ps_server_free: no session detaches any more */
	ev_timer idle; /* sweeps authenticated connections for idleness */
};

static void conn_fail(struct ps_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_teardown(struct ps_conn *c);
static void session_fail(struct ps_session *s, int err, const char *reason);
static void server_reap(struct ps_server *s);
static int send_ack(struct ps_conn *c, unsigned type, uint64_t value, uint64_t pages);
static int send_done(struct ps_conn *c, const struct ps_lazy_report *r);
static void fetch_fail_all(struct ps_session *x, int err);
static bool session_can_detach(const struct ps_session *x);

/* ---- io_uring plumbing -------------------------------------------------------------- */

static struct io_uring_sqe *get_sqe(struct ps_server *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe) {
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}

/* Receive up to @max bytes into the receive buffer. */
static void conn_submit_recv(struct ps_conn *c, size_t max)
{
	struct io_uring_sqe *sqe;
	size_t len = c->rcap - c->rfill;

	if (c->recv_busy || c->dead || c->state == PS_CLOSING)
		return;
	sqe = get_sqe(c->srv);
	if (!sqe) {
		conn_fail(c, -EAGAIN, "cannot queue a receive: io_uring full");
		return;
	}
	io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rfill, len < max ? len : max, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_RECV);
	c->recv_busy = true;
}

static void conn_submit_send(struct ps_conn *c)
{
	struct io_uring_sqe *sqe;
	int cur = c->ocur;

	if (c->send_busy || c->dead)
		return;
	if (c->ooff == c->olen[cur]) {
		/* In-flight buffer done: swap in the collecting one. */
		c->olen[cur] = 0;
		c->ooff = 0;
		cur = c->ocur = !cur;
		if (!c->olen[cur]) {
			if (c->state == PS_CLOSING)
				conn_teardown(c);
			return;
		}
	}
	sqe = get_sqe(c->srv);
	if (!sqe) {
		conn_teardown(c);
		return;
	}
	io_uring_prep_send(sqe, c->fd, c->obuf[cur] + c->ooff, c->olen[cur] - c->ooff,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_SEND);
	c->send_busy = true;
}

/* Queue one frame; it goes out after everything queued before it. */
/*
 * Queue one frame whose payload is @nsegs pieces, @plen bytes in all; it
 * goes out after everything queued before it.  The pieces are copied.
 */
static int conn_sendv(struct ps_conn *c, unsigned type, const ProtobufCMessage *msg,
		      const struct wire_seg *segs, size_t nsegs, uint32_t plen)
{
	int col = c->send_busy ? !c->ocur : c->ocur;
	size_t need = WIRE_HDR_LEN + wire_msg_size(msg) + plen + WIRE_TAG_LEN;
	uint16_t flags = c->encrypt ? WIRE_F_ENCRYPTED : 0;
	struct wire_hdr h;
	ssize_t n;

	if (c->dead)
		return -EPIPE;
	if (!c->send_busy && c->ooff == c->olen[c->ocur] && c->olen[c->ocur]) {
		/* idle with a fully sent buffer: reuse it */
		c->olen[c->ocur] = 0;
		c->ooff = 0;
	}
	if (c->olen[col] + need > c->ocap[col]) {
		size_t cap = c->ocap[col] ? c->ocap[col] : 4096;
		uint8_t *b;

		while (cap < c->olen[col] + need)
			cap *= 2;
		b = realloc(c->obuf[col], cap);
		if (!b)
			return -ENOMEM;
		c->obuf[col] = b;
		c->ocap[col] = cap;
	}
	n = wire_frame_build(c->obuf[col] + c->olen[col], c->ocap[col] - c->olen[col], type, flags,
			     c->tx_seq, msg, NULL, plen);
	if (n < 0)
		return (int)n;
	{
		uint8_t *p = c->obuf[col] + c->olen[col] + (size_t)n - plen;

		for (size_t i = 0; i < nsegs; p += segs[i].len, i++)
			memcpy(p, segs[i].p, segs[i].len);
	}
	if (c->encrypt) {
		wire_hdr_decode(c->obuf[col] + c->olen[col], WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h);
		wire_seal(c->skey, WIRE_DIR_S2C, c->obuf[col] + c->olen[col], &h);
		n += WIRE_TAG_LEN;
	}
	c->tx_seq++;
	c->olen[col] += (size_t)n;
	conn_submit_send(c);
	return 0;
}

static int conn_send(struct ps_conn *c, unsigned type, const ProtobufCMessage *msg,
		     const void *payload, uint32_t plen)
{
	struct wire_seg seg = {payload, plen};

	return conn_sendv(c, type, msg, &seg, plen ? 1 : 0, plen);
}

/* ---- connection lifetime -------------------------------------------------------------- */

static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ps_conn *c = w->data;
	struct ps_server *s = c->srv;

	(void)loop;
	(void)revents;
	c->timer_on = false;
	if (c->state == PS_CLOSING) {
		conn_teardown(c);
	} else if (c->state < PS_AUTHED) {
		conn_fail(c, -ETIMEDOUT, "did not authenticate within %d ms; dropping it",
			  c->srv->o.stall_timeout_ms);
	} else if (c->sess && session_can_detach(c->sess)) {
		/* a stalled link, not a bad peer: the session waits for the source to rejoin */
		pr_warn("peer %s stalled mid-frame for %d ms; dropping the connection", c->peer,
			c->srv->o.stall_timeout_ms);
		conn_teardown(c);
	} else {
		conn_fail(c, -ETIMEDOUT, "stalled mid-frame for %d ms; dropping it",
			  c->srv->o.stall_timeout_ms);
	}
	server_reap(s);
}

static void conn_timer_start(struct ps_conn *c)
{
	if (c->timer_on)
		return;
	ev_timer_set(&c->timer, c->srv->o.stall_timeout_ms / 1000.0, 0.);
	ev_timer_start(c->srv->loop, &c->timer);
	c->timer_on = true;
}

static void conn_timer_stop(struct ps_conn *c)
{
	if (!c->timer_on)
		return;
	ev_timer_stop(c->srv->loop, &c->timer);
	c->timer_on = false;
}

static void conn_free(struct ps_conn *c)
{
	c->srv->nconns--;
	if (c->fd >= 0)
		close(c->fd);
	free(c->rbuf);
	free(c->obuf[0]);
	free(c->obuf[1]);
	free(c->diov);
	if (c->sref)
		c->sref->nrefs--;
	sodium_memzero(c->skey, sizeof(c->skey));
	free(c);
}

static void session_detach(struct ps_conn *c);

/*
 * Stop the connection at once.  It is freed by server_reap() once its
 * submissions are reaped, so callers up the stack may still look at it.
 */
static void conn_teardown(struct ps_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->dead)
		return;
	c->dead = true;
	conn_timer_stop(c);
	session_detach(c);
	shutdown(c->fd, SHUT_RDWR);
	if (c->recv_busy || c->send_busy) {
		sqe = get_sqe(c->srv);
		if (sqe) {
			io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, 0);
		}
	}
}

/*
 * Close @c for @err with a one-line reason naming the peer.  An
 * authenticated peer is told why with an Error frame first.
 */
static void conn_fail(struct ps_conn *c, int err, const char *fmt, ...)
{
	Haul__Wire__Error e = HAUL__WIRE__ERROR__INIT;
	char reason[256];
	va_list ap;

	if (c->dead || c->state == PS_CLOSING)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	pr_warn("peer %s: %s; closing it", c->peer, reason);
	if (c->state < PS_AUTHED) {
		conn_teardown(c);
		return;
	}
	e.err = -err;
	e.reason = reason;
	conn_send(c, WIRE_ERROR, &e.base, NULL, 0);
	c->state = PS_CLOSING;
	session_detach(c);
	/* Give the Error a moment to leave, then tear down regardless. */
	conn_timer_stop(c);
	ev_timer_set(&c->timer, 1.0, 0.);
	ev_timer_start(c->srv->loop, &c->timer);
	c->timer_on = true;
	if (!c->send_busy)
		conn_teardown(c);
}

/* ---- sessions --------------------------------------------------------------------------- */

static struct ps_session *session_find(struct ps_server *s, uint64_t id)
{
	for (struct ps_session *x = s->sessions; x; x = x->next)
		if (x->id == id)
			return x;
	return NULL;
}

static bool session_uses_store(const struct ps_session *x)
{
	return x->kind != HAUL__WIRE__SESSION_KIND__LIVE || !x->srv->o.sink;
}

/* Whether @x writes pages of its PID into the page store (keyed by PID). */
static bool session_writes_store(const struct ps_session *x)
{
	return x->kind != HAUL__WIRE__SESSION_KIND__FETCH && session_uses_store(x);
}

/*
 * Whether a transport error on a stream of @x detaches it instead of
 * failing it: a lazy live session between the resume and the commit,
 * whose process would die without the source's pages.
 */
static bool session_can_detach(const struct ps_session *x)
{
	return x->kind == HAUL__WIRE__SESSION_KIND__LIVE && x->lazy && x->restored && !x->proc &&
	       !x->committed && !x->failed && !x->srv->closing;
}

static void session_free(struct ps_session *x)
{
	struct ps_server *s = x->srv;

	if (x->proc && x->kind != HAUL__WIRE__SESSION_KIND__FETCH)
		pstore_abort(x->proc);
	ev_timer_stop(s->loop, &x->detach_timer);
	/* Wake every requester before the sink's close() waits for its threads. */
	fetch_fail_all(x, -ECONNRESET);
	if (x->sink_sess)
		s->o.sink->close(x->sink_sess, x->committed);
	pr_info("session %016llx of pid %d (%s) from %s ended%s: %llu rounds, %llu pages, %.1f MB",
		(unsigned long long)x->id, x->pid, x->comm, x->peer,
		x->committed ? ", committed" : (x->failed ? ", failed" : ""),
		(unsigned long long)x->last_round, (unsigned long long)x->total_pages,
		x->total_bytes / 1e6);
	haul_layout_release(&x->layout);
	free(x);
	s->nsessions_done++;
	if (s->o.once)
		ev_break(s->loop, EVBREAK_ALL);
}

static void session_park(struct ps_session *x);

static void session_detach(struct ps_conn *c)
{
	struct ps_session *x = c->sess;

	if (!x)
		return;
	c->sess = NULL;
	x->streams[c->stream] = NULL;
	x->nconns--;
	if (x->detached) {
		/* a stream lost again while waiting frees its slot; a refusal still fails */
		if (c->state == PS_CLOSING)
			session_fail(x, -ECONNRESET, "a rejoining stream was refused");
		return;
	}
	if (c->state != PS_CLOSING && session_can_detach(x)) {
		session_park(x);
		return;
	}
	/*
	 * A stream gone mid-round fails the session: its pages of the round are
	 * lost.  So does one gone from a live session that was not committed
	 * while others stay (the migration cannot go on without it).
	 */
	if (!x->failed && !x->committed &&
	    (x->in_round || c->state == PS_CLOSING ||
	     (x->kind == HAUL__WIRE__SESSION_KIND__LIVE && x->nconns)))
		session_fail(x, -ECONNRESET, "a stream of the session closed");
}

/*
 * Free what is finished: connections torn down whose submissions are all
 * reaped, sessions without connections.  Called only from the top of the
 * loop's callbacks, never from inside a handler.
 */
static void server_reap(struct ps_server *s)
{
	for (struct ps_conn **pp = &s->conns; *pp;) {
		struct ps_conn *c = *pp;

		if (c->dead && !c->recv_busy && !c->send_busy) {
			*pp = c->next;
			conn_free(c);
		} else {
			pp = &c->next;
		}
	}
	for (struct ps_session **pp = &s->sessions; *pp;) {
		struct ps_session *x = *pp;

		if (!x->nconns && !x->nrefs && !x->detached) {
			*pp = x->next;
			session_free(x);
		} else {
			pp = &x->next;
		}
	}
}

/*
 * Fail every stream of @x.  Its staged pages are dropped by session_free(),
 * once no receive of its connections can still write into them.
 */
static void session_fail(struct ps_session *x, int err, const char *reason)
{
	if (x->failed)
		return;
	x->failed = true;
	if (x->detached) {
		x->detached = false;
		ev_timer_stop(x->srv->loop, &x->detach_timer);
	}
	fetch_fail_all(x, err);
	for (uint32_t i = 0; i < x->nstreams; i++)
		if (x->streams[i] && x->streams[i]->state != PS_CLOSING)
			conn_fail(x->streams[i], err, "session %016llx failed: %s",
				  (unsigned long long)x->id, reason);
}

/* ---- post-copy: page requests to the source ------------------------------------------------ */

static void fetch_finish(struct ps_server *s, struct ps_fetch *f, int err)
{
	if (f->abandoned) {
		free(f);
		return;
	}
	f->err = err;
	f->done = true;
	pthread_cond_broadcast(&s->fcv);
}

/* Fail every request of @x, queued or sent, and refuse new ones.  Loop thread. */
static void fetch_fail_all(struct ps_session *x, int err)
{
	struct ps_server *s = x->srv;

	pthread_mutex_lock(&s->fmu);
	x->fclosed = true;
	while (x->inflight) {
		struct ps_fetch *f = x->inflight;

		x->inflight = f->next;
		fetch_finish(s, f, err);
	}
	while (x->parked) {
		struct ps_fetch *f = x->parked;

		x->parked = f->next;
		fetch_finish(s, f, err);
	}
	for (struct ps_fetch **pp = &s->fqueue; *pp;) {
		struct ps_fetch *f = *pp;

		if (f->sess == x) {
			*pp = f->next;
			fetch_finish(s, f, err);
		} else {
			pp = &f->next;
		}
	}
	pthread_mutex_unlock(&s->fmu);
}

/* @ms from now on CLOCK_MONOTONIC (the clock of fcv). */
static struct timespec deadline_in(int ms)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

static bool ts_before(const struct timespec *a, const struct timespec *b)
{
	return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

/* Queue @f to send: urgent ones first (behind earlier urgent ones), the others in order.  fmu. */
static void fqueue_add(struct ps_server *s, struct ps_fetch *f)
{
	struct ps_fetch **pp = &s->fqueue;

	while (*pp && (!f->urgent || (*pp)->urgent))
		pp = &(*pp)->next;
	f->next = *pp;
	*pp = f;
}

/* Every waiting request of @x waits at least until @dl (@force: exactly until @dl).  fmu. */
static void fetch_extend(struct ps_session *x, const struct timespec *dl, bool force)
{
	struct ps_fetch *lists[3] = {x->srv->fqueue, x->parked, x->inflight};

	for (int i = 0; i < 3; i++)
		for (struct ps_fetch *f = lists[i]; f; f = f->next)
			if (f->sess == x && (force || ts_before(&f->dl, dl)))
				f->dl = *dl;
	pthread_cond_broadcast(&x->srv->fcv);
}

static uint64_t loop_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/*
 * A transport error on a stream of @x, which can detach: drop every stream,
 * park the requests in flight, and give the source the stall timeout to
 * rejoin.  The requesters wait that long too (their deadlines move to the
 * end of it, plus a second so that the detach's own verdict comes first).
 */
static void session_park(struct ps_session *x)
{
	struct ps_server *s = x->srv;
	struct timespec dl = deadline_in(s->o.stall_timeout_ms + 1000);

	x->detached = true;
	x->detach_ns = loop_ns();
	x->detach_dl = dl;
	pr_warn("session %016llx of pid %d: a connection to %s broke after the resume; waiting up "
		"to %d ms for the source to reconnect",
		(unsigned long long)x->id, x->pid, x->peer, s->o.stall_timeout_ms);
	ev_timer_set(&x->detach_timer, s->o.stall_timeout_ms / 1000.0, 0.);
	ev_timer_start(s->loop, &x->detach_timer);
	pthread_mutex_lock(&s->fmu);
	while (x->inflight) {
		struct ps_fetch *f = x->inflight;

		x->inflight = f->next;
		f->next = x->parked;
		x->parked = f;
	}
	fetch_extend(x, &dl, false);
	pthread_mutex_unlock(&s->fmu);
	for (uint32_t i = 0; i < x->nstreams; i++)
		if (x->streams[i])
			conn_teardown(x->streams[i]);
}

static void detach_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ps_session *x = w->data;
	struct ps_server *s = x->srv;

	(void)loop;
	(void)revents;
	if (!x->detached)
		return;
	pr_warn("session %016llx of pid %d: the source did not reconnect within %d ms; giving up "
		"(the process cannot run without its missing pages)",
		(unsigned long long)x->id, x->pid, s->o.stall_timeout_ms);
	session_fail(x, -ECONNRESET, "the source did not reconnect in time");
	server_reap(s);
}

static struct ps_conn *fetch_stream(struct ps_session *x, bool urgent);

/*
 * Every stream of a detached @x is back: send the parked requests again
 * under new req_ids, each with a full stall timeout for its reply, and the
 * "every page arrived" notice again if it had gone out (the source may
 * never have read it).  Loop thread.
 */
static void session_resume(struct ps_session *x)
{
	struct ps_server *s = x->srv;
	struct timespec dl = deadline_in(s->o.stall_timeout_ms);
	struct ps_lazy_report rep;
	bool has_rep;

	x->detached = false;
	ev_timer_stop(s->loop, &x->detach_timer);
	x->rejoins++;
	pthread_mutex_lock(&s->fmu);
	while (x->parked) {
		struct ps_fetch *f = x->parked;

		x->parked = f->next;
		if (f->abandoned) {
			free(f);
			continue;
		}
		f->id = ++s->next_req_id;
		fqueue_add(s, f);
	}
	fetch_extend(x, &dl, true);
	has_rep = x->has_frep;
	rep = x->frep;
	pthread_mutex_unlock(&s->fmu);
	pr_info("session %016llx of pid %d: the source rejoined from %s after %.0f ms",
		(unsigned long long)x->id, x->pid, x->streams[0] ? x->streams[0]->peer : "?",
		(loop_ns() - x->detach_ns) / 1e6);
	if (x->done_sent && fetch_stream(x, true))
		send_done(fetch_stream(x, true), has_rep ? &rep : NULL);
	ev_async_send(s->loop, &s->fasync);
}

static bool fetch_usable(const struct ps_conn *c)
{
	return c && !c->dead && c->state >= PS_READY && c->state <= PS_BARRIER;
}

/*
 * A stream of @x that can carry a request now; NULL if none.  With two
 * streams or more, stream 0 carries the urgent requests (faults) and the
 * others the background ones, round-robin: a fault's reply then never
 * queues behind megabytes of pushed pages in the same socket (the source
 * serves each stream on its own thread, ps_client_serve).  With one, all.
 */
static struct ps_conn *fetch_stream(struct ps_session *x, bool urgent)
{
	uint32_t first = x->nstreams >= 2 ? 1 : 0, n = x->nstreams - first;

	if (urgent && x->nstreams >= 2 && fetch_usable(x->streams[0]))
		return x->streams[0];
	for (uint32_t k = 0; k < n; k++) {
		struct ps_conn *c = x->streams[first + x->next_stream++ % n];

		if (fetch_usable(c))
			return c;
	}
	return fetch_usable(x->streams[0]) ? x->streams[0] : NULL;
}

/* Loop thread: send the queued requests and the "all arrived" notices. */
static void fasync_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct ps_server *s = w->data;
	struct ps_session *done[64];
	struct ps_lazy_report rep[64];
	bool has_rep[64];
	struct ps_fetch *todo;
	unsigned ndone = 0;

	(void)loop;
	(void)revents;
	pthread_mutex_lock(&s->fmu);
	todo = s->fqueue;
	s->fqueue = NULL;
	for (struct ps_session *x = s->sessions; x && ndone < 64; x = x->next)
		if (x->fdone) {
			x->fdone = false;
			has_rep[ndone] = x->has_frep;
			rep[ndone] = x->frep;
			done[ndone++] = x;
		}
	pthread_mutex_unlock(&s->fmu);

	/* Send without the lock: a failing send may fail the session (fetch_fail_all). */
	while (todo) {
		struct ps_fetch *f = todo;
		struct ps_session *x = f->sess;
		Haul__Wire__PageReq q = HAUL__WIRE__PAGE_REQ__INIT;
		struct ps_conn *c = x->failed || x->detached ? NULL : fetch_stream(x, f->urgent);
		int ret = -ECONNRESET;

		todo = f->next;
		if (x->detached) {
			/* sent once the source rejoins; until then it waits as long as the detach */
			pthread_mutex_lock(&s->fmu);
			if (ts_before(&f->dl, &x->detach_dl))
				f->dl = x->detach_dl;
			f->next = x->parked;
			x->parked = f;
			pthread_mutex_unlock(&s->fmu);
			continue;
		}
		if (c) {
			q.req_id = f->id;
			q.addr = f->addr;
			q.npages = f->npages;
			ret = conn_send(c, WIRE_PAGE_REQ, &q.base, NULL, 0);
		}
		pthread_mutex_lock(&s->fmu);
		if (!ret && !x->fclosed && !f->abandoned) {
			f->next = x->inflight;
			x->inflight = f;
		} else {
			fetch_finish(s, f, ret ? ret : -ECONNRESET);
		}
		pthread_mutex_unlock(&s->fmu);
	}
	for (unsigned i = 0; i < ndone; i++) {
		struct ps_conn *c = done[i]->detached ? NULL : fetch_stream(done[i], true);

		/* while detached it goes out with the rejoin */
		done[i]->done_sent = true;
		if (c)
			send_done(c, has_rep[i] ? &rep[i] : NULL);
	}
	server_reap(s);
}

static int fetch(struct ps_session *x, uint64_t addr, uint32_t npages, void *buf, bool urgent)
{
	struct ps_server *s = x->srv;
	struct ps_fetch *f;
	int ret = 0;

	if (npages == 0 || npages > WIRE_MAX_REQ_PAGES || (addr & (HAUL_PAGE_SIZE - 1)))
		return -EINVAL;
	if (s->loop_running && pthread_equal(pthread_self(), s->loop_thread))
		return -EDEADLK;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->sess = x;
	f->addr = addr;
	f->npages = npages;
	f->buf = buf;
	f->dl = deadline_in(s->o.stall_timeout_ms);
	pthread_mutex_lock(&s->fmu);
	if (x->fclosed) {
		pthread_mutex_unlock(&s->fmu);
		free(f);
		return -ECONNRESET;
	}
	f->id = ++s->next_req_id;
	f->urgent = urgent;
	fqueue_add(s, f);
	pthread_mutex_unlock(&s->fmu);
	ev_async_send(s->loop, &s->fasync);

	/*
	 * f->dl may move on while we wait: a detach extends it to its own end,
	 * a rejoin gives the re-sent request a full stall timeout again.
	 */
	pthread_mutex_lock(&s->fmu);
	while (!f->done) {
		struct timespec dl = f->dl;

		if (pthread_cond_timedwait(&s->fcv, &s->fmu, &dl) == ETIMEDOUT && !f->done &&
		    !ts_before(&dl, &f->dl))
			break;
	}
	if (f->done) {
		ret = f->err;
		free(f);
	} else {
		f->abandoned = true; /* the loop thread frees it */
		ret = -ETIMEDOUT;
	}
	pthread_mutex_unlock(&s->fmu);
	return ret;
}

int ps_session_fetch(struct ps_session *x, uint64_t addr, uint32_t npages, void *buf)
{
	return fetch(x, addr, npages, buf, false);
}

int ps_session_fetch_urgent(struct ps_session *x, uint64_t addr, uint32_t npages, void *buf)
{
	return fetch(x, addr, npages, buf, true);
}

int ps_session_fetch_done_report(struct ps_session *x, const struct ps_lazy_report *r)
{
	struct ps_server *s = x->srv;

	pthread_mutex_lock(&s->fmu);
	x->fdone = true;
	x->has_frep = r != NULL;
	if (r)
		x->frep = *r;
	pthread_mutex_unlock(&s->fmu);
	ev_async_send(s->loop, &s->fasync);
	return 0;
}

int ps_session_fetch_done(struct ps_session *x)
{
	return ps_session_fetch_done_report(x, NULL);
}

struct fetch_ctx {
	uint64_t addr;
	uint32_t npages, got;
	uint8_t *buf;
};

static int fetch_put(void *arg, uint64_t addr, const void *data, uint32_t n)
{
	struct fetch_ctx *fc = arg;

	if (addr < fc->addr ||
	    addr + (uint64_t)n * HAUL_PAGE_SIZE > fc->addr + (uint64_t)fc->npages * HAUL_PAGE_SIZE)
		return -ERANGE;
	if (data)
		memcpy(fc->buf + (addr - fc->addr), data, (size_t)n * HAUL_PAGE_SIZE);
	else
		memset(fc->buf + (addr - fc->addr), 0, (size_t)n * HAUL_PAGE_SIZE);
	fc->got += n;
	return 0;
}

/* The source answers a request: copy the pages to the requester and wake it. */
static int on_page_reply(struct ps_conn *c, ProtobufCMessage *m, const uint8_t *payload, size_t len)
{
	Haul__Wire__Pages *pm = (Haul__Wire__Pages *)m;
	struct ps_session *x = c->sess;
	struct ps_server *s = c->srv;
	struct ps_fetch *f = NULL;
	int64_t n;

	pthread_mutex_lock(&s->fmu);
	for (struct ps_fetch **pp = &x->inflight; *pp; pp = &(*pp)->next)
		if ((*pp)->id == pm->req_id) {
			f = *pp;
			*pp = f->next;
			break;
		}
	if (!f) {
		pthread_mutex_unlock(&s->fmu);
		pr_debug("peer %s: reply to page request %llu, which is gone", c->peer,
			 (unsigned long long)pm->req_id);
		return 0;
	}
	if (f->abandoned) {
		free(f);
		pthread_mutex_unlock(&s->fmu);
		return 0;
	}
	struct fetch_ctx fc = {f->addr, f->npages, 0, f->buf};
	char why[160];

	why[0] = '\0';
	n = val_pages(pm, why, sizeof(why));
	if (!n)
		n = wire_pages_decode(pm, payload, len, s->scratch, fetch_put, &fc);
	if (n < 0 || fc.got != f->npages)
		pr_warn("peer %s: bad reply to page request %#llx+%u (%s)", c->peer,
			(unsigned long long)f->addr, f->npages,
			why[0]	? why
			: n < 0 ? wire_strerror((int)n)
				: "the source could not read them");
	fetch_finish(s, f, n < 0 || fc.got != f->npages ? -EIO : 0);
	pthread_mutex_unlock(&s->fmu);
	return 0;
}

/* ---- frame handlers --------------------------------------------------------------------------- */

/* Same host: the address without the port. */
static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (a->ss_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr,
			       sizeof(struct in6_addr));
	return false;
}

/* Authenticated connections other than @self from the address of @self. */
static unsigned peer_authed(const struct ps_conn *self)
{
	unsigned n = 0;

	for (const struct ps_conn *c = self->srv->conns; c; c = c->next)
		if (c != self && !c->dead && c->state >= PS_AUTHED && c->state != PS_CLOSING &&
		    same_addr(&c->addr, &self->addr))
			n++;
	return n;
}

static int on_hello(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__Hello *h = (Haul__Wire__Hello *)m, r = HAUL__WIRE__HELLO__INIT;

	if (h->version != WIRE_VERSION) {
		conn_fail(c, -EPROTONOSUPPORT, "speaks protocol version %u, this server %u",
			  h->version, WIRE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (h->nonce.len != WIRE_NONCE_LEN) {
		conn_fail(c, -EPROTO, "sent a %zu-byte nonce", h->nonce.len);
		return -EPROTO;
	}
	memcpy(c->cnonce, h->nonce.data, WIRE_NONCE_LEN);
	randombytes_buf(c->snonce, WIRE_NONCE_LEN);
	r.version = WIRE_VERSION;
	r.caps = PS_CAPS;
	r.nonce.data = c->snonce;
	r.nonce.len = WIRE_NONCE_LEN;
	r.name = "haul pageserver";
	c->state = PS_AUTH;
	return conn_send(c, WIRE_HELLO, &r.base, NULL, 0);
}

static int on_auth(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__Auth *a = (Haul__Wire__Auth *)m, r = HAUL__WIRE__AUTH__INIT;
	uint8_t mac[WIRE_MAC_LEN];
	bool enc = a->has_encrypt && a->encrypt;
	int ret;

	if (!wire_auth_verify(c->srv->o.key, true, c->cnonce, c->snonce, a->mac.data, a->mac.len)) {
		conn_fail(c, -EACCES, "failed authentication (bad MAC: wrong key?)");
		return -EACCES;
	}
	if (c->srv->o.require_encrypt && !enc) {
		/* authenticated, so it may be told why */
		c->state = PS_AUTHED;
		conn_fail(c, -EPERM,
			  "did not ask for encryption, which this server requires "
			  "(run the client with --encrypt)");
		return -EPERM;
	}
	if (peer_authed(c) >= PS_MAX_CONNS_PER_PEER) {
		c->state = PS_AUTHED;
		conn_fail(c, -EUSERS,
			  "holds %d authenticated connections from its address already; close "
			  "idle ones (or wait for the server's --idle-timeout)",
			  PS_MAX_CONNS_PER_PEER);
		return -EUSERS;
	}
	wire_auth_mac(c->srv->o.key, false, c->cnonce, c->snonce, mac);
	r.mac.data = mac;
	r.mac.len = WIRE_MAC_LEN;
	r.has_encrypt = true;
	r.encrypt = enc;
	ret = conn_send(c, WIRE_AUTH, &r.base, NULL, 0);
	if (ret)
		return ret;
	if (enc) {
		wire_session_key(c->srv->o.key, c->cnonce, c->snonce, c->skey);
		c->encrypt = true;
	}
	c->state = PS_AUTHED;
	conn_timer_stop(c);
	pr_debug("peer %s: authenticated%s", c->peer, enc ? ", encrypted" : "");
	return 0;
}

static void session_ok(struct ps_conn *c, struct ps_session *x)
{
	Haul__Wire__SessionOk ok = HAUL__WIRE__SESSION_OK__INIT;

	ok.session_id = x->id;
	ok.has_committed_round = true;
	ok.committed_round = x->proc ? pstore_round(x->proc) : 0;
	c->state = PS_READY;
	conn_send(c, WIRE_SESSION_OK, &ok.base, NULL, 0);
}

static const char *kind_name(Haul__Wire__SessionKind k)
{
	return k == HAUL__WIRE__SESSION_KIND__LIVE    ? "live"
	       : k == HAUL__WIRE__SESSION_KIND__STORE ? "store"
						      : "fetch";
}

static int on_session_open(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__SessionOpen *o = (Haul__Wire__SessionOpen *)m;
	struct ps_server *s = c->srv;
	struct ps_session *x;
	char why[160];
	int ret;

	if (val_session_open(o, why, sizeof(why))) {
		conn_fail(c, -EPROTO, "sent a bad SessionOpen: %s", why);
		return -EPROTO;
	}
	if (session_find(s, o->session_id)) {
		conn_fail(c, -EEXIST, "session %016llx is already open",
			  (unsigned long long)o->session_id);
		return -EEXIST;
	}
	/*
	 * Sessions are told apart by their id alone: two live migrations of
	 * one in-namespace PID (two `haul run` workloads are both pid 1) each
	 * restore into their own stub, in a new PID namespace when the PID is
	 * taken, and a detached post-copy waiting for its source blocks no
	 * one.  Only the page store is keyed by PID: two sessions writing
	 * pages of one PID into it at once would mix their rounds.
	 */
	for (x = s->sessions; x; x = x->next)
		if (x->pid == o->pid && session_writes_store(x) &&
		    o->kind != HAUL__WIRE__SESSION_KIND__FETCH &&
		    (o->kind != HAUL__WIRE__SESSION_KIND__LIVE || !s->o.sink)) {
			conn_fail(c, -EBUSY,
				  "pid %d is already being stored by session %016llx from %s; "
				  "retry once it ends",
				  o->pid, (unsigned long long)x->id, x->peer);
			return -EBUSY;
		}
	x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->srv = s;
	x->id = o->session_id;
	x->kind = o->kind;
	x->pid = o->pid;
	snprintf(x->comm, sizeof(x->comm), "%s", o->comm ? o->comm : "");
	snprintf(x->peer, sizeof(x->peer), "%s", c->peer);
	x->nstreams = o->nstreams;
	x->lazy = o->has_lazy && o->lazy;
	ev_init(&x->detach_timer, detach_timer_cb);
	x->detach_timer.data = x;
	if (x->kind == HAUL__WIRE__SESSION_KIND__FETCH) {
		ret = pstore_proc_get(s->store, x->pid, false, &x->proc);
		if (ret || pstore_round(x->proc) == 0) {
			free(x);
			conn_fail(c, -ENOENT, "asked for pid %d, which has no committed image here",
				  o->pid);
			return -ENOENT;
		}
	} else if (session_uses_store(x)) {
		ret = pstore_proc_get(s->store, x->pid, true, &x->proc);
		if (ret) {
			free(x);
			conn_fail(c, ret, "cannot store pages of pid %d: %s", o->pid,
				  strerror(-ret));
			return ret;
		}
		pstore_set_comm(x->proc, x->comm);
		/* The client counts rounds from 1; the store goes on from its last commit. */
		x->round_base = pstore_round(x->proc);
	} else {
		struct ps_session_info info = {
			.session_id = x->id,
			.pid = x->pid,
			.comm = x->comm,
			.peer = c->peer,
			.nstreams = x->nstreams,
			.lazy = x->lazy,
			.session = x,
			.has_clocks = o->has_clock_monotonic_ns && o->has_clock_boottime_ns,
			.clock_monotonic_ns = o->clock_monotonic_ns,
			.clock_boottime_ns = o->clock_boottime_ns,
			.has_boot_id = o->has_boot_id && o->boot_id.len == 16,
			.timens_monotonic_ns = o->timens_monotonic_ns,
			.timens_boottime_ns = o->timens_boottime_ns,
		};

		if (info.has_boot_id)
			memcpy(info.boot_id, o->boot_id.data, 16);

		ret = s->o.sink->open(s->o.sink_arg, &info, &x->sink_sess);
		if (ret) {
			free(x);
			conn_fail(c, ret, "cannot start restoring pid %d: %s", o->pid,
				  strerror(-ret));
			return ret;
		}
	}
	x->next = s->sessions;
	s->sessions = x;
	x->streams[0] = c;
	x->nconns = 1;
	x->nrefs = 1;
	x->njoined = 1;
	c->sess = x;
	c->sref = x;
	c->stream = 0;
	pr_info("session %016llx from %s: %s pid %d (%s), %u stream%s", (unsigned long long)x->id,
		c->peer, kind_name(x->kind), x->pid, x->comm, x->nstreams,
		x->nstreams > 1 ? "s" : "");
	session_ok(c, x);
	return 0;
}

/*
 * SessionJoin: stream 1.. of a new session; with resume, any stream of a
 * detached session (post-copy recovery), which resumes once every stream
 * is back.
 */
static int on_session_join(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__SessionJoin *j = (Haul__Wire__SessionJoin *)m;
	struct ps_session *x = session_find(c->srv, j->session_id);
	bool resume = j->has_resume && j->resume;
	char why[160];

	if (x && val_session_join(j, x->nstreams, why, sizeof(why))) {
		conn_fail(c, -EPROTO, "sent a bad SessionJoin: %s", why);
		return -EPROTO;
	}
	if (!x || x->failed) {
		conn_fail(c, -ENOENT, "%s unknown session %016llx%s",
			  resume ? "rejoined" : "joined", (unsigned long long)j->session_id,
			  resume ? " (it failed, gave up waiting, or never existed here)" : "");
		return -ENOENT;
	}
	if (resume != x->detached) {
		conn_fail(c, -EBUSY,
			  resume ? "rejoined session %016llx, which is not detached (its streams "
				   "are connected, or it cannot recover)"
				 : "joined session %016llx, which waits for its source to rejoin",
			  (unsigned long long)j->session_id);
		return -EBUSY;
	}
	if ((j->stream == 0 && !resume) || j->stream >= x->nstreams || x->streams[j->stream]) {
		conn_fail(c, -EPROTO,
			  "joined session %016llx as stream %u of %u (taken or out "
			  "of range)",
			  (unsigned long long)j->session_id, j->stream, x->nstreams);
		return -EPROTO;
	}
	x->streams[j->stream] = c;
	x->nconns++;
	x->nrefs++;
	if (!resume)
		x->njoined++;
	c->sess = x;
	c->sref = x;
	c->stream = j->stream;
	session_ok(c, x);
	if (resume && x->nconns == x->nstreams)
		session_resume(x);
	return 0;
}

static int send_ack(struct ps_conn *c, unsigned type, uint64_t value, uint64_t pages)
{
	Haul__Wire__Ack a = HAUL__WIRE__ACK__INIT;

	a.type = type;
	a.has_value = true;
	a.value = value;
	a.has_pages = true;
	a.pages = pages;
	return conn_send(c, WIRE_ACK, &a.base, NULL, 0);
}

/* Post-copy: Ack(PAGE_REQ), "every page arrived", with the target's report when there is one. */
static int send_done(struct ps_conn *c, const struct ps_lazy_report *r)
{
	Haul__Wire__Ack a = HAUL__WIRE__ACK__INIT;
	Haul__Wire__LazyReport lm;

	a.type = WIRE_PAGE_REQ;
	a.has_value = true;
	a.has_pages = true;
	if (r) {
		ps_lazy_report_to_msg(r, &lm);
		a.lazy = &lm;
	}
	return conn_send(c, WIRE_ACK, &a.base, NULL, 0);
}

static int on_layout(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__Layout *lm = (Haul__Wire__Layout *)m;
	struct ps_session *x = c->sess;
	struct haul_layout l;
	char why[160];
	int ret;

	if (x->kind == HAUL__WIRE__SESSION_KIND__FETCH) {
		conn_fail(c, -EPROTO, "sent a layout in a fetch session");
		return -EPROTO;
	}
	ret = wire_layout_from_msg(lm->vmas, lm->n_vmas, &l);
	if (ret) {
		conn_fail(c, ret, "sent a malformed layout (unaligned, empty or overlapping VMAs)");
		session_fail(x, ret, "a stream sent a malformed layout");
		return ret;
	}
	if (val_layout(&l, why, sizeof(why))) {
		haul_layout_release(&l);
		conn_fail(c, -EBADMSG, "sent a bad layout of pid %d: %s", x->pid, why);
		session_fail(x, -EBADMSG, "a stream sent a bad layout");
		return -EBADMSG;
	}
	if (x->proc)
		ret = pstore_set_layout(x->proc, &l);
	else
		ret = c->srv->o.sink->layout(x->sink_sess, &l);
	if (ret) {
		haul_layout_release(&l);
		session_fail(x, ret, "the layout could not be applied");
		return ret;
	}
	haul_layout_release(&x->layout);
	x->layout = l;
	return send_ack(c, WIRE_LAYOUT, 0, 0);
}

static int on_round_begin(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__RoundBegin *rb = (Haul__Wire__RoundBegin *)m;
	struct ps_session *x = c->sess;

	if (x->kind == HAUL__WIRE__SESSION_KIND__FETCH) {
		conn_fail(c, -EPROTO, "began a round in a fetch session");
		return -EPROTO;
	}
	if (x->njoined == x->nstreams && x->nconns < x->nstreams) {
		/* A stream left: the round's barrier could never complete. */
		conn_fail(c, -EPIPE, "began round %llu after another stream of its session closed",
			  (unsigned long long)rb->round);
		session_fail(x, -EPIPE, "a stream of the session closed");
		return -EPIPE;
	}
	if (x->in_round ? rb->round != x->round : rb->round <= x->last_round) {
		conn_fail(c, -EPROTO, "began round %llu (session is at round %llu)",
			  (unsigned long long)rb->round,
			  (unsigned long long)(x->in_round ? x->round : x->last_round));
		return -EPROTO;
	}
	if (!x->in_round) {
		x->in_round = true;
		x->round = rb->round;
		x->nended = 0;
		x->round_pages = 0;
	}
	c->round = rb->round;
	c->round_pages = c->round_bytes = 0;
	c->state = PS_ROUND;
	return 0;
}

static int put_pages(void *arg, uint64_t addr, const void *data, uint32_t npages)
{
	struct ps_conn *c = arg;
	struct ps_session *x = c->sess;

	if (x->proc)
		return pstore_put(x->proc, addr, data, npages);
	if (!haul_layout_covers(&x->layout, addr, npages))
		return -ERANGE;
	return c->srv->o.sink->pages(x->sink_sess, addr, data, npages);
}

static int on_pages(struct ps_conn *c, ProtobufCMessage *m, const uint8_t *payload, size_t len)
{
	struct ps_session *x = c->sess;
	char why[160];
	int64_t n;

	if (val_pages((Haul__Wire__Pages *)m, why, sizeof(why))) {
		conn_fail(c, -EBADMSG, "sent a bad page batch for pid %d: %s", x->pid, why);
		session_fail(x, -EBADMSG, "a stream sent a bad page batch");
		return -EBADMSG;
	}
	n = wire_pages_decode((Haul__Wire__Pages *)m, payload, len, c->srv->scratch, put_pages, c);
	if (n == -EBADMSG) {
		conn_fail(c, -EBADMSG, "sent a malformed page batch (bad range or corrupt LZ4)");
		session_fail(x, -EBADMSG, "a stream sent a malformed page batch");
		return -EBADMSG;
	}
	if (n == -ERANGE) {
		conn_fail(c, -ERANGE, "sent pages outside any announced VMA of pid %d", x->pid);
		session_fail(x, -ERANGE, "a stream sent pages outside the layout");
		return -ERANGE;
	}
	if (n < 0) {
		session_fail(x, (int)n, "the pages could not be stored");
		return (int)n;
	}
	c->round_pages += (uint64_t)n;
	c->round_bytes += len;
	x->round_pages += (uint64_t)n;
	x->total_pages += (uint64_t)n;
	x->total_bytes += len;
	return 0;
}

static int round_complete(struct ps_session *x)
{
	struct ps_server *s = x->srv;
	int ret;

	if (x->proc)
		ret = pstore_commit(x->proc, x->round_base + x->round);
	else
		ret = s->o.sink->round_end(x->sink_sess, x->round);
	if (ret) {
		session_fail(x, ret, "the round could not be committed");
		return ret;
	}
	x->in_round = false;
	x->last_round = x->round;
	pr_info("pid %d round %llu %s: %llu pages (session %llu pages, %.1f MB)", x->pid,
		(unsigned long long)x->round, x->proc ? "committed" : "applied",
		(unsigned long long)x->round_pages, (unsigned long long)x->total_pages,
		x->total_bytes / 1e6);
	for (uint32_t i = 0; i < x->nstreams; i++) {
		struct ps_conn *c = x->streams[i];

		if (!c || c->state != PS_BARRIER)
			continue;
		c->state = PS_READY;
		send_ack(c, WIRE_ROUND_END, x->round, x->round_pages);
	}
	return 0;
}

static int on_round_end(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__RoundEnd *re = (Haul__Wire__RoundEnd *)m;
	struct ps_session *x = c->sess;

	if (re->round != c->round) {
		conn_fail(c, -EPROTO, "ended round %llu inside round %llu",
			  (unsigned long long)re->round, (unsigned long long)c->round);
		return -EPROTO;
	}
	if (re->has_pages && re->pages != c->round_pages) {
		conn_fail(c, -EPROTO, "ended round %llu claiming %llu pages; %llu arrived",
			  (unsigned long long)re->round, (unsigned long long)re->pages,
			  (unsigned long long)c->round_pages);
		session_fail(x, -EPROTO, "a stream lost pages");
		return -EPROTO;
	}
	c->state = PS_BARRIER;
	if (++x->nended < x->nstreams)
		return 0;
	return round_complete(x);
}

/*
 * State.stale (hybrid post-copy): (addr, npages) pairs for the sink's
 * stale(), checked like page ranges (aligned, 1..2^32 pages, no overflow).
 */
static int on_stale(struct ps_conn *c, const Haul__Wire__State *m)
{
	struct ps_session *x = c->sess;
	struct ps_range *r;
	size_t n = m->n_stale / 2;
	char why[160];
	int ret;

	if (val_stale(m, PS_MAX_STALE_RANGES, why, sizeof(why))) {
		conn_fail(c, -EPROTO, "sent a bad stale list: %s", why);
		return -EPROTO;
	}
	if (x->proc || !x->lazy) {
		conn_fail(c, -EPROTO, "sent stale pages outside a lazy live session");
		return -EPROTO;
	}
	if (!c->srv->o.sink->stale) {
		session_fail(x, -EOPNOTSUPP, "this page server's sink cannot take stale pages");
		return -EOPNOTSUPP;
	}
	r = malloc(n * sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		r[i].addr = m->stale[2 * i];
		r[i].npages = m->stale[2 * i + 1];
		if ((r[i].addr & (HAUL_PAGE_SIZE - 1)) || !r[i].npages ||
		    r[i].npages > UINT32_MAX ||
		    r[i].addr + r[i].npages * HAUL_PAGE_SIZE < r[i].addr) {
			free(r);
			conn_fail(c, -EPROTO, "sent a bad stale range");
			return -EPROTO;
		}
	}
	ret = c->srv->o.sink->stale(x->sink_sess, r, n);
	free(r);
	if (ret)
		session_fail(x, ret, "the stale pages were refused");
	return ret;
}

static int on_state(struct ps_conn *c, const Haul__Wire__State *m, const uint8_t *payload,
		    size_t len)
{
	struct ps_session *x = c->sess;
	int ret;

	if (x->kind == HAUL__WIRE__SESSION_KIND__FETCH) {
		conn_fail(c, -EPROTO, "sent a state in a fetch session");
		return -EPROTO;
	}
	if (m->n_stale) {
		ret = on_stale(c, m);
		if (ret)
			return ret;
	}
	if (x->proc)
		ret = pstore_set_state(x->proc, payload, len);
	else
		ret = c->srv->o.sink->state(x->sink_sess, payload, len);
	if (ret) {
		session_fail(x, ret, "the process state was refused");
		return ret;
	}
	return send_ack(c, WIRE_STATE, 0, 0);
}

static int on_restore(struct ps_conn *c)
{
	Haul__Wire__RestoreReply r = HAUL__WIRE__RESTORE_REPLY__INIT;
	struct ps_session *x = c->sess;
	struct ps_restore_result res = {0};
	int ret;

	if (x->proc) {
		res.err = -EOPNOTSUPP;
		snprintf(res.msg, sizeof(res.msg),
			 "this page server has no restore sink (%s session); it stores pages only",
			 kind_name(x->kind));
	} else {
		ret = c->srv->o.sink->restore(x->sink_sess, &res);
		if (ret) {
			res.err = ret;
			snprintf(res.msg, sizeof(res.msg), "restore failed: %s", strerror(-ret));
		}
	}
	if (res.err)
		pr_warn("pid %d: restore failed: %s", x->pid, res.msg);
	else
		pr_info("pid %d restored as pid %d", x->pid, res.pid);
	/* from now on a broken connection detaches a lazy session instead of failing it */
	x->restored = !res.err;
	r.pid = res.pid;
	r.err = res.err;
	r.msg = res.msg;
	return conn_send(c, WIRE_RESTORE_REPLY, &r.base, NULL, 0);
}

static int on_commit(struct ps_conn *c)
{
	struct ps_session *x = c->sess;
	int ret;

	if (x->kind == HAUL__WIRE__SESSION_KIND__FETCH) {
		conn_fail(c, -EPROTO, "sent a commit in a fetch session");
		return -EPROTO;
	}
	if (x->proc) {
		ret = pstore_commit(x->proc, x->round_base + x->last_round);
		if (ret) {
			session_fail(x, ret, "the commit failed");
			return ret;
		}
	}
	x->committed = true;
	pr_info("session %016llx of pid %d committed", (unsigned long long)x->id, x->pid);
	return send_ack(c, WIRE_COMMIT, x->last_round, 0);
}

static int on_page_req(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__PageReq *q = (Haul__Wire__PageReq *)m;
	struct ps_session *x = c->sess;
	struct ps_server *s = c->srv;
	Haul__Wire__Pages rep;
	char why[160];
	int64_t n;
	int ret;

	if (!x->proc) {
		conn_fail(c, -EOPNOTSUPP, "asked for pages of a live session (not stored here)");
		return -EOPNOTSUPP;
	}
	if (val_page_req(q, why, sizeof(why))) {
		conn_fail(c, -EPROTO, "sent a bad PageReq: %s", why);
		return -EPROTO;
	}
	n = pstore_read(x->proc, q->addr, q->npages, s->scratch);
	if (n < 0) {
		conn_fail(c, (int)n, "cannot read pages of pid %d for it", x->pid);
		return (int)n;
	}
	wire_pages_enc_reset(&s->enc);
	ret = wire_pages_enc_add(&s->enc, q->addr, s->scratch, q->npages);
	if (ret != (int)q->npages) {
		conn_fail(c, -EMSGSIZE, "page reply of %u pages does not fit a frame", q->npages);
		return -EMSGSIZE;
	}
	wire_pages_enc_msg(&s->enc, &rep);
	rep.has_req_id = true;
	rep.req_id = q->req_id;
	/* Raw pages go from the read buffer into the send buffer: one copy. */
	return conn_sendv(c, WIRE_PAGE_REPLY, &rep.base, s->enc.segs, s->enc.nsegs,
			  (uint32_t)s->enc.len);
}

static int on_error(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__Error *e = (Haul__Wire__Error *)m;

	pr_warn("peer %s reports an error: %s (%s); closing it", c->peer,
		e->reason ? e->reason : "no reason", strerror(e->err));
	if (c->sess)
		session_fail(c->sess, -ECONNABORTED, "the peer gave up");
	conn_teardown(c);
	return -ECONNABORTED;
}

/* One whole frame is at @f (decrypted). Returns 0 or -errno (the connection was failed). */
static int conn_frame(struct ps_conn *c, const struct wire_hdr *h, uint8_t *f)
{
	const uint8_t *msg = f + WIRE_HDR_LEN, *payload = msg + h->msg_len;
	ProtobufCMessage *m = NULL;
	int ret;

	if (!(conn_accepts[c->state] & (1u << h->type))) {
		conn_fail(c, -EPROTO, "sent %s in state %s", wire_type_name(h->type),
			  state_names[c->state]);
		return -EPROTO;
	}
	if (h->payload_len && h->type != WIRE_PAGES && h->type != WIRE_STATE &&
	    h->type != WIRE_PAGE_REPLY) {
		conn_fail(c, -EPROTO, "sent %s with a payload", wire_type_name(h->type));
		return -EPROTO;
	}
	ret = wire_msg_unpack(h->type, msg, h->msg_len, &m);
	if (ret) {
		conn_fail(c, ret, "sent a malformed %s message", wire_type_name(h->type));
		return ret;
	}
	switch (h->type) {
	case WIRE_HELLO:
		ret = on_hello(c, m);
		break;
	case WIRE_AUTH:
		ret = on_auth(c, m);
		break;
	case WIRE_SESSION_OPEN:
		ret = on_session_open(c, m);
		break;
	case WIRE_SESSION_JOIN:
		ret = on_session_join(c, m);
		break;
	case WIRE_LAYOUT:
		ret = on_layout(c, m);
		break;
	case WIRE_ROUND_BEGIN:
		ret = on_round_begin(c, m);
		break;
	case WIRE_PAGES:
		ret = on_pages(c, m, payload, h->payload_len);
		break;
	case WIRE_ROUND_END:
		ret = on_round_end(c, m);
		break;
	case WIRE_STATE:
		ret = on_state(c, (const Haul__Wire__State *)m, payload, h->payload_len);
		break;
	case WIRE_RESTORE:
		ret = on_restore(c);
		break;
	case WIRE_COMMIT:
		ret = on_commit(c);
		break;
	case WIRE_PAGE_REQ:
		ret = on_page_req(c, m);
		break;
	case WIRE_PAGE_REPLY:
		ret = on_page_reply(c, m, payload, h->payload_len);
		break;
	case WIRE_ERROR:
		ret = on_error(c, m);
		break;
	default:
		ret = -EPROTO;
		conn_fail(c, ret, "sent %s, which a server never receives",
			  wire_type_name(h->type));
	}
	wire_msg_free(m);
	return ret;
}

/* Whether PAGES payloads of @c may be received straight into the page store. */
static bool direct_capable(const struct ps_conn *c)
{
	return c->state == PS_ROUND && !c->encrypt && c->sess && c->sess->proc &&
	       pstore_direct_ok(c->sess->proc);
}

static void conn_submit_direct(struct ps_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_busy || c->dead || c->state == PS_CLOSING)
		return;
	sqe = get_sqe(c->srv);
	if (!sqe) {
		conn_fail(c, -EAGAIN, "cannot queue a receive: io_uring full");
		return;
	}
	memset(&c->dmsg, 0, sizeof(c->dmsg));
	c->dmsg.msg_iov = c->diov + c->di;
	c->dmsg.msg_iovlen = c->dn - c->di;
	io_uring_prep_recvmsg(sqe, c->fd, &c->dmsg, MSG_WAITALL);
	/*
	 * Punt to io_uring's kernel workers: the copy into the store then runs
	 * on another core, in parallel for each stream, while this thread
	 * goes on with the other connections.
	 */
	io_uring_sqe_set_flags(sqe, IOSQE_ASYNC);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_RECV);
	c->recv_busy = true;
}

/* Consume @n received bytes from the direct iovecs. */
static void direct_advance(struct ps_conn *c, size_t n)
{
	while (n && c->di < c->dn) {
		struct iovec *v = &c->diov[c->di];

		if (n >= v->iov_len) {
			n -= v->iov_len;
			c->di++;
		} else {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= n;
			n = 0;
		}
	}
}

static void conn_direct_done(struct ps_conn *c)
{
	struct ps_session *x = c->sess;

	c->direct = false;
	c->rx_seq++;
	conn_timer_stop(c);
	if (!x)
		return;
	c->round_pages += c->dpages;
	c->round_bytes += c->dh.payload_len;
	x->round_pages += c->dpages;
	x->total_pages += c->dpages;
	x->total_bytes += c->dh.payload_len;
}

/*
 * A PAGES frame whose header and message (and @avail - their size bytes of
 * payload) are at @f: stage its pages and receive the rest of the payload
 * straight into their cells, saving the copy out of the receive buffer.
 * Returns 1 when the receive is under way, 0 when the batch holds LZ4
 * (decoded from the buffer as usual), or -errno (the connection failed).
 */
static int conn_direct_start(struct ps_conn *c, const struct wire_hdr *h, const uint8_t *f,
			     size_t avail)
{
	struct ps_session *x = c->sess;
	size_t head = WIRE_HDR_LEN + h->msg_len;
	const uint8_t *have = f + head;
	size_t nhave = avail - head;
	Haul__Wire__Pages *pm;
	ProtobufCMessage *m;
	uint64_t pages = 0;
	bool lz4;
	int ret;

	ret = wire_msg_unpack(WIRE_PAGES, f + WIRE_HDR_LEN, h->msg_len, &m);
	if (ret) {
		conn_fail(c, ret, "sent a malformed PAGES message");
		return ret;
	}
	pm = (Haul__Wire__Pages *)m;
	ret = wire_pages_check(pm, h->payload_len, &lz4);
	if (ret || lz4) {
		wire_msg_free(m);
		if (!ret)
			return 0;
		conn_fail(c, ret, "sent a malformed page batch (bad range or corrupt LZ4)");
		session_fail(x, ret, "a stream sent a malformed page batch");
		return ret;
	}
	if (!c->diov) {
		c->diov = malloc(WIRE_MAX_REQ_PAGES * sizeof(*c->diov));
		if (!c->diov) {
			wire_msg_free(m);
			conn_fail(c, -ENOMEM, "needs memory for a direct receive");
			return -ENOMEM;
		}
	}
	c->dn = c->di = 0;
	for (size_t i = 0; i < pm->n_ranges && !ret; i++) {
		const Haul__Wire__PageRange *r = pm->ranges[i];

		if (r->enc == HAUL__WIRE__ENCODING__ZERO) {
			ret = pstore_put(x->proc, r->addr, NULL, r->npages);
		} else {
			ret = pstore_put_direct(x->proc, r->addr, r->npages, c->srv->dptr);
			for (uint32_t j = 0; !ret && j < r->npages; j++) {
				struct iovec *last = c->dn ? &c->diov[c->dn - 1] : NULL;
				uint8_t *d = c->srv->dptr[j];

				if (last && (uint8_t *)last->iov_base + last->iov_len == d)
					last->iov_len += HAUL_PAGE_SIZE;
				else
					c->diov[c->dn++] = (struct iovec){d, HAUL_PAGE_SIZE};
			}
		}
		pages += r->npages;
	}
	wire_msg_free(m);
	if (ret == -ERANGE) {
		conn_fail(c, -ERANGE, "sent pages outside any announced VMA of pid %d", x->pid);
		session_fail(x, -ERANGE, "a stream sent pages outside the layout");
		return ret;
	}
	if (ret) {
		session_fail(x, ret, "the pages could not be stored");
		return ret;
	}
	/* What already arrived goes in by copy; the rest straight from the socket. */
	for (unsigned i = 0; nhave && i < c->dn; i++) {
		size_t n = nhave < c->diov[i].iov_len ? nhave : c->diov[i].iov_len;

		memcpy(c->diov[i].iov_base, have, n);
		have += n;
		nhave -= n;
	}
	direct_advance(c, avail - head);
	c->rhead = c->rfill = 0;
	c->direct = true;
	c->dh = *h;
	c->dpages = pages;
	conn_timer_start(c);
	conn_submit_direct(c);
	return 1;
}

/* Parse every whole frame in the receive buffer; make room for the next. */
static void conn_parse(struct ps_conn *c)
{
	for (;;) {
		size_t avail = c->rfill - c->rhead, need, want = SIZE_MAX;
		bool authed = c->state >= PS_AUTHED;
		struct wire_hdr h;
		uint8_t *f = c->rbuf + c->rhead;
		int ret;

		if (c->dead || c->state == PS_CLOSING)
			return;
		if (avail < WIRE_HDR_LEN) {
			need = WIRE_HDR_LEN;
			/* Mid-round, read frame by frame so that payloads can go direct. */
			if (direct_capable(c))
				want = WIRE_HDR_LEN - avail;
			goto more;
		}
		ret = wire_hdr_decode(f, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h);
		if (ret) {
			conn_fail(c, ret, "sent a bad frame header: %s", wire_strerror(ret));
			return;
		}
		if (!(conn_accepts[c->state] & (1u << h.type))) {
			conn_fail(c, -EPROTO, "sent %s in state %s", wire_type_name(h.type),
				  state_names[c->state]);
			return;
		}
		if (!authed && (h.payload_len || h.msg_len > WIRE_MAX_PREAUTH)) {
			conn_fail(c, -EMSGSIZE, "sent a %u+%u-byte %s before authenticating",
				  h.msg_len, h.payload_len, wire_type_name(h.type));
			return;
		}
		if (h.seq != c->rx_seq) {
			conn_fail(c, -EPROTO, "sent frame %u where %u was due", h.seq, c->rx_seq);
			return;
		}
		if (!!(h.flags & WIRE_F_ENCRYPTED) != c->encrypt) {
			conn_fail(c, -EPROTO, "sent a%s frame on a%s connection",
				  c->encrypt ? "n unencrypted" : "n encrypted",
				  c->encrypt ? "n encrypted" : "n unencrypted");
			return;
		}
		need = wire_frame_len(&h);
		if (avail < need && h.type == WIRE_PAGES && h.payload_len && direct_capable(c)) {
			size_t head = WIRE_HDR_LEN + h.msg_len;

			if (avail < head) {
				/* only the header and message come through the buffer */
				want = head - avail;
				need = head;
			} else {
				ret = conn_direct_start(c, &h, f, avail);
				if (ret)
					return;
			}
		}
		if (avail < need)
			goto more;
		if (c->encrypt && wire_open(c->skey, WIRE_DIR_C2S, f, &h)) {
			conn_fail(c, -EBADMSG,
				  "sent a frame whose authentication tag does not "
				  "verify (tampered or wrong key)");
			return;
		}
		c->rx_seq++;
		c->rhead += need;
		/* The stall deadline is per frame: this one is complete. */
		if (c->state >= PS_AUTHED)
			conn_timer_stop(c);
		if (conn_frame(c, &h, f))
			return;
		continue;
more:
		/* A frame has begun: it must complete within the stall timeout. */
		if (avail || c->state < PS_AUTHED)
			conn_timer_start(c);
		else
			conn_timer_stop(c);
		if (c->rhead == c->rfill)
			c->rhead = c->rfill = 0;
		if (c->rhead + need > c->rcap) {
			/* Move the partial frame to the front, growing only to a checked size. */
			if (need > c->rcap) {
				size_t cap = need < RBUF_MIN ? RBUF_MIN : need * 2;
				uint8_t *b = malloc(cap);

				if (!b) {
					conn_fail(c, -ENOMEM, "needs a %zu-byte buffer", cap);
					return;
				}
				memcpy(b, c->rbuf + c->rhead, avail);
				free(c->rbuf);
				c->rbuf = b;
				c->rcap = cap;
			} else {
				memmove(c->rbuf, c->rbuf + c->rhead, avail);
			}
			c->rhead = 0;
			c->rfill = avail;
		}
		conn_submit_recv(c, want);
		return;
	}
}

static void on_cqe(struct ps_server *s, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	struct ps_conn *c = (struct ps_conn *)(uintptr_t)(ud & ~(uint64_t)OP_MASK);
	int res = cqe->res;

	if (!ud)
		return; /* a cancel's own completion */
	if ((ud & OP_MASK) == OP_RECV) {
		c->recv_busy = false;
		if (c->dead)
			return;
		if (res > 0)
			c->last_rx = ev_now(s->loop);
		if (c->direct && res > 0) {
			direct_advance(c, (size_t)res);
			if (c->di < c->dn) {
				conn_submit_direct(c);
				return;
			}
			conn_direct_done(c);
			conn_parse(c);
			return;
		}
		if (res == 0) {
			if (c->rfill != c->rhead || c->direct)
				pr_warn("peer %s sent a truncated frame (%zu bytes) and closed the "
					"connection",
					c->peer,
					c->direct ? (size_t)c->dh.payload_len
						  : c->rfill - c->rhead);
			else if (c->sess && c->sess->in_round)
				pr_warn("peer %s closed the connection mid-round", c->peer);
			else
				pr_debug("peer %s closed the connection", c->peer);
			conn_teardown(c);
			return;
		}
		if (res < 0) {
			if (res != -ECANCELED)
				pr_warn("peer %s: receive failed: %s; closing it", c->peer,
					strerror(-res));
			conn_teardown(c);
			return;
		}
		c->rfill += (size_t)res;
		conn_parse(c);
		return;
	}
	c->send_busy = false;
	if (c->dead)
		return;
	if (res < 0) {
		pr_warn("peer %s: send failed: %s; closing it", c->peer, strerror(-res));
		conn_teardown(c);
		return;
	}
	c->ooff += (size_t)res;
	conn_submit_send(c);
}

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
		on_cqe(s, &copy);
	}
	server_reap(s);
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
	conn_teardown(oldest);
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
		/* an uncommitted session fails with its stream (session_detach) */
		conn_fail(c, -ETIMEDOUT,
			  "idle for %d ms after authenticating; closing it (the server's "
			  "--idle-timeout)",
			  s->o.idle_timeout_ms);
	}
	server_reap(s);
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
		ev_init(&c->timer, conn_timer_cb);
		c->timer.data = c;
		c->next = s->conns;
		s->conns = c;
		s->nconns++;
		pr_debug("peer %s connected", c->peer);
		conn_timer_start(c);
		conn_submit_recv(c, SIZE_MAX);
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
	{
		pthread_condattr_t ca;

		/* deadlines of ps_session_fetch() are CLOCK_MONOTONIC */
		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&s->fcv, &ca);
		pthread_condattr_destroy(&ca);
	}
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
	ev_async_init(&s->fasync, fasync_cb);
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
		conn_teardown(c);
	server_reap(s);
	while (s->ring_ok && s->conns) {
		io_uring_submit(&s->ring);
		if (io_uring_wait_cqe(&s->ring, &cqe))
			break;
		struct io_uring_cqe copy = *cqe;

		io_uring_cqe_seen(&s->ring, cqe);
		on_cqe(s, &copy);
		server_reap(s);
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
	pthread_cond_destroy(&s->fcv);
	sodium_memzero(s->o.key, sizeof(s->o.key));
	free(s);
}
