/*
 * vmcheck.c - which VMAs the dump can carry exactly, and the guard pages.
 *
 * The rule: the image records every attribute of a VMA the restore must
 * reproduce.  /proc/PID/smaps VmFlags shows them all; common/vma.c sorts
 * each mnemonic into carried, derived (the kernel sets it again from what
 * is carried) or uncarried (haul_vma.uncarried), and DESIGN.md lists the
 * table.  rst_vma_refusal() refuses a layout holding an uncarried flag, or
 * a MAP_PRIVATE mapping of shared memory: such a mapping shows the
 * object's current pages where it never wrote, and haul restores it as
 * private memory, which would show zeros or stale copies there.  Several
 * MAP_SHARED mappings of one object are fine: the restorer creates the
 * object once and maps it at each (shm_restore.c).
 *
 * Guard pages (MADV_GUARD_INSTALL, VmFlags "gu") are PTE markers: pagemap
 * shows them as swapped with bit 58 (PM_GUARD_REGION), and no read reaches
 * them, not even /proc/PID/mem.  rst_vma_guards() lists their runs for the
 * image; the restorer installs them again, the page copy skips them.
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/vma.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"

/* pagemap entries read per pread while looking for guard pages */
#define GUARD_SCAN_PAGES 4096

int rst_vma_refusal(const struct haul_layout *l, char *why, size_t whylen)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i];
		const char *p = v->path ? v->path : "(anon)";

		if (!haul_vma_is_memory(v))
			continue;
		if (v->uncarried[0]) {
			snprintf(why, whylen,
				 "VMA %#" PRIx64 "-%#" PRIx64 " %s is %s (VmFlags \"%s\"), which "
				 "haul cannot carry; unmap it before moving the process",
				 v->start, v->end, p, haul_vmflag_what(v->uncarried), v->uncarried);
			return -EOPNOTSUPP;
		}
		if (!(v->flags & HAUL_VMA_SHMEM))
			continue;
		if (!(v->flags & HAUL_VMA_SHARED)) {
			snprintf(why, whylen,
				 "VMA %#" PRIx64 "-%#" PRIx64 " is a private mapping of shared "
				 "memory %s (inode %" PRIu64 "); haul cannot carry the object it "
				 "reads through; map it MAP_SHARED or copy it to private memory",
				 v->start, v->end, p, v->ino);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

int rst_vma_precheck(pid_t pid, char *why, size_t whylen)
{
	struct haul_layout l;
	int ret = rst_layout_read_flags(pid, &l);

	if (ret) {
		snprintf(why, whylen, "cannot read the VMAs of pid %d: %s", (int)pid,
			 strerror(-ret));
		return ret;
	}
	ret = rst_vma_refusal(&l, why, whylen);
	haul_layout_release(&l);
	return ret;
}

/* Append [@s, @e) to @g (grown by doubling). */
static int guard_add(struct rst_guards *g, uint64_t s, uint64_t e)
{
	if (g->n && g->r[g->n - 1].end == s) {
		g->r[g->n - 1].end = e;
		return 0;
	}
	if (g->n == g->cap) {
		size_t nc = g->cap ? g->cap * 2 : 8;
		struct rst_guard_range *nr = realloc(g->r, nc * sizeof(*nr));

		if (!nr)
			return -ENOMEM;
		g->r = nr;
		g->cap = nc;
	}
	g->r[g->n].start = s;
	g->r[g->n].end = e;
	g->n++;
	return 0;
}

int rst_vma_guards(int pagemap, const struct haul_vma *v, struct rst_guards *g)
{
	uint64_t pm[GUARD_SCAN_PAGES];

	g->n = 0;
	if (!(v->flags & HAUL_VMA_GUARD))
		return 0;
	for (uint64_t a = v->start; a < v->end;) {
		uint64_t n = (v->end - a) >> HAUL_PAGE_SHIFT;
		ssize_t got;

		if (n > GUARD_SCAN_PAGES)
			n = GUARD_SCAN_PAGES;
		got = pread(pagemap, pm, n * 8, (off_t)((a >> HAUL_PAGE_SHIFT) * 8));
		if (got != (ssize_t)(n * 8))
			return got < 0 ? -errno : -EIO;
		for (uint64_t i = 0; i < n; i++)
			if (rst_pm_is_guard(pm[i])) {
				int ret = guard_add(g, a + i * HAUL_PAGE_SIZE,
						    a + (i + 1) * HAUL_PAGE_SIZE);

				if (ret)
					return ret;
			}
		a += n * HAUL_PAGE_SIZE;
	}
	return 0;
}

void rst_guards_release(struct rst_guards *g)
{
	free(g->r);
	g->r = NULL;
	g->n = g->cap = 0;
}

/*
 * The resource (res_int.h): smaps at the precheck only (too slow for the
 * freeze); the dump judges the layout it reads (rst_vma_refusal).
 */
static int vmas_precheck(pid_t pid, pid_t tracer, char *why, size_t wl)
{
	return tracer ? 0 : rst_vma_precheck(pid, why, wl);
}

const struct rst_res_ops rst_res_vmas = {
	.name = "memory mappings",
	.precheck = vmas_precheck,
};
