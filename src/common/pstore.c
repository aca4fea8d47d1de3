/*
 * pstore.c - the page store: pages of processes by (pid, virtual address).
 *
 * In memory, each process has:
 *  - a committed page map and a staged page map: open-addressing hash maps
 *    (linear probing, no deletion: dropping pages rebuilds a map) from page
 *    number to a slot number, or PSTORE_ZERO for a zero page (a hole: no
 *    slot, no bytes);
 *  - slots: 4 KiB cells, in 64 MiB anonymous arenas (memory store) or at
 *    offset slot * 4096 of DIR/<pid>/pages.img (directory store).  Never a
 *    malloc per page;
 *  - a free-slot list.  A slot is reused only when no commit refers to it:
 *    slots a commit superseded are freed after that commit is durable, and
 *    staged slots of an aborted round go straight back.
 * Writes go to staged slots; pstore_commit() merges the staged map into a
 * copy of the committed one, drops pages outside the (new) layout, makes it
 * durable, and only then swaps it in.  So readers only ever see whole
 * commits, and the latest committed round wins.
 *
 * The images directory, per process DIR/<pid>/:
 *   pages.img   page slots, 4096 bytes each, slot n at offset n * 4096.
 *               Bytes past the committed slot count, or in slots no page
 *               map run names, are garbage from an uncommitted round.
 *   index.img   the last commit, all integers little-endian:
 *     offset size
 *          0    8 magic "HAULIDX1"
 *          8    4 version 1
 *         12    4 reserved, 0
 *         16    8 length N of the message that follows
 *         24    8 XXH64 (seed 0) of those N bytes
 *         32    N protobuf haul.wire.ImageIndex (proto/wire.proto): pid,
 *                 comm, round, slot count, layout (Vma list), state blob,
 *                 and the page map as runs (addr, npages, first slot;
 *                 slot ~0 for zero pages; a run's pages are in consecutive
 *                 slots).
 * Commit: fsync(pages.img); write index.img.tmp; fsync it; rename over
 * index.img; fsync DIR/<pid>.  A crash or kill -9 at any point leaves either
 * the old or the new index.img, and each names only slots that were fsynced
 * before it was written.  Loading truncates pages.img to the committed slot
 * count and deletes any index.img.tmp.
 */
#define LOG_PREFIX "pstore: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/validate.h"
#include "common/wire.h"

#define PSTORE_ZERO	 UINT64_MAX
#define PSTORE_IDX_MAGIC "HAULIDX1"
#define PSTORE_IDX_HDR	 32
/* An index larger than this is corrupt (a 64 GiB process with every page its own run). */
#define PSTORE_IDX_MAX (1ull << 31)

struct pmap {
	uint64_t *keys; /* page number + 1; 0 = empty */
	uint64_t *vals; /* slot, or PSTORE_ZERO */
	size_t cap;	/* power of two */
	size_t n;
};

struct u64vec {
	uint64_t *v;
	size_t n, cap;
};

struct pstore_proc {
	struct pstore *store;
	int32_t pid;
	char comm[32];
	uint64_t round;
	bool committed;		       /* an index exists (in memory or on disk) */
	struct pmap map;	       /* committed */
	struct pmap stage;	       /* staged */
	struct haul_layout layout;     /* committed */
	struct haul_layout new_layout; /* staged, when has_new_layout */
	bool has_new_layout;
	void *state;
	size_t state_len;
	void *new_state;
	size_t new_state_len;
	bool has_new_state;
	/* slots */
	uint64_t nslots;       /* high-water mark */
	struct u64vec free;    /* reusable now */
	struct u64vec dropped; /* staged slots overwritten by zero pages: free at commit/abort */
	uint8_t **chunks;      /* memory store */
	size_t nchunks;
	int fd;	   /* pages.img, directory store; -1 in memory */
	int dirfd; /* DIR/<pid>, directory store */
	struct pstore_proc *next;
};

struct pstore {
	char *dir; /* NULL: memory */
	int dirfd;
	struct pstore_proc *procs;
};

/* ---- small containers ----------------------------------------------------------- */

static int vec_push(struct u64vec *v, uint64_t x)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 256;
		uint64_t *n = realloc(v->v, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		v->v = n;
		v->cap = cap;
	}
	v->v[v->n++] = x;
	return 0;
}

static void vec_free(struct u64vec *v)
{
	free(v->v);
	memset(v, 0, sizeof(*v));
}

static size_t pmap_hash(uint64_t key, size_t cap)
{
	return (size_t)((key * 0x9e3779b97f4a7c15ull) >> 20) & (cap - 1);
}

static void pmap_free(struct pmap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

static int pmap_init(struct pmap *m, size_t cap)
{
	size_t c = 64;

	while (c < cap)
		c *= 2;
	m->keys = calloc(c, sizeof(*m->keys));
	m->vals = malloc(c * sizeof(*m->vals));
	m->cap = c;
	m->n = 0;
	if (!m->keys || !m->vals) {
		pmap_free(m);
		return -ENOMEM;
	}
	return 0;
}

/* The value cell of page @pg, or NULL. */
static uint64_t *pmap_find(const struct pmap *m, uint64_t pg)
{
	size_t i;

	if (!m->cap)
		return NULL;
	for (i = pmap_hash(pg + 1, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == pg + 1)
			return &m->vals[i];
		if (m->keys[i] == 0)
			return NULL;
	}
}

static int pmap_grow(struct pmap *m)
{
	struct pmap n;
	int ret = pmap_init(&n, m->cap ? m->cap * 2 : 64);

	if (ret)
		return ret;
	for (size_t i = 0; i < m->cap; i++) {
		size_t j;

		if (!m->keys[i])
			continue;
		for (j = pmap_hash(m->keys[i], n.cap); n.keys[j]; j = (j + 1) & (n.cap - 1))
			;
		n.keys[j] = m->keys[i];
		n.vals[j] = m->vals[i];
		n.n++;
	}
	pmap_free(m);
	*m = n;
	return 0;
}

/*
 * Set page @pg to @val.  *@old gets its previous value (or stays untouched
 * when it was absent: callers preset it).
 */
static int pmap_set(struct pmap *m, uint64_t pg, uint64_t val, uint64_t *old)
{
	size_t i;
	int ret;

	if ((m->n + 1) * 10 > m->cap * 7) {
		ret = pmap_grow(m);
		if (ret)
			return ret;
	}
	for (i = pmap_hash(pg + 1, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->keys[i] == pg + 1) {
			if (old)
				*old = m->vals[i];
			m->vals[i] = val;
			return 0;
		}
		if (m->keys[i] == 0)
			break;
	}
	m->keys[i] = pg + 1;
	m->vals[i] = val;
	m->n++;
	return 0;
}

static int pmap_copy(const struct pmap *src, struct pmap *dst)
{
	int ret = pmap_init(dst, src->cap);

	if (ret || !src->cap)
		return ret;
	memcpy(dst->keys, src->keys, src->cap * sizeof(*src->keys));
	memcpy(dst->vals, src->vals, src->cap * sizeof(*src->vals));
	dst->n = src->n;
	return 0;
}

/* ---- slots --------------------------------------------------------------------------- */

static uint8_t *slot_mem(struct pstore_proc *p, uint64_t slot)
{
	return p->chunks[slot / PSTORE_CHUNK_PAGES] + (slot % PSTORE_CHUNK_PAGES) * HAUL_PAGE_SIZE;
}

static int slot_alloc(struct pstore_proc *p, uint64_t *slot)
{
	if (p->free.n) {
		*slot = p->free.v[--p->free.n];
		return 0;
	}
	if (p->fd < 0 && p->nslots == (uint64_t)p->nchunks * PSTORE_CHUNK_PAGES) {
		uint8_t **c = realloc(p->chunks, (p->nchunks + 1) * sizeof(*c));
		void *m;

		if (!c)
			return -ENOMEM;
		p->chunks = c;
		m = mmap(NULL, PSTORE_CHUNK_PAGES * HAUL_PAGE_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED)
			return -ENOMEM;
		p->chunks[p->nchunks++] = m;
	}
	*slot = p->nslots++;
	return 0;
}

static int slot_write(struct pstore_proc *p, uint64_t slot, const void *data, uint32_t n)
{
	if (p->fd < 0) {
		for (uint32_t i = 0; i < n; i++)
			memcpy(slot_mem(p, slot + i), (const uint8_t *)data + i * HAUL_PAGE_SIZE,
			       HAUL_PAGE_SIZE);
		return 0;
	}
	size_t len = (size_t)n * HAUL_PAGE_SIZE;
	ssize_t w = pwrite(p->fd, data, len, (off_t)(slot * HAUL_PAGE_SIZE));

	if (w < 0) {
		int ret = -errno;
		pr_err_r(ret, "cannot write pages.img of pid %d", p->pid);
		return ret;
	}
	if ((size_t)w != len) {
		pr_err("cannot write pages.img of pid %d: short write (disk full?)", p->pid);
		return -ENOSPC;
	}
	return 0;
}

static int slot_read(struct pstore_proc *p, uint64_t slot, void *buf, uint32_t n)
{
	if (p->fd < 0) {
		for (uint32_t i = 0; i < n; i++)
			memcpy((uint8_t *)buf + i * HAUL_PAGE_SIZE, slot_mem(p, slot + i),
			       HAUL_PAGE_SIZE);
		return 0;
	}
	size_t len = (size_t)n * HAUL_PAGE_SIZE;
	ssize_t r = pread(p->fd, buf, len, (off_t)(slot * HAUL_PAGE_SIZE));

	if (r < 0 || (size_t)r != len) {
		pr_err("cannot read slot %llu of pages.img of pid %d: %s", (unsigned long long)slot,
		       p->pid, r < 0 ? strerror(errno) : "short file");
		return -EIO;
	}
	return 0;
}

/* ---- procs ------------------------------------------------------------------------------ */

static void proc_free(struct pstore_proc *p)
{
	if (!p)
		return;
	pmap_free(&p->map);
	pmap_free(&p->stage);
	haul_layout_release(&p->layout);
	haul_layout_release(&p->new_layout);
	free(p->state);
	free(p->new_state);
	vec_free(&p->free);
	vec_free(&p->dropped);
	for (size_t i = 0; i < p->nchunks; i++)
		munmap(p->chunks[i], PSTORE_CHUNK_PAGES * HAUL_PAGE_SIZE);
	free(p->chunks);
	if (p->fd >= 0)
		close(p->fd);
	if (p->dirfd >= 0)
		close(p->dirfd);
	free(p);
}

static struct pstore_proc *proc_alloc(struct pstore *s, int32_t pid)
{
	struct pstore_proc *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->store = s;
	p->pid = pid;
	p->fd = -1;
	p->dirfd = -1;
	return p;
}

/* Open DIR/<pid>/ and its pages.img, creating them when @create. */
static int proc_open_files(struct pstore_proc *p, bool create)
{
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "%d", p->pid);
	if (create && mkdirat(p->store->dirfd, name, 0700) && errno != EEXIST) {
		ret = -errno;
		pr_err_r(ret, "cannot create %s/%s", p->store->dir, name);
		return ret;
	}
	p->dirfd = openat(p->store->dirfd, name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (p->dirfd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open %s/%s", p->store->dir, name);
		return ret;
	}
	p->fd = openat(p->dirfd, "pages.img", O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
	if (p->fd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open %s/%s/pages.img", p->store->dir, name);
		return ret;
	}
	return 0;
}

int pstore_proc_get(struct pstore *s, int32_t pid, bool create, struct pstore_proc **out)
{
	struct pstore_proc *p;
	int ret;

	for (p = s->procs; p; p = p->next)
		if (p->pid == pid) {
			*out = p;
			return 0;
		}
	if (!create)
		return -ENOENT;
	if (pid <= 0)
		return -EINVAL;
	p = proc_alloc(s, pid);
	if (!p)
		return -ENOMEM;
	if (s->dir) {
		ret = proc_open_files(p, true);
		if (ret) {
			proc_free(p);
			return ret;
		}
	}
	p->next = s->procs;
	s->procs = p;
	*out = p;
	return 0;
}

static int cmp_i32(const void *a, const void *b)
{
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

	return (x > y) - (x < y);
}

size_t pstore_list(struct pstore *s, int32_t *pids, size_t max)
{
	size_t n = 0;

	for (struct pstore_proc *p = s->procs; p; p = p->next) {
		if (!p->committed)
			continue;
		if (n < max)
			pids[n] = p->pid;
		n++;
	}
	qsort(pids, n < max ? n : max, sizeof(*pids), cmp_i32);
	return n;
}

int pstore_proc_remove(struct pstore *s, int32_t pid)
{
	struct pstore_proc **pp, *p;
	char name[16];

	for (pp = &s->procs; *pp && (*pp)->pid != pid; pp = &(*pp)->next)
		;
	p = *pp;
	if (!p)
		return -ENOENT;
	*pp = p->next;
	if (s->dir) {
		unlinkat(p->dirfd, "index.img", 0);
		unlinkat(p->dirfd, "index.img.tmp", 0);
		unlinkat(p->dirfd, "pages.img", 0);
		snprintf(name, sizeof(name), "%d", pid);
		unlinkat(s->dirfd, name, AT_REMOVEDIR);
	}
	proc_free(p);
	return 0;
}

/* ---- staging ---------------------------------------------------------------------------- */

int pstore_set_comm(struct pstore_proc *p, const char *comm)
{
	snprintf(p->comm, sizeof(p->comm), "%s", comm ? comm : "");
	return 0;
}

int pstore_set_layout(struct pstore_proc *p, const struct haul_layout *l)
{
	struct haul_layout n;
	int ret = haul_layout_copy(l, &n);

	if (ret)
		return ret;
	haul_layout_release(&p->new_layout);
	p->new_layout = n;
	p->has_new_layout = true;
	return 0;
}

int pstore_set_state(struct pstore_proc *p, const void *blob, size_t len)
{
	void *b = malloc(len ? len : 1);

	if (!b)
		return -ENOMEM;
	memcpy(b, blob, len);
	free(p->new_state);
	p->new_state = b;
	p->new_state_len = len;
	p->has_new_state = true;
	return 0;
}

static const struct haul_layout *cur_layout(const struct pstore_proc *p)
{
	return p->has_new_layout ? &p->new_layout : &p->layout;
}

/* Pages about to be staged: aligned, inside the announced layout; the stage map exists. */
static int stage_check(struct pstore_proc *p, uint64_t addr, uint32_t npages)
{
	if (addr & (HAUL_PAGE_SIZE - 1) || addr > UINT64_MAX - (uint64_t)npages * HAUL_PAGE_SIZE)
		return -EINVAL;
	if (!haul_layout_covers(cur_layout(p), addr, npages))
		return -ERANGE;
	if (!p->stage.cap)
		return pmap_init(&p->stage, 1024);
	return 0;
}

int pstore_put(struct pstore_proc *p, uint64_t addr, const void *data, uint32_t npages)
{
	uint64_t pg = addr >> HAUL_PAGE_SHIFT;
	int ret;

	ret = stage_check(p, addr, npages);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < npages; i++) {
		uint64_t *cell = pmap_find(&p->stage, pg + i);
		uint64_t slot;

		if (!data) {
			/* Not reusable before the round ends: a direct writer may still own it. */
			if (cell && *cell != PSTORE_ZERO) {
				ret = vec_push(&p->dropped, *cell);
				if (ret)
					return ret;
			}
			if (cell) {
				*cell = PSTORE_ZERO;
				continue;
			}
			ret = pmap_set(&p->stage, pg + i, PSTORE_ZERO, NULL);
			if (ret)
				return ret;
			continue;
		}
		if (cell && *cell != PSTORE_ZERO) {
			slot = *cell;
		} else {
			ret = slot_alloc(p, &slot);
			if (ret)
				return ret;
			if (cell)
				*cell = slot;
			else if ((ret = pmap_set(&p->stage, pg + i, slot, NULL))) {
				vec_push(&p->free, slot);
				return ret;
			}
		}
		/* Pages of one call often land in consecutive fresh slots: write them at once. */
		uint32_t run = 1;
		while (i + run < npages && p->free.n == 0 && p->fd >= 0 &&
		       !pmap_find(&p->stage, pg + i + run) && slot + run == p->nslots) {
			uint64_t s2;

			if ((ret = slot_alloc(p, &s2)) ||
			    (ret = pmap_set(&p->stage, pg + i + run, s2, NULL)))
				return ret;
			run++;
		}
		ret = slot_write(p, slot, (const uint8_t *)data + (size_t)i * HAUL_PAGE_SIZE, run);
		if (ret)
			return ret;
		i += run - 1;
	}
	return 0;
}

bool pstore_direct_ok(const struct pstore_proc *p)
{
	return p->fd < 0;
}

int pstore_put_direct(struct pstore_proc *p, uint64_t addr, uint32_t npages, uint8_t **dst)
{
	uint64_t pg = addr >> HAUL_PAGE_SHIFT;
	int ret;

	if (p->fd >= 0)
		return -EOPNOTSUPP;
	ret = stage_check(p, addr, npages);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < npages; i++) {
		uint64_t *cell = pmap_find(&p->stage, pg + i);
		uint64_t slot;

		if (cell && *cell != PSTORE_ZERO) {
			slot = *cell;
		} else {
			ret = slot_alloc(p, &slot);
			if (ret)
				return ret;
			if (cell) {
				*cell = slot;
			} else if ((ret = pmap_set(&p->stage, pg + i, slot, NULL))) {
				vec_push(&p->free, slot);
				return ret;
			}
		}
		dst[i] = slot_mem(p, slot);
	}
	return 0;
}

/* Staged slots that zero pages replaced become reusable. */
static void release_dropped(struct pstore_proc *p)
{
	for (size_t i = 0; i < p->dropped.n; i++)
		vec_push(&p->free, p->dropped.v[i]);
	p->dropped.n = 0;
}

void pstore_abort(struct pstore_proc *p)
{
	release_dropped(p);
	for (size_t i = 0; i < p->stage.cap; i++)
		if (p->stage.keys[i] && p->stage.vals[i] != PSTORE_ZERO)
			vec_push(&p->free, p->stage.vals[i]);
	pmap_free(&p->stage);
	haul_layout_release(&p->new_layout);
	p->has_new_layout = false;
	free(p->new_state);
	p->new_state = NULL;
	p->new_state_len = 0;
	p->has_new_state = false;
}

/* ---- index ------------------------------------------------------------------------------- */

struct kv {
	uint64_t pg, val;
};

static int cmp_kv(const void *a, const void *b)
{
	const struct kv *x = a, *y = b;

	return (x->pg > y->pg) - (x->pg < y->pg);
}

/* The entries of @m sorted by page: *@out (free()). */
static int pmap_sorted(const struct pmap *m, struct kv **out)
{
	struct kv *kv = malloc((m->n ? m->n : 1) * sizeof(*kv));
	size_t n = 0;

	if (!kv)
		return -ENOMEM;
	for (size_t i = 0; i < m->cap; i++)
		if (m->keys[i])
			kv[n++] = (struct kv){m->keys[i] - 1, m->vals[i]};
	qsort(kv, n, sizeof(*kv), cmp_kv);
	*out = kv;
	return 0;
}

struct run {
	uint64_t pg, npages, slot;
};

/* Coalesce sorted entries into runs: consecutive pages, all zero or consecutive slots. */
static size_t make_runs(const struct kv *kv, size_t n, struct run *runs)
{
	size_t nr = 0;

	for (size_t i = 0; i < n; i++) {
		struct run *r = nr ? &runs[nr - 1] : NULL;

		if (r && r->pg + r->npages == kv[i].pg &&
		    ((r->slot == PSTORE_ZERO && kv[i].val == PSTORE_ZERO) ||
		     (r->slot != PSTORE_ZERO && r->slot + r->npages == kv[i].val))) {
			r->npages++;
			continue;
		}
		runs[nr++] = (struct run){kv[i].pg, 1, kv[i].val};
	}
	return nr;
}

static void put_le64(uint8_t *b, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *b)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t w = write(fd, p, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Write index.img for @m (with @layout/@state) durably: tmp, fsync, rename, fsync dir. */
static int index_write(struct pstore_proc *p, const struct pmap *m, uint64_t round,
		       const struct haul_layout *layout, const void *state, size_t state_len)
{
	Haul__Wire__ImageIndex idx = HAUL__WIRE__IMAGE_INDEX__INIT;
	Haul__Wire__PageRun *runs = NULL, **runp = NULL;
	Haul__Wire__Vma *vmas = NULL, **vmap = NULL;
	Haul__Wire__Layout lm;
	struct run *r = NULL;
	struct kv *kv = NULL;
	uint8_t *buf = NULL;
	size_t nr, len;
	int fd = -1, ret;

	ret = pmap_sorted(m, &kv);
	if (ret)
		return ret;
	r = malloc((m->n ? m->n : 1) * sizeof(*r));
	if (!r) {
		ret = -ENOMEM;
		goto out;
	}
	nr = make_runs(kv, m->n, r);
	runs = calloc(nr ? nr : 1, sizeof(*runs));
	runp = calloc(nr ? nr : 1, sizeof(*runp));
	vmas = calloc(layout->n ? layout->n : 1, sizeof(*vmas));
	vmap = calloc(layout->n ? layout->n : 1, sizeof(*vmap));
	if (!runs || !runp || !vmas || !vmap) {
		ret = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < nr; i++) {
		haul__wire__page_run__init(&runs[i]);
		runs[i].addr = r[i].pg << HAUL_PAGE_SHIFT;
		runs[i].npages = (uint32_t)r[i].npages;
		runs[i].slot = r[i].slot;
		runp[i] = &runs[i];
	}
	wire_layout_to_msg(layout, vmas, vmap, &lm);
	idx.pid = p->pid;
	idx.comm = p->comm;
	idx.round = round;
	idx.nslots = p->nslots;
	idx.n_vmas = lm.n_vmas;
	idx.vmas = lm.vmas;
	idx.has_has_layout = true;
	idx.has_layout = layout->n > 0;
	if (state) {
		idx.has_state = true;
		idx.state.data = (uint8_t *)state;
		idx.state.len = state_len;
	}
	idx.n_runs = nr;
	idx.runs = runp;

	len = haul__wire__image_index__get_packed_size(&idx);
	buf = malloc(PSTORE_IDX_HDR + len);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	haul__wire__image_index__pack(&idx, buf + PSTORE_IDX_HDR);
	memcpy(buf, PSTORE_IDX_MAGIC, 8);
	put_le64(buf + 8, 1); /* version 1, reserved 0 */
	put_le64(buf + 16, len);
	put_le64(buf + 24, XXH64(buf + PSTORE_IDX_HDR, len, 0));

	/* pages.img first: the index must never name bytes that could still be lost. */
	if (fsync(p->fd)) {
		ret = -errno;
		pr_err_r(ret, "cannot fsync pages.img of pid %d", p->pid);
		goto out;
	}
	fd = openat(p->dirfd, "index.img.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot create index.img.tmp of pid %d", p->pid);
		goto out;
	}
	ret = write_all(fd, buf, PSTORE_IDX_HDR + len);
	if (!ret && fsync(fd))
		ret = -errno;
	if (ret) {
		pr_err_r(ret, "cannot write index.img.tmp of pid %d", p->pid);
		goto out;
	}
	if (renameat(p->dirfd, "index.img.tmp", p->dirfd, "index.img")) {
		ret = -errno;
		pr_err_r(ret, "cannot rename index.img.tmp of pid %d", p->pid);
		goto out;
	}
	if (fsync(p->dirfd)) {
		ret = -errno;
		pr_err_r(ret, "cannot fsync the image directory of pid %d", p->pid);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(runs);
	free(runp);
	free(vmas);
	free(vmap);
	free(r);
	free(kv);
	return ret;
}

/* ---- commit ------------------------------------------------------------------------------- */

/* A copy of @m without the pages outside @l; their slots go to @dropped. */
static int pmap_filter(const struct pmap *m, const struct haul_layout *l, struct pmap *out,
		       struct u64vec *dropped)
{
	int ret = pmap_init(out, m->cap / 2 > 64 ? m->cap / 2 : 64);

	if (ret)
		return ret;
	for (size_t i = 0; i < m->cap; i++) {
		uint64_t pg;

		if (!m->keys[i])
			continue;
		pg = m->keys[i] - 1;
		if (haul_layout_find(l, pg << HAUL_PAGE_SHIFT))
			ret = pmap_set(out, pg, m->vals[i], NULL);
		else if (m->vals[i] != PSTORE_ZERO)
			ret = vec_push(dropped, m->vals[i]);
		if (ret) {
			pmap_free(out);
			return ret;
		}
	}
	return 0;
}

int pstore_commit(struct pstore_proc *p, uint64_t round)
{
	struct u64vec superseded = {0};
	struct pmap merged = {0}, filtered;
	const struct haul_layout *l = cur_layout(p);
	int ret;

	if (p->committed && round < p->round) {
		pr_err("cannot commit round %llu of pid %d: round %llu is already committed",
		       (unsigned long long)round, p->pid, (unsigned long long)p->round);
		return -EINVAL;
	}
	ret = pmap_copy(&p->map, &merged);
	if (ret)
		goto fail;
	for (size_t i = 0; i < p->stage.cap; i++) {
		uint64_t old = PSTORE_ZERO;

		if (!p->stage.keys[i])
			continue;
		ret = pmap_set(&merged, p->stage.keys[i] - 1, p->stage.vals[i], &old);
		if (!ret && old != PSTORE_ZERO)
			ret = vec_push(&superseded, old);
		if (ret)
			goto fail;
	}
	if (p->has_new_layout) {
		ret = pmap_filter(&merged, l, &filtered, &superseded);
		if (ret)
			goto fail;
		pmap_free(&merged);
		merged = filtered;
	}
	if (p->fd >= 0) {
		ret = index_write(p, &merged, round, l, p->has_new_state ? p->new_state : p->state,
				  p->has_new_state ? p->new_state_len : p->state_len);
		if (ret)
			goto fail;
	}

	/* Durable: swap in, and only now may superseded slots be reused. */
	pmap_free(&p->map);
	p->map = merged;
	pmap_free(&p->stage);
	for (size_t i = 0; i < superseded.n; i++)
		vec_push(&p->free, superseded.v[i]);
	release_dropped(p);
	vec_free(&superseded);
	if (p->has_new_layout) {
		haul_layout_release(&p->layout);
		p->layout = p->new_layout;
		memset(&p->new_layout, 0, sizeof(p->new_layout));
		p->has_new_layout = false;
	}
	if (p->has_new_state) {
		free(p->state);
		p->state = p->new_state;
		p->state_len = p->new_state_len;
		p->new_state = NULL;
		p->has_new_state = false;
	}
	p->round = round;
	p->committed = true;
	return 0;
fail:
	pmap_free(&merged);
	vec_free(&superseded);
	pstore_abort(p);
	return ret;
}

/* ---- reading ------------------------------------------------------------------------------- */

int32_t pstore_pid(const struct pstore_proc *p)
{
	return p->pid;
}

const char *pstore_comm(const struct pstore_proc *p)
{
	return p->comm;
}

uint64_t pstore_round(const struct pstore_proc *p)
{
	return p->round;
}

const struct haul_layout *pstore_layout(const struct pstore_proc *p)
{
	return &p->layout;
}

const void *pstore_state(const struct pstore_proc *p, size_t *len)
{
	*len = p->state_len;
	return p->state;
}

uint64_t pstore_npages(const struct pstore_proc *p)
{
	return p->map.n;
}

int64_t pstore_read(struct pstore_proc *p, uint64_t addr, uint32_t npages, void *buf)
{
	uint64_t pg = addr >> HAUL_PAGE_SHIFT;
	uint8_t *out = buf;
	int64_t found = 0;
	int ret;

	if (addr & (HAUL_PAGE_SIZE - 1) || addr > UINT64_MAX - (uint64_t)npages * HAUL_PAGE_SIZE)
		return -EINVAL;
	for (uint32_t i = 0; i < npages;) {
		const uint64_t *cell = pmap_find(&p->map, pg + i);
		uint32_t run = 1;

		if (!cell || *cell == PSTORE_ZERO) {
			memset(out + (size_t)i * HAUL_PAGE_SIZE, 0, HAUL_PAGE_SIZE);
			found += cell != NULL;
			i++;
			continue;
		}
		/* Consecutive slots: one pread on disk. */
		while (i + run < npages) {
			const uint64_t *c2 = pmap_find(&p->map, pg + i + run);

			if (!c2 || *c2 != *cell + run)
				break;
			run++;
		}
		ret = slot_read(p, *cell, out + (size_t)i * HAUL_PAGE_SIZE, run);
		if (ret)
			return ret;
		found += run;
		i += run;
	}
	return found;
}

int pstore_walk(struct pstore_proc *p, pstore_walk_fn fn, void *arg)
{
	enum {
		CHUNK = 64
	};
	struct run *r = NULL;
	struct kv *kv = NULL;
	uint8_t *buf = NULL;
	size_t nr;
	int ret;

	ret = pmap_sorted(&p->map, &kv);
	if (ret)
		return ret;
	r = malloc((p->map.n ? p->map.n : 1) * sizeof(*r));
	buf = malloc(CHUNK * HAUL_PAGE_SIZE);
	if (!r || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	nr = make_runs(kv, p->map.n, r);
	for (size_t i = 0; i < nr && !ret; i++) {
		if (r[i].slot == PSTORE_ZERO) {
			ret = fn(arg, r[i].pg << HAUL_PAGE_SHIFT, NULL, (uint32_t)r[i].npages);
			continue;
		}
		for (uint64_t done = 0; done < r[i].npages && !ret;) {
			uint32_t n =
				(uint32_t)(r[i].npages - done < CHUNK ? r[i].npages - done : CHUNK);

			ret = slot_read(p, r[i].slot + done, buf, n);
			if (!ret)
				ret = fn(arg, (r[i].pg + done) << HAUL_PAGE_SHIFT, buf, n);
			done += n;
		}
	}
out:
	free(buf);
	free(r);
	free(kv);
	return ret;
}

/* ---- loading an images directory ---------------------------------------------------------- */

static int index_load(struct pstore_proc *p)
{
	Haul__Wire__ImageIndex *idx = NULL;
	uint8_t hdr[PSTORE_IDX_HDR], *buf = NULL, *used = NULL;
	uint64_t len;
	struct stat st;
	int fd, ret;

	unlinkat(p->dirfd, "index.img.tmp", 0);
	fd = openat(p->dirfd, "index.img", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (pread(fd, hdr, sizeof(hdr), 0) != sizeof(hdr) || memcmp(hdr, PSTORE_IDX_MAGIC, 8) ||
	    get_le64(hdr + 8) != 1) {
		ret = -EBADMSG;
		goto out;
	}
	len = get_le64(hdr + 16);
	if (fstat(fd, &st) || len > PSTORE_IDX_MAX ||
	    (uint64_t)st.st_size != PSTORE_IDX_HDR + len) {
		ret = -EBADMSG;
		goto out;
	}
	buf = malloc(len ? len : 1);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	if (pread(fd, buf, len, PSTORE_IDX_HDR) != (ssize_t)len ||
	    XXH64(buf, len, 0) != get_le64(hdr + 24)) {
		ret = -EBADMSG;
		goto out;
	}
	idx = haul__wire__image_index__unpack(NULL, len, buf);
	if (!idx || fstat(p->fd, &st)) {
		ret = -EBADMSG;
		goto out;
	}
	{
		char why[160];

		if (val_image_index(idx, p->pid, (uint64_t)st.st_size / HAUL_PAGE_SIZE, why,
				    sizeof(why))) {
			pr_err("image of pid %d in %s is corrupt: index.img: %s", p->pid,
			       p->store->dir, why);
			ret = -EBADMSG;
			goto out;
		}
	}
	ret = wire_layout_from_msg(idx->vmas, idx->n_vmas, &p->layout);
	if (ret)
		goto out;
	if (idx->has_state) {
		p->state = malloc(idx->state.len ? idx->state.len : 1);
		if (!p->state) {
			ret = -ENOMEM;
			goto out;
		}
		memcpy(p->state, idx->state.data, idx->state.len);
		p->state_len = idx->state.len;
	}
	snprintf(p->comm, sizeof(p->comm), "%s", idx->comm ? idx->comm : "");
	p->round = idx->round;
	p->nslots = idx->nslots;
	used = calloc(p->nslots / 8 + 1, 1);
	ret = used ? pmap_init(&p->map, 1024) : -ENOMEM;
	for (size_t i = 0; !ret && i < idx->n_runs; i++) {
		const Haul__Wire__PageRun *r = idx->runs[i];

		if (r->addr & (HAUL_PAGE_SIZE - 1) ||
		    (r->slot != PSTORE_ZERO &&
		     (r->slot > p->nslots || r->npages > p->nslots - r->slot))) {
			ret = -EBADMSG;
			break;
		}
		for (uint32_t j = 0; !ret && j < r->npages; j++) {
			uint64_t v = r->slot == PSTORE_ZERO ? PSTORE_ZERO : r->slot + j;

			ret = pmap_set(&p->map, (r->addr >> HAUL_PAGE_SHIFT) + j, v, NULL);
			if (v != PSTORE_ZERO)
				used[v / 8] |= (uint8_t)(1u << (v % 8));
		}
	}
	for (uint64_t s = 0; !ret && s < p->nslots; s++)
		if (!(used[s / 8] & (1u << (s % 8))))
			ret = vec_push(&p->free, s);
	/* Drop the uncommitted tail of pages.img. */
	if (!ret && ftruncate(p->fd, (off_t)(p->nslots * HAUL_PAGE_SIZE)))
		ret = -errno;
	if (!ret)
		p->committed = true;
out:
	if (idx)
		haul__wire__image_index__free_unpacked(idx, NULL);
	free(used);
	free(buf);
	close(fd);
	return ret;
}

static int store_load(struct pstore *s)
{
	DIR *d = fdopendir(dup(s->dirfd));
	struct dirent *de;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct pstore_proc *p;
		char *end;
		long pid = strtol(de->d_name, &end, 10);
		int ret;

		if (*end || pid <= 0 || pid > INT32_MAX || de->d_name[0] == '0')
			continue;
		p = proc_alloc(s, (int32_t)pid);
		if (!p) {
			closedir(d);
			return -ENOMEM;
		}
		ret = proc_open_files(p, false);
		if (!ret)
			ret = index_load(p);
		if (ret == -ENOENT) {
			/* Never committed: nothing to load; keep the directory for a new round. */
			pr_debug("%s/%ld has no committed index", s->dir, pid);
			proc_free(p);
			continue;
		}
		if (ret) {
			pr_warn("cannot load the image of pid %ld in %s (%s); ignoring it", pid,
				s->dir, ret == -EBADMSG ? "corrupt index.img" : strerror(-ret));
			proc_free(p);
			continue;
		}
		pr_info("loaded pid %ld (%s) round %llu: %llu pages from %s", pid, p->comm,
			(unsigned long long)p->round, (unsigned long long)p->map.n, s->dir);
		p->next = s->procs;
		s->procs = p;
	}
	closedir(d);
	return 0;
}

int pstore_open(const char *dir, struct pstore **out)
{
	struct pstore *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->dirfd = -1;
	if (dir) {
		s->dir = strdup(dir);
		if (!s->dir) {
			free(s);
			return -ENOMEM;
		}
		if (mkdir(dir, 0700) && errno != EEXIST) {
			ret = -errno;
			pr_err_r(ret, "cannot create the images directory '%s'", dir);
			goto fail;
		}
		s->dirfd = open(dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
		if (s->dirfd < 0) {
			ret = -errno;
			pr_err_r(ret, "cannot open the images directory '%s'", dir);
			goto fail;
		}
		ret = store_load(s);
		if (ret) {
			pr_err_r(ret, "cannot read the images directory '%s'", dir);
			goto fail;
		}
	}
	*out = s;
	return 0;
fail:
	pstore_close(s);
	return ret;
}

void pstore_close(struct pstore *s)
{
	if (!s)
		return;
	while (s->procs) {
		struct pstore_proc *p = s->procs;

		s->procs = p->next;
		proc_free(p);
	}
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->dir);
	free(s);
}
