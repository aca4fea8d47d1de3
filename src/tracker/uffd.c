/*
 * uffd.c - dirty tracking with userfaultfd write-protect in async mode and
 * ioctl(PAGEMAP_SCAN) (Linux >= 6.7).
 *
 * Attach (DESIGN.md "Tracker", common/rsys.c): seize one thread, run
 * userfaultfd(O_CLOEXEC|O_NONBLOCK) inside the target through its vDSO
 * syscall instruction, copy the fd out with pidfd_getfd, close it inside the
 * target, restore the registers and detach.  The mm is shared by all
 * threads, so one stopped thread suffices; the others run on.  The target
 * keeps no fd of ours; closing our copy (or our death) unregisters every
 * range and the target runs on.
 *
 * We enable only WP_ASYNC | WP_UNPOPULATED (| WP_HUGETLBFS_SHMEM): never the
 * event features, which would make the target block until we read events.
 *
 * Each round, per memory VMA: PAGEMAP_SCAN with PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
 * category_anyof_mask PRESENT|SWAPPED and return mask WRITTEN|PRESENT|SWAPPED.
 * One walk returns both the written pages (and write-protects them again,
 * atomically) and the populated set, and only populated pages are ever
 * protected: a sparse 64 GiB mapping costs nothing (no markers in holes).
 * A page that becomes populated later has no uffd-wp bit, so it reads as
 * written: correct.  A VMA is registered (UFFDIO_REGISTER(MODE_WP)) only
 * when its scan fails for want of it, and a range just registered counts
 * as replaced: the core sends its populated pages whole, whatever their
 * bits say (rescan_unregistered).
 *
 * CHECK_WPASYNC turns "this VMA is not registered" into EPERM instead of a
 * silent empty answer (new, mremap'd, or munmap'd and mapped again at the
 * same address between our layout read and the scan).  Then we register it
 * and report its parts that are not fresh replaced: the core drops the old
 * contents and sends the new populated pages.  A VMA the kernel will not
 * register (VM_PFNMAP, VM_IO, hugetlb without the feature) is reported
 * whole every round.
 */
#define LOG_PREFIX "trk: "
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/proc.h"
#include "common/probe.h"
#include "common/rsys.h"
#include "common/sysno.h"
#include "tracker/trk_int.h"

struct uffd_state {
	int uffd;
	/*
	 * Result vectors (TRK_SCAN_VEC entries), zeroed past used[i], the
	 * entries the last call may have written (scan_call()): [0] for a walk
	 * on this thread, which is also the frozen parallel walk's first part
	 * (scan_par.c: never both at once), the others that walk's, made on
	 * first use and kept, so that no walk clears 768 KiB in the downtime.
	 */
	struct page_region *vec[TRK_SCAN_PAR_MAX];
	size_t used[TRK_SCAN_PAR_MAX];
	uint64_t warned_start; /* last unregistrable VMA we warned about */
	/* ranges scanned with the fast path: last round's, and this round's */
	struct trk_rl fast, nfast;
	/* ranges a rescan gave up on (rescan_unregistered): last round's, and this round's */
	struct trk_rl unsure, nunsure;
	struct trk_rl one, seg_fast, seg_full, seg_tmp, dense; /* scratch, reused per VMA */
};

/*
 * The stop is a ping-pong of ptrace stops between two threads; on a busy
 * machine each hop waits for a CPU and 0.1 ms becomes 5-40 ms (measured
 * with the load at 2x the cores).  So both threads run SCHED_FIFO for the
 * injection only: ours around it, the target's while it is attached, put
 * back exactly (sched_getattr/setattr) before we detach.  Without
 * CAP_SYS_NICE this quietly does nothing.  The target's own attributes are
 * journaled (injlog_sched): if we die in that window, the survivor puts
 * them back before it continues the target.
 */
#define BOOST_PRIO 10

static bool sched_boost(pid_t tid, struct haul_sched_attr *saved)
{
	struct haul_sched_attr a = {
		.size = sizeof(a), .policy = SCHED_FIFO, .priority = BOOST_PRIO};

	memset(saved, 0, sizeof(*saved));
	if (syscall(SYS_sched_getattr, tid, saved, sizeof(*saved), 0) < 0)
		return false;
	return syscall(SYS_sched_setattr, tid, &a, 0) == 0;
}

static void sched_restore(pid_t tid, struct haul_sched_attr *saved)
{
	saved->size = sizeof(*saved);
	if (syscall(SYS_sched_setattr, tid, saved, 0) < 0)
		pr_warn("cannot restore the scheduling policy of thread %d: %s", (int)tid,
			strerror(errno));
}

/*
 * One ioctl that holds the target's mmap_lock (a scan or unprotect slice),
 * run at SCHED_FIFO when @boost: the walk calls cond_resched() with the lock
 * held, and on a loaded machine a CFS thread of ours gave the CPU away there
 * for 20-30 ms (bench/RESULTS.md "Stalls"), with the target's mmap, munmap
 * and mprotect waiting all along.  A slice is ~1 ms, so the boost is short;
 * between slices we run as before.  @saved: our own attributes, read once.
 */
static long locked_ioctl(int fd, unsigned long req, void *arg, bool boost,
			 struct haul_sched_attr *saved)
{
	struct haul_sched_attr a = {
		.size = sizeof(a), .policy = SCHED_FIFO, .priority = BOOST_PRIO};
	bool boosted = boost && syscall(SYS_sched_setattr, 0, &a, 0) == 0;
	long n = ioctl(fd, req, arg);
	int err = errno;

	if (boosted)
		sched_restore(0, saved);
	errno = err;
	return n;
}

/* Whether we may boost our own thread, and its attributes to go back to. */
static bool can_boost(struct haul_sched_attr *saved)
{
	memset(saved, 0, sizeof(*saved));
	return syscall(SYS_sched_getattr, 0, saved, sizeof(*saved), 0) == 0 &&
	       saved->policy != SCHED_FIFO && saved->policy != SCHED_RR;
}

/* Create the uffd inside @tid and pull it out. */
static int steal_uffd(struct trk *t, pid_t tid, int *out)
{
	uint64_t args[6] = {O_CLOEXEC | O_NONBLOCK}, sc_addr;
	struct haul_sched_attr saved, self_saved;
	bool boosted = false, self_boosted;
	struct rsys r;
	long rfd = -1, rv;
	double t0 = 0, stopped;
	int ret, fd = -1;

	/*
	 * Find the vDSO's syscall instruction while the target still runs (it
	 * stays put until exec), so the stop covers only the three syscalls.
	 */
	ret = rsys_find_vdso_syscall(tid, &sc_addr);
	if (ret)
		return ret;
	self_boosted = sched_boost(0, &self_saved);
	t0 = trk_now_ms();
	/* boosted first, so that it takes the SIGSTOP below at once; journaled for a survivor */
	boosted = self_boosted && sched_boost(tid, &saved);
	if (boosted)
		injlog_sched(tid, &saved, sizeof(saved));
	/* the group-stop that keeps it off injected registers if we die (injlog.h) */
	ret = injlog_hold(t->pid);
	if (ret)
		goto unboost;
	if (ptrace(PTRACE_SEIZE, tid, 0, PTRACE_O_TRACESYSGOOD) < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot attach to pid %d (traced by someone else, or gone?)",
			 (int)tid);
		injlog_unhold(t->pid);
		goto unboost;
	}
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0)
		ret = -errno;
	if (!ret)
		ret = rsys_wait_event_stop(tid);
	if (!ret)
		ret = rsys_attach_stopped(&r, tid, sc_addr);
	if (ret)
		goto detach;
	ret = rsys_call(&r, SYS_userfaultfd, args, &rfd);
	if (!ret && rfd == -EPERM) {
		/*
		 * A process of another uid lacks CAP_SYS_PTRACE, and with
		 * vm.unprivileged_userfaultfd = 0 only a user-mode-only uffd is
		 * allowed.  Async write-protect faults never reach the uffd
		 * (the kernel resolves them itself, from kernel mode too), so
		 * tracking is the same.
		 */
		args[0] |= UFFD_USER_MODE_ONLY;
		ret = rsys_call(&r, SYS_userfaultfd, args, &rfd);
	}
	if (!ret && rfd < 0) {
		ret = (int)rfd;
		pr_err_r(ret, "userfaultfd() inside pid %d failed", (int)t->pid);
	}
	if (!ret) {
		fd = syscall(SYS_pidfd_getfd, t->pidfd, (int)rfd, 0);
		if (fd < 0) {
			ret = -errno;
			pr_err_r(ret, "cannot copy the userfaultfd out of pid %d", (int)t->pid);
		}
		args[0] = (uint64_t)rfd;
		/* the target must keep no trace of us: close its copy whatever happened */
		if (rsys_call(&r, SYS_close, args, &rv) || rv < 0)
			pr_warn("cannot close fd %ld inside pid %d: it keeps an idle userfaultfd",
				rfd, (int)t->pid);
	}
	if (rsys_release(&r) && !ret)
		ret = -EIO;
detach:
	if (boosted)
		sched_restore(tid, &saved);
	injlog_sched(tid, NULL, 0);
	boosted = false;
	ptrace(PTRACE_DETACH, tid, 0, 0);
	injlog_unhold(t->pid);
	stopped = trk_now_ms() - t0;
	if (stopped > t->stop_ms)
		t->stop_ms = stopped;
	pr_debug("pid %d stopped for %.3f ms to create its userfaultfd", (int)t->pid, stopped);
unboost:
	if (boosted) {
		sched_restore(tid, &saved);
		injlog_sched(tid, NULL, 0);
	}
	if (self_boosted)
		sched_restore(0, &self_saved);
	if (ret) {
		if (fd >= 0)
			close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

static int uffd_open(struct trk *t)
{
	struct uffdio_api api = {.api = UFFD_API};
	struct uffd_state *st;
	uint64_t offered = 0;
	int ret, fd = -1;

	ret = probe_uffd_features(&offered);
	if (ret)
		return ret;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->uffd = -1;
	st->vec[0] = calloc(TRK_SCAN_VEC, sizeof(*st->vec[0])); /* zeroed: scan_call() */
	if (!st->vec[0]) {
		free(st);
		return -ENOMEM;
	}
	ret = steal_uffd(t, t->pid, &fd);
	if (ret)
		goto err;
	api.features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED |
		       (offered & UFFD_FEATURE_WP_HUGETLBFS_SHMEM);
	if (ioctl(fd, UFFDIO_API, &api) < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot enable async write-protect on the userfaultfd of pid %d",
			 (int)t->pid);
		close(fd);
		goto err;
	}
	st->uffd = fd;
	t->priv = st;
	return 0;
err:
	free(st->vec[0]);
	free(st);
	return ret;
}

struct unprotect_ctx {
	int uffd;
	bool unregister; /* UFFDIO_UNREGISTER; else UFFDIO_WRITEPROTECT mode 0 */
	bool boost;	 /* SCHED_FIFO around each call (locked_ioctl) */
	struct haul_sched_attr saved;
};

/*
 * Lift the write-protection of one slice (UFFDIO_WRITEPROTECT mode 0: under
 * the mmap_lock read), or unregister it (write lock, but for one slice).
 */
static int unprotect_call(void *arg, uint64_t s, uint64_t e, uint64_t *walk_end)
{
	struct unprotect_ctx *u = arg;
	struct uffdio_writeprotect wp = {.range = {.start = s, .len = e - s}, .mode = 0};
	struct uffdio_range rg = {.start = s, .len = e - s};
	long r = u->unregister
			 ? locked_ioctl(u->uffd, UFFDIO_UNREGISTER, &rg, u->boost, &u->saved)
			 : locked_ioctl(u->uffd, UFFDIO_WRITEPROTECT, &wp, u->boost, &u->saved);

	if (r < 0 && (errno == ESRCH || errno == EBADF))
		return -errno; /* the mm is gone: nothing left to lift */
	*walk_end = e;	       /* other errors (a VMA gone or moved): go on with the next slice */
	return 0;
}

/*
 * Closing the uffd unregisters every range, and unregistering clears the
 * write-protect bit of every page under the target's mmap_lock held for
 * writing, VMA by VMA: 117 ms per populated GiB in one hold (bench
 * stall_bench, "detach"), during which the target cannot fault, map or
 * unmap.  So the protection is lifted first, slice by slice, under the
 * read lock (faults go on); the close then finds nothing to clear.
 */
static void unprotect_all(struct trk *t, struct uffd_state *st)
{
	struct unprotect_ctx u = {.uffd = st->uffd};
	uint64_t slice = t->opts.slice_bytes ? t->opts.slice_bytes : TRK_SCAN_SLICE_BYTES;

	u.boost = can_boost(&u.saved);

	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < t->prev.n; i++) {
			const struct haul_vma *v = &t->prev.v[i];

			if (haul_vma_is_memory(v) &&
			    trk_slice_walk(v->start, v->end, slice, unprotect_call, &u) < 0)
				return;
		}
		/* unregistering holds the write lock: smaller slices (TRK_UNREG_SLICE_DIV) */
		u.unregister = true;
		slice /= TRK_UNREG_SLICE_DIV;
	}
}

static void uffd_close(struct trk *t)
{
	struct uffd_state *st = t->priv;

	if (!st)
		return;
	/* closing the uffd unregisters every range; the target runs on */
	if (st->uffd >= 0) {
		unprotect_all(t, st);
		close(st->uffd);
	}
	trk_rl_release(&st->fast);
	trk_rl_release(&st->nfast);
	trk_rl_release(&st->unsure);
	trk_rl_release(&st->nunsure);
	trk_rl_release(&st->one);
	trk_rl_release(&st->seg_fast);
	trk_rl_release(&st->seg_full);
	trk_rl_release(&st->seg_tmp);
	trk_rl_release(&st->dense);
	for (unsigned i = 0; i < TRK_SCAN_PAR_MAX; i++)
		free(st->vec[i]);
	free(st);
	t->priv = NULL;
}

static int uffd_register(struct uffd_state *st, uint64_t start, uint64_t end)
{
	struct uffdio_register reg = {
		.range = {.start = start, .len = end - start},
		.mode = UFFDIO_REGISTER_MODE_WP,
	};

	return ioctl(st->uffd, UFFDIO_REGISTER, &reg) < 0 ? -errno : 0;
}

/*
 * PAGEMAP_SCAN calls a uffd-wp PTE marker "swapped" too.  The kernel leaves
 * one where a protected page of a file-backed VMA was zapped: for a
 * MAP_PRIVATE file page that was written (COW'd), MADV_DONTNEED drops our
 * copy and the page reads the file again, yet nothing reads as written.
 * So a marker must count as unpopulated (the core then reports the page as
 * zapped).  pagemap tells them apart: a swap entry of type SWP_PTE_MARKER
 * (31: the last of the 5-bit swap types).  Without CAP_SYS_ADMIN pagemap
 * hides swap types; then every swapped page counts as unpopulated, which
 * costs resends but never misses a change, and goes to out->maybe: where a
 * range is sent whole (fresh or replaced) such a page is sent too, a marker
 * costing a page of zeros.
 */
#define SWP_TYPE_PTE_MARKER 31

static int add_swapped(struct trk *t, struct uffd_state *st, uint64_t start, uint64_t np,
		       struct trk_scan *out)
{
	uint64_t e[512];

	while (np) {
		size_t n = np < 512 ? np : 512;
		int ret = trk_pagemap_read(t->pagemap_fd, start, n, e);

		if (ret)
			return ret;
		for (size_t i = 0; i < n; i++) {
			uint64_t type = e[i] & 0x1f, off = (e[i] >> 5) & ((1ULL << 50) - 1);

			if (!(e[i] & PM_ENTRY_SWAPPED) || type == SWP_TYPE_PTE_MARKER)
				continue;
			ret = trk_rl_add(!type && !off ? &out->maybe : &out->present,
					 start + i * TRK_PAGE, 1);
			if (ret)
				return ret;
		}
		start += n * TRK_PAGE;
		np -= n;
	}
	(void)st;
	return 0;
}

struct walk_ctx {
	struct trk *t;
	struct uffd_state *st;
	struct page_region *vec; /* TRK_SCAN_VEC entries, this walker's own */
	size_t *used;		 /* entries the last call filled */
	bool full;
	struct trk_scan *out;
	double call_ms; /* longest call of this walk */
	bool boost;	/* SCHED_FIFO around each call (locked_ioctl) */
	struct haul_sched_attr saved;
};

/* One PAGEMAP_SCAN call over the slice [s, e); *walk_end: where the kernel stopped. */
static int scan_call(void *arg, uint64_t s, uint64_t e, uint64_t *walk_end)
{
	struct walk_ctx *w = arg;
	struct pm_scan_arg a;
	int err = 0, ret;
	double t0, dt;
	long n;

	memset(w->vec, 0, *w->used * sizeof(*w->vec));
	memset(&a, 0, sizeof(a));
	a.size = sizeof(a);
	a.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
	a.start = s;
	a.end = e;
	a.vec = (uintptr_t)w->vec;
	a.vec_len = TRK_SCAN_VEC;
	a.max_pages = w->t->opts.slice_pages ? w->t->opts.slice_pages : TRK_SCAN_SLICE_PAGES;
	if (w->full) {
		a.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
		a.return_mask = PAGE_IS_WRITTEN | PAGE_IS_PRESENT | PAGE_IS_SWAPPED;
	} else {
		a.category_mask = PAGE_IS_WRITTEN;
		a.return_mask = PAGE_IS_WRITTEN;
	}
	t0 = trk_now_ms();
	n = locked_ioctl(w->t->pagemap_fd, PAGEMAP_SCAN, &a, w->boost, &w->saved);
	if (n < 0)
		err = -errno;
	dt = trk_now_ms() - t0;
	if (dt > w->call_ms)
		w->call_ms = dt;
	if (n < 0) {
		/* what a failed call wrote ends at the first zeroed entry (see walk()) */
		n = 0;
		while (n < TRK_SCAN_VEC && w->vec[n].end)
			n++;
	}
	*w->used = (size_t)n;
	if (err && err != -EPERM)
		return err;
	for (long i = 0; i < n; i++) {
		const struct page_region *pr = &w->vec[i];
		uint64_t np = (pr->end - pr->start) / TRK_PAGE;

		if (pr->start < s || pr->end > e || pr->end <= pr->start ||
		    (pr->start | pr->end) % TRK_PAGE) {
			pr_err("PAGEMAP_SCAN of pid %d over %#llx-%#llx returned the region "
			       "%#llx-%#llx outside it; the round is dropped",
			       (int)w->t->pid, (unsigned long long)s, (unsigned long long)e,
			       (unsigned long long)pr->start, (unsigned long long)pr->end);
			return -EIO;
		}
		if (!w->full) {
			ret = trk_rl_add(&w->out->written, pr->start, np);
		} else {
			if (pr->categories & PAGE_IS_PRESENT)
				ret = trk_rl_add(&w->out->present, pr->start, np);
			else
				ret = add_swapped(w->t, w->st, pr->start, np, w->out);
			if (!ret && (pr->categories & PAGE_IS_WRITTEN))
				ret = trk_rl_add(&w->out->written, pr->start, np);
		}
		if (ret)
			return ret;
	}
	if (err)
		return err;
	*walk_end = a.walk_end;
	return 0;
}

/*
 * One PAGEMAP_SCAN walk of [start, end), re-protecting what it reports.
 *
 * fast: category and return mask exactly WRITTEN, the kernel's fast path
 * (~0.2 ms per clean GiB).  It reports every PTE that is not
 * write-protected, holes inside a page table included (so an anonymous page
 * zapped by MADV_DONTNEED reads as written), and protects them (holes get a
 * marker).
 * full: anyof PRESENT|SWAPPED, returning WRITTEN|PRESENT|SWAPPED: the
 * populated set too, at ~1.6 ms per GiB.
 *
 * The walk goes in slices (slice.c): at most TRK_SCAN_SLICE_BYTES and
 * TRK_SCAN_SLICE_PAGES found pages per call, so that no call holds the
 * target's mmap_lock for more than about a millisecond.  Each call reports
 * and re-protects its pages atomically, so a write during the walk is never
 * lost: before its slice it is reported now, after it next round.
 *
 * When the walk meets a VMA that is not registered it fails with EPERM, but
 * it has already re-protected the pages before that point and copied their
 * regions to the vector: dropping them would lose those writes for good.
 * A failed call returns no count, so the vector starts zeroed (calloc: a
 * malloc'd one may come from the heap, and its garbage read as regions sent
 * a walk into a loop of 2^52 pages), is cleared before each call as far as
 * the last call wrote it, and on EPERM the regions it holds are taken before
 * returning.  A region outside the call's range fails the round (-EIO).
 *
 * While the process is frozen (the final round, inside the downtime) a
 * large fast walk is split across threads (scan_par.c): nothing of the
 * process waits on its mmap_lock then, and one thread walks ~1 ms per GiB.
 */
/* One walker's sliced walk of [start, end) with its own @vec; its longest call into *@call_ms. */
static int walk(struct trk *t, struct page_region *vec, size_t *used, bool full,
		struct trk_scan *out, uint64_t start, uint64_t end, double *call_ms)
{
	struct walk_ctx w = {
		.t = t, .st = t->priv, .vec = vec, .used = used, .full = full, .out = out};
	uint64_t slice = t->opts.slice_bytes ? t->opts.slice_bytes : TRK_SCAN_SLICE_BYTES;
	int ret;

	w.boost = can_boost(&w.saved);
	ret = trk_slice_walk(start, end, slice, scan_call, &w);
	if (w.call_ms > *call_ms)
		*call_ms = w.call_ms;
	return ret;
}

static int scan_walk(struct trk *t, struct uffd_state *st, uint64_t start, uint64_t end, bool full,
		     struct trk_scan *out)
{
	unsigned n = !full && t->frozen ? trk_walk_threads(t, end - start) : 1;

	if (n > 1)
		return trk_walk_parallel(t, start, end, n, out);
	return walk(t, st->vec[0], &st->used[0], full, out, start, end, &t->call_ms);
}

int trk_uffd_walk_part(struct trk *t, struct trk_walk_part *p)
{
	return walk(t, p->vec, p->used, false, &p->out, p->start, p->end, &p->call_ms);
}

int trk_uffd_part_vec(struct trk *t, unsigned i, struct page_region **vec, size_t **used)
{
	struct uffd_state *st = t->priv;

	if (i >= TRK_SCAN_PAR_MAX)
		return -EINVAL;
	if (!st->vec[i]) {
		st->vec[i] = calloc(TRK_SCAN_VEC, sizeof(*st->vec[i])); /* zeroed: scan_call() */
		if (!st->vec[i])
			return -ENOMEM;
	}
	*vec = st->vec[i];
	*used = &st->used[i];
	return 0;
}

/*
 * The page tables (2 MiB, DENSE_CHUNK) of the full-walked parts @full of a
 * VMA that are at least 7/8 populated, into @dense: @present holds the
 * populated pages from index @from on (a range may begin before the VMA:
 * trk_rl_add merges with the previous VMA's last one; it is clipped).  Such
 * a page table exists already, so marking its holes allocates nothing, and
 * the holes it reports once are at most 1/8 of it: the bound the whole-VMA
 * rule keeps, at the granularity of one page table.
 */
#define DENSE_CHUNK (2ULL << 20)

static int dense_chunks(const struct trk_rl *full, const struct trk_rl *present, size_t from,
			struct trk_rl *dense)
{
	size_t p = from;

	dense->n = dense->pages = 0;
	for (size_t i = 0; i < full->n; i++) {
		uint64_t s = full->r[i].start, e = s + full->r[i].npages * TRK_PAGE;

		for (uint64_t c = s; c < e;) {
			uint64_t ce = (c & ~(DENSE_CHUNK - 1)) + DENSE_CHUNK, got = 0;
			int ret;

			if (ce > e)
				ce = e;
			while (p < present->n &&
			       present->r[p].start + present->r[p].npages * TRK_PAGE <= c)
				p++;
			for (size_t k = p; k < present->n && present->r[k].start < ce; k++) {
				uint64_t rs = present->r[k].start,
					 re = rs + present->r[k].npages * TRK_PAGE;

				got += ((re < ce ? re : ce) - (rs > c ? rs : c)) / TRK_PAGE;
			}
			ret = got * 8 >= (ce - c) / TRK_PAGE * 7
				      ? trk_rl_add(dense, c, (ce - c) / TRK_PAGE)
				      : 0;
			if (ret)
				return ret;
			c = ce;
		}
	}
	return 0;
}

/* @dst += @a ∪ @b, both sorted, merged and disjoint, in address order. */
static int add_union(struct trk_rl *dst, const struct trk_rl *a, const struct trk_rl *b)
{
	size_t i = 0, k = 0;

	while (i < a->n || k < b->n) {
		const struct trk_range *r;
		int ret;

		if (k == b->n || (i < a->n && a->r[i].start < b->r[k].start))
			r = &a->r[i++];
		else
			r = &b->r[k++];
		ret = trk_rl_add(dst, r->start, r->npages);
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Which walk each part of a VMA gets.
 *
 * The fast walk treats every PTE that is not write-protected as written,
 * holes included, whether or not a page table exists there, and marks them.
 * On a dense VMA that is ideal: a zap (an anonymous MADV_DONTNEED drops the
 * PTE and our marker with it) reads as written, and the few holes are
 * reported once, as zero pages, then marked.  On a sparse VMA it would
 * report and mark every hole: 64 GiB of zero pages and 128 MiB of page
 * tables.  So a VMA is walked in full the first time (and whenever it is not
 * known to be dense), and switches to the fast walk once at least 7/8 of it
 * is populated; a part that was walked fast last round stays fast (its holes
 * are marked, so only real changes show, and the full walk could not see a
 * zap there: it knows no populated set for it).
 *
 * A VMA short of 7/8 as a whole may still be dense page table by page
 * table: jemalloc's arena of Redis holding 64 KiB values is 87% populated,
 * every 2 MiB of it with a few never-touched pages at the end of each value's
 * extent, and the full walk of its 1.4 GiB took 7-10 ms of every round, the
 * final one in the downtime included (the fast walk: ~3 ms).  So the page
 * tables that are dense on their own go fast too (dense_chunks).
 *
 * MAP_PRIVATE file VMAs are always walked in full: zapping a written (COW)
 * page leaves a marker and the page silently reads the file again; only the
 * populated set shows it.  trk_opts.populated asks for full walks everywhere.
 *
 * So are the parts of @v in @fresh (new at their address since the last
 * round): the core sends fresh ∩ populated, so it must know the populated
 * set there.  Its pages may be protected already, by a rescan of the last
 * round that registered what replaced the layout it had read; a fast walk
 * would report none of them.
 */
static int scan_vma(struct trk *t, struct uffd_state *st, const struct haul_vma *v, bool allow_fast,
		    const struct trk_rl *fresh, struct trk_scan *out)
{
	bool file_private = (v->flags & HAUL_VMA_FILE) && !(v->flags & HAUL_VMA_SHARED);
	uint64_t before = out->present.pages, pages = haul_vma_pages(v);
	size_t present_from = out->present.n ? out->present.n - 1 : 0;
	int ret;

	st->one.n = st->one.pages = 0;
	st->seg_fast.n = st->seg_fast.pages = 0;
	st->seg_full.n = st->seg_full.pages = 0;
	ret = trk_rl_add(&st->one, v->start, pages);
	st->seg_tmp.n = st->seg_tmp.pages = 0;
	if (!ret && allow_fast && !file_private && !t->opts.populated)
		ret = trk_rl_and(&st->one, &st->fast, &st->seg_tmp);
	if (!ret)
		ret = trk_rl_sub(&st->seg_tmp, fresh, &st->seg_fast);
	if (!ret)
		ret = trk_rl_sub(&st->one, &st->seg_fast, &st->seg_full);
	for (size_t i = 0; i < st->seg_fast.n && !ret; i++) {
		const struct trk_range *r = &st->seg_fast.r[i];

		ret = scan_walk(t, st, r->start, r->start + r->npages * TRK_PAGE, false, out);
	}
	for (size_t i = 0; i < st->seg_full.n && !ret; i++) {
		const struct trk_range *r = &st->seg_full.r[i];

		ret = scan_walk(t, st, r->start, r->start + r->npages * TRK_PAGE, true, out);
		if (!ret)
			ret = trk_rl_add(&out->known, r->start, r->npages);
	}
	if (ret)
		return ret;
	/* dense enough to walk fast from the next round on? */
	if (file_private || t->opts.populated)
		return trk_rl_append(&st->nfast, &st->seg_fast);
	/*
	 * The part walked in full judged on its own: counting the fast part as
	 * populated would let a page table that is dense make a neighbour with
	 * no page table at all go fast, and report it whole as zero pages.
	 */
	if ((out->present.pages - before) * 8 >= st->seg_full.pages * 7)
		return trk_rl_add(&st->nfast, v->start, pages);
	ret = dense_chunks(&st->seg_full, &out->present, present_from, &st->dense);
	if (!ret)
		ret = add_union(&st->nfast, &st->seg_fast, &st->dense);
	return ret;
}

static bool overlaps(const struct trk_rl *l, uint64_t s, uint64_t e)
{
	size_t i = trk_rl_bsearch(l, s);

	return i < l->n && l->r[i].start < e;
}

/* A mapping the kernel will not write-protect (VM_PFNMAP, VM_IO, ...): report it whole. */
static int send_whole(struct trk *t, struct uffd_state *st, const struct haul_vma *v,
		      struct trk_scan *out)
{
	int ret;

	if (st->warned_start != v->start)
		pr_warn("cannot write-protect %#llx-%#llx of pid %d; it is sent whole every round",
			(unsigned long long)v->start, (unsigned long long)v->end, (int)t->pid);
	st->warned_start = v->start;
	ret = trk_rl_add(&out->written, v->start, haul_vma_pages(v));
	if (!ret)
		ret = trk_rl_add(&out->present, v->start, haul_vma_pages(v));
	return ret;
}

/*
 * @dst += the parts of @v not in @fresh: where the receiver may hold old data.
 * (Fresh parts drop nothing: the core sends fresh ∩ populated anyway, and a
 * new mapping reported gone would have the caller zero all its holes.)
 */
static int add_not_fresh(struct uffd_state *st, struct trk_rl *dst, const struct haul_vma *v,
			 const struct trk_rl *fresh)
{
	int ret;

	st->one.n = st->one.pages = 0;
	st->seg_tmp.n = st->seg_tmp.pages = 0;
	ret = trk_rl_add(&st->one, v->start, haul_vma_pages(v));
	if (!ret)
		ret = trk_rl_sub(&st->one, fresh, &st->seg_tmp);
	return ret ? ret : trk_rl_append(dst, &st->seg_tmp);
}

/*
 * @v kept changing under three tries to register and walk it (or its
 * register met an exiting mm): the bits of the pages the walks did not
 * reach are unknown, and this may be the last round.  So all of it is sent,
 * holes as zeros (the caller reads unmapped pages as zero), its old contents
 * dropped, and the next round, if any, registers and walks it again.
 */
static int give_up(struct trk *t, struct uffd_state *st, const struct haul_vma *v,
		   const struct trk_rl *fresh, struct trk_scan *out)
{
	int ret;

	pr_warn("%#llx-%#llx of pid %d keeps changing under the scan; all %llu pages of it "
		"are sent this round",
		(unsigned long long)v->start, (unsigned long long)v->end, (int)t->pid,
		(unsigned long long)haul_vma_pages(v));
	ret = add_not_fresh(st, &out->replaced, v, fresh);
	if (!ret)
		ret = trk_rl_add(&out->written, v->start, haul_vma_pages(v));
	return ret ? ret : trk_rl_add(&st->nunsure, v->start, haul_vma_pages(v));
}

/*
 * The scan of @v met a VMA we have not registered: @v is new (nothing is
 * registered before its first scan), or was replaced or moved under us since
 * the layout read, or lost its registration: a mremap that moves a
 * registered VMA next to a registered neighbour it merges with unregisters
 * both, and the neighbour's pages keep their uffd-wp bits, stale: a write
 * there while unregistered leaves the bit set (measured on 6.18; the test
 * uffd_a_move_that_merges_two_mappings_loses_no_write).  So what a register
 * covers is never trusted: its parts that are not fresh count as replaced,
 * and the core drops the old contents and sends every populated page of it
 * ((fresh ∪ replaced) ∩ present), which the full walk here finds.
 *
 * A VMA that keeps changing is given up after 3 tries (give_up()).
 */
static int rescan_unregistered(struct trk *t, struct uffd_state *st, const struct haul_vma *v,
			       const struct trk_rl *fresh, struct trk_scan *out)
{
	int ret = -EPERM;

	for (int tries = 0; ret == -EPERM && tries < 3; tries++) {
		ret = uffd_register(st, v->start, v->end);
		if (ret == -ENOMEM) /* the mm is exiting: the round's last check sees it */
			return give_up(t, st, v, fresh, out);
		if ((ret == -EINVAL || ret == -EPERM) && !(v->prot & PROT_WRITE) &&
		    (v->flags & HAUL_VMA_SHARED)) {
			/*
			 * A read-only shared file mapping opened O_RDONLY (no
			 * VM_MAYWRITE: it can never become writable) cannot be
			 * protected, and needs not be: this process cannot
			 * change it.  Sent once, when new.
			 */
			return overlaps(fresh, v->start, v->end)
				       ? trk_rl_add(&out->written, v->start, haul_vma_pages(v))
				       : 0;
		}
		if (ret == -EINVAL || ret == -EPERM)
			return send_whole(t, st, v, out);
		if (ret)
			return ret;
		/* freshly registered: its bits mean nothing yet, walk it in full */
		ret = scan_vma(t, st, v, false, fresh, out);
		if (!ret && t->fail_rescans) {
			t->fail_rescans--;
			ret = -EPERM; /* a test's: as if it changed again */
		}
	}
	if (!ret)
		return add_not_fresh(st, &out->replaced, v, fresh);
	return ret == -EPERM ? give_up(t, st, v, fresh, out) : ret;
}

/*
 * The round failed after this backend registered or re-protected pages that
 * it reports nowhere: a caller that goes on gets every VMA registered again
 * and sent whole next round (trackd goes on after some errors).
 */
static void uffd_round_failed(struct trk *t, const struct haul_layout *cur)
{
	struct uffd_state *st = t->priv;

	st->unsure.n = st->unsure.pages = 0;
	if (trk_layout_ranges(cur, &st->unsure))
		pr_warn("pid %d: no memory to mark its ranges for a resend; reopen the tracker",
			(int)t->pid);
}

static int uffd_scan(struct trk *t, const struct haul_layout *cur, const struct trk_rl *fresh,
		     struct trk_scan *out)
{
	struct uffd_state *st = t->priv;

	out->partial_present = !t->opts.populated;
	st->nfast.n = st->nfast.pages = 0;
	st->nunsure.n = st->nunsure.pages = 0;
	for (size_t i = 0; i < cur->n; i++) {
		const struct haul_vma *v = &cur->v[i];
		int ret;

		if (!haul_vma_is_memory(v))
			continue;
		/*
		 * Never registered before its scan: the walk's EPERM is how an
		 * unregistered VMA is found, whether new, replaced or unregistered
		 * under us, and each is then registered and sent whole.
		 */
		ret = overlaps(&st->unsure, v->start, v->end)
			      ? -EPERM
			      : scan_vma(t, st, v, true, fresh, out);
		if (ret == -EPERM)
			ret = rescan_unregistered(t, st, v, fresh, out);
		if (ret == -EBUSY)
			pr_err("pid %d has its own userfaultfd on %#llx-%#llx; track it with "
			       "--tracker hash",
			       (int)t->pid, (unsigned long long)v->start,
			       (unsigned long long)v->end);
		if (ret)
			return ret; /* trk_round() calls uffd_round_failed() */
	}
	/* this round's fast parts and unsure ranges are next round's */
	{
		struct trk_rl tmp = st->fast;

		st->fast = st->nfast;
		st->nfast = tmp;
		tmp = st->unsure;
		st->unsure = st->nunsure;
		st->nunsure = tmp;
	}
	return 0;
}

const struct trk_ops trk_uffd_ops = {
	.id = TRK_UFFD,
	.open = uffd_open,
	.scan = uffd_scan,
	.round_failed = uffd_round_failed,
	.close = uffd_close,
};
