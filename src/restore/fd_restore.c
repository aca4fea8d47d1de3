/*
 * fd_restore.c - the fds of a restored process, rebuilt in the stub by
 * injected calls (target.c runs it during resume, after the memory).
 *
 * Fds (FdEntry) are made in image order, each at its own number.  The
 * first fd naming a FileObject creates it: a file is opened by path (a
 * deleted one recreated first, fd_ghost.c), the anonymous kinds are
 * created again with their state (eventfd count, signalfd mask, timerfd
 * time and ticks); pipes and socketpairs are made once, their ends parked
 * above every fd number of the image and dup'ed to each fd that names
 * them.  A later fd naming the same FileObject is a dup3 of the first
 * (same offset, flags and locks).  Once all fds exist, finish_fds refills
 * pipes and socketpairs, re-arms epoll instances and takes locks and
 * leases again (closing any fd of a file drops POSIX locks, so they come
 * last).  Every FdEntry names a FileObject of the image (fd_validate.c).
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

/* Move remote fd @fd to the parking area (above every fd the image names). */
int rst_fd_park(struct rst_target *t, struct rst_fd_rctx *x, int fd, int *out)
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
 * The name under which deleted file @f can be opened now: recreated by its
 * first FileObject (fd_ghost.c), the same name for every later one of
 * that inode; the file a private mapping of it was made again from
 * (vma_ghost.c); in a tree, the file an earlier process recreated.
 */
static int ghost_path(const struct rst_target *t, struct rst_fd_rctx *x,
		      const Haul__Img__FileObject *f, char *path, size_t plen)
{
	const Haul__Img__GhostFile *gf = f->ghost;
	struct rst_tghost *g;
	int ret, dfd;

	for (size_t i = 0; i < x->nghosts; i++)
		if (x->ghosts[i].dev == gf->dev && x->ghosts[i].ino == gf->ino) {
			snprintf(path, plen, "%s", x->ghosts[i].path);
			return 0;
		}
	if (rst_vma_ghost_name(t, gf->dev, gf->ino, path, plen) ||
	    rst_share_ghost(gf->dev, gf->ino, path, plen))
		return 0;
	if (!gf->has_content)
		return -EBADMSG; /* the image names an inode it carries nowhere */
	ret = rst_ghost_create(t, f, path, plen, &dfd);
	if (ret)
		return ret;
	g = &x->ghosts[x->nghosts];
	g->dev = gf->dev;
	g->ino = gf->ino;
	g->dirfd = dfd;
	g->path = strdup(path);
	if (!g->path) {
		rst_ghost_remove(&dfd, path);
		return -ENOMEM;
	}
	x->nghosts++;
	return 0;
}

const Haul__Img__FileObject *rst_fd_file(const Haul__Img__ProcessState *ps, uint32_t id)
{
	for (size_t i = 0; i < ps->n_files; i++)
		if (ps->files[i]->id == id)
			return ps->files[i];
	return NULL;
}

const Haul__Img__FdEntry *rst_fd_first(const Haul__Img__ProcessState *ps, uint32_t id)
{
	for (size_t i = 0; i < ps->n_fds; i++)
		if (ps->fds[i]->file_id == id)
			return ps->fds[i];
	return NULL;
}

const Haul__Img__FdEntry *rst_fd_ofd_leader(const struct rst_fd_rctx *x,
					    const Haul__Img__FdEntry *e)
{
	for (size_t i = 0; i < x->cur; i++)
		if (x->ps->fds[i]->file_id == e->file_id)
			return x->ps->fds[i];
	return NULL;
}

/*
 * An O_APPEND file must be as long as at the dump: the process's next write
 * lands at its end, so bytes appended since (by a source that ran on after
 * the dump, issue 15) would be followed by the same appends again and the
 * restored run would compute something else.  Refuse by name instead.
 */
static int check_append_size(struct rst_target *t, const Haul__Img__FileObject *f, int fd, int tmp,
			     const char *path, char *why, size_t wl)
{
	struct stat st;
	int ret;

	if (f->kind != HAUL__IMG__FD_KIND__FD_REG || !(f->flags & O_APPEND) || !f->reg->has_size)
		return 0;
	ret = rst_rcall(t, SYS_fstat, tmp, rst_scratch(t), 0, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_peek(t, rst_scratch(t), &st, sizeof(st));
	if (ret) {
		snprintf(why, wl, "cannot check the size of %.256s (fd %d): %s", path, fd,
			 strerror(-ret));
		return ret;
	}
	if ((uint64_t)st.st_size == f->reg->size)
		return 0;
	snprintf(why, wl,
		 "%.256s (fd %d, O_APPEND) is %lld bytes, %llu at the dump: it was written "
		 "after the dump (did the source run on?); restoring would repeat or lose its "
		 "appends. Checkpoint again without --leave-running, or put the file back",
		 path, fd, (long long)st.st_size, (unsigned long long)f->reg->size);
	return -ESTALE;
}

/*
 * The close-on-exec flag of fds made at their own number (sockets,
 * eventfd, epoll...), and O_NONBLOCK of every fd whose kind's setup is only
 * that (rst_fd_set_nonblock: pipes, sockets), are set for all of them in
 * one batch after the loop (target_batch.c): nothing between reads them,
 * and the finish hooks come after.  @fdof names the fd of each call.
 */
struct fd_later {
	struct rst_batch b;
	int *fdof;
};

static void setfd_later(struct rst_target *t, struct fd_later *l, const Haul__Img__FdEntry *e)
{
	l->fdof[l->b.done + l->b.n] = e->fd;
	rst_bcall(t, &l->b, 0, "fcntl(F_SETFD)", SYS_fcntl, e->fd, F_SETFD,
		  e->cloexec ? FD_CLOEXEC : 0, 0, 0, 0);
}

/* rst_fd_set_nonblock's call, later */
static void setfl_later(struct rst_target *t, struct fd_later *l, const Haul__Img__FileObject *f,
			const Haul__Img__FdEntry *e)
{
	l->fdof[l->b.done + l->b.n] = e->fd;
	rst_bcall(t, &l->b, 0, "fcntl(F_SETFL)", SYS_fcntl, e->fd, F_SETFL, f->flags & O_NONBLOCK,
		  0, 0, 0);
}

/* Fd @e at its number: a dup3 of an earlier fd of its FileObject, or the FileObject made. */
static int restore_fd(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FdEntry *e,
		      struct fd_later *later, char *why, size_t wl)
{
	const Haul__Img__FdEntry *lead = rst_fd_ofd_leader(x, e);
	const Haul__Img__FileObject *f = rst_fd_file(x->ps, e->file_id);
	const struct rst_fd_ops *k = f ? rst_fd_ops_of(f->kind) : NULL;
	char path[4200];
	bool shared = false;
	int ret, tmp = -1;

	if (lead) {
		/* One open file description: the same offset, flags and locks. */
		ret = rst_rcall(t, SYS_dup3, lead->fd, e->fd, e->cloexec ? O_CLOEXEC : 0, 0, 0, 0,
				NULL);
		if (ret)
			snprintf(why, wl, "cannot make fd %d share the open file of fd %d: %s",
				 e->fd, lead->fd, strerror(-ret));
		return ret;
	}
	/* Made by another process of the tree: shared again (tree_share.c). */
	ret = rst_share_import(t, x->park, f, e, why, wl);
	if (ret != -ENOENT)
		return ret;
	if (!k) {
		/* The image validation refuses these before the restore starts. */
		snprintf(why, wl, "fd %d names file %u, which this haul cannot restore", e->fd,
			 e->file_id);
		return -EOPNOTSUPP;
	}
	snprintf(path, sizeof(path), "%s", f->path ? f->path : "");
	if (f->kind == HAUL__IMG__FD_KIND__FD_DELETED) {
		ret = ghost_path(t, x, f, path, sizeof(path));
		if (ret) {
			snprintf(why, wl, "cannot recreate deleted file %.256s of fd %d: %s",
				 f->path, e->fd, strerror(-ret));
			return ret;
		}
	}
	ret = k->restore(t, x, f, e, path, &tmp, &shared);
	if (ret) {
		snprintf(why, wl, "cannot recreate fd %d (%.256s): %s", e->fd, path,
			 strerror(-ret));
		return ret;
	}
	ret = check_append_size(t, f, e->fd, tmp, path, why, wl);
	if (ret) {
		rst_rcall(t, SYS_close, tmp, 0, 0, 0, 0, 0, NULL);
		return ret;
	}
	if (tmp != e->fd) {
		ret = rst_rcall(t, SYS_dup3, tmp, e->fd, e->cloexec ? O_CLOEXEC : 0, 0, 0, 0, NULL);
		if (!shared)
			rst_rcall(t, SYS_close, tmp, 0, 0, 0, 0, 0, NULL);
	} else {
		/* Created at its own number (eventfd, timerfd, epoll...): no dup3 set it. */
		setfd_later(t, later, e);
	}
	if (!ret && k->setup == rst_fd_set_nonblock)
		setfl_later(t, later, f, e);
	else if (!ret && k->setup)
		ret = k->setup(t, f, e);
	if (ret)
		snprintf(why, wl, "cannot set up fd %d (%.256s): %s", e->fd, path, strerror(-ret));
	return ret;
}

/* O_ASYNC with its owner and signal on fd @fd (after a lease, which sets O_ASYNC itself). */
static int restore_async(struct rst_target *t, const Haul__Img__FileObject *f, int fd, char *why,
			 size_t wl)
{
	int32_t own[2] = {f->fown->type, f->fown->pid};
	int fl = (int)f->flags & (O_APPEND | O_NONBLOCK | O_ASYNC | O_DIRECT | O_NOATIME);
	int ret;

	ret = rst_poke(t, rst_scratch(t), own, sizeof(own));
	if (!ret)
		ret = rst_rcall(t, SYS_fcntl, fd, F_SETOWN_EX, rst_scratch(t), 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_fcntl, fd, F_SETSIG, f->fown->sig, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_fcntl, fd, F_SETFL, fl, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl, "cannot set O_ASYNC and its owner on fd %d (%.256s): %s", fd,
			 f->path, strerror(-ret));
	return ret;
}

/*
 * Take the locks and leases of every open file description again, once
 * all fds exist (through the first fd naming it): closing any fd of a
 * file drops the process's POSIX locks on it, and restoring fds closes
 * temporaries.
 */
static int restore_locks(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			 size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i < ps->n_files && !ret; i++) {
		const Haul__Img__FileObject *f = ps->files[i];
		const Haul__Img__FdEntry *e = rst_fd_first(ps, f->id);

		if (!e)
			continue; /* held by other processes of the image only */
		for (size_t k = 0; k < f->n_locks && !ret; k++) {
			struct rst_lock_call c;

			ret = rst_lock_call(f->locks[k], e->fd, &c);
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
					 rst_lock_name(f->locks[k]), e->fd, f->path, strerror(-ret),
					 ret == -EAGAIN ? " (another process holds a conflicting "
							  "lock on the file now)"
							: "");
		}
		if (!ret && f->fown)
			ret = restore_async(t, f, e->fd, why, wl);
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

int rst_fd_parked_pair(struct rst_target *t, struct rst_fd_rctx *x, uint64_t id, bool sock,
		       int type, struct rst_tpipe **out, bool *made)
{
	struct rst_tpipe *p = NULL;
	int32_t fds[2];
	int ret;

	*made = false;
	for (size_t i = 0; i < x->npipes; i++)
		if (x->pipes[i].id == id && x->pipes[i].sock == sock && !x->pipes[i].fifo)
			p = &x->pipes[i];
	if (!p) {
		p = &x->pipes[x->npipes];
		memset(p, 0, sizeof(*p));
		p->id = id;
		p->sock = sock;
		if (sock)
			ret = rst_rcall(t, SYS_socketpair, AF_UNIX, type | SOCK_CLOEXEC, 0,
					rst_scratch(t), 0, 0, NULL);
		else
			ret = rst_rcall(t, SYS_pipe2, rst_scratch(t), O_CLOEXEC, 0, 0, 0, 0, NULL);
		if (!ret)
			ret = rst_peek(t, rst_scratch(t), fds, sizeof(fds));
		if (!ret)
			ret = rst_fd_park(t, x, fds[0], &p->r);
		if (!ret)
			ret = rst_fd_park(t, x, fds[1], &p->w);
		if (ret)
			return ret;
		x->npipes++;
		*made = true;
	}
	*out = p;
	return 0;
}

int rst_fd_refill_parked(struct rst_target *t, struct rst_fd_rctx *x, bool sock, char *why,
			 size_t wl)
{
	/* the parked ends' closes, independent of the refills: one batch at the end */
	struct rst_batch *b = rst_batch_new();
	int ret = 0;

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < x->npipes && !ret; i++) {
		const struct rst_tpipe *p = &x->pipes[i];

		if (p->sock != sock)
			continue;
		/* What an end had to read is written into the other end (a pipe's into w). */
		ret = refill(t, p->w, p->data);
		if (!ret && p->sock)
			ret = refill(t, p->r, p->data1);
		if (ret)
			snprintf(why, wl, "cannot refill a %s with its queued bytes: %s",
				 p->sock ? "socketpair" : "pipe", strerror(-ret));
		rst_bcall(t, b, RSYS_BMAYFAIL, "close", SYS_close, p->r, 0, 0, 0, 0, 0);
		rst_bcall(t, b, RSYS_BMAYFAIL, "close", SYS_close, p->w, 0, 0, 0, 0, 0);
	}
	/* as before, a failed close changes nothing: the parked end is gone either way */
	rst_batch_run(t, b);
	free(b);
	return ret;
}

/* Every fd exists: each kind's finish (pipe contents, epoll targets), then the locks. */
static int finish_fds(struct rst_target *t, struct rst_fd_rctx *x,
		      const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	int ret = 0;

	for (size_t i = 0; rst_fd_kinds[i] && !ret; i++)
		if (rst_fd_kinds[i]->finish)
			ret = rst_fd_kinds[i]->finish(t, x, why, wl);
	if (!ret)
		ret = restore_locks(t, ps, why, wl);
	return ret;
}

int rst_restore_fds(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	struct rst_fd_rctx x = {0};
	struct fd_later *later;
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
	later = malloc(sizeof(*later));
	if (later)
		later->fdof = calloc(2 * ps->n_fds + 1, sizeof(int));
	if (!later || !later->fdof) {
		if (later)
			free(later->fdof);
		free(later);
		free(x.pipes);
		free(x.ghosts);
		return -ENOMEM;
	}
	rst_batch_init(&later->b);
	/* The stub's own fds (/dev/null on 0-2) go; the process's come back. */
	ret = rst_rcall(t, SYS_close_range, 0, ~0U, 0, 0, 0, 0, NULL);
	/* its sockets first, few round trips for many (fd_presock.c) */
	if (!ret)
		ret = rst_fd_presock(t, &x, why, wl);
	for (size_t i = 0; !ret && i < ps->n_fds; i++) {
		x.cur = i;
		ret = restore_fd(t, &x, ps->fds[i], later, why, wl);
		if (!ret)
			ret = later->b.err; /* a full batch ran and failed */
	}
	if (!ret || later->b.err) {
		int lret = rst_batch_run(t, &later->b);

		if (lret)
			snprintf(why, wl, "cannot set the flags of fd %d: %s: %s",
				 later->fdof[later->b.failed], later->b.what, strerror(-lret));
		if (!ret)
			ret = lret;
	}
	free(later->fdof);
	free(later);
	/* Every fd of a deleted file has it open: it is deleted again. */
	for (size_t i = 0; i < x.nghosts; i++) {
		int uret = rst_ghost_remove(&x.ghosts[i].dirfd, x.ghosts[i].path);

		if (uret)
			pr_warn("cannot remove %s, deleted file of pid %d made again in its root: "
				"%s; remove it by hand",
				x.ghosts[i].path, (int)t->o.pid, strerror(-uret));
		free(x.ghosts[i].path);
	}
	free(x.ghosts);
	if (!ret)
		ret = finish_fds(t, &x, ps, why, wl);
	free(x.pipes);
	return ret;
}
