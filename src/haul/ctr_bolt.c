/*
 * ctr_bolt.c - one value out of a BoltDB file, read only: podman 4's
 * state database (GRAPHROOT/libpod/bolt_state.db) keeps a container's
 * configuration, the JSON that `podman container checkpoint` exports as
 * config.dump, under bucket "ctr", bucket <ID>, key "config".  Podman has
 * no command that prints it (inspect shows another structure), and its
 * restore --import needs it exactly, so haul reads it as podman wrote it.
 *
 * The format (bbolt, little endian on the hosts podman runs on): the file
 * is pages of one size.  Each page opens with a 16-byte header: id u64,
 * flags u16 (branch 0x01, leaf 0x02, meta 0x04), count u16, overflow u32
 * (the pages after it that belong to it).  Pages 0 and 1 are metas: magic
 * u32 0xED0CDAED, version u32 (2), page size u32, flags u32, the root
 * bucket (root page u64, sequence u64), freelist u64, high water u64, txid
 * u64, checksum u64 (FNV-1a 64 of the 56 bytes before it); the valid one
 * with the larger txid is current.  A branch page holds @count elements of
 * (pos u32, key size u32, child page u64), a leaf page (flags u32, pos u32,
 * key size u32, value size u32); pos counts from the element's own
 * address, keys are sorted bytewise.  A leaf element with flag 0x01 is a
 * bucket: its value is (root page u64, sequence u64), and a root of 0 means
 * an inline bucket whose page follows those 16 bytes in the value.
 * Every offset is checked against the file before it is used: a file
 * being rewritten or not bbolt's is -EBADMSG, never a crash.
 */
#define LOG_PREFIX "container: "
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/ctr_int.h"

#define BOLT_MAGIC     0xED0CDAEDu
#define BOLT_BRANCH    0x01
#define BOLT_LEAF      0x02
#define BOLT_META      0x04
#define BOLT_BUCKET    0x01
#define BOLT_HDR       16
#define BOLT_ELEM      16
#define BOLT_MAX_FILE  (1ull << 30) /* podman's database is KiBs to MiBs */
#define BOLT_MAX_DEPTH 64

/* A page: its bytes within the file (or within an inline bucket's value). */
struct bpage {
	const uint8_t *p;
	size_t len;
};

static uint64_t le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t fnv1a64(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

/* Page @id of the file: 0, or -EBADMSG when it (with its overflow) lies outside. */
static int page_at(const uint8_t *f, size_t flen, uint32_t psz, uint64_t id, struct bpage *pg)
{
	uint64_t off = id * psz, n;

	if (id >= flen / psz || off + BOLT_HDR > flen)
		return -EBADMSG;
	n = ((uint64_t)le32(f + off + 12) + 1) * psz;
	if (n > flen - off)
		return -EBADMSG;
	pg->p = f + off;
	pg->len = (size_t)n;
	return 0;
}

static int keycmp(const uint8_t *a, size_t an, const char *b)
{
	size_t bn = strlen(b);
	int c = memcmp(a, b, an < bn ? an : bn);

	return c ? c : an < bn ? -1 : an > bn;
}

/* Element @i of @pg: its key (and value), bounds checked. */
static int elem(const struct bpage *pg, unsigned i, bool leaf, const uint8_t **k, size_t *kn,
		const uint8_t **v, size_t *vn)
{
	size_t e = BOLT_HDR + (size_t)i * BOLT_ELEM;
	uint64_t pos, ks, vs;

	if (e + BOLT_ELEM > pg->len)
		return -EBADMSG;
	pos = le32(pg->p + e + (leaf ? 4 : 0));
	ks = le32(pg->p + e + (leaf ? 8 : 4));
	vs = leaf ? le32(pg->p + e + 12) : 0;
	if (e + pos + ks + vs > pg->len)
		return -EBADMSG;
	*k = pg->p + e + pos;
	*kn = (size_t)ks;
	if (v) {
		*v = *k + ks;
		*vn = (size_t)vs;
	}
	return 0;
}

/*
 * Find @key in the tree whose root is @root: its leaf element's flags and
 * value.  -ENOENT when it is not there.
 */
static int tree_find(const uint8_t *f, size_t flen, uint32_t psz, struct bpage root,
		     const char *key, uint32_t *flags, const uint8_t **v, size_t *vn)
{
	struct bpage pg = root;

	for (int depth = 0; depth < BOLT_MAX_DEPTH; depth++) {
		const uint8_t *k, *val;
		size_t kn, vlen;
		unsigned pf, n, pick = 0;
		int ret;

		if (pg.len < BOLT_HDR)
			return -EBADMSG;
		/* the header's flags u16 then count u16, read as one u32 */
		pf = le32(pg.p + 8) & 0xffff;
		n = le32(pg.p + 8) >> 16;
		if (pf & BOLT_LEAF) {
			for (unsigned i = 0; i < n; i++) {
				ret = elem(&pg, i, true, &k, &kn, &val, &vlen);
				if (ret)
					return ret;
				if (!keycmp(k, kn, key)) {
					*flags = le32(pg.p + BOLT_HDR + (size_t)i * BOLT_ELEM);
					*v = val;
					*vn = vlen;
					return 0;
				}
			}
			return -ENOENT;
		}
		if (!(pf & BOLT_BRANCH) || !n)
			return -EBADMSG;
		/* the last child whose first key is <= @key */
		for (unsigned i = 0; i < n; i++) {
			ret = elem(&pg, i, false, &k, &kn, NULL, NULL);
			if (ret)
				return ret;
			if (keycmp(k, kn, key) > 0)
				break;
			pick = i;
		}
		ret = page_at(f, flen, psz, le64(pg.p + BOLT_HDR + (size_t)pick * BOLT_ELEM + 8),
			      &pg);
		if (ret)
			return ret;
	}
	return -EBADMSG;
}

/* The root page of the bucket whose value is @v. */
static int bucket_root(const uint8_t *f, size_t flen, uint32_t psz, const uint8_t *v, size_t vn,
		       struct bpage *pg)
{
	uint64_t root;

	if (vn < 16)
		return -EBADMSG;
	root = le64(v);
	if (root)
		return page_at(f, flen, psz, root, pg);
	if (vn < 16 + BOLT_HDR)
		return -EBADMSG;
	pg->p = v + 16; /* inline */
	pg->len = vn - 16;
	return 0;
}

/* The current meta's root bucket page and the page size. */
static int meta_root(const uint8_t *f, size_t flen, uint32_t *psz, struct bpage *root)
{
	uint64_t best_tx = 0, best_root = 0;
	bool found = false;

	if (flen < BOLT_HDR + 64)
		return -EBADMSG;
	*psz = le32(f + BOLT_HDR + 8);
	if (*psz < 512 || *psz > (1u << 20) || flen < 2ull * *psz)
		return -EBADMSG;
	for (int i = 0; i < 2; i++) {
		const uint8_t *m = f + (size_t)i * *psz + BOLT_HDR;

		if (!(le32(m - BOLT_HDR + 8) & BOLT_META) || le32(m) != BOLT_MAGIC ||
		    le32(m + 8) != *psz || fnv1a64(m, 56) != le64(m + 56))
			continue;
		if (!found || le64(m + 48) > best_tx) {
			best_tx = le64(m + 48);
			best_root = le64(m + 16);
			found = true;
		}
	}
	if (!found)
		return -EBADMSG;
	return page_at(f, flen, *psz, best_root, root);
}

static int read_whole(const char *path, uint8_t **out, size_t *len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), ret = 0;
	struct stat st;
	size_t got = 0;

	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0 || st.st_size <= 0 || (uint64_t)st.st_size > BOLT_MAX_FILE) {
		ret = errno ? -errno : -EFBIG;
		close(fd);
		return ret;
	}
	*out = malloc((size_t)st.st_size);
	if (!*out) {
		close(fd);
		return -ENOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, *out + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			ret = r < 0 ? -errno : -EBADMSG;
			break;
		}
		got += (size_t)r;
	}
	close(fd);
	if (ret) {
		free(*out);
		*out = NULL;
	}
	*len = got;
	return ret;
}

int haul_bolt_get(const char *db, const char *const path[], char **out, size_t *len)
{
	uint8_t *f = NULL;
	size_t flen = 0, vn = 0;
	const uint8_t *v = NULL;
	struct bpage pg;
	uint32_t psz, flags = 0;
	int ret;

	ret = read_whole(db, &f, &flen);
	if (ret)
		return ret;
	ret = meta_root(f, flen, &psz, &pg);
	for (size_t i = 0; !ret && path[i]; i++) {
		ret = tree_find(f, flen, psz, pg, path[i], &flags, &v, &vn);
		if (!ret && path[i + 1])
			ret = flags & BOLT_BUCKET ? bucket_root(f, flen, psz, v, vn, &pg) : -ENOENT;
		else if (!ret && (flags & BOLT_BUCKET))
			ret = -ENOENT; /* the last name is a bucket, not a value */
	}
	if (!ret) {
		*out = malloc(vn + 1);
		if (*out) {
			memcpy(*out, v, vn);
			(*out)[vn] = '\0';
			*len = vn;
		} else {
			ret = -ENOMEM;
		}
	}
	free(f);
	return ret;
}
