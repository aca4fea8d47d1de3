/*
 * lazy_fetch.c - the fetcher threads: the background push and fault fetches.
 *
 * Fetchers claim the next missing pages after the last fault (wrapping
 * around) within the push window, wait for their pace while the process
 * faults (lazy_pace.c), read them from the source into a free chunk and
 * queue it for the fault thread; fault-fetch threads fetch the
 * fault windows the fault thread queues.  Neither ever copies into the
 * process: what they fetched is placed by source address when the fault
 * thread copies it.  They read regions and bitmaps under lz->lock only.
 */
#define LOG_PREFIX "lazy: "
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "common/log.h"
#include "restore/lazy_int.h"

/* ---- the fetchers ----------------------------------------------------------------- */

/* Claim the next run of pages of @mm from address @from on, wrapping around. Under lz->lock. */
static bool plan_in(struct lz_mm *mm, uint64_t from_addr, uint32_t chunk, uint64_t *src,
		    uint32_t *npages, uint64_t *next)
{
	size_t first = 0;

	if (!mm->nr)
		return false;
	while (first < mm->nr && mm->r[first].end <= from_addr)
		first++;
	for (size_t k = 0; k <= mm->nr; k++) {
		struct lz_region *rg = &mm->r[(first + k) % mm->nr];
		uint64_t n = (rg->end - rg->start) / PG, from = 0, i, run = 0;

		if (k == 0 && from_addr > rg->start)
			from = (from_addr - rg->start) / PG;
		if (!rg->missing || from >= n)
			continue;
		i = find_clear2(rg->done, rg->claimed, from, n);
		if (i == n)
			continue;
		while (i + run < n && run < chunk && !bit_test(rg->done, i + run) &&
		       !bit_test(rg->claimed, i + run)) {
			bit_set(rg->claimed, i + run);
			run++;
		}
		*src = rg->src + i * PG;
		*npages = (uint32_t)run;
		*next = rg->start + (i + run) * PG;
		return true;
	}
	return false;
}

/* Whether the process faulted in the last LAZY_FAULT_RECENT_MS.  Under lz->lock. */
static bool faulting(const struct rst_lazy *lz)
{
	return lz->last_fault_ns &&
	       now_ns() - lz->last_fault_ns < LAZY_FAULT_RECENT_MS * 1000000ull;
}

/*
 * Pages the push may request now: its window less what is in flight, in
 * chunks no larger than lz->fault_chunk while the process faults,
 * so that a fault's reply never queues behind a whole chunk.  Under lz->lock.
 */
static uint32_t push_room(const struct rst_lazy *lz)
{
	uint32_t window = lz->push_window, chunk = lz->chunk_pages, room;

	if (faulting(lz)) {
		if (window > lz->nfetchers * lz->fault_chunk)
			window = lz->nfetchers * lz->fault_chunk;
		if (chunk > lz->fault_chunk)
			chunk = lz->fault_chunk;
	}
	room = window > lz->push_inflight ? window - lz->push_inflight : 0;
	return room < chunk ? room : chunk;
}

/* Claim the next run of pages to push, starting at the hint. Under lz->lock. */
static bool plan_next(struct rst_lazy *lz, struct lz_chunk *c)
{
	uint32_t chunk = push_room(lz);

	if (!chunk)
		return false;
	for (size_t j = 0; j < lz->nmm; j++) {
		size_t idx = (lz->hint_mm + j) % lz->nmm;
		struct lz_mm *mm = lz->mm[idx];
		uint64_t next;

		if (mm->dead || !mm->missing)
			continue;
		if (plan_in(mm, j == 0 ? lz->hint : 0, chunk, &c->src, &c->npages, &next)) {
			c->mm = mm;
			lz->hint_mm = idx;
			lz->hint = next;
			return true;
		}
	}
	return false;
}

/*
 * Wait until @at (CLOCK_MONOTONIC ns) or a stop, under lz->lock; false on a
 * stop.  lz->cv's clock is CLOCK_MONOTONIC.
 */
static bool pace_wait(struct rst_lazy *lz, uint64_t at)
{
	struct timespec ts = {(time_t)(at / 1000000000ull), (long)(at % 1000000000ull)};

	while (!lz->stopping && now_ns() < at)
		pthread_cond_timedwait(&lz->cv, &lz->lock, &ts);
	return !lz->stopping;
}

void *rst_lz_fetch_main(void *arg)
{
	struct rst_lazy *lz = arg;

	for (;;) {
		struct lz_chunk *c;
		uint64_t one = 1, at;
		int ret;

		pthread_mutex_lock(&lz->lock);
		for (;;) {
			uint64_t gen = lz->work_gen;
			bool had_buf = lz->free_list != NULL;

			if (lz->stopping || (had_buf && plan_next(lz, lz->free_list)))
				break;
			/*
			 * Wait for a buffer, or (with one) for new work (a fork brings
			 * more) or room in the push's window.
			 */
			while (!lz->stopping && (had_buf ? gen == lz->work_gen : !lz->free_list))
				pthread_cond_wait(&lz->cv, &lz->lock);
		}
		if (lz->stopping) {
			pthread_mutex_unlock(&lz->lock);
			break;
		}
		c = lz->free_list;
		lz->free_list = c->next;
		lz->push_inflight += c->npages;
		at = rst_lz_pace_slot_at(lz, c->npages, faulting(lz), now_ns());
		if (at && !pace_wait(lz, at)) {
			lz->push_inflight -= c->npages;
			c->next = lz->free_list;
			lz->free_list = c;
			pthread_mutex_unlock(&lz->lock);
			break;
		}
		lz->st.fetched_bytes += (uint64_t)c->npages * PG;
		pthread_mutex_unlock(&lz->lock);

		ret = lz->src.fetch(lz->src.arg, c->src, c->npages, c->buf);

		pthread_mutex_lock(&lz->lock);
		lz->push_inflight -= c->npages;
		if (!ret)
			rst_lz_pace_delivered_at(lz, c->npages, now_ns());
		/* no fault for a while: the push may go deeper again */
		if (!lz->faults_inflight && !faulting(lz) &&
		    lz->push_window < lz->push_window_max) {
			lz->push_window += LAZY_PUSH_WINDOW_STEP_PAGES;
			if (lz->push_window > lz->push_window_max)
				lz->push_window = lz->push_window_max;
		}
		lz->work_gen++; /* room in the window: the other fetchers may plan */
		pthread_cond_broadcast(&lz->cv);
		c->off = 0;
		c->next = NULL;
		if (ret) {
			if (!lz->fetch_err)
				lz->fetch_err = ret;
			c->next = lz->free_list;
			lz->free_list = c;
		} else if (lz->ready_tail) {
			lz->ready_tail->next = c;
			lz->ready_tail = c;
		} else {
			lz->ready_head = lz->ready_tail = c;
		}
		pthread_mutex_unlock(&lz->lock);
		if (write(lz->readyfd, &one, sizeof(one)) < 0)
			pr_warn("cannot signal the fault thread of pid %d: %s", lz->pid,
				strerror(errno));
		if (ret)
			break;
	}
	return NULL;
}

/*
 * The push's fetch size while faulting follows the faults' round trips: it
 * grows while faults come back within LAZY_FAULT_FAST_US (the push ahead of
 * them costs them little: a CPU-bound fast link), up to its cap.  A fault
 * past twice that drops it to the floor and caps it at half the size that
 * was out: a fast fault says the queue is empty now, not what one large
 * reply does to the next fault (grown back to 1 MiB every ~45 ms over
 * 1 Gbit/s, it held a fault for 4-8 ms each time: bench/RESULTS.md, stop
 * 32).  The cap regrows a page per LAZY_PUSH_CAP_REGROW fast faults.
 */
void rst_lz_fault_chunk_adapt(struct rst_lazy *lz, uint64_t dt)
{
	if (dt < LAZY_FAULT_FAST_US * 1000ull) {
		if (lz->fault_chunk < lz->fault_chunk_cap) {
			lz->fault_chunk += LAZY_PUSH_FAULTING_PAGES;
			if (lz->fault_chunk > lz->fault_chunk_cap)
				lz->fault_chunk = lz->fault_chunk_cap;
		} else if (lz->fault_chunk_cap < lz->chunk_pages &&
			   ++lz->cap_fast >= LAZY_PUSH_CAP_REGROW) {
			lz->fault_chunk_cap++;
			lz->cap_fast = 0;
		}
	} else if (dt > 2 * LAZY_FAULT_FAST_US * 1000ull &&
		   lz->fault_chunk > LAZY_PUSH_FAULTING_PAGES) {
		lz->fault_chunk_cap = lz->fault_chunk / 2 > LAZY_PUSH_FAULTING_PAGES
					      ? lz->fault_chunk / 2
					      : LAZY_PUSH_FAULTING_PAGES;
		lz->fault_chunk = LAZY_PUSH_FAULTING_PAGES;
		lz->cap_fast = 0;
	}
}

/*
 * After the fetch of fault window @q (@ret, in @dt ns): steer the push by
 * the fault's round trip and queue @q to be copied.  Under lz->lock.
 */
static void ufetch_done(struct rst_lazy *lz, struct lz_req *q, int ret, uint64_t dt)
{
	lz->faults_inflight--;
	if (!ret)
		rst_lz_fault_chunk_adapt(lz, dt);
	/* it queued behind the push on the link: the push must not run so far ahead */
	if (!ret && dt > LAZY_FAULT_TARGET_US * 1000ull &&
	    lz->push_window > LAZY_PUSH_WINDOW_MIN_PAGES) {
		lz->push_window /= 2;
		if (lz->push_window < LAZY_PUSH_WINDOW_MIN_PAGES)
			lz->push_window = LAZY_PUSH_WINDOW_MIN_PAGES;
		if (lz->push_window < lz->st.push_window_min)
			lz->st.push_window_min = lz->push_window;
	} else if (!ret && dt < LAZY_FAULT_FAST_US * 1000ull &&
		   lz->push_window < lz->push_window_max) {
		/*
		 * fast: nothing much ahead of it; a slow one before was a
		 * passing stall (a busy CPU), not the push on the link
		 */
		lz->push_window += LAZY_PUSH_WINDOW_STEP_PAGES;
		if (lz->push_window > lz->push_window_max)
			lz->push_window = lz->push_window_max;
		lz->work_gen++;
		pthread_cond_broadcast(&lz->cv);
	}
	if (!ret)
		rst_lz_pace_fault_at(lz, dt, now_ns());
	q->next = NULL;
	if (ret) {
		if (!lz->fetch_err)
			lz->fetch_err = ret;
	} else if (lz->ur_tail) {
		lz->ur_tail->next = q;
		lz->ur_tail = q;
	} else {
		lz->ur_head = lz->ur_tail = q;
	}
}

/*
 * Fetch @q on the fault thread (counted in faults_inflight by the caller):
 * over the source's fetch_fault_try, else, when @pays, its fault path.
 * False when neither took it: the caller queues it.
 */
bool rst_lz_ufetch_inline(struct rst_lazy *lz, struct lz_req *q, bool pays)
{
	uint64_t t0 = now_ns();
	int ret = -EAGAIN;

	if (lz->src.fetch_fault_try)
		ret = lz->src.fetch_fault_try(lz->src.arg, q->src, q->npages, q->buf);
	if (ret && pays) {
		t0 = now_ns();
		ret = rst_lz_fetch_fault(lz, q->src, q->npages, q->buf);
	}
	pthread_mutex_lock(&lz->lock);
	if (ret && !pays) {
		lz->faults_inflight--;
		pthread_mutex_unlock(&lz->lock);
		return false;
	}
	lz->st.faults_inline++;
	ufetch_done(lz, q, ret, now_ns() - t0);
	pthread_mutex_unlock(&lz->lock);
	return true;
}

/*
 * A fault-fetch thread: fetch the fault windows the fault thread queues
 * (the source's fault path) and hand them back ahead of background chunks.
 * A failure is the source's: the fault thread fails the restore.
 */
void *rst_lz_ufetch_main(void *arg)
{
	struct rst_lazy *lz = arg;
	uint64_t one = 1, t0, dt;

	pthread_mutex_lock(&lz->lock);
	for (;;) {
		struct lz_req *q;
		int ret;

		while (!lz->stopping && !lz->uq_head)
			pthread_cond_wait(&lz->ucv, &lz->lock);
		if (lz->stopping)
			break;
		q = lz_queue_pop(lz->uq_head, lz->uq_tail);
		lz->faults_inflight++;
		pthread_mutex_unlock(&lz->lock);

		t0 = now_ns();
		ret = rst_lz_fetch_fault(lz, q->src, q->npages, q->buf);
		dt = now_ns() - t0;

		pthread_mutex_lock(&lz->lock);
		ufetch_done(lz, q, ret, dt);
		pthread_mutex_unlock(&lz->lock);
		if (write(lz->readyfd, &one, sizeof(one)) < 0)
			pr_warn("cannot signal the fault thread of pid %d: %s", lz->pid,
				strerror(errno));
		pthread_mutex_lock(&lz->lock);
		if (ret)
			break;
	}
	pthread_mutex_unlock(&lz->lock);
	return NULL;
}
