/*
 * cwd_ghost.c - a working directory that was deleted while the process
 * was in it (a release directory removed under a server that still runs
 * there, zdtm's cwd01).
 *
 * The dump keeps its path (without " (deleted)"), mode and owner
 * (ProcessState 65-68).  The restore chdirs by path, so haul makes a
 * directory at that path in the stub's root (its parent opened with
 * openat2 RESOLVE_IN_ROOT under /proc/STUB/root: no symlink of a
 * container's filesystem leads haul outside it), with that mode and owner
 * set on the new directory's own fd, the stub enters it (the chdir of the
 * task batch, target_resume.c), and haul removes it again: the process is
 * in a deleted directory, and /proc/PID/cwd reads as it did.  When something
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
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/*
 * Directory @dir (absolute, in the stub's root) as an O_PATH fd, every
 * symlink and ".." on the way resolved inside that root (RESOLVE_IN_ROOT):
 * an image's path never leads haul, which is root here, outside it.
 */
int rst_dir_in_root(const struct rst_target *t, const char *dir)
{
	struct open_how how = {.flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
			       .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
	char root[64];
	int rfd, fd;

	snprintf(root, sizeof(root), "/proc/%d/root", (int)t->stub);
	rfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (rfd < 0)
		return -errno;
	/* EAGAIN: a rename or mount raced a ".." walk of a symlink on the way */
	for (int i = 0; i < 8; i++) {
		fd = (int)syscall(SYS_openat2, rfd, dir[1] ? dir + 1 : ".", &how, sizeof(how));
		if (fd >= 0 || errno != EAGAIN)
			break;
	}
	if (fd < 0)
		fd = -errno;
	close(rfd);
	return fd;
}

/* mkdir @name in @pfd with the image's mode and owner (set on the new directory itself). */
static int make_at(int pfd, const char *name, const Haul__Img__ProcessState *ps)
{
	int d, ret = 0;

	if (mkdirat(pfd, name, 0700) < 0)
		return -errno;
	d = openat(pfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (d < 0 || fchown(d, ps->cwd_uid, ps->cwd_gid) < 0 || fchmod(d, ps->cwd_mode & 07777) < 0)
		ret = -errno;
	if (d >= 0)
		close(d);
	if (ret)
		unlinkat(pfd, name, AT_REMOVEDIR);
	return ret;
}

/* A directory of its own in @dir: g->pfd, g->name and g->path set; 0 or -errno. */
static int make_beside(const struct rst_target *t, const Haul__Img__ProcessState *ps,
		       const char *dir, struct rst_cwd_ghost *g)
{
	int pfd = rst_dir_in_root(t, dir), ret = -EEXIST;

	if (pfd < 0)
		return pfd;
	for (unsigned i = 0; i < 16 && ret == -EEXIST; i++) {
		snprintf(g->name, sizeof(g->name), ".haul-cwd-%06x",
			 ((unsigned)getpid() * 2654435761u + i * 40503u) & 0xffffff);
		ret = make_at(pfd, g->name, ps);
	}
	if (ret) {
		close(pfd);
		return ret;
	}
	g->pfd = pfd;
	snprintf(g->path, sizeof(g->path), "%s/%s", strcmp(dir, "/") ? dir : "", g->name);
	return 0;
}

/* Try the image's own path: its parent and last component. */
static int make_there(const struct rst_target *t, const Haul__Img__ProcessState *ps, char *parent,
		      size_t len, struct rst_cwd_ghost *g)
{
	char *slash;
	int pfd, ret;

	snprintf(parent, len, "%s", ps->cwd);
	slash = strrchr(parent, '/');
	if (!slash || strlen(slash + 1) >= sizeof(g->name))
		return -ENAMETOOLONG;
	memcpy(g->name, slash + 1, strlen(slash + 1) + 1);
	if (slash != parent)
		*slash = '\0';
	else
		snprintf(parent, len, "/");
	pfd = rst_dir_in_root(t, parent);
	if (pfd < 0)
		return pfd;
	ret = g->name[0] ? make_at(pfd, g->name, ps) : -EEXIST;
	if (ret) {
		close(pfd);
		return ret;
	}
	g->pfd = pfd;
	snprintf(g->path, sizeof(g->path), "%s", ps->cwd);
	return 0;
}

int rst_cwd_ghost_begin(struct rst_target *t, const Haul__Img__ProcessState *ps,
			struct rst_cwd_ghost *g, char *why, size_t wl)
{
	char parent[PATH_MAX];
	int ret, first;

	g->pfd = -1;
	snprintf(g->path, sizeof(g->path), "%s", ps->cwd);
	if (!ps->has_cwd_deleted || !ps->cwd_deleted)
		return 0;
	ret = first = make_there(t, ps, parent, sizeof(parent), g);
	if (!ret)
		return 0;
	/* taken again, or its parent gone or closed to new directories: a name of its own */
	ret = make_beside(t, ps, parent, g);
	if (ret)
		ret = make_beside(t, ps, "/tmp", g);
	if (ret) {
		snprintf(why, wl,
			 "cannot make the deleted working directory %.256s again, nor one beside "
			 "it or in /tmp: %s",
			 ps->cwd, strerror(-ret));
		return ret;
	}
	pr_warn("pid %d: its deleted working directory %s cannot be made again at its path (%s): "
		"it is deleted as %s instead",
		(int)t->o.pid, ps->cwd, strerror(-first), g->path);
	return 0;
}

void rst_cwd_ghost_end(struct rst_target *t, struct rst_cwd_ghost *g)
{
	if (g->pfd < 0)
		return;
	if (unlinkat(g->pfd, g->name, AT_REMOVEDIR) < 0)
		pr_warn("cannot remove %s, the deleted working directory of pid %d made again: %s; "
			"remove it by hand",
			g->path, (int)t->o.pid, strerror(errno));
	close(g->pfd);
	g->pfd = -1;
}
