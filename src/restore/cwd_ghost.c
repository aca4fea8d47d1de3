/*
 * cwd_ghost.c - a working directory that was deleted while the process
 * was in it (a release directory removed under a server that still runs
 * there, zdtm's cwd01).
 *
 * The dump keeps its path (without " (deleted)"), mode and owner
 * (ProcessState 65-68).  The restore chdirs by path, so haul makes a
 * directory at that path in the stub's mount namespace (/proc/STUB/root),
 * with that mode and owner, the stub enters it (the chdir of the task
 * batch, target_resume.c), and haul removes it again: the process is in a
 * deleted directory, and /proc/PID/cwd reads as it did.  When something
 * exists at that path now (another directory made since), or its parent
 * is gone too, the directory is made beside it under a name of its own
 * (".haul-cwd-XXXXXX", or in /tmp when the parent is gone or takes no
 * new directory), and a warning says the name differs: a deleted
 * directory behaves the same under any name (nothing can be created in
 * it).  One on a filesystem the kernel fills (/proc/PID of a process gone,
 * zdtm's unhashed_proc; sysfs, cgroupfs...) is refused at the precheck and
 * the dump (rst_cwd_ghost_check): no directory made by haul is that.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <limits.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

int rst_cwd_ghost_check(pid_t pid, const char *cwd, char *why, size_t wl)
{
	/* filesystems whose directories the kernel makes, not mkdir: never made again */
	static const unsigned long pseudo[] = {
		PROC_SUPER_MAGIC,   SYSFS_MAGIC,   CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC,
		DEVPTS_SUPER_MAGIC, DEBUGFS_MAGIC, TRACEFS_MAGIC,      SECURITYFS_MAGIC,
		BPF_FS_MAGIC,	    NSFS_MAGIC};
	struct statfs sf;
	char link[64];

	snprintf(link, sizeof(link), "/proc/%d/cwd", (int)pid);
	if (statfs(link, &sf) < 0)
		return 0; /* gone: the dump says so */
	for (size_t i = 0; i < sizeof(pseudo) / sizeof(pseudo[0]); i++)
		if ((unsigned long)sf.f_type == pseudo[i]) {
			snprintf(
				why, wl,
				"the working directory %.3800s of pid %d was deleted, and it is "
				"on a filesystem the kernel fills (its type %#lx): haul cannot make "
				"it again; chdir the process to a directory that exists",
				cwd, (int)pid, (unsigned long)sf.f_type);
			return -EOPNOTSUPP;
		}
	return 0;
}

/* @path in the stub's mount namespace, as haul sees it. */
static void in_root(const struct rst_target *t, const char *path, char *out, size_t len)
{
	snprintf(out, len, "/proc/%d/root%s", (int)t->stub, path);
}

/* mkdir @at (haul's view) with the image's mode and owner. */
static int make_dir(const char *at, const Haul__Img__ProcessState *ps)
{
	if (mkdir(at, 0700) < 0)
		return -errno;
	if (chown(at, ps->cwd_uid, ps->cwd_gid) < 0 || chmod(at, ps->cwd_mode & 07777) < 0) {
		int ret = -errno;

		rmdir(at);
		return ret;
	}
	return 0;
}

/* A directory of its own under @parent (the stub's view) into @path; 0 or -errno. */
static int make_beside(const struct rst_target *t, const Haul__Img__ProcessState *ps,
		       const char *parent, char *path, size_t len)
{
	char at[PATH_MAX + 64];

	for (int i = 0; i < 16; i++) {
		int ret;

		snprintf(path, len, "%s/.haul-cwd-%06x", strcmp(parent, "/") ? parent : "",
			 ((unsigned)getpid() * 2654435761u + (unsigned)i * 40503u) & 0xffffff);
		in_root(t, path, at, sizeof(at));
		ret = make_dir(at, ps);
		if (ret != -EEXIST)
			return ret;
	}
	return -EEXIST;
}

int rst_cwd_ghost_begin(struct rst_target *t, const Haul__Img__ProcessState *ps, char *path,
			size_t len, bool *made, char *why, size_t wl)
{
	char at[PATH_MAX + 64], parent[PATH_MAX], *slash;
	int ret, first;

	*made = false;
	snprintf(path, len, "%s", ps->cwd);
	if (!ps->has_cwd_deleted || !ps->cwd_deleted)
		return 0;
	in_root(t, ps->cwd, at, sizeof(at));
	ret = first = make_dir(at, ps);
	if (!ret) {
		*made = true;
		return 0;
	}
	snprintf(parent, sizeof(parent), "%s", ps->cwd);
	slash = strrchr(parent, '/');
	if (slash && slash != parent)
		*slash = '\0';
	else
		snprintf(parent, sizeof(parent), "/");
	in_root(t, parent, at, sizeof(at));
	if (access(at, F_OK) < 0)
		snprintf(parent, sizeof(parent), "/tmp");
	ret = make_beside(t, ps, parent, path, len);
	if (ret && strcmp(parent, "/tmp")) {
		snprintf(parent, sizeof(parent), "/tmp");
		ret = make_beside(t, ps, parent, path, len);
	}
	if (ret) {
		snprintf(why, wl,
			 "cannot make the deleted working directory %.256s again, nor one in "
			 "%.256s: %s",
			 ps->cwd, parent, strerror(-ret));
		return ret;
	}
	pr_warn("pid %d: its deleted working directory %s cannot be made again at its path (%s): "
		"it is deleted as %s instead",
		(int)t->o.pid, ps->cwd, strerror(-first), path);
	*made = true;
	return 0;
}

void rst_cwd_ghost_end(struct rst_target *t, const char *path, bool made)
{
	char at[PATH_MAX + 64];

	if (!made)
		return;
	in_root(t, path, at, sizeof(at));
	if (rmdir(at) < 0)
		pr_warn("cannot remove %s, the deleted working directory of pid %d made again: %s; "
			"remove it by hand",
			path, (int)t->o.pid, strerror(errno));
}
