/*
 * alias.c - dirty pages of one shared memory object seen through several
 * mappings.
 *
 * Page-table trackers (uffd-wp, soft-dirty) see a store only through the
 * mapping it went through.  When two VMAs of one process map the same pages
 * of one shmem object (two mmaps of one memfd, SysV shmat twice, a shared
 * anonymous mapping duplicated by mremap(old_size 0)), a store through B
 * leaves A's copy stale in the receiver; the restorer maps both onto one
 * object again, so a stale copy of A written after B's fresh one would undo
 * the store.  The core therefore reports a page dirty at every address
 * where the process maps it: all copies of one round hold the same bytes.
 * The object is (dev, ino) of the VMA; pgoff says which of its pages a VMA
 * shows.  O(shmem VMAs^2 + dirty ranges) per round: nothing without aliases.
 *
 * A page-table scan also misses what the object holds but the process's
 * page tables do not map: pages written through an fd (a memfd's write())
 * or another mapping before we looked, or swapped out.  So a shmem VMA new
 * to the tracker (round 1, fresh) or replaced reports, besides its populated
 * pages, every page of its object that holds data (SEEK_DATA on the object through
 * /proc/PID/map_files): trk_shmem_data.  Later writes through an fd stay
 * invisible, like other processes' (DESIGN.md "Tracker", Limits).
 */
#include <errno.h>
#include <string.h>

#include "common/vma.h"
#include "tracker/trk_int.h"

/* shmem, or POSIX shm (a /dev/shm file), which a restore may recreate from its pages */
static bool is_shmem(const struct haul_vma *v)
{
	return (v->flags & HAUL_VMA_SHARED) &&
	       ((v->flags & HAUL_VMA_SHMEM) || (v->path && !strncmp(v->path, "/dev/shm/", 9)));
}

/* Add to @out the part of @dirty inside @a, moved to where @b shows the same object pages. */
static int alias_pair(const struct trk_rl *dirty, const struct haul_vma *a,
		      const struct haul_vma *b, struct trk_rl *out)
{
	uint64_t os = a->pgoff > b->pgoff ? a->pgoff : b->pgoff;
	uint64_t ae = a->pgoff + (a->end - a->start), be = b->pgoff + (b->end - b->start);
	uint64_t oe = ae < be ? ae : be, s, e;

	if (os >= oe)
		return 0;
	s = a->start + (os - a->pgoff); /* the overlap, in a's addresses */
	e = a->start + (oe - a->pgoff);
	for (size_t i = trk_rl_bsearch(dirty, s); i < dirty->n; i++) {
		uint64_t rs = dirty->r[i].start, re = rs + dirty->r[i].npages * TRK_PAGE;
		int ret;

		if (rs >= e)
			break;
		if (rs < s)
			rs = s;
		if (re > e)
			re = e;
		/* s shows object offset os, which b shows at b->start + (os - b->pgoff) */
		ret = trk_rl_add(out, b->start + (os - b->pgoff) + (rs - s), (re - rs) / TRK_PAGE);
		if (ret)
			return ret;
	}
	return 0;
}

int trk_shmem_aliases(const struct haul_layout *l, struct trk_rl *dirty)
{
	struct trk_rl add = {0};
	int ret = 0;

	for (size_t i = 0; i < l->n && !ret; i++) {
		const struct haul_vma *a = &l->v[i];

		if (!is_shmem(a))
			continue;
		for (size_t j = 0; j < l->n && !ret; j++) {
			const struct haul_vma *b = &l->v[j];

			if (j == i || !is_shmem(b) || a->dev != b->dev || a->ino != b->ino)
				continue;
			ret = alias_pair(dirty, a, b, &add);
		}
	}
	if (!ret && add.n) {
		ret = trk_rl_append(dirty, &add);
		if (!ret)
			ret = trk_rl_normalize(dirty);
	}
	trk_rl_release(&add);
	return ret;
}

static int add_pages(void *arg, uint64_t start, uint64_t end)
{
	start &= ~(TRK_PAGE - 1);
	return trk_rl_add(arg, start, (end - start + TRK_PAGE - 1) / TRK_PAGE);
}

/* Add to @dirty the pages of shmem VMA @v (of @pid) whose object holds data. */
static int vma_data(pid_t pid, const struct haul_vma *v, struct trk_rl *dirty)
{
	int ret = haul_vma_data_walk(pid, v, add_pages, dirty);

	return ret == -ENOENT ? 0 : ret; /* unmapped meanwhile: next round says so */
}

int trk_shmem_data(pid_t pid, const struct haul_layout *l, const struct trk_rl *whole,
		   struct trk_rl *dirty)
{
	struct trk_rl add = {0}, in = {0};
	int ret = 0;

	for (size_t i = 0; i < l->n && !ret; i++) {
		const struct haul_vma *v = &l->v[i];
		size_t k = trk_rl_bsearch(whole, v->start);

		if (!is_shmem(v) || k == whole->n || whole->r[k].start >= v->end)
			continue;
		ret = vma_data(pid, v, &add);
	}
	/* only the parts sent whole (fresh or replaced): a kept part's pages were sent already */
	if (!ret && add.n)
		ret = trk_rl_normalize(&add);
	if (!ret && add.n)
		ret = trk_rl_and(&add, whole, &in);
	if (!ret && in.n) {
		ret = trk_rl_append(dirty, &in);
		if (!ret)
			ret = trk_rl_normalize(dirty);
	}
	trk_rl_release(&add);
	trk_rl_release(&in);
	return ret;
}
