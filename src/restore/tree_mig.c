/*
 * tree_mig.c - the process tree of a live migration, source side (haul
 * migrate of a process with descendants; DESIGN.md "Process trees").
 *
 * Unlike a checkpoint, a migration does not stop the tree to find it: the
 * processes run through pre-copy, and the target creates every one of
 * them, forked in tree order with its pid, when pre-copy starts (a stub
 * can fork only before its memory is laid out).  So the shape is read once
 * while all run (walk, precheck each, ids), sent with the root's session,
 * and read again once the tree is frozen: a process forked, exited, reaped
 * or moved to another group or session meanwhile makes the shape differ,
 * and the migration is abandoned with -EAGAIN naming the pid (haul
 * migrate retries with the new shape; nothing was resumed anywhere).  Each
 * process's state is then merged as the checkpoint does (tree_share.c):
 * open files shared with a process before it in tree order name that one.
 * The checks of the precheck (rst_precheck_tree) accept the tree's own
 * children and shared files for as long as the tree lives.
 */
#define LOG_PREFIX "tree: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "restore/tree_int.h"

struct rst_mig_tree {
	struct rst_tree t;
	pid_t *members; /* host PIDs, for the precheck (must outlive it) */
	struct rst_share_dump share;
};

/* Walk @root's tree and read its ids, as it runs. */
static int read_tree(struct rst_tree *t, pid_t root, char *why, size_t wl)
{
	size_t added;
	int ret = rst_tree_walk(t, root, &added, why, wl);

	return ret ? ret : rst_tree_read_ids(t, why, wl);
}

int rst_mig_tree_new(pid_t root, struct rst_mig_tree **out, char *why, size_t wl)
{
	struct rst_mig_tree *mt = calloc(1, sizeof(*mt));
	int ret;

	if (!mt)
		return -ENOMEM;
	ret = read_tree(&mt->t, root, why, wl);
	if (ret)
		goto fail;
	mt->members = calloc(mt->t.n, sizeof(*mt->members));
	if (!mt->members) {
		ret = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < mt->t.n; i++)
		mt->members[i] = mt->t.p[i].host;
	/* children and what they share are carried, not refused */
	rst_precheck_tree(mt->members, mt->t.n);
	rst_ext_moving(mt->members, mt->t.n);
	for (size_t i = 0; i < mt->t.n; i++) {
		if (i && mt->t.p[i].zombie)
			continue;
		ret = rst_dump_precheck(mt->t.p[i].host, why, wl);
		if (ret && i && rst_tree_gone_or_zombie(mt->t.p[i].host))
			ret = 0; /* it exited meanwhile: the check at the freeze sees it */
		if (ret) {
			if (!why[0])
				snprintf(why, wl, "pid %d of the tree: %s", (int)mt->t.p[i].host,
					 strerror(-ret));
			goto fail;
		}
	}
	ret = rst_tree_check_sharing(&mt->t, why, wl);
	if (ret)
		goto fail;
	*out = mt;
	return 0;
fail:
	rst_mig_tree_free(mt);
	return ret;
}

size_t rst_mig_tree_count(const struct rst_mig_tree *mt)
{
	return mt->t.n;
}

void rst_mig_tree_proc(const struct rst_mig_tree *mt, size_t i, pid_t *host, pid_t *pid,
		       bool *zombie)
{
	*host = mt->t.p[i].host;
	*pid = mt->t.p[i].pid;
	*zombie = mt->t.p[i].zombie;
}

int rst_mig_tree_pack(const struct rst_mig_tree *mt, uint8_t **buf, size_t *len)
{
	Haul__Img__Tree tr = HAUL__IMG__TREE__INIT;
	Haul__Img__ProcessEntry *e = calloc(mt->t.n, sizeof(*e));
	Haul__Img__ProcessEntry **ep = calloc(mt->t.n, sizeof(*ep));
	int ret = -ENOMEM;

	if (!e || !ep)
		goto out;
	for (size_t i = 0; i < mt->t.n; i++) {
		const struct rst_tree_proc *p = &mt->t.p[i];

		haul__img__process_entry__init(&e[i]);
		e[i].pid = p->pid;
		e[i].ppid = p->ppid;
		e[i].pgid = p->pgid;
		e[i].sid = p->sid;
		e[i].has_zombie = e[i].zombie = p->zombie;
		e[i].has_exit_status = p->zombie;
		e[i].exit_status = p->exit_status;
		if (p->zombie && p->comm[0])
			e[i].comm = (char *)p->comm;
		e[i].has_shares = p->shares != 0;
		e[i].shares = p->shares;
		ep[i] = &e[i];
	}
	/* as tree_img.c writes it: a tree that shares needs a restorer that rebuilds it */
	tr.version = RST_TREE_VERSION;
	for (size_t i = 0; i < mt->t.n; i++)
		if (mt->t.p[i].shares)
			tr.version = RST_TREE_VERSION_SHARES;
	tr.root = mt->t.p[0].pid;
	tr.n_procs = mt->t.n;
	tr.procs = ep;
	*len = haul__img__tree__get_packed_size(&tr);
	*buf = malloc(*len ? *len : 1);
	if (*buf) {
		haul__img__tree__pack(&tr, *buf);
		ret = 0;
	}
out:
	free(e);
	free(ep);
	return ret;
}

int rst_mig_tree_unchanged(const struct rst_mig_tree *mt, char *why, size_t wl)
{
	const struct rst_tree *a = &mt->t;
	struct rst_tree b = {0};
	int ret = read_tree(&b, a->p[0].host, why, wl);

	/* what each shares with its parent (CLONE_FILES, CLONE_FS), as the target forked it */
	if (!ret)
		ret = rst_tree_check_sharing(&b, why, wl);
	for (size_t i = 0; !ret && i < b.n; i++) {
		const struct rst_tree_proc *q = &b.p[i];
		ssize_t k = rst_tree_find(a, q->pid);

		if (k < 0) {
			snprintf(why, wl,
				 "pid %d appeared in the tree (forked by pid %d) during "
				 "pre-copy",
				 q->pid, q->ppid);
			ret = -EAGAIN;
		} else if (q->ppid != a->p[k].ppid || q->pgid != a->p[k].pgid ||
			   q->sid != a->p[k].sid) {
			snprintf(why, wl,
				 "pid %d changed its parent, process group or session "
				 "during pre-copy",
				 q->pid);
			ret = -EAGAIN;
		} else if (q->zombie != a->p[k].zombie) {
			snprintf(why, wl, "pid %d exited during pre-copy", q->pid);
			ret = -EAGAIN;
		} else if (q->shares != a->p[k].shares) {
			snprintf(why, wl,
				 "pid %d changed what it shares with its parent (unshare) "
				 "during pre-copy",
				 q->pid);
			ret = -EAGAIN;
		}
	}
	for (size_t i = 0; !ret && i < a->n; i++)
		if (rst_tree_find(&b, a->p[i].pid) < 0) {
			snprintf(why, wl,
				 "pid %d left the tree (exited and reaped) during pre-copy",
				 a->p[i].pid);
			ret = -EAGAIN;
		}
	rst_tree_release(&b);
	return ret;
}

int rst_mig_tree_merge(struct rst_mig_tree *mt, size_t i, uint8_t **blob, size_t *len)
{
	Haul__Img__ProcessState *ps = haul__img__process_state__unpack(NULL, *len, *blob);
	const struct rst_tree_hooks *h = rst_tree_hooks();
	uint8_t *nb;
	size_t nl;
	int ret;

	if (!ps)
		return -EBADMSG;
	ret = rst_share_dump_merge(&mt->share, mt->t.p[i].host, ps);
	/* epoll watches on another process's fd name that process (tree_epoll.c) */
	if (!ret) {
		char why[512] = "";

		ret = rst_epoll_tree_owners(&mt->t, i, ps, why, sizeof(why));
		if (ret)
			pr_err("cannot migrate pid %d and its descendants: %s", mt->t.p[0].pid,
			       why);
	}
	if (!ret && h && h->dumped)
		ret = h->dumped(h->arg, mt->t.p[i].host, mt->t.p[i].pid, ps);
	if (!ret) {
		nl = haul__img__process_state__get_packed_size(ps);
		nb = malloc(nl ? nl : 1);
		ret = nb ? 0 : -ENOMEM;
		if (nb) {
			haul__img__process_state__pack(ps, nb);
			free(*blob);
			*blob = nb;
			*len = nl;
		}
	}
	if (ret)
		pr_err_r(ret, "cannot merge the state of pid %d into its tree's", mt->t.p[i].pid);
	haul__img__process_state__free_unpacked(ps, NULL);
	return ret;
}

void rst_mig_tree_free(struct rst_mig_tree *mt)
{
	if (!mt)
		return;
	rst_precheck_tree(NULL, 0);
	rst_ext_moving(NULL, 0);
	rst_share_dump_release(&mt->share);
	rst_tree_release(&mt->t);
	free(mt->members);
	free(mt);
}
