/*
 * server_fetch.c - post-copy from the source: page requests of other
 * threads (ps_session_fetch), sent by the loop thread as PAGE_REQ and
 * answered by PAGE_REPLY; and the detach and rejoin of a lazy session
 * whose connections broke after the resume.
 *
 * A request (struct ps_fetch) lives on the heap; its requester waits on
 * the request's own condition variable until it is done or its deadline
 * passes (so a reply wakes only the thread that asked for it: the fetchers
 * and fault-fetch threads wait side by side), and frees it, unless it gave
 * up (abandoned), when the loop thread frees it.  The queues of
 * requests and their fields are under ps_server.fmu; nothing is sent with
 * fmu held.  While detached, requests park, and go out again under new
 * req_ids once every stream is back.
 */
#define LOG_PREFIX "ps: "
#include <errno.h>
#include <ev.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/server_int.h"

/* ---- post-copy: page requests to the source ------------------------------------------------ */

static void fetch_free(struct ps_fetch *f)
{
	pthread_cond_destroy(&f->cv);
	free(f);
}

static void fetch_finish(struct ps_fetch *f, int err)
{
	if (f->abandoned) {
		fetch_free(f);
		return;
	}
	f->err = err;
	f->done = true;
	pthread_cond_signal(&f->cv);
}

/* Fail every request of @x, queued or sent, and refuse new ones.  Loop thread. */
void ps_fetch_fail_all(struct ps_session *x, int err)
{
	struct ps_server *s = x->srv;

	pthread_mutex_lock(&s->fmu);
	x->fclosed = true;
	while (x->inflight) {
		struct ps_fetch *f = x->inflight;

		x->inflight = f->next;
		fetch_finish(f, err);
	}
	while (x->parked) {
		struct ps_fetch *f = x->parked;

		x->parked = f->next;
		fetch_finish(f, err);
	}
	for (struct ps_fetch **pp = &s->fqueue; *pp;) {
		struct ps_fetch *f = *pp;

		if (f->sess == x) {
			*pp = f->next;
			fetch_finish(f, err);
		} else {
			pp = &f->next;
		}
	}
	pthread_mutex_unlock(&s->fmu);
	ps_lane_shutdown_all(x);
}

/* @ms from now on CLOCK_MONOTONIC (the clock of each request's cv). */
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
			if (f->sess == x && (force || ts_before(&f->dl, dl))) {
				f->dl = *dl;
				pthread_cond_signal(&f->cv);
			}
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
	return ps_conn_send(c, WIRE_ACK, &a.base, NULL, 0);
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
void ps_session_park(struct ps_session *x)
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
			ps_conn_teardown(x->streams[i]);
}

void ps_detach_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
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
	ps_session_fail(x, -ECONNRESET, "the source did not reconnect in time");
	ps_server_reap(s);
}

static struct ps_conn *fetch_stream(struct ps_session *x, bool urgent);

/*
 * Every stream of a detached @x is back: send the parked requests again
 * under new req_ids, each with a full stall timeout for its reply, and the
 * "every page arrived" notice again if it had gone out (the source may
 * never have read it).  Loop thread.
 */
void ps_session_resume(struct ps_session *x)
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
			fetch_free(f);
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
void ps_fasync_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	struct ps_server *s = w->data;
	struct ps_session *done[64], *bad[8];
	struct ps_lazy_report rep[64];
	bool has_rep[64];
	struct ps_fetch *todo;
	unsigned ndone = 0, nbad = 0;
	char why[8][200];
	int err[8];
	bool more = false; /* sessions past this turn's arrays: another turn */

	(void)revents;
	pthread_mutex_lock(&s->fmu);
	todo = s->fqueue;
	s->fqueue = NULL;
	for (struct ps_session *x = s->sessions; x; x = x->next) {
		if (x->fdone && ndone < 64) {
			x->fdone = false;
			has_rep[ndone] = x->has_frep;
			rep[ndone] = x->frep;
			done[ndone++] = x;
		} else if (x->fdone) {
			more = true;
		}
		if (x->ffail && !x->failed && nbad < 8) {
			err[nbad] = x->ffail;
			snprintf(why[nbad], sizeof(why[nbad]), "%s", x->ffail_why);
			x->ffail = 0;
			bad[nbad++] = x;
		} else if (x->ffail && !x->failed) {
			more = true;
		}
	}
	pthread_mutex_unlock(&s->fmu);
	if (more)
		ev_async_send(loop, w);
	for (unsigned i = 0; i < nbad; i++)
		ps_session_fail(bad[i], err[i], why[i]);

	/* Send without the lock: a failing send may fail the session (ps_fetch_fail_all). */
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
			ret = ps_conn_send(c, WIRE_PAGE_REQ, &q.base, NULL, 0);
		}
		pthread_mutex_lock(&s->fmu);
		if (!ret && !x->fclosed && !f->abandoned) {
			f->next = x->inflight;
			x->inflight = f;
		} else {
			fetch_finish(f, ret ? ret : -ECONNRESET);
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
	ps_server_reap(s);
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
	pthread_cond_init(&f->cv, &s->fca);
	pthread_mutex_lock(&s->fmu);
	if (x->fclosed) {
		pthread_mutex_unlock(&s->fmu);
		fetch_free(f);
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

		if (pthread_cond_timedwait(&f->cv, &s->fmu, &dl) == ETIMEDOUT && !f->done &&
		    !ts_before(&dl, &f->dl))
			break;
	}
	if (f->done) {
		ret = f->err;
		fetch_free(f);
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

int ps_session_fetch_fail(struct ps_session *x, int err, const char *why)
{
	struct ps_server *s = x->srv;

	pthread_mutex_lock(&s->fmu);
	if (!x->ffail) {
		x->ffail = err < 0 ? err : -EIO;
		snprintf(x->ffail_why, sizeof(x->ffail_why), "%s", why);
	}
	pthread_mutex_unlock(&s->fmu);
	ev_async_send(s->loop, &s->fasync);
	return 0;
}

/* The source answers a request: copy the pages to the requester and wake it. */
int ps_on_page_reply(struct ps_conn *c, ProtobufCMessage *m, const uint8_t *payload, size_t len)
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
		fetch_free(f);
		pthread_mutex_unlock(&s->fmu);
		return 0;
	}
	struct ps_fetch_ctx fc = {.addr = f->addr, .npages = f->npages, .buf = f->buf};
	char why[160];

	why[0] = '\0';
	n = val_pages(pm, why, sizeof(why));
	if (!n)
		n = wire_pages_decode(pm, payload, len, s->scratch, ps_fetch_put, &fc);
	if (n < 0 || fc.got != f->npages)
		pr_warn("peer %s: bad reply to page request %#llx+%u (%s)", c->peer,
			(unsigned long long)f->addr, f->npages,
			why[0]	? why
			: n < 0 ? wire_strerror((int)n)
				: "the source could not read them");
	fetch_finish(f, n < 0 || fc.got != f->npages ? -EIO : 0);
	pthread_mutex_unlock(&s->fmu);
	return 0;
}
