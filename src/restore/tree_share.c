/*
 * tree_share.c - what the processes of a tree share among themselves: an
 * open file description inherited over fork, dup'ed or passed (stdout of
 * a pipeline, a log file), and pipes between them.
 *
 * Dump (tree_ckpt.c, after each process's rst_dump_state, in tree order):
 * the process's FileObject ids are moved past every id given out so far,
 * so ids are unique in the whole image; then each of its FileObjects is
 * compared with those of the processes dumped before it (same device and
 * inode, then kcmp KCMP_FILE): one that is the same open file description
 * is dropped and its FdEntries name the earlier process's FileObject.  A
 * FileObject is thus stored once, in the first process (tree order) that
 * holds it.
 *
 * Restore (tree_restore.c): processes are made ready in the same order,
 * each with its fds at their final numbers before the next starts (every
 * one is still stopped).  An FdEntry whose FileObject another process
 * holds is copied from the first earlier process that has an fd of it:
 * pidfd_open + pidfd_getfd, injected in the restored process, then dup3
 * to its number: the same open file description, offset and flags shared
 * again.  A pipe end whose pipe an earlier process already made (same
 * pipe_id) is opened through /proc/PID/fd/N of any fd of that pipe in
 * that process: a new open file description of the same pipe, in the
 * direction and mode of the image (a pipe end carries no offset); its
 * buffered bytes were written once, by the process that made the pipe.
 * A deleted file another process recreated is opened the same way, so
 * two opens of one deleted file (a parent's and a child's) stay one inode.
 * A unix pair whose ends are in two processes is made by the first
 * (fd_unix_tree.c, which rst_share_restore_set starts and ends); a
 * listener a done process restored is lent to a later one for the
 * accept() that remakes a connection (rst_share_borrow).
 */
#define LOG_PREFIX "tree: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sysno.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

#define KCMP_FILE_ 0

/* ---- dump ------------------------------------------------------------------ */

static int fd_stat(pid_t host, int fd, struct stat *st)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)host, fd);
	return stat(path, st) < 0 ? -errno : 0;
}

static const Haul__Img__FdEntry *first_fd(const Haul__Img__ProcessState *ps, uint32_t id)
{
	for (size_t i = 0; i < ps->n_fds; i++)
		if (ps->fds[i]->file_id == id)
			return ps->fds[i];
	return NULL;
}

/* The id of an earlier process's FileObject that is @host's fd @fd, or 0. */
static uint32_t same_ofd(const struct rst_share_dump *d, pid_t host, int fd)
{
	struct stat st;

	if (fd_stat(host, fd, &st))
		return 0;
	for (size_t i = 0; i < d->n; i++)
		if (d->e[i].dev == st.st_dev && d->e[i].ino == st.st_ino &&
		    syscall(SYS_kcmp, d->e[i].host, host, KCMP_FILE_, d->e[i].fd, fd) == 0)
			return d->e[i].id;
	return 0;
}

static int remember(struct rst_share_dump *d, pid_t host, int fd, uint32_t id)
{
	struct stat st;

	if (fd_stat(host, fd, &st))
		return 0; /* nothing later can match it */
	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 64;
		void *e = realloc(d->e, cap * sizeof(*d->e));

		if (!e)
			return -ENOMEM;
		d->e = e;
		d->cap = cap;
	}
	d->e[d->n++] = (typeof(d->e[0])){host, fd, id, st.st_dev, st.st_ino};
	return 0;
}

int rst_share_dump_merge(struct rst_share_dump *d, pid_t host, Haul__Img__ProcessState *ps)
{
	uint32_t base = d->next_id, top = base;
	size_t w = 0;
	int ret = 0;

	if (!base)
		base = top = d->next_id = 1;
	for (size_t i = 0; i < ps->n_files; i++) {
		ps->files[i]->id += base;
		top = ps->files[i]->id + 1 > top ? ps->files[i]->id + 1 : top;
	}
	for (size_t i = 0; i < ps->n_fds; i++)
		ps->fds[i]->file_id += base;
	d->next_id = top;
	for (size_t i = 0; i < ps->n_files; i++) {
		Haul__Img__FileObject *f = ps->files[i];
		const Haul__Img__FdEntry *e = first_fd(ps, f->id);
		uint32_t earlier = e ? same_ofd(d, host, e->fd) : 0;

		if (!earlier) {
			ps->files[w++] = f;
			if (e && !ret)
				ret = remember(d, host, e->fd, f->id);
			continue;
		}
		/* One open file description: stored once, in the earlier process. */
		for (size_t k = 0; k < ps->n_fds; k++)
			if (ps->fds[k]->file_id == f->id)
				ps->fds[k]->file_id = earlier;
		haul__img__file_object__free_unpacked(f, NULL);
	}
	ps->n_files = w;
	return ret;
}

void rst_share_dump_release(struct rst_share_dump *d)
{
	rst_shm_tree_dump_free(d->shm);
	free(d->e);
	memset(d, 0, sizeof(*d));
}

/* ---- restore --------------------------------------------------------------- */

/* The tree being restored by this thread: the processes whose fds exist. */
static __thread const struct rst_share_rst *cur;

void rst_share_restore_set(const struct rst_share_rst *s)
{
	cur = s;
	/* unix pairs across processes: the ends handed from one to another (fd_unix_tree.c) */
	rst_unix_tree_begin(s != NULL);
}

const struct rst_share_rst *rst_share_current(void)
{
	return cur;
}

/* The FileObject @id wherever in the done processes it is stored. */
static const Haul__Img__FileObject *file_anywhere(uint32_t id)
{
	for (size_t j = 0; cur && j < cur->n; j++) {
		const Haul__Img__FileObject *f = rst_fd_file(cur->ps[j], id);

		if (f)
			return f;
	}
	return NULL;
}

bool rst_share_known(uint32_t id)
{
	return file_anywhere(id) != NULL;
}

/* A done process's fd naming @id (or, @pipe_id nonzero, any end of that pipe). */
static bool find_holder(uint32_t id, uint64_t pipe_id, pid_t *pid, int *fd)
{
	for (size_t j = 0; cur && j < cur->n; j++)
		for (size_t i = 0; i < cur->ps[j]->n_fds; i++) {
			const Haul__Img__FdEntry *e = cur->ps[j]->fds[i];
			const Haul__Img__FileObject *f;

			if (!pipe_id && e->file_id != id)
				continue;
			if (pipe_id) {
				f = file_anywhere(e->file_id);
				if (!f || f->kind != HAUL__IMG__FD_KIND__FD_PIPE || !f->pipe ||
				    f->pipe->pipe_id != pipe_id)
					continue;
			}
			*pid = cur->pid[j];
			*fd = e->fd;
			return true;
		}
	return false;
}

bool rst_share_ghost(uint64_t dev, uint64_t ino, char *path, size_t plen)
{
	for (size_t j = 0; cur && j < cur->n; j++)
		for (size_t i = 0; i < cur->ps[j]->n_fds; i++) {
			const Haul__Img__FdEntry *e = cur->ps[j]->fds[i];
			const Haul__Img__FileObject *f = file_anywhere(e->file_id);

			if (!f || f->kind != HAUL__IMG__FD_KIND__FD_DELETED || !f->ghost ||
			    f->ghost->dev != dev || f->ghost->ino != ino)
				continue;
			snprintf(path, plen, "/proc/%d/fd/%d", (int)cur->pid[j], e->fd);
			return true;
		}
	return false;
}

/* Fd @got of the stub to number @e->fd with its own cloexec; @got is consumed. */
static int place(struct rst_target *t, int got, const Haul__Img__FdEntry *e)
{
	int ret;

	if (got == e->fd)
		return rst_rcall(t, SYS_fcntl, got, F_SETFD, e->cloexec ? FD_CLOEXEC : 0, 0, 0, 0,
				 NULL);
	ret = rst_rcall(t, SYS_dup3, got, e->fd, e->cloexec ? O_CLOEXEC : 0, 0, 0, 0, NULL);
	rst_rcall(t, SYS_close, got, 0, 0, 0, 0, 0, NULL);
	return ret;
}

int rst_share_getfd(struct rst_target *t, int park, pid_t pid, int fd, int *out)
{
	long pfd, hi, got = -1;
	int ret;

	ret = rst_rcall(t, SYS_pidfd_open, (uint64_t)pid, 0, 0, 0, 0, 0, &pfd);
	if (ret)
		return ret;
	/* out of the way of the numbers the image still has to fill */
	ret = rst_rcall(t, SYS_fcntl, (uint64_t)pfd, F_DUPFD_CLOEXEC, (uint64_t)park, 0, 0, 0, &hi);
	rst_rcall(t, SYS_close, (uint64_t)pfd, 0, 0, 0, 0, 0, NULL);
	if (ret)
		return ret;
	ret = rst_rcall(t, SYS_pidfd_getfd, (uint64_t)hi, (uint64_t)fd, 0, 0, 0, 0, &got);
	rst_rcall(t, SYS_close, (uint64_t)hi, 0, 0, 0, 0, 0, NULL);
	*out = (int)got;
	return ret;
}

/* Fd @fd of tree process @pid, the same open file description, as @e in @t. */
static int copy_ofd(struct rst_target *t, int park, pid_t pid, int fd, const Haul__Img__FdEntry *e)
{
	int got, ret = rst_share_getfd(t, park, pid, fd, &got);

	return ret ? ret : place(t, got, e);
}

/* A new open of the pipe that fd @fd of tree process @pid is an end of. */
static int open_pipe(struct rst_target *t, pid_t pid, int fd, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e)
{
	char path[64];
	uint64_t addr;
	long got;
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
	ret = rst_put_str(t, 0, path, &addr);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, (uint64_t)AT_FDCWD, addr,
				(f->flags & (O_ACCMODE | O_NONBLOCK)) | O_CLOEXEC, 0, 0, 0, &got);
	return ret ? ret : place(t, (int)got, e);
}

int rst_share_import(struct rst_target *t, int park, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e, char *why, size_t wl)
{
	pid_t pid;
	int fd, ret;

	if (!cur)
		return -ENOENT;
	if (!f) {
		if (!find_holder(e->file_id, 0, &pid, &fd))
			return -ENOENT;
		ret = copy_ofd(t, park, pid, fd, e);
		if (ret)
			snprintf(why, wl, "cannot share fd %d of pid %d as fd %d of pid %d: %s", fd,
				 (int)pid, e->fd, (int)t->o.pid, strerror(-ret));
		return ret;
	}
	/* a named FIFO opens its path itself (fd_fifo.c): never a blocking open here */
	if (f->kind != HAUL__IMG__FD_KIND__FD_PIPE || !f->pipe ||
	    !find_holder(0, f->pipe->pipe_id, &pid, &fd))
		return -ENOENT;
	ret = open_pipe(t, pid, fd, f, e);
	if (ret)
		snprintf(why, wl, "cannot open the pipe of fd %d of pid %d as fd %d of pid %d: %s",
			 fd, (int)pid, e->fd, (int)t->o.pid, strerror(-ret));
	return ret;
}

int rst_share_borrow(struct rst_target *t, int park,
		     bool (*match)(const Haul__Img__FileObject *f, const void *arg),
		     const void *arg, int *got)
{
	for (size_t j = 0; cur && j < cur->n; j++)
		for (size_t i = 0; i < cur->ps[j]->n_fds; i++) {
			const Haul__Img__FdEntry *e = cur->ps[j]->fds[i];
			const Haul__Img__FileObject *f = file_anywhere(e->file_id);
			long pfd, hi, res;
			int ret;

			if (!f || !match(f, arg))
				continue;
			ret = rst_rcall(t, SYS_pidfd_open, (uint64_t)cur->pid[j], 0, 0, 0, 0, 0,
					&pfd);
			if (ret)
				return ret;
			ret = rst_rcall(t, SYS_fcntl, (uint64_t)pfd, F_DUPFD_CLOEXEC,
					(uint64_t)park, 0, 0, 0, &hi);
			rst_rcall(t, SYS_close, (uint64_t)pfd, 0, 0, 0, 0, 0, NULL);
			if (ret)
				return ret;
			ret = rst_rcall(t, SYS_pidfd_getfd, (uint64_t)hi, (uint64_t)e->fd, 0, 0, 0,
					0, &res);
			rst_rcall(t, SYS_close, (uint64_t)hi, 0, 0, 0, 0, 0, NULL);
			if (!ret)
				*got = (int)res;
			return ret;
		}
	return -ENOENT;
}
