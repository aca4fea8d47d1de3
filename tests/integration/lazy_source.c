/*
 * lazy_source.c - post-copy between two real processes: a frozen source and
 * an empty target, as after a switchover.
 *
 * The test maps a region without touching it and forks twice: the source
 * fills its copy with a pattern that depends on each word's address and
 * stops itself (frozen); the target keeps an empty copy, is made lazy
 * (uffd injected by ptrace, as the restorer does) and is served from the
 * source with process_vm_readv (rst_lazy_src).  Then it reads every page at
 * random and checks every word.  And the source killed mid-post-copy: the
 * target is killed with a clear report, nothing hangs.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/rsys.h"
#include "common/vma.h"
#include "restore/lazy.h"

#define PGSZ 4096UL

static uint64_t pattern(uint64_t addr)
{
	return (addr ^ 0xa5a5a5a5a5a5a5a5ull) * 0xff51afd7ed558ccdull;
}

struct pair {
	char *base;
	size_t len;
	pid_t src, dst;
	int go, res;
};

static pid_t spawn_source(struct pair *p)
{
	int ready[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(ready[0]);
		for (size_t off = 0; off < p->len; off += 8)
			*(uint64_t *)(p->base + off) =
				pattern((uint64_t)(uintptr_t)(p->base + off));
		if (write(ready[1], "r", 1) != 1)
			_exit(2);
		for (;;)
			raise(SIGSTOP); /* frozen: it never runs again */
	}
	close(ready[1]);
	cr_assert_eq(read(ready[0], &c, 1), 1);
	close(ready[0]);
	return pid;
}

/* The target: waits for "g", reads every page in random order, reports bad words. */
static pid_t spawn_target(struct pair *p)
{
	int go[2], res[2];
	pid_t pid;

	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(res), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		size_t npages = p->len / PGSZ;
		uint64_t bad = 0, x = 0x2545F4914F6CDD1Dull;
		char c;

		close(go[1]);
		close(res[0]);
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		for (size_t k = 0; k < npages; k++) {
			const uint64_t *w;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			w = (const uint64_t *)(p->base + (x % npages) * PGSZ);
			for (unsigned i = 0; i < PGSZ / 8; i++)
				bad += w[i] != pattern((uint64_t)(uintptr_t)(w + i));
		}
		for (size_t off = 0; off < p->len; off += 8)
			bad += *(uint64_t *)(p->base + off) !=
			       pattern((uint64_t)(uintptr_t)(p->base + off));
		if (write(res[1], &bad, sizeof(bad)) != sizeof(bad))
			_exit(3);
		_exit(0);
	}
	close(go[0]);
	close(res[1]);
	p->go = go[1];
	p->res = res[0];
	return pid;
}

static void setup(struct pair *p, size_t len)
{
	p->len = len;
	p->base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(p->base, MAP_FAILED);
	p->src = spawn_source(p);
	p->dst = spawn_target(p);
}

static void teardown(struct pair *p)
{
	if (p->src > 0) {
		kill(p->src, SIGKILL);
		waitpid(p->src, NULL, 0);
	}
	if (p->dst > 0) {
		kill(p->dst, SIGKILL);
		waitpid(p->dst, NULL, 0);
	}
	close(p->go);
	close(p->res);
	munmap(p->base, p->len);
}

static struct rst_lazy *make_lazy(struct pair *p, struct rst_lazy_src **src)
{
	struct haul_vma v = {.start = (uint64_t)(uintptr_t)p->base,
			     .end = (uint64_t)(uintptr_t)p->base + p->len,
			     .prot = PROT_READ | PROT_WRITE,
			     .flags = HAUL_VMA_ANON};
	struct haul_layout l = {&v, 1};
	struct rst_lazy_opts o = {.pid = p->dst, .vmas = &l};
	struct rst_lazy *lz;
	struct rsys r;
	int ret;

	cr_assert_eq(rst_lazy_src_open(p->src, &l, src), 0);
	o.src = (struct rst_lazy_source){.fetch = rst_lazy_src_fetch, .arg = *src};
	usleep(10000);
	cr_assert_eq(rsys_seize(&r, p->dst), 0);
	ret = rst_lazy_uffd_create(&r, &l, &o.uffd);
	cr_assert_eq(rsys_release(&r), 0);
	if (ret == -EOPNOTSUPP || ret == -EPERM) {
		teardown(p);
		cr_skip_test("userfaultfd with missing faults and events is not available here");
	}
	cr_assert_eq(ret, 0, "rst_lazy_uffd_create: %s", strerror(-ret));
	cr_assert_eq(rst_lazy_new(&o, &lz), 0);
	cr_assert_eq(rst_lazy_start(lz), 0);
	return lz;
}

Test(lazy, pages_arrive_from_frozen_source_process, .timeout = 60)
{
	struct pair p;
	struct rst_lazy_src *src;
	struct rst_lazy *lz;
	struct rst_lazy_stats st;
	uint64_t bad = ~0ull;
	int status, ret;

	setup(&p, 128 << 20);
	lz = make_lazy(&p, &src);
	cr_assert_eq(write(p.go, "g", 1), 1);
	ret = rst_lazy_wait_complete(lz, 30000);
	cr_assert_eq(read(p.res, &bad, sizeof(bad)), (ssize_t)sizeof(bad));
	cr_assert_eq(waitpid(p.dst, &status, 0), p.dst);
	p.dst = 0;
	rst_lazy_stats(lz, &st);
	cr_expect_eq(ret, 0, "wait_complete: %s", strerror(-ret));
	cr_expect_eq(bad, 0, "%lu words differ from the source", (unsigned long)bad);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "target status %#x", status);
	cr_expect_eq(st.missing_pages, 0);
	cr_expect_geq(rst_lazy_src_served(src), st.total_pages);
	rst_lazy_free(lz);
	rst_lazy_src_free(src);
	teardown(&p);
}

Test(lazy, source_killed_mid_postcopy_kills_target_cleanly, .timeout = 30)
{
	struct pair p;
	struct rst_lazy_src *src;
	struct rst_lazy *lz;
	uint64_t bad;
	int status, ret;

	setup(&p, 512 << 20);
	lz = make_lazy(&p, &src);
	cr_assert_eq(write(p.go, "g", 1), 1);
	usleep(20000); /* some pages have arrived, most have not */
	kill(p.src, SIGKILL);
	cr_assert_eq(waitpid(p.src, NULL, 0), p.src);
	p.src = 0;
	cr_assert_eq(waitpid(p.dst, &status, 0), p.dst);
	p.dst = 0;
	cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "target status %#x", status);
	cr_expect_eq(read(p.res, &bad, sizeof(bad)), 0, "the target finished without its memory");
	ret = rst_lazy_wait_complete(lz, 5000);
	cr_expect_eq(ret, -EHOSTDOWN, "wait_complete: %s", strerror(-ret));
	rst_lazy_free(lz);
	rst_lazy_src_free(src);
	teardown(&p);
}
