/*
 * tree_restore.c - haul restore of a tree image (tree.img beside one page
 * store per live process): every process back with its pid, parent,
 * session, process group, threads and memory, zombies with their status.
 *
 * Order (each step for every process before the next step starts):
 *  1. check: every page of every process against its checksum, every
 *     state and layout; the sessions and groups must be buildable (below).
 *  2. create: the first stub (rst_target_new), then each process forked
 *     by its restored parent (target_fork.c), parents first; a session
 *     leader calls setsid() right after its fork, before its children
 *     are forked, so they inherit the session as on the source.
 *  3. groups: group leaders setpgid(0, 0), then every other member
 *     setpgid(0, pgid) (a group must exist before it is joined).
 *  4. zombies exit with their status, unreaped.
 *  5. each live process: layout, pages, state (rst_target_ready): all
 *     stopped on their final registers.
 *  6. all run (rst_target_run), only once every one is ready.
 * Any failure kills every process made so far (the first stub's death
 * takes the rest: PR_SET_PDEATHSIG) and the image is left as it was.
 *
 * Ids whose leader is not in the tree.  The root's session: when the root
 * was not its leader (a shell's job), a stand-in H takes the leader's id
 * (target.c holder_main): it is the first stub, calls setsid(), forks the
 * root and stays its parent until the root exits, then exits with the
 * root's status.  A process group whose leader is not in the tree, in the
 * root's session: a stand-in forked by the first stub (H, or the root when
 * it leads its session) takes the id, setpgid(0, 0), and exits once the
 * members joined (a group lives on without its leader); H reaps it in its
 * wait loop, a root before it runs (injected wait4, its SIGCHLD consumed,
 * so the program never sees a child it did not have).  Anything else is
 * refused by name: a process in a session
 * that is neither its own nor its parent's (it called setsid after
 * forking it), a group whose leader is outside the tree in another
 * session.  Those ids exist on the host only while their owners live, so
 * such a tree is restored in a new PID namespace unless every id is free.
 *
 * A session haul could not name (sid 0: led from outside the PID namespace
 * haul saw the tree in, or the kernel's first session, which a service
 * manager's children never leave) has no id to take: like a lone process,
 * the root gets a session and group of its own (the stub's setsid()), the
 * processes of that session follow it, and those in the root's group
 * (0 or led outside) join the root's new group.  Another group led outside
 * is refused by name.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "restore/restore.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

struct tree_rst {
	const Haul__Img__Tree *tr;
	struct pstore *store;
	struct pstore_proc **pp; /* by entry; NULL for zombies */
	struct rst_target **t;	 /* by entry */
	pid_t holder;		 /* the root's session leader's stand-in, 0: none */
	pid_t *groups;		 /* group stand-ins' pids */
	struct rst_target **gt;
	size_t ngroups;
	struct rst_target *top;	 /* the first stub: H, or the root */
	struct rst_shm_tree shm; /* shared memory made once for all (shm_tree.c) */
	/* a live migration (tree_live below): no page stores, the states by entry */
	const void *const *state;
	const size_t *slen;
};

static const struct rst_tree_hooks *hooks;

void rst_tree_set_hooks(const struct rst_tree_hooks *h)
{
	hooks = h;
}

const struct rst_tree_hooks *rst_tree_hooks(void)
{
	return hooks;
}

static ssize_t entry_of(const Haul__Img__Tree *tr, int32_t pid)
{
	for (size_t i = 0; i < tr->n_procs; i++)
		if (tr->procs[i]->pid == pid)
			return (ssize_t)i;
	return -1;
}

/*
 * The group @e joins on the target: its own, or in an unnamed session
 * (root sid 0) the root's new group for the root's group led outside.
 */
static pid_t target_pgid(const Haul__Img__Tree *tr, const Haul__Img__ProcessEntry *e)
{
	const Haul__Img__ProcessEntry *root = tr->procs[0];

	if (!root->sid && e->pgid == root->pgid && entry_of(tr, e->pgid) < 0)
		return root->pid;
	return e->pgid;
}

/* An unnamed session (above): which groups its processes can keep; why not in @why. */
static int plan_unnamed(const Haul__Img__Tree *tr, char *why, size_t wl)
{
	const Haul__Img__ProcessEntry *root = tr->procs[0];

	if (root->pgid != root->pid && entry_of(tr, root->pgid) >= 0) {
		snprintf(
			why, wl,
			"pid %d is in the group of its descendant %d in a session led outside "
			"haul's PID namespace; checkpoint from the namespace of its session leader",
			root->pid, root->pgid);
		return -EOPNOTSUPP;
	}
	for (size_t i = 1; i < tr->n_procs; i++) {
		const Haul__Img__ProcessEntry *e = tr->procs[i];

		if (e->sid || entry_of(tr, e->pgid) >= 0 || e->pgid == root->pgid)
			continue;
		snprintf(why, wl,
			 "the process group %d of pid %d is led outside the tree, and neither is "
			 "the root's group %d in a session haul cannot name (sid 0); checkpoint "
			 "from the namespace of its session leader",
			 e->pgid, e->pid, root->pgid);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* Whether @x's process group @pgid needs a stand-in already. */
static bool group_known(const struct tree_rst *x, pid_t pgid)
{
	for (size_t k = 0; k < x->ngroups; k++)
		if (x->groups[k] == pgid)
			return true;
	return false;
}

/* Which sessions and groups can be rebuilt, and the stand-ins they need; why not in @why. */
static int plan_ids(struct tree_rst *x, char *why, size_t wl)
{
	const Haul__Img__Tree *tr = x->tr;
	const Haul__Img__ProcessEntry *root = tr->procs[0];

	if (!root->sid && plan_unnamed(tr, why, wl))
		return -EOPNOTSUPP;
	x->holder = root->sid != root->pid ? root->sid : 0;
	if (x->holder && entry_of(tr, x->holder) >= 0) {
		snprintf(why, wl,
			 "its session %d is led by one of its processes; checkpoint the session "
			 "leader instead",
			 x->holder);
		return -EOPNOTSUPP;
	}
	x->groups = calloc(tr->n_procs, sizeof(*x->groups));
	x->gt = calloc(tr->n_procs, sizeof(*x->gt));
	if (!x->groups || !x->gt)
		return -ENOMEM;
	for (size_t i = 0; i < tr->n_procs; i++) {
		const Haul__Img__ProcessEntry *e = tr->procs[i];
		ssize_t par = i ? entry_of(tr, e->ppid) : -1;
		ssize_t lead = entry_of(tr, e->pgid);

		if (i && e->sid != e->pid && e->sid != tr->procs[par]->sid) {
			snprintf(
				why, wl,
				"pid %d is in session %d, neither its own nor its parent %d's (the "
				"parent called setsid after forking it)",
				e->pid, e->sid, e->ppid);
			return -EOPNOTSUPP;
		}
		if (e->sid == e->pid && e->pgid != e->pid) {
			snprintf(why, wl, "pid %d is a session leader in group %d", e->pid,
				 e->pgid);
			return -EOPNOTSUPP;
		}
		if (lead >= 0 || e->pgid == x->holder || target_pgid(tr, e) == root->pid)
			continue;
		if (e->sid != root->sid) {
			snprintf(
				why, wl,
				"the process group %d of pid %d has its leader outside the tree and "
				"outside the root's session %d",
				e->pgid, e->pid, root->sid);
			return -EOPNOTSUPP;
		}
		if (!group_known(x, e->pgid))
			x->groups[x->ngroups++] = e->pgid;
	}
	return 0;
}

int rst_tree_plan_check(const Haul__Img__Tree *tr, char *why, size_t wl)
{
	struct tree_rst x = {.tr = tr};
	int ret = plan_ids(&x, why, wl);

	free(x.groups);
	free(x.gt);
	return ret;
}

/* plan_ids, its refusal logged naming the tree. */
static int plan_logged(struct tree_rst *x)
{
	char why[512] = "";
	int ret = plan_ids(x, why, sizeof(why));

	if (ret)
		pr_err_r(ret, "cannot restore the tree of pid %d: %s", x->tr->root,
			 why[0] ? why : "no memory");
	return ret;
}

/* Whether @pid names no process or thread here. */
static bool pid_free(pid_t pid)
{
	char path[32];

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	return access(path, F_OK) < 0 && errno == ENOENT;
}

/* AUTO: the host when every id the tree needs is free here, else a new PID namespace. */
static enum rst_pidns pick_pidns(const struct tree_rst *x, enum rst_pidns mode)
{
	if (mode != RST_PIDNS_AUTO)
		return mode;
	if (x->holder && !pid_free(x->holder))
		return RST_PIDNS_ALWAYS;
	for (size_t k = 0; k < x->ngroups; k++)
		if (!pid_free(x->groups[k]))
			return RST_PIDNS_ALWAYS;
	for (size_t i = 0; i < x->tr->n_procs; i++)
		if (!pid_free(x->tr->procs[i]->pid))
			return RST_PIDNS_ALWAYS;
	return RST_PIDNS_NEVER;
}

/* Step 1: every live process's store, pages, layout and state, checked. */
static int check_images(struct tree_rst *x, const char *path)
{
	for (size_t i = 0; i < x->tr->n_procs; i++) {
		const Haul__Img__ProcessEntry *e = x->tr->procs[i];
		char why[512] = "";
		const void *state;
		size_t len;
		int ret;

		if (e->zombie)
			continue;
		ret = pstore_proc_get(x->store, e->pid, false, &x->pp[i]);
		if (ret) {
			pr_err("%s has no image of pid %d of its tree", path, e->pid);
			return ret;
		}
		ret = pstore_verify(x->pp[i]);
		if (ret) {
			pr_err("cannot restore from %s: a page of pid %d is damaged (above); restore "
			       "another image or checkpoint again",
			       path, e->pid);
			return ret;
		}
		state = pstore_state(x->pp[i], &len);
		if (!state || val_layout(pstore_layout(x->pp[i]), why, sizeof(why)) ||
		    val_state_blob(state, len, why, sizeof(why))) {
			pr_err("the image of pid %d in %s is corrupt: %s; checkpoint the tree again",
			       e->pid, path, why[0] ? why : "no process state");
			return -EBADMSG;
		}
		/* what this host must have (an AppArmor profile: res_apparmor.c), before step 2 */
		ret = rst_res_validate_blob(state, len, why, sizeof(why));
		if (ret) {
			pr_err("the image of pid %d in %s cannot be restored: %s", e->pid, path,
			       why);
			return ret;
		}
	}
	return 0;
}

/* Steps 2-4: every process and stand-in, sessions, groups, zombies. */
static int create_all(struct tree_rst *x)
{
	const Haul__Img__Tree *tr = x->tr;
	int ret = 0;

	for (size_t k = 0; k < x->ngroups && !ret; k++) {
		ret = rst_target_fork(x->top, x->groups[k], &x->gt[k]);
		if (!ret)
			ret = rst_target_setpgid(x->gt[k], 0);
	}
	if (ret)
		return ret;
	if (x->holder)
		ret = rst_target_fork(x->top, tr->procs[0]->pid, &x->t[0]);
	else
		x->t[0] = x->top; /* the stub called setsid() itself */
	for (size_t i = 1; i < tr->n_procs && !ret; i++) {
		const Haul__Img__ProcessEntry *e = tr->procs[i];

		ret = rst_target_fork_flags(x->t[entry_of(tr, e->ppid)], e->pid, e->shares,
					    &x->t[i]);
		if (!ret && e->sid == e->pid)
			ret = rst_target_setsid(x->t[i]);
	}
	/* Leaders first: a group must exist before it is joined. */
	for (int pass = 0; pass < 2 && !ret; pass++)
		for (size_t i = 0; i < tr->n_procs && !ret; i++) {
			const Haul__Img__ProcessEntry *e = tr->procs[i];
			pid_t g = target_pgid(tr, e);

			/* an unnamed session's root leads it (the stub's setsid) */
			if (e->sid != e->pid && (i || e->sid) && (g == e->pid) == !pass)
				ret = rst_target_setpgid(x->t[i], g);
		}
	/* H reaps its stand-ins itself; a root that leads its session, before it runs */
	for (size_t k = 0; k < x->ngroups && !ret; k++) {
		ret = rst_target_exit(x->gt[k], x->holder ? NULL : x->top, 0);
		if (!ret && !x->holder)
			ret = rst_target_reap(x->top, x->groups[k]);
	}
	for (size_t i = tr->n_procs; i-- > 1 && !ret;)
		if (tr->procs[i]->zombie) {
			/* its name as ps showed it (an older image has none: the stub's) */
			if (tr->procs[i]->comm && tr->procs[i]->comm[0])
				ret = rst_target_set_name(x->t[i], tr->procs[i]->comm);
			if (!ret)
				ret = rst_target_exit(x->t[i],
						      x->t[entry_of(tr, tr->procs[i]->ppid)],
						      tr->procs[i]->exit_status);
			rst_target_free(x->t[i]);
			x->t[i] = NULL;
		}
	/* each shared memory object is made by one of them and mapped by the others */
	for (size_t i = 0; i < tr->n_procs && !ret; i++)
		if (x->t[i])
			rst_shm_tree_attach(&x->shm, x->t[i]);
	if (!ret && hooks && hooks->created)
		ret = hooks->created(hooks->arg, tr, x->t);
	return ret;
}

static int feed_page(void *arg, uint64_t addr, const void *data, uint32_t npages)
{
	return rst_target_pages(arg, addr, data, npages);
}

/* Steps 5-6: each live one laid out, filled and made ready; then all run. */
static int ready_and_run(struct tree_rst *x, pid_t *here)
{
	const Haul__Img__Tree *tr = x->tr;
	struct rst_share_rst sh = {0};
	char why[512] = "";
	int ret = 0;

	/* What each process shares with those before it comes from them (tree_share.c). */
	sh.ps = calloc(tr->n_procs, sizeof(*sh.ps));
	sh.pid = calloc(tr->n_procs, sizeof(*sh.pid));
	sh.tr = tr;
	if (!sh.ps || !sh.pid)
		ret = -ENOMEM;
	rst_share_restore_set(&sh);
	for (size_t i = 0; i < tr->n_procs && !ret; i++) {
		const void *state;
		size_t len;

		if (tr->procs[i]->zombie)
			continue;
		if (!x->pp) {
			/* live: laid out and filled during pre-copy already */
			state = x->state[i];
			len = x->slen[i];
		} else {
			state = pstore_state(x->pp[i], &len);
			if (hooks && hooks->before_layout)
				ret = hooks->before_layout(hooks->arg, x->t[i], tr->procs[i]->pid);
			if (!ret)
				ret = rst_target_layout(x->t[i], pstore_layout(x->pp[i]));
			if (!ret)
				ret = pstore_walk(x->pp[i], feed_page, x->t[i]);
		}
		if (!ret)
			ret = rst_target_ready(x->t[i], state, len, why, sizeof(why));
		if (ret) {
			pr_err_r(ret, "cannot restore pid %d of the tree of pid %d",
				 tr->procs[i]->pid, tr->root);
			break;
		}
		sh.ps[sh.n] = haul__img__process_state__unpack(NULL, len, state);
		sh.pid[sh.n] = tr->procs[i]->pid;
		ret = sh.ps[sh.n] ? 0 : -EBADMSG;
		sh.n += !ret;
	}
	rst_share_restore_set(NULL);
	/* memfd seals a stub's writable mapping held back until all were ready */
	if (!ret) {
		ret = rst_shm_tree_seal(&x->shm, why, sizeof(why));
		if (ret)
			pr_err("cannot restore the tree of pid %d: %s", tr->root, why);
	}
	for (size_t j = 0; j < sh.n; j++)
		haul__img__process_state__free_unpacked((Haul__Img__ProcessState *)sh.ps[j], NULL);
	free(sh.ps);
	free(sh.pid);
	for (size_t i = tr->n_procs; i-- > 0 && !ret;) {
		pid_t p;

		if (tr->procs[i]->zombie)
			continue;
		ret = rst_target_run(x->t[i], &p, why, sizeof(why));
		if (!i)
			*here = p;
	}
	if (!ret && x->holder)
		ret = rst_target_release_holder(x->top);
	return ret;
}

static void tree_rst_free(struct tree_rst *x)
{
	size_t n = x->tr ? x->tr->n_procs : 0;

	/* Children first: a forked stub is waited for by us, its tracer. */
	for (size_t i = n; i-- > 0;)
		if (x->t && x->t[i] != x->top)
			rst_target_free(x->t[i]);
	for (size_t k = 0; x->gt && k < x->ngroups; k++)
		rst_target_free(x->gt[k]);
	if (x->top) /* it may live on (returned): not with the table freed here */
		rst_shm_tree_attach(NULL, x->top);
	rst_shm_tree_release(&x->shm);
	free(x->t);
	free(x->gt);
	free(x->groups);
	free(x->pp);
}

int rst_restore_tree(const char *path, const struct rst_target_opts *base, struct rst_target **out,
		     pid_t *here)
{
	struct tree_rst x = {0};
	struct rst_target_opts o = *base;
	Haul__Img__Tree *tr = NULL;
	const void *state;
	size_t len;
	int ret;

	ret = rst_tree_img_read(path, &tr);
	if (ret)
		return ret;
	x.tr = tr;
	ret = pstore_open_ro(path, &x.store);
	if (ret) {
		pr_err("cannot restore from %s: its image is damaged or unreadable (above); restore "
		       "another image or checkpoint again",
		       path);
		goto out;
	}
	x.pp = calloc(tr->n_procs, sizeof(*x.pp));
	x.t = calloc(tr->n_procs, sizeof(*x.t));
	ret = x.pp && x.t ? check_images(&x, path) : -ENOMEM;
	if (!ret)
		ret = plan_logged(&x);
	if (ret)
		goto out;
	state = pstore_state(x.pp[0], &len);
	ret = rst_image_clock_offsets(state, len, &o.monotonic_offset_ns, &o.boottime_offset_ns);
	if (ret)
		goto out;
	o.pidns = pick_pidns(&x, base->pidns);
	o.pid = x.holder ? x.holder : tr->root;
	o.hold_for = x.holder ? tr->root : 0;
	o.lazy = false;
	o.before_resume = NULL;
	ret = rst_target_new(&o, &x.top);
	if (!ret)
		ret = create_all(&x);
	if (!ret)
		ret = ready_and_run(&x, here);
	if (ret) {
		pr_err("cannot restore the tree of pid %d from %s; every process of it was killed",
		       tr->root, path);
		tree_rst_free(&x);
		rst_target_free(x.top);
		x = (struct tree_rst){.tr = tr, .store = x.store};
		goto out;
	}
	pr_info("restored the tree of pid %d: %zu processes%s", tr->root, tr->n_procs,
		x.holder ? " and the stand-in of its session leader" : "");
	*out = x.top;
out:
	tree_rst_free(&x);
	pstore_close(x.store);
	haul__img__tree__free_unpacked(tr, NULL);
	return ret;
}

/* ---- a live migration's tree (rst_tree_live_*, tree_int.h) --------------- */

struct rst_tree_live {
	struct tree_rst x;
	bool resumed;
};

int rst_tree_live_new(const Haul__Img__Tree *tr, const struct rst_target_opts *base,
		      struct rst_tree_live **out)
{
	struct rst_target_opts o = *base;
	struct rst_tree_live *l = calloc(1, sizeof(*l));
	int ret;

	if (!l)
		return -ENOMEM;
	l->x.tr = tr;
	l->x.t = calloc(tr->n_procs, sizeof(*l->x.t));
	ret = l->x.t ? plan_logged(&l->x) : -ENOMEM;
	if (ret)
		goto fail;
	o.pidns = pick_pidns(&l->x, base->pidns);
	o.pid = l->x.holder ? l->x.holder : tr->root;
	o.hold_for = l->x.holder ? tr->root : 0;
	ret = rst_target_new(&o, &l->x.top);
	if (!ret)
		ret = create_all(&l->x);
	if (ret)
		goto fail;
	pr_info("made the tree of pid %d: %zu processes%s, waiting for their memory", tr->root,
		tr->n_procs, l->x.holder ? " and the stand-in of its session leader" : "");
	*out = l;
	return 0;
fail:
	pr_err_r(ret, "cannot make the tree of pid %d; every process of it was killed", tr->root);
	tree_rst_free(&l->x);
	rst_target_free(l->x.top);
	free(l);
	return ret;
}

struct rst_target *rst_tree_live_target(const struct rst_tree_live *l, size_t i)
{
	return i < l->x.tr->n_procs ? l->x.t[i] : NULL;
}

int rst_tree_live_resume(struct rst_tree_live *l, const void *const *state, const size_t *len,
			 pid_t *here, char *why, size_t wl)
{
	int ret;

	l->x.state = state;
	l->x.slen = len;
	ret = ready_and_run(&l->x, here);
	l->x.state = NULL;
	l->x.slen = NULL;
	if (ret) {
		snprintf(why, wl,
			 "cannot resume the tree of pid %d: %s; every process of it was killed",
			 l->x.tr->root, strerror(-ret));
		rst_tree_live_end(l, false);
		return ret;
	}
	l->resumed = true;
	return 0;
}

void rst_tree_live_end(struct rst_tree_live *l, bool keep)
{
	size_t n = l->x.tr->n_procs;

	/* A failed or uncommitted tree: no process of it may run on here. */
	for (size_t i = n; i-- > 0;) {
		if (!l->x.t[i])
			continue;
		if (keep && l->resumed)
			rst_target_committed(l->x.t[i]);
		else
			rst_target_kill(l->x.t[i]);
	}
	if (!keep && l->x.top)
		rst_target_kill(l->x.top);
	tree_rst_free(&l->x);
	/* tree_rst_free freed every other target, the first one's t[] entry too */
	l->x.t = NULL;
	l->x.gt = NULL;
	l->x.groups = NULL;
	l->x.ngroups = 0;
	rst_target_free(l->x.top);
	l->x.top = NULL;
}

void rst_tree_live_free(struct rst_tree_live *l)
{
	if (!l)
		return;
	if (l->x.top)
		rst_tree_live_end(l, false);
	free(l);
}
