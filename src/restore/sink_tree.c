/*
 * sink_tree.c - the restore sink's side of a live migration of a process
 * tree: one page-server session per live process, tied together by the
 * root's session (DESIGN.md "Wire format", SessionOpen.tree).
 *
 * The root's session opens first and carries the tree's shape (a packed
 * haul.img.Tree): every process of it is created at once, in tree order,
 * each forked by its restored parent with its pid (tree_restore.c
 * rst_tree_live_new), so that pre-copy can lay out and fill each stub
 * while the source still runs.  Every other session names the root's
 * session (SessionOpen.tree_session) and its own pid, and joins the stub
 * made for it: its layouts and pages go there, its state is kept.  The
 * restore command on the root's session makes every process ready in tree
 * order and then runs them all; the root's commit keeps them all.
 *
 * Invariants: the root's session owns the processes.  Its close decides
 * for the whole tree: committed, all stay; not, all are killed, whatever
 * the other sessions did.  Closing another session only detaches it (its
 * process is then missing at the restore, which is refused).  A tree
 * lives as long as one of its sessions; everything runs on the page
 * server's loop thread (the tracer of every stub).
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "pageserver/pageserver.h"
#include "restore/fd_int.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "restore/tree_int.h"

struct rst_live_tree {
	uint64_t id; /* the root's session id */
	Haul__Img__Tree *tr;
	struct rst_tree_live *made; /* NULL once ended */
	const void **state;	    /* by entry: its session's state, NULL: none yet */
	size_t *slen;
	bool *joined; /* by entry: a session is attached */
	unsigned refs;
	bool resumed;
	struct rst_live_tree *next;
};

/* Trees being migrated here; the loop thread only. */
static struct rst_live_tree *trees;

static struct rst_live_tree *find_tree(uint64_t id)
{
	for (struct rst_live_tree *lt = trees; lt; lt = lt->next)
		if (lt->id == id)
			return lt;
	return NULL;
}

static void tree_free(struct rst_live_tree *lt)
{
	struct rst_live_tree **pp;

	for (pp = &trees; *pp; pp = &(*pp)->next)
		if (*pp == lt) {
			*pp = lt->next;
			break;
		}
	rst_tree_live_free(lt->made);
	if (lt->tr)
		haul__img__tree__free_unpacked(lt->tr, NULL);
	free(lt->state);
	free(lt->slen);
	free(lt->joined);
	free(lt);
}

/* The root's session: check the tree, make every process of it. */
static int open_root(const struct ps_session_info *info, const struct rst_target_opts *o,
		     struct rst_live_tree **out)
{
	struct rst_live_tree *lt;
	char why[256] = "";
	int ret;

	if (find_tree(info->session_id))
		return -EEXIST;
	lt = calloc(1, sizeof(*lt));
	if (!lt)
		return -ENOMEM;
	lt->id = info->session_id;
	lt->tr = haul__img__tree__unpack(NULL, info->tree_len, info->tree);
	if (!lt->tr) {
		pr_err("session %016llx: the tree of pid %d does not decode; refused",
		       (unsigned long long)info->session_id, info->pid);
		free(lt);
		return -EBADMSG;
	}
	if (rst_tree_check(lt->tr, why, sizeof(why)) || lt->tr->root != info->pid) {
		pr_err("session %016llx: the tree of pid %d is inconsistent (%s); refused",
		       (unsigned long long)info->session_id, info->pid,
		       why[0] ? why : "its root is another process");
		tree_free(lt);
		return -EBADMSG;
	}
	lt->state = calloc(lt->tr->n_procs, sizeof(*lt->state));
	lt->slen = calloc(lt->tr->n_procs, sizeof(*lt->slen));
	lt->joined = calloc(lt->tr->n_procs, sizeof(*lt->joined));
	ret = lt->state && lt->slen && lt->joined ? rst_tree_live_new(lt->tr, o, &lt->made)
						  : -ENOMEM;
	if (ret) {
		tree_free(lt);
		return ret;
	}
	rst_target_cgroups_early(rst_tree_live_target(lt->made, 0), info->cgroups, info->ncgroups);
	lt->joined[0] = true;
	lt->refs = 1;
	lt->next = trees;
	trees = lt;
	*out = lt;
	return 0;
}

/* Another process's session: join the stub the root's open made for it. */
static int open_member(const struct ps_session_info *info, struct rst_live_tree **out, size_t *idx)
{
	struct rst_live_tree *lt = find_tree(info->tree_session);

	if (!lt || !lt->made || lt->resumed) {
		pr_err("session %016llx of pid %d names tree session %016llx, which %s; refused",
		       (unsigned long long)info->session_id, info->pid,
		       (unsigned long long)info->tree_session,
		       lt ? "is resumed or over" : "is not open here");
		return -ENOENT;
	}
	for (size_t i = 1; i < lt->tr->n_procs; i++) {
		if (lt->tr->procs[i]->pid != info->pid)
			continue;
		if (lt->tr->procs[i]->zombie || lt->joined[i]) {
			pr_err("session %016llx: pid %d of the tree of pid %d is %s; refused",
			       (unsigned long long)info->session_id, info->pid, lt->tr->root,
			       lt->joined[i] ? "joined already" : "a zombie (it has no memory)");
			return -EEXIST;
		}
		lt->joined[i] = true;
		lt->refs++;
		rst_target_cgroups_early(rst_tree_live_target(lt->made, i), info->cgroups,
					 info->ncgroups);
		*out = lt;
		*idx = i;
		return 0;
	}
	pr_err("session %016llx: pid %d is not in the tree of pid %d; refused",
	       (unsigned long long)info->session_id, info->pid, lt->tr->root);
	return -ENOENT;
}

int rst_live_tree_open(const struct ps_session_info *info, const struct rst_target_opts *o,
		       struct rst_live_tree **out, size_t *idx)
{
	if (info->lazy) {
		pr_err("session %016llx: post-copy of the tree of pid %d is not supported; refused",
		       (unsigned long long)info->session_id, info->pid);
		return -EOPNOTSUPP;
	}
	*idx = 0;
	return info->tree ? open_root(info, o, out) : open_member(info, out, idx);
}

struct rst_target *rst_live_tree_target(const struct rst_live_tree *lt, size_t idx)
{
	return lt->made && !lt->resumed ? rst_tree_live_target(lt->made, idx) : NULL;
}

int rst_live_tree_check_state(const struct rst_live_tree *lt, size_t idx, const void *blob,
			      size_t len, char *why, size_t wl)
{
	struct rst_share_rst sh = {0};
	int ret = 0;

	/* its fds may name open files of the processes before it (tree_share.c) */
	sh.ps = calloc(idx + 1, sizeof(*sh.ps));
	sh.pid = calloc(idx + 1, sizeof(*sh.pid));
	sh.tr = lt->tr;
	if (!sh.ps || !sh.pid)
		ret = -ENOMEM;
	for (size_t i = 0; i < idx && !ret; i++) {
		if (!lt->state[i])
			continue;
		sh.ps[sh.n] = haul__img__process_state__unpack(NULL, lt->slen[i], lt->state[i]);
		sh.pid[sh.n] = lt->tr->procs[i]->pid;
		sh.n += sh.ps[sh.n] != NULL;
	}
	if (!ret) {
		rst_share_restore_set(&sh);
		ret = rst_state_check(blob, len, why, wl);
		rst_share_restore_set(NULL);
	}
	for (size_t j = 0; j < sh.n; j++)
		haul__img__process_state__free_unpacked((Haul__Img__ProcessState *)sh.ps[j], NULL);
	free(sh.ps);
	free(sh.pid);
	return ret;
}

void rst_live_tree_state(struct rst_live_tree *lt, size_t idx, const void *state, size_t len)
{
	lt->state[idx] = state;
	lt->slen[idx] = len;
}

int rst_live_tree_restore(struct rst_live_tree *lt, size_t idx, pid_t *pid, char *msg, size_t ml)
{
	const Haul__Img__Tree *tr = lt->tr;

	if (idx) {
		snprintf(msg, ml, "pid %d: a tree is restored on its root's session",
			 tr->procs[idx]->pid);
		return -EPROTO;
	}
	if (!lt->made || lt->resumed) {
		snprintf(msg, ml, "the tree of pid %d was restored or ended already", tr->root);
		return -EPROTO;
	}
	for (size_t i = 0; i < tr->n_procs; i++) {
		if (tr->procs[i]->zombie || (lt->joined[i] && lt->state[i]))
			continue;
		snprintf(msg, ml, "no %s for pid %d of the tree of pid %d",
			 lt->joined[i] ? "process state was sent" : "session is open",
			 tr->procs[i]->pid, tr->root);
		return -EPROTO;
	}
	if (rst_tree_live_resume(lt->made, lt->state, lt->slen, pid, msg, ml)) {
		rst_tree_live_free(lt->made); /* ended: every process killed */
		lt->made = NULL;
		return -EIO;
	}
	lt->resumed = true;
	pr_info("resumed the tree of pid %d: %zu processes", tr->root, tr->n_procs);
	return 0;
}

void rst_live_tree_close(struct rst_live_tree *lt, size_t idx, bool committed)
{
	lt->joined[idx] = false;
	lt->state[idx] = NULL;
	if (!idx && lt->made) {
		if (lt->resumed && !committed)
			pr_warn("the tree of pid %d: migration not committed; killing its %zu "
				"restored processes",
				lt->tr->root, lt->tr->n_procs);
		rst_tree_live_end(lt->made, committed && lt->resumed);
		rst_tree_live_free(lt->made);
		lt->made = NULL;
	}
	if (--lt->refs == 0)
		tree_free(lt);
}
