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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/log.h"
#include "common/proc.h"
#include "haul/haul.h"
#include "haul/netlock.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

/* The network namespace of @pid (0: ours), as its inode and device. */
static int netns_of(pid_t pid, struct stat *st)
{
	char p[64] = "/proc/self/ns/net";

	if (pid)
		snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
	return stat(p, st) ? -errno : 0;
}

/* Whether @pid is @root or one of its descendants. */
static bool below(pid_t pid, pid_t root)
{
	for (int depth = 0; pid > 1 && depth < 4096; depth++) {
		unsigned long long ppid = 0;

		if (pid == root)
			return true;
		if (haul_proc_stat_field(pid, 4, NULL, &ppid))
			return false;
		pid = (pid_t)ppid;
	}
	return pid == root;
}

/* haul_netns_in_use's skip: @pid is in the tree of *@arg (a pid_t). */
static bool in_tree(pid_t pid, void *arg)
{
	return below(pid, *(const pid_t *)arg);
}

/* Whether a process outside @root's tree is in network namespace @ns, or a mount pins it. */
static bool netns_outlives(pid_t root, const struct stat *ns)
{
	return haul_netns_in_use((unsigned long long)ns->st_ino, in_tree, &root) > 0;
}

/*
 * A process in a network namespace of its own, one that dies with it, is
 * refused: haul restores processes in the namespace of the haul that
 * restores them and does not rebuild one (interfaces, addresses, routes,
 * firewall), so it would come back on another network without a word.
 * A namespace that outlives it (named, or shared with a process outside
 * its tree) is the operator's to restore into.
 */
static int check_netns(pid_t pid)
{
	struct stat ours, its;

	if (netns_of(0, &ours) || netns_of(pid, &its))
		return 0; /* the precheck names a process that is gone */
	if ((its.st_ino == ours.st_ino && its.st_dev == ours.st_dev) || netns_outlives(pid, &its))
		return 0;
	pr_err("cannot checkpoint pid %d: it is in a network namespace of its own (net:[%llu]) "
	       "that dies with it, and haul does not rebuild network namespaces (interfaces, "
	       "addresses, routes, firewall): its restore would be on another network. Run it "
	       "in a namespace that outlives it (ip netns add NAME; ip netns exec NAME ...) and "
	       "restore it there (nsenter --net=/run/netns/NAME haul restore ...)",
	       (int)pid, (unsigned long long)its.st_ino);
	return -EOPNOTSUPP;
}

int haul_checkpoint_images(pid_t pid, const char *dir, bool leave_running, const char *fault,
			   struct rst_ckpt_stats *st)
{
	struct rst_ckpt *ck = NULL;
	struct trk *trk = NULL;
	int ret;

	ret = check_netns(pid);
	if (ret)
		return ret;
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
