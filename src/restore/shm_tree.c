/*
 * shm_tree.c - shared memory between the processes of a tree: stored once,
 * restored as one object that every process maps again.
 *
 * An object is a shmem inode (MAP_SHARED anonymous inherited over fork, a
 * memfd, a SysV segment) or a POSIX shm file, named by the source's (dev,
 * ino) in every process's VMAs (shm_dump.c).  Processes are dumped and
 * restored in tree order (tree_ckpt.c, tree_restore.c).
 *
 * Dump: a process's shared VMA stores only the part of its object (offsets
 * [pgoff, pgoff + len)) that no earlier process's VMA of the same object
 * covered: that process stored every page of the object it maps (its data
 * extents, SEEK_DATA, not only what its page tables hold), so the pages of
 * an object are in the image once, under the first process mapping each
 * part.  A memfd held by fds of several processes (separate open file
 * descriptions) carries its unmapped bytes on the first one only.
 *
 * Restore: the targets of a tree share one table (rst_shm_tree_attach).
 * The first target that makes an object records itself as its maker
 * (rst_shm_tree_made, from shm_restore.c); another target's VMA of it maps
 * that object instead of making one (shm_restore.c shm_import): shmat of
 * the same shmid for a whole SysV attachment (nattch as on the source),
 * else an mmap of /proc/PID/map_files/<a VMA of it> (or /proc/PID/fd/N of
 * a memfd only held open) of the maker, opened in the other stub (PID is
 * in the tree's PID namespace, where the stubs' /proc is).  Only the maker
 * finishes it at its resume (size, mode, owners, IPC_RMID, seals); every
 * process writes the pages it stored.  A memfd write-sealed on the source
 * that other stubs map writable when its maker is made ready (a live
 * restore) gets its seals once every process is ready and has mapped it
 * read-only (rst_shm_tree_seal).  tree_restore.c makes each process
 * ready before the next is laid out, so a later one maps the finished
 * object; a live restore may lay them out in any order.  A target that
 * moved to a new IPC namespace for its segments (shm_restore.c
 * create_sysv) takes every other with it (setns) before their first
 * segment, as they shared one on the source.
 */
#define LOG_PREFIX "tree: "
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/vma.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"
#include "tracker/tracker.h"

/* Pages read per process_vm_readv while storing. */
#define TREE_SHM_CHUNK 256

/* ---- dump ------------------------------------------------------------------ */

struct rst_shm_dump {
	struct {
		uint64_t dev, ino, s, e; /* object offsets [s, e) stored */
	} * c;
	size_t n, cap;
	struct {
		uint64_t dev, ino; /* a memfd whose bytes an fd carried */
	} * fd;
	size_t nfd, capfd;
};

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
	void *g;

	if (n < *cap)
		return 0;
	g = realloc(*p, (*cap ? *cap * 2 : 32) * size);
	if (!g)
		return -ENOMEM;
	*p = g;
	*cap = *cap ? *cap * 2 : 32;
	return 0;
}

static int dump_get(struct rst_share_dump *d, struct rst_shm_dump **out)
{
	if (!d->shm)
		d->shm = calloc(1, sizeof(*d->shm));
	*out = d->shm;
	return d->shm ? 0 : -ENOMEM;
}

void rst_shm_tree_dump_free(struct rst_shm_dump *s)
{
	if (!s)
		return;
	free(s->c);
	free(s->fd);
	free(s);
}

int rst_shm_tree_dumped(struct rst_share_dump *d, Haul__Img__ProcessState *ps)
{
	struct rst_shm_dump *s;
	size_t before;
	int ret = dump_get(d, &s);

	before = ret ? 0 : s->nfd;
	for (size_t i = 0; i < ps->n_files && !ret; i++) {
		Haul__Img__MemfdFile *m = ps->files[i]->memfd;
		bool seen = false;

		if (ps->files[i]->kind != HAUL__IMG__FD_KIND__FD_MEMFD || !m)
			continue;
		for (size_t k = 0; k < before && !seen; k++)
			seen = s->fd[k].dev == m->dev && s->fd[k].ino == m->ino;
		if (seen) {
			/* its bytes travel with the earlier process's fd (same inode) */
			free(m->data.data);
			m->data.data = NULL;
			m->data.len = 0;
			m->has_data = false;
			free(m->extents);
			m->extents = NULL;
			m->n_extents = 0;
			continue;
		}
		ret = grow((void **)&s->fd, &s->capfd, s->nfd, sizeof(*s->fd));
		if (!ret) {
			s->fd[s->nfd].dev = m->dev;
			s->fd[s->nfd++].ino = m->ino;
		}
	}
	return ret;
}

/* A VMA whose pages are its object's: shmem mapped shared, or POSIX shm. */
static bool object_vma(const struct haul_vma *v)
{
	return haul_vma_is_memory(v) && (v->flags & HAUL_VMA_SHARED) &&
	       ((v->flags & HAUL_VMA_SHMEM) || rst_shm_posix_path(v->path));
}

/* The end of the stored range of (@dev, @ino) holding offset @off, or 0 when none does. */
static uint64_t covered_to(const struct rst_shm_dump *s, size_t n, uint64_t dev, uint64_t ino,
			   uint64_t off)
{
	uint64_t to = 0;

	for (bool moved = true; moved;) {
		moved = false;
		for (size_t k = 0; k < n; k++)
			if (s->c[k].dev == dev && s->c[k].ino == ino && s->c[k].s <= off &&
			    off < s->c[k].e && s->c[k].e > to) {
				to = s->c[k].e;
				off = to;
				moved = true;
			}
	}
	return to;
}

/* The next stored offset of (@dev, @ino) at or after @off, below @end (else @end). */
static uint64_t covered_from(const struct rst_shm_dump *s, size_t n, uint64_t dev, uint64_t ino,
			     uint64_t off, uint64_t end)
{
	for (size_t k = 0; k < n; k++)
		if (s->c[k].dev == dev && s->c[k].ino == ino && s->c[k].e > off && s->c[k].s < end)
			end = s->c[k].s > off ? s->c[k].s : off;
	return end;
}

/* What store_vma keeps while it walks one VMA. */
struct store_ctx {
	pid_t pid;
	struct pstore_proc *p;
	struct rst_ckpt_stats *st;
	uint8_t *buf;
	uint64_t lo, hi; /* the addresses to store: not covered by earlier processes */
};

static bool zero_page(const uint8_t *p)
{
	static const uint8_t zero[HAUL_PAGE_SIZE];

	return !memcmp(p, zero, HAUL_PAGE_SIZE);
}

/* Store [@s, @e) of the process: data runs and zero holes, as image.c does. */
static int store_range(struct store_ctx *x, uint64_t s, uint64_t e)
{
	for (uint64_t a = s; a < e;) {
		/* a partial last page (a 56-byte SysV segment still maps one page) counts whole */
		struct trk_range r = {a, (e - a + HAUL_PAGE_SIZE - 1) >> HAUL_PAGE_SHIFT};
		uint32_t i = 0;
		int ret;

		if (r.npages > TREE_SHM_CHUNK)
			r.npages = TREE_SHM_CHUNK;
		ret = trk_read_pages(x->pid, &r, 1, x->buf, NULL);
		if (ret) {
			pr_err_r(ret,
				 "cannot read shared memory %#" PRIx64 "+%" PRIu64 " of pid %d", a,
				 r.npages, (int)x->pid);
			return ret;
		}
		while (i < r.npages) {
			bool zero = zero_page(x->buf + (size_t)i * HAUL_PAGE_SIZE);
			uint32_t j = i + 1;

			while (j < r.npages &&
			       zero_page(x->buf + (size_t)j * HAUL_PAGE_SIZE) == zero)
				j++;
			ret = pstore_put(x->p, a + (uint64_t)i * HAUL_PAGE_SIZE,
					 zero ? NULL : x->buf + (size_t)i * HAUL_PAGE_SIZE, j - i);
			if (ret)
				return ret;
			if (zero)
				x->st->zero_pages += j - i;
			else
				x->st->pages += j - i;
			i = j;
		}
		a += r.npages * HAUL_PAGE_SIZE;
	}
	return 0;
}

/* haul_vma_data_walk: a data extent [@s, @e) of the VMA, clipped to what is stored. */
static int store_extent(void *arg, uint64_t s, uint64_t e)
{
	struct store_ctx *x = arg;

	s = s > x->lo ? s : x->lo;
	e = e < x->hi ? e : x->hi;
	return s < e ? store_range(x, s, e) : 0;
}

/* The pages of object VMA @v that no earlier process stored (@n covered ranges). */
static int store_vma(struct store_ctx *x, const struct rst_shm_dump *s, size_t n,
		     const struct haul_vma *v)
{
	uint64_t end = v->pgoff + (v->end - v->start);

	for (uint64_t off = v->pgoff; off < end;) {
		uint64_t to = covered_to(s, n, v->dev, v->ino, off), stop;
		int ret;

		if (to) {
			off = to;
			continue;
		}
		stop = covered_from(s, n, v->dev, v->ino, off, end);
		x->lo = v->start + (off - v->pgoff);
		x->hi = v->start + (stop - v->pgoff);
		ret = haul_vma_data_walk(x->pid, v, store_extent, x);
		if (ret) {
			pr_err_r(ret,
				 "cannot read which pages of shared memory %#" PRIx64
				 " of pid %d hold data",
				 v->start, (int)x->pid);
			return ret;
		}
		off = stop;
	}
	return 0;
}

int rst_shm_tree_store(struct rst_share_dump *d, pid_t host, const struct haul_layout *l,
		       struct pstore_proc *p, struct rst_ckpt_stats *st)
{
	struct store_ctx x = {.pid = host, .p = p, .st = st};
	struct haul_layout rest = {0};
	struct rst_shm_dump *s;
	size_t earlier;
	int ret = dump_get(d, &s);

	if (ret)
		return ret;
	earlier = s->n;
	rest.v = calloc(l->n ? l->n : 1, sizeof(*rest.v));
	x.buf = malloc(TREE_SHM_CHUNK * HAUL_PAGE_SIZE);
	if (!rest.v || !x.buf)
		ret = -ENOMEM;
	/* everything but the objects' pages, as for a lone process */
	for (size_t i = 0; i < l->n && !ret; i++)
		if (!object_vma(&l->v[i]))
			rest.v[rest.n++] = l->v[i];
	if (!ret)
		ret = rst_store_pages(host, &rest, p, st);
	for (size_t i = 0; i < l->n && !ret; i++) {
		const struct haul_vma *v = &l->v[i];

		if (!object_vma(v))
			continue;
		ret = store_vma(&x, s, earlier, v);
		if (!ret)
			ret = grow((void **)&s->c, &s->cap, s->n, sizeof(*s->c));
		if (!ret) {
			s->c[s->n].dev = v->dev;
			s->c[s->n].ino = v->ino;
			s->c[s->n].s = v->pgoff;
			s->c[s->n++].e = v->pgoff + (v->end - v->start);
		}
	}
	free(rest.v); /* its VMAs are @l's */
	free(x.buf);
	return ret;
}

/* ---- restore --------------------------------------------------------------- */

void rst_shm_tree_attach(struct rst_shm_tree *s, struct rst_target *t)
{
	t->shm_tree = s;
}

const struct rst_shm_made *rst_shm_tree_maker(const struct rst_target *t, uint64_t dev,
					      uint64_t ino)
{
	const struct rst_shm_tree *s = t->shm_tree;

	for (size_t i = 0; s && i < s->n; i++)
		if (s->m[i].dev == dev && s->m[i].ino == ino && s->m[i].t != t)
			return &s->m[i];
	return NULL;
}

int rst_shm_tree_made(struct rst_target *t, uint64_t dev, uint64_t ino)
{
	struct rst_shm_tree *s = t->shm_tree;
	int ret;

	if (!s)
		return 0;
	for (size_t i = 0; i < s->n; i++)
		if (s->m[i].dev == dev && s->m[i].ino == ino)
			return 0; /* made again by its maker (a SysV segment at its exact size) */
	ret = grow((void **)&s->m, &s->cap, s->n, sizeof(*s->m));
	if (ret)
		return ret;
	s->m[s->n++] = (struct rst_shm_made){.dev = dev, .ino = ino, .t = t};
	return 0;
}

int rst_shm_tree_defer_seals(struct rst_target *t, uint64_t dev, uint64_t ino, uint32_t seals)
{
	struct rst_shm_tree *s = t->shm_tree;

	for (size_t i = 0; s && i < s->n; i++)
		if (s->m[i].dev == dev && s->m[i].ino == ino && s->m[i].t == t) {
			s->m[i].seals |= seals;
			return 0;
		}
	return -ENOENT;
}

int rst_shm_tree_join_ipc(struct rst_target *t)
{
	const struct rst_shm_tree *s = t->shm_tree;
	const struct rst_target *in = NULL;
	char path[64];
	uint64_t rpath;
	long fd;
	int ret;

	for (size_t i = 0; s && i < s->n && !in; i++)
		if (s->m[i].t != t && s->m[i].t->ipcns)
			in = s->m[i].t;
	if (!in || t->ipcns)
		return 0;
	/* the tree's segments are in that namespace, as they shared one on the source */
	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", (int)in->o.pid);
	ret = rst_put_str(t, 0, path, &rpath);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, O_RDONLY | O_CLOEXEC, 0, 0, 0, &fd);
	if (!ret) {
		ret = rst_rcall(t, SYS_setns, (uint64_t)fd, CLONE_NEWIPC, 0, 0, 0, 0, NULL);
		rst_rcall(t, SYS_close, (uint64_t)fd, 0, 0, 0, 0, 0, NULL);
	}
	if (ret) {
		pr_err_r(ret, "cannot move pid %d into the IPC namespace of pid %d of its tree",
			 (int)t->o.pid, (int)in->o.pid);
		return ret;
	}
	t->ipcns = true;
	return 0;
}

void rst_shm_tree_release(struct rst_shm_tree *s)
{
	free(s->m);
	memset(s, 0, sizeof(*s));
}
