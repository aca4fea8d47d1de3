/*
 * ps_postcopy.c - post-copy over a live session's own streams: the target's
 * sink asks for pages with ps_session_fetch() from its own threads while the
 * source answers in ps_client_serve().  A page server runs in this process
 * with a test sink; no root needed.  The "every page arrived" notice carries
 * the target's statistics back to the source (ps_client_lazy_report).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "pageserver/pageserver.h"
#include "pageserver/client_int.h" /* ps_lane_open: a peer opening lane after lane */
#include "th_lazy.h"

#define PG     4096ull
#define BASE   0x7f5600000000ull
#define NPAGES 4096 /* 16 MiB */

static void gen(uint8_t *p, uint64_t addr)
{
	uint64_t pg = addr / PG, x = pg * 0x9e3779b97f4a7c15ull + 1;

	if (pg % 5 == 2) {
		memset(p, 0, PG);
		return;
	}
	for (size_t i = 0; i < PG; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
}

/* The test sink: records the session and, on restore, starts two fetcher threads. */
struct tsink {
	struct ps_session *session;
	pthread_t thr[2];
	int nthr;
	int result[2];
	uint64_t bad;
	pthread_mutex_t mu;
	bool closed, started;
	/* report mode: one thread plays the fault server and reports what it did */
	bool report;
	uint8_t present[NPAGES]; /* pages pushed before the resume */
	uint64_t requests;	 /* page requests it sent */
	struct ps_lazy_report rep;
};

static struct tsink ts;

/*
 * lane_faults: fetcher 1 waits for the source's fault lane, then asks on it
 * first and on stream 0 when it fails, as rst_lazy_session_fetch_fault
 * does; lane_ok and lane_fallbacks count which answered.
 */
static bool lane_faults;
static unsigned lane_ok, lane_fallbacks;

static int lane_or_urgent(uint64_t addr, uint32_t npages, void *buf)
{
	int ret = ps_session_lane_fetch(ts.session, addr, npages, buf);

	if (!ret) {
		lane_ok++;
		return 0;
	}
	lane_fallbacks++;
	return ps_session_fetch_urgent(ts.session, addr, npages, buf);
}

/* Until the lane is there (the source opens it once it serves), at most 5 s. */
static void lane_wait(uint64_t addr, void *buf)
{
	for (int i = 0; i < 5000; i++) {
		int ret = ps_session_lane_fetch(ts.session, addr, 1, buf);

		if (ret != -ENOTCONN)
			return;
		usleep(1000);
	}
}

static void *fetcher(void *arg)
{
	int idx = (int)(intptr_t)arg;
	static __thread uint8_t buf[64 * PG], want[PG];

	if (idx == 0) {
		/* one request of the largest size first: many segments in one reply */
		static uint8_t big[1024 * PG];
		int ret = ps_session_fetch(ts.session, BASE, 1024, big);

		if (ret) {
			ts.result[idx] = ret;
			return NULL;
		}
		for (int i = 0; i < 1024; i++) {
			gen(want, BASE + i * PG);
			if (memcmp(want, big + i * PG, PG)) {
				pthread_mutex_lock(&ts.mu);
				ts.bad++;
				pthread_mutex_unlock(&ts.mu);
			}
		}
	}
	if (idx == 1 && lane_faults)
		lane_wait(BASE, buf);
	/* thread 0 takes even 64-page chunks in the background, thread 1 odd ones as faults */
	for (uint64_t chunk = (uint64_t)idx; chunk < NPAGES / 64; chunk += 2) {
		uint64_t addr = BASE + chunk * 64 * PG;
		int ret = !idx		? ps_session_fetch(ts.session, addr, 64, buf)
			  : lane_faults ? lane_or_urgent(addr, 64, buf)
					: ps_session_fetch_urgent(ts.session, addr, 64, buf);

		if (ret) {
			ts.result[idx] = ret;
			return NULL;
		}
		for (int i = 0; i < 64; i++) {
			gen(want, addr + i * PG);
			if (memcmp(want, buf + i * PG, PG)) {
				pthread_mutex_lock(&ts.mu);
				ts.bad++;
				pthread_mutex_unlock(&ts.mu);
			}
		}
	}
	return NULL;
}

static int t_open(void *arg, const struct ps_session_info *info, void **sess)
{
	(void)arg;
	ts.session = info->session;
	*sess = &ts;
	return 0;
}

static int t_pages(void *sess, uint64_t addr, const void *data, uint32_t npages)
{
	uint8_t want[PG];

	(void)sess;
	for (uint32_t i = 0; i < npages; i++) {
		uint64_t a = addr + i * PG;

		if (a < BASE || a >= BASE + NPAGES * PG)
			return -ERANGE;
		gen(want, a);
		if (data ? memcmp(want, (const uint8_t *)data + i * PG, PG) : want[0] != 0)
			ts.bad++;
		ts.present[(a - BASE) / PG] = 1;
	}
	return 0;
}

static void *finisher(void *arg)
{
	(void)arg;
	for (int i = 0; i < 2; i++)
		pthread_join(ts.thr[i], NULL);
	ps_session_fetch_done(ts.session);
	return NULL;
}

static pthread_t fin;

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/*
 * Fetch the missing pages of [@first, @first + @n) (page indexes), run by
 * run, as the fault server would, and count them in @r.  0 or -errno.
 */
static int fetch_missing(uint64_t first, uint64_t n, bool fault, uint8_t *have,
			 struct ps_lazy_report *r)
{
	static uint8_t buf[64 * PG], want[PG];

	for (uint64_t i = first; i < first + n;) {
		uint64_t run = 0;
		int ret;

		if (have[i]) {
			i++;
			continue;
		}
		while (i + run < first + n && !have[i + run] && run < 64)
			run++;
		ret = ps_session_fetch(ts.session, BASE + i * PG, (uint32_t)run, buf);
		if (ret)
			return ret;
		ts.requests++;
		for (uint64_t k = 0; k < run; k++) {
			gen(want, BASE + (i + k) * PG);
			if (memcmp(want, buf + k * PG, PG))
				ts.bad++;
			if (want[0] == 0 && !memcmp(want, want + 1, PG - 1))
				r->zero_filled++;
			have[i + k] = 1;
		}
		if (fault)
			r->fault_pages += run;
		else
			r->pushed_pages += run;
		r->fetched_bytes += run * PG;
		i += run;
	}
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Report mode: 8 "faults" (16-page windows), then push the rest; report like rst_live_sink. */
static void *lazy_target(void *arg)
{
	static uint8_t have[NPAGES];
	struct ps_lazy_report r = {.total_pages = NPAGES};
	uint64_t t0 = now_ns(), lat[8];
	int ret = 0;

	(void)arg;
	memcpy(have, ts.present, sizeof(have));
	for (int i = 0; i < NPAGES; i++)
		r.present_pages += have[i];
	for (int k = 0; k < 8 && !ret; k++) {
		uint64_t t = now_ns(), pg = (300 + (uint64_t)k * 457) % NPAGES;

		ret = fetch_missing(pg & ~15ull, 16, true, have, &r);
		lat[k] = now_ns() - t;
		r.faults++;
	}
	for (uint64_t pg = 0; pg < NPAGES && !ret; pg += 256)
		ret = fetch_missing(pg, 256, false, have, &r);
	if (ret) {
		ts.result[0] = ret;
		return NULL;
	}
	qsort(lat, 8, sizeof(lat[0]), cmp_u64);
	r.fault_p50_ns = lat[4];
	r.fault_p99_ns = lat[7];
	r.fault_max_ns = lat[7];
	r.complete_ns = now_ns() - t0;
	pthread_mutex_lock(&ts.mu);
	ts.rep = r;
	pthread_mutex_unlock(&ts.mu);
	ps_session_fetch_done_report(ts.session, &r);
	return NULL;
}

static int t_restore(void *sess, struct ps_restore_result *res)
{
	static uint8_t one[PG];

	(void)sess;
	/* the loop thread itself may not fetch */
	cr_assert_eq(ps_session_fetch(ts.session, BASE, 1, one), -EDEADLK);
	if (ts.report) {
		pthread_create(&fin, NULL, lazy_target, NULL);
	} else {
		for (int i = 0; i < 2; i++)
			pthread_create(&ts.thr[i], NULL, fetcher, (void *)(intptr_t)i);
		pthread_create(&fin, NULL, finisher, NULL);
	}
	ts.started = true;
	res->pid = 4242;
	res->err = 0;
	return 0;
}

static void t_close(void *sess, bool committed)
{
	(void)sess;
	(void)committed;
	/* the session handle dies with close(): its users must be gone first */
	if (ts.started)
		pthread_join(fin, NULL);
	ts.started = false;
	ts.closed = true;
}

static const struct ps_sink_ops test_sink = {
	.open = t_open,
	.layout = th_sink_layout_ignored,
	.pages = t_pages,
	.round_end = th_sink_round_end_ignored,
	.state = th_sink_state_ignored,
	.restore = t_restore,
	.close = t_close,
};

/* Which thread of ps_client_serve answered each 64-page chunk: 1 its caller (stream 0), 2 another. */
static pthread_t serve_caller;
static uint8_t served_by[NPAGES / 64];

/* ss_kill_at: the request at which serve_pages waits until a real reset killed the streams */
static int serve_calls, ss_kill_at, ss_killed;

static int serve_pages(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	(void)arg;
	if (__atomic_add_fetch(&serve_calls, 1, __ATOMIC_SEQ_CST) == ss_kill_at && ss_kill_at)
		while (!__atomic_load_n(&ss_killed, __ATOMIC_SEQ_CST))
			usleep(1000);
	if (addr < BASE || addr + npages * PG > BASE + NPAGES * PG)
		return -ERANGE;
	if (npages == 64 && (addr - BASE) % (64 * PG) == 0)
		served_by[(addr - BASE) / (64 * PG)] =
			pthread_equal(pthread_self(), serve_caller) ? 1 : 2;
	for (uint32_t i = 0; i < npages; i++)
		gen((uint8_t *)buf + i * PG, addr + i * PG);
	return 0;
}

/* Commit the session, end the client and the server; the sink was closed. */
static void commit_and_stop(struct ps_client *c, struct ps_server *s, pthread_t st)
{
	cr_assert_eq(ps_client_commit(c), 0);
	ps_client_free(c);
	ps_server_stop(s);
	pthread_join(st, NULL);
	ps_server_free(s);
	cr_assert(ts.closed);
}

/* Both fetchers finished without an error and every page they got was right. */
static void assert_fetched_intact(void)
{
	cr_assert_eq(ts.result[0], 0, "fetcher 0: %d", ts.result[0]);
	cr_assert_eq(ts.result[1], 0, "fetcher 1: %d", ts.result[1]);
	cr_assert_eq(ts.bad, 0, "%llu pages differ", (unsigned long long)ts.bad);
}

static void *run_server(void *arg)
{
	ps_server_run(arg);
	return NULL;
}

Test(ps_postcopy, target_fetches_pages_over_the_live_streams, .timeout = 60)
{
	struct ps_server_opts so = {0};
	struct ps_client_opts co = {0};
	struct haul_vma v = {.start = BASE, .end = BASE + NPAGES * PG, .prot = 3, .flags = 2};
	struct haul_layout l = {&v, 1};
	struct ps_restore_result res;
	struct ps_lazy_report lr;
	struct ps_server *s;
	struct ps_client *c;
	pthread_t st;
	char to[64];

	log_init("test");
	memset(&ts, 0, sizeof(ts));
	pthread_mutex_init(&ts.mu, NULL);
	so.listen = "127.0.0.1:0";
	memset(so.key, 7, sizeof(so.key));
	so.sink = &test_sink;
	cr_assert_eq(ps_server_new(&so, &s), 0);
	cr_assert_eq(pthread_create(&st, NULL, run_server, s), 0);

	snprintf(to, sizeof(to), "127.0.0.1:%d", ps_server_port(s));
	co.to = to;
	memcpy(co.key, so.key, sizeof(co.key));
	co.nstreams = 2;
	co.pid = 77;
	co.comm = "postcopy";
	co.lazy = true;
	cr_assert_eq(ps_client_new(&co, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(ps_client_state(c, "S", 1), 0);
	cr_assert_eq(ps_client_restore(c, &res), 0);
	cr_assert_eq(res.err, 0);
	serve_caller = pthread_self();
	memset(served_by, 0, sizeof(served_by));
	cr_assert_eq(ps_client_serve(c, serve_pages, NULL, 20000), 0);
	assert_fetched_intact();
	/* with two streams, faults (odd chunks) own stream 0, served by the caller's thread */
	for (unsigned k = 1; k < NPAGES / 64; k++)
		cr_assert_eq(
			served_by[k], k % 2 ? 1 : 2, "chunk %u (%s) was served by the %s thread", k,
			k % 2 ? "urgent" : "background", served_by[k] == 1 ? "caller's" : "other");
	/* a target that says "done" without statistics (an older haul): none to read */
	cr_assert_eq(ps_client_lazy_report(c, &lr), -ENODATA);
	commit_and_stop(c, s, st);
}

static int send_range(struct ps_client *c, uint64_t first, uint32_t n)
{
	static uint8_t buf[256 * PG];

	for (uint32_t i = 0; i < n; i++)
		gen(buf + i * PG, BASE + (first + i) * PG);
	return ps_client_pages(c, BASE + first * PG, buf, n, NULL);
}

Test(ps_postcopy, source_gets_the_targets_fault_statistics, .timeout = 60)
{
	struct ps_server_opts so = {0};
	struct ps_client_opts co = {0};
	struct haul_vma v = {.start = BASE, .end = BASE + NPAGES * PG, .prot = 3, .flags = 2};
	struct haul_layout l = {&v, 1};
	struct ps_client_stats st0, st1;
	struct ps_restore_result res;
	struct ps_lazy_report lr, want;
	struct ps_server *s;
	struct ps_client *c;
	uint64_t zero_fetched = 0;
	pthread_t st;
	char to[64];

	log_init("test");
	memset(&ts, 0, sizeof(ts));
	pthread_mutex_init(&ts.mu, NULL);
	ts.report = true;
	so.listen = "127.0.0.1:0";
	memset(so.key, 7, sizeof(so.key));
	so.sink = &test_sink;
	cr_assert_eq(ps_server_new(&so, &s), 0);
	cr_assert_eq(pthread_create(&st, NULL, run_server, s), 0);
	snprintf(to, sizeof(to), "127.0.0.1:%d", ps_server_port(s));
	co.to = to;
	memcpy(co.key, so.key, sizeof(co.key));
	co.nstreams = 2;
	co.pid = 79;
	co.lazy = true;
	co.compress = PS_COMPRESS_NONE; /* served bytes are then at least the pages' bytes */
	cr_assert_eq(ps_client_new(&co, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	/* some pages before the resume, as the eager part would be: present on the target */
	cr_assert_eq(ps_client_round_begin(c, 1), 0);
	cr_assert_eq(send_range(c, 0, 256), 0);
	cr_assert_eq(send_range(c, 2048, 100), 0);
	cr_assert_eq(ps_client_round_end(c, 1), 0);
	cr_assert_eq(ps_client_state(c, "S", 1), 0);
	cr_assert_eq(ps_client_restore(c, &res), 0);
	cr_assert_eq(res.err, 0);
	ps_client_stats(c, &st0);
	cr_assert_eq(ps_client_serve(c, serve_pages, NULL, 20000), 0);
	ps_client_stats(c, &st1);
	cr_assert_eq(ts.result[0], 0, "target: %d", ts.result[0]);
	cr_assert_eq(ts.bad, 0, "%llu pages differ", (unsigned long long)ts.bad);

	/* the source holds exactly what the target measured */
	cr_assert_eq(ps_client_lazy_report(c, &lr), 0);
	pthread_mutex_lock(&ts.mu);
	want = ts.rep;
	pthread_mutex_unlock(&ts.mu);
	cr_assert_arr_eq(&lr, &want, sizeof(lr));
	cr_assert_eq(lr.total_pages, NPAGES);
	cr_assert_eq(lr.present_pages, 356);
	cr_assert_eq(lr.faults, 8);
	cr_assert_gt(lr.fault_pages, 0);
	cr_assert_leq(lr.fault_pages, 8 * 16);
	cr_assert_eq(lr.fault_pages + lr.pushed_pages + lr.present_pages, lr.total_pages,
		     "%llu by fault + %llu pushed + %llu present != %llu",
		     (unsigned long long)lr.fault_pages, (unsigned long long)lr.pushed_pages,
		     (unsigned long long)lr.present_pages, (unsigned long long)lr.total_pages);
	cr_assert_eq(lr.fetched_bytes, (lr.fault_pages + lr.pushed_pages) * PG);
	cr_assert_leq(lr.fault_p50_ns, lr.fault_p99_ns);
	cr_assert_leq(lr.fault_p99_ns, lr.fault_max_ns);
	cr_assert_gt(lr.fault_max_ns, 0);
	cr_assert_geq(lr.complete_ns, lr.fault_max_ns);
	/* gen(): every fifth page is zero; those not sent before the resume were fetched */
	for (uint64_t pg = 0; pg < NPAGES; pg++)
		zero_fetched += pg % 5 == 2 && !(pg < 256 || (pg >= 2048 && pg < 2148));
	cr_assert_eq(lr.zero_filled, zero_fetched);

	/* what the source sent while serving: one reply per request, every non-zero page raw */
	cr_assert_eq(st1.serve_replies - st0.serve_replies, ts.requests);
	cr_assert_geq(st1.serve_bytes - st0.serve_bytes,
		      (lr.fault_pages + lr.pushed_pages - lr.zero_filled) * PG);
	cr_assert_eq(st1.bytes_sent - st0.bytes_sent, st1.serve_bytes - st0.serve_bytes);
	commit_and_stop(c, s, st);
}

Test(ps_postcopy, fetch_fails_fast_when_the_source_goes_away, .timeout = 60)
{
	struct ps_server_opts so = {0};
	struct ps_client_opts co = {0};
	struct ps_restore_result res;
	struct ps_server *s;
	struct ps_client *c;
	pthread_t st;
	char to[64];

	log_init("test");
	memset(&ts, 0, sizeof(ts));
	pthread_mutex_init(&ts.mu, NULL);
	so.listen = "127.0.0.1:0";
	memset(so.key, 7, sizeof(so.key));
	so.sink = &test_sink;
	cr_assert_eq(ps_server_new(&so, &s), 0);
	cr_assert_eq(pthread_create(&st, NULL, run_server, s), 0);
	snprintf(to, sizeof(to), "127.0.0.1:%d", ps_server_port(s));
	co.to = to;
	memcpy(co.key, so.key, sizeof(co.key));
	co.nstreams = 1;
	co.pid = 78;
	cr_assert_eq(ps_client_new(&co, &c), 0);
	cr_assert_eq(ps_client_restore(c, &res), 0);
	/* the source never serves and vanishes: the fetchers get an error, not a hang */
	ps_client_free(c);
	while (!__atomic_load_n(&ts.closed, __ATOMIC_SEQ_CST))
		usleep(1000);
	cr_assert(ts.result[0] == -ECONNRESET || ts.result[0] == -ETIMEDOUT, "got %d",
		  ts.result[0]);
	ps_server_stop(s);
	pthread_join(st, NULL);
	ps_server_free(s);
}

/* Start a page server with the test sink and a lazy client of @nstreams; restore. */
static void start_lazy(int stall_ms, unsigned nstreams, int32_t pid, struct ps_server **s,
		       pthread_t *thr, struct ps_client **c, char *to, size_t tolen)
{
	struct ps_server_opts so = {0};
	struct ps_client_opts co = {0};
	struct haul_vma v = {.start = BASE, .end = BASE + NPAGES * PG, .prot = 3, .flags = 2};
	struct haul_layout l = {&v, 1};
	struct ps_restore_result res;

	log_init("test");
	memset(&ts, 0, sizeof(ts));
	pthread_mutex_init(&ts.mu, NULL);
	so.listen = "127.0.0.1:0";
	memset(so.key, 7, sizeof(so.key));
	so.sink = &test_sink;
	so.stall_timeout_ms = stall_ms;
	cr_assert_eq(ps_server_new(&so, s), 0);
	cr_assert_eq(pthread_create(thr, NULL, run_server, *s), 0);
	snprintf(to, tolen, "127.0.0.1:%d", ps_server_port(*s));
	co.to = to;
	memcpy(co.key, so.key, sizeof(co.key));
	co.nstreams = nstreams;
	co.pid = pid;
	co.lazy = true;
	co.timeout_ms = 5000;
	cr_assert_eq(ps_client_new(&co, c), 0);
	cr_assert_eq(ps_client_layout(*c, &l), 0);
	cr_assert_eq(ps_client_state(*c, "S", 1), 0);
	cr_assert_eq(ps_client_restore(*c, &res), 0);
	cr_assert_eq(res.err, 0);
}

/*
 * Post-copy recovery: the source's sockets are shut down mid-serve (as a
 * reset would), twice; each time the target detaches the session, the
 * source reconnects and rejoins every stream, the requests in flight are
 * sent again, and in the end every page arrives intact and the session
 * commits.
 */
Test(ps_postcopy, source_reconnects_after_its_connections_break, .timeout = 60)
{
	struct ps_client_stats cs;
	struct ps_server *s;
	struct ps_client *c;
	unsigned breaks = 0;
	pthread_t st;
	char to[64];
	int ret;

	start_lazy(5000, 2, 80, &s, &st, &c, to, sizeof(to));
	serve_caller = pthread_self();
	ps_client_fault_break(c, 10);
	for (;;) {
		ret = ps_client_serve(c, serve_pages, NULL, 20000);
		if (!ret)
			break;
		cr_assert(ps_client_broken(c), "serving failed with %d, not on the transport", ret);
		cr_assert_lt(++breaks, 3, "more breaks than injected");
		cr_assert_eq(ps_client_reconnect(c, 5000), 0, "cannot rejoin the session");
		if (breaks == 1)
			ps_client_fault_break(c, 15); /* and once more after the rejoin */
	}
	cr_assert_eq(breaks, 2);
	assert_fetched_intact();
	ps_client_stats(c, &cs);
	cr_assert_eq(cs.reconnects, 2);
	commit_and_stop(c, s, st);
}

/* Serve the lazy session of start_lazy() with fault lanes; @brk: the lane breaks after that many. */
static void lane_case(uint64_t brk, unsigned want_lane, int32_t pid)
{
	struct ps_client_stats cs;
	struct ps_server *s;
	struct ps_client *c;
	pthread_t st;
	char to[64];

	lane_faults = true;
	lane_ok = lane_fallbacks = 0;
	start_lazy(5000, 2, pid, &s, &st, &c, to, sizeof(to));
	if (brk)
		ps_client_fault_break_lane(c, brk);
	cr_assert_eq(ps_client_serve(c, serve_pages, NULL, 20000), 0,
		     "the lane's end must not end the serving");
	assert_fetched_intact();
	ps_client_stats(c, &cs);
	/* lane_wait's one-page fetch came through the lane too */
	cr_assert_eq(cs.serve_lane_replies, want_lane + 1, "%llu replies on the lane",
		     (unsigned long long)cs.serve_lane_replies);
	cr_assert_eq(lane_ok, want_lane);
	cr_assert_eq(lane_fallbacks, NPAGES / 64 / 2 - want_lane);
	commit_and_stop(c, s, st);
}

/*
 * The fault lane: once the source opened it, every fault's request and
 * reply go over it from the requester's thread; the pages are the same.
 */
Test(ps_postcopy, faults_take_the_fault_lane, .timeout = 60)
{
	lane_case(0, NPAGES / 64 / 2, 84);
}

/*
 * The lane breaks (the source shuts it down after 6 replies, the 5th
 * fault's included): the next fault's request fails on it and goes
 * through stream 0, and so do the rest (a broken lane is not used again);
 * the serving goes on and every page arrives.
 */
Test(ps_postcopy, a_broken_fault_lane_falls_back_to_stream_0, .timeout = 60)
{
	lane_case(6, 5, 85);
}

/*
 * A retired lane's socket stays open until its session ends, so a peer may
 * not pile them up: the 17th lane of a session is refused (EBUSY), which
 * costs the session nothing: its faults go through stream 0.
 */
Test(ps_postcopy, a_session_takes_at_most_16_fault_lanes, .timeout = 60)
{
	struct ps_client_stats cs;
	struct ps_stream *lane;
	struct ps_server *s;
	struct ps_client *c;
	pthread_t st;
	char to[64];

	start_lazy(5000, 2, 86, &s, &st, &c, to, sizeof(to));
	for (int i = 0; i < 16; i++) {
		cr_assert_eq(ps_lane_open(c, &lane), 0, "lane %d", i + 1);
		ps_lane_close(lane);
	}
	cr_assert_eq(ps_lane_open(c, &lane), -EBUSY);
	/* serving opens one more, refused too; the pages come over the streams */
	cr_assert_eq(ps_client_serve(c, serve_pages, NULL, 20000), 0);
	assert_fetched_intact();
	ps_client_stats(c, &cs);
	cr_assert_eq(cs.serve_lane_replies, 0);
	commit_and_stop(c, s, st);
}

/*
 * A source that comes back after the target's stall timeout finds the
 * session gone (-ENOENT, not retried), and the target's pending fetches
 * have failed rather than hung: the process would be killed.  They failed
 * only once the detach gave up, not before (their deadline follows it).
 */
Test(ps_postcopy, rejoin_after_the_stall_timeout_is_refused, .timeout = 60)
{
	struct ps_server *s;
	struct ps_client *c;
	uint64_t t0, waited;
	pthread_t st;
	char to[64];
	int ret;

	start_lazy(700, 1, 81, &s, &st, &c, to, sizeof(to));
	ps_client_fault_break(c, 3);
	ret = ps_client_serve(c, serve_pages, NULL, 20000);
	t0 = now_ns();
	cr_assert_neq(ret, 0);
	cr_assert(ps_client_broken(c));
	/* the fetchers fail once the detach gives up, not before */
	while (!__atomic_load_n(&ts.closed, __ATOMIC_SEQ_CST))
		usleep(1000);
	waited = (now_ns() - t0) / 1000000;
	cr_assert_geq(waited, 500, "the session failed %llu ms after the break",
		      (unsigned long long)waited);
	cr_assert(ts.result[0] == -ECONNRESET || ts.result[1] == -ECONNRESET, "got %d, %d",
		  ts.result[0], ts.result[1]);
	/* the session is gone: the rejoin is refused at once, not retried until the deadline */
	t0 = now_ns();
	cr_assert_eq(ps_client_reconnect(c, 5000), -ENOENT);
	cr_assert_lt((now_ns() - t0) / 1000000, 2000);
	ps_client_free(c);
	ps_server_stop(s);
	pthread_join(st, NULL);
	ps_server_free(s);
}

/* Kills the server's side of every connection with ss -K once serving reached ss_kill_at. */
static void *ss_killer(void *arg)
{
	char cmd[128];
	int port = (int)(intptr_t)arg, ret;

	while (__atomic_load_n(&serve_calls, __ATOMIC_SEQ_CST) < ss_kill_at)
		usleep(1000);
	snprintf(cmd, sizeof(cmd), "ss -K -t state established 'sport = :%d' >/dev/null 2>&1",
		 port);
	ret = system(cmd);
	__atomic_store_n(&ss_killed, ret == 0 ? 1 : -1, __ATOMIC_SEQ_CST);
	return NULL;
}

/*
 * A real reset, not a test hook: the target's sockets are destroyed from
 * outside (ss -K, SOCK_DESTROY) mid-serve; the server reads ECONNABORTED,
 * the source ECONNRESET or EPIPE.  The session detaches, the source rejoins,
 * and every page arrives.
 */
Test(ps_postcopy, target_side_reset_is_recovered, .timeout = 60)
{
	struct ps_server *s;
	struct ps_client *c;
	unsigned breaks = 0;
	pthread_t st, killer;
	char to[64];
	int ret;

	if (geteuid() != 0)
		cr_skip_test("ss -K needs CAP_NET_ADMIN");
	start_lazy(5000, 2, 82, &s, &st, &c, to, sizeof(to));
	serve_calls = 0;
	ss_killed = 0;
	ss_kill_at = 12;
	cr_assert_eq(pthread_create(&killer, NULL, ss_killer, (void *)(intptr_t)ps_server_port(s)),
		     0);
	for (;;) {
		ret = ps_client_serve(c, serve_pages, NULL, 20000);
		if (!ret)
			break;
		cr_assert(ps_client_broken(c), "serving failed with %d, not on the transport", ret);
		cr_assert_lt(++breaks, 3);
		cr_assert_eq(ps_client_reconnect(c, 5000), 0, "cannot rejoin the session");
	}
	pthread_join(killer, NULL);
	ss_kill_at = 0;
	if (ss_killed < 0)
		cr_skip_test("ss -K does not work here (no SOCK_DESTROY?)");
	cr_assert_eq(breaks, 1);
	assert_fetched_intact();
	commit_and_stop(c, s, st);
}
