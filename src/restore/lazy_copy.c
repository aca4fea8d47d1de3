/*
 * lazy_copy.c - copying fetched pages into the restored process (fault thread).
 *
 * Only the fault thread copies (UFFDIO_COPY, or UFFDIO_ZEROPAGE for runs
 * of zero pages): every copy checks the present bitmap after the events
 * before it were applied, so a page the process zapped is never refilled
 * from the source.  A fault is answered with a window around it (its page
 * alone, or more where the process walks through memory: lazy_window.c),
 * fetched by a fault-fetch thread and copied ahead of any background slice;
 * the background push is copied one slice at a time so that a fault waits
 * for at most one slice.  Copy races: EEXIST counts the page present, EAGAIN
 * without progress means an event is queued (read events, then retry),
 * ESRCH the process is gone, ENOENT the VMA is gone.
 */
#define LOG_PREFIX "lazy: "
#include <errno.h>
#include <linux/userfaultfd.h>
#include <stdlib.h>
#include <sys/ioctl.h>

#include "common/log.h"
#include "restore/lazy_int.h"

/* ---- copying into the process (fault thread) -------------------------------- */

/* Mark @n pages at page @i of @rg (in @mm) present. Under lz->lock. */
void rst_lz_mark_done(struct rst_lazy *lz, struct lz_mm *mm, struct lz_region *rg, uint64_t i,
		      uint64_t n)
{
	for (uint64_t k = i; k < i + n; k++) {
		if (bit_test(rg->done, k))
			continue;
		bit_set(rg->done, k);
		rg->missing--;
		mm->missing--;
		lz->missing--;
	}
}

/*
 * ESRCH: the mm is gone (the process exited or was killed).  ENOENT: no VMA
 * there any more (unmapped, its event handled or on its way); callers skip it.
 */
static int uffd_err(int err)
{
	return -err;
}

static const uint64_t zero_page[HAUL_PAGE_SIZE / 8];

/* Whether the page at @p is all zeros (most pages exit at the first word). */
static bool page_is_zero(const char *p)
{
	const uint64_t *w = (const uint64_t *)p;

	return !(w[0] | w[PG / 8 - 1]) && !memcmp(p, zero_page, PG);
}

/*
 * Fill @len bytes at @dst of @mm from @src: UFFDIO_ZEROPAGE when @zero (maps
 * the shared zero page: no allocation, nothing copied), else UFFDIO_COPY.
 * Returns the bytes filled (> 0) or -errno as the ioctl reports it.
 */
static int64_t uffd_fill(struct lz_mm *mm, uint64_t dst, const char *src, uint64_t len, bool zero)
{
	if (zero) {
		struct uffdio_zeropage z = {.range = {dst, len}, .mode = 0};

		if (ioctl(mm->uffd, UFFDIO_ZEROPAGE, &z) == 0)
			return (int64_t)len;
		return z.zeropage > 0 ? z.zeropage : -errno;
	} else {
		struct uffdio_copy c = {
			.dst = dst, .src = (uint64_t)(uintptr_t)src, .len = len, .mode = 0};

		if (ioctl(mm->uffd, UFFDIO_COPY, &c) == 0)
			return (int64_t)len;
		return c.copy > 0 ? c.copy : -errno;
	}
}

/*
 * Fill @n pages from @buf into page @i of @rg, skipping pages already done,
 * and mark them done.  Runs of zero pages are mapped with UFFDIO_ZEROPAGE.
 * Returns the pages filled, -EAGAIN (the address space is changing: read
 * the events, then call again; it resumes where it stopped), -ESRCH (the
 * process is gone) or another -errno.
 */
static long copy_pages(struct rst_lazy *lz, struct lz_mm *mm, struct lz_region *rg, uint64_t i,
		       uint64_t n, const char *buf, bool fault)
{
	long copied = 0;
	uint64_t k = 0;

	while (k < n) {
		uint64_t run = 1;
		bool zero;
		int64_t got;

		if (bit_test(rg->done, i + k)) {
			k++;
			continue;
		}
		zero = page_is_zero(buf + k * PG);
		while (k + run < n && !bit_test(rg->done, i + k + run) &&
		       page_is_zero(buf + (k + run) * PG) == zero)
			run++;
		got = uffd_fill(mm, rg->start + (i + k) * PG, buf + k * PG, run * PG, zero);
		if (got > 0) {
			uint64_t pages = (uint64_t)got / PG;

			pthread_mutex_lock(&lz->lock);
			rst_lz_mark_done(lz, mm, rg, i + k, pages);
			if (fault)
				lz->st.fault_pages += pages;
			else
				lz->st.pushed_pages += pages;
			if (zero)
				lz->st.zero_filled += pages;
			pthread_mutex_unlock(&lz->lock);
			copied += (long)pages;
			k += pages;
			continue;
		}
		if (got == -EEXIST) {
			/* Present already (a racing copy): nothing to do but count it. */
			pthread_mutex_lock(&lz->lock);
			rst_lz_mark_done(lz, mm, rg, i + k, 1);
			lz->st.eexist++;
			pthread_mutex_unlock(&lz->lock);
			k++;
			continue;
		}
		if (got == -ENOENT) {
			/* Unmapped under us: nobody can fault there any more. */
			pthread_mutex_lock(&lz->lock);
			rst_lz_mark_done(lz, mm, rg, i + k, run);
			pthread_mutex_unlock(&lz->lock);
			k += run;
			continue;
		}
		if (got == -EAGAIN) {
			pthread_mutex_lock(&lz->lock);
			lz->st.eagain++;
			pthread_mutex_unlock(&lz->lock);
			return -EAGAIN;
		}
		return uffd_err((int)-got);
	}
	return copied;
}

static int uffd_zero(struct lz_mm *mm, uint64_t addr)
{
	struct uffdio_zeropage z = {.range = {addr, PG}, .mode = 0};

	if (ioctl(mm->uffd, UFFDIO_ZEROPAGE, &z) == 0 || errno == EEXIST || errno == ENOENT)
		return 0;
	return uffd_err(errno);
}

int rst_lz_uffd_wake(struct lz_mm *mm, uint64_t addr)
{
	struct uffdio_range r = {addr, PG};

	if (ioctl(mm->uffd, UFFDIO_WAKE, &r) == 0 || errno == ENOENT)
		return 0;
	return uffd_err(errno);
}

/* Fetch for a fault: the source's own path for those, if it has one. */
int rst_lz_fetch_fault(struct rst_lazy *lz, uint64_t addr, uint32_t npages, void *buf)
{
	if (lz->src.fetch_fault)
		return lz->src.fetch_fault(lz->src.arg, addr, npages, buf);
	return lz->src.fetch(lz->src.arg, addr, npages, buf);
}

/* A fault's thread was woken with its page there: count it with its latency. */
void rst_lz_fault_served(struct rst_lazy *lz, uint64_t t0)
{
	uint64_t dt = now_ns() - t0;

	pthread_mutex_lock(&lz->lock);
	lz->st.faults++;
	lz->hist[rst_lz_hist_idx(dt)]++;
	rst_lz_timeline_add(lz, t0, dt);
	if (dt > lz->st.fault_max_ns)
		lz->st.fault_max_ns = dt;
	pthread_mutex_unlock(&lz->lock);
}

/*
 * Fault pend[@k] was answered with @ret: drop it from @pend (on -ESRCH its
 * mm is gone; on 0 its latency is counted).  0, or @ret if another error.
 */
int rst_lz_pend_answered(struct rst_lazy *lz, struct lz_pend *pend, size_t *npend, size_t k,
			 int ret)
{
	if (ret == -ESRCH)
		rst_lz_mm_dead(lz, pend[k].mm);
	else if (ret)
		return ret;
	else
		rst_lz_fault_served(lz, pend[k].t0);
	pend[k] = pend[--*npend];
	return 0;
}

/* The fault window of @mm in flight that holds source page @src, or NULL. Fault thread. */
static struct lz_req *req_find(struct rst_lazy *lz, struct lz_mm *mm, uint64_t src)
{
	for (unsigned k = 0; k < LAZY_FAULT_SLOTS; k++) {
		struct lz_req *q = &lz->reqs[k];

		if (q->busy && q->mm == mm && src >= q->src &&
		    src < q->src + (uint64_t)q->npages * PG)
			return q;
	}
	return NULL;
}

/*
 * Whether to fetch a lone fault's window on the fault thread: when the push
 * has moved at least LAZY_INLINE_MIN_MBPS since the start, a fast link
 * whose round trip is the threads' (lazy.h).  Fault thread, under lz->lock.
 */
static bool inline_pays(const struct rst_lazy *lz)
{
	uint64_t ns = now_ns() - lz->t_start;

	/* bytes per us = MB/s */
	return ns >= LAZY_INLINE_AFTER_MS * 1000000ull &&
	       lz->st.pushed_pages * PG * 1000 >= (uint64_t)LAZY_INLINE_MIN_MBPS * ns;
}

/*
 * Hand @q to a fault-fetch thread, or fetch it here when it is the only
 * fault waiting and no other window is in flight (blocked, the fault thread
 * then delays nothing), over the source's quick path (the fault lane) or,
 * when such fetches come back fast, its fault path: a fault round trip on
 * an idle 16-core host was 0.36 ms, 8 thread wake-ups, and this saves two
 * (to the fetch thread and back).  Fault thread.
 */
static void req_issue(struct rst_lazy *lz, struct lz_req *q)
{
	q->off = q->filled = 0;
	q->busy = true;
	pthread_mutex_lock(&lz->lock);
	if (lz->fetch_inline && !lz->faults_inflight && !lz->uq_head) {
		bool pays = inline_pays(lz);

		if (pays || lz->src.fetch_fault_try) {
			lz->faults_inflight++;
			pthread_mutex_unlock(&lz->lock);
			if (rst_lz_ufetch_inline(lz, q, pays))
				return;
			pthread_mutex_lock(&lz->lock);
		}
	}
	q->next = NULL;
	if (lz->uq_tail)
		lz->uq_tail->next = q;
	else
		lz->uq_head = q;
	lz->uq_tail = q;
	pthread_cond_signal(&lz->ucv);
	pthread_mutex_unlock(&lz->lock);
}

/* Pages of @rg present next to page @i, going @dir (+1 up, -1 down): up to LAZY_WIN_GAP_PAGES. */
static uint64_t present_run(const struct lz_region *rg, uint64_t i, int dir)
{
	uint64_t n = 0, len = (rg->end - rg->start) / PG;

	while (n < LAZY_WIN_GAP_PAGES) {
		uint64_t j = dir > 0 ? i + 1 + n : i - 1 - n;

		if ((dir > 0 && j >= len) || (dir < 0 && i < 1 + n) || !bit_test(rg->done, j))
			break;
		n++;
	}
	return n;
}

/*
 * Answer the fault @pf, or start answering it.  Returns 0 (answered: its
 * thread is woken), 1 (it waits for the window @pf->req: a fault-fetch thread
 * fetches it, the fault thread copies it later), -EBUSY (no free window: try
 * again once one is copied), -EAGAIN (retry after reading events), -ESRCH
 * (that mm is gone) or -errno.
 */
int rst_lz_serve_fault(struct rst_lazy *lz, struct lz_pend *pf)
{
	struct lz_mm *mm = pf->mm;
	uint64_t addr = pf->addr;
	struct lz_region *rg = rst_lz_region_find(mm, addr);
	uint64_t i, lo, hi, wlo, whi, wsrc;
	struct lz_win_fault wf;
	uint32_t wpages;
	struct lz_req *q;

	pr_debug("fault at %#lx of pid %d", (unsigned long)addr, lz->pid);
	if (!rg) {
		/* Registered memory that has no source pages (a VMA grown by mremap). */
		pthread_mutex_lock(&lz->lock);
		lz->st.zero_pages++;
		pthread_mutex_unlock(&lz->lock);
		return uffd_zero(mm, addr);
	}
	i = (addr - rg->start) / PG;
	if (bit_test(rg->zero, i)) {
		pthread_mutex_lock(&lz->lock);
		lz->st.zero_pages++;
		pthread_mutex_unlock(&lz->lock);
		return uffd_zero(mm, addr);
	}
	/*
	 * Done: copied after the fault was read, and that copy woke the thread.
	 * Pages the caller marked present are fetched again to be sure (the
	 * copy says EEXIST if they really are there).
	 */
	if (bit_test(rg->done, i) && !lz->marked)
		return rst_lz_uffd_wake(mm, addr);
	/* In flight already: its copy wakes every thread waiting in the window. */
	q = req_find(lz, mm, rg->src + i * PG);
	if (q) {
		pf->req = q;
		return 1;
	}
	for (unsigned k = 0; !q && k < LAZY_FAULT_SLOTS; k++)
		if (!lz->reqs[k].busy)
			q = &lz->reqs[k];
	if (!q)
		return -EBUSY;
	q->mm = mm;
	if (bit_test(rg->done, i)) {
		q->force = true;
		q->src = rg->src + i * PG;
		q->npages = 1;
		req_issue(lz, q);
		pf->req = q;
		return 1;
	}

	/* The missing run around the fault, inside the window its stream earned (lazy_window.c). */
	wf.page = rg->src / PG + i;
	wf.below = present_run(rg, i, -1);
	wf.above = present_run(rg, i, 1);
	wf.tid = pf->tid;
	rst_lz_window_pick(&mm->win, &wf, &wsrc, &wpages);
	wlo = wsrc > rg->src / PG ? wsrc - rg->src / PG : 0;
	whi = wsrc + wpages - rg->src / PG;
	if (whi > (rg->end - rg->start) / PG)
		whi = (rg->end - rg->start) / PG;
	lo = i;
	while (lo > wlo && !bit_test(rg->done, lo - 1))
		lo--;
	hi = i + 1;
	while (hi < whi && !bit_test(rg->done, hi))
		hi++;

	q->force = false;
	q->src = rg->src + lo * PG;
	q->npages = (uint32_t)(hi - lo);
	pthread_mutex_lock(&lz->lock);
	lz->st.fetched_bytes += (hi - lo) * PG;
	for (size_t k = 0; k < lz->nmm; k++)
		if (lz->mm[k] == mm)
			lz->hint_mm = k;
	lz->hint = rg->start + hi * PG;
	pthread_mutex_unlock(&lz->lock);
	req_issue(lz, q);
	pf->req = q;
	return 1;
}

/*
 * Copy pages [*@off, @end) of a run fetched from source address @src into
 * @mm, each piece where its region is now (looked up by source address:
 * events since the fetch may have moved or dropped it; dropped pages are
 * skipped).  Advances *@off; on -EAGAIN a later call resumes there.  Returns
 * the pages filled, -EAGAIN, -ESRCH or -errno.
 */
static long copy_run(struct rst_lazy *lz, struct lz_mm *mm, uint64_t src, const char *buf,
		     uint32_t *off, uint32_t end, bool fault)
{
	long filled = 0;

	while (*off < end) {
		uint64_t s = src + (uint64_t)*off * PG;
		struct lz_region *rg = mm->dead ? NULL : rst_lz_region_find_src(mm, s);
		uint64_t i, n;
		long ret;

		if (!rg) { /* unmapped since it was fetched */
			(*off)++;
			continue;
		}
		i = (s - rg->src) / PG;
		n = end - *off;
		if (n > (rg->end - rg->start) / PG - i)
			n = (rg->end - rg->start) / PG - i;
		ret = copy_pages(lz, mm, rg, i, n, buf + (uint64_t)*off * PG, fault);
		if (ret < 0)
			return ret;
		filled += ret;
		*off += (uint32_t)n;
	}
	return filled;
}

/*
 * Copy fetched fault window @q.  A forced page (marked present, faulted
 * anyway) is copied whatever the done bitmap says, unless the process
 * zapped it since.  0 (copied or dropped), -EAGAIN, -ESRCH or -errno.
 */
int rst_lz_copy_req(struct rst_lazy *lz, struct lz_req *q)
{
	struct lz_region *rg;
	long ret;

	if (q->mm->dead) {
		q->off = q->npages;
		return 0;
	}
	if (!q->force) {
		ret = copy_run(lz, q->mm, q->src, q->buf, &q->off, q->npages, true);
		if (ret < 0)
			return (int)ret;
		q->filled += (uint32_t)ret;
		return 0;
	}
	rg = rst_lz_region_find_src(q->mm, q->src);
	if (rg && !bit_test(rg->zero, (q->src - rg->src) / PG)) {
		struct uffdio_copy c = {.dst = rg->start + (q->src - rg->src),
					.src = (uint64_t)(uintptr_t)q->buf,
					.len = PG,
					.mode = 0};

		if (ioctl(q->mm->uffd, UFFDIO_COPY, &c) && errno != EEXIST && errno != ENOENT)
			return uffd_err(errno);
	}
	q->off = q->npages;
	return 0;
}

void rst_lz_mm_dead(struct rst_lazy *lz, struct lz_mm *mm);

/*
 * Window @q is copied: answer the faults that waited for it and free it.
 * A fault whose page this copy filled was woken by it; the others (present
 * already: EEXIST, zapped since, moved) are woken or zero-filled now, as
 * rst_lz_serve_fault would.  0 or -errno; a fault whose answer says -EAGAIN goes
 * back to rst_lz_serve_fault (*@stalled: after the events are read).
 */
int rst_lz_req_done(struct rst_lazy *lz, struct lz_req *q, struct lz_pend *pend, size_t *npend,
		    bool *stalled)
{
	bool all = !q->force && q->filled == q->npages;

	for (size_t k = 0; k < *npend;) {
		struct lz_pend *pf = &pend[k];
		struct lz_region *rg;
		int ret = 0;

		if (pf->req != q) {
			k++;
			continue;
		}
		pf->req = NULL;
		if (pf->mm->dead) {
			pend[k] = pend[--*npend];
			continue;
		}
		rg = rst_lz_region_find(pf->mm, pf->addr);
		if (rg && bit_test(rg->zero, (pf->addr - rg->start) / PG)) {
			pthread_mutex_lock(&lz->lock);
			lz->st.zero_pages++;
			pthread_mutex_unlock(&lz->lock);
			ret = uffd_zero(pf->mm, pf->addr);
		} else {
			uint64_t s = rg ? rg->src + (pf->addr - rg->start) : 0;

			if (!all || !rg || s < q->src || s >= q->src + (uint64_t)q->npages * PG)
				ret = rst_lz_uffd_wake(pf->mm, pf->addr);
		}
		if (ret == -EAGAIN) {
			k++; /* served again after the events are read */
			*stalled = true;
			continue;
		}
		ret = rst_lz_pend_answered(lz, pend, npend, k, ret);
		if (ret)
			return ret;
	}
	q->busy = false;
	return 0;
}

/*
 * Copy one slice of the chunk in progress (or of the next ready one).
 * Returns 1 when a slice was handled, 0 when there was nothing to do,
 * -EAGAIN, -ESRCH or -errno.
 */
int rst_lz_push_slice(struct rst_lazy *lz)
{
	struct lz_chunk *c = lz->cur;
	uint32_t end;
	long ret;

	if (!c) {
		pthread_mutex_lock(&lz->lock);
		c = lz_queue_pop(lz->ready_head, lz->ready_tail);
		pthread_mutex_unlock(&lz->lock);
		if (!c)
			return 0;
		lz->cur = c;
	}
	end = c->off + LAZY_PUSH_SLICE_PAGES;
	if (end > c->npages || c->mm->dead)
		end = c->npages;
	ret = copy_run(lz, c->mm, c->src, c->buf, &c->off, end, false);
	if (ret < 0)
		return (int)ret;
	if (c->off == c->npages) {
		lz->cur = NULL;
		pthread_mutex_lock(&lz->lock);
		c->next = lz->free_list;
		lz->free_list = c;
		pthread_cond_broadcast(&lz->cv);
		pthread_mutex_unlock(&lz->lock);
	}
	return 1;
}
