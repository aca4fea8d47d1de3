/*
 * tree_ckpt.c - haul checkpoint of a process with descendants: one image
 * of the whole tree.
 *
 * Order: walk the tree and precheck every process while all run (a
 * refusal names the pid and resource and touches nothing); then stop them
 * (rst_seize: SIGSTOP hold + ptrace, parents first), walk again, and
 * precheck and stop what was forked meanwhile, until a walk finds nothing
 * new: a stopped process forks no more, so the set is then stable.  Only
 * then are the ids read (pgid and sid may change until the stop) and each
 * process dumped: its ProcessState, layout and pages into DIR/<pid>/ of one
 * page store, the tree (tree_img.c) beside them, every store committed and
 * the image switched in at once (imgdir.c).  Without --leave-running the
 * processes are killed, leaves first, only once the image is durable; a
 * failure releases every one of them untouched.  The dump leaves each TCP
 * connection in repair mode (fd_tcp.c): closed so after the kill, taken
 * out of it before the processes run on.
 *
 * Memory is read while stopped (no tracker rounds): the stop grows with
 * the memory of the whole tree.
 */
#define LOG_PREFIX "tree: "
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/injlog.h"
#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "restore/fd_int.h"
#include "restore/imgdir_int.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "restore/tree_int.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* A zombie, or gone (reaped): nothing to precheck or stop, the re-read sorts it out. */
bool rst_tree_gone_or_zombie(pid_t host)
{
	char c = rst_proc_state(host);

	return !c || c == 'Z';
}

/* Precheck [from, n) of @t while they run; zombies need none. */
static int precheck_from(struct rst_tree *t, size_t from, char *why, size_t wl)
{
	for (size_t i = from; i < t->n; i++) {
		int ret;

		if (i && rst_tree_gone_or_zombie(t->p[i].host))
			continue; /* the root's precheck names it a zombie */
		ret = rst_dump_precheck(t->p[i].host, why, wl);
		if (ret && i && rst_tree_gone_or_zombie(t->p[i].host))
			continue; /* it exited meanwhile */
		if (ret)
			return ret;
	}
	return 0;
}

/*
 * Let process @p go.  The injection journal holds one process at a time
 * (injlog.c): the SIGSTOP hold of every other process of the tree is
 * undone here, by the SIGCONT it owes.
 */
static void release_one(struct rst_tree_proc *p)
{
	if (!p->sz)
		return;
	rst_release(p->sz);
	p->sz = NULL;
	if (p->cont)
		kill(p->host, SIGCONT);
	if (p->cont)
		injlog_owe_paid(p->host);
	p->cont = false;
}

static int seize_from(struct rst_tree *t, size_t from, char *why, size_t wl)
{
	for (size_t i = from; i < t->n; i++) {
		int ret;

		if (i && rst_tree_gone_or_zombie(t->p[i].host))
			continue;
		/* stopped by its owner (job control): it stays stopped after us */
		t->p[i].cont = !rst_proc_stopped(t->p[i].host);
		/* a haul killed from here on leaves it to the journal's survivor (injlog.h) */
		if (t->p[i].cont)
			injlog_owe_cont(t->p[i].host);
		ret = rst_seize(t->p[i].host, &t->p[i].sz);
		if (ret && t->p[i].cont)
			injlog_owe_paid(t->p[i].host); /* not stopped by us: nothing owed */
		if (ret && i && rst_tree_gone_or_zombie(t->p[i].host))
			continue;
		if (ret) {
			snprintf(why, wl, "cannot stop pid %d of the tree: %s", (int)t->p[i].host,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* include/uapi/linux/kcmp.h */
#define KCMP_VM_      1
#define KCMP_FILES_   2
#define KCMP_FS_      3
#define KCMP_SIGHAND_ 4

/*
 * What clone() can share between processes without CLONE_THREAD (kcmp,
 * kernel/kcmp.c).  An fd table or fs info a child shares with its parent
 * is rebuilt (@flag: the child is forked with it, target_fork.c); an
 * address space (and the signal handlers, which clone shares only with
 * it) is not: each restored process would get its own.
 */
static const struct {
	int type;
	unsigned flag; /* the clone flag that rebuilds it, 0: none */
	const char *what;
} tables[] = {
	{KCMP_VM_, 0, "one address space (CLONE_VM, e.g. a vfork child)"},
	{KCMP_FILES_, CLONE_FILES, "one fd table (CLONE_FILES)"},
	{KCMP_FS_, CLONE_FS, "one cwd and umask (CLONE_FS)"},
	{KCMP_SIGHAND_, 0, "one table of signal handlers (CLONE_SIGHAND)"},
};

static bool live_proc(const struct rst_tree *t, size_t i)
{
	return !t->p[i].zombie && !rst_tree_gone_or_zombie(t->p[i].host);
}

static bool shares(const struct rst_tree *t, size_t i, size_t j, int type)
{
	return syscall(SYS_kcmp, t->p[i].host, t->p[j].host, type, 0, 0) == 0;
}

/* The index of @j's parent in @t (host PIDs: the ids may not be read yet), or -1. */
static ssize_t parent_of(const struct rst_tree *t, size_t j)
{
	char *status = NULL;
	const char *f;
	pid_t pp = 0;

	if (!rst_read_proc(t->p[j].host, "status", &status, NULL) &&
	    (f = rst_status_field(status, "PPid")))
		pp = atoi(f);
	free(status);
	for (size_t i = 0; pp > 0 && i < t->n; i++)
		if (t->p[i].host == pp)
			return (ssize_t)i;
	return -1;
}

/* The first process of @i's chain of parents that shares @flag with it (itself at the top). */
static size_t share_top(const struct rst_tree *t, size_t i, unsigned flag)
{
	for (size_t hops = 0; i && (t->p[i].shares & flag) && hops < t->n; hops++) {
		ssize_t up = parent_of(t, i);

		if (up < 0)
			break;
		i = (size_t)up;
	}
	return i;
}

/*
 * What each live process shares with its parent (rst_tree_proc.shares),
 * then every pair of live processes that share one of tables[]: carried
 * when the sharing runs down parent links (each forked sharing it),
 * refused by name otherwise (two siblings sharing without their parent,
 * an address space).
 */
static int check_tables(struct rst_tree *t, char *why, size_t wl)
{
	for (size_t j = 1; j < t->n; j++) {
		ssize_t i = parent_of(t, j);

		t->p[j].shares = 0;
		if (i < 0 || !live_proc(t, j) || !live_proc(t, (size_t)i))
			continue;
		for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++)
			if (tables[k].flag && shares(t, (size_t)i, j, tables[k].type))
				t->p[j].shares |= tables[k].flag;
	}
	for (size_t i = 0; i < t->n; i++)
		for (size_t j = i + 1; j < t->n; j++)
			for (size_t k = 0; k < sizeof(tables) / sizeof(tables[0]); k++) {
				/* a zombie has none of them left (two would compare equal) */
				if (!live_proc(t, i) || !live_proc(t, j))
					break;
				if (!shares(t, i, j, tables[k].type))
					continue;
				if (tables[k].flag && share_top(t, i, tables[k].flag) ==
							      share_top(t, j, tables[k].flag))
					continue;
				snprintf(why, wl,
					 "pids %d and %d of the tree share %s, which haul "
					 "rebuilds only between a parent and the children it "
					 "forked sharing it; checkpoint the tree when they no "
					 "longer do",
					 (int)t->p[i].host, (int)t->p[j].host, tables[k].what);
				return -EOPNOTSUPP;
			}
	return 0;
}

/*
 * What the processes of a tree share that haul must refuse, for a tree
 * migrate's precheck (tables clone() shares: check_tables).  Shared memory
 * is carried (shm_tree.c, shm_tree_route.c).
 */
int rst_tree_check_sharing(struct rst_tree *t, char *why, size_t wl)
{
	return check_tables(t, why, wl);
}

/* The host PIDs of @t for the checks (rst_precheck_tree): what they share is carried. */
static int set_members(const struct rst_tree *t, pid_t **members)
{
	pid_t *m = realloc(*members, t->n * sizeof(*m));

	if (!m)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		m[i] = t->p[i].host;
	*members = m;
	rst_precheck_tree(m, t->n);
	/* a pipe only the tree holds is the tree's, not an external endpoint (fd_external.c) */
	rst_ext_moving(m, t->n);
	return 0;
}

/* Walk, precheck and stop until a walk finds no new process (those in @t are stopped). */
static int stop_tree(struct rst_tree *t, pid_t root, pid_t **members, char *why, size_t wl)
{
	size_t added, from = t->n;
	int ret;

	for (;;) {
		ret = rst_tree_walk(t, root, &added, why, wl);
		if (ret || !added)
			return ret;
		ret = set_members(t, members);
		if (!ret)
			ret = precheck_from(t, from, why, wl);
		if (!ret)
			ret = check_tables(t, why, wl);
		if (!ret)
			ret = seize_from(t, from, why, wl);
		if (ret)
			return ret;
		from = t->n;
	}
}

/* Whether a process of @t has connections its listeners have not accepted yet. */
static bool accept_pending(const struct rst_tree *t)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->p[i].sz && rst_sock_accept_pending(t->p[i].host, NULL, 0))
			return true;
	return false;
}

/*
 * Connections the kernel completed but no process of the tree accepted at
 * the stop (a listener every worker shares): the tree runs again, every
 * process released, until the queues are empty (at most RST_ACCEPT_DRAIN_MS
 * each wait), and is stopped again, up to RST_ACCEPT_DRAIN_TRIES times, as
 * for one process (sock_drain.c); a process forked meanwhile is walked,
 * prechecked and stopped too.  What stays queued is refused by the dump,
 * naming the listener.
 */
static int drain_accepts(struct rst_tree *t, pid_t root, pid_t **members, char *why, size_t wl)
{
	for (int k = 0; k < RST_ACCEPT_DRAIN_TRIES && accept_pending(t); k++) {
		int ret;

		for (size_t i = 0; i < t->n; i++)
			release_one(&t->p[i]);
		for (size_t i = 0; i < t->n; i++)
			if (!rst_tree_gone_or_zombie(t->p[i].host))
				rst_sock_drain_wait(t->p[i].host, NULL, 0);
		ret = seize_from(t, 0, why, wl);
		if (!ret)
			ret = stop_tree(t, root, members, why, wl);
		if (ret)
			return ret;
	}
	return 0;
}

/* Dump process @i of @t into @store: state, layout, every page. */
static int dump_one(struct rst_tree *t, size_t i, struct rst_share_dump *d, struct pstore *store,
		    struct pstore_proc **pp, struct rst_ckpt_stats *st)
{
	struct rst_tree_proc *p = &t->p[i];
	Haul__Img__ProcessState *ps = NULL;
	struct haul_layout l = {0};
	uint8_t *blob = NULL;
	size_t len;
	int ret;

	ret = rst_dump_state(p->sz, &blob, &len);
	if (ret) {
		pr_err_r(ret, "cannot dump the state of pid %d of the tree of pid %d", p->pid,
			 t->p[0].pid);
		return ret;
	}
	ps = haul__img__process_state__unpack(NULL, len, blob);
	ret = ps ? rst_share_dump_merge(d, p->host, ps) : -EBADMSG;
	if (!ret) {
		char why[512];

		ret = rst_epoll_tree_owners(t, i, ps, why, sizeof(why));
		if (ret) { /* logged once, here: not a failure to store */
			pr_err("cannot checkpoint pid %d and its descendants: %s", t->p[0].pid,
			       why);
			haul__img__process_state__free_unpacked(ps, NULL);
			free(blob);
			return ret;
		}
	}
	if (!ret) /* shared memory: stored once for the tree (shm_tree.c) */
		ret = rst_shm_tree_dumped(d, ps);
	if (!ret && rst_tree_hooks() && rst_tree_hooks()->dumped)
		ret = rst_tree_hooks()->dumped(rst_tree_hooks()->arg, p->host, p->pid, ps);
	if (!ret) {
		/* its files as shared with the processes before it (tree_share.c) */
		free(blob);
		len = haul__img__process_state__get_packed_size(ps);
		blob = malloc(len);
		ret = blob ? 0 : -ENOMEM;
		if (blob)
			haul__img__process_state__pack(ps, blob);
	}
	if (!ret)
		ret = rst_state_layout(ps, &l);
	if (!ret)
		ret = pstore_proc_get(store, p->pid, true, pp);
	if (!ret)
		ret = pstore_set_comm(*pp, ps->comm);
	if (!ret)
		ret = pstore_set_layout(*pp, &l);
	if (!ret)
		ret = pstore_set_state(*pp, blob, len);
	if (!ret)
		ret = rst_shm_tree_store(d, p->host, &l, *pp, st);
	if (ret)
		pr_err_r(ret, "cannot store the image of pid %d of the tree of pid %d", p->pid,
			 t->p[0].pid);
	haul_layout_release(&l);
	if (ps)
		haul__img__process_state__free_unpacked(ps, NULL);
	free(blob);
	return ret;
}

/* The network lock of the tree's live processes (ckpt_lock.c). */
static int take_lock(const struct rst_tree *t, const struct rst_imgdir_tx *tx, bool leave_running,
		     struct rst_ckpt_lock *lock)
{
	pid_t *pids = calloc(t->n, sizeof(*pids));
	size_t n = 0;
	int ret;

	if (!pids)
		return -ENOMEM;
	for (size_t i = 0; i < t->n; i++)
		if (!t->p[i].zombie)
			pids[n++] = t->p[i].host;
	ret = rst_ckpt_lock_take(lock, tx, pids, n, leave_running);
	if (ret)
		pr_err_r(ret, "cannot lock the network of the tree of pid %d for its checkpoint",
			 t->p[0].pid);
	free(pids);
	return ret;
}

/* Write every process and the tree into the new image, durable and switched in. */
static int write_image(struct rst_tree *t, const char *dir, bool leave_running, const char *fault,
		       struct rst_ckpt_lock *lock, struct rst_ckpt_stats *st)
{
	struct rst_imgdir_tx tx = {.dirfd = -1, .lockfd = -1};
	struct pstore_proc **pp = calloc(t->n, sizeof(*pp));
	struct rst_share_dump d = {0};
	struct pstore *store = NULL;
	int ret, fd = -1;

	if (!pp)
		return -ENOMEM;
	ret = rst_imgdir_begin(dir, t->p[0].host, t->p[0].pid, &tx);
	if (ret)
		goto out;
	snprintf(st->id, sizeof(st->id), "%s", tx.id);
	ret = pstore_open(tx.path, &store);
	/* every process stopped, no socket read yet: the network lock (ckpt_lock.c) */
	if (!ret)
		ret = take_lock(t, &tx, leave_running, lock);
	for (size_t i = 0; i < t->n && !ret; i++)
		if (!t->p[i].zombie)
			ret = dump_one(t, i, &d, store, &pp[i], st);
	if (!ret) {
		fd = open(tx.path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
		ret = fd < 0 ? -errno : rst_tree_img_write(fd, t);
	}
	if (ret)
		goto out;
	rst_imgdir_fault(fault, "staged");
	if (leave_running) {
		/* everything is staged: out of repair mode, and on it runs */
		rst_ckpt_lock_lift(lock);
		rst_tcp_hold_end(true);
		for (size_t i = 0; i < t->n; i++)
			release_one(&t->p[i]);
		st->frozen_ns = now_ns() - st->frozen_ns;
	}
	for (size_t i = 0; i < t->n && !ret; i++)
		if (pp[i])
			ret = pstore_commit(pp[i], pstore_round(pp[i]) + 1);
	if (ret) {
		pr_err_r(ret,
			 "cannot commit the image of the tree of pid %d to %s; the previous "
			 "image stays",
			 t->p[0].pid, tx.path);
		goto out;
	}
	ret = rst_imgdir_switch(&tx, fault);
out:
	if (ret)
		for (size_t i = 0; i < t->n; i++)
			if (pp[i])
				pstore_abort(pp[i]);
	if (fd >= 0)
		close(fd);
	pstore_close(store);
	rst_imgdir_end(&tx);
	rst_share_dump_release(&d);
	free(pp);
	return ret;
}

int rst_tree_checkpoint(pid_t pid, const char *dir, bool leave_running, const char *fault,
			struct rst_ckpt_stats *st)
{
	struct rst_tree t = {0};
	struct rst_ckpt_lock lock = {{0}};
	pid_t *members = NULL;
	uint64_t t0 = now_ns();
	char why[512] = "";
	size_t live = 0;
	int ret;

	memset(st, 0, sizeof(*st));
	ret = stop_tree(&t, pid, &members, why, sizeof(why));
	if (!ret)
		ret = drain_accepts(&t, pid, &members, why, sizeof(why));
	st->frozen_ns = now_ns();
	if (!ret)
		ret = rst_tree_read_ids(&t, why, sizeof(why));
	/* again, stopped: what each shares with its parent is final now (tree.img) */
	if (!ret)
		ret = check_tables(&t, why, sizeof(why));
	/* what the restore would refuse, refused now, while the tree can run on */
	if (!ret)
		ret = rst_tree_img_plan_check(&t, why, sizeof(why));
	if (ret) {
		pr_err("cannot checkpoint pid %d and its descendants: %s; every process runs on",
		       (int)pid, why[0] ? why : strerror(-ret));
		goto out;
	}
	ret = write_image(&t, dir, leave_running, fault, &lock, st);
	if (ret)
		goto out;
	/* Durable on disk: the tree may go, leaves first, and must not run again. */
	for (size_t i = t.n; i-- > 0;) {
		live += !t.p[i].zombie;
		if (!leave_running) {
			rst_kill_seized(t.p[i].sz);
			t.p[i].sz = NULL;
			injlog_owe_paid(t.p[i].host); /* dead: nothing owed */
		}
	}
	if (!leave_running) {
		rst_tcp_hold_end(false);   /* their sockets closed in repair mode: nothing sent */
		rst_ckpt_lock_keep(&lock); /* until the restore: no peer meets a closed port */
	}
	if (!leave_running)
		st->frozen_ns = now_ns() - st->frozen_ns;
	st->total_ns = now_ns() - t0;
	pr_info("checkpointed pid %d with %zu descendants (%zu zombies)", t.p[0].pid, t.n - 1,
		t.n - live);
out:
	/* a failed checkpoint: no lock, and connections out of repair mode, still stopped */
	rst_ckpt_lock_lift(&lock);
	rst_tcp_hold_end(true);
	for (size_t i = 0; i < t.n; i++)
		release_one(&t.p[i]);
	rst_precheck_tree(NULL, 0);
	rst_ext_moving(NULL, 0);
	free(members);
	rst_tree_release(&t);
	return ret;
}
