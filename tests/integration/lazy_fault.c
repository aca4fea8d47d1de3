/*
 * lazy_fault.c - the post-copy fault server against a real process.
 *
 * The test process maps a region without touching it and forks: the child
 * inherits an empty mapping, the parent fills its own copy with a pattern
 * that depends on each word's address and serves it as "the source" (same
 * addresses).  The child is stopped by ptrace, a userfaultfd is created
 * inside it by an injected syscall and its region registered, exactly as the
 * restore target does with its stub; then the child runs and touches every
 * page at random (reads, writes, from two threads) and checks each word.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/rsys.h"
#include "common/vma.h"
#include "restore/lazy.h"
#include "th_proc.h"

#define PGSZ 4096UL

/* One page in five is all zeros (mapped with UFFDIO_ZEROPAGE, not copied). */
static uint64_t pattern(uint64_t addr)
{
	if ((addr / PGSZ) % 5 == 3)
		return 0;
	return (addr * 0x9E3779B97F4A7C15ull) ^ 0x5eed5eed12345678ull;
}

static void fill(char *p, size_t len)
{
	for (size_t off = 0; off < len; off += 8)
		*(uint64_t *)(p + off) = pattern((uint64_t)(uintptr_t)(p + off));
}

/* Words of the page at @p that differ from the pattern (word 0 may hold @marker). */
static unsigned check_page(const char *p, uint64_t marker)
{
	const uint64_t *w = (const uint64_t *)p;
	unsigned bad = 0;

	for (unsigned i = 0; i < PGSZ / 8; i++) {
		uint64_t want = pattern((uint64_t)(uintptr_t)(w + i));

		if (i == 0 && marker && w[0] == marker)
			continue;
		bad += w[i] != want;
	}
	return bad;
}

static unsigned check_zero(const char *p, size_t len)
{
	unsigned bad = 0;

	for (size_t i = 0; i < len; i++)
		bad += p[i] != 0;
	return bad;
}

/* ---- the child's workloads ---- */

struct walk {
	char *base;
	size_t npages;
	uint32_t *perm;
	unsigned part, nparts;
	unsigned bad;
};

static uint64_t marker_of(const char *page)
{
	return ~(uint64_t)(uintptr_t)page;
}

static void *walk_main(void *arg)
{
	struct walk *w = arg;

	for (size_t k = w->part; k < w->npages; k += w->nparts) {
		char *page = w->base + (size_t)w->perm[k] * PGSZ;

		if (w->perm[k] % 4 == 0) {
			/* A write fault first: the rest of the page must arrive intact. */
			*(volatile uint64_t *)page = marker_of(page);
			w->bad += check_page(page, marker_of(page));
		} else {
			w->bad += check_page(page, 0);
		}
	}
	return NULL;
}

static unsigned child_random(char *base, size_t npages)
{
	uint32_t *perm = malloc(npages * sizeof(*perm));
	struct walk w[2];
	pthread_t t;
	unsigned bad = 0;

	if (!perm)
		return 1;
	for (size_t i = 0; i < npages; i++)
		perm[i] = (uint32_t)i;
	srandom(getpid());
	for (size_t i = npages - 1; i > 0; i--) {
		size_t j = (size_t)random() % (i + 1);
		uint32_t x = perm[i];

		perm[i] = perm[j];
		perm[j] = x;
	}
	for (unsigned i = 0; i < 2; i++)
		w[i] = (struct walk){base, npages, perm, i, 2, 0};
	if (pthread_create(&t, NULL, walk_main, &w[1]))
		return 1;
	walk_main(&w[0]);
	pthread_join(t, NULL);
	bad = w[0].bad + w[1].bad;
	/* Everything again, now that it is all there. */
	for (size_t i = 0; i < npages; i++) {
		char *page = base + i * PGSZ;

		bad += check_page(page, i % 4 == 0 ? marker_of(page) : 0);
	}
	free(perm);
	return bad;
}

/*
 * Two threads read the first half at random while a third zaps random pages
 * of the second half (madvise DONTNEED) and checks each reads as zeros, then
 * writes it and reads it back: the background push runs over the same
 * pages, and must never bring a zapped page's old contents back.
 */
struct storm {
	char *half;
	size_t npages;
	unsigned bad;
	uint8_t *mine; /* pages the zapper owns now (zapped at least once) */
};

static void *storm_zapper(void *arg)
{
	struct storm *z = arg;
	uint64_t x = 0x853c49e6748fea9bull;

	for (unsigned n = 0; n < 3000; n++) {
		size_t pg;
		uint64_t *w;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		pg = x % z->npages;
		w = (uint64_t *)(z->half + pg * PGSZ);
		if (madvise(w, PGSZ, MADV_DONTNEED)) {
			z->bad += 1000;
			break;
		}
		z->bad += check_zero((const char *)w, PGSZ) != 0;
		w[7] = marker_of((char *)w);
		z->bad += w[7] != marker_of((char *)w);
		z->mine[pg] = 1;
	}
	return NULL;
}

static unsigned child_storm(char *base, size_t npages)
{
	size_t half = npages / 2;
	uint32_t *perm = malloc(half * sizeof(*perm));
	struct storm z = {base + half * PGSZ, npages - half, 0, calloc(npages - half, 1)};
	struct walk w[2];
	pthread_t t[2];
	unsigned bad = 0;

	if (!perm || !z.mine)
		return 1;
	for (size_t i = 0; i < half; i++)
		perm[i] = (uint32_t)((i * 7919) % half);
	for (unsigned i = 0; i < 2; i++)
		w[i] = (struct walk){base, half, perm, i, 2, 0};
	if (pthread_create(&t[0], NULL, storm_zapper, &z) ||
	    pthread_create(&t[1], NULL, walk_main, &w[1]))
		return 1;
	walk_main(&w[0]);
	pthread_join(t[1], NULL);
	pthread_join(t[0], NULL);
	bad = w[0].bad + w[1].bad + z.bad;
	/* The second half: zapped pages hold zeros and the marker, the others the source's data. */
	for (size_t i = 0; i < z.npages; i++) {
		const uint64_t *p = (const uint64_t *)(z.half + i * PGSZ);

		if (!z.mine[i]) {
			bad += check_page((const char *)p, 0);
			continue;
		}
		for (unsigned k = 0; k < PGSZ / 8; k++)
			bad += p[k] != (k == 7 ? marker_of((const char *)p) : 0);
	}
	free(perm);
	free(z.mine);
	return bad;
}

/* madvise(DONTNEED), munmap and mremap during post-copy. */
static unsigned child_events(char *base, size_t npages)
{
	size_t moved_len = 1024 * PGSZ;
	char *moved_from = base + 1024 * PGSZ, *to;
	unsigned bad = 0;

	bad += check_page(base, 0);
	/* Zapped memory reads as zeros, never as the source's old data. */
	if (madvise(base + 64 * PGSZ, 64 * PGSZ, MADV_DONTNEED))
		return 1000;
	bad += check_zero(base + 64 * PGSZ, 64 * PGSZ);
	if (munmap(base + 256 * PGSZ, 256 * PGSZ))
		return 1001;
	to = mmap(NULL, moved_len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (to == MAP_FAILED)
		return 1002;
	if (mremap(moved_from, moved_len, moved_len, MREMAP_MAYMOVE | MREMAP_FIXED, to) != to)
		return 1003;
	/* Moved memory holds what was at its old address. */
	for (size_t i = 0; i < 1024; i++) {
		const uint64_t *w = (const uint64_t *)(to + i * PGSZ);

		for (unsigned k = 0; k < PGSZ / 8; k++)
			bad += w[k] !=
			       pattern((uint64_t)(uintptr_t)(moved_from + i * PGSZ + k * 8));
	}
	for (size_t i = 0; i < npages; i++) {
		if ((i >= 64 && i < 128) || (i >= 256 && i < 512) || (i >= 1024 && i < 2048))
			continue;
		bad += check_page(base + i * PGSZ, 0);
	}
	bad += check_zero(base + 64 * PGSZ, 64 * PGSZ);
	return bad;
}

/*
 * Four threads read the last page of the region's last whole 64 KiB-aligned
 * window (last_window()) at once: one fault window for all of them (a
 * first fault's window is its page alone: lazy_window.c).
 */
struct same {
	const char *page;
	pthread_barrier_t *b;
	unsigned bad;
};

static void *same_main(void *arg)
{
	struct same *x = arg;

	pthread_barrier_wait(x->b);
	x->bad = check_page(x->page, 0);
	return NULL;
}

static uint64_t last_window(const char *base, size_t len)
{
	const uint64_t win = LAZY_FAULT_AROUND_PAGES * PGSZ;

	return (((uint64_t)(uintptr_t)base + len) & ~(win - 1)) - win;
}

static unsigned child_same_window(char *base, size_t npages)
{
	char *w = (char *)(uintptr_t)last_window(base, npages * PGSZ);

	pthread_barrier_t b;
	pthread_t t[4];
	struct same x[4];
	unsigned bad = 0;

	if (pthread_barrier_init(&b, NULL, 4))
		return 1;
	for (unsigned i = 0; i < 4; i++) {
		x[i] = (struct same){w + (LAZY_FAULT_AROUND_PAGES - 1) * PGSZ, &b, 0};
		if (pthread_create(&t[i], NULL, same_main, &x[i]))
			return 1;
	}
	for (unsigned i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		bad += x[i].bad;
	}
	return bad;
}

/*
 * A sequential reader of the region's first half and a random writer of its
 * second half, at once; then every page is checked again.
 */
static void *seq_main(void *arg)
{
	struct walk *w = arg;

	for (size_t i = 0; i < w->npages; i++)
		w->bad += check_page(w->base + i * PGSZ, 0);
	return NULL;
}

static unsigned child_seq_and_random(char *base, size_t npages)
{
	size_t half = npages / 2, n = npages - half;
	uint32_t *perm = malloc(n * sizeof(*perm));
	struct walk seq = {base, half, NULL, 0, 1, 0};
	struct walk rnd;
	pthread_t t;
	unsigned bad;

	if (!perm)
		return 1;
	for (size_t i = 0; i < n; i++)
		perm[i] = (uint32_t)(half + i);
	srandom(getpid());
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)random() % (i + 1);
		uint32_t x = perm[i];

		perm[i] = perm[j];
		perm[j] = x;
	}
	rnd = (struct walk){base, n, perm, 0, 1, 0};
	if (pthread_create(&t, NULL, seq_main, &seq))
		return 1;
	walk_main(&rnd);
	pthread_join(t, NULL);
	bad = seq.bad + rnd.bad;
	for (size_t i = 0; i < npages; i++) {
		char *page = base + i * PGSZ;

		bad += check_page(page, i >= half && i % 4 == 0 ? marker_of(page) : 0);
	}
	free(perm);
	return bad;
}

/* Touch pages (all of them, or the first 512) and wait to be killed. */
static unsigned child_touch_and_wait(char *base, size_t npages, bool few)
{
	if (few && npages > 512)
		npages = 512;
	for (size_t i = 0; i < npages; i += 7)
		(void)*(volatile char *)(base + i * PGSZ);
	return 0;
}

enum mode {
	M_RANDOM,
	M_EVENTS,
	M_STORM,
	M_TOUCH,
	M_TOUCH_FEW,
	M_FORK,
	M_FORK_TOUCH,
	M_SAME_WINDOW,
	M_SEQ_AND_RANDOM
};

/* ---- the source (the parent's copy) ---- */

struct src {
	atomic_ulong pages;
	unsigned long fail_after; /* 0: never */
	unsigned bg_delay_us;	  /* slow down background chunks */
	/* A fault path of its own (rst_lazy_source.fetch_fault), slowed down by: */
	unsigned fault_delay_us;
	struct rst_lazy *_Atomic lz;   /* set before the child runs: watched during fault fetches */
	atomic_ulong pushed_meanwhile; /* pages pushed while a fault fetch slept */
	uint64_t watch_lo, watch_hi;   /* fault fetches overlapping [watch_lo, watch_hi) ... */
	atomic_ulong watch_fetches;    /* ... are counted here */
	/* fault fetches below split_at (lo) and from it on (hi): how many, of more than one page */
	uint64_t split_at;
	atomic_ulong lo_fetches, lo_wide, hi_fetches, hi_wide;
	/* A link of this many MB/s shared by every fetch, in order (a FIFO bottleneck): */
	unsigned link_mbps;
	pthread_mutex_t link_mu;
	uint64_t link_until_ns;	    /* when the bytes asked so far have all crossed it */
	atomic_uint first_bg_pages; /* the push's first fetch before any fault fetch, in pages */
	atomic_uint faults_done;    /* fault fetches answered (src_fetch_fault) */
};

/* Wait for @npages to cross the modelled link behind everything asked before. */
static void link_cross(struct src *s, uint32_t npages)
{
	struct timespec ts;
	uint64_t now, done;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	pthread_mutex_lock(&s->link_mu);
	done = (s->link_until_ns > now ? s->link_until_ns : now) +
	       (uint64_t)npages * PGSZ * 1000ull / s->link_mbps;
	s->link_until_ns = done;
	pthread_mutex_unlock(&s->link_mu);
	ts = (struct timespec){(time_t)(done / 1000000000ull), (long)(done % 1000000000ull)};
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

static int src_read(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	struct src *s = arg;
	unsigned long before = atomic_fetch_add(&s->pages, npages);

	if (s->fail_after && before + npages > s->fail_after)
		return -ECONNRESET;
	if (s->bg_delay_us && npages > LAZY_FAULT_AROUND_PAGES)
		usleep(s->bg_delay_us); /* the behaviour under test: a slow source */
	if (s->link_mbps)
		link_cross(s, npages);
	memcpy(buf, (const void *)(uintptr_t)addr, (size_t)npages * PGSZ);
	return 0;
}

/* The background push's fetches (rst_lazy_source.fetch). */
static int src_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	struct src *s = arg;
	unsigned zero = 0;

	/* after a fault the push may have grown (lazy_fetch.c): only the very first counts */
	if (!atomic_load(&s->faults_done))
		atomic_compare_exchange_strong(&s->first_bg_pages, &zero, npages);
	return src_read(arg, addr, npages, buf);
}

/*
 * The fault path, slow (a long round trip to the source): the background push
 * must go on meanwhile, since the fault thread no longer waits for it.
 */
static int src_fetch_fault(void *arg, uint64_t addr, uint32_t npages, void *buf)
{
	struct src *s = arg;
	struct rst_lazy *lz = atomic_load(&s->lz);
	struct rst_lazy_stats a, b;
	int ret;

	if (addr < s->watch_hi && addr + npages * PGSZ > s->watch_lo)
		atomic_fetch_add(&s->watch_fetches, 1);
	if (s->split_at) {
		bool lo = addr < s->split_at;

		atomic_fetch_add(lo ? &s->lo_fetches : &s->hi_fetches, 1);
		if (npages > 1)
			atomic_fetch_add(lo ? &s->lo_wide : &s->hi_wide, 1);
	}
	if (lz)
		rst_lazy_stats(lz, &a);
	usleep(s->fault_delay_us); /* the behaviour under test: a long round trip */
	if (lz) {
		rst_lazy_stats(lz, &b);
		atomic_fetch_add(&s->pushed_meanwhile, b.pushed_pages - a.pushed_pages);
	}
	ret = src_read(arg, addr, npages, buf);
	atomic_fetch_add(&s->faults_done, 1);
	return ret;
}

struct fixture {
	pid_t pid;
	int go, res;
	char *base;
	size_t len;
};

static void spawn(struct fixture *f, size_t len, enum mode m)
{
	int go[2], res[2];

	f->len = len;
	f->base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(f->base, MAP_FAILED);
	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(res), 0);
	f->pid = fork();
	cr_assert_geq(f->pid, 0);
	if (f->pid == 0) {
		unsigned bad = 0;
		char c;

		close(go[1]);
		close(res[0]);
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		if (m == M_FORK || m == M_FORK_TOUCH) {
			/* Fork with most memory missing: the child must see it all too. */
			pid_t kid;
			int st;

			bad = check_page(f->base, 0);
			kid = fork();
			if (kid < 0)
				_exit(4);
			if (kid == 0) {
				bad += m == M_FORK
					       ? child_random(f->base, len / PGSZ)
					       : child_touch_and_wait(f->base, len / PGSZ, false);
				if (write(res[1], &bad, sizeof(bad)) != sizeof(bad))
					_exit(3);
				if (m == M_FORK_TOUCH)
					pause();
				_exit(0);
			}
			bad += m == M_FORK ? child_random(f->base, len / PGSZ)
					   : child_touch_and_wait(f->base, len / PGSZ, false);
			if (m == M_FORK_TOUCH)
				pause();
			if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st))
				bad += 100000;
		} else if (m == M_STORM)
			bad = child_storm(f->base, len / PGSZ);
		else if (m == M_RANDOM)
			bad = child_random(f->base, len / PGSZ);
		else if (m == M_EVENTS)
			bad = child_events(f->base, len / PGSZ);
		else if (m == M_SAME_WINDOW)
			bad = child_same_window(f->base, len / PGSZ);
		else if (m == M_SEQ_AND_RANDOM)
			bad = child_seq_and_random(f->base, len / PGSZ);
		else
			bad = child_touch_and_wait(f->base, len / PGSZ, m == M_TOUCH_FEW);
		if (write(res[1], &bad, sizeof(bad)) != sizeof(bad))
			_exit(3);
		if (m == M_TOUCH || m == M_TOUCH_FEW)
			pause();
		_exit(0);
	}
	close(go[0]);
	close(res[1]);
	f->go = go[1];
	f->res = res[0];
	/* The child's copy stays empty; ours is the source. */
	fill(f->base, len);
}

/* The child sleeps in read() of its go pipe: a quiet place to seize it. */
static void wait_blocked(pid_t pid)
{
	int ret = th_wait_sleeping(pid, 0, "pipe_read", 5000);

	cr_assert_eq(ret, 0, "child pid %d did not block in read() of its go pipe: %s", (int)pid,
		     strerror(-ret));
}

/* Stop the child, make its region lazy, start the fault server. */
static struct rst_lazy *make_lazy(struct fixture *f, struct src *s, unsigned fetchers)
{
	struct haul_vma v = {.start = (uint64_t)(uintptr_t)f->base,
			     .end = (uint64_t)(uintptr_t)f->base + f->len,
			     .prot = PROT_READ | PROT_WRITE,
			     .flags = HAUL_VMA_ANON};
	struct haul_layout l = {&v, 1};
	struct rst_lazy_opts o = {
		.pid = f->pid,
		.vmas = &l,
		.src = {.fetch = src_fetch,
			.arg = s,
			.fetch_fault = s->fault_delay_us ? src_fetch_fault : NULL},
		.fetchers = fetchers};
	struct rst_lazy *lz;
	struct rsys r;
	int ret;

	wait_blocked(f->pid);
	cr_assert_eq(rsys_seize(&r, f->pid), 0);
	if (!fetchers) {
		/* The restorer's path: one call, the lazy VMAs picked from the layout. */
		struct haul_layout lazy;

		ret = rst_lazy_attach(&r, f->pid, &l, &o.src, &lazy, &lz);
		if (!ret) {
			cr_assert_eq(lazy.n, 1);
			haul_layout_release(&lazy);
		}
	} else {
		ret = rst_lazy_uffd_create(&r, &l, &o.uffd);
		if (!ret)
			ret = rst_lazy_new(&o, &lz);
		if (!ret)
			ret = rst_lazy_start(lz);
	}
	cr_assert_eq(rsys_release(&r), 0);
	if (ret == -EOPNOTSUPP || ret == -EPERM) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, NULL, 0);
		cr_skip_test("userfaultfd with missing faults and events is not available here");
	}
	cr_assert_eq(ret, 0, "making pid %d lazy: %s", f->pid, strerror(-ret));
	return lz;
}

static void go(struct fixture *f)
{
	cr_assert_eq(write(f->go, "g", 1), 1);
}

static void cleanup(struct fixture *f)
{
	if (f->pid > 0) {
		kill(f->pid, SIGKILL);
		waitpid(f->pid, NULL, 0);
	}
	close(f->go);
	close(f->res);
	munmap(f->base, f->len);
}

/* What a child run to its end left: its report, its exit status, the fault server's. */
struct outcome {
	unsigned bad;
	int status, ret; /* ret: rst_lazy_wait_complete() */
	struct rst_lazy_stats st;
};

/*
 * The skeleton most tests share: make the spawned child of @f lazy with
 * @fetchers (0: the restorer's rst_lazy_attach), let it go, read its count
 * of wrong words (@what names them), reap it, wait up to @wait_ms for the
 * last page, keep the counters and free everything.
 */
static void run_to_end(struct fixture *f, struct src *s, unsigned fetchers, int wait_ms,
		       const char *what, struct outcome *o)
{
	struct rst_lazy *lz;

	o->bad = ~0u;
	lz = make_lazy(f, s, fetchers);
	atomic_store(&s->lz, lz);
	go(f);
	cr_assert_eq(read(f->res, &o->bad, sizeof(o->bad)), (ssize_t)sizeof(o->bad));
	cr_assert_eq(waitpid(f->pid, &o->status, 0), f->pid);
	f->pid = 0;
	o->ret = rst_lazy_wait_complete(lz, wait_ms);
	rst_lazy_stats(lz, &o->st);
	atomic_store(&s->lz, NULL);
	rst_lazy_free(lz); /* joins the fault-fetch threads: none uses lz after */
	cleanup(f);
	cr_expect_eq(o->bad, 0, "%u %s", o->bad, what);
	cr_expect(WIFEXITED(o->status) && WEXITSTATUS(o->status) == 0, "child status %#x",
		  o->status);
}

Test(lazy, every_page_correct_under_random_faults, .timeout = 60)
{
	struct fixture f;
	struct src s = {0};
	struct outcome o;

	spawn(&f, 64 << 20, M_RANDOM);
	run_to_end(&f, &s, 0, 10000, "words differ from the source", &o);
	cr_expect_eq(o.ret, 0, "wait_complete: %s", strerror(-o.ret));
	cr_expect_eq(o.st.missing_pages, 0);
	cr_expect_eq(o.st.total_pages, (64 << 20) / PGSZ);
	cr_expect_geq(o.st.fault_pages + o.st.pushed_pages, o.st.total_pages);
	cr_expect_gt(o.st.faults, 0);
	cr_expect_geq(o.st.zero_filled, o.st.total_pages / 5 - 16, "zero pages were copied");
	cr_log_info("faults %lu (p50 %lu ns, p99 %lu ns), fault pages %lu, pushed %lu, eexist "
		    "%lu, complete %.1f ms",
		    (unsigned long)o.st.faults, (unsigned long)o.st.fault_p50_ns,
		    (unsigned long)o.st.fault_p99_ns, (unsigned long)o.st.fault_pages,
		    (unsigned long)o.st.pushed_pages, (unsigned long)o.st.eexist,
		    o.st.complete_ns / 1e6);
}

Test(lazy, unmap_remap_and_dontneed_during_postcopy, .timeout = 60)
{
	struct fixture f;
	struct src s = {.bg_delay_us = 20000};
	struct outcome o;

	spawn(&f, 16 << 20, M_EVENTS);
	run_to_end(&f, &s, 1, 20000, "bytes or words wrong (>= 1000: a syscall failed)", &o);
	/* The child exits when done: complete, or gone before the last push. */
	cr_expect(o.ret == 0 || o.ret == -ESRCH, "wait_complete: %s", strerror(-o.ret));
	cr_expect_geq(o.st.events, 3, "events seen: %lu", (unsigned long)o.st.events);
}

Test(lazy, source_failure_kills_process_and_nothing_hangs, .timeout = 30)
{
	struct fixture f;
	struct src s = {.fail_after = 2048, .bg_delay_us = 1000};
	struct rst_lazy *lz;
	unsigned bad;
	int status, ret;

	spawn(&f, 64 << 20, M_TOUCH);
	lz = make_lazy(&f, &s, 0);
	go(&f);
	/* It dies before it can report: it needs pages the source never gives. */
	cr_assert_eq(waitpid(f.pid, &status, 0), f.pid);
	f.pid = 0;
	cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
	cr_expect_eq(read(f.res, &bad, sizeof(bad)), 0, "the child finished without its memory");
	ret = rst_lazy_wait_complete(lz, 5000);
	cr_expect_eq(ret, -ECONNRESET, "wait_complete: %s", strerror(-ret));
	rst_lazy_free(lz);
	cleanup(&f);
}

Test(lazy, free_before_complete_kills_process, .timeout = 30)
{
	struct fixture f;
	struct src s = {.bg_delay_us = 50000};
	struct rst_lazy *lz;
	unsigned bad = ~0u;
	int status;

	spawn(&f, 64 << 20, M_TOUCH_FEW);
	lz = make_lazy(&f, &s, 1);
	go(&f);
	cr_assert_eq(read(f.res, &bad, sizeof(bad)), (ssize_t)sizeof(bad));
	cr_expect_eq(bad, 0);
	cr_expect_eq(rst_lazy_wait_complete(lz, 0), -ETIMEDOUT);
	rst_lazy_free(lz);
	cr_assert_eq(waitpid(f.pid, &status, 0), f.pid);
	f.pid = 0;
	cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
	cleanup(&f);
}

Test(lazy, fork_during_postcopy_child_gets_every_page, .timeout = 60)
{
	struct fixture f;
	struct src s = {.bg_delay_us = 5000};
	struct rst_lazy_stats st;
	struct rst_lazy *lz;
	unsigned bad[2] = {~0u, ~0u};
	int status, ret;

	spawn(&f, 32 << 20, M_FORK);
	lz = make_lazy(&f, &s, 1);
	go(&f);
	/* The forked child reports first (its parent waits for it), then the parent. */
	cr_assert_eq(read(f.res, &bad[0], sizeof(bad[0])), (ssize_t)sizeof(bad[0]));
	cr_assert_eq(read(f.res, &bad[1], sizeof(bad[1])), (ssize_t)sizeof(bad[1]));
	cr_assert_eq(waitpid(f.pid, &status, 0), f.pid);
	f.pid = 0;
	ret = rst_lazy_wait_complete(lz, 20000);
	rst_lazy_stats(lz, &st);
	rst_lazy_free(lz);
	cleanup(&f);
	cr_expect_eq(bad[0], 0, "the forked child saw %u wrong words", bad[0]);
	cr_expect_eq(bad[1], 0, "the parent saw %u wrong words (>= 100000: child failed)", bad[1]);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	cr_expect(ret == 0 || ret == -ESRCH, "wait_complete: %s", strerror(-ret));
	cr_expect_geq(st.events, 1, "no fork event seen");
}

Test(lazy, source_failure_after_fork_kills_the_forked_child_too, .timeout = 30)
{
	struct fixture f;
	struct src s = {.fail_after = 4096, .bg_delay_us = 2000};
	struct rst_lazy *lz;
	struct pollfd p;
	unsigned bad;
	int status;

	spawn(&f, 64 << 20, M_FORK_TOUCH);
	lz = make_lazy(&f, &s, 1);
	go(&f);
	cr_assert_eq(waitpid(f.pid, &status, 0), f.pid);
	f.pid = 0;
	cr_expect(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child status %#x", status);
	/* The grandchild holds the pipe open while it lives: EOF means it is dead too. */
	p = (struct pollfd){.fd = f.res, .events = POLLIN};
	cr_assert_gt(poll(&p, 1, 10000), 0, "the forked child still lives");
	while (read(f.res, &bad, sizeof(bad)) > 0)
		cr_expect_fail("a process finished without its memory");
	cr_expect_eq(rst_lazy_wait_complete(lz, 5000), -ECONNRESET);
	rst_lazy_free(lz);
	cleanup(&f);
}

/*
 * Hybrid: the target holds every page from pre-copy rounds, some dirtied
 * again on the source before the freeze.  Those are zapped and left missing;
 * the rest is marked present.  The process must see the new contents of the
 * dirty pages and the old (still valid) contents of the others.
 */
Test(lazy, hybrid_stale_pages_are_zapped_and_fetched_again, .timeout = 60)
{
	const size_t len = 16 << 20, npages = len / PGSZ;
	struct fixture f;
	struct src s = {0};
	struct haul_vma v;
	struct haul_layout l = {&v, 1};
	struct rst_lazy_opts o = {
		.vmas = &l, .src = {.fetch = src_fetch, .arg = &s}, .fetchers = 1};
	struct rst_lazy_stats st;
	struct rst_lazy *lz;
	struct rsys r;
	unsigned bad = ~0u;
	int status, ret;

	/* The child inherits the filled region: that is "after pre-copy". */
	f.len = len;
	f.base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(f.base, MAP_FAILED);
	fill(f.base, len);
	{
		int go[2], res[2];

		cr_assert_eq(pipe(go), 0);
		cr_assert_eq(pipe(res), 0);
		f.pid = fork();
		cr_assert_geq(f.pid, 0);
		if (f.pid == 0) {
			char c;

			close(go[1]);
			close(res[0]);
			if (read(go[0], &c, 1) != 1)
				_exit(2);
			/* Every 8th page was dirtied on the source: its word 0 is now ~pattern. */
			bad = 0;
			for (size_t i = 0; i < npages; i++) {
				uint64_t *w = (uint64_t *)(f.base + i * PGSZ);

				if (i % 8 == 5)
					bad += w[0] != ~pattern((uint64_t)(uintptr_t)w);
				else
					bad += check_page((char *)w, 0);
			}
			if (write(res[1], &bad, sizeof(bad)) != sizeof(bad))
				_exit(3);
			_exit(0);
		}
		close(go[0]);
		close(res[1]);
		f.go = go[1];
		f.res = res[0];
	}
	/* The source moves on: every 8th page changes after the last round. */
	for (size_t i = 5; i < npages; i += 8) {
		uint64_t *w = (uint64_t *)(f.base + i * PGSZ);

		w[0] = ~pattern((uint64_t)(uintptr_t)w);
	}

	v = (struct haul_vma){.start = (uint64_t)(uintptr_t)f.base,
			      .end = (uint64_t)(uintptr_t)f.base + len,
			      .prot = PROT_READ | PROT_WRITE,
			      .flags = HAUL_VMA_ANON};
	o.pid = f.pid;
	wait_blocked(f.pid);
	cr_assert_eq(rsys_seize(&r, f.pid), 0);
	for (size_t i = 5; i < npages; i += 8)
		cr_assert_eq(rst_lazy_zap(&r, &v, (uint64_t)(uintptr_t)(f.base + i * PGSZ), 1), 0);
	ret = rst_lazy_uffd_create(&r, &l, &o.uffd);
	cr_assert_eq(ret, 0, "rst_lazy_uffd_create: %s", strerror(-ret));
	cr_assert_eq(rst_lazy_new(&o, &lz), 0);
	for (size_t i = 0; i < npages; i++)
		if (i % 8 != 5)
			cr_assert_eq(rst_lazy_mark_present(lz, v.start + i * PGSZ, 1), 0);
	cr_assert_eq(rst_lazy_start(lz), 0);
	cr_assert_eq(rsys_release(&r), 0);
	go(&f);
	cr_assert_eq(read(f.res, &bad, sizeof(bad)), (ssize_t)sizeof(bad));
	cr_assert_eq(waitpid(f.pid, &status, 0), f.pid);
	f.pid = 0;
	ret = rst_lazy_wait_complete(lz, 10000);
	rst_lazy_stats(lz, &st);
	rst_lazy_free(lz);
	cleanup(&f);
	cr_expect_eq(bad, 0, "%u words wrong: stale or lost pages", bad);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	cr_expect(ret == 0 || ret == -ESRCH, "wait_complete: %s", strerror(-ret));
	cr_expect_leq(st.fault_pages + st.pushed_pages, npages / 8,
		      "fetched more than the dirty set");
}

Test(lazy, dontneed_storm_never_brings_stale_data_back, .timeout = 60)
{
	struct fixture f;
	struct src s = {.bg_delay_us = 300};
	struct outcome o;

	spawn(&f, 32 << 20, M_STORM);
	run_to_end(&f, &s, 2, 20000, "wrong words (>= 1000: madvise failed)", &o);
	cr_expect(o.ret == 0 || o.ret == -ESRCH, "wait_complete: %s", strerror(-o.ret));
	/* usually 700-3000; 26 once, when the storm child got little CPU: still a storm */
	cr_expect_gt(o.st.events, 0, "no remove event: the storm did not run");
	cr_log_info("storm: %lu events, %lu eagain, %lu eexist, %lu faults, %lu pushed",
		    (unsigned long)o.st.events, (unsigned long)o.st.eagain,
		    (unsigned long)o.st.eexist, (unsigned long)o.st.faults,
		    (unsigned long)o.st.pushed_pages);
}

/*
 * A fault fetch is slow (20 ms each) while background chunks keep coming: the
 * fault thread hands fault windows to a fault-fetch thread and keeps copying
 * pushed chunks meanwhile, and a fault's latency still runs until its thread
 * is woken with its window copied.
 */
Test(lazy, push_goes_on_while_a_fault_fetch_is_slow, .timeout = 60)
{
	struct fixture f;
	struct src s = {.bg_delay_us = 3000, .fault_delay_us = 20000};
	struct outcome o;

	spawn(&f, 64 << 20, M_RANDOM);
	run_to_end(&f, &s, 2, 20000, "words differ from the source", &o);
	cr_expect_eq(o.ret, 0, "wait_complete: %s", strerror(-o.ret));
	cr_expect_eq(o.st.missing_pages, 0);
	cr_expect_geq(o.st.fault_pages + o.st.pushed_pages, o.st.total_pages);
	cr_expect_gt(o.st.faults, 0);
	cr_expect_gt(atomic_load(&s.pushed_meanwhile), 0,
		     "nothing was pushed while fault fetches slept: the fault thread waited");
	cr_expect_geq(o.st.fault_max_ns, 20000000ull,
		      "fault latency (max %lu ns) does not include the fetch",
		      (unsigned long)o.st.fault_max_ns);
	cr_log_info("slow faults: %lu faults (p50 %lu us, max %lu us), %lu pages pushed during "
		    "fault fetches, %lu pushed in all, complete %.1f ms",
		    (unsigned long)o.st.faults, (unsigned long)o.st.fault_p50_ns / 1000,
		    (unsigned long)o.st.fault_max_ns / 1000,
		    (unsigned long)atomic_load(&s.pushed_meanwhile),
		    (unsigned long)o.st.pushed_pages, o.st.complete_ns / 1e6);
}

/*
 * Over a slow FIFO link (100 MB/s, modelled in src_fetch) a fault's window
 * queues behind every push chunk asked before it: with the push's full depth
 * (2 fetchers x 1 MiB) that is ~21 ms per fault.  While the process faults
 * the push asks for 16 KiB at a time (LAZY_PUSH_FAULTING_PAGES) and its
 * window shrinks when faults still come back late, so a fault waits for
 * little more than two such fetches (0.4 ms p50 here), and every page still
 * arrives.
 */
Test(lazy, faults_do_not_queue_behind_the_push_on_a_slow_link, .timeout = 60)
{
	struct fixture f;
	/* a fault path of its own (1 us more): the push's fetches are told from the faults' */
	struct src s = {.link_mbps = 100, .fault_delay_us = 1};
	struct outcome o;

	pthread_mutex_init(&s.link_mu, NULL);
	spawn(&f, 64 << 20, M_RANDOM);
	run_to_end(&f, &s, 2, 30000, "words differ from the source", &o);
	cr_expect_eq(o.ret, 0, "wait_complete: %s", strerror(-o.ret));
	cr_expect_gt(o.st.faults, 10);
	/* 2 MiB ahead would be 21 ms */
	cr_expect_lt(o.st.fault_p50_ns, 2 * LAZY_FAULT_TARGET_US * 1000ull,
		     "fault p50 %lu us: stuck behind the push",
		     (unsigned long)o.st.fault_p50_ns / 1000);
	/* the process faults from the resume on: its first faults queue behind no 1 MiB */
	cr_expect_leq(atomic_load(&s.first_bg_pages), LAZY_PUSH_FAULTING_PAGES,
		      "the push began with a %u-page fetch", atomic_load(&s.first_bg_pages));
	cr_log_info("slow link: %lu faults, p50 %lu us, p99 %lu us, push window down to %u "
		    "pages, complete %.1f ms",
		    (unsigned long)o.st.faults, (unsigned long)o.st.fault_p50_ns / 1000,
		    (unsigned long)o.st.fault_p99_ns / 1000, o.st.push_window_min,
		    o.st.complete_ns / 1e6);
}

/*
 * Four threads fault in one window while its (slow) fetch is in flight: the
 * window is fetched once, and its copy wakes all four.
 */
Test(lazy, faults_in_a_window_in_flight_fetch_it_once, .timeout = 60)
{
	struct fixture f;
	struct src s = {.bg_delay_us = 20000, .fault_delay_us = 100000};
	struct outcome o;

	spawn(&f, 16 << 20, M_SAME_WINDOW);
	s.watch_lo = last_window(f.base, f.len);
	s.watch_hi = s.watch_lo + LAZY_FAULT_AROUND_PAGES * PGSZ;
	run_to_end(&f, &s, 1, 20000, "words differ from the source", &o);
	cr_expect(o.ret == 0 || o.ret == -ESRCH, "wait_complete: %s", strerror(-o.ret));
	cr_expect_eq(atomic_load(&s.watch_fetches), 1, "the window was fetched %lu times",
		     (unsigned long)atomic_load(&s.watch_fetches));
	cr_log_info("same window: %lu faults, max %lu us", (unsigned long)o.st.faults,
		    (unsigned long)o.st.fault_max_ns / 1000);
}

/*
 * A sequential reader and a uniform random writer in one process, over a
 * 200 MB/s link: both read and write the right data, the random writer's
 * faults fetch their page alone (a wider window would be link time wasted),
 * and the reader's windows grow (lazy_window.c).
 */
Test(lazy, random_writer_and_sequential_reader_both_finish_correctly, .timeout = 60)
{
	struct fixture f;
	struct src s = {.link_mbps = 200, .fault_delay_us = 1};
	struct outcome o;
	unsigned long hi, hi_wide;

	pthread_mutex_init(&s.link_mu, NULL);
	spawn(&f, 32 << 20, M_SEQ_AND_RANDOM);
	s.split_at = (uint64_t)(uintptr_t)f.base + f.len / 2;
	run_to_end(&f, &s, 2, 30000, "words differ from the source", &o);
	cr_expect_eq(o.ret, 0, "wait_complete: %s", strerror(-o.ret));
	cr_expect_eq(o.st.missing_pages, 0);
	hi = atomic_load(&s.hi_fetches);
	hi_wide = atomic_load(&s.hi_wide);
	cr_expect_gt(hi, 0, "the random writer never faulted");
	/* a random page next to one of the last 4 windows: about 1 in 1000 */
	cr_expect_leq(hi_wide * 20, hi,
		      "%lu of the random writer's %lu fault fetches were wider "
		      "than its page",
		      hi_wide, hi);
	/* the push fills pages ahead of the reader: its faults past them still continue its walk */
	cr_expect_geq(atomic_load(&s.lo_wide) * 2, atomic_load(&s.lo_fetches),
		      "only %lu of the sequential reader's %lu fault fetches grew past one page",
		      (unsigned long)atomic_load(&s.lo_wide),
		      (unsigned long)atomic_load(&s.lo_fetches));
	cr_log_info("sequential reader: %lu fault fetches, %lu wider than a page; random writer: "
		    "%lu, %lu wider; %lu faults, p50 %lu us, complete %.1f ms",
		    (unsigned long)atomic_load(&s.lo_fetches),
		    (unsigned long)atomic_load(&s.lo_wide), hi, hi_wide, (unsigned long)o.st.faults,
		    (unsigned long)o.st.fault_p50_ns / 1000, o.st.complete_ns / 1e6);
}
