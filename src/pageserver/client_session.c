/*
 * client_session.c - the session's control requests: layout, round begin
 * and end, deleted files sent before the freeze, process state, restore, commit, and page requests of a FETCH
 * session.
 *
 * Each is sent by the caller's thread on stream 0 (round begin and end on
 * every stream) once every stream is idle, and waits for its reply with
 * the reply timeout.
 */
#define LOG_PREFIX "ps-client: "
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/client_int.h"

/* ---- the session ---------------------------------------------------------------------- */

int ps_client_layout(struct ps_client *c, const struct haul_layout *l)
{
	Haul__Wire__Vma *vmas = calloc(l->n ? l->n : 1, sizeof(*vmas));
	Haul__Wire__Vma **vmap = calloc(l->n ? l->n : 1, sizeof(*vmap));
	Haul__Wire__Layout m;
	int ret = ps_client_flush(c);

	if (!vmas || !vmap)
		ret = -ENOMEM;
	if (!ret) {
		wire_layout_to_msg(l, vmas, vmap, &m);
		if (wire_msg_size(&m.base) > WIRE_MAX_MSG) {
			pr_err("layout of pid %d has %zu VMAs: over the %u-byte message limit",
			       c->o.pid, l->n, WIRE_MAX_MSG);
			ret = -EMSGSIZE;
		}
	}
	if (!ret)
		ret = ps_stream_send(&c->st[0], WIRE_LAYOUT, &m.base, NULL, 0);
	if (!ret)
		ret = ps_stream_ack(&c->st[0], WIRE_LAYOUT, NULL);
	free(vmas);
	free(vmap);
	return ret;
}

void ps_client_set_nice(struct ps_client *c, int nice)
{
	c->round_nice = nice > 0 ? (uint32_t)nice : 0;
}

int ps_client_round_begin(struct ps_client *c, uint64_t round)
{
	Haul__Wire__RoundBegin rb = HAUL__WIRE__ROUND_BEGIN__INIT;
	int ret = ps_client_flush(c);

	if (ret)
		return ret;
	if (c->in_round) {
		pr_err("round %llu begun inside round %llu", (unsigned long long)round,
		       (unsigned long long)c->round);
		return -EINVAL;
	}
	rb.round = round;
	rb.has_nice = c->round_nice > 0;
	rb.nice = c->round_nice;
	for (unsigned i = 0; i < c->n && !ret; i++) {
		c->st[i].round_pages = c->st[i].round_bytes = 0;
		ret = ps_stream_send(&c->st[i], WIRE_ROUND_BEGIN, &rb.base, NULL, 0);
	}
	if (ret)
		return ret;
	c->in_round = true;
	c->round = round;
	c->round_payload = 0;
	clock_gettime(CLOCK_MONOTONIC, &c->round_t0);
	return 0;
}

int ps_client_round_end(struct ps_client *c, uint64_t round)
{
	Haul__Wire__RoundEnd re = HAUL__WIRE__ROUND_END__INIT;
	int ret = ps_client_flush(c);
	double dt;

	if (ret)
		return ret;
	if (!c->in_round || round != c->round)
		return -EINVAL;
	re.round = round;
	re.has_pages = re.has_bytes = true;
	for (unsigned i = 0; i < c->n && !ret; i++) {
		re.pages = c->st[i].round_pages;
		re.bytes = c->st[i].round_bytes;
		ret = ps_stream_send(&c->st[i], WIRE_ROUND_END, &re.base, NULL, 0);
	}
	for (unsigned i = 0; i < c->n && !ret; i++) {
		Haul__Wire__Ack a;

		ret = ps_stream_ack(&c->st[i], WIRE_ROUND_END, &a);
		if (!ret && a.value != round) {
			pr_err("page server %s acknowledged round %llu, not %llu", c->o.to,
			       (unsigned long long)a.value, (unsigned long long)round);
			ret = -EPROTO;
		}
	}
	if (ret)
		return ret;
	c->in_round = false;
	{
		struct timespec t;

		clock_gettime(CLOCK_MONOTONIC, &t);
		dt = (double)(t.tv_sec - c->round_t0.tv_sec) +
		     (t.tv_nsec - c->round_t0.tv_nsec) / 1e9;
	}
	c->last_round_mbps = dt > 0 ? c->round_payload / dt / 1e6 : 0;
	return 0;
}

/* One part, not the last, of a State or Ghost (@type) of @total bytes: @n of them; ACKed. */
static int part_send(struct ps_client *c, unsigned type, const void *blob, size_t n, uint64_t total)
{
	Haul__Wire__State s = HAUL__WIRE__STATE__INIT;
	Haul__Wire__Ghost g = HAUL__WIRE__GHOST__INIT;
	int ret;

	s.has_len = s.has_total = g.has_len = g.has_total = true;
	s.len = g.len = n;
	s.total = g.total = total;
	ret = ps_stream_send(&c->st[0], type, type == WIRE_STATE ? &s.base : &g.base, blob,
			     (uint32_t)n);
	if (!ret)
		ret = ps_stream_ack(&c->st[0], type, NULL);
	return ret;
}

/* Send the State message @s with @blob on stream 0 and wait for its ACK. */
static int state_send(struct ps_client *c, Haul__Wire__State *s, const void *blob, size_t len)
{
	int ret = ps_client_flush(c);

	if (ret)
		return ret;
	if (len > WIRE_MAX_PAYLOAD && !(c->server_caps & HAUL__WIRE__CAP__CAP_STATE_PARTS)) {
		pr_err("state of pid %d is %zu bytes, over the %u-byte frame limit, and page "
		       "server %s takes no state in parts (an older haul): upgrade haul there",
		       c->o.pid, len, WIRE_MAX_PAYLOAD, c->o.to);
		return -EMSGSIZE;
	}
	if (len > WIRE_MAX_STATE) {
		pr_err("state of pid %d is %zu bytes, over the %u-byte limit (deleted files it "
		       "carries?)",
		       c->o.pid, len, WIRE_MAX_STATE);
		return -EMSGSIZE;
	}
	/* over one frame: in parts, each naming the whole (State.total), the last one @s */
	s->has_total = len > WIRE_MAX_PAYLOAD;
	s->total = len;
	for (; len > WIRE_MAX_PAYLOAD; len -= WIRE_MAX_PAYLOAD) {
		ret = part_send(c, WIRE_STATE, blob, WIRE_MAX_PAYLOAD, s->total);
		if (ret)
			return ret;
		blob = (const char *)blob + WIRE_MAX_PAYLOAD;
	}
	s->has_len = true;
	s->len = len;
	ret = ps_stream_send(&c->st[0], WIRE_STATE, &s->base, blob, (uint32_t)len);
	if (!ret)
		ret = ps_stream_ack(&c->st[0], WIRE_STATE, NULL);
	return ret;
}

int ps_client_ghost(struct ps_client *c, const void *blob, size_t len, bool *kept)
{
	Haul__Wire__Ghost g = HAUL__WIRE__GHOST__INIT;
	Haul__Wire__Ack a;
	int ret;

	*kept = false;
	if (!(c->server_caps & HAUL__WIRE__CAP__CAP_GHOST) || !len || len > WIRE_MAX_STATE)
		return 0; /* an older target, or too large: the state carries it */
	ret = ps_client_flush(c);
	g.has_total = len > WIRE_MAX_PAYLOAD;
	g.total = len;
	for (; !ret && len > WIRE_MAX_PAYLOAD; len -= WIRE_MAX_PAYLOAD) {
		ret = part_send(c, WIRE_GHOST, blob, WIRE_MAX_PAYLOAD, g.total);
		blob = (const char *)blob + WIRE_MAX_PAYLOAD;
	}
	g.has_len = true;
	g.len = len;
	if (!ret)
		ret = ps_stream_send(&c->st[0], WIRE_GHOST, &g.base, blob, (uint32_t)len);
	if (!ret)
		ret = ps_stream_ack(&c->st[0], WIRE_GHOST, &a);
	if (!ret)
		*kept = a.value == 1;
	return ret;
}

int ps_client_state(struct ps_client *c, const void *blob, size_t len)
{
	return ps_client_state_stale(c, blob, len, NULL, 0, false);
}

int ps_client_state_stale(struct ps_client *c, const void *blob, size_t len,
			  const struct ps_range *stale, size_t n, bool complete)
{
	Haul__Wire__State s = HAUL__WIRE__STATE__INIT;
	uint64_t *pairs = NULL;
	int ret;

	if (n > PS_MAX_STALE_RANGES)
		return -E2BIG;
	if (n && !(c->server_caps & HAUL__WIRE__CAP__CAP_STALE)) {
		pr_err("page server %s cannot take stale pages (an older haul): use --postcopy "
		       "or pre-copy with it",
		       c->o.to);
		return -EOPNOTSUPP;
	}
	if (n) {
		pairs = malloc(2 * n * sizeof(*pairs));
		if (!pairs)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			pairs[2 * i] = stale[i].addr;
			pairs[2 * i + 1] = stale[i].npages;
		}
		s.n_stale = 2 * n;
		s.stale = pairs;
	}
	s.has_complete = s.complete = complete && (c->server_caps & HAUL__WIRE__CAP__CAP_STALE);
	ret = state_send(c, &s, blob, len);
	free(pairs);
	return ret;
}

int ps_client_restore(struct ps_client *c, struct ps_restore_result *res)
{
	Haul__Wire__Restore r = HAUL__WIRE__RESTORE__INIT;
	Haul__Wire__RestoreReply *rr;
	ProtobufCMessage *m;
	void *ends = NULL;
	int ret = ps_client_flush(c);

	memset(res, 0, sizeof(*res));
	if (!ret)
		ret = ps_client_net_lock_msg(c, &r, &ends);
	if (!ret)
		ret = ps_stream_send(&c->st[0], WIRE_RESTORE, &r.base, NULL, 0);
	ps_client_net_lock_release(ends);
	if (!ret)
		ret = ps_stream_recv(&c->st[0], WIRE_RESTORE_REPLY, ps_reply_timeout(c), &m, NULL,
				     NULL);
	if (ret)
		return ret;
	rr = (Haul__Wire__RestoreReply *)m;
	res->pid = rr->pid;
	res->err = rr->err;
	snprintf(res->msg, sizeof(res->msg), "%s", rr->msg ? rr->msg : "");
	wire_msg_free(m);
	return 0;
}

int ps_client_commit(struct ps_client *c)
{
	Haul__Wire__Commit cm = HAUL__WIRE__COMMIT__INIT;
	int ret = ps_client_flush(c);

	if (!ret)
		ret = ps_stream_send(&c->st[0], WIRE_COMMIT, &cm.base, NULL, 0);
	if (!ret)
		ret = ps_stream_ack(&c->st[0], WIRE_COMMIT, NULL);
	return ret;
}

int ps_client_fetch(struct ps_client *c, uint64_t addr, uint32_t npages, void *buf)
{
	Haul__Wire__PageReq q = HAUL__WIRE__PAGE_REQ__INIT;
	struct ps_fetch_ctx f = {.addr = addr, .npages = npages, .buf = buf};
	struct ps_stream *st = &c->st[0];
	const uint8_t *payload;
	ProtobufCMessage *m;
	size_t plen;
	void *scratch;
	int64_t n;
	int ret;

	if (npages == 0 || npages > WIRE_MAX_REQ_PAGES || (addr & (HAUL_PAGE_SIZE - 1)))
		return -EINVAL;
	ret = ps_client_flush(c);
	if (ret)
		return ret;
	q.req_id = ++c->req_id;
	q.addr = addr;
	q.npages = npages;
	ret = ps_stream_send(st, WIRE_PAGE_REQ, &q.base, NULL, 0);
	if (!ret)
		ret = ps_stream_recv(st, WIRE_PAGE_REPLY, ps_reply_timeout(c), &m, &payload, &plen);
	if (ret)
		return ret;
	if (!c->scratch)
		c->scratch = malloc(WIRE_MAX_PAYLOAD);
	scratch = c->scratch;
	if (!scratch) {
		wire_msg_free(m);
		return -ENOMEM;
	}
	Haul__Wire__Pages *pm = (Haul__Wire__Pages *)m;
	if (pm->req_id != q.req_id) {
		n = -EPROTO;
	} else {
		memset(buf, 0, (size_t)npages * HAUL_PAGE_SIZE);
		n = wire_pages_decode(pm, payload, plen, scratch, ps_fetch_put, &f);
	}
	wire_msg_free(m);
	if (n < 0 || f.got != npages) {
		pr_err("page server %s answered %#llx+%u pages with a bad reply", c->o.to,
		       (unsigned long long)addr, npages);
		return n < 0 ? (int)n : -EPROTO;
	}
	return 0;
}
