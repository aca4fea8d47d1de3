/*
 * client_io.c - a stream's blocking socket: whole sends (sendmsg with an
 * iovec per piece, through the shared bandwidth bucket), framed and sealed
 * sends, and receiving one whole reply with a timeout.
 *
 * A socket is only ever used by one thread at a time (the stream's sender
 * thread, or the caller's once every stream is idle).  A transport error
 * marks the stream broken; an Error frame from the server is a refusal and
 * never "broken".
 */
#define LOG_PREFIX "ps-client: "
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/client_int.h"

/* ---- raw socket I/O ------------------------------------------------------------------ */

static int send_iov(struct ps_stream *st, struct iovec *iov, int n)
{
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};

	while (mh.msg_iovlen) {
		ssize_t w = sendmsg(st->fd, &mh, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			st->broken = true;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		st->bytes_sent += (uint64_t)w;
		while (mh.msg_iovlen && (size_t)w >= mh.msg_iov->iov_len) {
			w -= (ssize_t)mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + w;
			mh.msg_iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static void bucket_take(struct ps_client *c, size_t bytes)
{
	double rate = (double)c->o.bandwidth, wait = 0;
	struct timespec t;

	if (!c->o.bandwidth)
		return;
	pthread_mutex_lock(&c->mu);
	clock_gettime(CLOCK_MONOTONIC, &t);
	if (c->tb_last.tv_sec) {
		double dt = (double)(t.tv_sec - c->tb_last.tv_sec) +
			    (t.tv_nsec - c->tb_last.tv_nsec) / 1e9;
		double burst = rate / 10 > 1 << 20 ? rate / 10 : 1 << 20;

		c->tokens += dt * rate;
		if (c->tokens > burst)
			c->tokens = burst;
	}
	c->tb_last = t;
	c->tokens -= (double)bytes;
	if (c->tokens < 0)
		wait = -c->tokens / rate;
	pthread_mutex_unlock(&c->mu);
	if (wait > 0) {
		struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};

		nanosleep(&ts, NULL);
	}
}

/*
 * Send one frame: @msg, then the payload: @nsegs pieces, @plen bytes in
 * all.  Unencrypted frames go out with one sendmsg straight from the
 * pieces (no copy of the pages); encrypted ones are assembled in fbuf and
 * sealed.
 */
int ps_stream_sendv(struct ps_stream *st, unsigned type, const ProtobufCMessage *msg,
		    const struct wire_seg *segs, size_t nsegs, uint32_t plen)
{
	size_t mlen = wire_msg_size(msg);
	uint16_t flags = st->encrypt ? WIRE_F_ENCRYPTED : 0;
	struct iovec iov[SEND_IOV_MAX];
	bool gather = st->encrypt || nsegs + 1 > SEND_IOV_MAX;
	struct wire_hdr h;
	ssize_t n;

	if (mlen + WIRE_HDR_LEN + WIRE_TAG_LEN > FRAME_EXTRA)
		return -EMSGSIZE;
	if (st->tx_seq == UINT32_MAX)
		return -EOVERFLOW; /* the AEAD nonce would repeat */
	n = wire_frame_build(st->fbuf, FRAME_EXTRA + WIRE_MAX_PAYLOAD, type, flags, st->tx_seq, msg,
			     NULL, plen);
	if (n < 0)
		return (int)n;
	st->tx_seq++;
	bucket_take(st->cl, (size_t)n);
	if (gather) {
		uint8_t *p = st->fbuf + WIRE_HDR_LEN + mlen;

		for (size_t i = 0; i < nsegs; p += segs[i].len, i++)
			memcpy(p, segs[i].p, segs[i].len);
		if (st->encrypt) {
			wire_hdr_decode(st->fbuf, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h);
			wire_seal(st->skey, WIRE_DIR_C2S, st->fbuf, &h);
			n += WIRE_TAG_LEN;
		}
		iov[0] = (struct iovec){st->fbuf, (size_t)n};
		return send_iov(st, iov, 1);
	}
	iov[0] = (struct iovec){st->fbuf, WIRE_HDR_LEN + mlen};
	for (size_t i = 0; i < nsegs; i++)
		iov[i + 1] = (struct iovec){(void *)segs[i].p, segs[i].len};
	return send_iov(st, iov, (int)nsegs + 1);
}

int ps_stream_send(struct ps_stream *st, unsigned type, const ProtobufCMessage *msg,
		   const void *payload, uint32_t plen)
{
	struct wire_seg seg = {payload, plen};

	return ps_stream_sendv(st, type, msg, &seg, plen ? 1 : 0, plen);
}

static int recv_full(struct ps_stream *st, void *buf, size_t len, int timeout_ms)
{
	uint8_t *p = buf;

	while (len) {
		struct pollfd pfd = {.fd = st->fd, .events = POLLIN};
		int r = poll(&pfd, 1, timeout_ms);
		ssize_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {
			st->broken = true;
			return -ETIMEDOUT;
		}
		n = recv(st->fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			st->broken = true;
			return -errno;
		}
		if (n == 0) {
			st->broken = true;
			return -ECONNRESET;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Receive one frame and unpack its message.  An Error frame becomes its
 * errno (logged with the server's reason); another type than @want is
 * -EPROTO.  The payload, if any, is at *@payload (in st->rbuf) until the next
 * receive.
 */
int ps_stream_recv_t(struct ps_stream *st, unsigned want, int timeout_ms, ProtobufCMessage **out,
		     const uint8_t **payload, size_t *plen, unsigned *got)
{
	uint8_t hdr[WIRE_HDR_LEN];
	struct wire_hdr h;
	size_t body;
	int ret;

	ret = recv_full(st, hdr, sizeof(hdr), timeout_ms);
	if (ret)
		return ret;
	ret = wire_hdr_decode(hdr, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h);
	if (ret) {
		pr_err("server %s (stream %u) sent a bad frame header: %s", st->cl->o.to, st->idx,
		       wire_strerror(ret));
		return ret;
	}
	if (h.seq != st->rx_seq || !!(h.flags & WIRE_F_ENCRYPTED) != st->encrypt) {
		pr_err("server %s (stream %u) sent frame %u out of sequence or protection",
		       st->cl->o.to, st->idx, h.seq);
		return -EPROTO;
	}
	body = wire_frame_len(&h);
	if (body > st->rcap) {
		uint8_t *b = realloc(st->rbuf, body);

		if (!b)
			return -ENOMEM;
		st->rbuf = b;
		st->rcap = body;
	}
	memcpy(st->rbuf, hdr, WIRE_HDR_LEN);
	ret = recv_full(st, st->rbuf + WIRE_HDR_LEN, body - WIRE_HDR_LEN, timeout_ms);
	if (ret)
		return ret;
	if (st->encrypt && wire_open(st->skey, WIRE_DIR_S2C, st->rbuf, &h)) {
		pr_err("server %s (stream %u) sent a frame that does not verify", st->cl->o.to,
		       st->idx);
		return -EBADMSG;
	}
	st->rx_seq++;
	ret = wire_msg_unpack(h.type, st->rbuf + WIRE_HDR_LEN, h.msg_len, out);
	if (ret) {
		pr_err("server %s sent a malformed %s", st->cl->o.to, wire_type_name(h.type));
		return ret;
	}
	if (h.type == WIRE_ERROR) {
		Haul__Wire__Error *e = (Haul__Wire__Error *)*out;

		ret = e->err > 0 ? -e->err : -EPROTO;
		pr_err("server %s refused: %s", st->cl->o.to, e->reason ? e->reason : "no reason");
		snprintf(st->refused, sizeof(st->refused), "%s", e->reason ? e->reason : "");
		wire_msg_free(*out);
		*out = NULL;
		return ret;
	}
	if (got)
		*got = h.type;
	if (want && h.type != want) {
		pr_err("server %s sent %s where %s was due", st->cl->o.to, wire_type_name(h.type),
		       wire_type_name(want));
		wire_msg_free(*out);
		*out = NULL;
		return -EPROTO;
	}
	if (payload) {
		*payload = st->rbuf + WIRE_HDR_LEN + h.msg_len;
		*plen = h.payload_len;
	}
	return 0;
}

int ps_stream_recv(struct ps_stream *st, unsigned want, int timeout_ms, ProtobufCMessage **out,
		   const uint8_t **payload, size_t *plen)
{
	return ps_stream_recv_t(st, want, timeout_ms, out, payload, plen, NULL);
}

int ps_reply_timeout(const struct ps_client *c)
{
	return c->o.timeout_ms > 0 ? c->o.timeout_ms : PS_REPLY_TIMEOUT_MS;
}

/* Wait for an Ack of @type on @st. */
int ps_stream_ack(struct ps_stream *st, unsigned type, Haul__Wire__Ack *copy)
{
	ProtobufCMessage *m;
	int ret = ps_stream_recv(st, WIRE_ACK, ps_reply_timeout(st->cl), &m, NULL, NULL);
	Haul__Wire__Ack *a = (Haul__Wire__Ack *)m;

	if (ret)
		return ret;
	if (a->type != type) {
		pr_err("server %s acknowledged %s where %s was due", st->cl->o.to,
		       wire_type_name(a->type), wire_type_name(type));
		ret = -EPROTO;
	} else if (copy) {
		*copy = *a;
	}
	wire_msg_free(m);
	return ret;
}

/*
 * After a send failed with @err: if the server left an Error frame on the
 * socket, log its reason (ps_stream_recv does) and return its errno.
 */
int ps_stream_why(struct ps_stream *st, int err)
{
	ProtobufCMessage *m = NULL;
	int ret = ps_stream_recv(st, WIRE_ERROR, 100, &m, NULL, NULL);

	wire_msg_free(m);
	return ret < 0 && ret != -ETIMEDOUT && ret != -ECONNRESET && ret != -EPROTO ? ret : err;
}
