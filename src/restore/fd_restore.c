/*
 * fd_restore.c - the fds of a restored process, rebuilt in the stub by
 * injected calls (target.c runs it during resume, after the memory).
 *
 * Fds are made in image order, each at its own number: a file is opened by
 * path (a deleted one recreated first, fd_ghost.c), the anonymous kinds are
 * created again with their state (eventfd count, signalfd mask, timerfd
 * time and ticks); pipes and socketpairs are made once, their ends parked
 * above every fd number of the image and dup'ed to each fd that names
 * them.  An fd whose file_id names an open file description restored
 * before it is a dup3 of that fd (same offset, flags and locks).  Once all
 * fds exist, finish_fds refills pipes and socketpairs, re-arms epoll
 * instances and takes locks and leases again (closing any fd of a file
 * drops POSIX locks, so they come last).
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

/* A pipe being rebuilt: its two ends parked above every fd of the image. */
struct tpipe {
	uint64_t id;
	int r, w; /* pipe: read and write end; socketpair: the lower and the higher inode's end */
	uint32_t r_ofd, w_ofd; /* pipe: the file_id that has the parked end's OFD, 0: none yet */
	bool sock;
	const ProtobufCBinaryData *data;  /* pipe: its bytes; pair: what r's end had to read */
	const ProtobufCBinaryData *data1; /* pair: what w's end had to read */
};

/* A deleted file recreated under a temporary name until every fd has opened it. */
struct tghost {
	uint64_t dev, ino;
	char *path;
};

struct fd_ctx {
	struct tpipe *pipes;
	size_t npipes;
	int park; /* next free fd number above the image's */
	struct tghost *ghosts;
	size_t nghosts;
	const Haul__Img__ProcessState *ps;
	size_t cur; /* index in ps->fds of the fd being restored */
};

/* Move remote fd @fd to the parking area (above every fd the image names). */
static int park_fd(struct rst_target *t, struct fd_ctx *x, int fd, int *out)
{
	long res;
	int ret = rst_rcall(t, SYS_fcntl, fd, F_DUPFD_CLOEXEC, x->park, 0, 0, 0, &res);

	rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
	if (ret)
		return ret;
	*out = (int)res;
	x->park = (int)res + 1;
	return 0;
}

/*
 * The end of pipe @p that @f names.  The first open file description of
 * each end is the parked one; another (opened through /proc/self/fd, as
 * pipe01 does, with its own O_NONBLOCK) is a new open of that end: *@shared
 * false, *@src a new fd.
 */
static int pipe_ofd(struct rst_target *t, struct tpipe *p, const Haul__Img__Fd *f, int *src,
		    bool *shared)
{
	bool wr = (f->flags & O_ACCMODE) == O_WRONLY;
	uint32_t *owner = wr ? &p->w_ofd : &p->r_ofd;
	char path[64];
	uint64_t rpath;
	long res;
	int ret;

	if (!*owner || *owner == f->file_id) {
		*owner = f->file_id;
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

static int pipe_end(struct rst_target *t, struct fd_ctx *x, const Haul__Img__Fd *f, int *src,
		    bool *shared)
{
	bool sock = f->kind == HAUL__IMG__FD_KIND__FD_UNIX_PAIR;
	/* A pair is named by its lower inode; its end with that inode is fds[0]. */
	uint64_t id = sock ? (f->ino < f->sock_peer ? f->ino : f->sock_peer) : f->pipe_id;
	struct tpipe *p = NULL;
	int32_t fds[2];
	int ret;

	for (size_t i = 0; i < x->npipes; i++)
		if (x->pipes[i].id == id && x->pipes[i].sock == sock)
			p = &x->pipes[i];
	if (sock && !p) {
		p = &x->pipes[x->npipes];
		memset(p, 0, sizeof(*p));
		p->id = id;
		p->sock = true;
		ret = rst_rcall(t, SYS_socketpair, AF_UNIX, f->sock_type | SOCK_CLOEXEC, 0,
				rst_scratch(t), 0, 0, NULL);
		if (!ret)
			ret = rst_peek(t, rst_scratch(t), fds, sizeof(fds));
		if (!ret)
			ret = park_fd(t, x, fds[0], &p->r);
		if (!ret)
			ret = park_fd(t, x, fds[1], &p->w);
		if (ret)
			return ret;
		x->npipes++;
	}
	if (sock) {
		bool low = f->ino == id;

		if (f->has_sock_data) {
			if (low)
				p->data = &f->sock_data;
			else
				p->data1 = &f->sock_data;
		}
		*src = low ? p->r : p->w;
		return 0;
	}
	if (!p) {
		p = &x->pipes[x->npipes];
		memset(p, 0, sizeof(*p));
		p->id = f->pipe_id;
		ret = rst_rcall(t, SYS_pipe2, rst_scratch(t), O_CLOEXEC, 0, 0, 0, 0, NULL);
		if (!ret)
			ret = rst_peek(t, rst_scratch(t), fds, sizeof(fds));
		if (!ret)
			ret = park_fd(t, x, fds[0], &p->r);
		if (!ret)
			ret = park_fd(t, x, fds[1], &p->w);
		if (ret)
			return ret;
		x->npipes++;
		if (f->has_pipe_size && f->pipe_size > 65536 &&
		    rst_rcall(t, SYS_fcntl, p->w, F_SETPIPE_SZ, f->pipe_size, 0, 0, 0, NULL))
			pr_warn("pid %d: cannot grow pipe of fd %d to %u bytes (fs.pipe-max-size?)",
				(int)t->o.pid, f->fd, f->pipe_size);
	}
	if (f->has_pipe_data)
		p->data = &f->pipe_data;
	return pipe_ofd(t, p, f, src, shared);
}

/* Create the file behind @f in the stub; *@tmp is a new fd, or a parked pipe end (@shared). */
static int open_fd(struct rst_target *t, struct fd_ctx *x, const Haul__Img__Fd *f, char *path,
		   int *tmp, bool *shared)
{
	int nb = (int)f->flags & O_NONBLOCK;
	uint64_t rpath;
	long res = -1;
	int ret;

	*shared = false;
	switch (f->kind) {
	case HAUL__IMG__FD_KIND__FD_EVENTFD:
		ret = rst_rcall(t, SYS_eventfd2, f->efd_count, nb | (f->efd_semaphore ? 1 : 0), 0,
				0, 0, 0, &res);
		break;
	case HAUL__IMG__FD_KIND__FD_SIGNALFD:
		ret = rst_poke(t, rst_scratch(t), &f->sigmask, sizeof(f->sigmask));
		if (!ret)
			ret = rst_rcall(t, SYS_signalfd4, (uint64_t)-1, rst_scratch(t), 8, nb, 0, 0,
					&res);
		break;
	case HAUL__IMG__FD_KIND__FD_TIMERFD:
		ret = rst_rcall(t, SYS_timerfd_create, f->clockid, nb, 0, 0, 0, 0, &res);
		/*
		 * What was left of it, relative.  A periodic timer that expired
		 * with its ticks unread shows 0 left (it is re-armed by the read):
		 * it goes on one period from now, its ticks restored below.
		 */
		if (!ret && (f->it_value_ns || f->it_interval_ns)) {
			uint64_t left = f->it_value_ns ? f->it_value_ns : f->it_interval_ns;
			uint64_t its[4] = {f->it_interval_ns / 1000000000ULL,
					   f->it_interval_ns % 1000000000ULL, left / 1000000000ULL,
					   left % 1000000000ULL};

			ret = rst_poke(t, rst_scratch(t), its, sizeof(its));
			if (!ret)
				ret = rst_rcall(t, SYS_timerfd_settime, res, 0, rst_scratch(t), 0,
						0, 0, NULL);
		}
		if (!ret && f->ticks) {
			ret = rst_poke(t, rst_scratch(t), &f->ticks, sizeof(f->ticks));
			/* TFD_IOC_SET_TICKS: expirations that were not read yet. */
			if (!ret)
				ret = rst_rcall(t, SYS_ioctl, res, 0x40085400, rst_scratch(t), 0, 0,
						0, NULL);
		}
		break;
	case HAUL__IMG__FD_KIND__FD_EPOLL:
		ret = rst_rcall(t, SYS_epoll_create1, 0, 0, 0, 0, 0, 0, &res);
		break;
	case HAUL__IMG__FD_KIND__FD_PIPE:
	case HAUL__IMG__FD_KIND__FD_UNIX_PAIR:
		*shared = true;
		return pipe_end(t, x, f, tmp, shared);
	default: {
		int flags = (int)f->flags & ~(O_CREAT | O_EXCL | O_TRUNC | O_NOCTTY | O_CLOEXEC);

		/* An O_TMPFILE file keeps O_TMPFILE (with O_DIRECTORY) in its flags: reopen it. */
		if ((flags & O_TMPFILE) == O_TMPFILE)
			flags &= ~O_TMPFILE;

		ret = rst_put_str(t, 0, path, &rpath);
		if (!ret)
			ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, flags | O_CLOEXEC, 0, 0, 0,
					&res);
		break;
	}
	}
	*tmp = (int)res;
	return ret;
}

/*
 * The name under which deleted file @f can be opened now: recreated on its
 * first fd (fd_ghost.c), the same name for every later fd of that inode.
 */
static int ghost_path(struct fd_ctx *x, const Haul__Img__Fd *f, char *path, size_t plen)
{
	struct tghost *g;
	int ret;

	for (size_t i = 0; i < x->nghosts; i++)
		if (x->ghosts[i].dev == f->dev && x->ghosts[i].ino == f->ino) {
			snprintf(path, plen, "%s", x->ghosts[i].path);
			return 0;
		}
	if (!f->has_content)
		return -EBADMSG; /* the image names an inode it carries nowhere */
	ret = rst_ghost_create(f, path, plen);
	if (ret)
		return ret;
	g = &x->ghosts[x->nghosts];
	g->dev = f->dev;
	g->ino = f->ino;
	g->path = strdup(path);
	if (!g->path) {
		unlink(path);
		return -ENOMEM;
	}
	x->nghosts++;
	return 0;
}

/* The fd restored before @f that shares its open file description, or NULL. */
static const Haul__Img__Fd *ofd_leader(const struct fd_ctx *x, const Haul__Img__Fd *f)
{
	if (!f->has_file_id)
		return NULL;
	for (size_t i = 0; i < x->cur; i++)
		if (x->ps->fds[i]->has_file_id && x->ps->fds[i]->file_id == f->file_id)
			return x->ps->fds[i];
	return NULL;
}

static int restore_fd(struct rst_target *t, struct fd_ctx *x, const Haul__Img__Fd *f, char *why,
		      size_t wl)
{
	const Haul__Img__Fd *lead = ofd_leader(x, f);
	char path[4200];
	bool shared;
	int ret, tmp = -1;

	if (lead) {
		/* One open file description: the same offset, flags and locks. */
		ret = rst_rcall(t, SYS_dup3, lead->fd, f->fd, f->cloexec ? O_CLOEXEC : 0, 0, 0, 0,
				NULL);
		if (ret)
			snprintf(why, wl, "cannot make fd %d share the open file of fd %d: %s",
				 f->fd, lead->fd, strerror(-ret));
		return ret;
	}
	snprintf(path, sizeof(path), "%s", f->path);
	if (f->kind == HAUL__IMG__FD_KIND__FD_DELETED) {
		ret = ghost_path(x, f, path, sizeof(path));
		if (ret) {
			snprintf(why, wl, "cannot recreate deleted file %.256s of fd %d: %s",
				 f->path, f->fd, strerror(-ret));
			return ret;
		}
	}
	ret = open_fd(t, x, f, path, &tmp, &shared);
	if (ret) {
		snprintf(why, wl, "cannot recreate fd %d (%.256s): %s", f->fd, path,
			 strerror(-ret));
		return ret;
	}
	if (tmp != f->fd) {
		ret = rst_rcall(t, SYS_dup3, tmp, f->fd, f->cloexec ? O_CLOEXEC : 0, 0, 0, 0, NULL);
		if (!shared)
			rst_rcall(t, SYS_close, tmp, 0, 0, 0, 0, 0, NULL);
	} else {
		/* Created at its own number (eventfd, timerfd, epoll...): no dup3 set it. */
		ret = rst_rcall(t, SYS_fcntl, tmp, F_SETFD, f->cloexec ? FD_CLOEXEC : 0, 0, 0, 0,
				NULL);
	}
	if (!ret &&
	    (f->kind == HAUL__IMG__FD_KIND__FD_PIPE || f->kind == HAUL__IMG__FD_KIND__FD_UNIX_PAIR))
		ret = rst_rcall(t, SYS_fcntl, f->fd, F_SETFL, f->flags & O_NONBLOCK, 0, 0, 0, NULL);
	if (!ret &&
	    (f->kind == HAUL__IMG__FD_KIND__FD_REG || f->kind == HAUL__IMG__FD_KIND__FD_DELETED))
		ret = rst_rcall(t, SYS_lseek, f->fd, f->pos, SEEK_SET, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl, "cannot set up fd %d (%.256s): %s", f->fd, path, strerror(-ret));
	return ret;
}

/* O_ASYNC with its owner and signal (after a lease, which sets O_ASYNC itself). */
static int restore_async(struct rst_target *t, const Haul__Img__Fd *f, char *why, size_t wl)
{
	int32_t own[2] = {f->owner_type, f->owner_pid};
	int fl = (int)f->flags & (O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME);
	int ret;

	ret = rst_poke(t, rst_scratch(t), own, sizeof(own));
	if (!ret)
		ret = rst_rcall(t, SYS_fcntl, f->fd, F_SETOWN_EX, rst_scratch(t), 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_fcntl, f->fd, F_SETSIG, f->async_sig, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_fcntl, f->fd, F_SETFL, fl, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl, "cannot set O_ASYNC and its owner on fd %d (%.256s): %s", f->fd,
			 f->path, strerror(-ret));
	return ret;
}

/*
 * Take the locks and leases of every open file description again, once
 * all fds exist: closing any fd of a file drops the process's POSIX locks
 * on it, and restoring fds closes temporaries.
 */
static int restore_locks(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			 size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i < ps->n_fds && !ret; i++) {
		const Haul__Img__Fd *f = ps->fds[i];

		for (size_t k = 0; k < f->n_locks && !ret; k++) {
			struct rst_lock_call c;

			ret = rst_lock_call(f->locks[k], f->fd, &c);
			if (!ret && c.buf_arg >= 0) {
				ret = rst_poke(t, rst_scratch(t), c.buf, c.buflen);
				c.args[c.buf_arg] = rst_scratch(t);
			}
			if (!ret)
				ret = rst_rcall(t, c.nr, c.args[0], c.args[1], c.args[2], c.args[3],
						c.args[4], c.args[5], NULL);
			if (ret)
				snprintf(why, wl,
					 "cannot take the %s of fd %d (%.256s) again: %s%s",
					 rst_lock_name(f->locks[k]), f->fd, f->path, strerror(-ret),
					 ret == -EAGAIN ? " (another process holds a conflicting "
							  "lock on the file now)"
							: "");
		}
		if (!ret && f->has_owner_pid)
			ret = restore_async(t, f, why, wl);
	}
	return ret;
}

/* Write @d into remote fd @fd, through the scratch area. */
static int refill(struct rst_target *t, int fd, const ProtobufCBinaryData *d)
{
	int ret = 0;

	for (size_t off = 0; d && off < d->len && !ret;) {
		size_t n = d->len - off;
		long res;

		if (n > TRAMP_SCRATCH)
			n = TRAMP_SCRATCH;
		ret = rst_poke(t, rst_scratch(t), d->data + off, n);
		if (!ret)
			ret = rst_rcall(t, SYS_write, fd, rst_scratch(t), n, 0, 0, 0, &res);
		if (!ret && res <= 0)
			ret = -EIO;
		if (!ret)
			off += res;
	}
	return ret;
}

/* Every fd exists: fill the pipes, close their parked ends, re-arm the epoll instances. */
static int finish_fds(struct rst_target *t, struct fd_ctx *x, const Haul__Img__ProcessState *ps,
		      char *why, size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i < x->npipes && !ret; i++) {
		const struct tpipe *p = &x->pipes[i];

		/* What an end had to read is written into the other end (a pipe's into w). */
		ret = refill(t, p->w, p->data);
		if (!ret && p->sock)
			ret = refill(t, p->r, p->data1);
		if (ret)
			snprintf(why, wl, "cannot refill a %s with its queued bytes: %s",
				 p->sock ? "socketpair" : "pipe", strerror(-ret));
		rst_rcall(t, SYS_close, p->r, 0, 0, 0, 0, 0, NULL);
		rst_rcall(t, SYS_close, p->w, 0, 0, 0, 0, 0, NULL);
	}
	for (size_t i = 0; i < ps->n_fds && !ret; i++) {
		const Haul__Img__Fd *f = ps->fds[i];

		x->cur = i;
		if (ofd_leader(x, f))
			continue; /* a dup of an epoll fd names the same instance */
		for (size_t k = 0; k < f->n_epoll && !ret; k++) {
			uint8_t ev[12]; /* struct epoll_event is packed on x86_64 */

			memcpy(ev, &f->epoll[k]->events, 4);
			memcpy(ev + 4, &f->epoll[k]->data, 8);
			ret = rst_poke(t, rst_scratch(t), ev, sizeof(ev));
			if (!ret)
				ret = rst_rcall(t, SYS_epoll_ctl, f->fd, 1 /* EPOLL_CTL_ADD */,
						f->epoll[k]->tfd, rst_scratch(t), 0, 0, NULL);
			if (ret)
				snprintf(why, wl, "cannot make epoll fd %d watch fd %d again: %s",
					 f->fd, f->epoll[k]->tfd, strerror(-ret));
		}
	}
	if (!ret)
		ret = restore_locks(t, ps, why, wl);
	return ret;
}

int rst_restore_fds(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	struct fd_ctx x = {0};
	int ret;

	x.ps = ps;
	x.pipes = calloc(ps->n_fds ? ps->n_fds : 1, sizeof(*x.pipes));
	x.ghosts = calloc(ps->n_fds ? ps->n_fds : 1, sizeof(*x.ghosts));
	if (!x.pipes || !x.ghosts) {
		free(x.pipes);
		free(x.ghosts);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ps->n_fds; i++)
		if (ps->fds[i]->fd >= x.park)
			x.park = ps->fds[i]->fd + 1;
	/* Its fd limit first: fd numbers above ours must be possible (all rlimits follow later). */
	for (size_t i = 0; i < ps->n_rlimits; i++)
		if (ps->rlimits[i]->resource == RLIMIT_NOFILE) {
			struct rlimit rl = {ps->rlimits[i]->cur, ps->rlimits[i]->max};

			rlim_t need = (rlim_t)x.park + 64;

			if (rl.rlim_cur < need)
				rl.rlim_cur = need < rl.rlim_max ? need : rl.rlim_max;
			prlimit(t->stub, RLIMIT_NOFILE, &rl, NULL);
		}
	/* The stub's own fds (/dev/null on 0-2) go; the process's come back. */
	ret = rst_rcall(t, SYS_close_range, 0, ~0U, 0, 0, 0, 0, NULL);
	for (size_t i = 0; !ret && i < ps->n_fds; i++) {
		x.cur = i;
		ret = restore_fd(t, &x, ps->fds[i], why, wl);
	}
	/* Every fd of a deleted file has it open: it is deleted again. */
	for (size_t i = 0; i < x.nghosts; i++) {
		unlink(x.ghosts[i].path);
		free(x.ghosts[i].path);
	}
	free(x.ghosts);
	if (!ret)
		ret = finish_fds(t, &x, ps, why, wl);
	free(x.pipes);
	return ret;
}
