/*
 * pc_hot.c - post-copy's prefetch: the pages the process is likely to touch
 * right after the resume, found from its recent writes and sent before the
 * freeze, so that its first faults find them already there.
 *
 * The tracker watches two windows of HAUL_PC_HOT_WINDOW_MS.  A process
 * whose writes repeat (most pages of the second window were written in the
 * first too: a hot set) will write them again after the resume, and each
 * such write would otherwise be a fault waiting for a round trip.  A
 * process whose writes do not repeat (uniform random over a large heap)
 * gains nothing from it: its next page is anywhere, and sending recent
 * pages would only cost link time.  So the union of the windows is sent
 * only when at least HAUL_PC_HOT_REPEAT_PCT of the second window repeats
 * the first and the union is at most HAUL_PC_HOT_MAX_PAGES (the freeze
 * re-reads these pages to find the ones written since: postcopy.c).
 *
 * The hot set is only a hint: a page sent here and written again before the
 * freeze is named stale there, so the target fetches it; pages never sent
 * are fetched as always.  Any failure of the tracker means no prefetch, not
 * a failed migration.
 *
 * The tracker is not detached here but handed back: detaching lifts the
 * write protection of every page, and at 4 GiB that stalled the running
 * process for 213 ms (its largest gap before the freeze; the windows
 * themselves 51-78 ms).  Kept attached, it is freed with the migration,
 * once the source is frozen or gone (postcopy.c, haul_pc_free).
 */
#define LOG_PREFIX "migrate: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"
#include "pageserver/pageserver.h"
#include "tracker/tracker.h"

/* Pages of sorted, merged @a that are also in sorted, merged @b. */
uint64_t haul_pc_overlap(const struct trk_range *a, size_t na, const struct trk_range *b, size_t nb)
{
	uint64_t n = 0;
	size_t i = 0, j = 0;

	while (i < na && j < nb) {
		uint64_t as = a[i].start, ae = as + a[i].npages * HAUL_PAGE_SIZE;
		uint64_t bs = b[j].start, be = bs + b[j].npages * HAUL_PAGE_SIZE;
		uint64_t s = as > bs ? as : bs, e = ae < be ? ae : be;

		if (s < e)
			n += (e - s) / HAUL_PAGE_SIZE;
		if (ae <= be)
			i++;
		else
			j++;
	}
	return n;
}

/* The union of two sorted, merged lists as ps_ranges (sorted, merged); *n of them. */
int haul_pc_union(const struct trk_range *a, size_t na, const struct trk_range *b, size_t nb,
		  struct ps_range **out, size_t *n)
{
	struct ps_range *v = calloc(na + nb ? na + nb : 1, sizeof(*v));
	size_t i = 0, j = 0, k = 0;

	if (!v)
		return -ENOMEM;
	while (i < na || j < nb) {
		const struct trk_range *r =
			j >= nb || (i < na && a[i].start <= b[j].start) ? &a[i++] : &b[j++];
		uint64_t s = r->start, e = s + r->npages * HAUL_PAGE_SIZE;

		if (k && v[k - 1].addr + v[k - 1].npages * HAUL_PAGE_SIZE >= s) {
			uint64_t pe = v[k - 1].addr + v[k - 1].npages * HAUL_PAGE_SIZE;

			if (e > pe)
				v[k - 1].npages = (e - v[k - 1].addr) / HAUL_PAGE_SIZE;
		} else {
			v[k++] = (struct ps_range){s, r->npages};
		}
	}
	*out = v;
	*n = k;
	return 0;
}

/*
 * Keep of @v[0..*n) only what lies in private VMAs of @l: a shared memory
 * object's pages are restored with the object (DESIGN.md "Shared memory"),
 * not pushed page by page before its mapping exists.  0 or -ENOMEM.
 */
static int private_only(struct ps_range **v, size_t *n, const struct haul_layout *l)
{
	struct ps_range *o = NULL;
	size_t k = 0, cap = 0;

	for (size_t i = 0; i < *n; i++) {
		uint64_t s = (*v)[i].addr, e = s + (*v)[i].npages * HAUL_PAGE_SIZE;

		for (size_t j = 0; j < l->n; j++) {
			const struct haul_vma *m = &l->v[j];
			uint64_t cs = s > m->start ? s : m->start, ce = e < m->end ? e : m->end;

			if (cs >= ce || (m->flags & HAUL_VMA_SHARED))
				continue;
			if (k == cap) {
				struct ps_range *no =
					realloc(o, (cap = cap ? cap * 2 : 16) * sizeof(*o));

				if (!no) {
					free(o);
					return -ENOMEM;
				}
				o = no;
			}
			o[k++] = (struct ps_range){cs, (ce - cs) / HAUL_PAGE_SIZE};
		}
	}
	free(*v);
	*v = o;
	*n = k;
	return 0;
}

/* One window: the pages written during it (round @r, released by the caller). */
static int window(struct trk *t, struct trk_round *r)
{
	usleep(HAUL_PC_HOT_WINDOW_MS * 1000);
	return trk_round(t, r);
}

int haul_pc_hot_set(pid_t pid, struct trk **keep, struct ps_range **out, size_t *n, uint64_t *pages,
		    char *why, size_t wl)
{
	struct trk_opts o = {.backend = TRK_UFFD};
	struct trk_round r0 = {0}, r1 = {0}, r2 = {0};
	struct trk *t = NULL;
	uint64_t rep;
	int ret;

	*out = NULL;
	*n = 0;
	*pages = 0;
	*keep = NULL;
	ret = trk_open(pid, &o, &t);
	if (ret) {
		snprintf(why, wl, "no uffd tracker here (%s)", strerror(-ret));
		return 0;
	}
	ret = trk_round(t, &r0); /* protects every populated page: the windows start here */
	if (!ret)
		ret = window(t, &r1);
	if (!ret)
		ret = window(t, &r2);
	if (ret) {
		snprintf(why, wl, "the tracker failed (%s)", strerror(-ret));
		ret = 0;
		goto out;
	}
	rep = haul_pc_overlap(r2.dirty, r2.ndirty, r1.dirty, r1.ndirty);
	if (!r2.dirty_pages) {
		snprintf(why, wl, "it wrote nothing in %d ms", HAUL_PC_HOT_WINDOW_MS);
	} else if (rep * 100 < r2.dirty_pages * HAUL_PC_HOT_REPEAT_PCT) {
		snprintf(why, wl,
			 "its writes do not repeat (%llu of %llu pages written again within "
			 "%d ms): its next pages cannot be told from its last",
			 (unsigned long long)rep, (unsigned long long)r2.dirty_pages,
			 HAUL_PC_HOT_WINDOW_MS);
	} else {
		ret = haul_pc_union(r1.dirty, r1.ndirty, r2.dirty, r2.ndirty, out, n);
		if (!ret)
			ret = private_only(out, n, &r2.layout);
		for (size_t i = 0; !ret && i < *n; i++)
			*pages += (*out)[i].npages;
		if (!ret && *pages > HAUL_PC_HOT_MAX_PAGES) {
			snprintf(why, wl, "its working set (%llu pages) exceeds %d pages",
				 (unsigned long long)*pages, HAUL_PC_HOT_MAX_PAGES);
			free(*out);
			*out = NULL;
			*n = 0;
			*pages = 0;
		}
	}
out:
	trk_round_release(&r0);
	trk_round_release(&r1);
	trk_round_release(&r2);
	*keep = t;
	return ret;
}
