/*
 * fd_pipe.c - anonymous pipes no other process holds (precheck.c scans
 * every /proc/PID/fd for that).
 *
 * Dump: the pipe is named by its inode (pipe_id); its size and, on the
 * first fd of each pipe, the bytes buffered in it, copied with tee(2)
 * from a new read end opened through /proc (not consumed).  Restore: one
 * pipe2 per pipe_id, both ends parked above every fd of the image; each fd
 * gets a dup of its end, or, for a second open file description of an end
 * (opened through /proc/self/fd, as pipe01 does), a new open of it; once
 * every fd exists the buffered bytes are written back and the parked ends
 * closed.  Packet-mode (O_DIRECT) pipes are refused.
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

static bool pipe_match(const struct rst_fd_probe *p)
{
	return S_ISFIFO(p->st->st_mode) && !strncmp(p->target, "pipe:[", 6);
}

static int pipe_precheck(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	if (p->flags & O_DIRECT) {
		snprintf(why, whylen,
			 "fd %d is a packet-mode pipe (O_DIRECT, %.256s), which haul does not "
			 "carry",
			 p->fd, p->target);
		return -EOPNOTSUPP;
	}
	return 0;
}

int rst_pipe_dump_data(pid_t pid, int fd, Haul__Img__PipeFile *o, bool first)
{
	int rfd, tp[2] = {-1, -1}, avail = 0, size, ret = 0;
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	/* Opening a pipe through /proc gives a new read end of the same pipe. */
	rfd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (rfd < 0)
		return -errno;
	size = fcntl(rfd, F_GETPIPE_SZ);
	if (size > 0) {
		o->has_size = true;
		o->size = size;
	}
	if (!first)
		goto out;
	if (ioctl(rfd, FIONREAD, &avail) < 0) {
		ret = -errno;
		goto out;
	}
	o->has_data = true;
	if (avail <= 0)
		goto out;
	if (pipe2(tp, O_CLOEXEC | O_NONBLOCK) < 0) {
		ret = -errno;
		goto out;
	}
	if (size > 0)
		fcntl(tp[1], F_SETPIPE_SZ, size);
	o->data.data = malloc(avail);
	if (!o->data.data) {
		ret = -ENOMEM;
		goto out;
	}
	if (tee(rfd, tp[1], avail, SPLICE_F_NONBLOCK) != avail ||
	    read(tp[0], o->data.data, avail) != avail) {
		pr_err("cannot copy the %d bytes buffered in pipe fd %d of pid %d", avail, fd,
		       (int)pid);
		ret = -EIO;
		goto out;
	}
	o->data.len = avail;
out:
	if (tp[0] >= 0)
		close(tp[0]);
	if (tp[1] >= 0)
		close(tp[1]);
	close(rfd);
	return ret;
}

int rst_pipe_file_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		       Haul__Img__FileObject *const *prev, size_t nprev, Haul__Img__FdKind kind)
{
	Haul__Img__PipeFile *pf = malloc(sizeof(*pf));
	bool first = true;

	if (!pf)
		return -ENOMEM;
	haul__img__pipe_file__init(pf);
	o->pipe = pf;
	pf->pipe_id = p->st->st_ino;
	if (kind == HAUL__IMG__FD_KIND__FD_FIFO) {
		pf->has_mode = pf->has_dev = pf->has_deleted = pf->has_uid = pf->has_gid = true;
		pf->uid = p->st->st_uid;
		pf->gid = p->st->st_gid;
		pf->mode = p->st->st_mode;
		pf->dev = p->st->st_dev;
		pf->deleted = p->deleted;
	}
	/* the bytes go with the first FileObject of the pipe only */
	for (size_t i = 0; i < nprev; i++)
		if (prev[i]->kind == kind && prev[i]->pipe &&
		    prev[i]->pipe->pipe_id == pf->pipe_id && prev[i]->pipe->dev == pf->dev)
			first = false;
	return rst_pipe_dump_data(p->pid, p->fd, pf, first);
}

static int pipe_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		     Haul__Img__FileObject *const *prev, size_t nprev)
{
	return rst_pipe_file_dump(p, o, prev, nprev, HAUL__IMG__FD_KIND__FD_PIPE);
}

static int pipe_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (f->pipe)
		return 0;
	snprintf(why, wl, "file %u is a pipe without its pipe part", f->id);
	return -EBADMSG;
}

/*
 * The end of pipe @p that @f names.  The first open file description of
 * each end is the parked one; another (opened through /proc/self/fd, as
 * pipe01 does, with its own O_NONBLOCK) is a new open of that end: *@shared
 * false, *@src a new fd.
 */
static int pipe_ofd(struct rst_target *t, struct rst_tpipe *p, const Haul__Img__FileObject *f,
		    int *src, bool *shared)
{
	bool wr = (f->flags & O_ACCMODE) == O_WRONLY;
	uint32_t *owner = wr ? &p->w_ofd : &p->r_ofd;
	char path[64];
	uint64_t rpath;
	long res;
	int ret;

	if (!*owner || *owner == f->id) {
		*owner = f->id;
		*src = wr ? p->w : p->r;
		return 0;
	}
	snprintf(path, sizeof(path), "/proc/self/fd/%d", wr ? p->w : p->r);
	ret = rst_put_str(t, 0, path, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath,
				(wr ? O_WRONLY : O_RDONLY) | O_NONBLOCK | O_CLOEXEC, 0, 0, 0, &res);
	if (ret)
		return ret;
	*shared = false;
	*src = (int)res;
	return 0;
}

static int pipe_restore(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
			const Haul__Img__FdEntry *e, const char *path, int *src, bool *shared)
{
	const Haul__Img__PipeFile *pf = f->pipe;
	struct rst_tpipe *p;
	bool made;
	int ret;

	(void)path;
	*shared = true;
	ret = rst_fd_parked_pair(t, x, pf->pipe_id, false, 0, &p, &made);
	if (ret)
		return ret;
	if (made && pf->has_size && pf->size > 65536 &&
	    rst_rcall(t, SYS_fcntl, p->w, F_SETPIPE_SZ, pf->size, 0, 0, 0, NULL))
		pr_warn("pid %d: cannot grow pipe of fd %d to %u bytes (fs.pipe-max-size?)",
			(int)t->o.pid, e->fd, pf->size);
	if (pf->has_data)
		p->data = &pf->data;
	return pipe_ofd(t, p, f, src, shared);
}

int rst_fd_set_nonblock(struct rst_target *t, const Haul__Img__FileObject *f,
			const Haul__Img__FdEntry *e)
{
	return rst_rcall(t, SYS_fcntl, e->fd, F_SETFL, f->flags & O_NONBLOCK, 0, 0, 0, NULL);
}

/* Every fd exists: the bytes go back in, and the parked ends close. */
static int pipe_finish(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl)
{
	return rst_fd_refill_parked(t, x, false, why, wl);
}

const struct rst_fd_ops rst_fd_pipe = {
	.name = "pipe",
	.kind = HAUL__IMG__FD_KIND__FD_PIPE,
	.version = 4,
	.match = pipe_match,
	.precheck = pipe_precheck,
	.dump = pipe_dump,
	.validate = pipe_validate,
	.restore = pipe_restore,
	.setup = rst_fd_set_nonblock,
	.finish = pipe_finish,
};
