/*
 * server_direct.c - receiving a raw PAGES payload straight into the page
 * store.
 *
 * Mid-round on an unencrypted STORE stream, the server reads frame by
 * frame; once a PAGES frame's header and message are in, its pages are
 * staged in the store and the rest of the payload is received with one
 * recvmsg (MSG_WAITALL, punted to io_uring's workers) into their cells,
 * saving the copy out of the receive buffer.  A batch that holds LZ4 goes
 * through the buffer and the decoder as usual.
 */
#define LOG_PREFIX "ps: "
#include <errno.h>
#include <ev.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/server_int.h"

/* Whether PAGES payloads of @c may be received straight into the page store. */
bool ps_direct_capable(const struct ps_conn *c)
{
	return c->state == PS_ROUND && !c->encrypt && c->sess && c->sess->proc &&
	       pstore_direct_ok(c->sess->proc);
}

void ps_conn_submit_direct(struct ps_conn *c)
{
	struct io_uring_sqe *sqe = ps_conn_recv_sqe(c);

	if (!sqe)
		return;
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
void ps_direct_advance(struct ps_conn *c, size_t n)
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

void ps_conn_direct_done(struct ps_conn *c)
{
	struct ps_session *x = c->sess;

	c->direct = false;
	c->rx_seq++;
	ps_conn_timer_stop(c);
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
int ps_conn_direct_start(struct ps_conn *c, const struct wire_hdr *h, const uint8_t *f,
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
		ps_conn_fail(c, ret, "sent a malformed PAGES message");
		return ret;
	}
	pm = (Haul__Wire__Pages *)m;
	ret = wire_pages_check(pm, h->payload_len, &lz4);
	if (ret || lz4) {
		wire_msg_free(m);
		if (!ret)
			return 0;
		ps_conn_fail(c, ret, "sent a malformed page batch (bad range or corrupt LZ4)");
		ps_session_fail(x, ret, "a stream sent a malformed page batch");
		return ret;
	}
	if (!c->diov) {
		c->diov = malloc(WIRE_MAX_REQ_PAGES * sizeof(*c->diov));
		if (!c->diov) {
			wire_msg_free(m);
			ps_conn_fail(c, -ENOMEM, "needs memory for a direct receive");
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
		ps_conn_fail(c, -ERANGE, "sent pages outside any announced VMA of pid %d", x->pid);
		ps_session_fail(x, -ERANGE, "a stream sent pages outside the layout");
		return ret;
	}
	if (ret) {
		ps_session_fail(x, ret, "the pages could not be stored");
		return ret;
	}
	/* What already arrived goes in by copy; the rest straight from the socket. */
	for (unsigned i = 0; nhave && i < c->dn; i++) {
		size_t n = nhave < c->diov[i].iov_len ? nhave : c->diov[i].iov_len;

		memcpy(c->diov[i].iov_base, have, n);
		have += n;
		nhave -= n;
	}
	ps_direct_advance(c, avail - head);
	c->rhead = c->rfill = 0;
	c->direct = true;
	c->dh = *h;
	c->dpages = pages;
	ps_conn_timer_start(c);
	ps_conn_submit_direct(c);
	return 1;
}
