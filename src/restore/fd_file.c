/*
 * fd_file.c - the fd kinds reopened by path: regular files, directories,
 * mem-class character devices (/dev/null, zero, full, random, urandom)
 * and O_PATH fds.
 *
 * The image carries the path, the open flags and the offset (FileObject)
 * and the file's dev, ino, size, mode and rdev (its RegFile); the restore
 * opens the path again (O_CREAT, O_EXCL, O_TRUNC and O_NOCTTY dropped: the
 * file exists and keeps its content).  So the precheck refuses a file
 * whose path no longer names it (renamed, deleted, mounted over); a
 * deleted regular file is fd_ghost.c's kind, carried by content.  A file
 * or directory on /proc is one of these too, after fd_procfs.c's rules.
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include "restore/fd_int.h"
#include "restore/target_int.h"

/* The RegFile of every kind here: the file's identity, size and mode. */
static int reg_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		    Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__RegFile *r = malloc(sizeof(*r));

	(void)prev;
	(void)nprev;
	if (!r)
		return -ENOMEM;
	haul__img__reg_file__init(r);
	r->dev = p->st->st_dev;
	r->ino = p->st->st_ino;
	r->has_size = r->has_mode = true;
	r->size = p->st->st_size;
	r->mode = p->st->st_mode;
	o->reg = r;
	return 0;
}

/* Reopened by path: a RegFile and a path to open. */
static int reg_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (!f->reg) {
		snprintf(why, wl, "file %u is of a kind reopened by path but has no reg part",
			 f->id);
		return -EBADMSG;
	}
	if (!f->path || !f->path[0]) {
		snprintf(why, wl, "file %u (reopened by path) has no path", f->id);
		return -EBADMSG;
	}
	return 0;
}

/*
 * Whether the path still names the file the fd has open (it is reopened by
 * that path).  The path is the process's: resolved in its root
 * (/proc/PID/root), which is ours unless it is chrooted or in a container's
 * mount namespace.  A character device counts by its device number: the
 * /dev/null a container's engine handed it (the host's) and the container's
 * own /dev/null node are the same device.
 */
int rst_fd_path_precheck(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	char inroot[PATH_MAX + 32];
	struct stat now;
	bool same;

	snprintf(inroot, sizeof(inroot), "/proc/%d/root%s", (int)p->pid, p->target);
	same = stat(inroot, &now) == 0;
	if (same && S_ISCHR(p->st->st_mode))
		same = S_ISCHR(now.st_mode) && now.st_rdev == p->st->st_rdev;
	else if (same)
		same = now.st_dev == p->st->st_dev && now.st_ino == p->st->st_ino;
	if (!same) {
		snprintf(why, whylen,
			 "fd %d names %.256s, but that path now names another file or none "
			 "(renamed or mounted over; haul reopens files by path)",
			 p->fd, p->target);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* @x NULL: open @path as it is (fd_procfs.c's reopen of a thread's file). */
int rst_fd_open_path(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e, const char *path, int *tmp, bool *shared)
{
	int flags = (int)f->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC);
	char stand_in[PATH_MAX];
	uint64_t rpath;
	long res = -1;
	int ret;

	(void)e;
	*shared = false;
	/* a file of a thread not made yet: its main thread's until then (fd_procfs.c) */
	if (x && rst_procfs_stand_in(x->ps, path, stand_in, sizeof(stand_in)))
		path = stand_in;
	/* An O_TMPFILE file keeps O_TMPFILE (with O_DIRECTORY) in its flags: reopen it. */
	if ((flags & O_TMPFILE) == O_TMPFILE)
		flags &= ~O_TMPFILE;

	ret = rst_put_str(t, 0, path, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, flags | O_CLOEXEC, 0, 0, 0, &res);
	*tmp = (int)res;
	return ret;
}

int rst_fd_seek(struct rst_target *t, const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e)
{
	return rst_rcall(t, SYS_lseek, e->fd, f->pos, SEEK_SET, 0, 0, 0, NULL);
}

/* A regular file's offset; one on /proc is set last (rst_res_procfs). */
static int reg_setup(struct rst_target *t, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e)
{
	return rst_procfs_path(f->path) ? 0 : rst_fd_seek(t, f, e);
}

/* ---- O_PATH: it only names a file, reopened by its path with O_PATH ---- */

static bool opath_match(const struct rst_fd_probe *p)
{
	return p->flags & O_PATH;
}

static int opath_refuse(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	int ret = rst_procfs_refuse(p, why, whylen);

	if (ret)
		return ret;
	if (p->target[0] != '/' || p->deleted) {
		snprintf(why, whylen,
			 "fd %d is an O_PATH fd on %s, which has no path to reopen it by", p->fd,
			 p->target);
		return -EOPNOTSUPP;
	}
	return 0;
}

const struct rst_fd_ops rst_fd_path = {
	.name = "O_PATH",
	.kind = HAUL__IMG__FD_KIND__FD_PATH,
	.version = 4,
	.match = opath_match,
	.refuse = opath_refuse,
	.precheck = rst_fd_path_precheck,
	.dump = reg_dump,
	.validate = reg_validate,
	.restore = rst_fd_open_path,
};

/* ---- regular files ------------------------------------------------------ */

static bool reg_match(const struct rst_fd_probe *p)
{
	return S_ISREG(p->st->st_mode) && !p->deleted && p->st->st_nlink != 0;
}

/* Also the first check of a deleted file (fd_ghost.c); memfds are fd_memfd.c's. */
static int reg_refuse(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	int ret = rst_procfs_refuse(p, why, whylen);

	if (ret)
		return ret;
	if (p->target[0] != '/') {
		snprintf(why, whylen, "fd %d is %s, not a file haul can reopen", p->fd, p->target);
		return -EOPNOTSUPP;
	}
	return 0;
}

const struct rst_fd_ops rst_fd_reg = {
	.name = "regular file",
	.kind = HAUL__IMG__FD_KIND__FD_REG,
	.version = 4,
	.match = reg_match,
	.refuse = reg_refuse,
	.precheck = rst_fd_path_precheck,
	.dump = reg_dump,
	.validate = reg_validate,
	.restore = rst_fd_open_path,
	.setup = reg_setup,
};

/* ---- directories -------------------------------------------------------- */

static bool dir_match(const struct rst_fd_probe *p)
{
	return S_ISDIR(p->st->st_mode) && p->target[0] == '/' && !p->deleted;
}

const struct rst_fd_ops rst_fd_dir = {
	.name = "directory",
	.kind = HAUL__IMG__FD_KIND__FD_DIR,
	.version = 4,
	.match = dir_match,
	.refuse = rst_procfs_refuse, /* /proc/PID and its task directories */
	.precheck = rst_fd_path_precheck,
	.dump = reg_dump,
	.validate = reg_validate,
	.restore = rst_fd_open_path,
};

/* ---- mem-class character devices ---------------------------------------- */

/* Major 1 is the mem class: /dev/null, zero, full, random, urandom. */
static bool chr_match(const struct rst_fd_probe *p)
{
	return S_ISCHR(p->st->st_mode) && major(p->st->st_rdev) == 1 && p->target[0] == '/' &&
	       !p->deleted;
}

static int chr_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		    Haul__Img__FileObject *const *prev, size_t nprev)
{
	int ret = reg_dump(p, o, prev, nprev);

	if (ret)
		return ret;
	o->reg->has_rdev = true;
	o->reg->rdev = p->st->st_rdev;
	return 0;
}

const struct rst_fd_ops rst_fd_chr = {
	.name = "character device",
	.kind = HAUL__IMG__FD_KIND__FD_CHR,
	.version = 4,
	.match = chr_match,
	.precheck = rst_fd_path_precheck,
	.dump = chr_dump,
	.validate = reg_validate,
	.restore = rst_fd_open_path,
};
