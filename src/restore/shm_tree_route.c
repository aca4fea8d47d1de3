/*
 * shm_tree_route.c - one sender per page of shared memory for the
 * trackers of a tree (haul migrate of a process tree, one tracker per
 * process).
 *
 * uffd-wp tracks stores per page table: a store by process B through its
 * mapping of a shared object dirties B's PTE only, so each process's
 * tracker registers every one of its own mappings, and a store through any
 * mapping is seen by the tracker of the process that made it.  But if each
 * process sent what its own tracker saw, two sessions could carry the same
 * object page: A's older copy, read before B's store, could reach the
 * target after B's newer one (sessions are not ordered with each other)
 * and no later round would correct it.  The same holds for round 1, which
 * reports every mapping's data extents.  So a dirty page of a shared
 * object is routed to one owner: the first process in tree order whose
 * layout maps that object offset; the owner's session reads it through its
 * own mapping and sends it, every version of it, in order.  On the target
 * the stubs map one object (shm_tree.c), so one copy reaches every
 * process.  Private memory stays with the process that wrote it.
 *
 * An object is (dev, ino) of the source, as in the layouts; offsets are
 * bytes.  The table is rebuilt from the layouts of each round (a VMA that
 * moved or went changes the owners): rst_shm_route_rounds takes the
 * rounds of every process of the tree, scanned, none sent yet, and leaves
 * in each one's dirty list what its session must send.  An object range
 * whose owner changed since the last round (the old owner's mapping went
 * or moved, and a page it read meanwhile may have read as zeros) is sent
 * again by the new owner (the data extents of its mapping), since nobody
 * may write it again.  Gone ranges stay
 * the process's own: a zero hole is written on the target only where its
 * stub's mapping may hold data, never into a mapping made new (a moved or
 * replaced one), so it cannot clear another process's page.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/policy.h"
#include "common/vma.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "tracker/tracker.h"

struct route_vma {
	uint64_t start, end, pgoff, dev, ino;
};

struct route_own {
	uint64_t dev, ino, s, e; /* object offsets [s, e) */
	size_t proc;
	uint64_t base; /* the owner's address of offset 0 */
};

struct rst_shm_route {
	struct route_vma **v; /* per process: its shared VMAs, by address */
	size_t *nv;
	size_t n;
	struct route_own *own;
	size_t nown, capown;
};

static bool shared_object(const struct haul_vma *v)
{
	return haul_vma_is_memory(v) && (v->flags & HAUL_VMA_SHARED) &&
	       ((v->flags & HAUL_VMA_SHMEM) || rst_shm_posix_path(v->path));
}

static int own_add(struct rst_shm_route *r, const struct route_vma *v, uint64_t s, uint64_t e,
		   size_t proc)
{
	if (r->nown == r->capown) {
		size_t cap = r->capown ? 2 * r->capown : 32;
		struct route_own *g = realloc(r->own, cap * sizeof(*g));

		if (!g)
			return -ENOMEM;
		r->own = g;
		r->capown = cap;
	}
	r->own[r->nown++] = (struct route_own){v->dev, v->ino, s, e, proc, v->start - v->pgoff};
	return 0;
}

/* Give [@s, @e) of @v's object to @proc where no earlier process owns it. */
static int own_rest(struct rst_shm_route *r, const struct route_vma *v, size_t proc)
{
	uint64_t s = v->pgoff, e = v->pgoff + (v->end - v->start);

	while (s < e) {
		uint64_t next = e;
		bool owned = false;

		for (size_t k = 0; k < r->nown && !owned; k++) {
			const struct route_own *o = &r->own[k];

			if (o->dev != v->dev || o->ino != v->ino)
				continue;
			if (o->s <= s && s < o->e) {
				s = o->e; /* owned up to there: look again from it */
				owned = true;
			} else if (o->s > s && o->s < next) {
				next = o->s;
			}
		}
		if (owned)
			continue;
		if (own_add(r, v, s, next, proc))
			return -ENOMEM;
		s = next;
	}
	return 0;
}

int rst_shm_route_new(const struct haul_layout *const *l, size_t n, struct rst_shm_route **out)
{
	struct rst_shm_route *r = calloc(1, sizeof(*r));
	int ret = 0;

	*out = NULL;
	if (!r)
		return -ENOMEM;
	r->n = n;
	r->v = calloc(n ? n : 1, sizeof(*r->v));
	r->nv = calloc(n ? n : 1, sizeof(*r->nv));
	if (!r->v || !r->nv)
		ret = -ENOMEM;
	for (size_t i = 0; i < n && !ret; i++) {
		for (size_t k = 0; l[i] && k < l[i]->n; k++) {
			const struct haul_vma *v = &l[i]->v[k];

			if (!shared_object(v))
				continue;
			if (!r->v[i]) {
				r->v[i] = calloc(l[i]->n, sizeof(*r->v[i]));
				if (!r->v[i]) {
					ret = -ENOMEM;
					break;
				}
			}
			r->v[i][r->nv[i]++] =
				(struct route_vma){v->start, v->end, v->pgoff, v->dev, v->ino};
			ret = own_rest(r, &r->v[i][r->nv[i] - 1], i);
			if (ret)
				break;
		}
	}
	if (ret) {
		rst_shm_route_free(r);
		return ret;
	}
	*out = r;
	return 0;
}

void rst_shm_route_free(struct rst_shm_route *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		free(r->v ? r->v[i] : NULL);
	free(r->v);
	free(r->nv);
	free(r->own);
	free(r);
}

/* Offsets [@s, @e) of @v's object to their owners, in offset order. */
static int route_object(const struct rst_shm_route *r, const struct route_vma *v, uint64_t s,
			uint64_t e, rst_shm_route_fn fn, void *arg)
{
	while (s < e) {
		const struct route_own *o = NULL;
		uint64_t stop;
		int ret;

		for (size_t k = 0; k < r->nown && !o; k++)
			if (r->own[k].dev == v->dev && r->own[k].ino == v->ino &&
			    r->own[k].s <= s && s < r->own[k].e)
				o = &r->own[k];
		if (!o)
			return -ENOENT; /* a VMA the table was not built with */
		stop = o->e < e ? o->e : e;
		ret = fn(arg, o->proc, o->base + s, (stop - s) >> HAUL_PAGE_SHIFT);
		if (ret)
			return ret;
		s = stop;
	}
	return 0;
}

int rst_shm_route(const struct rst_shm_route *r, size_t i, uint64_t addr, uint64_t npages,
		  rst_shm_route_fn fn, void *arg)
{
	uint64_t end = addr + (npages << HAUL_PAGE_SHIFT);

	if (i >= r->n)
		return -EINVAL;
	while (addr < end) {
		const struct route_vma *v = NULL;
		uint64_t stop = end;
		int ret;

		/* the shared VMA holding @addr, else the next one's start bounds a private run */
		for (size_t k = 0; k < r->nv[i]; k++) {
			const struct route_vma *w = &r->v[i][k];

			if (w->start <= addr && addr < w->end) {
				v = w;
				stop = w->end < end ? w->end : end;
				break;
			}
			if (w->start > addr && w->start < stop)
				stop = w->start;
		}
		if (v)
			ret = route_object(r, v, v->pgoff + (addr - v->start),
					   v->pgoff + (stop - v->start), fn, arg);
		else
			ret = fn(arg, i, addr, (stop - addr) >> HAUL_PAGE_SHIFT);
		if (ret)
			return ret;
		addr = stop;
	}
	return 0;
}

/* Per-process lists of routed ranges. */
struct routed {
	struct trk_range *r;
	size_t n, cap;
};

static int routed_add(void *arg, size_t proc, uint64_t addr, uint64_t npages)
{
	struct routed *d = &((struct routed *)arg)[proc];

	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 64;
		struct trk_range *g = realloc(d->r, cap * sizeof(*g));

		if (!g)
			return -ENOMEM;
		d->r = g;
		d->cap = cap;
	}
	d->r[d->n++] = (struct trk_range){addr, npages};
	return 0;
}

static int by_start(const void *a, const void *b)
{
	const struct trk_range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

/* Sort and merge @d (overlaps too: two processes may route the same page); its page count. */
static uint64_t routed_merge(struct routed *d)
{
	size_t w = 0;
	uint64_t pages = 0;

	if (d->n > 1) /* qsort must not be given a NULL array, even empty */
		qsort(d->r, d->n, sizeof(*d->r), by_start);
	for (size_t k = 0; k < d->n; k++) {
		struct trk_range *p = w ? &d->r[w - 1] : NULL;
		uint64_t end = d->r[k].start + (d->r[k].npages << HAUL_PAGE_SHIFT);

		if (p && d->r[k].start <= p->start + (p->npages << HAUL_PAGE_SHIFT)) {
			if (end > p->start + (p->npages << HAUL_PAGE_SHIFT))
				p->npages = (end - p->start) >> HAUL_PAGE_SHIFT;
			continue;
		}
		d->r[w++] = d->r[k];
	}
	d->n = w;
	for (size_t k = 0; k < w; k++)
		pages += d->r[k].npages;
	return pages;
}

/* What reown_extent adds to: the owner's list, clipped to the re-owned addresses. */
struct reown {
	struct routed *d;
	size_t proc;
	uint64_t lo, hi;
};

static int reown_extent(void *arg, uint64_t s, uint64_t e)
{
	struct reown *x = arg;

	s = s > x->lo ? s : x->lo;
	e = e < x->hi ? e : x->hi;
	return s < e ? routed_add(x->d, x->proc, s, (e - s) >> HAUL_PAGE_SHIFT) : 0;
}

/*
 * Offsets [@s, @e) of owner piece @o changed hands since the last round
 * (its old owner's mapping went or moved: what that one read meanwhile may
 * be zeros): the new owner sends them, the data extents of its mapping
 * (@pids NULL: the whole range).
 */
static int reown(const struct rst_shm_route *t, const struct route_own *o, uint64_t s, uint64_t e,
		 const pid_t *pids, struct routed *d)
{
	struct reown x = {d, o->proc, o->base + s, o->base + e};

	for (size_t k = 0; pids && k < t->nv[o->proc]; k++) {
		const struct route_vma *w = &t->v[o->proc][k];
		struct haul_vma v;

		if (w->dev != o->dev || w->ino != o->ino || w->start - w->pgoff != o->base ||
		    w->end <= x.lo || w->start >= x.hi)
			continue;
		memset(&v, 0, sizeof(v));
		v.start = w->start;
		v.end = w->end;
		v.pgoff = w->pgoff;
		/* a VMA gone meanwhile: its next round reports it */
		if (haul_vma_data_walk(pids[o->proc], &v, reown_extent, &x) == -ENOMEM)
			return -ENOMEM;
	}
	return pids ? 0 : routed_add(d, o->proc, x.lo, (x.hi - x.lo) >> HAUL_PAGE_SHIFT);
}

/* Every owner piece of @t that @prev had another owner or address for: reown. */
static int reown_changed(const struct rst_shm_route *t, const struct rst_shm_route *prev,
			 const pid_t *pids, struct routed *d)
{
	for (size_t i = 0; prev && i < t->nown; i++) {
		const struct route_own *o = &t->own[i];

		for (size_t k = 0; k < prev->nown; k++) {
			const struct route_own *q = &prev->own[k];
			uint64_t s = o->s > q->s ? o->s : q->s, e = o->e < q->e ? o->e : q->e;
			int ret;

			if (q->dev != o->dev || q->ino != o->ino || s >= e ||
			    (q->proc == o->proc && q->base == o->base))
				continue;
			ret = reown(t, o, s, e, pids, d);
			if (ret)
				return ret;
		}
	}
	return 0;
}

int rst_shm_route_rounds(struct rst_shm_route **prev, const pid_t *pids, struct trk_round *r,
			 size_t n)
{
	const struct haul_layout **l = calloc(n ? n : 1, sizeof(*l));
	struct routed *d = calloc(n ? n : 1, sizeof(*d));
	struct rst_shm_route *t = NULL;
	int ret = l && d ? 0 : -ENOMEM;

	for (size_t i = 0; i < n && !ret; i++)
		l[i] = &r[i].layout;
	if (!ret)
		ret = rst_shm_route_new(l, n, &t);
	for (size_t i = 0; i < n && !ret; i++)
		for (size_t k = 0; k < r[i].ndirty && !ret; k++)
			ret = rst_shm_route(t, i, r[i].dirty[k].start, r[i].dirty[k].npages,
					    routed_add, d);
	if (!ret)
		ret = reown_changed(t, *prev, pids, d);
	for (size_t i = 0; i < n && !ret; i++) {
		r[i].dirty_pages = routed_merge(&d[i]);
		free(r[i].dirty);
		r[i].dirty = d[i].r;
		r[i].ndirty = d[i].n;
		d[i].r = NULL;
	}
	for (size_t i = 0; d && i < n; i++)
		free(d[i].r);
	free(d);
	free(l);
	if (ret) {
		rst_shm_route_free(t);
		return ret;
	}
	rst_shm_route_free(*prev);
	*prev = t;
	return 0;
}
