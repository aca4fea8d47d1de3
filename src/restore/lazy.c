/*
 * lazy.c - the userfaultfd fault server of post-copy (lazy) restore.
 *
 * The restored process runs before its anonymous memory has arrived; that
 * memory is registered with userfaultfd in missing mode (created inside the
 * process by an injected syscall, see rst_lazy_uffd_create()).  One fault
 * thread owns the uffd:
 *  - a fault is answered with a 64 KiB-aligned window around it (clipped
 *    to its VMA and to pages still missing): the fault thread hands its
 *    fetch to a fault-fetch thread and goes on; the window comes back as
 *    an urgent chunk, copied before any background slice (UFFDIO_COPY,
 *    which wakes every thread waiting in it; runs of all-zero pages:
 *    UFFDIO_ZEROPAGE, nothing allocated).  A fault inside a window in
 *    flight waits for that window instead of fetching it again;
 *  - meanwhile, and between faults, chunks that the fetcher threads fetched
 *    ahead are copied in 64 KiB slices, so that a fault waits for at most
 *    one slice once its window is there, and a slow fault fetch does not
 *    stop the push;
 *  - the fetchers claim the next missing pages after the last fault
 *    ("continue forward from where the process is"), wrapping around, until
 *    every page has been claimed;
 *  - events (UNMAP, REMAP, REMOVE, FORK) are read as they come, because the
 *    process blocks until they are read.
 * Pages already in the process when it is attached (written by the
 * restorer) count as arrived; with a complete hybrid state (State.complete)
 * the absent ones outside the stale runs count as zero, as in pre-copy.
 *
 * Why only the fault thread copies: after a REMOVE event is read the kernel
 * zaps the pages, and a copy made after the zap would put stale data back.
 * With one copier, every copy checks the present bitmap after the events
 * before it were applied, so a zapped page is never refilled from the source
 * (it reads as zeros, as madvise(DONTNEED) promises).  The fetchers and the
 * fault-fetch threads only read the source into buffers; what they fetched
 * is placed by source address when it is copied (events since may have
 * moved or dropped it).
 *
 * State, per lazy region (a piece of a registered VMA, with the source
 * address it had when frozen; a remap moves pieces): bitmaps `done` (present
 * or dropped: nothing to fetch), `zero` (zapped by the process: faults get
 * UFFDIO_ZEROPAGE) and `claimed` (a fetcher took it).  Regions and bitmaps
 * change only on the fault thread, under lz->lock because the fetchers read
 * them.  When nothing is missing any more the uffd is closed: that
 * unregisters everything and the process no longer depends on us.
 *
 * Fork: the restored process may fork during post-copy.  The child shares
 * the pages that were present and misses the others, in VMAs registered with
 * a new uffd that the FORK event hands us.  It becomes a second "mm" served
 * exactly like the first (its own regions and bitmaps, copied from its
 * parent's at the fork; faults and background push by source address), until
 * it has everything, exits or execs (copies then say ESRCH).  On failure the
 * restored process and every descendant are killed: they share its memory.
 *
 * Copy races (uffd ioctls): EEXIST means the page is there already (count
 * it present); EAGAIN with progress is a partial copy (carry on), without
 * progress the address space is changing (an event is queued: read events,
 * then retry); ESRCH: the process is gone; ENOENT: the VMA is gone (skip).
 *
 * This file holds the public calls (lazy.h): registration, attach, start,
 * wait, free.  The server itself: lazy_region.c (regions, histogram),
 * lazy_copy.c (copies), lazy_fault.c (events, fault thread), lazy_fetch.c
 * (fetchers); their shared declarations are in lazy_int.h.
 */
#define LOG_PREFIX "lazy: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/probe.h"
#include "common/proc.h"
#include "restore/lazy_int.h"
#include "restore/restore.h"

/* ---- public ------------------------------------------------------------------ */

bool rst_lazy_vma_ok(const struct haul_vma *v)
{
	/*
	 * userfaultfd refuses VM_DROPPABLE; guard pages cannot be read from
	 * the source: both go before the resume (the guards are installed
	 * over what was sent).
	 */
	if (!haul_vma_is_memory(v) ||
	    (v->flags & (HAUL_VMA_LOCKED | HAUL_VMA_DROPPABLE | HAUL_VMA_GUARD)))
		return false;
	/*
	 * SysV segments are shmem behind their own vm_ops: userfaultfd's
	 * MISSING mode refuses them (vma_is_shmem), so they go eagerly.
	 */
	if (v->flags & HAUL_VMA_SHMEM)
		return !v->path || strncmp(v->path, "/SYSV", 5) != 0;
	return (v->flags & HAUL_VMA_ANON) && !(v->flags & HAUL_VMA_SHARED);
}

int rst_lazy_uffd_create(struct rsys *r, const struct haul_layout *vmas, int *uffd)
{
	uint64_t args[6] = {O_CLOEXEC | O_NONBLOCK}, features = 0, want = LAZY_EVENTS;
	struct uffdio_api api = {.api = UFFD_API};
	int pidfd, fd = -1, ret;
	long rfd, rv;

	for (size_t i = 0; i < vmas->n; i++) {
		if (!rst_lazy_vma_ok(&vmas->v[i])) {
			pr_err("vma %#lx-%#lx of pid %d cannot be restored lazily (only private "
			       "anonymous and shmem memory can)",
			       (unsigned long)vmas->v[i].start, (unsigned long)vmas->v[i].end,
			       r->pid);
			return -EINVAL;
		}
		if (vmas->v[i].flags & HAUL_VMA_SHMEM)
			want |= UFFD_FEATURE_MISSING_SHMEM;
	}
	ret = probe_uffd_features(&features);
	if (ret) {
		pr_err_r(ret, "userfaultfd is not available, post-copy cannot run");
		return ret == -ENOSYS ? -EOPNOTSUPP : ret;
	}
	if ((features & want) != want) {
		pr_err("userfaultfd lacks features %#lx needed for post-copy (kernel offers %#lx)",
		       (unsigned long)(want & ~features), (unsigned long)features);
		return -EOPNOTSUPP;
	}
	/* optional: the faulting thread's id lets each thread keep its own fault window */
	want |= features & UFFD_FEATURE_THREAD_ID;

	ret = rsys_call(r, SYS_userfaultfd, args, &rfd);
	if (ret)
		return ret;
	if (rfd < 0) {
		pr_err_r((int)rfd, "cannot create a userfaultfd inside pid %d", r->pid);
		return (int)rfd;
	}
	pidfd = (int)syscall(SYS_pidfd_open, r->pid, 0);
	if (pidfd >= 0) {
		fd = (int)syscall(SYS_pidfd_getfd, pidfd, (int)rfd, 0);
		ret = fd < 0 ? -errno : 0;
		close(pidfd);
	} else {
		ret = -errno;
	}
	args[0] = (uint64_t)rfd;
	if (rsys_call(r, SYS_close, args, &rv) == 0 && rv < 0)
		pr_warn("cannot close uffd %ld inside pid %d: %s", rfd, r->pid, strerror((int)-rv));
	if (ret) {
		pr_err_r(ret, "cannot take the userfaultfd of pid %d", r->pid);
		return ret;
	}

	api.features = want;
	if (ioctl(fd, UFFDIO_API, &api)) {
		ret = -errno;
		pr_err_r(ret, "cannot enable userfaultfd features %#lx for pid %d",
			 (unsigned long)want, r->pid);
		goto err;
	}
	for (size_t i = 0; i < vmas->n; i++) {
		const struct haul_vma *v = &vmas->v[i];
		struct uffdio_register reg = {.range = {v->start, v->end - v->start},
					      .mode = UFFDIO_REGISTER_MODE_MISSING};

		if (ioctl(fd, UFFDIO_REGISTER, &reg)) {
			ret = -errno;
			pr_err_r(ret, "cannot register %#lx-%#lx of pid %d with userfaultfd",
				 (unsigned long)v->start, (unsigned long)v->end, r->pid);
			goto err;
		}
		if (!(reg.ioctls & (1ull << _UFFDIO_COPY))) {
			pr_err("userfaultfd cannot copy into %#lx-%#lx of pid %d",
			       (unsigned long)v->start, (unsigned long)v->end, r->pid);
			ret = -EOPNOTSUPP;
			goto err;
		}
	}
	*uffd = fd;
	return 0;
err:
	close(fd);
	return ret;
}

/* Whether [addr, addr + npages pages) lies in lazy memory of @v (NULL: no VMA there). */
static bool zap_ok(const struct haul_vma *v, uint64_t addr, uint64_t npages, pid_t pid)
{
	if (v && rst_lazy_vma_ok(v) && addr >= v->start && addr + npages * PG <= v->end)
		return true;
	pr_err("stale pages %#lx-%#lx of pid %d are not inside lazy memory: they must be sent "
	       "again before resume",
	       (unsigned long)addr, (unsigned long)(addr + npages * PG), pid);
	return false;
}

int rst_lazy_zap(struct rsys *r, const struct haul_vma *v, uint64_t addr, uint64_t npages)
{
	uint64_t args[6] = {addr, npages * PG,
			    v->flags & (HAUL_VMA_SHMEM | HAUL_VMA_SHARED) ? MADV_REMOVE
									  : MADV_DONTNEED};
	long rv;
	int ret;

	if (!zap_ok(v, addr, npages, r->pid))
		return -EINVAL;
	ret = rsys_call(r, SYS_madvise, args, &rv);
	if (!ret && rv < 0)
		ret = (int)rv;
	if (ret)
		pr_err_r(ret, "cannot drop stale pages %#lx-%#lx of pid %d", (unsigned long)addr,
			 (unsigned long)(addr + npages * PG), r->pid);
	return ret;
}

/* Mark [s, e) of the restored process present (found populated). Before start. */
static void mark_range(struct rst_lazy *lz, uint64_t s, uint64_t e)
{
	struct lz_mm *mm = lz->mm[0];

	for (size_t k = 0; k < mm->nr; k++) {
		struct lz_region *rg = &mm->r[k];
		uint64_t a = s > rg->start ? s : rg->start, b = e < rg->end ? e : rg->end;

		if (a < b)
			rst_lz_mark_done(lz, mm, rg, (a - rg->start) / PG, (b - a) / PG);
	}
}

/*
 * Pages already in the stub were written by the restorer on purpose (eager
 * pages, pre-copy rounds): they need no fetch, and a restorer that touches
 * them during the resume then never waits for the source.  PAGEMAP_SCAN
 * reports populated ranges only (fast on sparse memory); without it, the
 * pagemap entries are read.
 */
static int mark_populated(struct rst_lazy *lz, pid_t pid)
{
	struct lz_mm *mm = lz->mm[0];
	uint64_t before = lz->missing;
	char path[64];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	for (size_t k = 0; !ret && k < mm->nr; k++) {
		uint64_t start = mm->r[k].start, end = mm->r[k].end;

		if (probe_pagemap_scan()) {
			struct page_region v[64];
			struct pm_scan_arg a = {.size = sizeof(a),
						.start = start,
						.end = end,
						.vec = (uint64_t)(uintptr_t)v,
						.vec_len = 64,
						.category_anyof_mask =
							PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
						.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED};

			while (a.start < end) {
				long n = ioctl(fd, PAGEMAP_SCAN, &a);

				if (n < 0) {
					ret = -errno;
					break;
				}
				for (long i = 0; i < n; i++)
					mark_range(lz, v[i].start, v[i].end);
				if (a.walk_end <= a.start)
					break;
				a.start = a.walk_end;
			}
		} else {
			uint64_t e[512];

			for (uint64_t a = start; !ret && a < end; a += 512 * PG) {
				size_t cnt = (end - a) / PG < 512 ? (end - a) / PG : 512;
				ssize_t got = pread(fd, e, cnt * 8, (off_t)(a / PG * 8));

				if (got != (ssize_t)(cnt * 8)) {
					ret = got < 0 ? -errno : -EIO;
					break;
				}
				for (size_t i = 0; i < cnt; i++)
					if (e[i] & (PM_ENTRY_PRESENT | PM_ENTRY_SWAPPED))
						mark_range(lz, a + i * PG, a + (i + 1) * PG);
			}
		}
	}
	close(fd);
	lz->st.present_pages = before - lz->missing; /* before start: no other thread yet */
	if (ret)
		pr_err_r(ret, "cannot read which pages of pid %d are present", (int)pid);
	else if (before != lz->missing)
		pr_debug("%lu pages of pid %d are in place already",
			 (unsigned long)(before - lz->missing), (int)pid);
	return ret;
}

/* Set bits [i, i + n) of @b, a word at a time. */
static void bits_set_range(uint64_t *b, uint64_t i, uint64_t n)
{
	for (uint64_t e = i + n; i < e;) {
		uint64_t k = i % 64, m = e - i < 64 - k ? e - i : 64 - k;

		b[i / 64] |= (m == 64 ? ~0ull : ((1ull << m) - 1)) << k;
		i += m;
	}
}

/*
 * --hybrid's complete state (rst_lazy_hook.complete): every page of the
 * registered VMAs outside the stale runs @s is in place or zero, as after
 * pre-copy.  They are all marked done and zero without looking which are
 * present (mark_populated's PAGEMAP_SCAN took 10 ms at 4 GiB): a present
 * page never faults, an absent one faults and gets the zero page, and
 * nothing is fetched; only the stale pages (zapped) are missing.  A word of
 * the bitmaps at a time: 4 GiB is 16 k words.  Before start.
 */
static int settle_complete(struct rst_lazy *lz, const struct rst_lazy_range *s, size_t n)
{
	struct lz_mm *mm = lz->mm[0];

	for (size_t k = 0; k < mm->nr; k++) {
		struct lz_region *rg = &mm->r[k];
		uint64_t pages = (rg->end - rg->start) / PG, *keep = bits_new(pages);

		if (!keep)
			return -ENOMEM;
		for (size_t j = 0; j < n; j++) {
			uint64_t a = s[j].start > rg->start ? s[j].start : rg->start;
			uint64_t b = s[j].end < rg->end ? s[j].end : rg->end;

			if (a < b)
				bits_set_range(keep, (a - rg->start) / PG, (b - a) / PG);
		}
		for (uint64_t w = 0; w * 64 < pages; w++) {
			uint64_t valid =
				pages - w * 64 >= 64 ? ~0ull : (1ull << (pages - w * 64)) - 1;
			uint64_t m = ~keep[w] & ~rg->done[w] & valid, c = __builtin_popcountll(m);

			rg->zero[w] |= m;
			rg->done[w] |= m;
			rg->missing -= c;
			mm->missing -= c;
			lz->missing -= c;
			lz->st.settled_pages += c;
		}
		free(keep);
	}
	pr_debug("%llu pages of pid %d are in place or zero (the source's state is complete); "
		 "%llu stale pages to fetch",
		 (unsigned long long)lz->st.settled_pages, (int)lz->pid,
		 (unsigned long long)lz->missing);
	return 0;
}

/* rst_lazy_attach(), and with @h (hybrid, complete) only the stale pages missing. */
static int attach(struct rsys *r, pid_t pid, const struct haul_layout *l,
		  const struct rst_lazy_source *src, struct haul_layout *lazy,
		  struct rst_lazy **out, const struct rst_lazy_hook *h)
{
	struct rst_lazy_opts o = {.uffd = -1, .pid = pid, .vmas = lazy, .src = *src};
	uint64_t t0 = now_ns(), t1, t2, t3;
	int ret;

	lazy->n = 0;
	lazy->v = calloc(l->n ? l->n : 1, sizeof(*lazy->v));
	if (!lazy->v)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		struct haul_vma *v = &lazy->v[lazy->n];

		if (!rst_lazy_vma_ok(&l->v[i]))
			continue;
		*v = l->v[i];
		v->path = l->v[i].path ? strdup(l->v[i].path) : NULL;
		if (l->v[i].path && !v->path) {
			ret = -ENOMEM;
			goto err;
		}
		lazy->n++;
	}
	ret = rst_lazy_uffd_create(r, lazy, &o.uffd);
	if (ret)
		goto err;
	t1 = now_ns();
	ret = rst_lazy_new(&o, out);
	if (ret)
		goto err;
	t2 = now_ns();
	/* complete: no need to look (the look took 10 ms at 4 GiB) */
	if (h && h->complete)
		ret = settle_complete(*out, h->stale, h->nstale);
	else
		ret = mark_populated(*out, pid);
	t3 = now_ns();
	if (!ret)
		ret = rst_lazy_start(*out);
	if (ret) {
		/*
		 * The stub never ran; started or not, freeing unregisters its
		 * memory (and kills a started one): the restore fails anyway.
		 */
		rst_lazy_free(*out);
		*out = NULL;
		goto err;
	}
	pthread_mutex_lock(&(*out)->lock);
	(*out)->st.attach_ns = now_ns() - t0;
	pthread_mutex_unlock(&(*out)->lock);
	pr_debug("pid %d: %zu VMAs attached in %.2f ms: uffd and registration %.2f, bitmaps "
		 "%.2f, pages in place %.2f, threads %.2f",
		 (int)pid, lazy->n, (now_ns() - t0) / 1e6, (t1 - t0) / 1e6, (t2 - t1) / 1e6,
		 (t3 - t2) / 1e6, (now_ns() - t3) / 1e6);
	return 0;
err:
	haul_layout_release(lazy);
	return ret;
}

int rst_lazy_attach(struct rsys *r, pid_t pid, const struct haul_layout *l,
		    const struct rst_lazy_source *src, struct haul_layout *lazy,
		    struct rst_lazy **out)
{
	return attach(r, pid, l, src, lazy, out, NULL);
}

/*
 * The VMAs of @l that hold a stale run of @h (each run lies inside one):
 * with a complete state no other VMA lacks anything.  The entries are
 * borrowed from @l (free only out->v).
 */
static int stale_vmas(const struct haul_layout *l, const struct rst_lazy_hook *h,
		      struct haul_layout *out)
{
	out->n = 0;
	out->v = calloc(l->n ? l->n : 1, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++)
		for (size_t j = 0; j < h->nstale; j++)
			if (h->stale[j].start < l->v[i].end && h->stale[j].end > l->v[i].start) {
				out->v[out->n++] = l->v[i];
				break;
			}
	return 0;
}

/*
 * The stale ranges dropped in batches of injected calls (rst_target_zap): one
 * call each took ~24 us, and a hybrid switchover names up to 4096 runs (2068
 * scattered pages: 50 ms of the downtime, bench/RESULTS.md).  With a complete
 * state only the VMAs holding stale pages are registered (none when nothing
 * is stale: the uffd is closed at once), and their absent non-stale pages are
 * zero, not fetched.
 */
int rst_lazy_before_resume(void *arg, struct rsys *r, const struct haul_layout *l)
{
	struct rst_lazy_hook *h = arg;
	struct rst_zap *z = h->nstale ? calloc(h->nstale, sizeof(*z)) : NULL;
	struct haul_layout sub = {0};
	uint64_t t0 = now_ns();
	int ret = 0;

	if (h->nstale && !z)
		return -ENOMEM;
	for (size_t i = 0; i < h->nstale && !ret; i++) {
		const struct haul_vma *v = haul_layout_find(l, h->stale[i].start);

		z[i].addr = h->stale[i].start;
		z[i].npages = (h->stale[i].end - h->stale[i].start) / PG;
		if (!zap_ok(v, z[i].addr, z[i].npages, r->pid))
			ret = -EINVAL;
		else
			z[i].shared = v->flags & (HAUL_VMA_SHMEM | HAUL_VMA_SHARED);
	}
	if (!ret)
		ret = rst_target_zap(r, z, h->nstale);
	free(z);
	if (ret)
		return ret;
	if (h->nstale)
		pr_debug("pid %d: %zu stale runs dropped in %.2f ms", r->pid, h->nstale,
			 (now_ns() - t0) / 1e6);
	if (!h->complete)
		return attach(r, r->pid, l, &h->src, &h->lazy, &h->lz, NULL);
	ret = stale_vmas(l, h, &sub);
	if (!ret)
		ret = attach(r, r->pid, &sub, &h->src, &h->lazy, &h->lz, h);
	free(sub.v);
	return ret;
}

int rst_lazy_new(const struct rst_lazy_opts *o, struct rst_lazy **out)
{
	struct rst_lazy *lz = calloc(1, sizeof(*lz));
	struct lz_mm *mm;
	unsigned nbufs;
	int ret = -ENOMEM;

	if (!lz) {
		close(o->uffd);
		return -ENOMEM;
	}
	lz->pid = o->pid;
	lz->src = o->src;
	lz->stopfd = lz->readyfd = lz->pidfd = -1;
	lz->nfetchers = o->fetchers ? o->fetchers : LAZY_DEFAULT_FETCHERS;
	lz->chunk_pages = o->chunk_pages && o->chunk_pages < LAZY_PUSH_CHUNK_PAGES
				  ? o->chunk_pages
				  : LAZY_PUSH_CHUNK_PAGES;
	lz->push_window = lz->push_window_max = lz->nfetchers * lz->chunk_pages;
	lz->st.push_window_min = lz->push_window;
	lz->fault_chunk = LAZY_PUSH_FAULTING_PAGES < lz->chunk_pages ? LAZY_PUSH_FAULTING_PAGES
								     : lz->chunk_pages;
	lz->fault_chunk_cap = lz->chunk_pages;
	pthread_mutex_init(&lz->lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&lz->cv, &ca);
		pthread_cond_init(&lz->ucv, &ca);
		pthread_condattr_destroy(&ca);
	}
	lz->mm = calloc(1, sizeof(*lz->mm));
	mm = calloc(1, sizeof(*mm));
	if (!lz->mm || !mm) {
		free(mm);
		close(o->uffd);
		goto err;
	}
	mm->uffd = o->uffd;
	lz->mm[lz->nmm++] = mm;
	lz->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	lz->readyfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (lz->stopfd < 0 || lz->readyfd < 0) {
		ret = -errno;
		goto err;
	}
	if (o->pid > 0) {
		lz->pidfd = (int)syscall(SYS_pidfd_open, o->pid, 0);
		if (lz->pidfd < 0) {
			ret = -errno;
			pr_err_r(ret, "cannot open a pidfd for pid %d", o->pid);
			goto err;
		}
	}
	mm->r = calloc(o->vmas->n ? o->vmas->n : 1, sizeof(*mm->r));
	if (!mm->r)
		goto err;
	for (size_t i = 0; i < o->vmas->n; i++) {
		const struct haul_vma *v = &o->vmas->v[i];

		ret = rst_lz_region_init(&mm->r[i], v->start, v->end, v->start);
		if (ret)
			goto err;
		mm->nr++;
		mm->missing += mm->r[i].missing;
	}
	lz->missing = mm->missing;
	lz->st.total_pages = lz->missing;
	lz->hint = mm->nr ? mm->r[0].start : 0;
	nbufs = lz->nfetchers * LAZY_BUFS_PER_FETCHER;
	lz->chunks = calloc(nbufs, sizeof(*lz->chunks));
	lz->fetch_threads = calloc(lz->nfetchers, sizeof(*lz->fetch_threads));
	lz->reqs = calloc(LAZY_FAULT_SLOTS, sizeof(*lz->reqs));
	lz->ufetch_threads = calloc(LAZY_FAULT_FETCHERS, sizeof(*lz->ufetch_threads));
	ret = -ENOMEM;
	if (!lz->chunks || !lz->fetch_threads || !lz->reqs || !lz->ufetch_threads)
		goto err;
	for (unsigned i = 0; i < LAZY_FAULT_SLOTS; i++) {
		lz->reqs[i].buf = mmap(NULL, LAZY_FAULT_AROUND_PAGES * PG, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (lz->reqs[i].buf == MAP_FAILED) {
			lz->reqs[i].buf = NULL;
			goto err;
		}
	}
	for (unsigned i = 0; i < nbufs; i++) {
		struct lz_chunk *c = &lz->chunks[i];

		c->buf = mmap(NULL, LAZY_PUSH_CHUNK_PAGES * PG, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (c->buf == MAP_FAILED) {
			c->buf = NULL;
			goto err;
		}
		c->next = lz->free_list;
		lz->free_list = c;
	}
	*out = lz;
	return 0;
err:
	rst_lazy_free(lz);
	return ret;
}

int rst_lazy_mark_present(struct rst_lazy *lz, uint64_t addr, uint64_t npages)
{
	struct lz_mm *mm = lz->mm[0];
	uint64_t end = addr + npages * PG;

	if (lz->started)
		return -EBUSY;
	for (size_t k = 0; k < mm->nr; k++) {
		struct lz_region *rg = &mm->r[k];
		uint64_t a = addr > rg->start ? addr : rg->start, b = end < rg->end ? end : rg->end;

		if (a < b) {
			rst_lz_mark_done(lz, mm, rg, (a - rg->start) / PG, (b - a) / PG);
			lz->marked = true;
		}
	}
	return 0;
}

/*
 * Start a thread of the fault server at SCHED_OTHER, whatever its creator
 * runs at.  rst_lazy_start() runs inside the resume, whose thread is boosted
 * to SCHED_FIFO (target_boost.c), and a new thread inherits its creator's
 * policy: the push would then run real-time for as long as memory arrives,
 * and the restored process (SCHED_OTHER) would wait behind it for a CPU.
 * The nice value is inherited: the restorer's own.
 */
static int lz_thread(pthread_t *t, const char *name, void *(*fn)(void *), void *arg)
{
	struct sched_param sp = {0};
	pthread_attr_t a;
	int ret = pthread_attr_init(&a);

	if (ret)
		return -ret;
	ret = pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
	if (!ret)
		ret = pthread_attr_setschedpolicy(&a, SCHED_OTHER);
	if (!ret)
		ret = pthread_attr_setschedparam(&a, &sp);
	if (!ret)
		ret = pthread_create(t, &a, fn, arg);
	if (!ret)
		pthread_setname_np(*t, name); /* what top -H and perf show; cosmetic */
	pthread_attr_destroy(&a);
	return -ret;
}

int rst_lazy_start(struct rst_lazy *lz)
{
	int ret;

	lz->t_start = now_ns();
	/*
	 * The process ran an instant ago and will touch memory at once: the
	 * push starts as it does while faulting, so that its first faults do
	 * not queue behind whole chunks on the link (faulting()), and slow,
	 * opening up as the faults come back fast (lazy_pace.c).
	 */
	lz->last_fault_ns = lz->t_start;
	rst_lz_pace_start(lz);
	if (!lz->missing) {
		/* Nothing to wait for: let the process go at once. */
		rst_lz_finish(lz, 0);
		rst_lz_close_all(lz);
		lz->started = true;
		return 0;
	}
	ret = lz_thread(&lz->fault_thread, "haul-fault", rst_lz_fault_main, lz);
	if (ret) {
		pr_err_r(ret, "cannot start the fault thread for pid %d", lz->pid);
		return ret;
	}
	lz->started = true;
	for (unsigned i = 0; i < LAZY_FAULT_FETCHERS; i++) {
		ret = lz_thread(&lz->ufetch_threads[i], "haul-ffetch", rst_lz_ufetch_main, lz);
		if (ret) {
			pr_warn_r(ret, "cannot start fault-fetch thread %u for pid %d", i, lz->pid);
			break;
		}
		lz->nurunning++;
	}
	if (!lz->nurunning) {
		pr_err("no fault-fetch thread runs for pid %d: its faults would never be answered",
		       lz->pid);
		return ret;
	}
	for (unsigned i = 0; i < lz->nfetchers; i++) {
		ret = lz_thread(&lz->fetch_threads[i], "haul-push", rst_lz_fetch_main, lz);
		if (ret) {
			/* The fault thread serves faults alone; the push just does not happen. */
			pr_warn_r(ret, "cannot start fetcher %u for pid %d", i, lz->pid);
			break;
		}
		lz->nrunning++;
	}
	if (!lz->nrunning) {
		pr_err("no fetcher runs for pid %d: its memory would only arrive on faults",
		       lz->pid);
		return ret;
	}
	return 0;
}

int rst_lazy_wait_complete(struct rst_lazy *lz, int timeout_ms)
{
	struct timespec dl;
	int ret = 0;

	clock_gettime(CLOCK_MONOTONIC, &dl);
	if (timeout_ms >= 0) {
		dl.tv_sec += timeout_ms / 1000;
		dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (dl.tv_nsec >= 1000000000) {
			dl.tv_sec++;
			dl.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&lz->lock);
	while (!lz->finished && !ret) {
		if (timeout_ms < 0)
			pthread_cond_wait(&lz->cv, &lz->lock);
		else
			ret = -pthread_cond_timedwait(&lz->cv, &lz->lock, &dl);
	}
	if (lz->finished)
		ret = lz->result;
	pthread_mutex_unlock(&lz->lock);
	return ret;
}

#define LZ_PF_EXITING 0x4 /* /proc/PID/stat flags (field 9): the exit is under way */

/*
 * The memory goes early in an exit (exit_mm), so the process may still be
 * exiting: then retry for up to 1 s.  Reaped, the kernel gives its status
 * through the pidfd; a zombie's is field 52 of its stat, taken as its own
 * when the pidfd still says "not reaped" after the read (the PID cannot have
 * been reused before the reap).  Alive and not exiting: it exec'd.
 */
int rst_lazy_end(struct rst_lazy *lz, int *wstatus)
{
	*wstatus = -1;
	for (int i = 0; lz->pidfd >= 0 && i < 200; i++) {
		unsigned long long flags = 0, code = 0;
		char st = 0;
		int ret;

		if (!haul_pidfd_exit_status(lz->pidfd, wstatus))
			return RST_LAZY_EXITED;
		ret = haul_proc_stat_field(lz->pid, 9, &st, &flags);
		if (!ret && st == 'Z')
			ret = haul_proc_stat_field(lz->pid, 52, &st, &code);
		if (!haul_pidfd_exit_status(lz->pidfd, wstatus))
			return RST_LAZY_EXITED; /* reaped meanwhile: what we read may not be it */
		if (!ret && st == 'Z') {
			*wstatus = (int)code;
			return RST_LAZY_EXITED;
		}
		if (!ret && st != 'X' && !(flags & LZ_PF_EXITING))
			return RST_LAZY_EXECED;
		usleep(5000);
	}
	return RST_LAZY_EXITED;
}

void rst_lazy_stats(struct rst_lazy *lz, struct rst_lazy_stats *st)
{
	pthread_mutex_lock(&lz->lock);
	*st = lz->st;
	st->missing_pages = lz->missing;
	st->fault_p50_ns = rst_lz_hist_pct(lz->hist, lz->st.faults, 50);
	st->fault_p99_ns = rst_lz_hist_pct(lz->hist, lz->st.faults, 99);
	/* a bucket's value may lie above the largest latency that fell in it */
	if (st->fault_p99_ns > st->fault_max_ns)
		st->fault_p99_ns = st->fault_max_ns;
	if (st->fault_p50_ns > st->fault_p99_ns)
		st->fault_p50_ns = st->fault_p99_ns;
	pthread_mutex_unlock(&lz->lock);
}

int rst_lazy_dup_uffd(struct rst_lazy *lz)
{
	int fd = -ENOENT;

	/* under the lock: the uffd is closed (complete, dead) only under it */
	pthread_mutex_lock(&lz->lock);
	if (lz->nmm && lz->mm[0]->uffd >= 0) {
		fd = fcntl(lz->mm[0]->uffd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0)
			fd = -errno;
	}
	pthread_mutex_unlock(&lz->lock);
	return fd;
}

void rst_lazy_on_fork(struct rst_lazy *lz, void (*fn)(void *arg, int uffd), void *arg)
{
	pthread_mutex_lock(&lz->lock);
	lz->fork_fn = fn;
	lz->fork_arg = arg;
	for (size_t k = 1; k < lz->nmm; k++)
		if (!lz->mm[k]->dead)
			rst_lz_fork_notify(lz, lz->mm[k]);
	pthread_mutex_unlock(&lz->lock);
}

void rst_lazy_free(struct rst_lazy *lz)
{
	uint64_t one = 1;
	bool open_uffd = false;

	if (!lz)
		return;
	if (lz->started) {
		pthread_mutex_lock(&lz->lock);
		lz->stopping = true;
		pthread_cond_broadcast(&lz->cv);
		pthread_cond_broadcast(&lz->ucv);
		pthread_mutex_unlock(&lz->lock);
		if (write(lz->stopfd, &one, sizeof(one)) < 0)
			pr_warn("cannot stop the fault thread of pid %d: %s", lz->pid,
				strerror(errno));
		pthread_join(lz->fault_thread, NULL);
		for (unsigned i = 0; i < lz->nrunning; i++)
			pthread_join(lz->fetch_threads[i], NULL);
		for (unsigned i = 0; i < lz->nurunning; i++)
			pthread_join(lz->ufetch_threads[i], NULL);
	}
	for (size_t k = 0; k < lz->nmm; k++)
		open_uffd |= lz->mm[k]->uffd >= 0;
	if (open_uffd && lz->missing && lz->started) {
		pr_err("post-copy of pid %d stopped with %lu pages missing: killing it", lz->pid,
		       (unsigned long)lz->missing);
		rst_lz_kill_process(lz);
		rst_lz_finish(lz, -ECANCELED);
	}
	if (lz->mm)
		rst_lz_close_all(lz);
	if (lz->stopfd >= 0)
		close(lz->stopfd);
	if (lz->readyfd >= 0)
		close(lz->readyfd);
	if (lz->pidfd >= 0)
		close(lz->pidfd);
	for (size_t k = 0; k < lz->nkids; k++)
		close(lz->kids[k].pidfd);
	free(lz->kids);
	for (size_t k = 0; k < lz->nmm; k++) {
		for (size_t i = 0; i < lz->mm[k]->nr; i++)
			rst_lz_region_release(&lz->mm[k]->r[i]);
		free(lz->mm[k]->r);
		free(lz->mm[k]);
	}
	free(lz->mm);
	if (lz->chunks)
		for (unsigned i = 0; i < lz->nfetchers * LAZY_BUFS_PER_FETCHER; i++)
			if (lz->chunks[i].buf)
				munmap(lz->chunks[i].buf, LAZY_PUSH_CHUNK_PAGES * PG);
	free(lz->chunks);
	free(lz->fetch_threads);
	if (lz->reqs)
		for (unsigned i = 0; i < LAZY_FAULT_SLOTS; i++)
			if (lz->reqs[i].buf)
				munmap(lz->reqs[i].buf, LAZY_FAULT_AROUND_PAGES * PG);
	free(lz->reqs);
	free(lz->ufetch_threads);
	pthread_cond_destroy(&lz->cv);
	pthread_cond_destroy(&lz->ucv);
	pthread_mutex_destroy(&lz->lock);
	free(lz);
}
