/*
 * client_serve.c - post-copy from the source: serving the target's
 * PAGE_REQs until the server says it has every page.
 *
 * Each stream is served by its own thread (the caller's serves stream 0,
 * which carries the faults' requests) with its own buffer and encoder; the
 * first to finish stops the others through an eventfd their polls watch.
 * Where the server takes one, a fault lane (client_lane.c) is opened and
 * served on one more thread; it never ends the serving: when it cannot be
 * opened or breaks, its thread just ends, and the target asks on stream 0.
 */
#define LOG_PREFIX "ps-client: "
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/client_int.h"

/* ---- post-copy: serving the target's page requests ------------------------------------- */

/* One serving thread: its stream, its read buffer and encoder. */
struct serve_ctx {
	struct ps_client *c;
	struct ps_stream *st;
	ps_serve_fn fn;
	void *arg;
	int idle_ms;
	uint8_t *buf;
	struct wire_pages_enc enc;
	bool enc_ok;
	pthread_t thr;
	bool lane; /* the fault lane: its end is not the serving's */
};

static int serve_one(struct serve_ctx *x, const Haul__Wire__PageReq *q)
{
	struct ps_client *c = x->c;
	struct ps_stream *st = x->st;
	Haul__Wire__Pages rep;
	uint64_t sent0 = st->bytes_sent;
	int ret = 0;

	if (!x->buf) {
		x->buf = malloc(WIRE_MAX_PAYLOAD);
		if (!x->buf)
			return -ENOMEM;
		ret = wire_pages_enc_init(&x->enc, WIRE_MAX_REQ_PAGES + 1,
					  (enum wire_compress)c->o.compress);
		if (ret)
			return ret;
		x->enc_ok = true;
		x->enc.ref = !c->o.encrypt;
	}
	wire_pages_enc_reset(&x->enc);
	if (q->npages == 0 || q->npages > WIRE_MAX_REQ_PAGES || (q->addr & (HAUL_PAGE_SIZE - 1))) {
		pr_err("page server %s asked for %u pages at %#llx", c->o.to, q->npages,
		       (unsigned long long)q->addr);
		ret = -EPROTO;
	} else {
		ret = x->fn(x->arg, q->addr, q->npages, x->buf);
		if (ret)
			pr_warn_r(ret, "cannot read %u pages at %#llx for the target; it gets none",
				  q->npages, (unsigned long long)q->addr);
		else if (wire_pages_enc_add(&x->enc, q->addr, x->buf, q->npages) != (int)q->npages)
			ret = -EMSGSIZE;
	}
	if (ret == -EPROTO)
		return ret;
	/* On failure an empty reply: the target's request fails with -EIO, the session goes on. */
	if (ret)
		wire_pages_enc_reset(&x->enc);
	wire_pages_enc_msg(&x->enc, &rep);
	rep.has_req_id = true;
	rep.req_id = q->req_id;
	ret = ps_stream_sendv(st, WIRE_PAGE_REPLY, &rep.base, x->enc.segs, x->enc.nsegs,
			      (uint32_t)x->enc.len);
	/* the stream threads are idle while serving: only serving threads add to bytes_sent */
	pthread_mutex_lock(&c->mu);
	c->serve_replies += !ret;
	c->serve_lane_replies += !ret && x->lane;
	c->serve_bytes += st->bytes_sent - sent0;
	c->serve_reqs++;
	c->serve_last_ns = (uint64_t)ps_clock_ns(CLOCK_MONOTONIC);
	if (c->fault_break && c->serve_reqs >= c->fault_break) {
		/* fault injection: break every connection as a reset would */
		c->fault_break = 0;
		pr_warn("fault injection: shutting down every connection to %s after %llu requests",
			c->o.to, (unsigned long long)c->serve_reqs);
		for (unsigned i = 0; i < c->n; i++)
			shutdown(c->st[i].fd, SHUT_RDWR);
	}
	if (x->lane && c->fault_break_lane && c->serve_lane_replies >= c->fault_break_lane) {
		c->fault_break_lane = 0;
		pr_warn("fault injection: shutting the fault lane to %s down after %llu replies",
			c->o.to, (unsigned long long)c->serve_lane_replies);
		shutdown(st->fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&c->mu);
	return ret;
}

/*
 * The first thread to finish sets the result and stops the others; @st:
 * the stream that failed, if one did (its socket broke, or not).
 */
static void serve_finish(struct ps_client *c, const struct ps_stream *st, int ret)
{
	uint64_t one = 1;

	pthread_mutex_lock(&c->mu);
	if (!c->serve_stop) {
		c->serve_stop = true;
		c->serve_result = ret;
		c->serve_broken = ret && st && st->broken;
		if (write(c->serve_efd, &one, sizeof(one)) < 0)
			pr_debug("cannot wake the serving threads: %s", strerror(errno));
	}
	pthread_mutex_unlock(&c->mu);
}

static bool serve_stopped(struct ps_client *c)
{
	bool stop;

	pthread_mutex_lock(&c->mu);
	stop = c->serve_stop;
	pthread_mutex_unlock(&c->mu);
	return stop;
}

/* A thread's serving failed with @ret: all of it, unless that thread serves the lane. */
static void serve_fail(struct serve_ctx *x, const struct ps_stream *st, int ret)
{
	if (x->lane) {
		pr_info("the fault lane to %s ended (%s); the target asks on stream 0", x->c->o.to,
			strerror(-ret));
		return;
	}
	serve_finish(x->c, st, ret);
}

/* Serve one stream until the target has all, any thread failed, or nothing was asked. */
static void *serve_stream(void *arg)
{
	struct serve_ctx *x = arg;
	struct ps_client *c = x->c;
	int slice = x->idle_ms > 0 && x->idle_ms < 100 ? x->idle_ms : 100;

	for (;;) {
		struct pollfd pfd[2] = {{.fd = x->st->fd, .events = POLLIN},
					{.fd = c->serve_efd, .events = POLLIN}};
		ProtobufCMessage *m;
		unsigned type = 0;
		uint64_t last;
		int r, ret;

		r = poll(pfd, 2, slice);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			serve_fail(x, NULL, -errno);
			break;
		}
		if (serve_stopped(c))
			break;
		if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			pthread_mutex_lock(&c->mu);
			last = c->serve_last_ns;
			pthread_mutex_unlock(&c->mu);
			if (!x->lane && x->idle_ms > 0 &&
			    (uint64_t)ps_clock_ns(CLOCK_MONOTONIC) - last >
				    (uint64_t)x->idle_ms * 1000000ull) {
				pr_err("page server %s asked for no page in %d ms; giving up serving",
				       c->o.to, x->idle_ms);
				serve_finish(c, NULL, -ETIMEDOUT);
				break;
			}
			continue;
		}
		ret = ps_stream_recv_t(x->st, 0, ps_reply_timeout(c), &m, NULL, NULL, &type);
		if (ret) {
			serve_fail(x, x->st, ret);
			break;
		}
		if (type == WIRE_PAGE_REQ) {
			ret = serve_one(x, (Haul__Wire__PageReq *)m);
		} else if (!x->lane && type == WIRE_ACK &&
			   ((Haul__Wire__Ack *)m)->type == WIRE_PAGE_REQ) {
			const Haul__Wire__Ack *a = (Haul__Wire__Ack *)m;

			pthread_mutex_lock(&c->mu);
			pr_info("target has every page of pid %d (%llu requests served)", c->o.pid,
				(unsigned long long)c->serve_reqs);
			/* an older target sends no report: ps_client_lazy_report says so */
			c->has_lazy_report = a->lazy != NULL;
			if (a->lazy)
				ps_lazy_report_from_msg(a->lazy, &c->lazy_report);
			pthread_mutex_unlock(&c->mu);
			wire_msg_free(m);
			serve_finish(c, NULL, 0);
			break;
		} else {
			pr_err("page server %s sent %s while pages were being served", c->o.to,
			       wire_type_name(type));
			ret = -EPROTO;
		}
		wire_msg_free(m);
		if (ret) {
			serve_fail(x, x->st, ret);
			break;
		}
	}
	return NULL;
}

/*
 * The fault lane's thread: open it, then answer its requests until the
 * serving stops (ps_client_serve shuts the socket down) or it fails.
 */
static void *serve_lane(void *arg)
{
	struct serve_ctx *x = arg;
	struct ps_client *c = x->c;
	struct ps_stream *st = NULL;
	int ret = ps_lane_open(c, &st);

	if (ret) {
		pr_info("no fault lane to %s (%s); the target asks on stream 0", c->o.to,
			strerror(-ret));
		return NULL;
	}
	pthread_mutex_lock(&c->mu);
	x->st = st;
	if (c->serve_stop)
		shutdown(st->fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->mu);
	for (;;) {
		Haul__Wire__PageReq *q;

		ret = ps_lane_recv_req(st, &q);
		if (!ret) {
			ret = serve_one(x, q);
			wire_msg_free(&q->base);
		}
		if (ret) {
			if (!serve_stopped(c))
				serve_fail(x, st, ret);
			/* the target's next fault finds it closed at once, not after its timeout */
			shutdown(st->fd, SHUT_RDWR);
			return NULL;
		}
	}
}

int ps_client_serve(struct ps_client *c, ps_serve_fn fn, void *arg, int idle_ms)
{
	struct serve_ctx x[PS_MAX_STREAMS], lane;
	unsigned started = 1;
	bool lane_started = false;
	int ret = ps_client_flush(c);

	if (ret)
		return ret;
	c->serve_efd = eventfd(0, EFD_CLOEXEC);
	if (c->serve_efd < 0)
		return -errno;
	pthread_mutex_lock(&c->mu);
	c->has_lazy_report = false;
	c->serve_stop = false;
	c->serve_result = 0;
	c->serve_broken = false;
	c->serve_reqs = 0;
	c->serve_last_ns = (uint64_t)ps_clock_ns(CLOCK_MONOTONIC);
	pthread_mutex_unlock(&c->mu);
	memset(x, 0, sizeof(x));
	for (unsigned i = 0; i < c->n; i++)
		x[i] = (struct serve_ctx){
			.c = c, .st = &c->st[i], .fn = fn, .arg = arg, .idle_ms = idle_ms};
	/* stream 0 (faults) on this thread, every other stream on its own */
	for (; started < c->n; started++) {
		ret = -pthread_create(&x[started].thr, NULL, serve_stream, &x[started]);
		if (!ret)
			pthread_setname_np(x[started].thr, "haul-serve");
		if (ret) {
			serve_finish(c, NULL, ret);
			break;
		}
	}
	lane = (struct serve_ctx){.c = c, .fn = fn, .arg = arg, .idle_ms = idle_ms, .lane = true};
	if (started == c->n && ps_lane_offered(c) &&
	    !pthread_create(&lane.thr, NULL, serve_lane, &lane)) {
		pthread_setname_np(lane.thr, "haul-lane");
		lane_started = true;
	}
	serve_stream(&x[0]);
	for (unsigned i = 1; i < started; i++)
		pthread_join(x[i].thr, NULL);
	if (lane_started) {
		/* serve_stop is set: a lane opened from now on is shut down by its thread */
		pthread_mutex_lock(&c->mu);
		if (lane.st)
			shutdown(lane.st->fd, SHUT_RDWR);
		pthread_mutex_unlock(&c->mu);
		pthread_join(lane.thr, NULL);
		/* closed: a target still asking on it is told at once, and asks on stream 0 */
		ps_lane_close(lane.st);
		free(lane.buf);
		if (lane.enc_ok)
			wire_pages_enc_release(&lane.enc);
	}
	for (unsigned i = 0; i < c->n; i++) {
		free(x[i].buf);
		if (x[i].enc_ok)
			wire_pages_enc_release(&x[i].enc);
	}
	close(c->serve_efd);
	c->serve_efd = -1;
	return c->serve_result;
}

int ps_client_lazy_report(const struct ps_client *c, struct ps_lazy_report *out)
{
	if (!c->has_lazy_report)
		return -ENODATA;
	*out = c->lazy_report;
	return 0;
}

void ps_client_fault_break(struct ps_client *c, uint64_t nreq)
{
	pthread_mutex_lock(&c->mu);
	c->fault_break = nreq;
	pthread_mutex_unlock(&c->mu);
}

void ps_client_fault_break_lane(struct ps_client *c, uint64_t nreq)
{
	pthread_mutex_lock(&c->mu);
	c->fault_break_lane = nreq;
	pthread_mutex_unlock(&c->mu);
}
