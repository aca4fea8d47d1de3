/*
 * imgchain.c - images that hold only the pages written since a parent
 * image (criu pre-dump rounds: src/haul/criu_predump.c), and restoring
 * through such a chain.
 *
 * An image DIR/<id>/ whose pages were taken by a tracker that kept running
 * since its parent was committed holds only what changed since: pages
 * written (data or zero) and ranges whose old contents are gone (zero
 * holes).  DIR/<id>/parent.img names the parent, byte by byte (LE):
 *    0-7   "HAULPAR1"
 *    8-11  version (1)
 *   12-15  N, the length of the names below (at most RST_CHAIN_NAME_MAX)
 *   16-23  XXH3-64 (seed 0) of bytes 24 .. 32+N
 *   24-31  the parent's index checksum: bytes 24-31 of its <pid>/index.img,
 *          so a parent replaced or rewritten since is refused, not misread
 *   32..   the parent's images directory (absolute, or relative to DIR),
 *          a NUL, the parent's image id (its DIR/<id> name)
 * The pid inside the parent is this image's own.  A parent may have a
 * parent.img in turn, up to RST_CHAIN_MAX images.
 *
 * Restore: every image of the chain is opened read-only and every page
 * checked before anything is created; the layout and the state are the
 * newest image's.  Pages are fed newest first: the newest image's all,
 * then of each older image only the pages no newer image holds (data or
 * hole) and that lie in a VMA of the layout whose pages are stored: a
 * range whose backing changed was recorded as gone (a hole) by the newer
 * image, so nothing stale reaches it.
 */
#define LOG_PREFIX "image: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/pstore.h"
#include "common/vma.h"
#include "restore/restore.h"
#include "restore/restore_int.h"

#define PAR_MAGIC   "HAULPAR1"
#define PAR_VERSION 1
#define PAR_HDR	    32
#define IDX_SUM_OFF 24 /* index.img bytes 24-31: XXH3-64 of the index (pstore_disk.c) */

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

int rst_chain_encode(const struct rst_parent *par, uint8_t *buf, size_t len)
{
	size_t nd = strlen(par->dir), ni = strlen(par->id), n = nd + 1 + ni;

	if (!nd || !ni || n > RST_CHAIN_NAME_MAX || strchr(par->id, '/'))
		return -EINVAL;
	if (len < PAR_HDR + n)
		return -ENOSPC;
	memcpy(buf, PAR_MAGIC, 8);
	put_le32(buf + 8, PAR_VERSION);
	put_le32(buf + 12, (uint32_t)n);
	put_le64(buf + 24, par->index_sum);
	memcpy(buf + PAR_HDR, par->dir, nd + 1);
	memcpy(buf + PAR_HDR + nd + 1, par->id, ni);
	put_le64(buf + 16, XXH3_64bits(buf + 24, 8 + n));
	return (int)(PAR_HDR + n);
}

int rst_chain_decode(const uint8_t *buf, size_t len, struct rst_parent *out)
{
	const char *dir, *id;
	uint32_t n;
	size_t nd;

	if (len < PAR_HDR || memcmp(buf, PAR_MAGIC, 8))
		return -EBADMSG;
	if (get_le32(buf + 8) != PAR_VERSION)
		return -EPROTO;
	n = get_le32(buf + 12);
	if (n > RST_CHAIN_NAME_MAX || len != PAR_HDR + n ||
	    XXH3_64bits(buf + 24, 8 + n) != get_le64(buf + 16))
		return -EBADMSG;
	dir = (const char *)buf + PAR_HDR;
	nd = strnlen(dir, n);
	if (nd == 0 || nd + 1 >= n)
		return -EBADMSG;
	id = dir + nd + 1;
	if (strnlen(id, n - nd - 1) != n - nd - 1 || memchr(id, '/', n - nd - 1))
		return -EBADMSG;
	memset(out, 0, sizeof(*out));
	memcpy(out->dir, dir, nd);
	memcpy(out->id, id, n - nd - 1);
	out->index_sum = get_le64(buf + 24);
	return 0;
}

int rst_chain_index_sum(const char *store, pid_t pid, uint64_t *sum)
{
	char path[PATH_MAX];
	uint8_t b[8];
	int fd, ret = 0;

	snprintf(path, sizeof(path), "%s/%d/index.img", store, (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (pread(fd, b, 8, IDX_SUM_OFF) != 8)
		ret = -EBADMSG;
	close(fd);
	if (!ret)
		*sum = get_le64(b);
	return ret;
}

int rst_chain_write_parent(const char *store, const struct rst_parent *par)
{
	uint8_t buf[PAR_HDR + RST_CHAIN_NAME_MAX];
	char path[PATH_MAX];
	int n = rst_chain_encode(par, buf, sizeof(buf)), fd, ret = 0;

	if (n < 0)
		return n;
	snprintf(path, sizeof(path), "%s/%s", store, RST_CHAIN_FILE);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		ret = -errno;
	else if (write(fd, buf, n) != n)
		ret = -EIO;
	else if (fsync(fd))
		ret = -errno;
	if (fd >= 0)
		close(fd);
	if (ret)
		pr_err_r(ret, "cannot write %s", path);
	return ret;
}

/* parent.img of the image @store: 0 and *@has false when there is none. */
static int read_parent(const char *store, struct rst_parent *par, bool *has)
{
	uint8_t buf[PAR_HDR + RST_CHAIN_NAME_MAX + 1];
	char path[PATH_MAX];
	ssize_t n;
	int fd, ret;

	*has = false;
	snprintf(path, sizeof(path), "%s/%s", store, RST_CHAIN_FILE);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	n = read(fd, buf, sizeof(buf));
	close(fd);
	ret = n < 0 ? -errno : rst_chain_decode(buf, (size_t)n, par);
	if (ret) {
		pr_err_r(ret, "%s is damaged; restore another image or checkpoint again", path);
		return ret;
	}
	*has = true;
	return 0;
}

/* The parents of one image, newest first. */
struct rst_chain {
	size_t n;
	struct pstore *store[RST_CHAIN_MAX];
	struct pstore_proc *p[RST_CHAIN_MAX];
};

/* The page store directory of parent @par of image @store. */
static int parent_store(const char *store, const struct rst_parent *par, char *out, size_t len)
{
	char base[PATH_MAX], *slash;

	snprintf(base, sizeof(base), "%s", store);
	slash = strrchr(base, '/');
	if (!slash)
		snprintf(base, sizeof(base), ".");
	else
		*slash = '\0';
	if ((size_t)snprintf(out, len, "%s%s%s/%s", par->dir[0] == '/' ? "" : base,
			     par->dir[0] == '/' ? "" : "/", par->dir, par->id) >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* Open, check and verify parent @par of @store (pid @pid) as link @i of @c. */
static int open_link(struct rst_chain *c, const char *store, const struct rst_parent *par,
		     pid_t pid, char *path, size_t len)
{
	size_t i = c->n;
	uint64_t sum;
	int ret;

	ret = parent_store(store, par, path, len);
	if (!ret)
		ret = rst_chain_index_sum(path, pid, &sum);
	if (ret) {
		pr_err_r(ret,
			 "the parent image %s of %s (pid %d) cannot be read; restore needs it "
			 "(keep the pre-dump directories with the final one)",
			 path, store, (int)pid);
		return ret;
	}
	if (sum != par->index_sum) {
		pr_err("the parent image %s of %s was replaced after %s was taken; it cannot be "
		       "restored through it (checkpoint again)",
		       path, store, store);
		return -ESTALE;
	}
	ret = pstore_open_ro(path, &c->store[i]);
	if (ret)
		return ret;
	c->n++;
	ret = pstore_proc_get(c->store[i], pid, false, &c->p[i]);
	if (!ret)
		ret = pstore_verify(c->p[i]);
	if (ret)
		pr_err_r(ret, "the parent image %s of pid %d is damaged (above)", path, (int)pid);
	return ret;
}

int rst_chain_open(const char *store, pid_t pid, struct rst_chain **out)
{
	char cur[PATH_MAX], next[PATH_MAX];
	struct rst_chain *c;
	struct rst_parent par;
	bool has;
	int ret;

	*out = NULL;
	ret = read_parent(store, &par, &has);
	if (ret || !has)
		return ret;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	snprintf(cur, sizeof(cur), "%s", store);
	while (has && !ret) {
		if (c->n == RST_CHAIN_MAX) {
			pr_err("%s has more than %d parent images (a loop?); checkpoint again",
			       store, RST_CHAIN_MAX);
			ret = -ELOOP;
			break;
		}
		ret = open_link(c, cur, &par, pid, next, sizeof(next));
		if (!ret) {
			memcpy(cur, next, sizeof(cur));
			ret = read_parent(cur, &par, &has);
		}
	}
	if (ret) {
		rst_chain_free(c);
		return ret;
	}
	pr_info("%s: pages through %zu parent image(s)", store, c->n);
	*out = c;
	return 0;
}

void rst_chain_free(struct rst_chain *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		pstore_close(c->store[i]);
	free(c);
}

/* Sorted, disjoint [start, end) ranges: what newer images hold. */
struct cover {
	uint64_t (*r)[2];
	size_t n, cap;
};

static int cover_add(struct cover *cv, uint64_t s, uint64_t e)
{
	if (cv->n && cv->r[cv->n - 1][1] == s) {
		cv->r[cv->n - 1][1] = e;
		return 0;
	}
	if (cv->n == cv->cap) {
		size_t cap = cv->cap ? cv->cap * 2 : 256;
		void *r = realloc(cv->r, cap * sizeof(*cv->r));

		if (!r)
			return -ENOMEM;
		cv->r = r;
		cv->cap = cap;
	}
	cv->r[cv->n][0] = s;
	cv->r[cv->n][1] = e;
	cv->n++;
	return 0;
}

/* The union of two covers into @a. */
static int cover_merge(struct cover *a, const struct cover *b)
{
	struct cover m = {0};
	size_t i = 0, j = 0;
	int ret = 0;

	while (!ret && (i < a->n || j < b->n)) {
		const uint64_t *x = (j >= b->n || (i < a->n && a->r[i][0] <= b->r[j][0]))
					    ? a->r[i++]
					    : b->r[j++];

		if (m.n && m.r[m.n - 1][1] >= x[0]) {
			if (x[1] > m.r[m.n - 1][1])
				m.r[m.n - 1][1] = x[1];
			continue;
		}
		ret = cover_add(&m, x[0], x[1]);
	}
	if (ret) {
		free(m.r);
		return ret;
	}
	free(a->r);
	*a = m;
	return 0;
}

/* The first range of @cv that ends after @addr (cv->n when none). */
static size_t cover_find(const struct cover *cv, uint64_t addr)
{
	size_t lo = 0, hi = cv->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (cv->r[mid][1] <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

struct feed {
	const struct haul_layout *l;
	const struct cover *newer; /* NULL for the newest image */
	struct cover mine;
	pstore_walk_fn fn;
	void *arg;
};

/* Feed [s, e) of a parent run (its data at @data, or NULL) where the layout stores pages. */
static int feed_stored(struct feed *f, uint64_t s, uint64_t e, uint64_t run, const uint8_t *data)
{
	while (s < e) {
		const struct haul_vma *v = haul_layout_find(f->l, s);
		uint64_t a, b;
		int ret;

		if (!v)
			v = haul_layout_next(f->l, s); /* s lies in a hole of the layout */
		if (!v || v->start >= e)
			return 0;
		a = s > v->start ? s : v->start;
		b = e < v->end ? e : v->end;
		if (rst_vma_stored(v)) {
			ret = f->fn(f->arg, a, data ? data + (a - run) : NULL,
				    (uint32_t)((b - a) >> HAUL_PAGE_SHIFT));
			if (ret)
				return ret;
		}
		s = b;
	}
	return 0;
}

static int feed_run(void *arg, uint64_t addr, const void *data, uint32_t npages)
{
	struct feed *f = arg;
	uint64_t end = addr + (uint64_t)npages * HAUL_PAGE_SIZE, s = addr;
	int ret = cover_add(&f->mine, addr, end);

	if (ret)
		return ret;
	if (!f->newer)
		return f->fn(f->arg, addr, data, npages);
	/* the gaps of the newer images' cover inside [addr, end) */
	for (size_t i = cover_find(f->newer, addr); s < end; i++) {
		uint64_t gap_end =
			i < f->newer->n && f->newer->r[i][0] < end ? f->newer->r[i][0] : end;

		if (gap_end > s) {
			ret = feed_stored(f, s, gap_end, addr, data);
			if (ret)
				return ret;
		}
		if (i >= f->newer->n || f->newer->r[i][0] >= end)
			break;
		s = f->newer->r[i][1];
	}
	return 0;
}

int rst_chain_walk(struct rst_chain *c, struct pstore_proc *top, const struct haul_layout *l,
		   pstore_walk_fn fn, void *arg)
{
	struct cover newer = {0};
	struct feed f = {l, NULL, {0}, fn, arg};
	int ret;

	if (!c)
		return pstore_walk(top, fn, arg);
	ret = pstore_walk(top, feed_run, &f);
	for (size_t i = 0; !ret && i <= c->n; i++) {
		/* f.mine: the pages of the image just fed, now part of what is newer */
		ret = cover_merge(&newer, &f.mine);
		free(f.mine.r);
		f.mine = (struct cover){0};
		f.newer = &newer;
		if (!ret && i < c->n)
			ret = pstore_walk(c->p[i], feed_run, &f);
	}
	free(f.mine.r);
	free(newer.r);
	return ret;
}
