/*
 * lazy_live.c - post-copy over a live migration session: the page server's
 * sink makes the target lazy on its loop thread (the tracer, as the
 * restorer does), the fault server fetches with ps_session_fetch() from its
 * own threads, and the source answers in ps_client_serve() by reading the
 * frozen process (rst_lazy_src).  Here the source process is this test
 * process itself and the target a forked child with an empty copy of the
 * region.  Then the source's reads fail mid-post-copy: the target is killed
 * with a clear report and nothing hangs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rsys.h"
#include "common/vma.h"
#include "pageserver/pageserver.h"
#include "restore/lazy.h"
#include "th_lazy.h"

#define PGSZ 4096UL

static uint64_t pattern(uint64_t addr)
{
	if ((addr / PGSZ) % 7 == 4)
		return 0;
	return (addr ^ 0x3c3c3c3c3c3c3c3cull) * 0x94d049bb133111ebull;
}

/* ---- the target side: a sink that restores "lazily" into the child ---- */

struct tsink {
	struct ps_session *session;
	struct th_reader *t;
	struct haul_layout *l;
	struct rst_lazy *lz;
	pthread_t waiter;
	bool waiting, closed;
	int attach_err;
	int result; /* rst_lazy_wait_complete() */
};

static struct tsink ts;

/* Waits for every page, then tells the source it may stop serving (and die). */
static void *waiter(void *arg)
{
	(void)arg;
	ts.result = rst_lazy_wait_complete(ts.lz, 60000);
	if (!ts.result)
		ps_session_fetch_done(ts.session);
	return NULL;
}

static int t_open(void *arg, const struct ps_session_info *info, void **sess)
{
	(void)arg;
	cr_assert(info->lazy, "the session is not a post-copy one");
	ts.session = info->session;
	*sess = &ts;
	return 0;
}

/* On the loop thread, like rst_target_resume: seize, attach, let it run. */
static int t_restore(void *sess, struct ps_restore_result *res)
{
	struct rst_lazy_source src = {.fetch = rst_lazy_session_fetch, .arg = ts.session};
	struct haul_layout lazy;
	struct rsys r;
	int ret;

	(void)sess;
	ret = rsys_seize(&r, ts.t->pid);
	if (!ret) {
		ret = rst_lazy_attach(&r, ts.t->pid, ts.l, &src, &lazy, &ts.lz);
		rsys_release(&r);
	}
	if (!ret) {
		haul_layout_release(&lazy);
		ts.waiting = !pthread_create(&ts.waiter, NULL, waiter, NULL);
	}
	ts.attach_err = ret;
	res->pid = ts.t->pid;
	res->err = ret;
	if (ret)
		snprintf(res->msg, sizeof(res->msg), "cannot make pid %d lazy: %s", ts.t->pid,
			 strerror(-ret));
	return 0;
}

static void t_close(void *sess, bool committed)
{
	(void)sess;
	(void)committed;
	/* The session handle dies with close(): the fault server must be done with it. */
	if (ts.waiting)
		pthread_join(ts.waiter, NULL);
	ts.waiting = false;
	rst_lazy_free(ts.lz);
	ts.lz = NULL;
	__atomic_store_n(&ts.closed, true, __ATOMIC_SEQ_CST);
}

static const struct ps_sink_ops test_sink = {
	.open = t_open,
	.layout = th_sink_layout_ignored,
	.pages = th_sink_pages_ignored,
	.round_end = th_sink_round_end_ignored,
	.state = th_sink_state_ignored,
	.restore = t_restore,
	.close = t_close,
};

static void *run_server(void *arg)
{
	ps_server_run(arg);
	return NULL;
}

/* ---- the source side ---- */

struct failing_src {
	struct rst_lazy_src *src;
	atomic_int left; /* requests answered before the source "dies" */
};

static int failing_read(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	struct failing_src *f = arg;

	if (atomic_fetch_sub(&f->left, 1) <= 0)
		return -EHOSTDOWN;
	return rst_lazy_src_fetch(f->src, addr, npages, buf);
}

static void live(size_t len, int fail_after)
{
	struct ps_server_opts so = {0};
	struct ps_client_opts co = {0};
	struct ps_restore_result res;
	struct ps_server *s;
	struct ps_client *c;
	struct failing_src fs;
	struct th_reader t;
	struct haul_vma v;
	struct haul_layout l = {&v, 1};
	uint64_t bad = ~0ull;
	pthread_t st;
	char to[64];
	char *base;
	int status, ret;

	log_init("test");
	memset(&ts, 0, sizeof(ts));
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(base, MAP_FAILED);
	v = (struct haul_vma){.start = (uint64_t)(uintptr_t)base,
			      .end = (uint64_t)(uintptr_t)base + len,
			      .prot = PROT_READ | PROT_WRITE,
			      .flags = HAUL_VMA_ANON};
	/*
	 * Its random pass may leave pages unread, and it could end before the
	 * push brought them (then post-copy ends with -ESRCH, not 0): the sweep
	 * reads every page, so every page arrives before it exits.
	 */
	th_reader_spawn(&t, base, len, pattern, 0x9E3779B97F4A7C15ull,
			fail_after ? 0 : TH_READER_SWEEP);
	/* The child's copy stays empty; ours, filled now, is the frozen source. */
	for (size_t off = 0; off < len; off += 8)
		*(uint64_t *)(base + off) = pattern((uint64_t)(uintptr_t)(base + off));
	ts.t = &t;
	ts.l = &l;

	so.listen = "127.0.0.1:0";
	memset(so.key, 9, sizeof(so.key));
	so.sink = &test_sink;
	cr_assert_eq(ps_server_new(&so, &s), 0);
	cr_assert_eq(pthread_create(&st, NULL, run_server, s), 0);
	snprintf(to, sizeof(to), "127.0.0.1:%d", ps_server_port(s));
	co.to = to;
	memcpy(co.key, so.key, sizeof(co.key));
	co.nstreams = 2;
	co.pid = 9100 + getpid() % 100;
	co.comm = "lazy-live";
	co.lazy = true;
	co.timeout_ms = 10000;
	cr_assert_eq(ps_client_new(&co, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(ps_client_state(c, "S", 1), 0);
	th_reader_wait_blocked(&t, 5000); /* a quiet place to seize it */
	cr_assert_eq(ps_client_restore(c, &res), 0);
	cr_assert_eq(res.err, 0, "restore: %s", res.msg);

	cr_assert_eq(rst_lazy_src_open(getpid(), &l, &fs.src), 0);
	atomic_store(&fs.left, fail_after ? fail_after : 1 << 30);
	th_reader_go(&t);
	/* The source's whole post-copy part is rst_lazy_serve(); failing_read stands in for a dying source. */
	if (fail_after)
		ret = ps_client_serve(c, failing_read, &fs, 3000);
	else
		ret = rst_lazy_serve(c, getpid(), &l, 20000);

	if (!fail_after) {
		cr_expect_eq(ret, 0, "serve: %s", strerror(-ret));
		cr_assert_eq(read(t.res, &bad, sizeof(bad)), (ssize_t)sizeof(bad));
		cr_assert_eq(waitpid(t.pid, &status, 0), t.pid);
		cr_expect_eq(bad, 0, "%lu words differ from the source", (unsigned long)bad);
		cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "target status %#x",
			  status);
		cr_expect_eq(ps_client_commit(c), 0);
	} else {
		/* The target was killed: it never reports, and serving ends without a hang. */
		cr_assert_eq(waitpid(t.pid, &status, 0), t.pid);
		cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "target status %#x",
			  status);
		cr_expect_eq(read(t.res, &bad, sizeof(bad)), 0, "the target finished anyway");
		cr_expect_neq(ret, 0, "serving did not notice");
	}
	ps_client_free(c);
	while (!__atomic_load_n(&ts.closed, __ATOMIC_SEQ_CST))
		usleep(1000);
	if (!fail_after)
		cr_expect_eq(ts.result, 0, "post-copy: %s", strerror(-ts.result));
	else
		cr_expect(ts.result < 0 && ts.result != -ETIMEDOUT, "post-copy: %s",
			  strerror(-ts.result));
	ps_server_stop(s);
	pthread_join(st, NULL);
	ps_server_free(s);
	rst_lazy_src_free(fs.src);
	close(t.go);
	close(t.res);
	munmap(base, len);
}

Test(lazy, live_session_pages_come_from_the_source_over_its_streams, .timeout = 90)
{
	live(64 << 20, 0);
}

Test(lazy, live_source_failing_mid_postcopy_kills_target_no_hang, .timeout = 90)
{
	live(256 << 20, 40);
}
