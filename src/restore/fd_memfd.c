/*
 * fd_memfd.c - the fd kind of a memfd (memfd_create) the process holds.
 *
 * The memfd is a shared memory object like any other (shm_dump.c records
 * its ShmObject: name, size, seals); this kind only carries the fd and the
 * bytes no VMA shows.  Dump: the data extents (SEEK_DATA/SEEK_HOLE) of the
 * memfd minus what the process's VMAs map of it (those pages travel, and
 * are tracked, as the VMAs' pages), on the first FileObject of the inode
 * only, in its MemfdFile (FileObject field 70); at most
 * RST_DELETED_FILE_MAX bytes, else refused by name.  Restore: the object
 * made for a VMA or an earlier fd is opened again (/proc/self/map_files,
 * /proc/self/fd), else memfd_create makes it; once every fd exists
 * (finish) the restorer writes the bytes through /proc/S/fd/N, then sets
 * the size and adds the seals, last, so that a write seal does not stop
 * its own restore.
 */
#define LOG_PREFIX "memfd: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/vma.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

static bool memfd_match(const struct rst_fd_probe *p)
{
	return S_ISREG(p->st->st_mode) && !strncmp(p->target, "/memfd:", 7);
}

static int memfd_refuse(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	if (p->st->st_size > (off_t)RST_DELETED_FILE_MAX) {
		snprintf(why, whylen,
			 "fd %d is memfd %s of %lld bytes; haul carries a memfd held open only "
			 "up to %llu MiB (map it: mapped pages are tracked and carried)",
			 p->fd, p->target, (long long)p->st->st_size, RST_DELETED_FILE_MAX >> 20);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* Append [@off, @off+@len) of @fd to @o's data. */
static int add_bytes(int fd, Haul__Img__MemfdFile *o, uint64_t off, uint64_t len)
{
	uint8_t *d;
	uint64_t *e;

	if (!len)
		return 0;
	d = realloc(o->data.data, o->data.len + len);
	if (d)
		o->data.data = d;
	e = realloc(o->extents, (o->n_extents + 2) * sizeof(*e));
	if (e)
		o->extents = e;
	if (!d || !e)
		return -ENOMEM;
	for (uint64_t done = 0; done < len;) {
		ssize_t r = pread(fd, d + o->data.len, len - done, off + done);

		if (r <= 0) /* shrank meanwhile: keep what there is */
			return r < 0 ? -errno : 0;
		if (!done) {
			e[o->n_extents] = off;
			e[o->n_extents + 1] = 0;
			o->n_extents += 2;
		}
		done += r;
		e[o->n_extents - 1] += r;
		o->data.len += r;
	}
	return 0;
}

/* [@off, @end) of @fd less what @l maps of inode (@dev, @ino) into @o. */
static int add_unmapped(int fd, Haul__Img__MemfdFile *o, const struct haul_layout *l, uint64_t off,
			uint64_t end)
{
	while (off < end) {
		uint64_t stop = end;
		bool mapped = false;

		for (size_t i = 0; i < l->n; i++) {
			const struct haul_vma *v = &l->v[i];
			uint64_t ms = v->pgoff, me = v->pgoff + (v->end - v->start);

			if (!(v->flags & HAUL_VMA_SHMEM) || v->dev != o->dev || v->ino != o->ino)
				continue;
			if (ms <= off && off < me) {
				mapped = true;
				stop = me < end ? me : end;
				break;
			}
			if (ms > off && ms < stop)
				stop = ms;
		}
		if (!mapped) {
			int ret = add_bytes(fd, o, off, stop - off);

			if (ret)
				return ret;
		}
		off = stop;
	}
	return 0;
}

static int memfd_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *fo,
		      Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__MemfdFile *o = malloc(sizeof(*o));
	struct haul_layout l;
	char path[64];
	off_t off = 0, size = p->st->st_size;
	int fd, ret;

	if (!o)
		return -ENOMEM;
	haul__img__memfd_file__init(o);
	o->dev = p->st->st_dev;
	o->ino = p->st->st_ino;
	fo->memfd = o;
	for (size_t i = 0; i < nprev; i++)
		if (prev[i]->memfd && prev[i]->memfd->ino == o->ino &&
		    prev[i]->memfd->dev == o->dev)
			return 0; /* its bytes are on the inode's first FileObject */
	ret = haul_layout_read(p->pid, false, &l);
	if (ret)
		return ret;
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)p->pid, p->fd);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		haul_layout_release(&l);
		return -errno;
	}
	o->has_data = true;
	while (!ret && off < size) {
		off_t data = lseek(fd, off, SEEK_DATA), hole;

		if (data < 0)
			break; /* ENXIO: only a hole is left */
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > size)
			hole = size;
		ret = add_unmapped(fd, o, &l, (uint64_t)data, (uint64_t)hole);
		off = hole;
	}
	close(fd);
	haul_layout_release(&l);
	if (!ret && !o->data.data) /* nothing unmapped: an empty, present content */
		o->data.data = malloc(1);
	return !ret && !o->data.data ? -ENOMEM : ret;
}

/* Its part, extents in order and holding exactly its bytes. */
static int memfd_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	const Haul__Img__MemfdFile *m = f->memfd;
	struct rst_extents x;
	uint64_t data;
	int ret;

	if (!m) {
		snprintf(why, wl, "file %u is a memfd without its memfd part", f->id);
		return -EBADMSG;
	}
	x = (struct rst_extents){
		.part = "memfd",
		.beyond = "its data",
		.v = m->extents,
		.n = m->n_extents,
		.size = UINT64_MAX,
		.datalen = m->data.len,
	};
	ret = rst_fd_check_extents(f->id, &x, &data, why, wl);
	if (ret)
		return ret;
	if (data != m->data.len) {
		snprintf(why, wl, "file %u (memfd).data: %zu bytes, its extents name %llu", f->id,
			 m->data.len, (unsigned long long)data);
		return -EBADMSG;
	}
	return 0;
}

static const Haul__Img__ShmObject *object_of(const Haul__Img__ProcessState *ps,
					     const Haul__Img__MemfdFile *m)
{
	for (size_t i = 0; i < ps->n_shm_objects; i++)
		if (ps->shm_objects[i]->dev == m->dev && ps->shm_objects[i]->ino == m->ino)
			return ps->shm_objects[i];
	return NULL;
}

static int memfd_restore(struct rst_target *t, struct rst_fd_rctx *x,
			 const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			 const char *path, int *tmp, bool *shared)
{
	const Haul__Img__MemfdFile *m = f->memfd;
	const Haul__Img__ShmObject *o = object_of(x->ps, m);
	int acc = f->flags & O_ACCMODE;
	long fd;
	int ret;

	(void)path;
	*shared = false;
	if (!o) {
		pr_err("memfd %s of fd %d has no object in the image", f->path, e->fd);
		return -EBADMSG;
	}
	ret = rst_shm_open(t, m->dev, m->ino, acc, &fd);
	if (ret == -ENOENT) {
		ret = rst_shm_memfd_new(t, o, f->path, e->fd, &fd);
		if (!ret && acc != O_RDWR) { /* memfd_create opens O_RDWR: reopen with its mode */
			long rfd;

			ret = rst_shm_open(t, m->dev, m->ino, acc, &rfd);
			rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
			fd = rfd;
		}
	}
	if (!ret && (f->flags & ~(unsigned)(O_ACCMODE | O_CLOEXEC | O_LARGEFILE)))
		ret = rst_rcall(t, SYS_fcntl, fd, F_SETFL, f->flags & ~(unsigned)O_ACCMODE, 0, 0, 0,
				NULL);
	if (!ret)
		*tmp = (int)fd;
	return ret;
}

/* Bytes, size and seals of each memfd an fd holds, from the FileObject that carries its bytes. */
static int memfd_finish(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl)
{
	const Haul__Img__ProcessState *ps = x->ps;

	for (size_t i = 0; i < ps->n_files; i++) {
		const Haul__Img__FileObject *f = ps->files[i];
		const Haul__Img__MemfdFile *m = f->memfd;
		const Haul__Img__ShmObject *o;
		const Haul__Img__FdEntry *e;
		char path[64];
		size_t at = 0;
		int fd, ret = 0;

		if (f->kind != HAUL__IMG__FD_KIND__FD_MEMFD || !m || !m->has_data ||
		    !(o = object_of(ps, m)) || !(e = rst_fd_first(ps, f->id)))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)t->stub, e->fd);
		fd = open(path, O_RDWR | O_CLOEXEC);
		if (fd < 0)
			ret = -errno;
		for (size_t k = 0; !ret && k + 1 < m->n_extents; k += 2) {
			uint64_t off = m->extents[k], len = m->extents[k + 1];

			if (pwrite(fd, m->data.data + at, len, (off_t)off) != (ssize_t)len)
				ret = -EIO;
			at += len;
		}
		if (!ret)
			ret = rst_shm_finish_memfd(t, o, fd);
		if (fd >= 0)
			close(fd);
		if (ret) {
			snprintf(why, wl, "cannot fill memfd %.200s of fd %d: %s", f->path, e->fd,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

const struct rst_fd_ops rst_fd_memfd = {
	.name = "memfd",
	.kind = HAUL__IMG__FD_KIND__FD_MEMFD,
	.version = 4,
	.match = memfd_match,
	.refuse = memfd_refuse,
	.dump = memfd_dump,
	.validate = memfd_validate,
	.restore = memfd_restore,
	.setup = rst_fd_seek,
	.finish = memfd_finish,
};
