/*
 * shm_dump.c - the shared memory objects of a process, for the image.
 *
 * A shmem object (a MAP_SHARED anonymous mapping, a memfd, a SysV segment)
 * is an inode: every VMA that maps it names it by (dev, ino) and shows its
 * pages from pgoff on; a memfd fd names it by the same inode.  One
 * ShmObject per inode records what the pages do not: the size, a memfd's
 * name and seals, a SysV segment's key, id, mode and owners.  The pages
 * travel as the VMAs' pages, tracked by the tracker like private memory;
 * the restorer creates the object once and maps it at every VMA
 * (shm_restore.c).  The object is opened through /proc/PID/map_files (or
 * /proc/PID/fd for a memfd only held open) to fstat and F_GET_SEALS it; a
 * SysV segment's attributes come from /proc/sysvipc/shm of the process's
 * IPC namespace, where its shmid is the inode number.  POSIX shm (a file
 * under /dev/shm mapped MAP_SHARED) is a file the target may lack: its
 * ShmObject records path, size, mode, owner and whether the mappings cover
 * it all (shm_restore.c recreates it from the mapped pages if absent).
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/vma.h"
#include "restore/restore_int.h"

#ifndef F_GET_SEALS
#define F_GET_SEALS 1034
#endif

struct rst_shm_buf {
	Haul__Img__ShmObject *o;
	Haul__Img__ShmObject **op;
	size_t n;
	char **names;
};

void rst_shm_buf_free(struct rst_shm_buf *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->names[i]);
	free(b->names);
	free(b->o);
	free(b->op);
	free(b);
}

Haul__Img__ShmKind rst_shm_kind(const char *path)
{
	if (path && !strncmp(path, "/SYSV", 5))
		return HAUL__IMG__SHM_KIND__SHM_SYSV;
	if (path && !strncmp(path, "/memfd:", 7))
		return HAUL__IMG__SHM_KIND__SHM_MEMFD;
	return HAUL__IMG__SHM_KIND__SHM_ANON;
}

/* The name a memfd was created with: "/memfd:NAME (deleted)" -> NAME. */
static char *memfd_name(const char *path)
{
	size_t n = strlen(path + 7);

	if (n >= 10 && !strcmp(path + 7 + n - 10, " (deleted)"))
		n -= 10;
	return strndup(path + 7, n);
}

/* Key, mode and owners of SysV segment @o->ino from /proc/sysvipc/shm. */
static int sysv_attrs(pid_t pid, Haul__Img__ShmObject *o)
{
	char *text, *line, *save = NULL;
	int ret = rst_ipc_read(pid, "shm", &text);

	if (ret)
		return ret;
	ret = -ENOENT;
	line = strtok_r(text, "\n", &save); /* the header */
	while ((line = strtok_r(NULL, "\n", &save))) {
		/* key shmid perms size cpid lpid nattch uid gid cuid cgid ... */
		int key;
		unsigned long long id, size;
		unsigned mode, uid, gid, cuid, cgid;

		if (sscanf(line, "%d %llu %o %llu %*d %*d %*u %u %u %u %u", &key, &id, &mode, &size,
			   &uid, &gid, &cuid, &cgid) != 8 ||
		    id != o->ino)
			continue;
		o->has_sysv_key = o->has_sysv_mode = o->has_sysv_uid = o->has_sysv_gid = true;
		o->has_sysv_cuid = o->has_sysv_cgid = true;
		o->sysv_key = key;
		o->sysv_mode = mode;
		o->sysv_uid = uid;
		o->sysv_gid = gid;
		o->sysv_cuid = cuid;
		o->sysv_cgid = cgid;
		o->size = size;
		ret = 0;
		break;
	}
	free(text);
	if (ret)
		pr_err("SysV segment shmid %" PRIu64 " of pid %d is not in its IPC namespace's "
		       "/proc/sysvipc/shm",
		       o->ino, (int)pid);
	return ret;
}

/* Fill @o from the object open at @path (map_files or fd link) of @pid, named by @vpath. */
static int object_attrs(pid_t pid, const char *path, const char *vpath, Haul__Img__ShmObject *o,
			char **name)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC), seals, ret = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open shared memory %s of pid %d at %s", vpath, (int)pid,
			 path);
		if (fd >= 0)
			close(fd);
		return ret;
	}
	o->size = (uint64_t)st.st_size;
	if (o->kind == HAUL__IMG__SHM_KIND__SHM_MEMFD) {
		seals = fcntl(fd, F_GET_SEALS);
		/* EINVAL: created without MFD_ALLOW_SEALING, which F_SEAL_SEAL stands for */
		o->has_seals = true;
		o->seals = seals >= 0 ? (uint32_t)seals : F_SEAL_SEAL;
		o->has_mode = o->has_uid = o->has_gid = true; /* fchmod, fchown */
		o->mode = st.st_mode & 07777;
		o->uid = st.st_uid;
		o->gid = st.st_gid;
		*name = memfd_name(vpath);
		o->name = *name;
		if (!*name)
			ret = -ENOMEM;
	}
	close(fd);
	if (!ret && o->kind == HAUL__IMG__SHM_KIND__SHM_SYSV)
		ret = sysv_attrs(pid, o);
	return ret;
}

static bool known(const struct rst_shm_buf *b, uint64_t dev, uint64_t ino)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->o[i].dev == dev && b->o[i].ino == ino)
			return true;
	return false;
}

static int add_object(struct rst_shm_buf *b, pid_t pid, const char *path, const char *vpath,
		      uint64_t dev, uint64_t ino)
{
	Haul__Img__ShmObject *o = &b->o[b->n];
	int ret;

	haul__img__shm_object__init(o);
	o->kind = rst_shm_kind(vpath);
	o->dev = dev;
	o->ino = ino;
	b->names[b->n] = NULL;
	ret = object_attrs(pid, path, vpath, o, &b->names[b->n]);
	b->op[b->n] = o;
	b->n++;
	return ret;
}

/* Whether the VMAs of @l cover [0, @size) of the file (@dev, @ino). */
static bool covered(const struct haul_layout *l, uint64_t dev, uint64_t ino, uint64_t size)
{
	uint64_t at = 0;

	for (bool moved = true; moved && at < size;) {
		moved = false;
		for (size_t i = 0; i < l->n; i++) {
			const struct haul_vma *v = &l->v[i];
			uint64_t e = v->pgoff + (v->end - v->start);

			if (v->dev == dev && v->ino == ino && v->pgoff <= at && e > at) {
				at = e;
				moved = true;
			}
		}
	}
	return at >= size;
}

/* POSIX shm: a file under /dev/shm that @v maps shared. */
static int add_posix(struct rst_shm_buf *b, pid_t pid, const struct haul_layout *l,
		     const struct haul_vma *v)
{
	Haul__Img__ShmObject *o = &b->o[b->n];
	char path[96];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid, v->start,
		 v->end);
	if (stat(path, &st) < 0) {
		pr_err("cannot stat POSIX shared memory %s of pid %d: %s", v->path, (int)pid,
		       strerror(errno));
		return -errno;
	}
	haul__img__shm_object__init(o);
	o->kind = HAUL__IMG__SHM_KIND__SHM_POSIX;
	o->dev = v->dev;
	o->ino = v->ino;
	o->size = (uint64_t)st.st_size;
	o->has_mode = o->has_uid = o->has_gid = o->has_covered = true;
	o->mode = st.st_mode & 07777;
	o->uid = st.st_uid;
	o->gid = st.st_gid;
	o->covered = covered(l, v->dev, v->ino, o->size);
	b->names[b->n] = strdup(v->path);
	o->name = b->names[b->n];
	b->op[b->n++] = o;
	return o->name ? 0 : -ENOMEM;
}

/* The ranges rst_shm_data() collects: start, end pairs. */
struct data_ranges {
	uint64_t *r;
	size_t cnt, cap;
};

static int add_range(void *arg, uint64_t start, uint64_t end)
{
	struct data_ranges *x = arg;

	if (x->cnt + 2 > x->cap) {
		size_t cap = x->cap ? 2 * x->cap : 16;
		uint64_t *nr = realloc(x->r, cap * sizeof(*nr));

		if (!nr)
			return -ENOMEM;
		x->r = nr;
		x->cap = cap;
	}
	x->r[x->cnt++] = start;
	x->r[x->cnt++] = end;
	return 0;
}

int rst_shm_data(pid_t pid, const struct haul_vma *v, uint64_t **out, size_t *n)
{
	struct data_ranges x = {0};
	int ret = haul_vma_data_walk(pid, v, add_range, &x);

	if (ret) {
		free(x.r);
		*out = NULL;
		*n = 0;
		return ret;
	}
	*out = x.r;
	*n = x.cnt / 2;
	return 0;
}

bool rst_shm_posix_path(const char *path)
{
	return path && !strncmp(path, "/dev/shm/", 9);
}

int rst_shm_dump(pid_t pid, const struct haul_layout *l, Haul__Img__ProcessState *ps,
		 struct rst_shm_buf **out)
{
	struct rst_shm_buf *b = calloc(1, sizeof(*b));
	size_t max = l->n + ps->n_files;
	char path[96];
	int ret = 0;

	*out = b;
	if (!b)
		return -ENOMEM;
	b->o = calloc(max ? max : 1, sizeof(*b->o));
	b->op = calloc(max ? max : 1, sizeof(*b->op));
	b->names = calloc(max ? max : 1, sizeof(*b->names));
	if (!b->o || !b->op || !b->names)
		return -ENOMEM;
	for (size_t i = 0; i < l->n && !ret; i++) {
		const struct haul_vma *v = &l->v[i];

		if ((v->flags & HAUL_VMA_FILE) && (v->flags & HAUL_VMA_SHARED) &&
		    !(v->flags & (HAUL_VMA_SHMEM | HAUL_VMA_DELETED)) &&
		    rst_shm_posix_path(v->path) && !known(b, v->dev, v->ino)) {
			ret = add_posix(b, pid, l, v);
			continue;
		}
		if (!(v->flags & HAUL_VMA_SHMEM) || !(v->flags & HAUL_VMA_SHARED) ||
		    known(b, v->dev, v->ino))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)pid,
			 v->start, v->end);
		ret = add_object(b, pid, path, v->path ? v->path : "/dev/zero", v->dev, v->ino);
	}
	for (size_t i = 0; i < ps->n_files && !ret; i++) {
		const Haul__Img__FileObject *f = ps->files[i];
		const Haul__Img__FdEntry *e = NULL;

		if (f->kind != HAUL__IMG__FD_KIND__FD_MEMFD || !f->memfd ||
		    known(b, f->memfd->dev, f->memfd->ino))
			continue;
		for (size_t k = 0; k < ps->n_fds && !e; k++)
			if (ps->fds[k]->file_id == f->id)
				e = ps->fds[k];
		if (!e)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, e->fd);
		ret = add_object(b, pid, path, f->path ? f->path : "/memfd:", f->memfd->dev,
				 f->memfd->ino);
	}
	ps->n_shm_objects = b->n;
	ps->shm_objects = b->op;
	return ret;
}
