/*
 * scan_par.c - the frozen round's page-table walk, split across threads.
 *
 * The final round of a migration scans the whole address space with the
 * process frozen, inside the downtime: one thread walks the page tables of
 * a written-once heap at ~1 ms per GiB (15 ms of a 16 GiB workload's 30 ms
 * downtime on a 16-core host).  PAGEMAP_SCAN holds the mmap_lock for
 * reading only and each call re-protects its own PTEs under their page
 * table locks, so walkers of disjoint ranges do not contend: the range is
 * cut at 2 MiB boundaries into parts of at least TRK_SCAN_PAR_PART_BYTES,
 * one thread each (up to TRK_SCAN_PAR_MAX, and no more than the CPUs haul
 * may run on), each with its own result vector.
 *
 * Only while frozen: a live round walked by several threads would take
 * CPUs from the process it is moving, and its walk is sliced to bound the
 * lock hold anyway.  A part that fails (a VMA replaced under us: EPERM)
 * still hands over what it re-protected, as the single walk does; the
 * caller then handles the first error in address order.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/probe.h"
#include "tracker/trk_int.h"

#define PART_ALIGN (2ULL << 20)

unsigned trk_walk_threads(const struct trk *t, uint64_t bytes)
{
	uint64_t part = t->opts.par_part_bytes ? t->opts.par_part_bytes : TRK_SCAN_PAR_PART_BYTES;
	uint64_t n = bytes / part;
	cpu_set_t cpus;
	int ncpu = sched_getaffinity(0, sizeof(cpus), &cpus) == 0 ? CPU_COUNT(&cpus) : 1;

	if (n > TRK_SCAN_PAR_MAX)
		n = TRK_SCAN_PAR_MAX;
	if (n > (uint64_t)ncpu)
		n = (uint64_t)ncpu;
	return n ? (unsigned)n : 1;
}

struct walker {
	struct trk *t;
	struct trk_walk_part p;
	pthread_t thread;
	bool started;
};

static void *walker_main(void *arg)
{
	struct walker *w = arg;

	w->p.ret = trk_uffd_walk_part(w->t, &w->p);
	return NULL;
}

/* Cut [start, end) into @n parts ending on 2 MiB boundaries (the last at @end). */
static void cut(struct walker *w, unsigned n, uint64_t start, uint64_t end)
{
	uint64_t step = (end - start) / n, at = start;

	for (unsigned i = 0; i < n; i++) {
		uint64_t e = i + 1 == n ? end : (start + step * (i + 1)) & ~(PART_ALIGN - 1);

		if (e < at)
			e = at;
		w[i].p.start = at;
		w[i].p.end = e;
		at = e;
	}
}

/* Part @i's pages into @out, in order; its error, or the first one before it. */
static int take_part(struct trk *t, struct walker *w, struct trk_scan *out, int ret)
{
	const struct trk_rl *l = &w->p.out.written;

	for (size_t k = 0; k < l->n; k++) {
		int r = trk_rl_add(&out->written, l->r[k].start, l->r[k].npages);

		if (r && !ret)
			ret = r;
	}
	if (w->p.call_ms > t->call_ms)
		t->call_ms = w->p.call_ms;
	return ret ? ret : w->p.ret;
}

int trk_walk_parallel(struct trk *t, uint64_t start, uint64_t end, unsigned n, struct trk_scan *out)
{
	struct walker *w = calloc(n, sizeof(*w));
	double t0 = trk_now_ms();
	int ret = 0;

	if (!w)
		return -ENOMEM;
	cut(w, n, start, end);
	for (unsigned i = 0; i < n && !ret; i++) {
		w[i].t = t;
		ret = trk_uffd_part_vec(t, i, &w[i].p.vec, &w[i].p.used);
	}
	/* the first part on this thread, the others each on its own */
	for (unsigned i = 1; i < n && !ret; i++) {
		int r = pthread_create(&w[i].thread, NULL, walker_main, &w[i]);

		if (r)
			w[i].p.ret = -r; /* walked below, on this thread */
		else
			w[i].started = true;
	}
	if (!ret) {
		walker_main(&w[0]);
		for (unsigned i = 1; i < n; i++) {
			if (w[i].started)
				pthread_join(w[i].thread, NULL);
			else
				walker_main(&w[i]);
		}
		/* every part's pages, whatever the errors: each re-protected what it found */
		for (unsigned i = 0; i < n; i++)
			ret = take_part(t, &w[i], out, ret);
		pr_debug("pid %d: frozen walk of %llu MiB in %u parts: %.2f ms", (int)t->pid,
			 (unsigned long long)((end - start) >> 20), n, trk_now_ms() - t0);
	}
	for (unsigned i = 0; i < n; i++)
		trk_rl_release(&w[i].p.out.written);
	free(w);
	return ret;
}
