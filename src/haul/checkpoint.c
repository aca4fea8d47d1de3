/*
 * checkpoint.c - haul checkpoint's orchestration: the pre-copy rounds of a
 * --leave-running checkpoint around the restorer's checkpoint steps.
 *
 * src/restore keeps the primitives (rst_ckpt_begin/store_round/seize/
 * commit/end, image.c: what goes into the image and how it is made
 * durable); the order and the tracker rounds are here, as for a live
 * migration.  With --leave-running the memory is copied while the process
 * runs (two tracker rounds, uffd-wp), it is stopped only for the last dirty
 * pages and the state, and resumes before the commit is made durable: the
 * stop does not grow with its size.  Without a tracker (or without
 * --leave-running) every page is read while it is stopped.  Invariant: the
 * process never runs after its dump unless --leave-running.
 */
#include <errno.h>
#include <stdbool.h>

#include "haul/haul.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

int haul_checkpoint_images(pid_t pid, const char *dir, bool leave_running, const char *fault,
			   struct rst_ckpt_stats *st)
{
	struct rst_ckpt *ck = NULL;
	struct trk *trk = NULL;
	int ret;

	/* A process with children is checkpointed with all its descendants, as one image. */
	if (rst_has_children(pid))
		return rst_tree_checkpoint(pid, dir, leave_running, fault, st);
	ret = rst_ckpt_begin(pid, dir, st, &ck);
	if (ret)
		return ret;
	/*
	 * A snapshot that leaves the process running copies its memory while
	 * it runs (tracker rounds) and stops it only for the last dirty pages
	 * and the state: the stop does not grow with its size.
	 */
	if (leave_running && trk_open(pid, &(struct trk_opts){0}, &trk) == 0) {
		for (int round = 0; round < 2 && !ret; round++)
			ret = rst_ckpt_store_round(ck, trk);
		if (ret)
			goto out;
	}
	ret = rst_ckpt_seize(ck);
	if (ret)
		goto out;
	if (trk) {
		trk_set_frozen(trk, true);
		ret = rst_ckpt_store_round(ck, trk);
		if (ret)
			goto out;
	}
	ret = rst_ckpt_commit(ck, trk != NULL, leave_running, fault);
out:
	rst_ckpt_end(ck, ret);
	trk_free(trk);
	return ret;
}
