/*
 * mig_tree.c - live migration of a process with descendants (a tree):
 * what migrate.c, mig_precopy.c and mig_switch.c do for one process, done
 * for each process of the tree, with one page-server session per live
 * process (DESIGN.md "Process trees", "Wire format": SessionOpen.tree).
 *
 * struct mig holds the process being worked on (pid, session, tracker,
 * seized threads, prepared dump); the others wait in m->procs[], and
 * haul_mig_select() swaps one in.  Outside the helpers here the root is
 * selected, so the one-process code paths (fault points, the network, the
 * restore and commit on the root's session) work unchanged.
 *
 * Order: the tree is read and every process prechecked while all run
 * (rst_mig_tree_new); all go into the migration cgroup together (one
 * freezer for all; the guardian moves them all back); the root's session
 * opens with the tree's shape, so that the target makes every process at
 * once, then each other process's session joins it; one tracker per
 * process.  Each pre-copy round scans and sends every process in turn and
 * the convergence model sees their sum.  At the switchover the cgroup is
 * frozen, the shape read again (a fork, exit or setsid during pre-copy:
 * -EAGAIN, naming the pid; haul_migrate() starts over), every process
 * held in a group-stop of ours and seized, the final round taken for each, and
 * each state dumped and merged in tree order (what they share names the
 * earliest holder) and sent on its session.  The restore and the commit
 * are the root session's, for the whole tree.  The injection journal
 * holds one process: every process we SIGSTOP is told to the guardian
 * instead, which continues it if haul dies (after the thaw; one killed
 * mid-injection may be continued before the journal's survivor has put its
 * registers back: see DESIGN.md "Process trees").
 */
#define LOG_PREFIX "migrate: "
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/migrate_int.h"

void haul_mig_select(struct mig *m, size_t i)
{
	struct mig_proc *p;

	if (!m->nprocs || i == m->cur)
		return;
	p = &m->procs[m->cur];
	p->pid = m->pid;
	p->client = m->client;
	p->cglines = m->cglines;
	p->ncglines = m->ncglines;
	p->listeners = m->listeners;
	p->nlisteners = m->nlisteners;
	p->trk = m->trk;
	p->seized = m->seized;
	p->prep = m->prep;
	p = &m->procs[i];
	m->pid = p->pid;
	m->client = p->client;
	m->cglines = p->cglines;
	m->ncglines = p->ncglines;
	m->listeners = p->listeners;
	m->nlisteners = p->nlisteners;
	m->trk = p->trk;
	m->seized = p->seized;
	m->prep = p->prep;
	m->cur = i;
	/* the guardian must find the sockets the dump reports in this process */
	m->guard.owner = i ? p->pid : 0;
}

int haul_mig_tree_prepare(struct mig *m)
{
	const struct haul_mig_opts *o = m->o;
	struct haul_mig_result *res = m->res;
	size_t n, k = 0;
	int ret;

	if (o->mode != HAUL_MIG_PRECOPY) {
		snprintf(res->why, sizeof(res->why),
			 "--%s of a tree (pid %d has child processes) is not supported: migrate "
			 "it with pre-copy (the default) or --stop-and-copy",
			 o->mode == HAUL_MIG_POSTCOPY ? "postcopy" : "hybrid", o->pid);
		return -EOPNOTSUPP;
	}
	ret = rst_mig_tree_new(o->pid, &m->tree, res->why, sizeof(res->why));
	if (ret)
		return ret;
	n = rst_mig_tree_count(m->tree);
	m->procs = calloc(n, sizeof(*m->procs));
	m->more = calloc(n, sizeof(*m->more));
	if (!m->procs || !m->more)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		pid_t host, pid;
		bool zombie;

		rst_mig_tree_proc(m->tree, i, &host, &pid, &zombie);
		if (zombie)
			continue; /* no memory, no session: the root's tree names it */
		m->procs[k] = (struct mig_proc){.pid = host, .ns_pid = pid, .lock.fd = -1};
		if (k)
			m->more[k - 1] = host;
		k++;
	}
	m->nprocs = k;
	/* one haul per process of the tree too: another may be migrating a child alone */
	for (size_t i = 1; i < k; i++) {
		char why[200] = "";

		ret = haul_pid_lock(m->procs[i].pid, "migrated", &m->procs[i].lock, why,
				    sizeof(why));
		if (ret == -ESRCH)
			continue; /* exited: the check at the freeze sees it */
		if (ret) {
			snprintf(res->why, sizeof(res->why), "pid %d of its tree: %s",
				 m->procs[i].pid, why);
			return ret;
		}
	}
	m->cur = 0;
	ret = rst_mig_tree_pack(m->tree, &m->tree_msg, &m->tree_len);
	if (ret)
		return ret;
	m->res->nprocs = (unsigned)n;
	pr_info("pid %d: a tree of %zu processes (%zu zombies)", o->pid, n, n - k);
	return 0;
}

/* The root's session is open: the target must restore trees (an older one restores each alone). */
int haul_mig_tree_check_target(struct mig *m)
{
	const struct ps_resource_cap *caps;
	size_t n;

	if (!m->nprocs)
		return 0;
	n = ps_client_caps(m->client, &caps);
	for (size_t i = 0; i < n; i++)
		if (!strcmp(caps[i].kind, RST_CAP_TREE) && caps[i].version >= 1)
			return 0;
	snprintf(m->res->why, sizeof(m->res->why),
		 "%s does not restore process trees (pid %d has child processes); upgrade haul "
		 "there",
		 m->o->to, m->o->pid);
	return -EOPNOTSUPP;
}

int haul_mig_tree_track(struct mig *m)
{
	struct trk_opts to = {.backend = TRK_AUTO};
	int ret = 0;

	for (size_t i = 1; i < m->nprocs && !ret; i++) {
		haul_mig_select(m, i);
		ret = trk_open(m->pid, &to, &m->trk);
		if (ret)
			pr_err_r(ret, "cannot track the memory of pid %d of the tree", m->pid);
	}
	haul_mig_select(m, 0);
	return ret;
}

/*
 * Process @m->pid of the tree failed with @ret during pre-copy: if it exited
 * meanwhile, the tree changed (-EAGAIN: haul_migrate() starts over).
 */
static int member_failed(struct mig *m, int ret)
{
	char st = haul_proc_state(m->pid);

	/*
	 * An exiting process still shows R or D once its memory is gone, and
	 * reading it then fails with ESRCH (PostgreSQL's autovacuum workers).
	 */
	if (st && st != 'Z' && st != 'X' && ret != -ESRCH)
		return ret;
	snprintf(m->res->why, sizeof(m->res->why), "pid %d exited during pre-copy", m->pid);
	pr_warn("the tree of pid %d changed: %s", m->o->pid, m->res->why);
	m->tree_changed = true;
	return -EAGAIN;
}

/*
 * One round of every process of the tree: the root's @root (scanned, the
 * root selected before and after), every other one scanned here; then each
 * page of shared memory routed to one sender, whichever process wrote it
 * (rst_shm_route_rounds, DESIGN.md "Shared memory"), and every round sent
 * on its session.  What the others cost is added to *@pages, *@wire,
 * *@scan_ms; @root->dirty is what the root sent.  @final: the tree is held
 * stopped.  @midpoint_fault: as haul_mig_send_round, for the root's.
 */
int haul_mig_tree_round(struct mig *m, struct trk_round *root, bool final, bool midpoint_fault,
			uint64_t *pages, uint64_t *wire, double *scan_ms)
{
	struct trk_round *r = calloc(m->nprocs, sizeof(*r));
	pid_t *pids = calloc(m->nprocs, sizeof(*pids));
	size_t scanned = 1;
	int ret = r && pids ? 0 : -ENOMEM;

	if (!ret) {
		r[0] = *root;
		pids[0] = m->pid;
	}
	for (size_t i = 1; i < m->nprocs && !ret; i++) {
		haul_mig_select(m, i);
		pids[i] = m->pid;
		if (final)
			trk_set_frozen(m->trk, true);
		else
			ret = rst_dump_prepare(m->pid, &m->prep);
		if (!ret)
			ret = trk_round(m->trk, &r[i]);
		if (ret && !final && member_failed(m, ret) == -EAGAIN) {
			ret = -EAGAIN;
			break;
		}
		if (ret) {
			pr_err_r(ret, "cannot scan the memory of pid %d", m->pid);
			break;
		}
		scanned++;
		rst_dump_prep_annotate(m->prep, &r[i].layout);
		*scan_ms += r[i].scan_ms;
	}
	if (!ret) {
		/* a page of shared memory: sent by one process only, every version of it */
		ret = rst_shm_route_rounds(&m->shm_route, pids, r, m->nprocs);
		if (ret)
			pr_err_r(ret, "cannot route the shared memory of the tree of pid %d",
				 (int)m->o->pid);
		*root = r[0];
	}
	for (size_t i = 0; i < m->nprocs && !ret; i++) {
		struct ps_client_stats st0, st1;

		haul_mig_select(m, i);
		ps_client_stats(m->client, &st0);
		ret = haul_mig_send_round(m, &r[i], !i && midpoint_fault);
		if (ret && i && !final)
			ret = member_failed(m, ret); /* it exited while its pages were read */
		ps_client_stats(m->client, &st1);
		if (i) {
			*pages += r[i].dirty_pages;
			*wire += st1.bytes_sent - st0.bytes_sent;
		}
	}
	haul_mig_select(m, 0);
	for (size_t i = 1; r && i < scanned; i++)
		trk_round_release(&r[i]);
	free(r);
	free(pids);
	return ret;
}

/*
 * The tree frozen: the same shape as sent, then every process SIGSTOPped,
 * the stop pending until the thaw, and told to the guardian.  Not the
 * journal's hold (injlog_stop) as for one process: the journal holds one
 * process, and each seize would take it over (a group-stopped process
 * counts as stopped by its owner there, so it owes no SIGCONT for it).
 */
int haul_mig_tree_stop(struct mig *m)
{
	int ret;

	ret = rst_mig_tree_unchanged(m->tree, m->res->why, sizeof(m->res->why));
	if (ret) {
		pr_warn("the tree of pid %d changed: %s", m->o->pid, m->res->why);
		m->tree_changed = ret == -EAGAIN;
		return ret;
	}
	for (size_t i = 0; i < m->nprocs; i++) {
		struct mig_proc *p = &m->procs[i];

		if (haul_proc_state(p->pid) == 'T')
			continue; /* stopped by its owner: it stays so, its owner continues it */
		haul_guard_stopped(&m->guard, p->pid);
		p->stopped = true;
		if (kill(p->pid, SIGSTOP)) {
			ret = -errno;
			pr_err_r(ret, "cannot stop pid %d of the tree", p->pid);
			return ret;
		}
	}
	return 0;
}

/*
 * The listening fds of every process but the root, read while the tree runs
 * (as switch_stop reads the root's): the stop asks only them, where without
 * a list it would read /proc/PID/net/tcp and tcp6 of each process (~5 ms a
 * file, the same namespace's table each time).  A listener made after this
 * with connections queued is refused by the dump, before the commit.
 */
void haul_mig_tree_listeners(struct mig *m)
{
	for (size_t i = 1; i < m->nprocs; i++) {
		struct mig_proc *p = &m->procs[i];

		free(p->listeners);
		p->nlisteners = 0;
		if (rst_sock_listeners(p->pid, &p->listeners, &p->nlisteners))
			p->listeners = NULL; /* every fd is asked after the stop */
	}
}

/*
 * After the root's seize: every other process's threads.  Without a
 * cgroup2 freezer the shape was read while the tree ran (a v1-frozen task
 * cannot be seized): read it again now that every process is stopped, so
 * that a fork in between cannot leave a process behind.
 */
int haul_mig_tree_seize(struct mig *m)
{
	int ret = 0;

	for (size_t i = 1; i < m->nprocs && !ret; i++) {
		double t = haul_now_ms();

		haul_mig_select(m, i);
		ret = rst_seize(m->pid, &m->seized);
		if (ret)
			pr_err_r(ret, "cannot stop the threads of pid %d of the tree", m->pid);
		else
			pr_debug("pid %d of the tree: seized in %.1f ms", m->pid,
				 haul_now_ms() - t);
	}
	/* each was stopped by haul_mig_tree_stop unless its owner had it stopped */
	for (size_t i = 0; i < m->nprocs && !ret; i++) {
		haul_mig_select(m, i);
		rst_seized_owner_stopped(m->seized, !m->procs[i].stopped);
	}
	haul_mig_select(m, 0);
	if (!ret && m->nprocs && !m->cg.v2_freezer) {
		ret = rst_mig_tree_unchanged(m->tree, m->res->why, sizeof(m->res->why));
		if (ret)
			pr_warn("the tree of pid %d changed: %s", m->o->pid, m->res->why);
		m->tree_changed = ret == -EAGAIN;
	}
	return ret;
}

/* Entry @i's dumped state, merged into the tree's (@i in tree order, the root 0). */
static int merge(struct mig *m, size_t i, uint8_t **blob, size_t *len)
{
	size_t n = rst_mig_tree_count(m->tree), e = 0, live = 0;

	/* procs[] leaves out the zombies: find the tree entry of live process @i */
	for (; e < n; e++) {
		pid_t host, pid;
		bool zombie;

		rst_mig_tree_proc(m->tree, e, &host, &pid, &zombie);
		if (!zombie && live++ == i)
			break;
	}
	return rst_mig_tree_merge(m->tree, e, blob, len);
}

int haul_mig_tree_merge_root(struct mig *m, uint8_t **blob, size_t *len)
{
	return m->nprocs ? merge(m, 0, blob, len) : 0;
}

/* The states of every process but the root, dumped, merged and sent in tree order. */
int haul_mig_tree_state(struct mig *m, double *dump_ms)
{
	int ret = 0;

	for (size_t i = 1; i < m->nprocs && !ret; i++) {
		uint8_t *blob = NULL;
		size_t len = 0;
		double t = haul_now_ms(), t_dump, t_merge;

		haul_mig_select(m, i);
		ret = rst_dump_state_prepared(m->seized, m->prep, &blob, &len);
		if (ret) {
			pr_err_r(ret, "cannot dump the state of pid %d of the tree", m->pid);
			break;
		}
		t_dump = haul_now_ms();
		ret = merge(m, i, &blob, &len);
		t_merge = haul_now_ms();
		*dump_ms += t_merge - t;
		if (!ret)
			ret = ps_client_state(m->client, blob, len);
		pr_debug("pid %d of the tree: dump %.1f ms, merge %.1f ms, send %.1f ms", m->pid,
			 t_dump - t, t_merge - t_dump, haul_now_ms() - t_merge);
		if (ret)
			pr_err_r(ret, "cannot send the state of pid %d to %s", m->pid, m->o->to);
		free(blob);
	}
	haul_mig_select(m, 0);
	return ret;
}

/* The tree is handed back to the freezer: every other process released, then continued. */
void haul_mig_tree_release(struct mig *m)
{
	for (size_t i = 1; i < m->nprocs; i++) {
		if (m->procs[i].seized)
			rst_release(m->procs[i].seized);
		m->procs[i].seized = NULL;
	}
}

/* Frozen again: the SIGCONTs we owe only move them from the group-stop into the freezer. */
void haul_mig_tree_held(struct mig *m)
{
	for (size_t i = 0; i < m->nprocs; i++)
		if (m->procs[i].stopped) {
			kill(m->procs[i].pid, SIGCONT);
			m->procs[i].stopped = false;
		}
}

/* The source of a committed migration dies: every process but the root (killed by the caller). */
void haul_mig_tree_kill(struct mig *m)
{
	for (size_t i = m->nprocs; i-- > 1;)
		kill(m->procs[i].pid, SIGKILL);
}

/* The end of a tree's migration, failed or not: whatever is held of the others let go. */
void haul_mig_tree_finish(struct mig *m)
{
	haul_mig_select(m, 0);
	haul_mig_tree_release(m);
	haul_mig_tree_held(m);
	for (size_t i = 1; i < m->nprocs; i++) {
		struct mig_proc *p = &m->procs[i];

		trk_free(p->trk);
		rst_dump_prep_free(p->prep);
		/* closing a session of the tree only detaches it; the root's decides */
		ps_client_free(p->client);
		for (size_t k = 0; k < p->ncglines; k++)
			free(p->cglines[k]);
		free(p->cglines);
		free(p->listeners);
		*p = (struct mig_proc){.pid = p->pid, .lock = p->lock}; /* locked until the end */
	}
}

void haul_mig_tree_free(struct mig *m)
{
	rst_shm_route_free(m->shm_route);
	m->shm_route = NULL;
	for (size_t i = 1; i < m->nprocs; i++)
		haul_pid_unlock(&m->procs[i].lock);
	rst_mig_tree_free(m->tree);
	m->tree = NULL;
	free(m->procs);
	free(m->more);
	free(m->tree_msg);
	m->procs = NULL;
	m->more = NULL;
	m->tree_msg = NULL;
	m->nprocs = 0;
}

int haul_mig_pids(const struct mig *m, pid_t **pids, size_t *n)
{
	*n = m->nprocs ? m->nprocs : 1;
	*pids = calloc(*n, sizeof(**pids));
	if (!*pids)
		return -ENOMEM;
	(*pids)[0] = m->pid;
	for (size_t i = 0; i < m->nprocs; i++)
		(*pids)[i] = i == m->cur ? m->pid : m->procs[i].pid;
	return 0;
}

/* The TCP and UDP sockets of every process (one shared by several listed once, netsock.c). */
int haul_mig_sockets(struct mig *m, struct haul_net_tuple **out, size_t *n)
{
	size_t np;
	pid_t *pids;
	int ret = haul_mig_pids(m, &pids, &np);

	if (ret)
		return ret;
	ret = haul_net_sockets_of(pids, np, out, n);
	free(pids);
	return ret;
}

int haul_mig_sockets_snap(struct mig *m, struct haul_net_snap *s, bool again, bool *reused)
{
	size_t np;
	pid_t *pids;
	int ret = haul_mig_pids(m, &pids, &np);

	if (ret)
		return ret;
	ret = again ? haul_net_snap_again(pids, np, s, reused) : haul_net_snap_take(pids, np, s);
	free(pids);
	return ret;
}

long long haul_mig_cpu_ticks(const struct mig *m)
{
	long long sum = 0;

	if (!m->nprocs)
		return haul_proc_cpu_ticks(m->pid);
	for (size_t i = 0; i < m->nprocs; i++) {
		long long t = haul_proc_cpu_ticks(i == m->cur ? m->pid : m->procs[i].pid);

		if (t > 0)
			sum += t;
	}
	return sum ? sum : -1;
}
