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
 * A directory store keeps the XXH3-64 of every slot it writes (computed in
 * pstore_put: ~7 GB/s per core here, against < 1 GB/s of disk writes) and
 * checks it on every read of a slot, so a flipped byte in pages.img is
 * refused with the file and slot named, never served.  The memory store (the page server's live receive path) keeps no
 * sums: its pages never leave memory, TCP checksums them in flight and the
 * optional AEAD authenticates them.  The on-disk format, loading and the
 * read-only open are in pstore_disk.c.
 */
#define LOG_PREFIX "pstore: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/grow.h"
#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/pstore_int.h"

/* ---- small containers ----------------------------------------------------------- */

int pstore_vec_push(struct u64vec *v, uint64_t x)
{
	int ret = haul_grow(&v->v, &v->cap, v->n, sizeof(*v->v), 256);

	if (ret)
		return ret;
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

void pstore_pmap_free(struct pmap *m)
{
	free(m->keys);
	free(m->vals);
	memset(m, 0, sizeof(*m));
}

int pstore_pmap_init(struct pmap *m, size_t cap)
{
	size_t c = 64;

	while (c < cap)
		c *= 2;
	m->keys = calloc(c, sizeof(*m->keys));
	m->vals = malloc(c * sizeof(*m->vals));
	m->cap = c;
	m->n = 0;
	if (!m->keys || !m->vals) {
		pstore_pmap_free(m);
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

/*
 * The next page of @m in slot order from slot *@i on, with its value; *@i
 * moves past it.  false after the last: for (i = 0; pmap_next(m, &i, ...);).
 */
static bool pmap_next(const struct pmap *m, size_t *i, uint64_t *pg, uint64_t *val)
{
	for (; *i < m->cap; (*i)++) {
		if (!m->keys[*i])
			continue;
		*pg = m->keys[*i] - 1;
		*val = m->vals[*i];
		(*i)++;
		return true;
	}
	return false;
}

static int pmap_grow(struct pmap *m)
{
	struct pmap n;
	uint64_t pg, val;
	int ret = pstore_pmap_init(&n, m->cap ? m->cap * 2 : 64);

	if (ret)
		return ret;
	for (size_t i = 0; pmap_next(m, &i, &pg, &val);) {
		size_t j;

		for (j = pmap_hash(pg + 1, n.cap); n.keys[j]; j = (j + 1) & (n.cap - 1))
			;
		n.keys[j] = pg + 1;
		n.vals[j] = val;
		n.n++;
	}
	pstore_pmap_free(m);
	*m = n;
	return 0;
}

/*
 * Set page @pg to @val.  *@old gets its previous value (or stays untouched
 * when it was absent: callers preset it).
 */
int pstore_pmap_set(struct pmap *m, uint64_t pg, uint64_t val, uint64_t *old)
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
	int ret = pstore_pmap_init(dst, src->cap);

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
	if (p->fd >= 0 && p->nslots == p->sums_cap) {
		uint64_t cap = p->sums_cap ? p->sums_cap * 2 : 1024;
		uint64_t *s = realloc(p->sums, cap * sizeof(*s));

		if (!s)
			return -ENOMEM;
		/* A slot whose write failed keeps sum 0; no committed run names it. */
		memset(s + p->sums_cap, 0, (cap - p->sums_cap) * sizeof(*s));
		p->sums = s;
		p->sums_cap = cap;
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
		pr_err_r(ret, "cannot write %s/%d/pages.img", p->store->dir, p->pid);
		return ret;
	}
	if ((size_t)w != len) {
		pr_err("cannot write %s/%d/pages.img: short write (disk full?)", p->store->dir,
		       p->pid);
		return -ENOSPC;
	}
	for (uint32_t i = 0; i < n; i++)
		p->sums[slot + i] = XXH3_64bits((const uint8_t *)data + (size_t)i * HAUL_PAGE_SIZE,
						HAUL_PAGE_SIZE);
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
		pr_err("cannot read slot %llu of %s/%d/pages.img: %s; the image is damaged",
		       (unsigned long long)slot, p->store->dir, p->pid,
		       r < 0 ? strerror(errno) : "the file is shorter than its index says");
		return -EIO;
	}
	for (uint32_t i = 0; i < n; i++)
		if (XXH3_64bits((uint8_t *)buf + (size_t)i * HAUL_PAGE_SIZE, HAUL_PAGE_SIZE) !=
		    p->sums[slot + i]) {
			pr_err("slot %llu of %s/%d/pages.img fails its checksum: the image is "
			       "corrupt; restore another image or checkpoint again",
			       (unsigned long long)(slot + i), p->store->dir, p->pid);
			return -EBADMSG;
		}
	return 0;
}

/* ---- procs ------------------------------------------------------------------------------ */

void pstore_proc_free(struct pstore_proc *p)
{
	if (!p)
		return;
	pstore_pmap_free(&p->map);
	pstore_pmap_free(&p->stage);
	haul_layout_release(&p->layout);
	haul_layout_release(&p->new_layout);
	free(p->state);
	free(p->new_state);
	vec_free(&p->free);
	vec_free(&p->dropped);
	for (size_t i = 0; i < p->nchunks; i++)
		munmap(p->chunks[i], PSTORE_CHUNK_PAGES * HAUL_PAGE_SIZE);
	free(p->chunks);
	free(p->sums);
	if (p->fd >= 0)
		close(p->fd);
	if (p->dirfd >= 0)
		close(p->dirfd);
	free(p);
}

struct pstore_proc *pstore_proc_alloc(struct pstore *s, int32_t pid)
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

int pstore_proc_open_files(struct pstore_proc *p, bool create)
{
	int mode = p->store->ro ? O_RDONLY : O_RDWR;
	char name[16];
	int ret;

	snprintf(name, sizeof(name), "%d", p->pid);
	if (create && mkdirat(p->store->dirfd, name, 0700) && errno != EEXIST) {
		ret = -errno;
		pr_err_r(ret, "cannot create %s/%s", p->store->dir, name);
		return ret;
	}
	/* The first commit's rename is fsynced in DIR/<pid>; its entry in DIR here. */
	if (create && fsync(p->store->dirfd)) {
		ret = -errno;
		pr_err_r(ret, "cannot fsync %s", p->store->dir);
		return ret;
	}
	p->dirfd = openat(p->store->dirfd, name, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (p->dirfd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open %s/%s", p->store->dir, name);
		return ret;
	}
	p->fd = openat(p->dirfd, "pages.img", mode | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
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
	if (s->ro)
		return -EROFS;
	p = pstore_proc_alloc(s, pid);
	if (!p)
		return -ENOMEM;
	if (s->dir) {
		ret = pstore_proc_open_files(p, true);
		if (ret) {
			pstore_proc_free(p);
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
	if (s->ro)
		return -EROFS;
	*pp = p->next;
	if (s->dir) {
		unlinkat(p->dirfd, "index.img", 0);
		unlinkat(p->dirfd, "index.img.tmp", 0);
		unlinkat(p->dirfd, "pages.img", 0);
		snprintf(name, sizeof(name), "%d", pid);
		unlinkat(s->dirfd, name, AT_REMOVEDIR);
	}
	pstore_proc_free(p);
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
	if (p->store->ro)
		return -EROFS;
	if (addr & (HAUL_PAGE_SIZE - 1) || addr > UINT64_MAX - (uint64_t)npages * HAUL_PAGE_SIZE)
		return -EINVAL;
	if (!haul_layout_covers(cur_layout(p), addr, npages))
		return -ERANGE;
	if (!p->stage.cap)
		return pstore_pmap_init(&p->stage, 1024);
	return 0;
}

/* The slot staged for page @pg: the data slot it has, or a fresh one now staged for it. */
static int stage_slot(struct pstore_proc *p, uint64_t pg, uint64_t *slot)
{
	uint64_t *cell = pmap_find(&p->stage, pg);
	int ret;

	if (cell && *cell != PSTORE_ZERO) {
		*slot = *cell;
		return 0;
	}
	ret = slot_alloc(p, slot);
	if (ret)
		return ret;
	if (cell) {
		*cell = *slot;
	} else if ((ret = pstore_pmap_set(&p->stage, pg, *slot, NULL))) {
		pstore_vec_push(&p->free, *slot);
		return ret;
	}
	return 0;
}

/* Stage page @pg as a zero page. */
static int stage_zero(struct pstore_proc *p, uint64_t pg)
{
	uint64_t *cell = pmap_find(&p->stage, pg);
	int ret;

	/* Not reusable before the round ends: a direct writer may still own it. */
	if (cell && *cell != PSTORE_ZERO) {
		ret = pstore_vec_push(&p->dropped, *cell);
		if (ret)
			return ret;
	}
	if (cell) {
		*cell = PSTORE_ZERO;
		return 0;
	}
	return pstore_pmap_set(&p->stage, pg, PSTORE_ZERO, NULL);
}

int pstore_put(struct pstore_proc *p, uint64_t addr, const void *data, uint32_t npages)
{
	uint64_t pg = addr >> HAUL_PAGE_SHIFT;
	int ret;

	ret = stage_check(p, addr, npages);
	if (ret)
		return ret;
	for (uint32_t i = 0; i < npages; i++) {
		uint64_t slot;

		ret = data ? stage_slot(p, pg + i, &slot) : stage_zero(p, pg + i);
		if (ret)
			return ret;
		if (!data)
			continue;
		/* Pages of one call often land in consecutive fresh slots: write them at once. */
		uint32_t run = 1;
		while (i + run < npages && p->free.n == 0 && p->fd >= 0 &&
		       !pmap_find(&p->stage, pg + i + run) && slot + run == p->nslots) {
			uint64_t s2;

			if ((ret = slot_alloc(p, &s2)) ||
			    (ret = pstore_pmap_set(&p->stage, pg + i + run, s2, NULL)))
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
		uint64_t slot;

		ret = stage_slot(p, pg + i, &slot);
		if (ret)
			return ret;
		dst[i] = slot_mem(p, slot);
	}
	return 0;
}

/* Staged slots that zero pages replaced become reusable. */
static void release_dropped(struct pstore_proc *p)
{
	for (size_t i = 0; i < p->dropped.n; i++)
		pstore_vec_push(&p->free, p->dropped.v[i]);
	p->dropped.n = 0;
}

void pstore_abort(struct pstore_proc *p)
{
	uint64_t pg, val;

	release_dropped(p);
	for (size_t i = 0; pmap_next(&p->stage, &i, &pg, &val);)
		if (val != PSTORE_ZERO)
			pstore_vec_push(&p->free, val);
	pstore_pmap_free(&p->stage);
	haul_layout_release(&p->new_layout);
	p->has_new_layout = false;
	free(p->new_state);
	p->new_state = NULL;
	p->new_state_len = 0;
	p->has_new_state = false;
}

/* ---- sorted runs (index, walk) ------------------------------------------------------------- */

static int cmp_kv(const void *a, const void *b)
{
	const struct pstore_kv *x = a, *y = b;

	return (x->pg > y->pg) - (x->pg < y->pg);
}

int pstore_pmap_sorted(const struct pmap *m, struct pstore_kv **out)
{
	struct pstore_kv *kv = malloc((m->n ? m->n : 1) * sizeof(*kv));
	uint64_t pg, val;
	size_t n = 0;

	if (!kv)
		return -ENOMEM;
	for (size_t i = 0; pmap_next(m, &i, &pg, &val);)
		kv[n++] = (struct pstore_kv){pg, val};
	qsort(kv, n, sizeof(*kv), cmp_kv);
	*out = kv;
	return 0;
}

size_t pstore_make_runs(const struct pstore_kv *kv, size_t n, struct pstore_run *runs)
{
	size_t nr = 0;

	for (size_t i = 0; i < n; i++) {
		struct pstore_run *r = nr ? &runs[nr - 1] : NULL;

		if (r && r->pg + r->npages == kv[i].pg &&
		    ((r->slot == PSTORE_ZERO && kv[i].val == PSTORE_ZERO) ||
		     (r->slot != PSTORE_ZERO && r->slot + r->npages == kv[i].val))) {
			r->npages++;
			continue;
		}
		runs[nr++] = (struct pstore_run){kv[i].pg, 1, kv[i].val};
	}
	return nr;
}

/* ---- commit ------------------------------------------------------------------------------- */

/* A copy of @m without the pages outside @l; their slots go to @dropped. */
static int pmap_filter(const struct pmap *m, const struct haul_layout *l, struct pmap *out,
		       struct u64vec *dropped)
{
	uint64_t pg, val;
	int ret = pstore_pmap_init(out, m->cap / 2 > 64 ? m->cap / 2 : 64);

	if (ret)
		return ret;
	for (size_t i = 0; pmap_next(m, &i, &pg, &val);) {
		if (haul_layout_find(l, pg << HAUL_PAGE_SHIFT))
			ret = pstore_pmap_set(out, pg, val, NULL);
		else if (val != PSTORE_ZERO)
			ret = pstore_vec_push(dropped, val);
		if (ret) {
			pstore_pmap_free(out);
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
	uint64_t pg, val;
	int ret;

	if (p->store->ro)
		return -EROFS;
	if (p->committed && round < p->round) {
		pr_err("cannot commit round %llu of pid %d: round %llu is already committed",
		       (unsigned long long)round, p->pid, (unsigned long long)p->round);
		return -EINVAL;
	}
	ret = pmap_copy(&p->map, &merged);
	if (ret)
		goto fail;
	for (size_t i = 0; pmap_next(&p->stage, &i, &pg, &val);) {
		uint64_t old = PSTORE_ZERO;

		ret = pstore_pmap_set(&merged, pg, val, &old);
		if (!ret && old != PSTORE_ZERO)
			ret = pstore_vec_push(&superseded, old);
		if (ret)
			goto fail;
	}
	if (p->has_new_layout) {
		ret = pmap_filter(&merged, l, &filtered, &superseded);
		if (ret)
			goto fail;
		pstore_pmap_free(&merged);
		merged = filtered;
	}
	if (p->fd >= 0) {
		ret = pstore_index_write(p, &merged, round, l,
					 p->has_new_state ? p->new_state : p->state,
					 p->has_new_state ? p->new_state_len : p->state_len);
		if (ret)
			goto fail;
	}

	/* Durable: swap in, and only now may superseded slots be reused. */
	pstore_pmap_free(&p->map);
	p->map = merged;
	pstore_pmap_free(&p->stage);
	for (size_t i = 0; i < superseded.n; i++)
		pstore_vec_push(&p->free, superseded.v[i]);
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
	pstore_pmap_free(&merged);
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
	struct pstore_run *r = NULL;
	struct pstore_kv *kv = NULL;
	uint8_t *buf = NULL;
	size_t nr;
	int ret;

	ret = pstore_pmap_sorted(&p->map, &kv);
	if (ret)
		return ret;
	r = malloc((p->map.n ? p->map.n : 1) * sizeof(*r));
	buf = malloc(CHUNK * HAUL_PAGE_SIZE);
	if (!r || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	nr = pstore_make_runs(kv, p->map.n, r);
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
