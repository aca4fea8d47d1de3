/*
 * fd_fifo.c - named FIFOs that no process outside the move holds: carried
 * as a pipe is, and opened again by their path.
 *
 * A FIFO another process holds is an endpoint that stays behind
 * (fd_external.c, refused without a rule).  One that only the moving
 * processes hold is theirs: nothing is left behind, and what it buffers
 * moves with them.  Match: a FIFO fd named by a path (deleted or not) that no
 * other process holds (a scan of every /proc/PID/fd but the moving
 * processes' for a link naming the same path and inode, cached for the
 * pass).  Precheck: the path still names it (renamed, mounted over:
 * refused) unless it was deleted, not in packet mode; bytes queued in a FIFO that another moving
 * process holds too are refused (each process's image would carry them).
 *
 * Dump: the FIFO by its inode (FileObject.pipe: pipe_id, size, and on the
 * first fd of each inode its queued bytes, copied with tee(2) from a new
 * read end, not consumed, as fd_pipe.c does), its mode and filesystem.
 * Restore: the path is opened once per inode read-write and non-blocking
 * in the stub (a FIFO opened so never waits for the other side), checked
 * to be a FIFO, and parked; missing there (another host), it is made with
 * mknod and the recorded mode first.  A deleted one is made again (at its
 * path, or beside it when that is taken), opened and unlinked at once.  Each fd is a new open of the parked
 * one through /proc/self/fd with its own flags (its own open file
 * description; a writer finds the parked reader, a reader the parked
 * writer: nothing blocks).  Once every fd exists the queued bytes are
 * written back through the parked fd and it is closed (fd_pipe.c's
 * finish: rst_fd_refill_parked), unless the FIFO holds them already: on
 * one filesystem (a migration on one host) it is the source's FIFO, whose
 * buffer the frozen source keeps; its bytes are compared, not doubled.
 */
#define LOG_PREFIX "dump: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

#define FIFO_HOLDER_TTL_NS (1000ULL * 1000 * 1000)

/* The last answer of fifo_holder: one scan per FIFO per pass (match, refuse, dump). */
static struct {
	pid_t self;
	uint64_t dev, ino, stamp_ns;
	pid_t other; /* 0: none */
} last;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/*
 * Whether pid @pid holds @st's FIFO as an fd: by inode, whatever path its
 * mount namespace shows (a volume mounted elsewhere, a hard link); only
 * links to a path are stat'ed (not sockets, pipes, anon inodes).
 */
static bool holds(pid_t pid, const struct stat *st)
{
	char dir[64], link[96], target[16];
	struct dirent *de;
	bool found = false;
	struct stat o;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	while (d && !found && (de = readdir(d))) {
		ssize_t n;

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%.16s", dir, de->d_name);
		n = readlink(link, target, sizeof(target));
		found = n > 0 && target[0] == '/' && !stat(link, &o) && S_ISFIFO(o.st_mode) &&
			o.st_dev == st->st_dev && o.st_ino == st->st_ino;
	}
	if (d)
		closedir(d);
	return found;
}

/* A process other than @p's holding @p's FIFO, among the moving ones (@moving) or the rest; 0: none. */
static pid_t scan_holder(const struct rst_fd_probe *p, bool moving)
{
	struct dirent *pe;
	DIR *proc = opendir("/proc");
	pid_t other = 0;

	while (proc && !other && (pe = readdir(proc))) {
		pid_t pid = atoi(pe->d_name);

		if (pid > 0 && pid != p->pid && rst_ext_is_moving(pid) == moving &&
		    holds(pid, p->st))
			other = pid;
	}
	if (proc)
		closedir(proc);
	return other;
}

/* A process holding @p's FIFO besides @p's and the moving ones, or 0 (cached for the pass). */
static pid_t fifo_holder(const struct rst_fd_probe *p)
{
	if (last.self == p->pid && last.dev == p->st->st_dev && last.ino == p->st->st_ino &&
	    now_ns() - last.stamp_ns < FIFO_HOLDER_TTL_NS)
		return last.other;
	last.other = scan_holder(p, false);
	last.self = p->pid;
	last.dev = p->st->st_dev;
	last.ino = p->st->st_ino;
	last.stamp_ns = now_ns();
	return last.other;
}

static bool fifo_match(const struct rst_fd_probe *p)
{
	return S_ISFIFO(p->st->st_mode) && p->target[0] == '/' && !fifo_holder(p);
}

/* A deleted FIFO is made again in its directory: that must be left (in the process's root). */
static int dir_left(const struct rst_fd_probe *p, char *why, size_t wl)
{
	char in_root[4200];
	const char *slash = strrchr(p->target, '/');
	struct stat st;

	snprintf(in_root, sizeof(in_root), "/proc/%d/root%.*s", (int)p->pid,
		 (int)(slash - p->target), p->target);
	if (slash == p->target || (!stat(in_root, &st) && S_ISDIR(st.st_mode)))
		return 0;
	snprintf(why, wl,
		 "fd %d is named FIFO %.256s, deleted, and its directory is gone too: haul "
		 "makes a deleted FIFO again in its directory; not supported",
		 p->fd, p->target);
	return -EOPNOTSUPP;
}

static int fifo_precheck(const struct rst_fd_probe *p, char *why, size_t wl)
{
	int ret = p->deleted ? 0 : rst_fd_path_precheck(p, why, wl), rfd, avail = 0;
	char path[64];
	pid_t other;

	if (ret)
		return ret;
	if (p->flags & O_DIRECT) {
		snprintf(why, wl, "fd %d is a packet-mode FIFO (O_DIRECT, %.256s): not carried",
			 p->fd, p->target);
		return -EOPNOTSUPP;
	}
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)p->pid, p->fd);
	rfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (rfd >= 0 && ioctl(rfd, FIONREAD, &avail) < 0)
		avail = 0;
	if (rfd >= 0)
		close(rfd);
	if ((avail > 0 || p->deleted) && (other = scan_holder(p, true))) {
		snprintf(why, wl,
			 "fd %d is named FIFO %.256s%s, which pid %d (moving with it) holds too: "
			 "%s",
			 p->fd, p->target, p->deleted ? " (deleted)" : " with bytes queued",
			 (int)other,
			 p->deleted ? "each process would make its own again; not supported"
				    : "the queued bytes of a FIFO shared by processes are not "
				      "carried; retry once they are read");
		return -EOPNOTSUPP;
	}
	return p->deleted ? dir_left(p, why, wl) : 0;
}

static int fifo_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		     Haul__Img__FileObject *const *prev, size_t nprev)
{
	return rst_pipe_file_dump(p, o, prev, nprev, HAUL__IMG__FD_KIND__FD_FIFO);
}

static int fifo_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (!f->pipe || !f->pipe->has_mode || !S_ISFIFO(f->pipe->mode) || !f->path ||
	    f->path[0] != '/') {
		snprintf(why, wl,
			 "file %u is a FIFO without its pipe part, its mode or an absolute path",
			 f->id);
		return -EBADMSG;
	}
	return 0;
}

/*
 * A deleted FIFO made again, read-write in the stub, into *@fd: at its path,
 * or beside it when that is taken (PATH.haul-STUB-INO), then unlinked.
 */
static int open_deleted(struct rst_target *t, const Haul__Img__FileObject *f, long *fd)
{
	char name[4200];
	uint64_t rpath;
	int ret = -EEXIST;

	for (int i = 0; i < 2 && ret == -EEXIST; i++) {
		if (i)
			snprintf(name, sizeof(name), "%s.haul-%d-%llu", f->path, (int)t->stub,
				 (unsigned long long)f->pipe->pipe_id);
		else
			snprintf(name, sizeof(name), "%s", f->path);
		ret = rst_put_str(t, 0, name, &rpath);
		if (!ret)
			ret = rst_rcall(t, SYS_mknodat, AT_FDCWD, rpath,
					S_IFIFO | (f->pipe->mode & 07777), 0, 0, 0, NULL);
	}
	if (ret)
		return ret; /* made nothing */
	ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, O_RDWR | O_NONBLOCK | O_CLOEXEC, 0, 0, 0,
			fd);
	if (rst_rcall(t, SYS_unlinkat, AT_FDCWD, rpath, 0, 0, 0, 0, NULL))
		pr_warn("pid %d: cannot remove %s, its deleted FIFO made again; remove it by hand",
			(int)t->o.pid, name);
	return ret;
}

/* Open FIFO @f's path read-write in the stub, made first when missing; park it in @p. */
/*
 * @f's path in the stub read-write into *@fd, made with mknod first when it
 * is missing (*@made); looked at through an O_PATH fd before it is opened,
 * so that nothing but a FIFO is ever opened (a device's open acts).
 */
static int open_named(struct rst_target *t, const Haul__Img__FileObject *f, long *fd, bool *made)
{
	char link[64];
	struct stat st;
	uint64_t rpath;
	long o = -1;
	int ret = rst_put_str(t, 0, f->path, &rpath);

	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, O_PATH | O_CLOEXEC, 0, 0, 0, &o);
	if (ret == -ENOENT) {
		pr_info("pid %d: named FIFO %s is not here: made with mode %#o", (int)t->o.pid,
			f->path, f->pipe->mode & 07777);
		*made = true;
		ret = rst_rcall(t, SYS_mknodat, AT_FDCWD, rpath, S_IFIFO | (f->pipe->mode & 07777),
				0, 0, 0, NULL);
		if (!ret)
			ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, O_PATH | O_CLOEXEC, 0, 0, 0,
					&o);
	}
	if (ret)
		return ret;
	snprintf(link, sizeof(link), "/proc/%d/fd/%ld", (int)t->stub, o);
	if (stat(link, &st) || !S_ISFIFO(st.st_mode)) {
		pr_err("pid %d: %s is not a FIFO here; it was a named FIFO the process held",
		       (int)t->o.pid, f->path);
		ret = -ENOTSUP;
	}
	snprintf(link, sizeof(link), "/proc/self/fd/%ld", o);
	if (!ret)
		ret = rst_put_str(t, 0, link, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath,
				O_RDWR | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0, 0, 0, fd);
	rst_rcall(t, SYS_close, (uint64_t)o, 0, 0, 0, 0, 0, NULL);
	return ret;
}

static int fifo_park(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
		     struct rst_tpipe *p)
{
	bool made = f->pipe->deleted;
	long fd = -1;
	int ret = f->pipe->deleted ? open_deleted(t, f, &fd) : open_named(t, f, &fd, &made);

	if (ret)
		return ret;
	/* made by haul (root, its umask): the FIFO's own owner and mode */
	if (made && f->pipe->has_uid &&
	    (rst_rcall(t, SYS_fchown, (uint64_t)fd, f->pipe->uid, f->pipe->gid, 0, 0, 0, NULL) ||
	     rst_rcall(t, SYS_fchmod, (uint64_t)fd, f->pipe->mode & 07777, 0, 0, 0, 0, NULL)))
		pr_warn("pid %d: cannot give FIFO %s its owner %u:%u and mode %#o", (int)t->o.pid,
			f->path, f->pipe->uid, f->pipe->gid, f->pipe->mode & 07777);
	if (f->pipe->has_size && f->pipe->size > 65536 &&
	    rst_rcall(t, SYS_fcntl, fd, F_SETPIPE_SZ, f->pipe->size, 0, 0, 0, NULL))
		pr_warn("pid %d: cannot grow FIFO %s to %u bytes (fs.pipe-max-size?)",
			(int)t->o.pid, f->path, f->pipe->size);
	p->r = -1;
	return rst_fd_park(t, x, (int)fd, &p->w);
}

static int fifo_restore(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
			const Haul__Img__FdEntry *e, const char *path, int *tmp, bool *shared)
{
	int flags = (int)f->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC);
	struct rst_tpipe *p = NULL;
	char self[64];
	uint64_t rpath;
	long res = -1;
	int ret;

	(void)e;
	(void)path;
	*shared = false;
	for (size_t i = 0; i < x->npipes && !p; i++)
		if (x->pipes[i].fifo && x->pipes[i].id == f->pipe->pipe_id &&
		    x->pipes[i].dev == f->pipe->dev)
			p = &x->pipes[i];
	if (!p) {
		p = &x->pipes[x->npipes];
		memset(p, 0, sizeof(*p));
		p->id = f->pipe->pipe_id;
		p->dev = f->pipe->dev;
		p->fifo = true;
		ret = fifo_park(t, x, f, p);
		if (ret)
			return ret;
		x->npipes++;
	}
	if (f->pipe->has_data)
		p->data = &f->pipe->data;
	/* its own open file description; O_NONBLOCK for the open, its own set by the setup */
	snprintf(self, sizeof(self), "/proc/self/fd/%d", p->w);
	ret = rst_put_str(t, 0, self, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, flags | O_NONBLOCK | O_CLOEXEC, 0,
				0, 0, &res);
	*tmp = (int)res;
	return ret;
}

/*
 * Every fd exists: each FIFO that already holds bytes here is the source's
 * own (one filesystem: a migration on one host, a shared mount), which the
 * frozen source still holds open, so they are its queued bytes: not written
 * twice.  Anything else there is refused.  fd_pipe.c's finish then writes
 * the rest back and closes the parked fds.
 */
static int fifo_finish(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl)
{
	for (size_t i = 0; i < x->npipes; i++) {
		struct rst_tpipe *p = &x->pipes[i];
		Haul__Img__PipeFile here = HAUL__IMG__PIPE_FILE__INIT;
		size_t want = p->data ? p->data->len : 0;
		int ret;

		if (!p->fifo)
			continue;
		ret = rst_pipe_dump_data(t->stub, p->w, &here, true);
		if (!ret && here.data.len &&
		    (here.data.len != want || memcmp(here.data.data, p->data->data, want))) {
			snprintf(why, wl,
				 "a named FIFO of pid %d holds %zu bytes here, other than the %zu "
				 "it had queued: another process writes it",
				 (int)t->o.pid, here.data.len, want);
			ret = -EEXIST;
		}
		if (!ret && here.data.len) {
			pr_info("pid %d: a named FIFO holds its %zu queued bytes here already (the "
				"source's own, on one filesystem)",
				(int)t->o.pid, want);
			p->data = NULL;
		}
		free(here.data.data);
		if (ret)
			return ret;
	}
	return 0;
}

const struct rst_fd_ops rst_fd_fifo = {
	.name = "named FIFO",
	.kind = HAUL__IMG__FD_KIND__FD_FIFO,
	.version = 4,
	.match = fifo_match,
	.precheck = fifo_precheck,
	.dump = fifo_dump,
	.validate = fifo_validate,
	.restore = fifo_restore,
	.setup = rst_fd_set_nonblock,
	.finish = fifo_finish,
};
