/*
 * ctr_bolt.c - the BoltDB reader that finds podman's container
 * configuration (ctr/<ID>/config of bolt_state.db): a file built here page
 * by page as bbolt lays it out (two metas, a branch root, leaves, an
 * inline bucket, a bucket with its own page, a value spilling into an
 * overflow page), then the lookups, the names that are not there, and
 * files that are not bbolt's or are cut short.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "haul/ctr_int.h"

#define PSZ    4096
#define NPAGES 8

struct kv {
	const char *k;
	const uint8_t *v;
	size_t vn;
	uint32_t flags; /* 1: a bucket */
};

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void hdr(uint8_t *pg, uint64_t id, uint16_t flags, uint16_t count, uint32_t overflow)
{
	put64(pg, id);
	pg[8] = (uint8_t)flags;
	pg[9] = (uint8_t)(flags >> 8);
	pg[10] = (uint8_t)count;
	pg[11] = (uint8_t)(count >> 8);
	put32(pg + 12, overflow);
}

/* A leaf page at @pg: its length. */
static size_t leaf(uint8_t *pg, uint64_t id, const struct kv *kv, int n, uint32_t overflow)
{
	size_t off = 16 + (size_t)n * 16;

	hdr(pg, id, 0x02, (uint16_t)n, overflow);
	for (int i = 0; i < n; i++) {
		uint8_t *e = pg + 16 + (size_t)i * 16;
		size_t kn = strlen(kv[i].k);

		put32(e, kv[i].flags);
		put32(e + 4, (uint32_t)(off - (16 + (size_t)i * 16)));
		put32(e + 8, (uint32_t)kn);
		put32(e + 12, (uint32_t)kv[i].vn);
		memcpy(pg + off, kv[i].k, kn);
		memcpy(pg + off + kn, kv[i].v, kv[i].vn);
		off += kn + kv[i].vn;
	}
	return off;
}

static void branch(uint8_t *pg, uint64_t id, const char *const *keys, const uint64_t *child, int n)
{
	size_t off = 16 + (size_t)n * 16;

	hdr(pg, id, 0x01, (uint16_t)n, 0);
	for (int i = 0; i < n; i++) {
		uint8_t *e = pg + 16 + (size_t)i * 16;
		size_t kn = strlen(keys[i]);

		put32(e, (uint32_t)(off - (16 + (size_t)i * 16)));
		put32(e + 4, (uint32_t)kn);
		put64(e + 8, child[i]);
		memcpy(pg + off, keys[i], kn);
		off += kn;
	}
}

static uint64_t fnv(const uint8_t *p, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static void meta(uint8_t *pg, uint64_t id, uint64_t root, uint64_t txid, bool good)
{
	uint8_t *m = pg + 16;

	hdr(pg, id, 0x04, 0, 0);
	put32(m, 0xED0CDAED);
	put32(m + 4, 2);
	put32(m + 8, PSZ);
	put64(m + 16, root);
	put64(m + 32, 2);
	put64(m + 40, NPAGES);
	put64(m + 48, txid);
	put64(m + 56, fnv(m, 56) ^ (good ? 0 : 1));
}

static char config[5000];

/*
 * Pages: 0, 1 metas (1 has the larger txid and a bad checksum: 0 counts);
 * 3 the root, a branch ("a" -> 4, "c" -> 5); 4 a leaf {abc: "x"}; 5 a leaf
 * {ctr: inline bucket {ID1: bucket at page 6}}; 6 (+ overflow 7) a leaf
 * {config: 5000 bytes, state: "s"}.
 */
static uint8_t *build(void)
{
	uint8_t *f = calloc(NPAGES, PSZ), inl[256] = {0}, b6[16] = {0};
	const char *const keys[] = {"a", "c"};
	const uint64_t child[] = {4, 5};
	struct kv k4 = {"abc", (const uint8_t *)"x", 1, 0};
	struct kv kid = {"ID1", b6, 16, 1};
	struct kv kctr = {"ctr", inl, 0, 1};
	struct kv k6[] = {{"config", (const uint8_t *)config, sizeof(config), 0},
			  {"state", (const uint8_t *)"s", 1, 0}};

	cr_assert(f);
	memset(config, 'c', sizeof(config));
	config[0] = '{';
	meta(f, 0, 3, 1, true);
	meta(f + PSZ, 1, 3, 2, false);
	hdr(f + 2 * PSZ, 2, 0x10, 0, 0);
	branch(f + 3 * PSZ, 3, keys, child, 2);
	leaf(f + 4 * PSZ, 4, &k4, 1, 0);
	put64(b6, 6);
	kctr.vn = 16 + leaf(inl + 16, 0, &kid, 1, 0); /* root 0: the page follows inline */
	leaf(f + 5 * PSZ, 5, &kctr, 1, 0);
	leaf(f + 6 * PSZ, 6, k6, 2, 1);
	return f;
}

static char *write_db(const uint8_t *f, size_t len)
{
	static char path[64];
	int fd;

	snprintf(path, sizeof(path), "/tmp/haul-bolt-%d-XXXXXX", (int)getpid());
	fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, f, len), (ssize_t)len);
	close(fd);
	return path;
}

static int get(const char *db, const char *const *path, char **out)
{
	size_t len = 0;
	int ret = haul_bolt_get(db, path, out, &len);

	if (!ret)
		cr_assert_eq(len, strlen(*out));
	return ret;
}

Test(ctr_bolt, finds_a_value_through_branch_inline_bucket_and_overflow)
{
	uint8_t *f = build();
	char *db = write_db(f, NPAGES * PSZ), *v = NULL;
	const char *const cfg[] = {"ctr", "ID1", "config", NULL};
	const char *const st[] = {"ctr", "ID1", "state", NULL};
	const char *const abc[] = {"abc", NULL};

	cr_assert_eq(get(db, cfg, &v), 0);
	cr_assert_eq(strlen(v), sizeof(config));
	cr_assert(!memcmp(v, config, sizeof(config)), "the value across the overflow page");
	free(v);
	cr_assert_eq(get(db, st, &v), 0);
	cr_assert_str_eq(v, "s");
	free(v);
	cr_assert_eq(get(db, abc, &v), 0, "the branch's first child");
	cr_assert_str_eq(v, "x");
	free(v);
	unlink(db);
	free(f);
}

Test(ctr_bolt, names_not_there_are_enoent)
{
	uint8_t *f = build();
	char *db = write_db(f, NPAGES * PSZ), *v = NULL;
	const char *const other[] = {"ctr", "ID2", "config", NULL};
	const char *const bucket[] = {"ctr", "ID1", NULL};
	const char *const notbucket[] = {"abc", "x", NULL};
	const char *const before[] = {"0", NULL};

	cr_assert_eq(get(db, other, &v), -ENOENT);
	cr_assert_eq(get(db, bucket, &v), -ENOENT, "a bucket is no value");
	cr_assert_eq(get(db, notbucket, &v), -ENOENT, "a value is no bucket");
	cr_assert_eq(get(db, before, &v), -ENOENT, "a key before the branch's first");
	unlink(db);
	cr_assert_eq(get("/nonexistent/bolt_state.db", other, &v), -ENOENT);
	free(f);
}

Test(ctr_bolt, rejects_files_not_bbolts_or_cut_short)
{
	uint8_t *f = build();
	const char *const cfg[] = {"ctr", "ID1", "config", NULL};
	char *db, *v = NULL;

	db = write_db(f, 6 * PSZ + 100); /* page 6 and its overflow are cut */
	cr_assert_eq(get(db, cfg, &v), -EBADMSG);
	unlink(db);
	meta(f, 0, 3, 1, false); /* both metas bad */
	db = write_db(f, NPAGES * PSZ);
	cr_assert_eq(get(db, cfg, &v), -EBADMSG);
	unlink(db);
	free(f);
	f = build();
	put64(f + 3 * PSZ + 16 + 16 + 8, 99); /* the branch's child "c" beyond the file */
	db = write_db(f, NPAGES * PSZ);
	cr_assert_eq(get(db, cfg, &v), -EBADMSG);
	unlink(db);
	memset(f, 0x5a, PSZ);
	db = write_db(f, PSZ);
	cr_assert_eq(get(db, cfg, &v), -EBADMSG, "not a bbolt file");
	unlink(db);
	free(f);
}
