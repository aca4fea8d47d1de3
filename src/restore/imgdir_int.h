/*
 * imgdir_int.h - the images directory of `haul checkpoint` / `haul restore`
 * (imgdir.c): one image per checkpointed process, written beside the
 * committed ones and switched in atomically.  Private to src/restore.
 */
#ifndef HAUL_RESTORE_IMGDIR_INT_H
#define HAUL_RESTORE_IMGDIR_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "restore/restore.h"

/* Prefix of the directories an image is written into before its switch. */
#define RST_IMGDIR_TMP ".haul-tmp-"

/* One checkpoint's image in the making. */
struct rst_imgdir_tx {
	char dir[PATH_MAX];  /* the images directory, as given */
	char id[96];	     /* the image's identity: DIR/<id> once switched */
	char tmp[160];	     /* its name in DIR until then (RST_IMGDIR_TMP...) */
	char path[PATH_MAX]; /* DIR/<tmp>: the page store to write */
	int dirfd;	     /* DIR */
	int lockfd;	     /* DIR/<tmp>, flock()ed while this checkpoint lives */
	bool switched;	     /* DIR/<id> is the new image */
};

/*
 * Start a checkpoint of host @pid (known to itself as @own) into @dir:
 * create @dir if missing, remove what failed checkpoints left (a tmp
 * directory nobody holds locked), and make a fresh locked tmp directory
 * for the new image (tx->path).  The identity is
 * "<own>-<host pid>-<start time>-<boot id>": the same process checkpointed
 * again replaces its image; no two processes share one, even both PID 1 in
 * their own namespaces.  0 or -errno, logged.
 */
int rst_imgdir_begin(const char *dir, pid_t pid, pid_t own, struct rst_imgdir_tx *tx);
/*
 * Make the committed tmp image DIR/<id>: fsync it, rename it in (an atomic
 * RENAME_EXCHANGE when an image of that id exists), fsync DIR, then remove
 * the old image.  Before the rename the old image is the committed one;
 * after the fsync the new one is.  @fault (HAUL_FAULT, tests): see
 * rst_imgdir_fault().  0 or -errno, logged.
 */
int rst_imgdir_switch(struct rst_imgdir_tx *tx, const char *fault);
/* Remove what is left at tx->tmp (a failed new image or a replaced old one); close. */
void rst_imgdir_end(struct rst_imgdir_tx *tx);
/*
 * HAUL_FAULT=ckpt-kill:POINT (tests): SIGKILL ourselves at @point
 * ("staged", "committed", "switched"), as a kill -9 timed into that step.
 */
void rst_imgdir_fault(const char *fault, const char *point);

/*
 * The image to restore from @dir: the one with identity @id (NULL: any) of
 * process @pid (0: any).  Exactly one must match: none or several are
 * refused, the several listed with their ids.  *@store gets the page store
 * directory, *@found the pid inside it.  Also reads a page server's images
 * directory (DIR/<pid>/, identity "<pid>").  0 or -errno, logged.
 */
int rst_imgdir_find(const char *dir, const char *id, pid_t pid, char *store, size_t len,
		    pid_t *found);

/*
 * ckpt_lock.c: the network lock of one checkpoint.  rst_ckpt_lock_take:
 * the processes @pids are stopped, no socket read yet: take it (through
 * rst_netlock_ops) and, unless @leave_running, name it in the new image
 * (tx->path/netlock, durable).  0 or -errno (nothing held then).
 * rst_ckpt_lock_lift: lift it if one is held (a failed checkpoint, or
 * --leave-running, before the processes run).  rst_ckpt_lock_keep: the
 * image is committed and its processes gone: the lock stays, the image's.
 */
struct rst_ckpt_lock {
	char name[RST_NETLOCK_NAME]; /* "": none held */
};
int rst_ckpt_lock_take(struct rst_ckpt_lock *k, const struct rst_imgdir_tx *tx, const pid_t *pids,
		       size_t n, bool leave_running);
void rst_ckpt_lock_lift(struct rst_ckpt_lock *k);
void rst_ckpt_lock_keep(struct rst_ckpt_lock *k);
/*
 * The restore of the image in @store: when it keeps a lock of the network
 * namespace the processes will be in (@netns, a path: the engine's that a
 * container joins; NULL: this one), every TCP connection of the restore
 * stays in repair mode until rst_tcp_deferred_finish, which lifts the lock
 * first, in that namespace (rst_restore_lock_lift).  0 (also for a record
 * it cannot read: a warning says so and how to find the lock), or -errno.
 */
int rst_restore_lock_arm(const char *store, const char *netns);
int rst_restore_lock_lift(const char *name);

#endif
