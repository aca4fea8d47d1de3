/*
 * mig_precopy.c - the pre-copy rounds of a live migration: scan, send, decide.
 *
 * Each round scans the dirty set (trk_round; round 1: every populated
 * page), sends the layout when it changed, reads the pages in batches of
 * HAUL_MIG_READ_PAGES (trk_read_pages) and pushes them (ps_client_pages),
 * paced to the bandwidth limit, then a barrier (ps_client_round_end).  The
 * convergence model (converge.c) then decides: another round, a CPU
 * throttle step, or switchover (mig_switch.c).  Ranges whose contents are
 * gone are sent as zero ranges.  The source runs throughout; nothing here
 * holds it.  The stall probe (stall.c) samples the workload's threads
 * meanwhile: the client's longest stall before the freeze.  With
 * --precopy-nice N every thread of haul but the probe's runs at nice +N
 * through the rounds, and so does the target's page server (RoundBegin.nice):
 * the workload gets the CPU first while it runs; both are back at full
 * weight before the freeze (cpuweight.c).
 */
#define LOG_PREFIX "migrate: "
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/cpuweight.h"
#include "common/log.h"
#include "common/policy.h"
#include "haul/migrate_int.h"

/* ---- sending pages ----------------------------------------------------- */

/*
 * Sleep as long as the wire bytes sent since the round began are ahead of
 * --bandwidth.  The page client paces too; this only acts if it does not.
 */
static void pace(struct mig *m)
{
	struct ps_client_stats st;
	double due_ms;

	if (!m->o->bandwidth)
		return;
	ps_client_stats(m->client, &st);
	due_ms = (double)(st.bytes_sent - m->pace_bytes0) * 1e3 / m->o->bandwidth;
	for (double ahead = m->pace_t0 + due_ms - haul_now_ms(); ahead > 0.5;
	     ahead = m->pace_t0 + due_ms - haul_now_ms())
		usleep((useconds_t)(ahead * 1e3));
}

static int flush_batch(struct mig *m)
{
	uint64_t off = 0;
	double t0, t1;
	int ret;

	if (!m->nbatch)
		return 0;
	/*
	 * trk_read() through the tracker when there is one: it remembers what
	 * was read (hashes, pages read although unpopulated), which later rounds
	 * need to report every change.
	 */
	t0 = haul_now_ms();
	ret = m->trk ? trk_read(m->trk, m->batch, m->nbatch, m->buf, m->zero)
		     : trk_read_pages(m->pid, m->batch, m->nbatch, m->buf, m->zero);
	t1 = haul_now_ms();
	m->round_read_ms += t1 - t0;
	if (ret) {
		pr_err_r(ret, "cannot read the pages of pid %d", m->pid);
		return ret;
	}
	ret = haul_pc_record(m->pc, m->batch, m->nbatch, m->buf, m->zero);
	if (ret)
		return ret;
	/* one call for the whole batch: scattered pages share frames (the final round's are) */
	for (size_t i = 0; i < m->nbatch; i++) {
		m->vbatch[i] = (struct ps_range){m->batch[i].start, m->batch[i].npages};
		off += m->batch[i].npages;
	}
	ret = ps_client_pages_v(m->client, m->vbatch, m->nbatch, m->buf, m->zero);
	m->round_send_ms += haul_now_ms() - t1;
	if (ret) {
		pr_err_r(ret, "cannot send pages of pid %d to %s", m->pid, m->o->to);
		return ret;
	}
	m->round_pages += off;
	m->nbatch = 0;
	m->batch_pages = 0;
	pace(m);
	if (m->o->on_progress && haul_now_ms() - m->last_progress >= HAUL_MIG_PROGRESS_MS) {
		double el = haul_now_ms() - m->pace_t0;

		m->last_progress = haul_now_ms();
		m->o->on_progress(m->o->arg, m->round_seq, m->tree_sent + m->round_pages,
				  m->tree_found + m->round_total,
				  el > 0 ? m->round_pages * HAUL_PAGE_SIZE / 1e3 / el : 0,
				  (unsigned)m->cur + 1, (unsigned)m->nprocs);
	}
	return 0;
}

/* Queue @r, split into pieces that fit the batch; flush full batches. */
static int queue_range(struct mig *m, const struct trk_range *r)
{
	uint64_t start = r->start, left = r->npages;
	int ret;

	while (left) {
		uint64_t room = HAUL_MIG_READ_PAGES - m->batch_pages;
		uint64_t n = left < room ? left : room;

		m->batch[m->nbatch++] = (struct trk_range){.start = start, .npages = n};
		m->batch_pages += n;
		start += n * HAUL_PAGE_SIZE;
		left -= n;
		if (m->batch_pages == HAUL_MIG_READ_PAGES || m->nbatch == HAUL_MIG_READ_PAGES) {
			ret = flush_batch(m);
			if (ret)
				return ret;
			if (haul_mig_stop_requested(m))
				return -EINTR;
		}
	}
	return 0;
}

/* Send one round the tracker found: layout if needed, every dirty page, barrier. */
/*
 * Zero what the tracker reports gone (unmapped, moved away, replaced) where
 * the new layout still maps it and the round does not rewrite it: the
 * target's copy of a replaced range must not keep the old contents.  Pages
 * of a round may arrive in any order across streams, so gone and dirty must
 * not overlap: the dirty ranges are cut out (both lists are sorted).
 */
static int send_gone(struct mig *m, const struct trk_round *r)
{
	static const uint64_t all_zero[HAUL_MIG_READ_PAGES / 64] = {
		[0 ... HAUL_MIG_READ_PAGES / 64 - 1] = ~0ULL,
	};
	size_t d = 0;

	for (size_t i = 0; i < r->ngone; i++) {
		uint64_t a = r->gone[i].start;
		uint64_t end = a + r->gone[i].npages * HAUL_PAGE_SIZE;

		while (a < end) {
			const struct haul_vma *v = haul_layout_find(&r->layout, a);
			uint64_t b = end;
			int ret;

			while (d < r->ndirty &&
			       r->dirty[d].start + r->dirty[d].npages * HAUL_PAGE_SIZE <= a)
				d++;
			if (d < r->ndirty && r->dirty[d].start <= a) {
				a = r->dirty[d].start + r->dirty[d].npages * HAUL_PAGE_SIZE;
				continue;
			}
			if (d < r->ndirty && r->dirty[d].start < b)
				b = r->dirty[d].start;
			if (!v || !haul_vma_is_memory(v)) {
				/* unmapped now: the layout already dropped it on the target */
				const struct haul_vma *next = haul_layout_next(&r->layout, a);

				a = next && next->start < b ? next->start : b;
				continue;
			}
			if (v->end < b)
				b = v->end;
			if (b - a > HAUL_MIG_READ_PAGES * HAUL_PAGE_SIZE)
				b = a + HAUL_MIG_READ_PAGES * HAUL_PAGE_SIZE;
			ret = ps_client_pages(m->client, a, m->buf,
					      (uint32_t)((b - a) / HAUL_PAGE_SIZE), all_zero);
			if (ret) {
				pr_err_r(ret, "cannot send the zeroed pages of pid %d to %s",
					 m->pid, m->o->to);
				return ret;
			}
			a = b;
		}
	}
	return 0;
}

/* rst_ghost_send_fn: a deleted mapped file to the target, before the freeze. */
static int ghost_send(void *arg, const void *blob, size_t len, bool *kept)
{
	struct mig *m = arg;

	return ps_client_ghost(m->client, blob, len, kept);
}

int haul_mig_send_round(struct mig *m, const struct trk_round *r, bool midpoint_fault)
{
	struct ps_client_stats st;
	int ret;

	if (r->seq == 1 || r->layout_changed) {
		ret = ps_client_layout(m->client, &r->layout);
		/* its deleted files mapped privately, out of the stop (never in it) */
		if (!ret && m->running_round)
			ret = rst_dump_prep_ghosts(m->prep, m->pid, &r->layout, ghost_send, m);
		if (ret) {
			pr_err_r(ret, "cannot send the layout of pid %d to %s", m->pid, m->o->to);
			return ret;
		}
	}
	ret = ps_client_round_begin(m->client, r->seq);
	if (ret) {
		pr_err_r(ret, "cannot begin round %llu with %s", (unsigned long long)r->seq,
			 m->o->to);
		return ret;
	}
	ps_client_stats(m->client, &st);
	/* a tree's round starts at the root; the others' go on from the ones before */
	if (!m->cur) {
		m->tree_found = m->tree_sent = 0;
	} else {
		m->tree_found += m->round_total; /* still the process before's */
		m->tree_sent += m->round_pages;
	}
	m->round_pages = 0;
	m->round_read_ms = m->round_send_ms = m->round_end_ms = 0;
	m->round_total = r->dirty_pages;
	m->round_seq = r->seq;
	m->pace_t0 = m->last_progress = haul_now_ms();
	m->pace_bytes0 = st.bytes_sent;
	ret = send_gone(m, r);
	if (ret)
		return ret;
	for (size_t i = 0; i < r->ndirty; i++) {
		ret = queue_range(m, &r->dirty[i]);
		if (ret)
			return ret;
		if (midpoint_fault && i == r->ndirty / 2) {
			ret = haul_mig_fault_point(m, "precopy");
			if (ret)
				return ret;
		}
	}
	ret = flush_batch(m);
	if (ret)
		return ret;
	pr_debug("round %llu: %llu pages sent of %llu found", (unsigned long long)r->seq,
		 (unsigned long long)m->round_pages, (unsigned long long)r->dirty_pages);
	m->round_end_ms = haul_now_ms();
	ret = ps_client_round_end(m->client, r->seq);
	m->round_end_ms = haul_now_ms() - m->round_end_ms;
	if (ret)
		pr_err_r(ret, "round %llu of pid %d did not reach %s", (unsigned long long)r->seq,
			 m->pid, m->o->to);
	return ret;
}

/* ---- rounds ------------------------------------------------------------ */

int haul_mig_add_round_stat(struct haul_mig_result *res, const struct haul_mig_round *s)
{
	struct haul_mig_round *n;

	n = realloc(res->round, (res->nround + 1) * sizeof(*n));
	if (!n)
		return -ENOMEM;
	res->round = n;
	res->round[res->nround++] = *s;
	return 0;
}

/* CPUs the workload used since the last call (for the throttle quota). */
static void measure_cpu(struct mig *m)
{
	long long ticks = haul_mig_cpu_ticks(m); /* a tree's: every process's */
	double t = haul_now_ms(), hz = (double)sysconf(_SC_CLK_TCK);

	if (ticks < 0)
		return;
	if (m->cpu_ticks > 0 && t - m->cpu_t > 50 && !m->cg.throttle_pct) {
		double cpus = (ticks - m->cpu_ticks) / hz / ((t - m->cpu_t) / 1e3);
		long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

		if (cpus > ncpu)
			cpus = ncpu;
		if (cpus > 0.05)
			m->cpus = cpus;
	}
	m->cpu_ticks = ticks;
	m->cpu_t = t;
}

/*
 * What a round's verdict @a means: 1 to switch over now (the reason recorded
 * where it is over the target), 0 to go on (throttled where it asks), or
 * -errno.
 */
static int round_verdict(struct mig *m, enum haul_conv_action a, const struct haul_mig_round *rs)
{
	struct haul_mig_result *res = m->res;
	int ret;

	if (a == HAUL_CONV_SWITCH)
		return 1;
	/*
	 * Hybrid goes post-copy where pre-copy stops converging, not where pre-copy
	 * would throttle to converge faster: while a round still shrinks to under
	 * HAUL_MIG_CONVERGE_PCT of the last, another round makes what follows the
	 * resume smaller.  Switching at 4 GiB's third round (64 MiB/s over 1 Gbit/s)
	 * left ~120 k scattered pages, which the State's 4096 stale runs turned into
	 * 958 k (bench/RESULTS.md): a 176 ms restore zapping them and 33 s of
	 * post-copy with the frozen source the only copy.
	 */
	if (m->o->mode == HAUL_MIG_HYBRID && haul_conv_hybrid_goes_on(&m->conv, a))
		return 0;
	if (m->o->mode == HAUL_MIG_HYBRID && a != HAUL_CONV_CONTINUE) {
		/* not converging: what is still dirty follows after the resume */
		pr_info("pid %d does not converge (%s, expected downtime %.1f ms); "
			"switching to post-copy",
			m->pid, haul_conv_action_name(a), m->conv.expected_ms);
		m->stale_final = true;
		return 1;
	}
	if (a == HAUL_CONV_SWITCH_FLOOR) {
		res->over_why = "the fixed switchover costs alone exceed it";
		pr_warn("pid %d: the fixed switchover costs alone (~%.0f ms) exceed the "
			"%.1f ms target; switching over at %.1f ms expected",
			m->pid, m->conv.fixed_ms, m->o->downtime_ms, m->conv.expected_ms);
		return 1;
	}
	if (a == HAUL_CONV_SWITCH_HOT) {
		if (m->conv.expected_ms > m->o->downtime_ms)
			res->over_why = "a hot set, rewritten whole in any round, throttled "
					"or not";
		if (m->conv.throttle_pct)
			pr_info("pid %d: %llu dirty pages a round, not fewer under a %u%% "
				"throttle (a hot set); switching over at %.1f ms expected",
				m->pid, (unsigned long long)rs->pages, m->conv.throttle_pct,
				m->conv.expected_ms);
		else
			pr_info("pid %d: %llu dirty pages a round however short the round "
				"(a hot set); switching over at %.1f ms expected, unthrottled",
				m->pid, (unsigned long long)rs->pages, m->conv.expected_ms);
		return 1;
	}
	if (a == HAUL_CONV_SWITCH_LIMIT) {
		res->over_why = "it did not converge within --max-rounds";
		pr_warn("pid %d did not converge in %u rounds; switching over with an "
			"expected downtime of %.1f ms (target %.1f ms)",
			m->pid, m->conv.max_rounds, m->conv.expected_ms, m->o->downtime_ms);
		return 1;
	}
	if (a == HAUL_CONV_THROTTLE) {
		/* stretches up to the downtime target: no longer than the stop it buys */
		m->cg.throttle_stall_max_us = (long)(m->o->downtime_ms * 1e3);
		ret = haul_cg_throttle(&m->cg, m->conv.throttle_pct, m->cpus);
		if (ret == -EOPNOTSUPP)
			pr_warn("pid %d does not converge and cannot be throttled here", m->pid);
		/* as applied: a throttle deeper than short stalls allow is lowered */
		else if (!ret && m->cg.throttle_pct > res->throttle_max)
			res->throttle_max = m->cg.throttle_pct;
		if (!ret && m->cg.throttle_stall_ms > res->throttle_stall_max_ms)
			res->throttle_stall_max_ms = m->cg.throttle_stall_ms;
		if (!ret) {
			ret = haul_mig_fault_point(m, "throttled");
			if (ret)
				return ret;
		}
	}
	return 0;
}

/*
 * Only a deep duty cycle, whose stretches grew past HAUL_MIG_DUTY_FROZEN_US:
 * a window after a 3 ms stretch lets 3 ms of backlog through, no more than
 * the writer writes anyway (1 GiB at 64 MiB/s over 1 Gbit/s, a 59-73%
 * throttle: final rounds of 458-587 pages held against 460-489 lifted).
 */
static bool can_hold(const struct mig *m)
{
	return m->cg.duty && !m->nprocs && m->o->mode == HAUL_MIG_PRECOPY &&
	       haul_duty_frozen_ms(m->cg.duty) * 1e3 > HAUL_MIG_DUTY_FROZEN_US;
}

/*
 * Near the end of a pre-copy throttled by a deep duty cycle (the last
 * round's expected downtime within HAUL_MIG_HOLD_NEAR times the target),
 * hold the cycle's next frozen stretch and scan in it.  A round scanned while the workload runs
 * is followed by running windows before the switchover's freeze, and a
 * paced writer catches up its whole backlog in the first (161 page writes
 * at 64 MiB/s): the final round carried 710-785 pages where the last scan
 * had found 285-389 (4 GiB over 1 Gbit/s).  Whether a stretch is held.
 */
static bool hold_stretch(struct mig *m)
{
	int ret;

	if (!can_hold(m))
		return false;
	/*
	 * Not yet decided: only near the end, and only where a scan fits in a
	 * stretch (a held stretch released after a longer scan is a longer stop).
	 */
	if (!m->hold_final &&
	    (!m->conv.expected_ms || m->conv.expected_ms > HAUL_MIG_HOLD_NEAR * m->o->downtime_ms ||
	     m->last_scan_ms > haul_duty_frozen_ms(m->cg.duty)))
		return false;
	ret = haul_duty_hold(m->cg.duty, HAUL_MIG_HOLD_WAIT_MS, &m->held_at_ms);
	/* the write asked the freeze: a scan that skips its own stop needs it taken */
	if (!ret && haul_freeze_settled(&m->cg, HAUL_MIG_HOLD_WAIT_MS)) {
		haul_duty_release(m->cg.duty);
		ret = -ETIMEDOUT;
	}
	if (ret) {
		pr_debug("pid %d: no throttle stretch to hold (%s): this round scans it running",
			 m->pid, strerror(-ret));
		return false;
	}
	trk_set_frozen(m->trk, true); /* held by the freezer: the walk may be split */
	return true;
}

/*
 * Round @r was scanned in a held stretch: when its pages, the fixed costs
 * and the stretch so far fit the downtime target, or the rounds before had
 * decided to switch over (m->hold_final), keep them for the final round and
 * switch over in this stretch (true); else let the stretch end.
 */
static bool held_switch(struct mig *m, struct trk_round *r)
{
	double so_far = haul_now_ms() - m->held_at_ms;
	double exp =
		so_far + haul_conv_downtime_ms(&m->conv, (double)r->dirty_pages * HAUL_PAGE_SIZE);

	trk_set_frozen(m->trk, false);
	if (exp > m->o->downtime_ms && !m->hold_final) {
		pr_debug("pid %d: %llu dirty pages found %.1f ms into a held throttle stretch, "
			 "expected downtime %.1f ms: over the target, the stretch ends",
			 m->pid, (unsigned long long)r->dirty_pages, so_far, exp);
		haul_duty_release(m->cg.duty);
		return false;
	}
	pr_info("pid %d: %llu dirty pages found %.1f ms into a throttle stretch, expected "
		"downtime %.1f ms: switching over in that stretch",
		m->pid, (unsigned long long)r->dirty_pages, so_far, exp);
	m->held = *r;
	m->held_switch = true;
	m->conv.expected_ms = exp;
	return true;
}

static int precopy_rounds(struct mig *m)
{
	struct haul_mig_result *res = m->res;
	double last_scan = 0;
	int ret;

	for (;;) {
		struct haul_mig_round rs = {0};
		struct ps_client_stats st0, st1;
		struct haul_conv_sample s;
		enum haul_conv_action a;
		struct trk_round r;
		double t_begin, t_prep, t_scan, t_end, tree_scan_ms = 0;
		uint64_t tree_pages = 0, tree_wire = 0;
		bool held;

		if (haul_mig_stop_requested(m))
			return -EINTR;
		t_begin = haul_now_ms();
		/*
		 * smaps walks page tables (~30 ms/GiB): read it here, not in the stop.
		 * Not again for the held round of a decided switchover: the writes in
		 * that walk would be in its set (the switchover without a hold uses
		 * the last round's reading too).
		 */
		if (!m->hold_final) {
			measure_cpu(m);
			ret = rst_dump_prepare(m->pid, &m->prep);
			if (ret) {
				pr_err_r(ret, "cannot read the layout of pid %d", m->pid);
				return ret;
			}
		}
		t_prep = haul_now_ms();
		held = hold_stretch(m);
		if (m->hold_final && !held)
			return 0; /* no stretch to hold: the switchover lifts the throttle */
		ret = trk_round(m->trk, &r);
		if (ret) {
			if (held) {
				trk_set_frozen(m->trk, false);
				haul_duty_release(m->cg.duty);
			}
			pr_err_r(ret, "cannot scan the dirty pages of pid %d", m->pid);
			return ret;
		}
		m->last_scan_ms = r.scan_ms;
		/* made right at once on the target, not again in the downtime */
		rst_dump_prep_annotate(m->prep, &r.layout);
		if (held && held_switch(m, &r))
			return 0; /* the switchover sends r in its stop */
		t_scan = haul_now_ms();
		if (trk_call_ms(m->trk) > res->scan_call_max_ms)
			res->scan_call_max_ms = trk_call_ms(m->trk);
		ps_client_stats(m->client, &st0);
		/* a tree: the same round of every other process; the model sees the sum */
		m->running_round = true;
		if (m->nprocs)
			ret = haul_mig_tree_round(m, &r, false, r.seq == 1, &tree_pages, &tree_wire,
						  &tree_scan_ms);
		else
			ret = haul_mig_send_round(m, &r, r.seq == 1);
		m->running_round = false;
		t_end = haul_now_ms();
		ps_client_stats(m->client, &st1);
		if (ret) {
			trk_round_release(&r);
			return ret;
		}
		s = (struct haul_conv_sample){
			.dirty_bytes = (r.dirty_pages + tree_pages) * HAUL_PAGE_SIZE,
			.scan_gap_s = last_scan ? (t_scan - last_scan) / 1e3 : 0,
			.send_s = (t_end - t_scan) / 1e3,
			.since_scan_s = (haul_now_ms() - t_scan) / 1e3,
		};
		last_scan = t_scan;
		a = haul_conv_update(&m->conv, &s);
		rs.seq = r.seq;
		rs.pages = r.dirty_pages + tree_pages;
		rs.wire_bytes = st1.bytes_sent - st0.bytes_sent + tree_wire;
		rs.ms = t_end - t_scan;
		rs.scan_ms = r.scan_ms + tree_scan_ms;
		rs.mbps = rs.ms > 0 ? rs.pages * HAUL_PAGE_SIZE / 1e3 / rs.ms : 0;
		rs.dirty_mbps = m->conv.dirty_rate / 1e6;
		rs.expected_ms = m->conv.expected_ms;
		rs.throttle_pct = m->cg.throttle_pct;
		rs.stall_ms = haul_stall_probe_take(m->probe);
		/*
		 * The probe cannot see a frozen thread (state S): the duty cycle measures
		 * its own freezes, the running one's and those of one lifted since.
		 */
		if (haul_duty_stretch_max_ms(m->cg.duty) > res->throttle_stall_max_ms)
			res->throttle_stall_max_ms = haul_duty_stretch_max_ms(m->cg.duty);
		if (m->cg.duty_stretch_max_ms > res->throttle_stall_max_ms)
			res->throttle_stall_max_ms = m->cg.duty_stretch_max_ms;
		rs.nprocs = (unsigned)m->nprocs;
		trk_round_release(&r);
		ret = haul_mig_add_round_stat(res, &rs);
		if (ret)
			return ret;
		res->rounds++;
		if (m->o->on_round)
			m->o->on_round(m->o->arg, &rs);
		/* on the stall probe's clock: a stall it names falls in one of these phases */
		pr_debug("round %llu: layout read %.1f..%.1f, scan ..%.1f, send ..%.1f: %s",
			 (unsigned long long)rs.seq, t_begin, t_prep, t_scan, t_end,
			 haul_conv_action_name(a));
		ret = round_verdict(m, a, &rs);
		/*
		 * Switching over: under the duty cycle, in its next stretch with the
		 * set found there, rather than after a lift that lets the writer's
		 * backlog through first (hold_stretch).
		 */
		if (ret > 0 && can_hold(m) && !m->hold_final) {
			m->hold_final = true;
			continue;
		}
		if (ret)
			return ret > 0 ? 0 : ret;
	}
}

/* The rounds' nice for the target's page server, on every client of a tree. */
static void set_target_nice(struct mig *m, int nice)
{
	ps_client_set_nice(m->client, nice);
	for (size_t i = 0; i < m->nprocs; i++)
		if (i != m->cur && m->procs[i].client)
			ps_client_set_nice(m->procs[i].client, nice);
}

/*
 * The rounds, with the stall probe (stall.c) watching the workload from
 * outside meanwhile: what a client felt before the freeze goes in the
 * result next to the tracker's own stop and scan costs.
 */
int haul_mig_precopy(struct mig *m)
{
	struct haul_cpuweight w;
	int ret;

	/* a tree: every thread of every process, the processes found again as they come and go */
	m->res->stall_measured = haul_stall_probe_start(m->pid, m->nprocs > 0, &m->probe) == 0;
	/* the probe measures the workload's waits: it keeps full weight to see them */
	haul_cpuweight_init(&w, haul_stall_probe_tid(m->probe));
	if (m->o->precopy_nice > 0 && !haul_cpuweight_set(&w, m->o->precopy_nice)) {
		set_target_nice(m, m->o->precopy_nice);
		m->res->precopy_nice = m->o->precopy_nice;
	}
	ret = precopy_rounds(m);
	/* before the freeze: the downtime's work (and the final round's ingest) at full weight */
	haul_cpuweight_set(&w, 0);
	set_target_nice(m, 0);
	haul_stall_probe_stop(m->probe, &m->res->stall);
	m->probe = NULL;
	if (m->res->stall_measured)
		pr_debug("pid %d: longest stall before the freeze %.1f ms in pid %d (%.1f blocked, "
			 "%llu samples, resolution %.1f ms)",
			 m->pid, m->res->stall.max_ms, (int)m->res->stall.max_pid,
			 m->res->stall.max_blocked_ms, (unsigned long long)m->res->stall.samples,
			 m->res->stall.resolution_ms);
	/* a tree: the longest of its processes' stops (each is stopped on its own) */
	m->res->attach_stop_ms = trk_stop_ms(m->trk);
	for (size_t i = 0; i < m->nprocs; i++)
		if (i != m->cur && m->procs[i].trk &&
		    trk_stop_ms(m->procs[i].trk) > m->res->attach_stop_ms)
			m->res->attach_stop_ms = trk_stop_ms(m->procs[i].trk);
	return ret;
}
