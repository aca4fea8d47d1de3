/*
 * server_frame.c - the connection state machine: frame parsing, the table
 * of what each state accepts, dispatch to the handlers, and the handshake
 * (Hello, Auth) and Error frames.
 *
 * Nothing is allocated for a frame before its header passed
 * wire_hdr_decode() against the limits of the connection's state (4 KiB
 * before authentication), its sequence number and encryption flag match,
 * and its type is one conn_accepts[] allows in that state; anything else
 * closes the connection with -EPROTO and a reason naming the peer.  The
 * receive buffer grows only to a checked frame size.
 */
#define LOG_PREFIX "ps: "
#include <errno.h>
#include <ev.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/server_int.h"

static const char *const state_names[] = {"hello", "auth",    "authed", "ready",
					  "round", "barrier", "closing"};

#define T(x) (1u << (x))
/* Which frame types each state accepts; the rest close the connection. */
static const uint32_t conn_accepts[PS_NSTATES] = {
	[PS_HELLO] = T(WIRE_HELLO),
	[PS_AUTH] = T(WIRE_AUTH),
	[PS_AUTHED] = T(WIRE_SESSION_OPEN) | T(WIRE_SESSION_JOIN) | T(WIRE_ERROR),
	[PS_READY] = T(WIRE_LAYOUT) | T(WIRE_ROUND_BEGIN) | T(WIRE_STATE) | T(WIRE_RESTORE) |
		     T(WIRE_COMMIT) | T(WIRE_PAGE_REQ) | T(WIRE_PAGE_REPLY) | T(WIRE_ERROR) |
		     T(WIRE_GHOST),
	[PS_ROUND] = T(WIRE_LAYOUT) | T(WIRE_PAGES) | T(WIRE_ROUND_END) | T(WIRE_PAGE_REQ) |
		     T(WIRE_PAGE_REPLY) | T(WIRE_ERROR),
	[PS_BARRIER] = T(WIRE_PAGE_REQ) | T(WIRE_PAGE_REPLY) | T(WIRE_ERROR),
	[PS_CLOSING] = 0,
};
#undef T

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
		ps_conn_fail(c, -EPROTONOSUPPORT, "speaks protocol version %u, this server %u",
			     h->version, WIRE_VERSION);
		return -EPROTONOSUPPORT;
	}
	if (h->nonce.len != WIRE_NONCE_LEN) {
		ps_conn_fail(c, -EPROTO, "sent a %zu-byte nonce", h->nonce.len);
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
	return ps_conn_send(c, WIRE_HELLO, &r.base, NULL, 0);
}

static int on_auth(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__Auth *a = (Haul__Wire__Auth *)m, r = HAUL__WIRE__AUTH__INIT;
	uint8_t mac[WIRE_MAC_LEN];
	bool enc = a->has_encrypt && a->encrypt;
	int ret;

	if (!wire_auth_verify(c->srv->o.key, true, c->cnonce, c->snonce, a->mac.data, a->mac.len)) {
		ps_conn_fail(c, -EACCES, "failed authentication (bad MAC: wrong key?)");
		return -EACCES;
	}
	if (c->srv->o.require_encrypt && !enc) {
		/* authenticated, so it may be told why */
		c->state = PS_AUTHED;
		ps_conn_fail(c, -EPERM,
			     "did not ask for encryption, which this server requires "
			     "(run the client with --encrypt)");
		return -EPERM;
	}
	if (peer_authed(c) >= PS_MAX_CONNS_PER_PEER) {
		c->state = PS_AUTHED;
		ps_conn_fail(c, -EUSERS,
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
	ret = ps_conn_send(c, WIRE_AUTH, &r.base, NULL, 0);
	if (ret)
		return ret;
	if (enc) {
		wire_session_key(c->srv->o.key, c->cnonce, c->snonce, c->skey);
		c->encrypt = true;
	}
	c->state = PS_AUTHED;
	ps_conn_timer_stop(c);
	pr_debug("peer %s: authenticated%s", c->peer, enc ? ", encrypted" : "");
	return 0;
}

static int on_error(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__Error *e = (Haul__Wire__Error *)m;

	pr_warn("peer %s reports an error: %s (%s); closing it", c->peer,
		e->reason ? e->reason : "no reason", strerror(e->err));
	if (c->sess)
		ps_session_fail(c->sess, -ECONNABORTED, "the peer gave up");
	ps_conn_teardown(c);
	return -ECONNABORTED;
}

/* One whole frame is at @f (decrypted). Returns 0 or -errno (the connection was failed). */
static int conn_frame(struct ps_conn *c, const struct wire_hdr *h, uint8_t *f)
{
	const uint8_t *msg = f + WIRE_HDR_LEN, *payload = msg + h->msg_len;
	ProtobufCMessage *m = NULL;
	int ret;

	if (!(conn_accepts[c->state] & (1u << h->type))) {
		ps_conn_fail(c, -EPROTO, "sent %s in state %s", wire_type_name(h->type),
			     state_names[c->state]);
		return -EPROTO;
	}
	if (h->payload_len && h->type != WIRE_PAGES && h->type != WIRE_STATE &&
	    h->type != WIRE_GHOST && h->type != WIRE_PAGE_REPLY) {
		ps_conn_fail(c, -EPROTO, "sent %s with a payload", wire_type_name(h->type));
		return -EPROTO;
	}
	ret = wire_msg_unpack(h->type, msg, h->msg_len, &m);
	if (ret) {
		ps_conn_fail(c, ret, "sent a malformed %s message", wire_type_name(h->type));
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
		ret = ps_on_session_open(c, m);
		break;
	case WIRE_SESSION_JOIN:
		ret = ps_on_session_join(c, m);
		break;
	case WIRE_LAYOUT:
		ret = ps_on_layout(c, m);
		break;
	case WIRE_ROUND_BEGIN:
		ret = ps_on_round_begin(c, m);
		break;
	case WIRE_PAGES:
		ret = ps_on_pages(c, m, payload, h->payload_len);
		break;
	case WIRE_ROUND_END:
		ret = ps_on_round_end(c, m);
		break;
	case WIRE_STATE:
		ret = ps_on_state(c, (const Haul__Wire__State *)m, payload, h->payload_len);
		break;
	case WIRE_GHOST:
		ret = ps_on_ghost(c, (const Haul__Wire__Ghost *)m, payload, h->payload_len);
		break;
	case WIRE_RESTORE:
		ret = ps_on_restore(c, m);
		break;
	case WIRE_COMMIT:
		ret = ps_on_commit(c);
		break;
	case WIRE_PAGE_REQ:
		ret = ps_on_page_req(c, m);
		break;
	case WIRE_PAGE_REPLY:
		ret = ps_on_page_reply(c, m, payload, h->payload_len);
		break;
	case WIRE_ERROR:
		ret = on_error(c, m);
		break;
	default:
		ret = -EPROTO;
		ps_conn_fail(c, ret, "sent %s, which a server never receives",
			     wire_type_name(h->type));
	}
	wire_msg_free(m);
	return ret;
}

/* Parse every whole frame in the receive buffer; make room for the next. */
void ps_conn_parse(struct ps_conn *c)
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
			if (ps_direct_capable(c))
				want = WIRE_HDR_LEN - avail;
			goto more;
		}
		ret = wire_hdr_decode(f, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h);
		if (ret) {
			ps_conn_fail(c, ret, "sent a bad frame header: %s", wire_strerror(ret));
			return;
		}
		if (!(conn_accepts[c->state] & (1u << h.type))) {
			ps_conn_fail(c, -EPROTO, "sent %s in state %s", wire_type_name(h.type),
				     state_names[c->state]);
			return;
		}
		if (!authed && (h.payload_len || h.msg_len > WIRE_MAX_PREAUTH)) {
			ps_conn_fail(c, -EMSGSIZE, "sent a %u+%u-byte %s before authenticating",
				     h.msg_len, h.payload_len, wire_type_name(h.type));
			return;
		}
		if (h.seq != c->rx_seq) {
			ps_conn_fail(c, -EPROTO, "sent frame %u where %u was due", h.seq,
				     c->rx_seq);
			return;
		}
		if (!!(h.flags & WIRE_F_ENCRYPTED) != c->encrypt) {
			ps_conn_fail(c, -EPROTO, "sent a%s frame on a%s connection",
				     c->encrypt ? "n unencrypted" : "n encrypted",
				     c->encrypt ? "n encrypted" : "n unencrypted");
			return;
		}
		need = wire_frame_len(&h);
		if (avail < need && h.type == WIRE_PAGES && h.payload_len && ps_direct_capable(c)) {
			size_t head = WIRE_HDR_LEN + h.msg_len;

			if (avail < head) {
				/* only the header and message come through the buffer */
				want = head - avail;
				need = head;
			} else {
				ret = ps_conn_direct_start(c, &h, f, avail);
				if (ret)
					return;
			}
		}
		if (avail < need)
			goto more;
		if (c->encrypt && wire_open(c->skey, WIRE_DIR_C2S, f, &h)) {
			ps_conn_fail(c, -EBADMSG,
				     "sent a frame whose authentication tag does not "
				     "verify (tampered or wrong key)");
			return;
		}
		c->rx_seq++;
		c->rhead += need;
		/* The stall deadline is per frame: this one is complete. */
		if (c->state >= PS_AUTHED)
			ps_conn_timer_stop(c);
		if (conn_frame(c, &h, f))
			return;
		if (c->lane)
			return; /* a fault lane: no more receives here (ps_lane_take) */
		continue;
more:
		/* A frame has begun: it must complete within the stall timeout. */
		if (avail || c->state < PS_AUTHED)
			ps_conn_timer_start(c);
		else
			ps_conn_timer_stop(c);
		if (c->rhead == c->rfill)
			c->rhead = c->rfill = 0;
		if (c->rhead + need > c->rcap) {
			/* Move the partial frame to the front, growing only to a checked size. */
			if (need > c->rcap) {
				size_t cap = need < RBUF_MIN ? RBUF_MIN : need * 2;
				uint8_t *b = malloc(cap);

				if (!b) {
					ps_conn_fail(c, -ENOMEM, "needs a %zu-byte buffer", cap);
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
		ps_conn_submit_recv(c, want);
		return;
	}
}
