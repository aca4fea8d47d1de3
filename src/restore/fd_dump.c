/*
 * fd_dump.c - the fds of a stopped process into image Fd messages.
 *
 * Each fd of /proc/PID/fd is classified by the kind table (fd_kinds.c);
 * the generic fields (path, dev, ino, size, mode, offset, open flags,
 * O_CLOEXEC, locks) are read here, the kind's own by its dump hook.  Then
 * what belongs to an open file description or an inode rather than to an
 * fd: file ids (fd_ofd.c), locks kept on the first fd of each OFD, the
 * O_ASYNC owner (injected F_GETOWN_EX, F_GETSIG), a deleted file's content
 * on the first fd of its inode (fd_ghost.c).
 */
#define LOG_PREFIX "dump: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "common/log.h"
#include "common/rsys.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"

/* The fds dumped so far; @self: the process's pid as it knows itself. */
struct fd_dump {
	Haul__Img__Fd *fds;
	size_t n;
	pid_t self;
};

/* fcntl(@fd, @cmd, @arg) in the stopped process. */
static int inject_fcntl(struct rsys *r, int fd, int cmd, uint64_t arg, long *res)
{
	uint64_t args[6] = {(uint64_t)fd, (uint64_t)cmd, arg, 0, 0, 0};
	int ret = rsys_call(r, SYS_fcntl, args, res);

	if (ret)
		pr_err_r(ret, "cannot run fcntl in pid %d", r->pid);
	if (!ret && *res < 0)
		ret = (int)*res;
	return ret;
}

/*
 * An OFD with O_ASYNC (set by fcntl, or by a lease) signals its owner:
 * F_GETOWN_EX and F_GETSIG, injected.  Only the process itself (or no
 * owner) can be carried.
 */
static int dump_async(struct fd_dump *c, struct rsys *r, uint64_t scratch, Haul__Img__Fd *o,
		      char *why, size_t whylen)
{
	struct {
		int32_t type, pid;
	} own;
	bool inside;
	long res;
	int ret;

	ret = inject_fcntl(r, o->fd, F_GETOWN_EX, scratch, &res);
	if (!ret)
		ret = rsys_read(r->pid, scratch, &own, sizeof(own));
	if (!ret)
		ret = inject_fcntl(r, o->fd, F_GETSIG, 0, &res);
	if (ret) {
		snprintf(why, whylen, "cannot read the O_ASYNC owner of fd %d (%.256s)", o->fd,
			 o->path);
		return ret;
	}
	/*
	 * The fds are restored before the other threads exist (F_SETOWN_EX to
	 * their TIDs would be ESRCH): only the process itself, or no one.
	 */
	inside = own.pid == 0 || (own.type != F_OWNER_PGRP && own.pid == c->self);
	if (!inside) {
		snprintf(why, whylen,
			 "fd %d (%.256s) has O_ASYNC signals going to %s %d, not to the process "
			 "itself; haul cannot carry them (clear O_ASYNC, or F_SETOWN the process)",
			 o->fd, o->path, own.type == F_OWNER_PGRP ? "process group" : "pid/tid",
			 own.pid);
		return -EOPNOTSUPP;
	}
	o->has_owner_type = o->has_owner_pid = o->has_async_sig = true;
	o->owner_type = own.type;
	o->owner_pid = own.pid;
	o->async_sig = (int32_t)res;
	return 0;
}

/*
 * What belongs to an open file description or an inode, not to an fd:
 * file_id for every fd (fd_ofd.c); locks are kept on the first fd of each
 * OFD only (fdinfo shows them on every fd of it); a deleted file's
 * content, owner and times on the first fd of its inode (fd_ghost.c).
 */
static int dump_fds_shared(struct fd_dump *c, struct rsys *r, uint64_t scratch, char *why,
			   size_t whylen)
{
	Haul__Img__Fd *fds = c->fds;
	size_t n = c->n;
	pid_t pid = r->pid;
	int ret = rst_ofd_assign(pid, fds, n);

	for (size_t i = 0; !ret && i < n; i++) {
		Haul__Img__Fd *o = &fds[i];
		bool first = true;

		if (o->file_id != i + 1)
			rst_lock_free(o);
		else if (o->flags & O_ASYNC)
			ret = dump_async(c, r, scratch, o, why, whylen);
		if (ret || o->kind != HAUL__IMG__FD_KIND__FD_DELETED)
			continue;
		for (size_t j = 0; j < i; j++)
			if (fds[j].kind == HAUL__IMG__FD_KIND__FD_DELETED && fds[j].dev == o->dev &&
			    fds[j].ino == o->ino)
				first = false;
		if (!first)
			continue;
		ret = rst_ghost_dump(pid, o->fd, o);
		if (ret)
			snprintf(why, whylen, "cannot read deleted file %.256s of fd %d: %s",
				 o->path, o->fd, strerror(-ret));
	}
	return ret;
}

int rst_dump_fds(struct rsys *r, uint64_t scratch, pid_t self, Haul__Img__Fd **out, size_t *nout,
		 char *why, size_t whylen)
{
	struct fd_dump dd = {.self = self}, *c = &dd;
	pid_t pid = r->pid;
	char path[64];
	struct dirent *de;
	size_t cap = 0;
	DIR *d;
	int ret = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		char target[4096], info[96], *text = NULL;
		const char *f;
		Haul__Img__Fd *o;
		const struct rst_fd_ops *k = NULL;
		struct rst_fd_probe p;
		struct stat st;
		int fd;

		if (de->d_name[0] == '.')
			continue;
		fd = atoi(de->d_name);
		snprintf(info, sizeof(info), "fdinfo/%d", fd);
		ret = rst_read_proc(pid, info, &text, NULL);
		if (!ret)
			ret = rst_fd_classify(pid, fd, text, target, sizeof(target), &st, &p, &k,
					      why, whylen);
		if (ret) {
			free(text);
			break;
		}
		if (c->n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			Haul__Img__Fd *a = realloc(c->fds, nc * sizeof(*a));

			if (!a) {
				ret = -ENOMEM;
				break;
			}
			c->fds = a;
			cap = nc;
		}
		o = &c->fds[c->n];
		haul__img__fd__init(o);
		o->path = strdup(target);
		c->n++;
		if (!o->path) {
			free(text);
			ret = -ENOMEM;
			break;
		}
		o->fd = fd;
		o->kind = k->kind;
		o->has_dev = o->has_ino = o->has_size = o->has_mode = true;
		o->dev = st.st_dev;
		o->ino = st.st_ino;
		o->size = st.st_size;
		o->mode = st.st_mode;
		if ((f = rst_status_field(text, "pos")))
			o->pos = strtoull(f, NULL, 10);
		if ((f = rst_status_field(text, "flags"))) {
			unsigned long fl = strtoul(f, NULL, 8);

			o->cloexec = !!(fl & O_CLOEXEC);
			o->flags = fl & ~(unsigned long)O_CLOEXEC;
		}
		ret = k->dump ? k->dump(&p, o, c->fds, c->n - 1) : 0;
		if (!ret)
			ret = rst_lock_dump(text, o);
		free(text);
		if (ret) {
			snprintf(why, whylen, "cannot read the state of fd %d (%.256s)", fd,
				 target);
			break;
		}
	}
	closedir(d);
	if (!ret)
		ret = dump_fds_shared(c, r, scratch, why, whylen);
	*out = c->fds;
	*nout = c->n;
	return ret;
}
