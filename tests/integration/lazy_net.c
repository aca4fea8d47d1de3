/*
 * lazy_net.c - post-copy over the wire: a real page server on 127.0.0.1
 * holds a committed image (sent by a STORE session, as `haul checkpoint
 * --page-server` does), and an empty process gets its memory through the
 * fault server, which fetches it with PAGE_REQs over FETCH sessions.  Then
 * the page server dies mid-post-copy: the process is killed, the report is
 * clear, nothing hangs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
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

#define PGSZ 4096UL

static uint64_t pattern(uint64_t addr)
{
	return (addr + 0x1234567) * 0xc2b2ae3d27d4eb4full;
}

struct server {
	struct ps_server *s;
	pthread_t t;
	bool running;
	char to[64];
	uint8_t key[PS_KEY_LEN];
};

static void *server_main(void *arg)
{
	ps_server_run(arg);
	return NULL;
}

static void server_start(struct server *sv)
{
	struct ps_server_opts o = {.listen = "127.0.0.1:0", .stall_timeout_ms = 10000};

	for (unsigned i = 0; i < PS_KEY_LEN; i++)
		sv->key[i] = (uint8_t)(0x40 + i);
	memcpy(o.key, sv->key, PS_KEY_LEN);
	cr_assert_eq(ps_server_new(&o, &sv->s), 0);
	snprintf(sv->to, sizeof(sv->to), "127.0.0.1:%d", ps_server_port(sv->s));
	cr_assert_eq(pthread_create(&sv->t, NULL, server_main, sv->s), 0);
	sv->running = true;
}

static void server_stop(struct server *sv)
{
	if (!sv->running)
		return;
	ps_server_stop(sv->s);
	pthread_join(sv->t, NULL);
	ps_server_free(sv->s);
	sv->running = false;
}

static struct ps_client_opts client_opts(const struct server *sv, int32_t pid)
{
	struct ps_client_opts o = {0};

	o.to = sv->to;
	memcpy(o.key, sv->key, PS_KEY_LEN);
	o.nstreams = 1;
	o.pid = pid;
	o.comm = "lazy-itest";
	o.timeout_ms = 10000;
	o.compress = PS_COMPRESS_NONE;
	return o;
}

/* Store @base..+@len (filled with the pattern here) as the committed image of @pid. */
static void store_image(const struct server *sv, int32_t pid, char *base, size_t len)
{
	struct haul_vma v = {.start = (uint64_t)(uintptr_t)base,
			     .end = (uint64_t)(uintptr_t)base + len,
			     .prot = PROT_READ | PROT_WRITE,
			     .flags = HAUL_VMA_ANON};
	struct haul_layout l = {&v, 1};
	struct ps_client_opts o = client_opts(sv, pid);
	struct ps_client *c;
	const size_t chunk = 16 << 20;

	o.kind = PS_SESSION_STORE;
	o.nstreams = 2;
	for (size_t off = 0; off < len; off += 8)
		*(uint64_t *)(base + off) = pattern((uint64_t)(uintptr_t)(base + off));
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(ps_client_round_begin(c, 1), 0);
	for (size_t off = 0; off < len; off += chunk)
		cr_assert_eq(
			ps_client_pages(c, (uint64_t)(uintptr_t)(base + off), base + off,
					(uint32_t)((len - off < chunk ? len - off : chunk) / PGSZ),
					NULL),
			0);
	cr_assert_eq(ps_client_round_end(c, 1), 0);
	ps_client_free(c);
}

struct target {
	pid_t pid;
	int go, res;
};

/* A process with an empty copy of the region: reads every page at random, checks each word. */
static void spawn_target(struct target *t, char *base, size_t len)
{
	int go[2], res[2];

	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(res), 0);
	t->pid = fork();
	cr_assert_geq(t->pid, 0);
	if (t->pid == 0) {
		size_t npages = len / PGSZ;
		uint64_t bad = 0, x = 0x9E3779B97F4A7C15ull;
		char c;

		close(go[1]);
		close(res[0]);
		/* Inherited the filled pages: drop them, they must come over the wire. */
		if (madvise(base, len, MADV_DONTNEED) || read(go[0], &c, 1) != 1)
			_exit(2);
		for (size_t k = 0; k < npages; k++) {
			const uint64_t *w;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w = (const uint64_t *)(base + (x % npages) * PGSZ);
			for (unsigned i = 0; i < PGSZ / 8; i++)
				bad += w[i] != pattern((uint64_t)(uintptr_t)(w + i));
		}
		for (size_t off = 0; off < len; off += 8)
			bad += *(uint64_t *)(base + off) !=
			       pattern((uint64_t)(uintptr_t)(base + off));
		if (write(res[1], &bad, sizeof(bad)) != sizeof(bad))
			_exit(3);
		_exit(0);
	}
	close(go[0]);
	close(res[1]);
	t->go = go[1];
	t->res = res[0];
}

static struct rst_lazy *make_lazy(struct target *t, char *base, size_t len, struct rst_lazy_ps *ps)
{
	struct haul_vma v = {.start = (uint64_t)(uintptr_t)base,
			     .end = (uint64_t)(uintptr_t)base + len,
			     .prot = PROT_READ | PROT_WRITE,
			     .flags = HAUL_VMA_ANON};
	struct haul_layout l = {&v, 1};
	struct rst_lazy_opts o = {
		.pid = t->pid, .vmas = &l, .src = {rst_lazy_ps_fetch, ps, rst_lazy_ps_fetch_fault}};
	struct rst_lazy *lz;
	struct rsys r;
	int ret;

	usleep(20000);
	cr_assert_eq(rsys_seize(&r, t->pid), 0);
	ret = rst_lazy_uffd_create(&r, &l, &o.uffd);
	cr_assert_eq(rsys_release(&r), 0);
	if (ret == -EOPNOTSUPP || ret == -EPERM) {
		kill(t->pid, SIGKILL);
		waitpid(t->pid, NULL, 0);
		cr_skip_test("userfaultfd with missing faults and events is not available here");
	}
	cr_assert_eq(ret, 0, "rst_lazy_uffd_create: %s", strerror(-ret));
	cr_assert_eq(rst_lazy_new(&o, &lz), 0);
	cr_assert_eq(rst_lazy_start(lz), 0);
	return lz;
}

Test(lazy, pages_arrive_over_page_server_fetch_sessions, .timeout = 90)
{
	const size_t len = 128 << 20;
	int32_t img_pid = 7000 + getpid() % 1000;
	struct server sv;
	struct target t;
	struct rst_lazy_ps *ps;
	struct ps_client_opts o;
	struct rst_lazy_stats st;
	struct rst_lazy *lz;
	uint64_t bad = ~0ull;
	char *base;
	int status, ret;

	log_init("test");
	server_start(&sv);
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(base, MAP_FAILED);
	store_image(&sv, img_pid, base, len);
	spawn_target(&t, base, len);
	o = client_opts(&sv, img_pid);
	cr_assert_eq(rst_lazy_ps_open(&o, LAZY_DEFAULT_FETCHERS + 1, &ps), 0);
	lz = make_lazy(&t, base, len, ps);
	cr_assert_eq(write(t.go, "g", 1), 1);
	ret = rst_lazy_wait_complete(lz, 60000);
	cr_assert_eq(read(t.res, &bad, sizeof(bad)), (ssize_t)sizeof(bad));
	cr_assert_eq(waitpid(t.pid, &status, 0), t.pid);
	rst_lazy_stats(lz, &st);
	rst_lazy_free(lz);
	rst_lazy_ps_free(ps);
	server_stop(&sv);
	munmap(base, len);
	cr_expect_eq(ret, 0, "wait_complete: %s", strerror(-ret));
	cr_expect_eq(bad, 0, "%lu words differ from the image", (unsigned long)bad);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "target status %#x", status);
	cr_expect_eq(st.missing_pages, 0);
	cr_log_info(
		"over loopback: %lu faults (p50 %lu ns, p99 %lu ns), %lu pushed, all in %.1f ms",
		(unsigned long)st.faults, (unsigned long)st.fault_p50_ns,
		(unsigned long)st.fault_p99_ns, (unsigned long)st.pushed_pages,
		st.complete_ns / 1e6);
}

Test(lazy, page_server_dying_mid_postcopy_kills_process_no_hang, .timeout = 60)
{
	const size_t len = 512 << 20;
	int32_t img_pid = 8000 + getpid() % 1000;
	struct server sv;
	struct target t;
	struct rst_lazy_ps *ps;
	struct ps_client_opts o;
	struct rst_lazy *lz;
	uint64_t bad;
	char *base;
	int status, ret;

	log_init("test");
	server_start(&sv);
	base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(base, MAP_FAILED);
	store_image(&sv, img_pid, base, len);
	spawn_target(&t, base, len);
	o = client_opts(&sv, img_pid);
	cr_assert_eq(rst_lazy_ps_open(&o, LAZY_DEFAULT_FETCHERS + 1, &ps), 0);
	lz = make_lazy(&t, base, len, ps);
	cr_assert_eq(write(t.go, "g", 1), 1);
	usleep(30000); /* part of the memory has arrived */
	server_stop(&sv);
	cr_assert_eq(waitpid(t.pid, &status, 0), t.pid);
	cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "target status %#x", status);
	cr_expect_eq(read(t.res, &bad, sizeof(bad)), 0, "the target finished without its memory");
	ret = rst_lazy_wait_complete(lz, 15000);
	cr_expect(ret < 0 && ret != -ETIMEDOUT && ret != -ESRCH, "wait_complete: %s",
		  strerror(-ret));
	rst_lazy_free(lz);
	rst_lazy_ps_free(ps);
	munmap(base, len);
}
