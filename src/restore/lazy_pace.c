/*
 * lazy_pace.c - the push's pace while the process faults: a rate below the
 * link's, set by how long the faults' fetches take.
 *
 * A fault's reply crosses the bottleneck behind every push byte asked
 * before it, and on few CPUs its chain of thread wake-ups waits behind the
 * push's.  Bounding the push's window (lazy_fetch.c) bounds that queue but
 * keeps it: a window that fills the link keeps the link's queue full, and
 * at 1 Gbit/s a fault's request waited ~310 us for its reply behind 32 KiB
 * of push; with the push paced at 95-105 MB/s, ~100 us (issue 16's
 * post-copy cell, bench/RESULTS.md stop 31).  So while the process faults
 * the push goes at a rate under the bottleneck's, found the way delay-based
 * congestion control finds it (TCP Vegas, LEDBAT), with the faults' own
 * fetches as the probe:
 *  - each fault fetch time over the base (the fastest of this epoch and
 *    the last, LAZY_PACE_EPOCH_MS each) is a sample, counted at most
 *    4 x LAZY_PACE_QUEUE_US: one fetch stalled by a busy CPU or the host
 *    moves the mean a little, a queue kept on the link moves every sample;
 *  - every LAZY_PACE_STEP_US the mean of the step decides: over
 *    LAZY_PACE_QUEUE_US the pace falls by 1/8, under half of it a pace
 *    that held a fetch back in the step rises by 1/8 (one that held none
 *    back says nothing about a faster one);
 *  - the push starts at LAZY_PACE_START_MBPS at the resume (the process
 *    faults at once, a whole tick's backlog) and opens from there; it
 *    never falls under LAZY_PACE_MIN_MBPS nor under 1/LAZY_PACE_FLOOR_DIV
 *    of its fastest LAZY_PACE_WINDOW_MS delivery window, so that a queue
 *    that is the CPUs' cannot starve it;
 *  - a push delivering LAZY_INLINE_MIN_MBPS or more in a window is not
 *    paced: there the round trip is the threads' (lazy.h);
 *  - only the push is paced, and only while the process faults: with no
 *    fault for LAZY_FAULT_RECENT_MS it goes at its window's speed.
 * State is under lz->lock (rst_lz_pace_log takes it).
 */
#define LOG_PREFIX "lazy: "
#include "common/log.h"
#include "restore/lazy_int.h"

/* The push's delivery: fetched bytes per LAZY_PACE_WINDOW_MS window. */
void rst_lz_pace_delivered_at(struct rst_lazy *lz, uint32_t npages, uint64_t now)
{
	struct lz_pace *p = &lz->pace;
	uint64_t dt;

	if (!p->win_start_ns)
		p->win_start_ns = lz->t_start ? lz->t_start : now;
	p->win_bytes += (uint64_t)npages * PG;
	dt = now - p->win_start_ns;
	if (dt < LAZY_PACE_WINDOW_MS * 1000000ull)
		return;
	p->rate_bps = p->win_bytes * 1000000000ull / dt;
	if (p->rate_bps > p->rate_max_bps)
		p->rate_max_bps = p->rate_bps;
	p->win_start_ns = now;
	p->win_bytes = 0;
}

/* Whether the push is fast enough that its round trips are the CPUs' (lazy.h). */
static bool fast_push(const struct rst_lazy *lz)
{
	return lz->pace.rate_bps >= (uint64_t)LAZY_INLINE_MIN_MBPS * 1000000ull;
}

void rst_lz_pace_start(struct rst_lazy *lz)
{
	lz->pace.bps = (uint64_t)LAZY_PACE_START_MBPS * 1000000ull;
	lz->pace.step_ns = lz->t_start;
}

/*
 * Add fault fetch time @dt to the step's queue: how much it took over the
 * base (the fastest fetch of this epoch and the last), at most
 * LAZY_PACE_QUEUE_US x 4.  A stall of the whole path (a busy CPU, the
 * host's pause) makes one fetch slow and moves the step's mean a little; a
 * queue the push keeps on the link makes them all slower.
 */
static void queue_sample(struct lz_pace *p, uint64_t now, uint64_t dt)
{
	uint64_t base, over;

	if (now - p->epoch_ns > LAZY_PACE_EPOCH_MS * 1000000ull) {
		p->base_prev_ns = p->base_ns;
		p->base_ns = 0;
		p->epoch_ns = now;
	}
	if (!p->base_ns || dt < p->base_ns)
		p->base_ns = dt;
	base = p->base_prev_ns && p->base_prev_ns < p->base_ns ? p->base_prev_ns : p->base_ns;
	over = dt - base;
	if (over > LAZY_PACE_QUEUE_US * 4000ull)
		over = LAZY_PACE_QUEUE_US * 4000ull;
	p->step_sum_ns += over;
	p->step_n++;
}

void rst_lz_pace_fault_at(struct rst_lazy *lz, uint64_t dt, uint64_t now)
{
	struct lz_pace *p = &lz->pace;
	uint64_t queue, floor;

	queue_sample(p, now, dt);
	if (now - p->step_ns < LAZY_PACE_STEP_US * 1000ull)
		return;
	queue = p->step_sum_ns / p->step_n;
	p->step_ns = now;
	p->step_sum_ns = p->step_n = 0;
	if (fast_push(lz)) {
		p->bps = 0;
		return;
	}
	floor = p->rate_max_bps / LAZY_PACE_FLOOR_DIV;
	if (floor < (uint64_t)LAZY_PACE_MIN_MBPS * 1000000ull)
		floor = (uint64_t)LAZY_PACE_MIN_MBPS * 1000000ull;
	if (queue > LAZY_PACE_QUEUE_US * 1000ull) {
		/* unpaced (a fast push that slowed): from what it delivered */
		uint64_t from = p->bps ? p->bps : p->rate_bps;

		p->bps = from - from / 8 > floor ? from - from / 8 : floor;
		if (!lz->st.pace_min_bps || p->bps < lz->st.pace_min_bps)
			lz->st.pace_min_bps = p->bps;
	} else if (p->bps && queue < LAZY_PACE_QUEUE_US * 500ull && p->waited) {
		/* only a pace that held the push back: one that did not says nothing */
		p->bps += p->bps / 8;
	}
	if (p->bps && p->bps < floor)
		p->bps = floor; /* a faster window was seen since */
	p->waited = false;
}

uint64_t rst_lz_pace_slot_at(struct rst_lazy *lz, uint32_t npages, bool faulting, uint64_t now)
{
	struct lz_pace *p = &lz->pace;
	uint64_t at;

	if (!faulting || !p->bps)
		return 0;
	at = p->next_ns > now ? p->next_ns : now;
	p->next_ns = at + (uint64_t)npages * PG * 1000000000ull / p->bps;
	if (at > now) {
		lz->st.paced_fetches++;
		p->waited = true;
		return at;
	}
	return 0;
}

void rst_lz_pace_log(struct rst_lazy *lz)
{
	pthread_mutex_lock(&lz->lock);
	if (lz->st.pace_min_bps)
		pr_info("pid %d: the push was paced while it faulted: %llu fetches waited, the "
			"pace went down to %.1f MB/s (fastest delivery %.1f MB/s)",
			lz->pid, (unsigned long long)lz->st.paced_fetches,
			lz->st.pace_min_bps / 1e6, lz->pace.rate_max_bps / 1e6);
	pthread_mutex_unlock(&lz->lock);
}
