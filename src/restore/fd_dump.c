/*
 * fd_dump.c - the fds of a stopped process into image FileObjects and
 * FdEntries.
 *
 * Each fd of /proc/PID/fd is classified by the kind table (fd_kinds.c);
 * the generic fields of its FileObject (kind, path, offset, open flags,
 * locks) are read here, the kind's sub-message by its dump hook, and its
 * FdEntry gets the number and O_CLOEXEC.  Then the fds that share one open
 * file description (fd_ofd.c) keep the FileObject of the first of them,
 * the others' are dropped, and the ids are given out (from im->next_id:
 * unique in the image, never an fd number).  Last, what belongs to an OFD
 * or an inode rather than to an fd: the O_ASYNC owner (injected
 * F_GETOWN_EX, F_GETSIG), a deleted file's content on the first
 * FileObject of its inode (fd_ghost.c).
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
#include "common/proc.h"
#include "common/rsys.h"
#include "restore/fd_inet.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"

/* The fds dumped so far, one FileObject each until merge_ofds; @self: the pid as it knows itself. */
struct fd_dump {
	struct rst_fd_image *im;
	struct rst_ofd_key *keys;
	size_t cap;
	pid_t self;
};

void rst_fd_image_free(struct rst_fd_image *im)
{
	for (size_t i = 0; i < im->nfiles; i++)
		if (im->files[i])
			haul__img__file_object__free_unpacked(im->files[i], NULL);
	for (size_t i = 0; i < im->nfds; i++)
		free(im->fds[i]);
	free(im->files);
	free(im->fds);
	im->files = NULL;
	im->fds = NULL;
	im->nfiles = im->nfds = 0;
}

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
 * F_GETOWN_EX and F_GETSIG, injected through fd @fd.  Only the process
 * itself (or no owner) can be carried.
 */
static int dump_async(struct fd_dump *c, struct rsys *r, uint64_t scratch, int fd,
		      Haul__Img__FileObject *o, char *why, size_t whylen)
{
	struct {
		int32_t type, pid;
	} own;
	bool inside;
	long res;
	int ret;

	ret = inject_fcntl(r, fd, F_GETOWN_EX, scratch, &res);
	if (!ret)
		ret = rsys_read(r->pid, scratch, &own, sizeof(own));
	if (!ret)
		ret = inject_fcntl(r, fd, F_GETSIG, 0, &res);
	if (ret) {
		snprintf(why, whylen, "cannot read the O_ASYNC owner of fd %d (%.256s)", fd,
			 o->path);
		return ret;
	}
	/*
	 * The fds are restored before the other threads exist (F_SETOWN_EX to
	 * their TIDs would be ESRCH): only the process itself, another process
	 * of the tree it moves with (every one exists, with its pid, before any
	 * fd is restored: nginx's workers signal their master so), or no one.
	 */
	inside = own.pid == 0 ||
		 (own.type != F_OWNER_PGRP && (own.pid == c->self || rst_ext_is_moving(own.pid)));
	if (!inside) {
		snprintf(why, whylen,
			 "fd %d (%.256s) has O_ASYNC signals going to %s %d, not to the process "
			 "itself or one that moves with it; haul cannot carry them (clear O_ASYNC, "
			 "or F_SETOWN the process)",
			 fd, o->path, own.type == F_OWNER_PGRP ? "process group" : "pid/tid",
			 own.pid);
		return -EOPNOTSUPP;
	}
	o->fown = malloc(sizeof(*o->fown));
	if (!o->fown)
		return -ENOMEM;
	haul__img__fown__init(o->fown);
	o->fown->type = own.type;
	o->fown->pid = own.pid;
	o->fown->sig = (int32_t)res;
	return 0;
}

/*
 * Fds sharing one OFD keep the FileObject of the first of them (its
 * locks: fdinfo shows them on every fd of the OFD); ids are given out in
 * fd order from im->next_id.
 */
static int merge_ofds(struct fd_dump *c, pid_t pid)
{
	struct rst_fd_image *im = c->im;
	size_t n = im->nfds, kept = 0, *lead = calloc(n ? n : 1, sizeof(*lead));
	uint32_t *id = calloc(n ? n : 1, sizeof(*id));
	int ret = lead && id ? rst_ofd_assign(pid, c->keys, n, lead) : -ENOMEM;

	if (!im->next_id)
		im->next_id = 1;
	for (size_t i = 0; !ret && i < n; i++) {
		if (lead[i] != i) {
			haul__img__file_object__free_unpacked(im->files[i], NULL);
			im->files[i] = NULL;
			id[i] = id[lead[i]];
		} else {
			id[i] = im->next_id++;
			im->files[i]->id = id[i];
			im->files[kept++] = im->files[i];
		}
		im->fds[i]->file_id = id[i];
	}
	if (!ret)
		im->nfiles = kept;
	free(lead);
	free(id);
	return ret;
}

/*
 * What belongs to an open file description or an inode, not to an fd:
 * the O_ASYNC owner; a deleted file's content, owner and times on the
 * first FileObject of its inode (fd_ghost.c).
 */
static int dump_files_shared(struct fd_dump *c, struct rsys *r, uint64_t scratch, char *why,
			     size_t whylen)
{
	struct rst_fd_image *im = c->im;
	int ret = 0;

	for (size_t i = 0; !ret && i < im->nfiles; i++) {
		Haul__Img__FileObject *o = im->files[i];
		const Haul__Img__FdEntry *e = NULL;
		bool first = true;

		for (size_t k = 0; !e && k < im->nfds; k++)
			if (im->fds[k]->file_id == o->id)
				e = im->fds[k];
		if (o->flags & O_ASYNC)
			ret = dump_async(c, r, scratch, e->fd, o, why, whylen);
		if (ret || o->kind != HAUL__IMG__FD_KIND__FD_DELETED)
			continue;
		for (size_t j = 0; j < i; j++)
			if (im->files[j]->ghost && im->files[j]->ghost->dev == o->ghost->dev &&
			    im->files[j]->ghost->ino == o->ghost->ino)
				first = false;
		if (!first)
			continue;
		ret = rst_ghost_dump(r->pid, e->fd, o);
		if (ret)
			snprintf(why, whylen, "cannot read deleted file %.256s of fd %d: %s",
				 o->path, e->fd, strerror(-ret));
	}
	return ret;
}

/* Room for one more fd in @c: 0 or -ENOMEM. */
static int grow(struct fd_dump *c)
{
	struct rst_fd_image *im = c->im;
	size_t nc = c->cap ? c->cap * 2 : 16;
	Haul__Img__FileObject **f;
	Haul__Img__FdEntry **e;
	struct rst_ofd_key *k;

	if (im->nfds < c->cap)
		return 0;
	f = realloc(im->files, nc * sizeof(*f));
	if (f)
		im->files = f;
	e = realloc(im->fds, nc * sizeof(*e));
	if (e)
		im->fds = e;
	k = realloc(c->keys, nc * sizeof(*k));
	if (k)
		c->keys = k;
	if (!f || !e || !k)
		return -ENOMEM;
	c->cap = nc;
	return 0;
}

/* Fd @p of kind @k, its fdinfo @text: a FileObject and an FdEntry more in @c. */
static int dump_fd(struct fd_dump *c, const struct rst_fd_probe *p, const struct rst_fd_ops *k,
		   const char *text)
{
	struct rst_fd_image *im = c->im;
	Haul__Img__FileObject *o = NULL;
	Haul__Img__FdEntry *e = NULL;
	struct rst_ofd_key *key;
	const char *f;
	int ret = grow(c);

	if (!ret) {
		o = malloc(sizeof(*o));
		e = malloc(sizeof(*e));
	}
	if (!o || !e) {
		free(o);
		free(e);
		return ret ? ret : -ENOMEM;
	}
	haul__img__file_object__init(o);
	haul__img__fd_entry__init(e);
	im->files[im->nfds] = o;
	im->fds[im->nfds] = e;
	key = &c->keys[im->nfds];
	im->nfds++;
	im->nfiles = im->nfds; /* one each until merge_ofds */
	o->path = strdup(p->target);
	if (!o->path)
		return -ENOMEM;
	e->fd = p->fd;
	o->kind = k->kind;
	if ((f = rst_status_field(text, "pos"))) {
		o->has_pos = true;
		o->pos = strtoull(f, NULL, 10);
	}
	e->cloexec = !!(p->flags & O_CLOEXEC);
	o->flags = p->flags & ~(unsigned long)O_CLOEXEC;
	ret = k->dump ? k->dump(p, o, im->files, im->nfds - 1) : 0;
	if (!ret)
		ret = rst_lock_dump(text, p->fd, o);
	memset(key, 0, sizeof(*key));
	key->fd = p->fd;
	key->kind = o->kind;
	key->dev = p->st->st_dev;
	key->ino = p->st->st_ino;
	key->pos = o->pos;
	key->flags = o->flags;
	key->efd_count = o->eventfd ? o->eventfd->count : 0;
	return ret;
}

int rst_dump_fds(struct rsys *r, uint64_t scratch, pid_t self, struct rst_fd_image *im, char *why,
		 size_t whylen)
{
	struct fd_dump dd = {.im = im, .self = self}, *c = &dd;
	pid_t pid = r->pid;
	struct dirent *de;
	DIR *d = haul_proc_opendir(pid, "fd");
	int ret = 0;

	if (!d)
		return -errno;
	rst_inet_diag_forget(); /* another process's freeze: ask the namespaces again */
	while ((de = readdir(d))) {
		char target[4096], info[96], *text = NULL;
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
		ret = dump_fd(c, &p, k, text);
		free(text);
		if (ret) {
			snprintf(why, whylen, "cannot read the state of fd %d (%.256s)", fd,
				 target);
			break;
		}
	}
	closedir(d);
	rst_inet_diag_forget();
	if (!ret)
		ret = merge_ofds(c, pid);
	if (!ret)
		ret = dump_files_shared(c, r, scratch, why, whylen);
	free(c->keys);
	return ret;
}
