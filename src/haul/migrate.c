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
 *
 * This file holds steps 1-3 and the undo; the rounds (step 4) are in
 * mig_precopy.c, switchover and commit (5, 6) in mig_switch.c; what they
 * share is in migrate_int.h.
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
#include "haul/migrate_int.h"
#include "pageserver/pageserver.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

double haul_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

bool haul_mig_stop_requested(const struct mig *m)
{
	return m->o->stop && *m->o->stop;
}

/*
 * HAUL_FAULT=stall:POINT[:MS]: wait at @point (tests kill haul or the page
 * server meanwhile).  A SIGINT during the stall ends it as an interrupt.
 */
int haul_mig_fault_point(const struct mig *m, const char *point)
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
		if (haul_mig_stop_requested(m))
			return -EINTR;
		usleep(1000);
	}
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
	if (m->nprocs) {
		/* the others of a tree first: the thaw below lets them all run */
		haul_mig_select(m, 0);
		haul_mig_tree_release(m);
		haul_mig_tree_held(m);
	}
	if (m->seized) {
		rst_release(m->seized);
		m->seized = NULL;
	}
	if (m->cg_ready)
		haul_cg_undo(&m->cg);
}

/*
 * Open the migration session with the target (clocks and time namespace
 * continue).  The target checks at the open what the process needs of it
 * (its AppArmor profiles): its refusal is a precheck's, before the freeze.
 */
static int mig_connect(struct mig *m, const char *comm)
{
	const struct haul_mig_opts *o = m->o;
	struct ps_client_opts co = {0};
	char refusal[192] = ""; /* leaves room for "TO refused: " in res->why */
	char **profiles;
	size_t nprofiles;
	int ret;

	ret = rst_apparmor_profiles(m->pid, &profiles, &nprofiles, m->res->why,
				    sizeof(m->res->why));
	if (ret) {
		m->res->phase = "precheck";
		if (ret != -ESRCH) /* gone: the callers say so (a tree's shape changed) */
			pr_err("pid %d cannot be migrated: %s", m->pid, m->res->why);
		return ret;
	}
	co.apparmor_profiles = profiles;
	co.napparmor_profiles = nprofiles;
	co.refusal = refusal;
	co.refusal_len = sizeof(refusal);

	memcpy(co.key, o->key, sizeof(co.key));
	co.to = o->to;
	co.nstreams = o->streams ? o->streams : 1;
	co.compress = o->compress;
	co.encrypt = o->encrypt;
	co.bandwidth = o->bandwidth;
	co.pid = o->ns_pid ? o->ns_pid : o->pid;
	co.comm = comm;
	if (m->nprocs) {
		/* a tree: the root's session carries its shape, the others name it */
		co.pid = m->procs[m->cur].ns_pid;
		co.tree = m->cur ? NULL : m->tree_msg;
		co.tree_len = m->cur ? 0 : m->tree_len;
		co.tree_session = m->cur ? m->net.id : 0;
	}
	co.timeout_ms = o->timeout_ms ? o->timeout_ms : HAUL_MIG_REPLY_TIMEOUT_MS;
	co.kind = PS_SESSION_LIVE;
	co.lazy = o->mode != HAUL_MIG_PRECOPY;
	/* the target continues the process's clocks (its own time namespace included) */
	co.clocks = true;
	rst_timens_offsets(o->pid, &co.timens_monotonic_ns, &co.timens_boottime_ns);
	/* the migration id names the lock tables and the hooks' runs on both sides */
	co.session_id = m->net.id + m->cur; /* a tree's others: the root's id + their index */
	/* the addresses move with the root's session (a tree's lock and restore are its) */
	co.move_addrs = m->cur ? NULL : o->move_addrs;
	co.nmove_addrs = m->cur ? 0 : o->nmove_addrs;
	/* the target may join them before the switch; without them it joins at the resume */
	if (!rst_cg_lines(m->pid, &m->cglines, &m->ncglines)) {
		co.cgroups = m->cglines;
		co.ncgroups = m->ncglines;
	}
	ret = ps_client_new(&co, &m->client);
	rst_apparmor_profiles_free(profiles, nprofiles);
	if (ret && refusal[0]) {
		/* the target refused the process (logged by the client): nothing stopped */
		m->res->phase = "precheck";
		snprintf(m->res->why, sizeof(m->res->why), "%s refused: %s", o->to, refusal);
		return ret;
	}
	if (ret) {
		pr_err_r(ret, "cannot open a migration session for pid %d with %s", m->pid, o->to);
		return ret;
	}
	return 0;
}

/*
 * Give the process cgroups of its own, then the guardian that undoes them
 * and the journal that undoes injected calls if haul dies.  0 or -errno.
 */
static int mig_cgroup(struct mig *m)
{
	const struct haul_mig_opts *o = m->o;
	struct haul_cg_mounts mounts;
	int ret;

	ret = haul_cg_probe(&mounts); /* logs what is missing and what to do */
	if (ret)
		return ret;
	ret = haul_cg_prepare_tree(o->pid, m->more, m->nprocs ? m->nprocs - 1 : 0, &mounts, &m->cg);
	if (ret)
		return ret;
	m->cg_ready = true;
	ret = haul_guard_start(&m->cg, o->to, o->workdir, &m->guard);
	if (ret) {
		pr_err_r(ret, "cannot start the guardian of pid %d", o->pid);
		return ret;
	}
	rst_tcp_hold_watch(haul_guard_tcp_held, &m->guard);
	/* the survivor that undoes injected calls if we die mid-injection (injlog.h) */
	ret = injlog_open(o->fault, haul_reg_dir());
	if (ret) {
		pr_err_r(ret, "cannot start the injection journal for pid %d", o->pid);
		return ret;
	}
	haul_guard_journal(&m->guard, injlog_survivor());
	return 0;
}

/*
 * The end of a migration, failed or not: sockets out of repair mode and the
 * source released when it runs on here, the tracker and the session closed,
 * the address and the lock undone on a rollback, the totals added up.
 */
static void mig_finish(struct mig *m, int ret, double t0)
{
	struct haul_mig_result *res = m->res;

	if (ret == -EINTR && !res->committed)
		pr_err("interrupted: pid %d stays here and runs on", m->pid);
	/* Its TCP sockets leave repair mode before a source that runs on is released. */
	rst_tcp_hold_end(!res->committed && !res->indoubt);
	if (m->nprocs)
		haul_mig_tree_finish(m); /* the root selected, the others let go */
	if (m->seized) {
		rst_release(m->seized);
		m->seized = NULL;
	}
	injlog_unhold(m->pid); /* a failure between injlog_stop() and rst_seize() */
	if (m->held_switch)
		trk_round_release(&m->held); /* a failure before the final round */
	trk_free(m->trk);
	injlog_close();
	rst_dump_prep_free(m->prep);
	haul_pc_free(m->pc);
	if (!res->committed && !res->indoubt) {
		abort_migration(m);
		/* after the release and the thaw: the address back, then the lock lifted */
		haul_mig_net_undo(m);
	} else if (res->indoubt) {
		haul_mig_net_indoubt_end(m);
	}
	/* closing the session without a commit makes the target discard its copy */
	ps_client_free(m->client);
	for (size_t i = 0; i < m->ncglines; i++)
		free(m->cglines[i]);
	free(m->cglines);
	free(m->listeners);
	haul_mig_tree_free(m);
	rst_tcp_hold_watch(NULL, NULL);
	haul_guard_stop(&m->guard);
	if (res->committed)
		haul_cg_cleanup(&m->cg);
	res->total_ms = haul_now_ms() - t0;
	for (size_t i = 0; i < res->nround; i++) {
		res->bytes_sent += res->round[i].wire_bytes;
		res->pages_sent += res->round[i].pages;
	}
	/* post-copy: what crossed the link after the resume counts too */
	res->bytes_sent += res->served_bytes;
	res->pages_sent += res->served_pages;
}

/*
 * A tree: the target must restore trees (the root's session is open); then
 * the other sessions, each checked against what the target restores.
 */
static int tree_connect(struct mig *m)
{
	int ret = haul_mig_tree_check_target(m);

	if (ret) {
		m->res->phase = "precheck";
		pr_err("pid %d cannot be migrated: %s", m->o->pid, m->res->why);
		return ret;
	}
	for (size_t i = 1; i < m->nprocs && !ret; i++) {
		char comm[64] = "", st;

		haul_mig_select(m, i);
		read_comm(m->pid, comm, sizeof(comm));
		m->res->phase = "connect";
		ret = mig_connect(m, comm);
		if (!ret) {
			m->res->phase = "precheck";
			ret = rst_caps_check(m->pid, m->client, m->res->why, sizeof(m->res->why));
		}
		st = ret ? haul_proc_state(m->pid) : 'R';
		if (!st || st == 'Z' || st == 'X') {
			/* it exited since the tree was read (a short-lived child): a new shape */
			snprintf(m->res->why, sizeof(m->res->why), "pid %d exited before pre-copy",
				 m->pid);
			pr_warn("the tree of pid %d changed: %s", m->o->pid, m->res->why);
			m->tree_changed = true;
			ret = -EAGAIN;
		} else if (ret && m->res->why[0]) {
			pr_err("pid %d of the tree of pid %d cannot be migrated to %s: %s", m->pid,
			       m->o->pid, m->o->to, m->res->why);
		}
	}
	haul_mig_select(m, 0);
	return ret;
}

static int migrate_once(const struct haul_mig_opts *o, struct haul_mig_result *res,
			bool *tree_changed)
{
	struct mig m = {.o = o, .res = res, .pid = o->pid, .cpus = 1};
	struct haul_pid_lock lock;
	struct trk_opts to = {0};
	char comm[64] = "";
	double t0 = haul_now_ms();
	int ret;

	memset(res, 0, sizeof(*res));
	m.guard.fd = -1;
	m.net.id = o->session_id; /* 0: haul_mig_net_prepare draws one */
	/* one haul per process: a second would fight over its freeze, uffd and ptrace */
	ret = haul_pid_lock(o->pid, "migrated", &lock, res->why, sizeof(res->why));
	if (ret) {
		pr_err("pid %d cannot be migrated: %s", o->pid, res->why);
		res->phase = "precheck";
		res->err = ret;
		return ret;
	}
	res->nprocs = 1;
	/* a process with children moves with all its descendants (mig_tree.c) */
	if (rst_has_children(o->pid))
		ret = haul_mig_tree_prepare(&m);
	else
		ret = rst_dump_precheck(o->pid, res->why, sizeof(res->why));
	if (ret) {
		if (res->why[0])
			pr_err("pid %d cannot be migrated: %s", o->pid, res->why);
		else
			pr_err_r(ret, "pid %d cannot be migrated", o->pid);
		res->phase = "precheck";
		/* the summary names the error ("precheck: Success" before) */
		res->err = ret;
		haul_mig_tree_free(&m);
		haul_pid_unlock(&lock);
		return ret;
	}
	/* the moving addresses must be here, on an interface a rollback puts them back on */
	ret = haul_mig_net_prepare(&m);
	if (ret) {
		pr_err("pid %d cannot be migrated: %s", o->pid,
		       res->why[0] ? res->why : strerror(-ret));
		res->phase = "precheck";
		res->err = ret;
		free(m.net.addrs);
		haul_mig_tree_free(&m);
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
	ret = mig_cgroup(&m);
	if (ret)
		goto out;

	res->phase = "connect";
	ret = mig_connect(&m, comm);
	if (!ret)
		ret = tree_connect(&m);
	if (ret)
		goto out;
	/* what the target announced it restores, checked before anything is frozen */
	res->phase = "precheck";
	ret = rst_caps_check(o->pid, m.client, res->why, sizeof(res->why));
	if (ret) {
		pr_err("pid %d cannot be migrated to %s: %s", o->pid, o->to, res->why);
		goto out;
	}
	/* the moving addresses and the sockets' local addresses, against the target's */
	ret = haul_mig_net_check(&m);
	if (ret) {
		pr_err("pid %d cannot be migrated to %s: %s", o->pid, o->to,
		       res->why[0] ? res->why : strerror(-ret));
		goto out;
	}
	res->phase = "track";
	to.backend = TRK_AUTO;
	ret = o->mode == HAUL_MIG_POSTCOPY ? 0 : trk_open(o->pid, &to, &m.trk);
	if (ret) {
		pr_err_r(ret, "cannot track the memory of pid %d", o->pid);
		goto out;
	}
	ret = haul_mig_tree_track(&m);
	if (ret)
		goto out;

	res->fixed_est_ms = haul_costs_load(HAUL_MIG_FIXED_MS);
	haul_conv_init(&m.conv, o->downtime_ms, res->fixed_est_ms,
		       o->max_rounds ? o->max_rounds : HAUL_MIG_MAX_ROUNDS);
	if (!o->stop_and_copy && o->mode != HAUL_MIG_POSTCOPY) {
		res->phase = "precopy";
		ret = haul_mig_precopy(&m);
		if (ret)
			goto out;
	} else if (o->mode == HAUL_MIG_POSTCOPY) {
		res->phase = "precopy";
		ret = haul_mig_lazy_presend(&m);
		if (!ret)
			ret = haul_mig_fault_point(&m, "presend");
		if (ret)
			goto out;
	}
	res->expected_ms = m.conv.expected_ms;
	res->phase = "switchover";
	ret = haul_mig_switchover(&m);
out:
	*tree_changed = m.tree_changed;
	mig_finish(&m, ret, t0);
	free(m.buf);
	free(m.zero);
	haul_pid_unlock(&lock);
	res->err = ret;
	return ret;
}

/*
 * A tree whose shape changed during pre-copy (a fork, an exit) is rolled
 * back at the freeze (it runs on here, nothing of it runs on the target)
 * and migrated again with its new shape, up to HAUL_MIG_TREE_TRIES times.
 */
int haul_migrate(const struct haul_mig_opts *o, struct haul_mig_result *res)
{
	for (int attempt = 1;; attempt++) {
		bool changed = false;
		int ret = migrate_once(o, res, &changed);

		if (ret != -EAGAIN || !changed)
			return ret;
		if (attempt == HAUL_MIG_TREE_TRIES) {
			pr_err("the tree of pid %d changed during each of %d attempts (last: %s); it "
			       "runs on here. Migrate it when it forks less, or migrate the process "
			       "that forks on its own",
			       o->pid, attempt, res->why);
			return ret;
		}
		pr_warn("the tree of pid %d changed during pre-copy (%s); it runs on here, "
			"migrating it again (attempt %d of %d)",
			o->pid, res->why, attempt + 1, HAUL_MIG_TREE_TRIES);
		haul_mig_result_release(res);
	}
}

void haul_mig_result_release(struct haul_mig_result *res)
{
	free(res->round);
	res->round = NULL;
	res->nround = 0;
}
