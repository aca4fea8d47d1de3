/*
 * mig_switch.c - switchover and commit of a live migration.
 *
 * Freeze, seize every thread, thaw the cgroup (the process is held by
 * ptrace alone), final round (pre-copy) or the eager part (post-copy,
 * hybrid), dump and send the state, hand the process from ptrace back to
 * the freezer (it never runs in between), tell the guardian "in doubt",
 * restore on the target, serve post-copy pages, commit, and only then kill
 * the source.  Invariant: until the target acknowledges the commit the
 * source exists, frozen; a failure before the restore command thaws it
 * (migrate.c undoes), one after leaves it frozen for the operator.
 */
#define LOG_PREFIX "migrate: "
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "common/injlog.h"
#include "common/log.h"
#include "common/policy.h"
#include "haul/migrate_int.h"

/* ---- switchover and commit ---------------------------------------------- */

/* The final round, while the process is held stopped. */
static int final_round(struct mig *m)
{
	struct haul_mig_round rs = {0};
	struct ps_client_stats st0, st1;
	struct trk_round r;
	double t0 = haul_now_ms(), t_scan;
	int ret;

	/* Held stopped by us: the tracker must not try to stop it itself. */
	trk_set_frozen(m->trk, true);
	if (m->held_switch) {
		/* the set scanned where this stop began (mig_precopy.c), not sent yet */
		ps_client_stats(m->client, &st0);
		ret = haul_mig_send_round(m, &m->held, false);
		ps_client_stats(m->client, &st1);
		rs.pages += m->held.dirty_pages;
		rs.wire_bytes += st1.bytes_sent - st0.bytes_sent;
		rs.scan_ms += m->held.scan_ms;
		trk_round_release(&m->held);
		m->held_switch = false;
		if (ret)
			return ret;
	}
	ret = trk_round(m->trk, &r);
	if (ret) {
		pr_err_r(ret, "cannot scan the last dirty pages of pid %d", m->pid);
		return ret;
	}
	rst_dump_prep_annotate(m->prep, &r.layout);
	t_scan = haul_now_ms();
	ps_client_stats(m->client, &st0);
	/* a tree: every other process's last dirty pages too */
	if (m->nprocs)
		ret = haul_mig_tree_round(m, &r, true, false, &rs.pages, &rs.wire_bytes,
					  &rs.scan_ms);
	else
		ret = haul_mig_send_round(m, &r, false);
	ps_client_stats(m->client, &st1);
	rs.seq = r.seq;
	rs.pages += r.dirty_pages;
	rs.wire_bytes += st1.bytes_sent - st0.bytes_sent;
	rs.scan_ms += r.scan_ms;
	rs.ms = haul_now_ms() - t0;
	rs.mbps = rs.ms > 0 ? rs.pages * HAUL_PAGE_SIZE / 1e3 / rs.ms : 0;
	rs.final = true;
	pr_debug("final round: %llu pages, scan %.2f ms (%.2f in the kernel), send and barrier "
		 "%.2f (read %.2f, hand to the client %.2f, barrier %.2f)",
		 (unsigned long long)rs.pages, t_scan - t0, r.scan_ms, rs.ms - (t_scan - t0),
		 m->round_read_ms, m->round_send_ms, m->round_end_ms);
	rs.nprocs = (unsigned)m->nprocs;
	trk_round_release(&r);
	if (ret)
		return ret;
	m->res->rounds++;
	if (m->o->on_round)
		m->o->on_round(m->o->arg, &rs);
	return haul_mig_add_round_stat(m->res, &rs);
}

/* Account one round sent outside haul_mig_precopy() (post-copy's presend and frozen rounds). */
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
	return haul_mig_add_round_stat(m->res, &rs);
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
	ret = haul_mig_send_round(m, r, false);
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
int haul_mig_lazy_presend(struct mig *m)
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
 * --postcopy the eager pages that changed since haul_mig_lazy_presend(), for
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
	double t0 = haul_now_ms(), t_layout = t0, t_freeze;
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
		t_layout = haul_now_ms();
		ret = haul_pc_freeze(m->pc, &fl, &send, &nsend, &r.layout_changed);
		if (ret)
			goto out;
		r.layout = fl;
	}
	t_freeze = haul_now_ms();
	ps_client_stats(m->client, &st0);
	ret = send_ranges(m, &r, send, nsend, &pages);
	if (ret)
		goto out;
	pr_debug("frozen round: %llu pages, layout %.2f ms, changed pages found %.2f, send and "
		 "barrier %.2f (read %.2f, hand to the client %.2f, barrier %.2f)",
		 (unsigned long long)pages, t_layout - t0, t_freeze - t_layout,
		 haul_now_ms() - t_freeze, m->round_read_ms, m->round_send_ms, m->round_end_ms);
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
	pr_err("post-copy of pid %d failed after it resumed on %s; its copy there is gone "
	       "(killed, as it cannot run without the missing memory, or dead: see above). "
	       "The source stays frozen at the "
	       "switchover point in '%s'. To roll back to that point, thaw it (write 0 to "
	       "cgroup.freeze; effects the process had on %s since the resume may repeat); to "
	       "give it up, kill -9 %d and then thaw",
	       m->pid, m->o->to, m->cg.freezer_dir, m->o->to, m->pid);
	snprintf(res->why, sizeof(res->why),
		 "post-copy failed after the resume; the source stays frozen");
	res->indoubt = true;
	return err;
}

/*
 * Every thread of the migration's processes at SCHED_IDLE: the teardown that
 * the kill starts (freeing all its memory: 0.3-0.8 s of one CPU at 4 GiB)
 * must not take the CPU from the process just resumed on the target, or
 * from anything else on this host.
 */
static void idle_teardown(const struct mig *m)
{
	const struct sched_param sp = {0};
	pid_t *pids, *tids;
	size_t np, n;

	if (haul_mig_pids(m, &pids, &np))
		return;
	for (size_t p = 0; p < np; p++) {
		if (haul_proc_tids(pids[p], &tids, &n))
			continue;
		for (size_t i = 0; i < n; i++)
			sched_setscheduler(tids[i], SCHED_IDLE, &sp); /* best effort */
		free(tids);
	}
	free(pids);
}

/* Resident pages of @pid (/proc/PID/statm), or -1. */
static long resident_pages(pid_t pid)
{
	char path[64], text[128];
	long size, res;

	snprintf(path, sizeof(path), "/proc/%d/statm", (int)pid);
	if (haul_read_file(path, text, sizeof(text)) < 0 ||
	    sscanf(text, "%ld %ld", &size, &res) != 2)
		return -1;
	return res;
}

/*
 * Kill the source after the target runs it; SIGKILL reaches frozen tasks,
 * thaw lets v1 ones die.  Its death is waited for (its sockets close last,
 * while the lock holds) as long as its teardown makes progress.
 */
static void kill_source(struct mig *m)
{
	double until = haul_now_ms() + 2000;
	long res = resident_pages(m->pid), now;
	char st;

	idle_teardown(m);
	haul_mig_tree_kill(m); /* a tree: the others, then the root */
	kill(m->pid, SIGKILL);
	haul_thaw(&m->cg);
	while ((st = haul_proc_state(m->pid)) && st != 'Z' && st != 'X') {
		if (haul_now_ms() > until) {
			now = resident_pages(m->pid);
			if (now < 0 || now >= res) {
				pr_err("source pid %d did not die after SIGKILL; kill it by hand",
				       m->pid);
				return;
			}
			res = now; /* still freeing its memory */
			until = haul_now_ms() + 2000;
		}
		usleep(1000);
	}
}

/*
 * @what (the restore or the commit) got no answer: the process may run on
 * the target or not; the source stays frozen and the operator decides.
 */
static void say_in_doubt(const struct mig *m, int ret, const char *what)
{
	if (m->nprocs)
		pr_err_r(ret,
			 "%s: the tree of pid %d stays frozen in '%s'. If it runs on %s, kill the "
			 "source (kill -9 every pid in its cgroup.procs, then write 0 to "
			 "cgroup.freeze); if not, thaw it (write 0 to cgroup.freeze)",
			 what, m->o->pid, m->cg.freezer_dir, m->o->to);
	else
		pr_err_r(
			ret,
			"%s: the source stays frozen in '%s'. If the process runs on %s, kill the "
			"source (kill -9 %d, then write 0 to cgroup.freeze); if not, thaw it (write "
			"0 to cgroup.freeze)",
			what, m->cg.freezer_dir, m->o->to, m->pid);
}

/* Whether a process of the migration has connections its listeners have not accepted. */
static bool accept_pending(const struct mig *m)
{
	bool p = rst_sock_accept_pending(m->pid, m->listeners, m->nlisteners);

	for (size_t i = 1; i < m->nprocs && !p; i++)
		p = rst_sock_accept_pending(m->procs[i].pid, m->procs[i].listeners,
					    m->procs[i].nlisteners);
	return p;
}

/* Thawed: wait until every process of the migration took its pending connections. */
static void drain_wait(const struct mig *m)
{
	rst_sock_drain_wait(m->pid, m->listeners, m->nlisteners);
	for (size_t i = 1; i < m->nprocs; i++)
		rst_sock_drain_wait(m->procs[i].pid, m->procs[i].listeners, m->procs[i].nlisteners);
}

/* Switchover, step 1: freeze, seize every thread, thaw (ptrace holds it now). */
static int switch_stop(struct mig *m)
{
	struct haul_mig_result *res = m->res;
	double t;
	int ret;

	/*
	 * Held frozen since the scan of the set it sends first: that is the
	 * stop.  (A failed take-over stopped the cycle anyway: the freeze below
	 * says what the cgroup does.)
	 */
	ret = m->held_switch ? haul_cg_duty_keep_frozen(&m->cg) : -EINVAL;
	if (!ret)
		res->t_freeze = m->held_at_ms;
	else if (m->cg.throttle_pct)
		haul_cg_throttle(&m->cg, 0, m->cpus); /* a throttled task freezes late */
	/* its listeners, while it runs: the stop then asks only them (sock_drain.c) */
	free(m->listeners);
	if (rst_sock_listeners(m->pid, &m->listeners, &m->nlisteners))
		m->listeners = NULL; /* every fd is asked after the stop */
	haul_mig_tree_listeners(m);  /* and those of every other process of a tree */
	rst_ext_prescan(m->pid);     /* who else holds its pipes: not scanned in the downtime */
	haul_mig_net_presnap(m);     /* its inet sockets: only verified at the freeze */
	t = haul_now_ms();
	if (res->t_freeze)
		res->held_ms = t - res->t_freeze;
	else
		res->t_freeze = t;
	if (m->cg.v2_freezer) {
		ret = haul_freeze(&m->cg, HAUL_MIG_FREEZE_TIMEOUT_MS);
		if (ret)
			return ret;
		res->freeze_ms = haul_now_ms() - t;
		t = haul_now_ms();
		/* the lock before any socket state is read (mig_net.c) */
		ret = haul_mig_net_down(m);
		if (ret)
			return ret;
		ret = haul_mig_fault_point(m, "frozen");
		if (ret)
			return ret;
		/* Connections not accepted yet cannot be restored: it runs to accept them. */
		for (int i = 0; i < RST_ACCEPT_DRAIN_TRIES && accept_pending(m); i++) {
			ret = haul_thaw(&m->cg);
			if (!ret) {
				drain_wait(m);
				ret = haul_freeze(&m->cg, HAUL_MIG_FREEZE_TIMEOUT_MS);
			}
			if (ret)
				return ret;
		}
		res->lock_ms = haul_now_ms() - t;
	}
	/*
	 * The group-stop that rst_seize holds it in while injecting (injlog.h),
	 * held by us until it is frozen again.  cgroup2: trade the freezer for
	 * it (a frozen task cannot run injected calls); the SIGSTOP is pending at
	 * the thaw, so no thread runs a user instruction in between.
	 */
	t = haul_now_ms();
	/* a tree: the same shape as sent, and every process stopped by us (mig_tree.c) */
	if (m->nprocs) {
		ret = haul_mig_tree_stop(m);
		if (ret)
			return ret; /* logged, naming the pid */
	} else {
		ret = injlog_stop(m->pid);
	}
	if (!ret && m->cg.v2_freezer)
		ret = haul_thaw(&m->cg);
	if (ret) {
		pr_err_r(ret, "cannot hand pid %d from the freezer to a group-stop", m->pid);
		return ret;
	}
	res->handover_ms = haul_now_ms() - t;
	/* v1 frozen tasks never reach ptrace-stop before thaw: seize them running */
	t = haul_now_ms();
	ret = rst_seize(m->pid, &m->seized);
	if (ret) {
		pr_err_r(ret, "cannot stop the threads of pid %d", m->pid);
		return ret;
	}
	ret = haul_mig_tree_seize(m);
	if (ret)
		return ret;
	res->seize_ms = haul_now_ms() - t;
	if (!m->cg.v2_freezer) {
		/* v1: the seize's SIGSTOP is what stopped it */
		t = haul_now_ms();
		ret = haul_mig_net_down(m);
		if (ret)
			return ret;
		res->lock_ms = haul_now_ms() - t;
	}
	haul_events_frozen(m->o->events);
	ret = haul_mig_fault_point(m, "seized");
	if (ret)
		return ret;
	return 0;
}

/* Step 2: the final round, then the state dumped and sent; the freezer holds it again. */
static int switch_state(struct mig *m)
{
	struct haul_mig_result *res = m->res;
	uint8_t *blob = NULL;
	size_t len = 0;
	double t;
	int ret;

	t = haul_now_ms();
	ret = m->o->mode == HAUL_MIG_PRECOPY ? final_round(m) : lazy_final_round(m);
	if (ret)
		return ret;
	res->final_ms = haul_now_ms() - t;

	t = haul_now_ms();
	ret = rst_dump_state_prepared(m->seized, m->prep, &blob, &len);
	if (!ret)
		ret = haul_mig_tree_merge_root(m, &blob, &len);
	if (ret) {
		pr_err_r(ret, "cannot dump the state of pid %d", m->pid);
		free(blob);
		return ret;
	}
	res->dump_ms = haul_now_ms() - t;
	if (m->o->fault && !strcmp(m->o->fault, "corrupt-state"))
		for (size_t i = 0; i < len; i++)
			blob[i] ^= 0x5a;
	if (m->pc)
		ret = haul_pc_state(m->pc, m->client, blob, len, m->o->mode == HAUL_MIG_HYBRID,
				    &res->stale_pages);
	else
		ret = ps_client_state(m->client, blob, len);
	free(blob);
	if (ret) {
		pr_err_r(ret, "cannot send the state of pid %d to %s", m->pid, m->o->to);
		return ret;
	}
	/* a tree: every other process's, in tree order, on its own session */
	ret = haul_mig_tree_state(m, &res->dump_ms);
	if (ret)
		return ret;
	res->state_ms = haul_now_ms() - t;

	t = haul_now_ms();
	/* hand the process from ptrace to the freezer: it never runs in between */
	ret = haul_freeze_begin(&m->cg);
	if (ret)
		return ret;
	rst_release(m->seized);
	m->seized = NULL;
	haul_mig_tree_release(m);
	/* stopped tasks count as frozen: this does not wait for them to run */
	ret = haul_freeze_wait(&m->cg, HAUL_MIG_FREEZE_TIMEOUT_MS);
	if (ret)
		return ret;
	/* frozen: the SIGCONT only moves it from the group-stop into the freezer */
	injlog_unhold(m->pid);
	haul_mig_tree_held(m);
	res->refreeze_ms = haul_now_ms() - t;
	if (m->o->on_frozen) {
		ret = m->o->on_frozen(m->o->frozen_arg, m->pid);
		if (ret)
			return ret;
	}
	ret = haul_mig_fault_point(m, "state");
	if (ret)
		return ret;
	return 0;
}

/* Step 3: the guardian is told "in doubt" and the target restores the process. */
static int switch_restore(struct mig *m)
{
	struct haul_mig_result *res = m->res;
	struct ps_restore_result rr = {0};
	double t;
	int ret;

	t = haul_now_ms();
	/* the point of no return for the guardian: from here a dead haul is in doubt */
	ret = haul_guard_indoubt(&m->guard);
	if (ret) {
		pr_err_r(ret, "the guardian of pid %d is gone; not resuming on %s", m->pid,
			 m->o->to);
		return ret;
	}
	haul_mig_net_indoubt(m, true);
	res->indoubt = true;
	res->indoubt_ms = haul_now_ms() - t;
	t = haul_now_ms();
	ret = ps_client_restore(m->client, &rr);
	if (ret) {
		char what[256];

		snprintf(what, sizeof(what), "no answer from %s to the restore of pid %d", m->o->to,
			 m->pid);
		say_in_doubt(m, ret, what);
		return ret;
	}
	res->restore_ms = haul_now_ms() - t;
	if (rr.err) {
		pr_err("%s refused to restore pid %d: %s", m->o->to, m->pid,
		       rr.msg[0] ? rr.msg : strerror(-rr.err));
		snprintf(res->why, sizeof(res->why), "%s", rr.msg);
		haul_guard_rearm(&m->guard);
		haul_mig_net_indoubt(m, false);
		res->indoubt = false;
		return rr.err < 0 ? rr.err : -EIO;
	}
	res->downtime_ms = haul_now_ms() - res->t_freeze;
	pr_debug("pid %d downtime %.1f ms: freeze %.2f, lock and accept drain %.2f, hand-over to "
		 "group-stop %.2f, seize %.2f, final round %.2f, state %.2f, back to the freezer "
		 "%.2f, in doubt %.2f, restore %.2f; not in these %.2f",
		 m->pid, res->downtime_ms, res->freeze_ms, res->lock_ms, res->handover_ms,
		 res->seize_ms, res->final_ms, res->state_ms, res->refreeze_ms, res->indoubt_ms,
		 res->restore_ms,
		 res->downtime_ms - res->freeze_ms - res->lock_ms - res->handover_ms -
			 res->seize_ms - res->final_ms - res->state_ms - res->refreeze_ms -
			 res->indoubt_ms - res->restore_ms);
	res->target_pid = rr.pid;
	haul_events_resumed(m->o->events, rr.pid, res->downtime_ms);
	/* from here an interrupt changes nothing: the stall only ends sooner */
	haul_mig_fault_point(m, "restored");
	return 0;
}

/* Step 4 (post-copy): serve what has not arrived yet, the source frozen. */
static int switch_serve(struct mig *m)
{
	struct haul_mig_result *res = m->res;
	int ret;

	/* the source is the only copy of what has not arrived: serve it, frozen */
	res->lazy = true;
	ret = haul_pc_serve(m->pc, m->client,
			    m->o->timeout_ms ? m->o->timeout_ms : HAUL_MIG_REPLY_TIMEOUT_MS,
			    m->o->fault, &res->served_pages);
	if (ret) {
		pr_err_r(ret, "post-copy of pid %d to %s broke off after %llu pages served", m->pid,
			 m->o->to, (unsigned long long)res->served_pages);
		return postcopy_failed(m, ret);
	}
	res->complete_ms = haul_now_ms() - res->t_freeze;
	haul_events_memory_complete(m->o->events, res->complete_ms, res->served_pages);
	/* what the target measured, and what serving cost on the wire */
	struct ps_client_stats cs;

	ps_client_stats(m->client, &cs);
	res->served_bytes = cs.serve_bytes;
	res->lane_replies = cs.serve_lane_replies;
	res->reconnects = cs.reconnects;
	res->has_report = ps_client_lazy_report(m->client, &res->report) == 0;
	if (res->has_report && res->report.ended == PS_LAZY_EXITED)
		pr_info("post-copy of pid %d: it exited on %s with status %d before all its memory "
			"arrived; nothing more to serve, the migration commits",
			m->pid, m->o->to, WEXITSTATUS(res->report.exit_status));
	else if (res->has_report && res->report.ended == PS_LAZY_EXECED)
		pr_info("post-copy of pid %d: it exec'd on %s before all its memory arrived; "
			"nothing more to serve, the migration commits",
			m->pid, m->o->to);
	return 0;
}

/* Step 5: commit, then kill the source. */
static int switch_commit(struct mig *m)
{
	struct haul_mig_result *res = m->res;
	double t;
	int ret;

	/*
	 * Commit before killing: a target that never hears the commit kills its
	 * copy when the session closes, so the source must still exist then.
	 * Once the commit is acknowledged the target keeps the process, and the
	 * source must die.  A commit without an answer is in doubt.
	 */
	ret = ps_client_commit(m->client);
	if (ret) {
		char what[256];

		snprintf(what, sizeof(what), "%s did not acknowledge the commit of pid %d",
			 m->o->to, m->pid);
		say_in_doubt(m, ret, what);
		return ret;
	}
	haul_mig_fault_point(m, "committed");
	t = haul_now_ms();
	kill_source(m);
	res->kill_ms = haul_now_ms() - t;
	haul_mig_net_done(m);
	res->indoubt = false;
	res->committed = true;
	haul_costs_save(res->freeze_ms + res->seize_ms + res->state_ms + res->restore_ms);
	return 0;
}

int haul_mig_switchover(struct mig *m)
{
	int ret;

	ret = switch_stop(m);
	if (!ret)
		ret = switch_state(m);
	if (!ret)
		ret = switch_restore(m);
	if (!ret && m->pc)
		ret = switch_serve(m);
	if (!ret)
		ret = switch_commit(m);
	return ret;
}
