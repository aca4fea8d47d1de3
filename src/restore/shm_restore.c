/*
 * shm_restore.c - shared memory objects in the stub: created once, mapped
 * MAP_SHARED|MAP_FIXED at every VMA that names them, finished at resume.
 *
 * A VMA names its object by the source (dev, ino) and shows it from pgoff
 * on (ShmObject, shm_dump.c).  The first VMA of an object seen in a layout
 * creates it, in the stub by injected calls:
 *   memfd  memfd_create(NAME, MFD_ALLOW_SEALING), ftruncate, mmap: the maps
 *          text stays "/memfd:NAME (deleted)";
 *   anon   mmap(MAP_SHARED|MAP_ANONYMOUS) where it is; one at pgoff 0 that
 *          is its object's only VMA is made in place, as the source made it
 *          ("/dev/zero (deleted)", offset 0); others through a scratch
 *          mapping of the object's size, so that the offsets are kept;
 *   SysV   shmget(KEY) after /proc/sys/kernel/shm_next_id = the old shmid,
 *          then shmat(SHM_REMAP) where a whole segment was attached.  When
 *          the key or the id is taken (the source's own segment, on the
 *          same host) the stub moves to a new IPC namespace first, once,
 *          before its first segment, and says so.
 * Every further VMA of the object maps the same object: the stub opens
 * /proc/self/map_files/<a mapping of it> and mmaps that at its pgoff (a
 * partial SysV attachment too: nattch counts shmat only).  The object is
 * found in the stub's maps by the inode it got here (t->shm).
 *
 * The size is known exactly only from the state: pre-copy layouts make an
 * object as large as its VMAs reach.  At resume (rst_shm_finish) memfd and
 * anonymous objects get their size with ftruncate, SysV segments their
 * mode and owners (IPC_SET); a SysV segment whose size is not that of
 * its pages (shmget(10000) maps 12288 bytes) is made again at its exact
 * size, its bytes copied over.  Seals come last: memfd write seals
 * (F_SEAL_WRITE) need every mapping read-only from a read-only open, so
 * such a memfd's VMAs are mapped again read-only from one first.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/vma.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

#ifndef SHM_REMAP
#define SHM_REMAP 040000
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#endif
#ifndef F_GET_SEALS
#define F_GET_SEALS 1034
#endif

#define PAGE_UP(x) (((x) + HAUL_PAGE_SIZE - 1) & ~(uint64_t)(HAUL_PAGE_SIZE - 1))

static struct rst_tshm *tshm_find(struct rst_target *t, uint64_t dev, uint64_t ino)
{
	for (size_t i = 0; i < t->nshm; i++)
		if (t->shm[i].dev == dev && t->shm[i].ino == ino)
			return &t->shm[i];
	return NULL;
}

/* What the stub maps: the first VMA @match takes (with @arg) into *@out.  -ENOENT: none. */
static int stub_vma(struct rst_target *t, bool (*match)(const struct haul_vma *v, uint64_t arg),
		    uint64_t arg, struct haul_vma *out)
{
	struct haul_layout l;
	int ret = haul_layout_read(t->stub, false, &l);

	if (ret)
		return ret;
	ret = -ENOENT;
	for (size_t i = 0; i < l.n; i++)
		if (match(&l.v[i], arg)) {
			*out = l.v[i];
			out->path = NULL; /* released with the layout */
			ret = 0;
			break;
		}
	haul_layout_release(&l);
	return ret;
}

static bool maps_shm_ino(const struct haul_vma *v, uint64_t tino)
{
	return (v->flags & HAUL_VMA_SHMEM) && (v->flags & HAUL_VMA_SHARED) && v->ino == tino;
}

static bool holds_addr(const struct haul_vma *v, uint64_t addr)
{
	return v->start <= addr && addr < v->end;
}

/* A mapping of the object whose inode here is @tino: [*s, *e).  -ENOENT: none left. */
static int stub_find(struct rst_target *t, uint64_t tino, uint64_t *s, uint64_t *e)
{
	struct haul_vma v;
	int ret = stub_vma(t, maps_shm_ino, tino, &v);

	if (!ret) {
		*s = v.start;
		*e = v.end;
	}
	return ret;
}

/* The inode here of the object mapped at @addr in the stub. */
static int stub_ino_at(struct rst_target *t, uint64_t addr, uint64_t *ino)
{
	struct haul_vma v;
	int ret = stub_vma(t, holds_addr, addr, &v);

	if (!ret)
		*ino = v.ino;
	return ret;
}

/* Open, in the stub, the object mapped at [@s, @e) there: *@fd. */
static int stub_open_mapped(struct rst_target *t, uint64_t s, uint64_t e, int oflags, long *fd)
{
	char path[96];
	uint64_t rpath;
	int ret;

	snprintf(path, sizeof(path), "/proc/self/map_files/%" PRIx64 "-%" PRIx64, s, e);
	ret = rst_put_str(t, 0, path, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, oflags | O_CLOEXEC, 0, 0, 0, fd);
	return ret;
}

/* How far the object of @v reaches in layout @l: the size to create it with. */
static uint64_t object_extent(const struct haul_layout *l, const struct haul_vma *v)
{
	uint64_t size = v->pgoff + (v->end - v->start);

	for (size_t i = 0; l && i < l->n; i++) {
		const struct haul_vma *w = &l->v[i];

		if ((w->flags & HAUL_VMA_SHARED) && w->dev == v->dev && w->ino == v->ino &&
		    w->pgoff + (w->end - w->start) > size)
			size = w->pgoff + (w->end - w->start);
	}
	return size;
}

/* Whether @v is the only VMA of its object in @l. */
static bool only_vma(const struct haul_layout *l, const struct haul_vma *v)
{
	for (size_t i = 0; l && i < l->n; i++) {
		const struct haul_vma *w = &l->v[i];

		if (w->start != v->start && (w->flags & HAUL_VMA_SHMEM) && w->dev == v->dev &&
		    w->ino == v->ino)
			return false;
	}
	return true;
}

/* memfd_create(@name) and ftruncate(@size) in the stub: *@fd. */
static int create_memfd(struct rst_target *t, const char *path, uint64_t size, long *fd)
{
	char name[256];
	size_t n = strlen(path + 7);
	uint64_t rname;
	int ret;

	if (n >= 10 && !strcmp(path + 7 + n - 10, " (deleted)"))
		n -= 10;
	/* 249 bytes is memfd_create's limit (NAME_MAX - "memfd:") */
	snprintf(name, sizeof(name), "%.*s", (int)(n < 249 ? n : 249), path + 7);
	ret = rst_put_str(t, 0, name, &rname);
	if (!ret)
		ret = rst_rcall(t, SYS_memfd_create, rname, MFD_ALLOW_SEALING | MFD_CLOEXEC, 0, 0,
				0, 0, fd);
	if (!ret) {
		ret = rst_rcall(t, SYS_ftruncate, *fd, size, 0, 0, 0, 0, NULL);
		if (ret)
			rst_rcall(t, SYS_close, *fd, 0, 0, 0, 0, 0, NULL);
	}
	return ret;
}

/* A shared anonymous object of @size at a scratch address of the stub, open as *@fd. */
static int create_anon(struct rst_target *t, uint64_t size, long *fd)
{
	long at;
	int ret = rst_rcall(t, SYS_mmap, 0, size, PROT_READ | PROT_WRITE,
			    MAP_SHARED | MAP_ANONYMOUS, (uint64_t)-1, 0, &at);

	if (ret)
		return ret;
	ret = stub_open_mapped(t, (uint64_t)at, (uint64_t)at + size, O_RDWR, fd);
	rst_rcall(t, SYS_munmap, (uint64_t)at, size, 0, 0, 0, 0, NULL);
	return ret;
}

/* Write @val to /proc/sys/kernel/shm_next_id as the stub (its IPC namespace). */
static int stub_next_id(struct rst_target *t, uint64_t val)
{
	char num[24];
	uint64_t rpath, rnum;
	long fd;
	int ret;

	snprintf(num, sizeof(num), "%" PRId64, (int64_t)val); /* -1, not 2^64 - 1 (EINVAL) */
	ret = rst_put_str(t, 0, "/proc/sys/kernel/shm_next_id", &rpath);
	if (!ret)
		ret = rst_put_str(t, 128, num, &rnum);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, O_WRONLY | O_CLOEXEC, 0, 0, 0, &fd);
	if (ret)
		return ret;
	ret = rst_rcall(t, SYS_write, fd, rnum, strlen(num), 0, 0, 0, NULL);
	rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
	return ret;
}

/* shmget(@key, @size) with id @id in the stub's IPC namespace; -EEXIST when key or id is taken. */
static int sysv_get(struct rst_target *t, int key, uint64_t id, uint64_t size, long *shmid)
{
	int ret = stub_next_id(t, id);

	if (!ret)
		ret = rst_rcall(t, SYS_shmget, (uint64_t)(int64_t)key, size,
				IPC_CREAT | IPC_EXCL | 0600, 0, 0, 0, shmid);
	if (ret == -EEXIST) {
		stub_next_id(t, (uint64_t)-1);
		return ret;
	}
	if (ret)
		return ret;
	if ((uint64_t)*shmid != id) { /* the id was taken: the kernel gave the next free one */
		rst_rcall(t, SYS_shmctl, *shmid, IPC_RMID, 0, 0, 0, 0, NULL);
		return -EEXIST;
	}
	return 0;
}

/*
 * Whether a SysV segment of layout @l (its key, or its shmid) exists in the
 * stub's IPC namespace: then every segment must go to a new one, decided
 * before the first is made (a segment made here cannot follow).
 */
static bool sysv_any_taken(struct rst_target *t, const struct haul_layout *l)
{
	for (size_t i = 0; l && i < l->n; i++) {
		const struct haul_vma *v = &l->v[i];
		int key;

		if (!(v->flags & HAUL_VMA_SHMEM) || !v->path || strncmp(v->path, "/SYSV", 5))
			continue;
		key = (int)strtoul(v->path + 5, NULL, 16);
		if (rst_rcall(t, SYS_shmctl, v->ino, IPC_STAT, rst_scratch(t), 0, 0, 0, NULL) !=
			    -EINVAL ||
		    (key != IPC_PRIVATE &&
		     rst_rcall(t, SYS_shmget, (uint64_t)(int64_t)key, 0, 0, 0, 0, 0, NULL) == 0))
			return true;
	}
	return false;
}

/* SysV segment of @v (key from its path, id its inode) in the stub: *@shmid. */
static int create_sysv(struct rst_target *t, const struct haul_layout *l, const struct haul_vma *v,
		       uint64_t size, long *shmid)
{
	int key = (int)strtoul(v->path + 5, NULL, 16);
	int ret = !t->ipcns && !t->nsysv && sysv_any_taken(t, l)
			  ? -EEXIST
			  : sysv_get(t, key, v->ino, size, shmid);

	if (ret == -EEXIST && !t->ipcns && !t->nsysv) {
		pr_info("SysV key %#x or shmid %" PRIu64 " of pid %d is taken here; the process "
			"gets a new IPC namespace",
			(unsigned)key, v->ino, (int)t->o.pid);
		ret = rst_rcall(t, SYS_unshare, CLONE_NEWIPC, 0, 0, 0, 0, 0, NULL);
		if (!ret) {
			t->ipcns = true;
			ret = sysv_get(t, key, v->ino, size, shmid);
		}
	}
	if (ret == -EEXIST)
		pr_err("cannot create SysV segment key %#x shmid %" PRIu64 " for pid %d: the key "
		       "or the id is taken in its IPC namespace; remove it (ipcrm -m %" PRIu64
		       ") or restore elsewhere",
		       (unsigned)key, v->ino, (int)t->o.pid, v->ino);
	if (!ret)
		t->nsysv++;
	return ret;
}

static int tshm_add(struct rst_target *t, const struct haul_vma *v, uint64_t s, long shmid,
		    uint64_t size)
{
	struct rst_tshm *n;
	uint64_t tino;
	int ret = stub_ino_at(t, s, &tino);

	if (ret)
		return ret;
	n = tshm_find(t, v->dev, v->ino);
	if (!n) {
		n = realloc(t->shm, (t->nshm + 1) * sizeof(*t->shm));
		if (!n)
			return -ENOMEM;
		t->shm = n;
		n = &t->shm[t->nshm++];
	}
	n->dev = v->dev;
	n->ino = v->ino;
	n->tino = tino;
	n->gone = false;
	n->shmid = shmid;
	n->size_made = size;
	n->fdnum = -1;
	n->imported = n->finished = false;
	return 0;
}

/* Map [@s, @e) of @v from the object open as @fd in the stub, with @prot. */
static int map_fd_prot(struct rst_target *t, const struct haul_vma *v, uint64_t s, uint64_t e,
		       long fd, uint32_t prot)
{
	long res;
	int ret = rst_rcall(t, SYS_mmap, s, e - s, prot, MAP_SHARED | MAP_FIXED, fd,
			    v->pgoff + (s - v->start), &res);

	rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
	if (!ret && (uint64_t)res != s)
		ret = -EFAULT;
	return ret;
}

/* map_fd_prot, created writable: its pages are written through this mapping. */
static int map_fd(struct rst_target *t, const struct haul_vma *v, uint64_t s, uint64_t e, long fd)
{
	return map_fd_prot(t, v, s, e, fd, rst_create_prot(v));
}

/* Grow the object open at @path (here) to @size, never shrink it; warn on failure. */
static void grow_path(const char *path, uint64_t size)
{
	struct stat st;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && (uint64_t)st.st_size < size && ftruncate(fd, (off_t)size) < 0)
		pr_warn("cannot grow shared memory %s to %" PRIu64 " bytes: %s", path, size,
			strerror(errno));
	close(fd);
}

/*
 * Where object @m is open in its maker: /proc/PID/... as the stubs see it
 * (@in_stub, the tree's PID namespace) and as we do (@here).  -ENOENT: not
 * any more.
 */
static int maker_path(const struct rst_shm_made *m, char *in_stub, char *here, size_t len)
{
	struct rst_tshm *mo = tshm_find(m->t, m->dev, m->ino);
	uint64_t ms, me;

	if (mo && !mo->gone && !stub_find(m->t, mo->tino, &ms, &me)) {
		snprintf(in_stub, len, "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)m->t->o.pid,
			 ms, me);
		snprintf(here, len, "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)m->t->stub, ms,
			 me);
		return 0;
	}
	if (!mo || mo->fdnum < 0)
		return -ENOENT;
	snprintf(in_stub, len, "/proc/%d/fd/%d", (int)m->t->o.pid, mo->fdnum);
	snprintf(here, len, "/proc/%d/fd/%d", (int)m->t->stub, mo->fdnum);
	return 0;
}

/*
 * Open, in stub @t, object @m that another target of the tree made; *@seals:
 * its seals.  @grow: the size @t's VMAs need, while its maker has not set
 * the object's own (a live restore lays them out in any order).
 */
static int maker_open(struct rst_target *t, const struct rst_shm_made *m, int oflags, long *fd,
		      uint32_t *seals, uint64_t grow)
{
	struct rst_tshm *mo = tshm_find(m->t, m->dev, m->ino);
	char in_stub[128], here[128];
	uint64_t rpath;
	int ret = maker_path(m, in_stub, here, sizeof(in_stub)), lfd, got;

	if (ret)
		return ret;
	if (grow && mo && !mo->finished)
		grow_path(here, grow);
	*seals = 0;
	lfd = open(here, O_RDONLY | O_CLOEXEC);
	got = lfd >= 0 ? fcntl(lfd, F_GET_SEALS) : -1;
	*seals = got > 0 ? (uint32_t)got : 0;
	if (lfd >= 0)
		close(lfd);
	ret = rst_put_str(t, 0, in_stub, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, oflags | O_CLOEXEC, 0, 0, 0, fd);
	return ret;
}

/*
 * [@s, @e) of @v maps object @m, made by another target of the tree (and,
 * restored in tree order, finished: size, mode, seals, pages): map that
 * one (shm_tree.c).  A whole SysV attachment is a shmat of its shmid
 * (nattch as on the source), the rest an mmap of the maker's object; a
 * write-sealed memfd only read-only, from a read-only open.
 */
static int shm_import(struct rst_target *t, const struct haul_layout *l, const struct haul_vma *v,
		      uint64_t s, uint64_t e, const struct rst_shm_made *m)
{
	struct rst_tshm *mo = tshm_find(m->t, m->dev, m->ino), *n;
	bool sysv = rst_shm_kind(v->path) == HAUL__IMG__SHM_KIND__SHM_SYSV;
	long fd = -1, res, shmid = sysv && mo ? mo->shmid : -1;
	uint32_t seals = 0, prot = rst_create_prot(v);
	int ret;

	if (sysv && shmid >= 0 && v->pgoff == 0 && s == v->start && e == v->end &&
	    e - s == PAGE_UP(mo->size_made)) {
		ret = rst_rcall(t, SYS_shmat, shmid, s, SHM_REMAP, 0, 0, 0, &res);
		if (!ret && (uint64_t)res != s)
			ret = -EFAULT;
		if (!ret && prot != (PROT_READ | PROT_WRITE))
			ret = rst_rcall(t, SYS_mprotect, s, e - s, prot, 0, 0, 0, NULL);
	} else {
		ret = maker_open(t, m, O_RDWR, &fd, &seals, PAGE_UP(object_extent(l, v)));
		if (!ret && (seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))) {
			/* sealed by its maker: no writable mapping any more, as on the source */
			rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
			prot = v->prot;
			ret = (v->prot & PROT_WRITE) ? -EPERM
						     : maker_open(t, m, O_RDONLY, &fd, &seals, 0);
		}
		if (!ret)
			ret = map_fd_prot(t, v, s, e, fd, prot);
	}
	if (!ret)
		ret = tshm_add(t, v, s, shmid, mo ? mo->size_made : 0);
	if (!ret) {
		n = tshm_find(t, v->dev, v->ino);
		n->imported = true;
	}
	if (ret)
		pr_err_r(ret,
			 "cannot map shared memory %s (inode %" PRIu64 ") at %#" PRIx64
			 " of pid %d from pid %d of its tree",
			 v->path ? v->path : "/dev/zero", v->ino, s, (int)t->o.pid,
			 (int)m->t->o.pid);
	return ret;
}

/*
 * Grow the object mapped at [@ms, @me) of the stub to @size, never shrink
 * it (its size is set exactly at resume; a smaller layout must not cut
 * bytes an fd still reaches).  A failure shows when the pages are written.
 */
static void grow_to(struct rst_target *t, uint64_t ms, uint64_t me, uint64_t size)
{
	char path[96];

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)t->stub, ms,
		 me);
	grow_path(path, size);
}

/* rst_shm_map; @exact: the size to create the object with, 0: as far as its VMAs reach. */
static int shm_map(struct rst_target *t, const struct haul_layout *l, const struct haul_vma *v,
		   uint64_t s, uint64_t e, uint64_t exact)
{
	Haul__Img__ShmKind kind = rst_shm_kind(v->path);
	struct rst_tshm *o = tshm_find(t, v->dev, v->ino);
	uint64_t size = exact ? exact : PAGE_UP(object_extent(l, v)), ms, me;
	bool whole = v->pgoff == 0 && s == v->start && e == v->end && only_vma(l, v);
	const struct rst_shm_made *m = rst_shm_tree_maker(t, v->dev, v->ino);
	long fd = -1, shmid = -1, res;
	int ret;

	/* the tree's segments are where an earlier process made them */
	if (kind == HAUL__IMG__SHM_KIND__SHM_SYSV) {
		ret = rst_shm_tree_join_ipc(t);
		if (ret)
			return ret;
	}
	/* another process of the tree made it: the same object again */
	if (m && (!o || o->imported))
		return shm_import(t, l, v, s, e, m);
	if (o && !o->gone && !stub_find(t, o->tino, &ms, &me)) {
		/* another VMA of the object exists: map the same object */
		if (kind != HAUL__IMG__SHM_KIND__SHM_SYSV)
			grow_to(t, ms, me, size);
		ret = stub_open_mapped(t, ms, me, O_RDWR, &fd);
		return ret ? ret : map_fd(t, v, s, e, fd);
	}
	switch (kind) {
	case HAUL__IMG__SHM_KIND__SHM_MEMFD:
		ret = create_memfd(t, v->path, size, &fd);
		if (!ret)
			ret = map_fd(t, v, s, e, fd);
		break;
	case HAUL__IMG__SHM_KIND__SHM_SYSV:
		/* the source's layout names its exact size: no remake at resume */
		if (!exact && v->shm_size)
			size = v->shm_size;
		ret = create_sysv(t, l, v, size, &shmid);
		if (ret)
			return ret;
		if (whole && PAGE_UP(size) == e - s) {
			ret = rst_rcall(t, SYS_shmat, shmid, s, SHM_REMAP, 0, 0, 0, &res);
			if (!ret && (uint64_t)res != s)
				ret = -EFAULT;
			if (!ret && rst_create_prot(v) != (PROT_READ | PROT_WRITE))
				ret = rst_rcall(t, SYS_mprotect, s, e - s, rst_create_prot(v), 0, 0,
						0, NULL);
			break;
		}
		ret = rst_rcall(t, SYS_shmat, shmid, 0, 0, 0, 0, 0, &res);
		if (ret)
			break;
		ret = stub_open_mapped(t, (uint64_t)res, (uint64_t)res + PAGE_UP(size), O_RDWR,
				       &fd);
		if (!ret)
			ret = map_fd(t, v, s, e, fd);
		rst_rcall(t, SYS_shmdt, (uint64_t)res, 0, 0, 0, 0, 0, NULL);
		break;
	default:
		if (whole) {
			ret = rst_rcall(t, SYS_mmap, s, e - s, rst_create_prot(v),
					MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, (uint64_t)-1, 0,
					&res);
			if (!ret && (uint64_t)res != s)
				ret = -EFAULT;
			break;
		}
		ret = create_anon(t, size, &fd);
		if (!ret)
			ret = map_fd(t, v, s, e, fd);
		break;
	}
	if (!ret)
		ret = tshm_add(t, v, s, shmid, size);
	if (!ret) /* the other processes of a tree map this one */
		ret = rst_shm_tree_made(t, v->dev, v->ino);
	return ret;
}

int rst_shm_map(struct rst_target *t, const struct haul_layout *l, const struct haul_vma *v,
		uint64_t s, uint64_t e)
{
	return shm_map(t, l, v, s, e, 0);
}

/* @len bytes between @buf and the stub at @addr, in large process_vm calls. */
static int stub_copy(struct rst_target *t, uint64_t addr, char *buf, uint64_t len, bool to_stub)
{
	for (uint64_t done = 0; done < len;) {
		uint64_t n = len - done < (64 << 20) ? len - done : (64 << 20);
		struct iovec l = {buf + done, n}, r = {(void *)(uintptr_t)(addr + done), n};
		ssize_t got = to_stub ? process_vm_writev(t->stub, &l, 1, &r, 1, 0)
				      : process_vm_readv(t->stub, &l, 1, &r, 1, 0);

		if (got <= 0)
			return got < 0 ? -errno : -EIO;
		done += (uint64_t)got;
	}
	return 0;
}

/*
 * SysV segment @o was made as large as its pages (pre-copy knew no more):
 * make it again at its exact size, with the same key, id and bytes.
 */
static int sysv_resize(struct rst_target *t, struct rst_tshm *ts, const Haul__Img__ShmObject *o)
{
	uint64_t old = 0, len;
	long at;
	char *buf = NULL;
	int ret;

	for (size_t i = 0; i < t->n; i++)
		if (t->v[i].v.dev == o->dev && t->v[i].v.ino == o->ino &&
		    t->v[i].v.pgoff + (t->v[i].v.end - t->v[i].v.start) > old)
			old = t->v[i].v.pgoff + (t->v[i].v.end - t->v[i].v.start);
	len = old < PAGE_UP(o->size) ? old : PAGE_UP(o->size);
	ret = rst_rcall(t, SYS_shmat, ts->shmid, 0, SHM_RDONLY, 0, 0, 0, &at);
	if (ret)
		return ret;
	buf = malloc(len ? len : 1);
	ret = buf ? stub_copy(t, (uint64_t)at, buf, len, false) : -ENOMEM;
	rst_rcall(t, SYS_shmdt, (uint64_t)at, 0, 0, 0, 0, 0, NULL);
	for (size_t i = 0; i < t->n && !ret; i++)
		if (t->v[i].v.dev == o->dev && t->v[i].v.ino == o->ino)
			ret = rst_rcall(t, SYS_munmap, t->v[i].v.start,
					t->v[i].v.end - t->v[i].v.start, 0, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_shmctl, ts->shmid, IPC_RMID, 0, 0, 0, 0, NULL);
	ts->gone = true; /* the first VMA below creates it again */
	t->nsysv--;
	for (size_t i = 0; i < t->n && !ret; i++)
		if (t->v[i].v.dev == o->dev && t->v[i].v.ino == o->ino)
			ret = shm_map(t, NULL, &t->v[i].v, t->v[i].v.start, t->v[i].v.end, o->size);
	if (!ret)
		ret = rst_rcall(t, SYS_shmat, ts->shmid, 0, 0, 0, 0, 0, &at);
	if (!ret) {
		ret = stub_copy(t, (uint64_t)at, buf, len, true);
		rst_rcall(t, SYS_shmdt, (uint64_t)at, 0, 0, 0, 0, 0, NULL);
	}
	free(buf);
	return ret;
}

/* Mode and owners of SysV segment @ts as @o had them (IPC_STAT, then IPC_SET). */
static int sysv_set(struct rst_target *t, const struct rst_tshm *ts, const Haul__Img__ShmObject *o)
{
	struct shmid_ds ds;
	uint64_t at = rst_scratch(t);
	int ret = rst_rcall(t, SYS_shmctl, ts->shmid, IPC_STAT, at, 0, 0, 0, NULL);

	if (!ret)
		ret = rst_peek(t, at, &ds, sizeof(ds));
	if (ret)
		return ret;
	ds.shm_perm.uid = o->sysv_uid;
	ds.shm_perm.gid = o->sysv_gid;
	ds.shm_perm.mode = o->sysv_mode & 0777;
	ret = rst_poke(t, at, &ds, sizeof(ds));
	if (!ret)
		ret = rst_rcall(t, SYS_shmctl, ts->shmid, IPC_SET, at, 0, 0, 0, NULL);
	/* removed on the source (SHM_DEST): gone again once the last attachment goes */
	if (!ret && (o->sysv_mode & SHM_DEST))
		ret = rst_rcall(t, SYS_shmctl, ts->shmid, IPC_RMID, 0, 0, 0, 0, NULL);
	if (!ret && (o->sysv_cuid != o->sysv_uid || o->sysv_cgid != o->sysv_gid))
		pr_warn("SysV segment shmid %" PRIu64 " of pid %d: its creator ids (%u/%u) are "
			"the restorer's now; only the owner can be set",
			o->ino, (int)t->o.pid, o->sysv_cuid, o->sysv_cgid);
	return ret;
}

/*
 * Map every VMA of memfd @o read-only from a read-only open of it, so that
 * no mapping may become writable again (VM_MAYWRITE): F_SEAL_WRITE needs
 * that, and on the source a mapping made after a write seal lacks it.
 */
static int memfd_maps_ro(struct rst_target *t, const Haul__Img__ShmObject *o, uint64_t ms,
			 uint64_t me)
{
	long fd = -1, res;
	int ret = stub_open_mapped(t, ms, me, O_RDONLY, &fd);

	for (size_t i = 0; i < t->n && !ret; i++) {
		const struct haul_vma *v = &t->v[i].v;

		if (v->dev != o->dev || v->ino != o->ino)
			continue;
		if (v->prot & PROT_WRITE) {
			pr_err("memfd %s of pid %d has write seals but VMA %#" PRIx64
			       " maps it writable",
			       o->name, (int)t->o.pid, v->start);
			ret = -EINVAL;
			break;
		}
		ret = rst_rcall(t, SYS_mmap, v->start, v->end - v->start, v->prot,
				MAP_SHARED | MAP_FIXED, fd, v->pgoff, &res);
	}
	if (fd >= 0)
		rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
	return ret;
}

/*
 * Size, seals, mode and owner (memfd_create made it 0777, root's; ids as
 * this host's) of memfd or anonymous object @o, open as @fd here, mapped at
 * [@ms, @me) in the stub (@me 0: not mapped).
 */
static int finish_file(struct rst_target *t, const Haul__Img__ShmObject *o, int fd, uint64_t ms,
		       uint64_t me)
{
	struct stat st;
	uint32_t wseals = F_SEAL_WRITE | F_SEAL_FUTURE_WRITE;
	int ret = 0, cur;

	if (fstat(fd, &st) < 0 || ((uint64_t)st.st_size != o->size && ftruncate(fd, o->size) < 0))
		ret = -errno;
	if (!ret && o->has_uid && o->has_gid && (st.st_uid != o->uid || st.st_gid != o->gid) &&
	    fchown(fd, o->uid, o->gid) < 0)
		ret = -errno;
	if (!ret && o->has_mode && (st.st_mode & 07777) != o->mode && fchmod(fd, o->mode) < 0)
		ret = -errno;
	if (!ret && me && o->kind == HAUL__IMG__SHM_KIND__SHM_MEMFD && (o->seals & wseals))
		ret = memfd_maps_ro(t, o, ms, me);
	/* only those it lacks: another process of a tree may have sealed it (F_SEAL_SEAL) */
	cur = o->kind == HAUL__IMG__SHM_KIND__SHM_MEMFD ? fcntl(fd, F_GET_SEALS) : 0;
	cur = cur < 0 ? 0 : cur;
	if (!ret && o->kind == HAUL__IMG__SHM_KIND__SHM_MEMFD && (o->seals & ~(uint32_t)cur) &&
	    fcntl(fd, F_ADD_SEALS, o->seals & ~(uint32_t)cur) < 0) {
		ret = -errno;
		/* a tree's other stubs still map it writable: sealed once all are ready */
		if (ret == -EBUSY &&
		    !rst_shm_tree_defer_seals(t, o->dev, o->ino, o->seals & ~(uint32_t)cur))
			ret = 0;
	}
	return ret;
}

/* finish_file through /proc/S/map_files of [@ms, @me). */
static int finish_mapped(struct rst_target *t, const Haul__Img__ShmObject *o, uint64_t ms,
			 uint64_t me)
{
	char path[96];
	int fd, ret;

	snprintf(path, sizeof(path), "/proc/%d/map_files/%" PRIx64 "-%" PRIx64, (int)t->stub, ms,
		 me);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ret = finish_file(t, o, fd, ms, me);
	close(fd);
	return ret;
}

/* Whether an fd of @ps holds memfd @o: then its kind (fd_memfd.c) finishes it, data first. */
static bool held_by_fd(const Haul__Img__ProcessState *ps, const Haul__Img__ShmObject *o)
{
	for (size_t i = 0; i < ps->n_files; i++)
		if (ps->files[i]->memfd && ps->files[i]->memfd->dev == o->dev &&
		    ps->files[i]->memfd->ino == o->ino)
			return true;
	return false;
}

int rst_shm_open(struct rst_target *t, uint64_t dev, uint64_t ino, int oflags, long *fd)
{
	struct rst_tshm *o = tshm_find(t, dev, ino);
	char path[64];
	uint64_t ms, me, rpath;
	int ret;

	const struct rst_shm_made *m;
	uint32_t seals;

	if (o && !o->gone && !stub_find(t, o->tino, &ms, &me))
		return stub_open_mapped(t, ms, me, oflags, fd);
	/* made by an earlier process of the tree, not mapped here */
	m = o ? NULL : rst_shm_tree_maker(t, dev, ino);
	if (m)
		return maker_open(t, m, oflags, fd, &seals, 0);
	if (!o || o->fdnum < 0)
		return -ENOENT;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", o->fdnum);
	ret = rst_put_str(t, 0, path, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, oflags | O_CLOEXEC, 0, 0, 0, fd);
	return ret;
}

int rst_shm_memfd_new(struct rst_target *t, const Haul__Img__ShmObject *o, const char *path,
		      int fdnum, long *fd)
{
	char link[64];
	struct stat st;
	struct rst_tshm *n;
	int ret = create_memfd(t, path, o->size, fd);

	if (ret)
		return ret;
	snprintf(link, sizeof(link), "/proc/%d/fd/%ld", (int)t->stub, *fd);
	if (stat(link, &st) < 0)
		return -errno;
	n = realloc(t->shm, (t->nshm + 1) * sizeof(*t->shm));
	if (!n)
		return -ENOMEM;
	t->shm = n;
	n = &t->shm[t->nshm++];
	memset(n, 0, sizeof(*n));
	n->dev = o->dev;
	n->ino = o->ino;
	n->tino = st.st_ino;
	n->shmid = -1;
	n->fdnum = fdnum;
	return rst_shm_tree_made(t, o->dev, o->ino);
}

int rst_shm_finish_memfd(struct rst_target *t, const Haul__Img__ShmObject *o, int fd)
{
	/* its VMAs, if any, were made read-only at resume (rst_shm_finish): size and seals */
	return finish_file(t, o, fd, 0, 0);
}

int rst_shm_posix_create(struct rst_target *t, const struct haul_layout *l,
			 const struct haul_vma *v)
{
	char **n;
	int fd = open(v->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);

	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)object_extent(l, v)) < 0) {
		int ret = -errno;

		close(fd);
		unlink(v->path);
		return ret;
	}
	close(fd);
	n = realloc(t->posix, (t->nposix + 1) * sizeof(*n));
	if (!n || !(n[t->nposix] = strdup(v->path))) {
		if (n)
			t->posix = n;
		return -ENOMEM;
	}
	t->posix = n;
	t->nposix++;
	pr_info("POSIX shared memory %s of pid %d is not on this host: recreated from its mapped "
		"pages",
		v->path, (int)t->o.pid);
	return 0;
}

bool rst_shm_posix_ours(const struct rst_target *t, const char *path)
{
	for (size_t i = 0; path && i < t->nposix; i++)
		if (!strcmp(t->posix[i], path))
			return true;
	return false;
}

/* POSIX shm @o: recreated by us (size, mode, owner), or found here (it must be the same). */
static int finish_posix(struct rst_target *t, const Haul__Img__ShmObject *o, char *why, size_t wl)
{
	struct stat st;
	int fd;

	if (!rst_shm_posix_ours(t, o->name)) {
		if (stat(o->name, &st) == 0 && (uint64_t)st.st_size != o->size) {
			snprintf(why, wl,
				 "POSIX shared memory %.200s exists here and differs (%lld bytes, "
				 "the source had %" PRIu64 "); remove it or make it the same",
				 o->name, (long long)st.st_size, o->size);
			return -EEXIST;
		}
		return 0;
	}
	if (!o->covered) {
		snprintf(why, wl,
			 "POSIX shared memory %.200s is not on this host and only its mapped "
			 "parts travelled; copy the file here first",
			 o->name);
		return -ENOENT;
	}
	fd = open(o->name, O_RDWR | O_CLOEXEC);
	if (fd < 0 || ftruncate(fd, (off_t)o->size) < 0 || fchown(fd, o->uid, o->gid) < 0 ||
	    fchmod(fd, o->mode) < 0) {
		snprintf(why, wl, "cannot recreate POSIX shared memory %.200s: %s", o->name,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	close(fd);
	return 0;
}

int rst_shm_finish(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	for (size_t i = 0; i < ps->n_shm_objects; i++) {
		const Haul__Img__ShmObject *o = ps->shm_objects[i];
		struct rst_tshm *ts = tshm_find(t, o->dev, o->ino);
		uint64_t ms, me;
		int ret = 0;

		if (ts) /* its size is its own from now on: nobody grows it (maker_open) */
			ts->finished = true;
		if (o->kind == HAUL__IMG__SHM_KIND__SHM_POSIX) {
			ret = finish_posix(t, o, why, wl);
			if (ret)
				return ret;
			continue;
		}
		if (!ts || ts->gone || stub_find(t, ts->tino, &ms, &me))
			continue; /* no VMA maps it: an fd's, fd_memfd.c finishes it */
		if (ts->imported) {
			/* its maker finished it; a write seal needs this one's mappings read-only */
			if (o->kind == HAUL__IMG__SHM_KIND__SHM_MEMFD &&
			    (o->seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)))
				ret = memfd_maps_ro(t, o, ms, me);
			if (ret) {
				snprintf(why, wl, "cannot map memfd %s read-only: %s", o->name,
					 strerror(-ret));
				return ret;
			}
			continue;
		}
		/* post-copy fills pages after this, and makes holes first: both need writes */
		if (o->kind == HAUL__IMG__SHM_KIND__SHM_MEMFD && t->o.before_resume &&
		    (o->seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))) {
			snprintf(
				why, wl,
				"memfd %s of pid %d has write seals: post-copy cannot fill it after "
				"the resume; move it with pre-copy or stop-and-copy",
				o->name, (int)t->o.pid);
			return -EOPNOTSUPP;
		}
		if (held_by_fd(ps, o)) {
			/*
			 * fd_memfd.c writes its unmapped bytes once every fd
			 * exists, then seals it; a write seal's read-only
			 * mappings are made here, before post-copy registers
			 * them (mapping again after would drop that).
			 */
			if (o->seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
				ret = memfd_maps_ro(t, o, ms, me);
			if (ret) {
				snprintf(why, wl, "cannot map memfd %s read-only: %s", o->name,
					 strerror(-ret));
				return ret;
			}
			continue;
		}
		if (o->kind == HAUL__IMG__SHM_KIND__SHM_SYSV) {
			if (ts->size_made != o->size)
				ret = sysv_resize(t, ts, o);
			if (!ret)
				ret = sysv_set(t, ts, o);
		} else {
			ret = finish_mapped(t, o, ms, me);
		}
		if (ret) {
			snprintf(why, wl, "cannot finish shared memory %s (inode %" PRIu64 "): %s",
				 o->name				    ? o->name
				 : o->kind == HAUL__IMG__SHM_KIND__SHM_SYSV ? "SysV segment"
									    : "/dev/zero",
				 o->ino, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

int rst_shm_tree_seal(struct rst_shm_tree *s, char *why, size_t wl)
{
	for (size_t i = 0; s && i < s->n; i++) {
		struct rst_shm_made *m = &s->m[i];
		char in_stub[128], here[128];
		int fd, cur, ret = 0;

		if (!m->seals)
			continue;
		ret = maker_path(m, in_stub, here, sizeof(here));
		fd = ret ? -1 : open(here, O_RDWR | O_CLOEXEC);
		if (!ret && fd < 0)
			ret = -errno;
		cur = fd >= 0 ? fcntl(fd, F_GET_SEALS) : 0;
		cur = cur < 0 ? 0 : cur;
		if (!ret && (m->seals & ~(uint32_t)cur) &&
		    fcntl(fd, F_ADD_SEALS, m->seals & ~(uint32_t)cur) < 0)
			ret = -errno;
		if (fd >= 0)
			close(fd);
		if (ret) {
			snprintf(why, wl,
				 "cannot seal the memfd (inode %" PRIu64
				 ") pid %d and others of its "
				 "tree map: %s",
				 m->ino, (int)m->t->o.pid, strerror(-ret));
			return ret;
		}
		m->seals = 0;
	}
	return 0;
}

void rst_shm_release(struct rst_target *t)
{
	for (size_t i = 0; i < t->nposix; i++)
		free(t->posix[i]);
	free(t->posix);
	t->posix = NULL;
	t->nposix = 0;
	free(t->shm);
	t->shm = NULL;
	t->nshm = 0;
}
