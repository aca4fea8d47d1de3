/*
 * client_lane.c - post-copy's fault lane, source side: one more connection
 * to the target's page server, joined to the session as its lane
 * (SessionJoin.lane), on which the target's fault requests come without
 * passing through its loop thread (server_lane.c).  ps_client_serve()
 * serves it on a thread of its own like any stream; a lane that cannot be
 * opened or breaks costs nothing but speed: the target asks on stream 0.
 */
#define LOG_PREFIX "ps-client: "
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/client_int.h"

bool ps_lane_offered(const struct ps_client *c)
{
	return c->o.lazy && c->o.kind == PS_SESSION_LIVE &&
	       (c->server_caps & HAUL__WIRE__CAP__CAP_LANE);
}

void ps_lane_close(struct ps_stream *st)
{
	if (!st)
		return;
	if (st->fd >= 0)
		close(st->fd);
	free(st->fbuf);
	free(st->rbuf);
	sodium_memzero(st->skey, sizeof(st->skey));
	free(st);
}

/*
 * Requests are read through a buffer, one blocking recv() for usually a
 * whole request, not a poll() and a recv() for its header and again for its
 * body as on the streams: on the 2-vCPU VM each system call is microseconds
 * on a fault's path.  The serving's end shuts the socket down to stop it.
 */
int ps_lane_recv_req(struct ps_stream *st, Haul__Wire__PageReq **out)
{
	const size_t cap = WIRE_HDR_LEN + 4096 + WIRE_TAG_LEN; /* a PageReq is ~30 bytes */
	struct wire_hdr h;
	ProtobufCMessage *m;
	size_t need = WIRE_HDR_LEN;
	int ret;

	if (st->rcap < cap) {
		/* the handshake's receives sized it for their own frames */
		uint8_t *b = realloc(st->rbuf, cap);

		if (!b)
			return -ENOMEM;
		st->rbuf = b;
		st->rcap = cap;
	}
	for (;;) {
		size_t avail = st->rfill - st->rhead;
		ssize_t n;

		if (avail >= WIRE_HDR_LEN) {
			ret = wire_hdr_decode(st->rbuf + st->rhead, WIRE_MAX_MSG, 0, &h);
			if (ret)
				return ret;
			need = wire_frame_len(&h);
			if (h.type != WIRE_PAGE_REQ || h.seq != st->rx_seq ||
			    !!(h.flags & WIRE_F_ENCRYPTED) != st->encrypt || need > cap)
				return -EPROTO;
			if (avail >= need)
				break;
		}
		if (st->rhead) {
			memmove(st->rbuf, st->rbuf + st->rhead, avail);
			st->rfill = avail;
			st->rhead = 0;
		}
		n = recv(st->fd, st->rbuf + st->rfill, st->rcap - st->rfill, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -ECONNRESET;
		st->rfill += (size_t)n;
	}
	if (st->encrypt && wire_open(st->skey, WIRE_DIR_S2C, st->rbuf + st->rhead, &h))
		return -EBADMSG;
	st->rx_seq++;
	ret = wire_msg_unpack(h.type, st->rbuf + st->rhead + WIRE_HDR_LEN, h.msg_len, &m);
	st->rhead += need;
	if (ret)
		return ret;
	*out = (Haul__Wire__PageReq *)m;
	return 0;
}

int ps_lane_open(struct ps_client *c, struct ps_stream **out)
{
	Haul__Wire__SessionJoin sj = HAUL__WIRE__SESSION_JOIN__INIT;
	struct sockaddr_storage ss;
	struct ps_stream *st;
	ProtobufCMessage *m = NULL;
	socklen_t len;
	int ret;

	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->cl = c;
	st->idx = c->n; /* for logs: the stream after the last */
	st->fd = -1;
	st->fbuf = malloc(FRAME_EXTRA + WIRE_MAX_PAYLOAD);
	ret = st->fbuf ? ps_addr_parse(c->o.to, false, &ss, &len) : -ENOMEM;
	if (!ret)
		ret = ps_stream_connect(c, st, &ss, len);
	if (!ret)
		ret = ps_stream_auth(c, st);
	if (!ret) {
		sj.session_id = c->session_id;
		sj.stream = 0;
		sj.has_lane = true;
		sj.lane = true;
		ret = ps_stream_send(st, WIRE_SESSION_JOIN, &sj.base, NULL, 0);
	}
	if (!ret)
		ret = ps_stream_recv(st, WIRE_SESSION_OK, ps_reply_timeout(c), &m, NULL, NULL);
	if (!ret && ((Haul__Wire__SessionOk *)m)->session_id != c->session_id)
		ret = -EPROTO;
	wire_msg_free(m);
	if (ret) {
		ps_lane_close(st);
		return ret;
	}
	*out = st;
	return 0;
}
