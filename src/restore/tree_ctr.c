/*
 * tree_ctr.c - the checkpoint of a container whose pid 1 has children
 * (the criu entry point's DUMP, criu_ctr.c): the tree's checkpoint
 * (tree_ckpt.c) with the container's own parts taken while every process
 * of it is stopped.
 *
 * The container's tmpfs archives and record must describe the moment the
 * processes stopped, as for one process.  tree_ckpt.c stops the whole tree
 * before it dumps any process, so its `dumped` hook for the first process
 * (pid 1, dumped first) runs with all of them stopped and none released:
 * @stopped is called there, once.  A failure of @stopped fails the
 * checkpoint, and every process runs on (tree_ckpt.c releases them).
 * The hooks are haul's one global slot (tree_int.h): whatever was installed
 * is put back afterwards.
 */
#define LOG_PREFIX "ctr: "
#include <errno.h>

#include "restore/ctr.h"
#include "restore/restore.h"
#include "restore/tree_int.h"

struct tree_ctr {
	int (*stopped)(void *arg);
	void *arg;
	const struct rst_tree_hooks *prev;
	bool done;
};

static int root_dumped(void *arg, pid_t host, pid_t pid, Haul__Img__ProcessState *ps)
{
	struct tree_ctr *x = arg;
	int ret = 0;

	if (x->prev && x->prev->dumped)
		ret = x->prev->dumped(x->prev->arg, host, pid, ps);
	if (!ret && !x->done) {
		x->done = true;
		ret = x->stopped(x->arg);
	}
	return ret;
}

static int pass_created(void *arg, const Haul__Img__Tree *tr, struct rst_target *const *t)
{
	const struct tree_ctr *x = arg;

	return x->prev && x->prev->created ? x->prev->created(x->prev->arg, tr, t) : 0;
}

static int pass_before_layout(void *arg, struct rst_target *t, pid_t pid)
{
	const struct tree_ctr *x = arg;

	return x->prev && x->prev->before_layout ? x->prev->before_layout(x->prev->arg, t, pid) : 0;
}

int rst_ctr_tree_checkpoint(pid_t pid, const char *dir, bool leave_running,
			    int (*stopped)(void *arg), void *arg, struct rst_ckpt_stats *st)
{
	struct tree_ctr x = {.stopped = stopped, .arg = arg, .prev = rst_tree_hooks()};
	struct rst_tree_hooks h = {
		.dumped = root_dumped,
		.created = pass_created,
		.before_layout = pass_before_layout,
		.arg = &x,
	};
	int ret;

	rst_tree_set_hooks(&h);
	ret = rst_tree_checkpoint(pid, dir, leave_running, NULL, st);
	rst_tree_set_hooks(x.prev);
	if (!ret && !x.done)
		ret = -EPROTO; /* no process was dumped: cannot be, tree_ckpt.c dumps pid 1 */
	return ret;
}
