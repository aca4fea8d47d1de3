/*
 * server_conn.c - one connection's bytes: io_uring submissions, the send
 * buffers, its lifetime and the completions of its receives and sends.
 *
 * One recv and one send in flight per connection: obuf[ocur] is being sent
 * (from ooff), obuf[!ocur] collects the frames queued meanwhile, so the
 * byte stream never reorders.  A short send or receive advances an offset
 * and is resubmitted.  A torn-down connection (dead) is shut down and its
 * submissions cancelled; it is freed by ps_server_reap() only once both are
 * reaped, since the kernel owns its buffers until then.  ps_conn_fail() tells
 * an authenticated peer why with an Error frame first.
 */
#define LOG_PREFIX "ps: "
#include <errno.h>
#include <ev.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/server_int.h"

/* ---- io_uring plumbing -------------------------------------------------------------- */

struct io_uring_sqe *ps_get_sqe(struct ps_server *s)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&s->ring);

	if (!sqe) {
		io_uring_submit(&s->ring);
		sqe = io_uring_get_sqe(&s->ring);
	}
	return sqe;
}

/*
 * An SQE for the next receive of @c, or NULL: a receive is in flight
 * already, @c is going away, or the ring is full (which fails @c).
 */
struct io_uring_sqe *ps_conn_recv_sqe(struct ps_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->recv_busy || c->dead || c->state == PS_CLOSING)
		return NULL;
	sqe = ps_get_sqe(c->srv);
	if (!sqe)
		ps_conn_fail(c, -EAGAIN, "cannot queue a receive: io_uring full");
	return sqe;
}

/* Receive up to @max bytes into the receive buffer. */
void ps_conn_submit_recv(struct ps_conn *c, size_t max)
{
	struct io_uring_sqe *sqe = ps_conn_recv_sqe(c);
	size_t len = c->rcap - c->rfill;

	if (!sqe)
		return;
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
				ps_conn_teardown(c);
			return;
		}
	}
	sqe = ps_get_sqe(c->srv);
	if (!sqe) {
		ps_conn_teardown(c);
		return;
	}
	io_uring_prep_send(sqe, c->fd, c->obuf[cur] + c->ooff, c->olen[cur] - c->ooff,
			   MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | OP_SEND);
	c->send_busy = true;
}

/*
 * Queue one frame whose payload is @nsegs pieces, @plen bytes in all; it
 * goes out after everything queued before it.  The pieces are copied.
 */
int ps_conn_sendv(struct ps_conn *c, unsigned type, const ProtobufCMessage *msg,
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

int ps_conn_send(struct ps_conn *c, unsigned type, const ProtobufCMessage *msg, const void *payload,
		 uint32_t plen)
{
	struct wire_seg seg = {payload, plen};

	return ps_conn_sendv(c, type, msg, &seg, plen ? 1 : 0, plen);
}

/* ---- connection lifetime -------------------------------------------------------------- */

void ps_conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct ps_conn *c = w->data;
	struct ps_server *s = c->srv;

	(void)loop;
	(void)revents;
	c->timer_on = false;
	if (c->state == PS_CLOSING) {
		ps_conn_teardown(c);
	} else if (c->state < PS_AUTHED) {
		ps_conn_fail(c, -ETIMEDOUT, "did not authenticate within %d ms; dropping it",
			     c->srv->o.stall_timeout_ms);
	} else if (c->sess && ps_session_can_detach(c->sess)) {
		/* a stalled link, not a bad peer: the session waits for the source to rejoin */
		pr_warn("peer %s stalled mid-frame for %d ms; dropping the connection", c->peer,
			c->srv->o.stall_timeout_ms);
		ps_conn_teardown(c);
	} else {
		ps_conn_fail(c, -ETIMEDOUT, "stalled mid-frame for %d ms; dropping it",
			     c->srv->o.stall_timeout_ms);
	}
	ps_server_reap(s);
}

void ps_conn_timer_start(struct ps_conn *c)
{
	if (c->timer_on)
		return;
	ev_timer_set(&c->timer, c->srv->o.stall_timeout_ms / 1000.0, 0.);
	ev_timer_start(c->srv->loop, &c->timer);
	c->timer_on = true;
}

void ps_conn_timer_stop(struct ps_conn *c)
{
	if (!c->timer_on)
		return;
	ev_timer_stop(c->srv->loop, &c->timer);
	c->timer_on = false;
}

void ps_conn_free(struct ps_conn *c)
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

/*
 * Stop the connection at once.  It is freed by ps_server_reap() once its
 * submissions are reaped, so callers up the stack may still look at it.
 */
void ps_conn_teardown(struct ps_conn *c)
{
	struct io_uring_sqe *sqe;

	if (c->dead)
		return;
	c->dead = true;
	ps_conn_timer_stop(c);
	ps_session_detach(c);
	shutdown(c->fd, SHUT_RDWR);
	if (c->recv_busy || c->send_busy) {
		sqe = ps_get_sqe(c->srv);
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
void ps_conn_fail(struct ps_conn *c, int err, const char *fmt, ...)
{
	Haul__Wire__Error e = HAUL__WIRE__ERROR__INIT;
	char reason[1024];
	va_list ap;

	if (c->dead || c->state == PS_CLOSING)
		return;
	va_start(ap, fmt);
	vsnprintf(reason, sizeof(reason), fmt, ap);
	va_end(ap);
	pr_warn("peer %s: %s; closing it", c->peer, reason);
	if (c->state < PS_AUTHED) {
		ps_conn_teardown(c);
		return;
	}
	e.err = -err;
	e.reason = reason;
	ps_conn_send(c, WIRE_ERROR, &e.base, NULL, 0);
	c->state = PS_CLOSING;
	ps_session_detach(c);
	/* Give the Error a moment to leave, then tear down regardless. */
	ps_conn_timer_stop(c);
	ev_timer_set(&c->timer, 1.0, 0.);
	ev_timer_start(c->srv->loop, &c->timer);
	c->timer_on = true;
	if (!c->send_busy)
		ps_conn_teardown(c);
}

void ps_on_cqe(struct ps_server *s, struct io_uring_cqe *cqe)
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
			ps_direct_advance(c, (size_t)res);
			if (c->di < c->dn) {
				ps_conn_submit_direct(c);
				return;
			}
			ps_conn_direct_done(c);
			ps_conn_parse(c);
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
			ps_conn_teardown(c);
			return;
		}
		if (res < 0) {
			if (res != -ECANCELED)
				pr_warn("peer %s: receive failed: %s; closing it", c->peer,
					strerror(-res));
			ps_conn_teardown(c);
			return;
		}
		c->rfill += (size_t)res;
		ps_conn_parse(c);
		return;
	}
	c->send_busy = false;
	if (c->dead)
		return;
	if (res < 0) {
		pr_warn("peer %s: send failed: %s; closing it", c->peer, strerror(-res));
		ps_conn_teardown(c);
		return;
	}
	c->ooff += (size_t)res;
	conn_submit_send(c);
	if (c->lane && !c->send_busy && !c->dead)
		ps_lane_take(c);
}
