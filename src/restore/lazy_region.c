/*
 * lazy_region.c - the fault server's lazy regions and fault-latency histogram.
 *
 * A region is a piece of a registered VMA with the source address it had
 * when frozen, and its bitmaps (done, zero, claimed).  An mm's regions stay
 * sorted by start and never overlap; events (remap, unmap, remove) slice
 * them here.  Regions change only on the fault thread, under lz->lock
 * because the fetchers read them.  The histogram buckets fault latencies
 * (HIST_SUB sub-buckets per power of two) for the p50/p99 of the stats,
 * and again per 250 ms after the start (the timeline logged when all memory
 * arrived), to set next to what the process's own clients saw.
 */
#define LOG_PREFIX "lazy: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "restore/lazy_int.h"

/* ---- regions ------------------------------------------------------------------ */

void rst_lz_region_release(struct lz_region *rg)
{
	free(rg->done);
	free(rg->zero);
	free(rg->claimed);
	memset(rg, 0, sizeof(*rg));
}

int rst_lz_region_init(struct lz_region *rg, uint64_t start, uint64_t end, uint64_t src)
{
	uint64_t n = (end - start) / PG;

	rg->start = start;
	rg->end = end;
	rg->src = src;
	rg->missing = n;
	rg->done = bits_new(n);
	rg->zero = bits_new(n);
	rg->claimed = bits_new(n);
	if (!rg->done || !rg->zero || !rg->claimed) {
		rst_lz_region_release(rg);
		return -ENOMEM;
	}
	return 0;
}

/* A new region holding pages [s, e) of @rg, placed at @at. */
int rst_lz_region_slice(const struct lz_region *rg, uint64_t s, uint64_t e, uint64_t at,
			struct lz_region *out)
{
	uint64_t i0 = (s - rg->start) / PG, n = (e - s) / PG;
	int ret = rst_lz_region_init(out, at, at + (e - s), rg->src + (s - rg->start));

	if (ret)
		return ret;
	out->missing = 0;
	for (uint64_t i = 0; i < n; i++) {
		if (bit_test(rg->done, i0 + i))
			bit_set(out->done, i);
		else
			out->missing++;
		if (bit_test(rg->zero, i0 + i))
			bit_set(out->zero, i);
		if (bit_test(rg->claimed, i0 + i))
			bit_set(out->claimed, i);
	}
	return 0;
}

struct lz_region *rst_lz_region_find(struct lz_mm *mm, uint64_t addr)
{
	size_t lo = 0, hi = mm->nr;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (addr < mm->r[mid].start)
			hi = mid;
		else if (addr >= mm->r[mid].end)
			lo = mid + 1;
		else
			return &mm->r[mid];
	}
	return NULL;
}

struct lz_region *rst_lz_region_find_src(struct lz_mm *mm, uint64_t src)
{
	for (size_t i = 0; i < mm->nr; i++) {
		struct lz_region *rg = &mm->r[i];

		if (src >= rg->src && src < rg->src + (rg->end - rg->start))
			return rg;
	}
	return NULL;
}

static int region_cmp(const void *a, const void *b)
{
	const struct lz_region *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Insert @add (taking its bitmaps) into @mm keeping the array sorted. Under lz->lock. */
int rst_lz_regions_insert(struct rst_lazy *lz, struct lz_mm *mm, struct lz_region *add, size_t nadd)
{
	struct lz_region *n;

	if (!nadd)
		return 0;
	n = realloc(mm->r, (mm->nr + nadd) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	mm->r = n;
	memcpy(&mm->r[mm->nr], add, nadd * sizeof(*add));
	mm->nr += nadd;
	qsort(mm->r, mm->nr, sizeof(*mm->r), region_cmp);
	for (size_t i = 0; i < nadd; i++) {
		mm->missing += add[i].missing;
		lz->missing += add[i].missing;
	}
	return 0;
}

/*
 * Remove [s, e) from the regions (unmapped, or the source of a remap), keeping
 * what lies outside.  Pages that were missing there are no longer wanted.
 * Under lz->lock.
 */
int rst_lz_regions_cut(struct rst_lazy *lz, struct lz_mm *mm, uint64_t s, uint64_t e)
{
	for (size_t i = 0; i < mm->nr;) {
		struct lz_region *rg = &mm->r[i], keep[2];
		size_t nkeep = 0;
		int ret;

		if (rg->end <= s || rg->start >= e) {
			i++;
			continue;
		}
		if (rg->start < s) {
			ret = rst_lz_region_slice(rg, rg->start, s, rg->start, &keep[nkeep]);
			if (ret)
				return ret;
			nkeep++;
		}
		if (rg->end > e) {
			ret = rst_lz_region_slice(rg, e, rg->end, e, &keep[nkeep]);
			if (ret) {
				while (nkeep)
					rst_lz_region_release(&keep[--nkeep]);
				return ret;
			}
			nkeep++;
		}
		mm->missing -= rg->missing;
		lz->missing -= rg->missing;
		rst_lz_region_release(rg);
		memmove(rg, rg + 1, (mm->nr - i - 1) * sizeof(*rg));
		mm->nr--;
		ret = rst_lz_regions_insert(lz, mm, keep, nkeep);
		if (ret) {
			while (nkeep)
				rst_lz_region_release(&keep[--nkeep]);
			return ret;
		}
		/* The kept pieces lie outside [s, e): rescan from the start, they are skipped. */
		i = 0;
	}
	return 0;
}

/* ---- statistics ------------------------------------------------------------- */

unsigned rst_lz_hist_idx(uint64_t ns)
{
	unsigned msb;

	if (ns < HIST_SUB)
		return (unsigned)ns;
	msb = 63 - __builtin_clzll(ns);
	return (msb - 2) * HIST_SUB + (unsigned)((ns >> (msb - 3)) & (HIST_SUB - 1));
}

/* The largest value that falls in bucket @i. */
static uint64_t hist_value(unsigned i)
{
	unsigned msb, sub;

	if (i < HIST_SUB)
		return i;
	msb = i / HIST_SUB + 2;
	sub = i % HIST_SUB;
	return ((uint64_t)(HIST_SUB + sub + 1) << (msb - 3)) - 1;
}

uint64_t rst_lz_hist_pct(const uint32_t *h, uint64_t total, double pct)
{
	uint64_t want = (uint64_t)(total * pct / 100.0), seen = 0;

	if (!total)
		return 0;
	if (want >= total)
		want = total - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h[i];
		if (seen > want)
			return hist_value(i);
	}
	return 0;
}

/* Count a fault read at @t0 and answered @dt later in its slot of the timeline.  Under lz->lock. */
void rst_lz_timeline_add(struct rst_lazy *lz, uint64_t t0, uint64_t dt)
{
	uint64_t slot = t0 > lz->t_start ? (t0 - lz->t_start) / TL_SLOT_NS : 0;

	if (slot >= TL_SLOTS)
		slot = TL_SLOTS - 1;
	lz->tl_hist[slot][rst_lz_hist_idx(dt)]++;
	lz->tl_faults[slot]++;
	if (dt > lz->tl_max_ns[slot])
		lz->tl_max_ns[slot] = dt;
}

/*
 * Log the timeline: per second after the start, the faults and their
 * latency p50/p99/max in each quarter that had any.  Fault thread, when
 * all memory arrived.
 */
void rst_lz_timeline_log(struct rst_lazy *lz)
{
	struct timespec rt;
	char line[512];

	/* the start on the realtime clock, which the process's clients (and the bench) share */
	clock_gettime(CLOCK_REALTIME, &rt);
	pr_info("pid %d: fault timeline, the start at %.3f (realtime)", lz->pid,
		rt.tv_sec + rt.tv_nsec / 1e9 - (now_ns() - lz->t_start) / 1e9);
	pthread_mutex_lock(&lz->lock);
	for (unsigned sec = 0; sec * 4 < TL_SLOTS; sec++) {
		size_t n = 0;

		line[0] = '\0';
		for (unsigned k = sec * 4; k < sec * 4 + 4 && n < sizeof(line); k++) {
			uint32_t f = lz->tl_faults[k];

			if (!f)
				continue;
			n += (size_t)snprintf(line + n, sizeof(line) - n,
					      "%s+%u ms: %u faults, p50 %.0f p99 %.0f max %.0f us",
					      n ? "; " : "", (k % 4) * 250, f,
					      rst_lz_hist_pct(lz->tl_hist[k], f, 50) / 1e3,
					      rst_lz_hist_pct(lz->tl_hist[k], f, 99) / 1e3,
					      lz->tl_max_ns[k] / 1e3);
		}
		if (n)
			pr_info("pid %d faults %u%s s after the start: %s", lz->pid, sec,
				(sec + 1) * 4 >= TL_SLOTS ? " and later" : "", line);
	}
	pthread_mutex_unlock(&lz->lock);
}
