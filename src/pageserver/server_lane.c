/*
 * server_lane.c - post-copy's fault lane, target side: a connection of a
 * lazy live session that the loop thread lets go once it has joined, so
 * that the thread waiting for a fault's pages sends the request and reads
 * the reply on it itself.
 *
 * Through the session's streams a fault's request goes from its thread to
 * the loop thread (an eventfd), out through io_uring, and its reply comes
 * back through the ring's eventfd, the loop and a condition variable: on
 * the 2-vCPU VM of bench/RESULTS.md that path cost ~250 us a fault against
 * ~90 us for a bare request and reply on a socket, and a writer that
 * catches up 161 missing pages in one tick waits for all of them in a row.
 *
 * The lane joins with SessionJoin.lane; its SessionOk goes out through the
 * ring like any frame, and once that send has completed (nothing else is
 * in flight on it, and the source sends nothing until asked) the socket,
 * its key and its sequence numbers move to a struct ps_lane of the session
 * and the connection is freed without closing the socket.  From then on:
 *  - ps_session_lane_fetch() runs on the caller's thread, one request at a
 *    time (x->lane_mu, tried, never waited for: a busy or absent lane says
 *    so and the caller takes the session's streams);
 *  - any error, a bad reply or no reply within LANE_TIMEOUT_MS marks the
 *    lane dead for good: it is shut down, and faults go through stream 0
 *    again, whose requests have the session's detach and rejoin;
 *  - a newer lane (the source serves again after a reconnect) retires the
 *    older; the session's end shuts every lane down (ps_lane_shutdown_all,
 *    which wakes a thread blocked on one) and frees them (ps_lane_free_all)
 *    once the sink is closed, when no thread can use them any more.
 * The list of lanes and their dead flags are under ps_server.fmu; the
 * socket state of a live lane belongs to the holder of x->lane_mu.
 */
#define LOG_PREFIX "ps: "
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/validate.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/server_int.h"

/* A fault's reply later than this retires the lane (the streams' path has the stall timeout). */
#define LANE_TIMEOUT_MS 2000
/*
 * Lanes one session may open (one per ps_client_serve, so per rejoin): a
 * retired lane's socket stays open until the session ends, in case a
 * thread is still on it, so an authenticated peer must not pile them up.
 */
#define LANE_MAX 16

struct ps_lane {
	struct ps_lane *next;
	int fd;
	bool dead; /* under fmu: never used again */
	char peer[64];
	/* the socket's state: x->lane_mu */
	bool encrypt;
	uint8_t skey[WIRE_KEY_LEN];
	uint32_t tx_seq, rx_seq;
	uint64_t next_id;
	uint8_t *rbuf; /* WIRE_HDR_LEN + WIRE_MAX_MSG + WIRE_MAX_PAYLOAD + tag */
	size_t rfill;
	uint8_t *scratch; /* LZ4 decoding */
};

#define LANE_RBUF (WIRE_HDR_LEN + WIRE_MAX_MSG + WIRE_MAX_PAYLOAD + WIRE_TAG_LEN)

/* ---- the loop thread: join and hand-off ------------------------------------------------ */

int ps_on_lane_join(struct ps_conn *c, struct ps_session *x)
{
	Haul__Wire__SessionOk ok = HAUL__WIRE__SESSION_OK__INIT;
	int ret;

	if (x->nlanes >= LANE_MAX) {
		ps_conn_fail(c, -EBUSY,
			     "opened fault lane %u of session %016llx, past the %u a session may "
			     "open; faults go through its streams",
			     x->nlanes + 1, (unsigned long long)x->id, LANE_MAX);
		return -EBUSY;
	}
	if (x->kind != HAUL__WIRE__SESSION_KIND__LIVE || !x->lazy || x->detached || x->fclosed) {
		ps_conn_fail(c, -EPROTO,
			     "opened a fault lane to session %016llx, which is not a lazy live "
			     "session with its streams connected",
			     (unsigned long long)x->id);
		return -EPROTO;
	}
	x->nlanes++;
	c->lane = true;
	c->sref = x;
	x->nrefs++;
	c->state = PS_READY;
	ok.session_id = x->id;
	ret = ps_conn_send(c, WIRE_SESSION_OK, &ok.base, NULL, 0);
	if (ret) {
		/* no send in flight, no receive armed: nothing else would ever end it */
		c->lane = false;
		ps_conn_teardown(c);
	}
	return ret;
}

static void lane_free(struct ps_lane *l)
{
	if (l->fd >= 0)
		close(l->fd);
	sodium_memzero(l->skey, sizeof(l->skey));
	free(l->rbuf);
	free(l->scratch);
	free(l);
}

/* Mark @l dead and wake a thread blocked on it.  fmu. */
static void lane_retire(struct ps_lane *l)
{
	if (l->dead)
		return;
	l->dead = true;
	shutdown(l->fd, SHUT_RDWR);
}

/*
 * @c's SessionOk has left and nothing is in flight: its socket becomes the
 * session's newest lane; @c goes (its socket is not closed).  Loop thread.
 */
void ps_lane_take(struct ps_conn *c)
{
	struct ps_session *x = c->sref;
	struct ps_server *s = c->srv;
	struct ps_lane *l;

	c->lane = false;
	if (c->rfill != c->rhead) {
		ps_conn_fail(c, -EPROTO, "sent on its fault lane before being asked");
		return;
	}
	l = calloc(1, sizeof(*l));
	if (l) {
		l->rbuf = malloc(LANE_RBUF);
		l->scratch = malloc(WIRE_MAX_PAYLOAD);
	}
	if (!l || !l->rbuf || !l->scratch) {
		if (l)
			lane_free(l);
		pr_warn("peer %s: no memory for a fault lane; faults take the session's streams",
			c->peer);
		ps_conn_teardown(c);
		return;
	}
	l->fd = c->fd;
	c->fd = -1;
	{
		/*
		 * A request is tiny, but a peer that stops reading must not hold a
		 * fault forever; a reply's receives wait at most this long each.
		 */
		struct timeval tv = {LANE_TIMEOUT_MS / 1000, (LANE_TIMEOUT_MS % 1000) * 1000};

		setsockopt(l->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		setsockopt(l->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	snprintf(l->peer, sizeof(l->peer), "%s", c->peer);
	l->encrypt = c->encrypt;
	memcpy(l->skey, c->skey, sizeof(l->skey));
	l->tx_seq = c->tx_seq;
	l->rx_seq = c->rx_seq;
	pthread_mutex_lock(&s->fmu);
	for (struct ps_lane *o = x->lanes; o; o = o->next)
		lane_retire(o);
	if (x->fclosed)
		lane_retire(l);
	l->next = x->lanes;
	x->lanes = l;
	pthread_mutex_unlock(&s->fmu);
	pr_debug("session %016llx of pid %d: fault lane from %s", (unsigned long long)x->id, x->pid,
		 l->peer);
	ps_conn_teardown(c);
}

void ps_lane_shutdown_all(struct ps_session *x)
{
	pthread_mutex_lock(&x->srv->fmu);
	for (struct ps_lane *l = x->lanes; l; l = l->next)
		lane_retire(l);
	pthread_mutex_unlock(&x->srv->fmu);
}

void ps_lane_free_all(struct ps_session *x)
{
	while (x->lanes) {
		struct ps_lane *l = x->lanes;

		x->lanes = l->next;
		lane_free(l);
	}
}

/* ---- the requester's thread ------------------------------------------------------------ */

static int lane_send_req(struct ps_lane *l, uint64_t id, uint64_t addr, uint32_t npages)
{
	Haul__Wire__PageReq q = HAUL__WIRE__PAGE_REQ__INIT;
	uint8_t f[WIRE_HDR_LEN + 64 + WIRE_TAG_LEN];
	uint16_t flags = l->encrypt ? WIRE_F_ENCRYPTED : 0;
	struct wire_hdr h;
	ssize_t n;

	q.req_id = id;
	q.addr = addr;
	q.npages = npages;
	n = wire_frame_build(f, sizeof(f), WIRE_PAGE_REQ, flags, l->tx_seq, &q.base, NULL, 0);
	if (n < 0)
		return (int)n;
	if (l->encrypt) {
		wire_hdr_decode(f, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h);
		wire_seal(l->skey, WIRE_DIR_S2C, f, &h);
		n += WIRE_TAG_LEN;
	}
	l->tx_seq++;
	for (ssize_t off = 0; off < n;) {
		ssize_t w = send(l->fd, f + off, (size_t)(n - off), MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		off += w;
	}
	return 0;
}

/* Read until @want bytes are in l->rbuf, within the lane's deadline @end_ns. */
static int lane_fill(struct ps_lane *l, size_t want, uint64_t end_ns)
{
	while (l->rfill < want) {
		struct timespec t;
		uint64_t now;
		ssize_t r;

		clock_gettime(CLOCK_MONOTONIC, &t);
		now = (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
		if (now >= end_ns)
			return -ETIMEDOUT;
		/*
		 * One blocking recv() (SO_RCVTIMEO, ps_lane_take) usually takes the
		 * whole reply: no poll() first, each system call counts here.
		 */
		r = recv(l->fd, l->rbuf + l->rfill, LANE_RBUF - l->rfill, 0);
		if (r > 0) {
			l->rfill += (size_t)r;
			continue;
		}
		if (r == 0)
			return -ECONNRESET;
		if (errno == EINTR)
			continue;
		return errno == EAGAIN || errno == EWOULDBLOCK ? -ETIMEDOUT : -errno;
	}
	return 0;
}

/* Receive the reply to request @id and put its pages into @fc.  0 or -errno. */
static int lane_recv_reply(struct ps_lane *l, uint64_t id, struct ps_fetch_ctx *fc, char *why,
			   size_t wlen)
{
	struct timespec t;
	uint64_t end;
	struct wire_hdr h;
	ProtobufCMessage *m = NULL;
	Haul__Wire__Pages *pm;
	int64_t n;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &t);
	end = (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec +
	      LANE_TIMEOUT_MS * 1000000ull;
	l->rfill = 0;
	ret = lane_fill(l, WIRE_HDR_LEN, end);
	if (!ret)
		ret = wire_hdr_decode(l->rbuf, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h);
	if (!ret && (h.type != WIRE_PAGE_REPLY || h.seq != l->rx_seq ||
		     !!(h.flags & WIRE_F_ENCRYPTED) != l->encrypt)) {
		snprintf(why, wlen, "sent %s (frame %u) where PAGE_REPLY %u was due",
			 wire_type_name(h.type), h.seq, l->rx_seq);
		return -EPROTO;
	}
	if (!ret)
		ret = lane_fill(l, wire_frame_len(&h), end);
	if (ret)
		return ret;
	if (l->rfill != wire_frame_len(&h)) {
		snprintf(why, wlen, "sent more than the reply asked for");
		return -EPROTO;
	}
	if (l->encrypt && wire_open(l->skey, WIRE_DIR_C2S, l->rbuf, &h)) {
		snprintf(why, wlen, "sent a reply whose authentication tag does not verify");
		return -EBADMSG;
	}
	l->rx_seq++;
	ret = wire_msg_unpack(h.type, l->rbuf + WIRE_HDR_LEN, h.msg_len, &m);
	if (ret) {
		snprintf(why, wlen, "sent a malformed PAGE_REPLY");
		return ret;
	}
	pm = (Haul__Wire__Pages *)m;
	if (!pm->has_req_id || pm->req_id != id) {
		snprintf(why, wlen, "answered request %llu where %llu was due",
			 (unsigned long long)pm->req_id, (unsigned long long)id);
		wire_msg_free(m);
		return -EPROTO;
	}
	n = val_pages(pm, why, wlen);
	if (!n)
		n = wire_pages_decode(pm, l->rbuf + WIRE_HDR_LEN + h.msg_len, h.payload_len,
				      l->scratch, ps_fetch_put, fc);
	wire_msg_free(m);
	if (n < 0 && !why[0])
		snprintf(why, wlen, "%s", wire_strerror((int)n));
	/* the source could not read them: as on the streams, the request fails, the lane stays */
	return n < 0 ? -EPROTO : fc->got != fc->npages ? -EIO : 0;
}

int ps_session_lane_fetch(struct ps_session *x, uint64_t addr, uint32_t npages, void *buf)
{
	struct ps_server *s = x->srv;
	struct ps_fetch_ctx fc = {.addr = addr, .npages = npages, .buf = buf};
	struct ps_lane *l;
	char why[160] = "";
	int ret;

	if (npages == 0 || npages > WIRE_MAX_REQ_PAGES || (addr & (HAUL_PAGE_SIZE - 1)))
		return -EINVAL;
	if (pthread_mutex_trylock(&x->lane_mu))
		return -EBUSY;
	pthread_mutex_lock(&s->fmu);
	l = x->lanes && !x->lanes->dead && !x->fclosed ? x->lanes : NULL;
	pthread_mutex_unlock(&s->fmu);
	if (!l) {
		pthread_mutex_unlock(&x->lane_mu);
		return -ENOTCONN;
	}
	ret = lane_send_req(l, ++l->next_id, addr, npages);
	if (!ret)
		ret = lane_recv_reply(l, l->next_id, &fc, why, sizeof(why));
	if (ret && ret != -EIO) {
		pthread_mutex_lock(&s->fmu);
		if (!l->dead)
			pr_warn("session %016llx of pid %d: fault lane from %s: %s; faults go "
				"through the session's streams from now on",
				(unsigned long long)x->id, x->pid, l->peer,
				why[0] ? why : strerror(-ret));
		lane_retire(l);
		pthread_mutex_unlock(&s->fmu);
	}
	pthread_mutex_unlock(&x->lane_mu);
	return ret;
}
