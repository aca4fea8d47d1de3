/*
 * ps_postcopy.c - post-copy over a live session's own streams: the target's
 * sink asks for pages with ps_session_fetch() from its own threads while the
 * source answers in ps_client_serve().  A page server runs in this process
 * with a test sink; no root needed.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "pageserver/pageserver.h"

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
};

static struct tsink ts;

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
	/* thread 0 takes even 64-page chunks, thread 1 odd ones */
	for (uint64_t chunk = (uint64_t)idx; chunk < NPAGES / 64; chunk += 2) {
		uint64_t addr = BASE + chunk * 64 * PG;
		int ret = ps_session_fetch(ts.session, addr, 64, buf);

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

static int t_layout(void *sess, const struct haul_layout *l)
{
	(void)sess;
	(void)l;
	return 0;
}

static int t_pages(void *sess, uint64_t addr, const void *data, uint32_t npages)
{
	(void)sess;
	(void)addr;
	(void)data;
	(void)npages;
	return 0;
}

static int t_round_end(void *sess, uint64_t round)
{
	(void)sess;
	(void)round;
	return 0;
}

static int t_state(void *sess, const void *blob, size_t len)
{
	(void)sess;
	(void)blob;
	(void)len;
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

static int t_restore(void *sess, struct ps_restore_result *res)
{
	static uint8_t one[PG];

	(void)sess;
	/* the loop thread itself may not fetch */
	cr_assert_eq(ps_session_fetch(ts.session, BASE, 1, one), -EDEADLK);
	for (int i = 0; i < 2; i++)
		pthread_create(&ts.thr[i], NULL, fetcher, (void *)(intptr_t)i);
	pthread_create(&fin, NULL, finisher, NULL);
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
	.layout = t_layout,
	.pages = t_pages,
	.round_end = t_round_end,
	.state = t_state,
	.restore = t_restore,
	.close = t_close,
};

static int serve_pages(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	(void)arg;
	if (addr < BASE || addr + npages * PG > BASE + NPAGES * PG)
		return -ERANGE;
	for (uint32_t i = 0; i < npages; i++)
		gen((uint8_t *)buf + i * PG, addr + i * PG);
	return 0;
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
	cr_assert_eq(ps_client_serve(c, serve_pages, NULL, 20000), 0);
	cr_assert_eq(ts.result[0], 0, "fetcher 0: %d", ts.result[0]);
	cr_assert_eq(ts.result[1], 0, "fetcher 1: %d", ts.result[1]);
	cr_assert_eq(ts.bad, 0, "%llu pages differ", (unsigned long long)ts.bad);
	cr_assert_eq(ps_client_commit(c), 0);
	ps_client_free(c);

	ps_server_stop(s);
	pthread_join(st, NULL);
	ps_server_free(s);
	cr_assert(ts.closed);
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
