/*
 * server_round.c - what an open session receives: its layout, rounds and
 * their barrier across streams, page batches, the process state, restore,
 * commit, and page requests answered from the page store.
 *
 * A round is applied (the sink's round_end, or a pstore commit) and acked
 * on every stream only when every stream has ended it; a STORE session's
 * pages stay staged (invisible) until then.  A bad message fails its
 * stream with the field named, and the session with it; other sessions
 * carry on.
 */
#define LOG_PREFIX "ps: "
#include <errno.h>
#include <ev.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/server_int.h"

static int send_ack(struct ps_conn *c, unsigned type, uint64_t value, uint64_t pages)
{
	Haul__Wire__Ack a = HAUL__WIRE__ACK__INIT;

	a.type = type;
	a.has_value = true;
	a.value = value;
	a.has_pages = true;
	a.pages = pages;
	return ps_conn_send(c, WIRE_ACK, &a.base, NULL, 0);
}

/* A FETCH session only reads: fail @c for what it @did there (-EPROTO), else 0. */
static int fetch_session_refuses(struct ps_conn *c, const char *did)
{
	if (c->sess->kind != HAUL__WIRE__SESSION_KIND__FETCH)
		return 0;
	ps_conn_fail(c, -EPROTO, "%s in a fetch session", did);
	return -EPROTO;
}

/* Fail @x for @reason, with the first error the sink logged on this thread (log_err_mark). */
static void fail_saying(struct ps_session *x, int err, const char *reason)
{
	char why[1024];

	if (!log_err_first()[0]) {
		ps_session_fail(x, err, reason);
		return;
	}
	snprintf(why, sizeof(why), "%s: %s", reason, log_err_first());
	ps_session_fail(x, err, why);
}

int ps_on_layout(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__Layout *lm = (Haul__Wire__Layout *)m;
	struct ps_session *x = c->sess;
	struct haul_layout l;
	char why[160];
	int ret;

	if (fetch_session_refuses(c, "sent a layout"))
		return -EPROTO;
	ret = wire_layout_from_msg(lm->vmas, lm->n_vmas, &l);
	if (ret) {
		ps_conn_fail(c, ret,
			     "sent a malformed layout (unaligned, empty or overlapping VMAs)");
		ps_session_fail(x, ret, "a stream sent a malformed layout");
		return ret;
	}
	if (val_layout(&l, why, sizeof(why))) {
		haul_layout_release(&l);
		ps_conn_fail(c, -EBADMSG, "sent a bad layout of pid %d: %s", x->pid, why);
		ps_session_fail(x, -EBADMSG, "a stream sent a bad layout");
		return -EBADMSG;
	}
	log_err_mark();
	if (x->proc)
		ret = pstore_set_layout(x->proc, &l);
	else
		ret = c->srv->o.sink->layout(x->sink_sess, &l);
	if (ret) {
		haul_layout_release(&l);
		fail_saying(x, ret, "the layout could not be applied");
		return ret;
	}
	haul_layout_release(&x->layout);
	x->layout = l;
	return send_ack(c, WIRE_LAYOUT, 0, 0);
}

int ps_on_round_begin(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__RoundBegin *rb = (Haul__Wire__RoundBegin *)m;
	struct ps_session *x = c->sess;

	if (fetch_session_refuses(c, "began a round"))
		return -EPROTO;
	if (x->njoined == x->nstreams && x->nconns < x->nstreams) {
		/* A stream left: the round's barrier could never complete. */
		ps_conn_fail(c, -EPIPE,
			     "began round %llu after another stream of its session closed",
			     (unsigned long long)rb->round);
		ps_session_fail(x, -EPIPE, "a stream of the session closed");
		return -EPIPE;
	}
	if (x->in_round ? rb->round != x->round : rb->round <= x->last_round) {
		ps_conn_fail(c, -EPROTO, "began round %llu (session is at round %llu)",
			     (unsigned long long)rb->round,
			     (unsigned long long)(x->in_round ? x->round : x->last_round));
		return -EPROTO;
	}
	if (!x->in_round) {
		x->in_round = true;
		x->round = rb->round;
		x->nended = 0;
		x->round_pages = 0;
		/* the final round has none: its process is frozen, full weight again */
		x->nice = rb->has_nice ? (rb->nice < 19 ? rb->nice : 19) : 0;
		ps_server_weigh(c->srv);
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

int ps_on_pages(struct ps_conn *c, ProtobufCMessage *m, const uint8_t *payload, size_t len)
{
	struct ps_session *x = c->sess;
	char why[160];
	int64_t n;

	if (val_pages((Haul__Wire__Pages *)m, why, sizeof(why))) {
		ps_conn_fail(c, -EBADMSG, "sent a bad page batch for pid %d: %s", x->pid, why);
		ps_session_fail(x, -EBADMSG, "a stream sent a bad page batch");
		return -EBADMSG;
	}
	n = wire_pages_decode((Haul__Wire__Pages *)m, payload, len, c->srv->scratch, put_pages, c);
	if (n == -EBADMSG) {
		ps_conn_fail(c, -EBADMSG, "sent a malformed page batch (bad range or corrupt LZ4)");
		ps_session_fail(x, -EBADMSG, "a stream sent a malformed page batch");
		return -EBADMSG;
	}
	if (n == -ERANGE) {
		ps_conn_fail(c, -ERANGE, "sent pages outside any announced VMA of pid %d", x->pid);
		ps_session_fail(x, -ERANGE, "a stream sent pages outside the layout");
		return -ERANGE;
	}
	if (n < 0) {
		ps_session_fail(x, (int)n, "the pages could not be stored");
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
		ps_session_fail(x, ret, "the round could not be committed");
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

int ps_on_round_end(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__RoundEnd *re = (Haul__Wire__RoundEnd *)m;
	struct ps_session *x = c->sess;

	if (re->round != c->round) {
		ps_conn_fail(c, -EPROTO, "ended round %llu inside round %llu",
			     (unsigned long long)re->round, (unsigned long long)c->round);
		return -EPROTO;
	}
	if (re->has_pages && re->pages != c->round_pages) {
		ps_conn_fail(c, -EPROTO, "ended round %llu claiming %llu pages; %llu arrived",
			     (unsigned long long)re->round, (unsigned long long)re->pages,
			     (unsigned long long)c->round_pages);
		ps_session_fail(x, -EPROTO, "a stream lost pages");
		return -EPROTO;
	}
	c->state = PS_BARRIER;
	if (++x->nended < x->nstreams)
		return 0;
	return round_complete(x);
}

/*
 * State.stale and State.complete (hybrid post-copy): (addr, npages) pairs
 * for the sink's stale(), checked like page ranges (aligned, 1..2^32 pages,
 * no overflow).
 */
static int on_stale(struct ps_conn *c, const Haul__Wire__State *m)
{
	struct ps_session *x = c->sess;
	struct ps_range *r;
	size_t n = m->n_stale / 2;
	char why[160];
	int ret;

	if (val_stale(m, PS_MAX_STALE_RANGES, why, sizeof(why))) {
		ps_conn_fail(c, -EPROTO, "sent a bad stale list: %s", why);
		return -EPROTO;
	}
	if (x->proc || !x->lazy) {
		ps_conn_fail(c, -EPROTO,
			     "sent stale pages or a complete state outside a lazy "
			     "live session");
		return -EPROTO;
	}
	if (!c->srv->o.sink->stale) {
		ps_session_fail(x, -EOPNOTSUPP, "this page server's sink cannot take stale pages");
		return -EOPNOTSUPP;
	}
	r = malloc((n ? n : 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		r[i].addr = m->stale[2 * i];
		r[i].npages = m->stale[2 * i + 1];
		if ((r[i].addr & (HAUL_PAGE_SIZE - 1)) || !r[i].npages ||
		    r[i].npages > UINT32_MAX ||
		    r[i].addr + r[i].npages * HAUL_PAGE_SIZE < r[i].addr) {
			free(r);
			ps_conn_fail(c, -EPROTO, "sent a bad stale range");
			return -EPROTO;
		}
	}
	ret = c->srv->o.sink->stale(x->sink_sess, r, n, m->has_complete && m->complete);
	free(r);
	if (ret)
		ps_session_fail(x, ret, "the stale pages were refused");
	return ret;
}

/*
 * Part @payload of a State or Ghost (frame @type) sent in parts (@total):
 * kept in x->state_buf.  1 when more parts are due (ACKed here), 0 when it
 * is whole (@payload and @len then name all of it), or -EPROTO (the
 * connection failed).
 */
static int blob_part(struct ps_conn *c, unsigned type, uint64_t total, const uint8_t **payload,
		     size_t *len)
{
	struct ps_session *x = c->sess;

	if (!*len || !total || total > WIRE_MAX_STATE ||
	    (x->state_buf && (total != x->state_total || type != x->state_type)) ||
	    *len > total - (x->state_buf ? x->state_got : 0)) {
		ps_conn_fail(c, -EPROTO, "sent a bad part of a %s (%zu of %llu bytes)",
			     wire_type_name(type), *len, (unsigned long long)total);
		return -EPROTO;
	}
	if (!x->state_buf) {
		x->state_buf = malloc(total);
		if (!x->state_buf) {
			ps_session_fail(x, -ENOMEM, "no memory for the process state");
			return -ENOMEM;
		}
		x->state_total = total;
		x->state_type = type;
		x->state_got = 0;
	}
	memcpy(x->state_buf + x->state_got, *payload, *len);
	x->state_got += *len;
	if (x->state_got < x->state_total)
		return send_ack(c, type, 0, 0) ? -EPIPE : 1;
	*payload = x->state_buf;
	*len = x->state_total;
	return 0;
}

int ps_on_state(struct ps_conn *c, const Haul__Wire__State *m, const uint8_t *payload, size_t len)
{
	struct ps_session *x = c->sess;
	int ret;

	if (fetch_session_refuses(c, "sent a state"))
		return -EPROTO;
	if (m->has_total) {
		if ((m->n_stale || m->has_complete) &&
		    (x->state_buf ? x->state_got : 0) + len < m->total) {
			ps_conn_fail(c, -EPROTO, "sent stale pages before a state's last part");
			return -EPROTO;
		}
		ret = blob_part(c, WIRE_STATE, m->total, &payload, &len);
		if (ret)
			return ret > 0 ? 0 : ret;
	} else if (x->state_buf) {
		ps_conn_fail(c, -EPROTO, "sent a whole state in the middle of one in parts");
		return -EPROTO;
	}
	if (m->n_stale || (m->has_complete && m->complete)) {
		ret = on_stale(c, m);
		if (ret)
			return ret;
	}
	log_err_mark();
	if (x->proc)
		ret = pstore_set_state(x->proc, payload, len);
	else
		ret = c->srv->o.sink->state(x->sink_sess, payload, len);
	free(x->state_buf); /* whole: a later state starts again */
	x->state_buf = NULL;
	if (ret) {
		fail_saying(x, ret, "the process state was refused");
		return ret;
	}
	return send_ack(c, WIRE_STATE, 0, 0);
}

int ps_on_ghost(struct ps_conn *c, const Haul__Wire__Ghost *m, const uint8_t *payload, size_t len)
{
	struct ps_session *x = c->sess;
	int ret;

	if (fetch_session_refuses(c, "sent a deleted file"))
		return -EPROTO;
	if (m->has_total) {
		ret = blob_part(c, WIRE_GHOST, m->total, &payload, &len);
		if (ret)
			return ret > 0 ? 0 : ret;
	} else if (x->state_buf) {
		ps_conn_fail(c, -EPROTO, "sent a whole deleted file in the middle of a state");
		return -EPROTO;
	}
	/* a session to the page store, or a sink that takes none: declined, the state carries it */
	log_err_mark();
	ret = !x->proc && c->srv->o.sink->ghost ? c->srv->o.sink->ghost(x->sink_sess, payload, len)
						: 0;
	free(x->state_buf);
	x->state_buf = NULL;
	if (ret < 0) {
		fail_saying(x, ret, "a deleted file sent before the freeze was refused");
		return ret;
	}
	return send_ack(c, WIRE_GHOST, ret > 0, 0);
}

int ps_on_restore(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__RestoreReply r = HAUL__WIRE__RESTORE_REPLY__INIT;
	struct ps_session *x = c->sess;
	struct ps_restore_result res = {0};
	struct ps_net_end *ends = NULL;
	size_t nends = 0;
	char why[128];
	int ret;

	ret = ps_net_lock_ends((const Haul__Wire__Restore *)m, &ends, &nends, why, sizeof(why));
	if (ret) {
		ps_conn_fail(c, ret, "sent a bad Restore: %s", why);
		return ret;
	}
	/* the lock goes up before anything of the process exists here (sockets included) */
	if (!x->proc && c->srv->o.sink->lock) {
		ret = c->srv->o.sink->lock(x->sink_sess, ends, nends);
		if (ret) {
			res.err = ret;
			snprintf(res.msg, sizeof(res.msg),
				 "cannot prepare the network for pid %d here (lock, moving "
				 "addresses, --on-switch target-prepare): %s; the page server's "
				 "log says which",
				 x->pid, strerror(-ret));
		}
	}
	free(ends);
	if (res.err) {
		/* refused below, as any failed restore */
	} else if (x->proc) {
		res.err = -EOPNOTSUPP;
		snprintf(res.msg, sizeof(res.msg),
			 "this page server has no restore sink (%s session); it stores pages only",
			 ps_kind_name(x->kind));
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
	return ps_conn_send(c, WIRE_RESTORE_REPLY, &r.base, NULL, 0);
}

int ps_on_commit(struct ps_conn *c)
{
	struct ps_session *x = c->sess;
	int ret;

	if (fetch_session_refuses(c, "sent a commit"))
		return -EPROTO;
	if (x->proc) {
		ret = pstore_commit(x->proc, x->round_base + x->last_round);
		if (ret) {
			ps_session_fail(x, ret, "the commit failed");
			return ret;
		}
	}
	x->committed = true;
	pr_info("session %016llx of pid %d committed", (unsigned long long)x->id, x->pid);
	return send_ack(c, WIRE_COMMIT, x->last_round, 0);
}

int ps_on_page_req(struct ps_conn *c, ProtobufCMessage *m)
{
	Haul__Wire__PageReq *q = (Haul__Wire__PageReq *)m;
	struct ps_session *x = c->sess;
	struct ps_server *s = c->srv;
	Haul__Wire__Pages rep;
	char why[160];
	int64_t n;
	int ret;

	if (!x->proc) {
		ps_conn_fail(c, -EOPNOTSUPP, "asked for pages of a live session (not stored here)");
		return -EOPNOTSUPP;
	}
	if (val_page_req(q, why, sizeof(why))) {
		ps_conn_fail(c, -EPROTO, "sent a bad PageReq: %s", why);
		return -EPROTO;
	}
	n = pstore_read(x->proc, q->addr, q->npages, s->scratch);
	if (n < 0) {
		ps_conn_fail(c, (int)n, "cannot read pages of pid %d for it", x->pid);
		return (int)n;
	}
	wire_pages_enc_reset(&s->enc);
	ret = wire_pages_enc_add(&s->enc, q->addr, s->scratch, q->npages);
	if (ret != (int)q->npages) {
		ps_conn_fail(c, -EMSGSIZE, "page reply of %u pages does not fit a frame",
			     q->npages);
		return -EMSGSIZE;
	}
	wire_pages_enc_msg(&s->enc, &rep);
	rep.has_req_id = true;
	rep.req_id = q->req_id;
	/* Raw pages go from the read buffer into the send buffer: one copy. */
	return ps_conn_sendv(c, WIRE_PAGE_REPLY, &rep.base, s->enc.segs, s->enc.nsegs,
			     (uint32_t)s->enc.len);
}
