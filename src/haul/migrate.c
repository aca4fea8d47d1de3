/*
 * migrate.c - live migration of one process: pre-copy rounds, switchover,
 * and the commit protocol in which the source dies only after the target
 * runs.  (DESIGN.md "Migration protocol, convergence policy and crash
 * points" is the long form; the crash analysis lives there.)
 *
 *  1. precheck (rst_dump_precheck): refuse what cannot move before touching
 *     anything.
 *  2. cgroups (cgroup.c): give the process a freezer and cpu cgroup of its
 *     own; fork the guardian (guard.c), which undoes them if haul dies.
 *  3. connect (ps_client_new), attach the tracker (trk_open).
 *  4. rounds: scan (trk_round: round 1 = every populated page), send the
 *     layout when it changed, read the pages in 4 MiB batches
 *     (trk_read_pages) and push them (ps_client_pages), barrier
 *     (ps_client_round_end).  The convergence model (converge.c) decides:
 *     another round, a CPU throttle step, or switchover.
 *  5. switchover: lift the throttle; freeze; rst_seize every thread; thaw
 *     the cgroup (cgroup2: the process is now held by ptrace alone, so if
 *     haul dies the kernel detaches and it runs on); final round; dump the
 *     state and send it; ask the cgroup to freeze again and rst_release
 *     (tasks in ptrace-stop count as frozen: no user instruction runs in
 *     between); tell the guardian "in doubt"; ps_client_restore.
 *  6. commit: once the target reports the process running, ps_client_commit
 *     (the target keeps it from then on), then SIGKILL the source and thaw
 *     it so that it dies.
 *  Any failure before the restore command thaws the source (undo) and
 *  closes the session (the target discards its stub).  A refused restore
 *  does the same.  A restore command whose reply never comes is in doubt:
 *  the source stays frozen and the operator is told what to check.
 *
 * --stop-and-copy is the same path without step 4: everything is copied
 * frozen.  It is the baseline the benchmarks compare against.
 *
 * --postcopy (a lazy session, no tracker, no rounds): the frozen round
 * carries only what must be there before the resume (postcopy.c), the
 * target resumes at once and fetches the rest; the source serves those
 * requests from the frozen process (haul_pc_serve) and commits and dies
 * only once the target has every page.  --hybrid: pre-copy rounds; where
 * the model would throttle (or give up), the final round sends only the
 * eager part of the dirty set and names the rest stale, and the rest
 * follows as in --postcopy.  A failure after the resume leaves the source
 * frozen for the operator (exit "in doubt"), thaws it with
 * --postcopy-rollback, or reports the process lost when the source died.
 *
 * Fault injection for the crash-point tests: HAUL_FAULT=stall:POINT[:MS]
 * stops at POINT (precopy, throttled, frozen, seized, state, restored,
 * committed) for MS ms
 * (default 30000) after printing "fault: stalled at POINT", so a test can
 * kill haul or the page server there; HAUL_FAULT=corrupt-state damages the
 * state blob so that the target refuses the restore.
 */
#define LOG_PREFIX "migrate: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/injlog.h"
#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"
#include "pageserver/pageserver.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

struct mig {
	const struct haul_mig_opts *o;
	struct haul_mig_result *res;
	pid_t pid;
	struct haul_cg cg;
	bool cg_ready;
	struct haul_guard guard;
	struct ps_client *client;
	struct trk *trk;
	struct rst_seized *seized;
	struct rst_dump_prep *prep; /* VmFlags read during pre-copy, not in the stop */
	struct haul_conv conv;
	/* post-copy and hybrid */
	struct haul_pc *pc;
	bool stale_final; /* hybrid: the last dirty set is fetched after the resume */
	/* page batch */
	uint8_t *buf;
	uint64_t *zero;
	struct trk_range batch[HAUL_MIG_READ_PAGES];
	struct ps_range vbatch[HAUL_MIG_READ_PAGES]; /* the batch, for ps_client_pages_v */
	size_t nbatch;
	uint64_t batch_pages;
	uint64_t round_pages; /* pages handed to the client this round */
	uint64_t round_total; /* pages the round has to send */
	uint64_t round_seq;
	double last_progress; /* when on_progress was last called */
	/* pacing */
	double pace_t0;
	uint64_t pace_bytes0;
	/* throttle */
	double cpus;
	long long cpu_ticks;
	double cpu_t;
};

double haul_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static bool stop_requested(const struct mig *m)
{
	return m->o->stop && *m->o->stop;
}

/*
 * HAUL_FAULT=stall:POINT[:MS]: wait at @point (tests kill haul or the page
 * server meanwhile).  A SIGINT during the stall ends it as an interrupt.
 */
static int fault_point(const struct mig *m, const char *point)
{
	const char *f = m->o->fault;
	size_t pl = strlen(point);
	double until;
	int ms = 30000;

	if (!f || strncmp(f, "stall:", 6) || strncmp(f + 6, point, pl) ||
	    (f[6 + pl] && f[6 + pl] != ':'))
		return 0;
	if (f[6 + pl] == ':')
		ms = atoi(f + 7 + pl);
	pr_info("fault: stalled at %s", point);
	until = haul_now_ms() + ms;
	while (haul_now_ms() < until) {
		if (stop_requested(m))
			return -EINTR;
		usleep(1000);
	}
	return 0;
}

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
	int ret;

	if (!m->nbatch)
		return 0;
	/*
	 * trk_read() through the tracker when there is one: it remembers what
	 * was read (hashes, pages read although unpopulated), which later rounds
	 * need to report every change.
	 */
	ret = m->trk ? trk_read(m->trk, m->batch, m->nbatch, m->buf, m->zero)
		     : trk_read_pages(m->pid, m->batch, m->nbatch, m->buf, m->zero);
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
		m->o->on_progress(m->o->arg, m->round_seq, m->round_pages, m->round_total,
				  el > 0 ? m->round_pages * HAUL_PAGE_SIZE / 1e3 / el : 0);
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
			if (stop_requested(m))
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

static int send_round(struct mig *m, const struct trk_round *r, bool midpoint_fault)
{
	struct ps_client_stats st;
	int ret;

	if (r->seq == 1 || r->layout_changed) {
		ret = ps_client_layout(m->client, &r->layout);
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
	m->round_pages = 0;
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
			ret = fault_point(m, "precopy");
			if (ret)
				return ret;
		}
	}
	ret = flush_batch(m);
	if (ret)
		return ret;
	pr_debug("round %llu: %llu pages sent of %llu found", (unsigned long long)r->seq,
		 (unsigned long long)m->round_pages, (unsigned long long)r->dirty_pages);
	ret = ps_client_round_end(m->client, r->seq);
	if (ret)
		pr_err_r(ret, "round %llu of pid %d did not reach %s", (unsigned long long)r->seq,
			 m->pid, m->o->to);
	return ret;
}

/* ---- rounds ------------------------------------------------------------ */

static int add_round_stat(struct haul_mig_result *res, const struct haul_mig_round *s)
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
	long long ticks = haul_proc_cpu_ticks(m->pid);
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

static int precopy(struct mig *m)
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
		double t_scan, t_end;

		if (stop_requested(m))
			return -EINTR;
		measure_cpu(m);
		/* smaps walks page tables (~30 ms/GiB): read it here, not in the stop */
		ret = rst_dump_prepare(m->pid, &m->prep);
		if (ret) {
			pr_err_r(ret, "cannot read the layout of pid %d", m->pid);
			return ret;
		}
		ret = trk_round(m->trk, &r);
		if (ret) {
			pr_err_r(ret, "cannot scan the dirty pages of pid %d", m->pid);
			return ret;
		}
		t_scan = haul_now_ms();
		ps_client_stats(m->client, &st0);
		ret = send_round(m, &r, r.seq == 1);
		t_end = haul_now_ms();
		ps_client_stats(m->client, &st1);
		if (ret) {
			trk_round_release(&r);
			return ret;
		}
		s = (struct haul_conv_sample){
			.dirty_bytes = r.dirty_pages * HAUL_PAGE_SIZE,
			.scan_gap_s = last_scan ? (t_scan - last_scan) / 1e3 : 0,
			.send_s = (t_end - t_scan) / 1e3,
			.since_scan_s = (haul_now_ms() - t_scan) / 1e3,
		};
		last_scan = t_scan;
		a = haul_conv_update(&m->conv, &s);
		rs.seq = r.seq;
		rs.pages = r.dirty_pages;
		rs.wire_bytes = st1.bytes_sent - st0.bytes_sent;
		rs.ms = t_end - t_scan;
		rs.scan_ms = r.scan_ms;
		rs.mbps = rs.ms > 0 ? rs.pages * HAUL_PAGE_SIZE / 1e3 / rs.ms : 0;
		rs.dirty_mbps = m->conv.dirty_rate / 1e6;
		rs.expected_ms = m->conv.expected_ms;
		rs.throttle_pct = m->cg.throttle_pct;
		trk_round_release(&r);
		ret = add_round_stat(res, &rs);
		if (ret)
			return ret;
		res->rounds++;
		if (m->o->on_round)
			m->o->on_round(m->o->arg, &rs);
		pr_debug("round %llu: %s", (unsigned long long)rs.seq, haul_conv_action_name(a));
		if (a == HAUL_CONV_SWITCH)
			return 0;
		if (m->o->mode == HAUL_MIG_HYBRID && a != HAUL_CONV_CONTINUE) {
			/* not converging: what is still dirty follows after the resume */
			pr_info("pid %d does not converge (%s, expected downtime %.1f ms); "
				"switching to post-copy",
				m->pid, haul_conv_action_name(a), m->conv.expected_ms);
			m->stale_final = true;
			return 0;
		}
		if (a == HAUL_CONV_SWITCH_FLOOR) {
			res->over_target = true;
			pr_warn("pid %d: the fixed switchover costs alone (~%.0f ms) exceed the "
				"%.1f ms target; switching over at %.1f ms expected",
				m->pid, m->conv.fixed_ms, m->o->downtime_ms, m->conv.expected_ms);
			return 0;
		}
		if (a == HAUL_CONV_SWITCH_LIMIT) {
			res->over_target = true;
			pr_warn("pid %d did not converge in %u rounds; switching over with an "
				"expected downtime of %.1f ms (target %.1f ms)",
				m->pid, m->conv.max_rounds, m->conv.expected_ms, m->o->downtime_ms);
			return 0;
		}
		if (a == HAUL_CONV_THROTTLE) {
			ret = haul_cg_throttle(&m->cg, m->conv.throttle_pct, m->cpus);
			if (ret == -EOPNOTSUPP)
				pr_warn("pid %d does not converge and cannot be throttled here",
					m->pid);
			else if (!ret && m->conv.throttle_pct > res->throttle_max)
				res->throttle_max = m->conv.throttle_pct;
			if (!ret) {
				ret = fault_point(m, "throttled");
				if (ret)
					return ret;
			}
		}
	}
}

/* ---- switchover and commit ---------------------------------------------- */

/* The final round, while the process is held stopped. */
static int final_round(struct mig *m)
{
	struct haul_mig_round rs = {0};
	struct ps_client_stats st0, st1;
	struct trk_round r;
	double t0 = haul_now_ms();
	int ret;

	/* Held stopped by us: the tracker must not try to stop it itself. */
	trk_set_frozen(m->trk, true);
	ret = trk_round(m->trk, &r);
	if (ret) {
		pr_err_r(ret, "cannot scan the last dirty pages of pid %d", m->pid);
		return ret;
	}
	ps_client_stats(m->client, &st0);
	ret = send_round(m, &r, false);
	ps_client_stats(m->client, &st1);
	rs.seq = r.seq;
	rs.pages = r.dirty_pages;
	rs.wire_bytes = st1.bytes_sent - st0.bytes_sent;
	rs.ms = haul_now_ms() - t0;
	rs.scan_ms = r.scan_ms;
	rs.mbps = rs.ms > 0 ? rs.pages * HAUL_PAGE_SIZE / 1e3 / rs.ms : 0;
	rs.final = true;
	trk_round_release(&r);
	if (ret)
		return ret;
	m->res->rounds++;
	if (m->o->on_round)
		m->o->on_round(m->o->arg, &rs);
	return add_round_stat(m->res, &rs);
}

/* Account one round sent outside precopy() (post-copy's presend and frozen rounds). */
static int lazy_round_stat(struct mig *m, const struct trk_round *r, uint64_t pages, double t0,
			   const struct ps_client_stats *st0, bool final)
{
	struct haul_mig_round rs = {0};
	struct ps_client_stats st1;

	ps_client_stats(m->client, &st1);
	rs.seq = r->seq;
	rs.pages = pages;
	rs.wire_bytes = st1.bytes_sent - st0->bytes_sent;
	rs.ms = haul_now_ms() - t0;
	rs.scan_ms = r->scan_ms;
	rs.mbps = rs.ms > 0 ? rs.pages * HAUL_PAGE_SIZE / 1e3 / rs.ms : 0;
	rs.final = final;
	m->res->rounds++;
	if (m->o->on_round)
		m->o->on_round(m->o->arg, &rs);
	return add_round_stat(m->res, &rs);
}

/*
 * Send @n ranges as round @r: its dirty list is replaced for the send (the
 * tracker's own is put back for trk_round_release); *@pages: how many.
 */
static int send_ranges(struct mig *m, struct trk_round *r, const struct ps_range *send, size_t n,
		       uint64_t *pages)
{
	struct trk_range *tr = calloc(n ? n : 1, sizeof(*tr)), *dirty = r->dirty;
	size_t ndirty = r->ndirty;
	uint64_t dirty_pages = r->dirty_pages;
	int ret;

	if (!tr)
		return -ENOMEM;
	*pages = 0;
	for (size_t i = 0; i < n; i++) {
		tr[i] = (struct trk_range){send[i].addr, send[i].npages};
		*pages += send[i].npages;
	}
	r->dirty = tr;
	r->ndirty = n;
	r->dirty_pages = *pages;
	ret = send_round(m, r, false);
	r->dirty = dirty;
	r->ndirty = ndirty;
	r->dirty_pages = dirty_pages;
	free(tr);
	return ret;
}

/*
 * --postcopy, before the freeze: the layout and the eager pages (file-backed
 * and mlocked VMAs), while the process runs; the frozen round then sends
 * only what changed of them (postcopy.c).  Also reads VmFlags (smaps) here,
 * not in the stop.
 */
static int lazy_presend(struct mig *m)
{
	struct ps_client_stats st0;
	const struct ps_range *send;
	struct trk_round r = {.seq = 1, .layout_changed = true};
	double t0 = haul_now_ms();
	uint64_t pages;
	size_t n;
	int ret;

	ret = rst_dump_prepare(m->pid, &m->prep);
	if (!ret)
		ret = rst_dump_prep_layout(m->prep, m->pid, &r.layout);
	if (ret) {
		pr_err_r(ret, "cannot read the layout of pid %d", m->pid);
		return ret;
	}
	ret = haul_pc_new(m->pid, &m->pc);
	if (!ret)
		ret = haul_pc_presend(m->pc, &r.layout, &send, &n, &pages);
	if (ret)
		goto out;
	ps_client_stats(m->client, &st0);
	ret = send_ranges(m, &r, send, n, &pages);
	if (!ret) {
		m->res->eager_pages = pages;
		ret = lazy_round_stat(m, &r, pages, t0, &st0, false);
	}
out:
	haul_layout_release(&r.layout);
	return ret;
}

/*
 * The frozen round of --postcopy and --hybrid: the layout if it changed,
 * then only what must be in place before the resume (postcopy.c): for
 * --postcopy the eager pages that changed since lazy_presend(), for
 * --hybrid the eager part of the last dirty set, whose rest becomes the
 * stale list sent with the state.
 */
static int lazy_final_round(struct mig *m)
{
	bool tracked = m->o->mode == HAUL_MIG_HYBRID;
	struct ps_client_stats st0;
	struct ps_range *send = NULL, *dirty = NULL;
	struct trk_round r = {0};
	struct haul_layout fl = {0};
	double t0 = haul_now_ms();
	uint64_t pages = 0;
	size_t nsend = 0;
	int ret;

	/* the layout with VmFlags (mlocked VMAs are eager): from the prepare, not smaps */
	ret = rst_dump_prep_layout(m->prep, m->pid, &fl);
	if (ret) {
		pr_err_r(ret, "cannot read the memory layout of pid %d", m->pid);
		return ret;
	}
	if (tracked) {
		ret = trk_round(m->trk, &r);
		if (ret) {
			pr_err_r(ret, "cannot scan the last dirty pages of pid %d", m->pid);
			goto out;
		}
		ret = haul_pc_new(m->pid, &m->pc);
		if (!ret)
			ret = haul_pc_freeze(m->pc, &fl, NULL, NULL, NULL);
		if (ret)
			goto out;
		dirty = calloc(r.ndirty ? r.ndirty : 1, sizeof(*dirty));
		if (!dirty) {
			ret = -ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < r.ndirty; i++)
			dirty[i] = (struct ps_range){r.dirty[i].start, r.dirty[i].npages};
		if (m->stale_final) {
			ret = haul_pc_split(m->pc, dirty, r.ndirty, &send, &nsend);
			if (ret)
				goto out;
		} else {
			send = dirty;
			dirty = NULL;
			nsend = r.ndirty;
		}
	} else {
		r.seq = 2;
		ret = haul_pc_freeze(m->pc, &fl, &send, &nsend, &r.layout_changed);
		if (ret)
			goto out;
		r.layout = fl;
	}
	ps_client_stats(m->client, &st0);
	ret = send_ranges(m, &r, send, nsend, &pages);
	if (ret)
		goto out;
	m->res->eager_pages += pages; /* --postcopy: and those of lazy_presend */
	ret = lazy_round_stat(m, &r, pages, t0, &st0, true);
out:
	free(send);
	free(dirty);
	if (tracked)
		trk_round_release(&r);
	haul_layout_release(&fl);
	return ret;
}

/*
 * Post-copy failed after the target resumed: its copy is dead, or dies as
 * soon as a page it needs cannot arrive (and at once when the session
 * closes uncommitted).  Close the session first so that a live target
 * kills it now.  Then, with the source intact: keep it frozen at the
 * switchover point and leave the choice to the operator (in doubt: the
 * process ran on the target and may have had effects there), or thaw it
 * with --postcopy-rollback.  With the source gone, the process is lost.
 */
static int postcopy_failed(struct mig *m, int err)
{
	struct haul_mig_result *res = m->res;
	char st = haul_proc_state(m->pid);

	ps_client_free(m->client);
	m->client = NULL;
	if (!st || st == 'Z' || st == 'X') {
		res->lost = true;
		res->indoubt = false;
		pr_err("post-copy of pid %d failed after it resumed on %s, and the source "
		       "process is gone: the memory the target had not received is lost, the "
		       "target killed its copy, and the process is lost (post-copy's trade-off: "
		       "see haul migrate --help)",
		       m->pid, m->o->to);
		snprintf(res->why, sizeof(res->why),
			 "post-copy failed: the source died, process lost");
		return err;
	}
	if (m->o->postcopy_rollback) {
		res->indoubt = false;
		res->rolled_back = true;
		pr_warn("post-copy of pid %d failed after it resumed on %s; its copy there is "
			"killed. --postcopy-rollback: thawing the source at its switchover point "
			"(effects of the process on %s since the resume may repeat)",
			m->pid, m->o->to, m->o->to);
		snprintf(res->why, sizeof(res->why),
			 "post-copy failed after the resume; rolled back to the switchover point");
		return err;
	}
	pr_err("post-copy of pid %d failed after it resumed on %s; its copy there is killed "
	       "(it cannot run without the missing memory). The source stays frozen at the "
	       "switchover point in '%s'. To roll back to that point, thaw it (write 0 to "
	       "cgroup.freeze; effects the process had on %s since the resume may repeat); to "
	       "give it up, kill -9 %d and then thaw",
	       m->pid, m->o->to, m->cg.freezer_dir, m->o->to, m->pid);
	snprintf(res->why, sizeof(res->why),
		 "post-copy failed after the resume; the source stays frozen");
	res->indoubt = true;
	return err;
}

/* Kill the source after the target runs it; SIGKILL reaches frozen tasks, thaw lets v1 ones die. */
static void kill_source(struct mig *m)
{
	double until = haul_now_ms() + 2000;
	char st;

	kill(m->pid, SIGKILL);
	haul_thaw(&m->cg);
	while ((st = haul_proc_state(m->pid)) && st != 'Z' && st != 'X') {
		if (haul_now_ms() > until) {
			pr_err("source pid %d did not die after SIGKILL; kill it by hand", m->pid);
			return;
		}
		usleep(1000);
	}
}

static int switchover(struct mig *m)
{
	struct haul_mig_result *res = m->res;
	struct ps_restore_result rr = {0};
	uint8_t *blob = NULL;
	size_t len = 0;
	double t;
	int ret;

	if (m->cg.throttle_pct)
		haul_cg_throttle(&m->cg, 0, m->cpus); /* a throttled task freezes late */
	t = res->t_freeze = haul_now_ms();
	if (m->cg.v2_freezer) {
		ret = haul_freeze(&m->cg, HAUL_MIG_FREEZE_TIMEOUT_MS);
		if (ret)
			return ret;
		res->freeze_ms = haul_now_ms() - t;
		ret = fault_point(m, "frozen");
		if (ret)
			return ret;
	}
	/*
	 * The group-stop that rst_seize holds it in while injecting (injlog.h),
	 * held by us until it is frozen again.  cgroup2: trade the freezer for
	 * it (a frozen task cannot run injected calls); the SIGSTOP is pending at
	 * the thaw, so no thread runs a user instruction in between.
	 */
	ret = injlog_stop(m->pid);
	if (!ret && m->cg.v2_freezer)
		ret = haul_thaw(&m->cg);
	if (ret) {
		pr_err_r(ret, "cannot hand pid %d from the freezer to a group-stop", m->pid);
		return ret;
	}
	/* v1 frozen tasks never reach ptrace-stop before thaw: seize them running */
	t = haul_now_ms();
	ret = rst_seize(m->pid, &m->seized);
	if (ret) {
		pr_err_r(ret, "cannot stop the threads of pid %d", m->pid);
		return ret;
	}
	res->seize_ms = haul_now_ms() - t;
	haul_events_frozen(m->o->events);
	ret = fault_point(m, "seized");
	if (ret)
		return ret;

	t = haul_now_ms();
	ret = m->o->mode == HAUL_MIG_PRECOPY ? final_round(m) : lazy_final_round(m);
	if (ret)
		return ret;
	res->final_ms = haul_now_ms() - t;

	t = haul_now_ms();
	ret = rst_dump_state_prepared(m->seized, m->prep, &blob, &len);
	if (ret) {
		pr_err_r(ret, "cannot dump the state of pid %d", m->pid);
		return ret;
	}
	res->dump_ms = haul_now_ms() - t;
	if (m->o->fault && !strcmp(m->o->fault, "corrupt-state"))
		for (size_t i = 0; i < len; i++)
			blob[i] ^= 0x5a;
	if (m->pc)
		ret = haul_pc_state(m->pc, m->client, blob, len, &res->stale_pages);
	else
		ret = ps_client_state(m->client, blob, len);
	free(blob);
	if (ret) {
		pr_err_r(ret, "cannot send the state of pid %d to %s", m->pid, m->o->to);
		return ret;
	}
	res->state_ms = haul_now_ms() - t;

	/* hand the process from ptrace to the freezer: it never runs in between */
	ret = haul_freeze_begin(&m->cg);
	if (ret)
		return ret;
	rst_release(m->seized);
	m->seized = NULL;
	/* stopped tasks count as frozen: this does not wait for them to run */
	ret = haul_freeze_wait(&m->cg, HAUL_MIG_FREEZE_TIMEOUT_MS);
	if (ret)
		return ret;
	/* frozen: the SIGCONT only moves it from the group-stop into the freezer */
	injlog_unhold(m->pid);
	ret = fault_point(m, "state");
	if (ret)
		return ret;

	/* the point of no return for the guardian: from here a dead haul is in doubt */
	ret = haul_guard_indoubt(&m->guard);
	if (ret) {
		pr_err_r(ret, "the guardian of pid %d is gone; not resuming on %s", m->pid,
			 m->o->to);
		return ret;
	}
	res->indoubt = true;
	t = haul_now_ms();
	ret = ps_client_restore(m->client, &rr);
	if (ret) {
		pr_err_r(ret,
			 "no answer from %s to the restore of pid %d: the source stays frozen in "
			 "'%s'. If the process runs on %s, kill the source (kill -9 %d, then write "
			 "0 to cgroup.freeze); if not, thaw it (write 0 to cgroup.freeze)",
			 m->o->to, m->pid, m->cg.freezer_dir, m->o->to, m->pid);
		return ret;
	}
	res->restore_ms = haul_now_ms() - t;
	if (rr.err) {
		pr_err("%s refused to restore pid %d: %s", m->o->to, m->pid,
		       rr.msg[0] ? rr.msg : strerror(-rr.err));
		snprintf(res->why, sizeof(res->why), "%s", rr.msg);
		haul_guard_rearm(&m->guard);
		res->indoubt = false;
		return rr.err < 0 ? rr.err : -EIO;
	}
	res->downtime_ms = haul_now_ms() - res->t_freeze;
	res->target_pid = rr.pid;
	haul_events_resumed(m->o->events, rr.pid, res->downtime_ms);
	/* from here an interrupt changes nothing: the stall only ends sooner */
	fault_point(m, "restored");

	if (m->pc) {
		/* the source is the only copy of what has not arrived: serve it, frozen */
		res->lazy = true;
		ret = haul_pc_serve(m->pc, m->client,
				    m->o->timeout_ms ? m->o->timeout_ms : HAUL_MIG_REPLY_TIMEOUT_MS,
				    m->o->fault, &res->served_pages);
		if (ret) {
			pr_err_r(ret, "post-copy of pid %d to %s broke off after %llu pages served",
				 m->pid, m->o->to, (unsigned long long)res->served_pages);
			return postcopy_failed(m, ret);
		}
		res->complete_ms = haul_now_ms() - res->t_freeze;
		haul_events_memory_complete(m->o->events, res->complete_ms, res->served_pages);
		/* what the target measured, and what serving cost on the wire */
		struct ps_client_stats cs;

		ps_client_stats(m->client, &cs);
		res->served_bytes = cs.serve_bytes;
		res->reconnects = cs.reconnects;
		res->has_report = ps_client_lazy_report(m->client, &res->report) == 0;
	}

	/*
	 * Commit before killing: a target that never hears the commit kills its
	 * copy when the session closes, so the source must still exist then.
	 * Once the commit is acknowledged the target keeps the process, and the
	 * source must die.  A commit without an answer is in doubt.
	 */
	ret = ps_client_commit(m->client);
	if (ret) {
		pr_err_r(ret,
			 "%s did not acknowledge the commit of pid %d: the source stays frozen in "
			 "'%s'. If the process runs on %s, kill the source (kill -9 %d, then write "
			 "0 to cgroup.freeze); if not, thaw it (write 0 to cgroup.freeze)",
			 m->o->to, m->pid, m->cg.freezer_dir, m->o->to, m->pid);
		return ret;
	}
	fault_point(m, "committed");
	t = haul_now_ms();
	kill_source(m);
	res->kill_ms = haul_now_ms() - t;
	res->indoubt = false;
	res->committed = true;
	haul_costs_save(res->freeze_ms + res->seize_ms + res->state_ms + res->restore_ms);
	return 0;
}

/* ---- the whole migration ------------------------------------------------ */

static int read_comm(pid_t pid, char *buf, size_t len)
{
	char p[64];
	ssize_t n;
	int fd;

	snprintf(p, sizeof(p), "/proc/%d/comm", pid);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n <= 0)
		return -ESRCH;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* Undo whatever is held: ptrace, throttle, freezer, cgroup moves; the source runs on. */
static void abort_migration(struct mig *m)
{
	if (m->seized) {
		rst_release(m->seized);
		m->seized = NULL;
	}
	if (m->cg_ready)
		haul_cg_undo(&m->cg);
}

int haul_migrate(const struct haul_mig_opts *o, struct haul_mig_result *res)
{
	struct mig m = {.o = o, .res = res, .pid = o->pid, .cpus = 1};
	struct haul_pid_lock lock;
	struct ps_client_opts co = {0};
	struct haul_cg_mounts mounts;
	struct trk_opts to = {0};
	char comm[64] = "";
	double t0 = haul_now_ms();
	int ret;

	memset(res, 0, sizeof(*res));
	m.guard.fd = -1;
	/* one haul per process: a second would fight over its freeze, uffd and ptrace */
	ret = haul_pid_lock(o->pid, "migrated", &lock, res->why, sizeof(res->why));
	if (ret) {
		pr_err("pid %d cannot be migrated: %s", o->pid, res->why);
		res->phase = "precheck";
		res->err = ret;
		return ret;
	}
	ret = rst_dump_precheck(o->pid, res->why, sizeof(res->why));
	if (ret) {
		if (res->why[0])
			pr_err("pid %d cannot be migrated: %s", o->pid, res->why);
		else
			pr_err_r(ret, "pid %d cannot be migrated", o->pid);
		res->phase = "precheck";
		/* the summary names the error ("precheck: Success" before) */
		res->err = ret;
		haul_pid_unlock(&lock);
		return ret;
	}
	read_comm(o->pid, comm, sizeof(comm));
	m.buf = malloc(HAUL_MIG_READ_PAGES * HAUL_PAGE_SIZE);
	m.zero = calloc(HAUL_MIG_READ_PAGES / 64, sizeof(uint64_t));
	if (!m.buf || !m.zero) {
		ret = -ENOMEM;
		goto out;
	}

	res->phase = "cgroup";
	ret = haul_cg_probe(&mounts); /* logs what is missing and what to do */
	if (ret)
		goto out;
	ret = haul_cg_prepare(o->pid, &mounts, &m.cg);
	if (ret)
		goto out;
	m.cg_ready = true;
	ret = haul_guard_start(&m.cg, o->to, &m.guard);
	if (ret) {
		pr_err_r(ret, "cannot start the guardian of pid %d", o->pid);
		goto out;
	}
	/* the survivor that undoes injected calls if we die mid-injection (injlog.h) */
	ret = injlog_open(o->fault);
	if (ret) {
		pr_err_r(ret, "cannot start the injection journal for pid %d", o->pid);
		goto out;
	}

	res->phase = "connect";
	memcpy(co.key, o->key, sizeof(co.key));
	co.to = o->to;
	co.nstreams = o->streams ? o->streams : 1;
	co.compress = o->compress;
	co.encrypt = o->encrypt;
	co.bandwidth = o->bandwidth;
	co.pid = o->ns_pid ? o->ns_pid : o->pid;
	co.comm = comm;
	co.timeout_ms = o->timeout_ms ? o->timeout_ms : HAUL_MIG_REPLY_TIMEOUT_MS;
	co.kind = PS_SESSION_LIVE;
	co.lazy = o->mode != HAUL_MIG_PRECOPY;
	/* the target continues the process's clocks (its own time namespace included) */
	co.clocks = true;
	rst_timens_offsets(o->pid, &co.timens_monotonic_ns, &co.timens_boottime_ns);
	ret = ps_client_new(&co, &m.client);
	if (ret) {
		pr_err_r(ret, "cannot open a migration session with %s", o->to);
		goto out;
	}
	/* what the target announced it restores, checked before anything is frozen */
	res->phase = "precheck";
	ret = rst_caps_check(o->pid, m.client, res->why, sizeof(res->why));
	if (ret) {
		pr_err("pid %d cannot be migrated to %s: %s", o->pid, o->to, res->why);
		goto out;
	}
	res->phase = "track";
	to.backend = TRK_AUTO;
	ret = o->mode == HAUL_MIG_POSTCOPY ? 0 : trk_open(o->pid, &to, &m.trk);
	if (ret) {
		pr_err_r(ret, "cannot track the memory of pid %d", o->pid);
		goto out;
	}

	res->fixed_est_ms = haul_costs_load(HAUL_MIG_FIXED_MS);
	haul_conv_init(&m.conv, o->downtime_ms, res->fixed_est_ms,
		       o->max_rounds ? o->max_rounds : HAUL_MIG_MAX_ROUNDS);
	if (!o->stop_and_copy && o->mode != HAUL_MIG_POSTCOPY) {
		res->phase = "precopy";
		ret = precopy(&m);
		if (ret)
			goto out;
	} else if (o->mode == HAUL_MIG_POSTCOPY) {
		res->phase = "precopy";
		ret = lazy_presend(&m);
		if (!ret)
			ret = fault_point(&m, "presend");
		if (ret)
			goto out;
	}
	res->expected_ms = m.conv.expected_ms;
	res->phase = "switchover";
	ret = switchover(&m);
out:
	if (ret == -EINTR && !res->committed)
		pr_err("interrupted: pid %d stays here and runs on", o->pid);
	if (m.seized) {
		rst_release(m.seized);
		m.seized = NULL;
	}
	injlog_unhold(o->pid); /* a failure between injlog_stop() and rst_seize() */
	trk_free(m.trk);
	injlog_close();
	rst_dump_prep_free(m.prep);
	haul_pc_free(m.pc);
	if (!res->committed && !res->indoubt)
		abort_migration(&m);
	/* closing the session without a commit makes the target discard its copy */
	ps_client_free(m.client);
	haul_guard_stop(&m.guard);
	if (res->committed)
		haul_cg_cleanup(&m.cg);
	res->total_ms = haul_now_ms() - t0;
	for (size_t i = 0; i < res->nround; i++) {
		res->bytes_sent += res->round[i].wire_bytes;
		res->pages_sent += res->round[i].pages;
	}
	/* post-copy: what crossed the link after the resume counts too */
	res->bytes_sent += res->served_bytes;
	res->pages_sent += res->served_pages;
	free(m.buf);
	free(m.zero);
	haul_pid_unlock(&lock);
	res->err = ret;
	return ret;
}

void haul_mig_result_release(struct haul_mig_result *res)
{
	free(res->round);
	res->round = NULL;
	res->nround = 0;
}
