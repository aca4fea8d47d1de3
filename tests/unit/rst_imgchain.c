/*
 * rst_imgchain.c - images that hold only the pages written since a parent
 * (src/restore/imgchain.c): parent.img byte by byte, and what a restore
 * reads through a chain of page stores on disk.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pstore.h"
#include "restore/restore.h"

#define BASE 0x7f0000000000ull
#define PG   4096
#define PID  7
#define ID   "7-1234-99-abcdef01"
#define NPG  16

/* anon private pages 0..15, then a shared file mapping (its pages are the file's) */
static struct haul_vma vmas[2] = {
	{.start = BASE, .end = BASE + NPG * PG, .prot = 3, .flags = HAUL_VMA_ANON},
	{.start = BASE + 32 * PG,
	 .end = BASE + 40 * PG,
	 .prot = 3,
	 .flags = HAUL_VMA_FILE | HAUL_VMA_SHARED,
	 .path = "/tmp/some-file"},
};
static struct haul_layout layout = {vmas, 2};

static char tmpdir[64];

static void mk_tmp(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/imgchain-test-%d-XXXXXX", getpid());
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmp(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

/* Image DIR/ID of @dir: @n runs of (first page, npages, tag; tag 0 = hole). */
static void image(const char *dir, const int (*runs)[3], size_t n, const char *parent)
{
	static uint8_t data[NPG * PG];
	char path[256];
	struct pstore *s;
	struct pstore_proc *p;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, dir);
	mkdir(path, 0700);
	snprintf(path, sizeof(path), "%s/%s/%s", tmpdir, dir, ID);
	cr_assert_eq(pstore_open(path, &s), 0);
	cr_assert_eq(pstore_proc_get(s, PID, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	for (size_t i = 0; i < n; i++) {
		uint64_t addr = BASE + (uint64_t)runs[i][0] * PG;

		memset(data, runs[i][2], sizeof(data));
		cr_assert_eq(pstore_put(p, addr, runs[i][2] ? data : NULL, runs[i][1]), 0);
	}
	cr_assert_eq(pstore_commit(p, pstore_round(p) + 1), 0);
	pstore_close(s);
	if (parent) {
		struct rst_parent par = {0};
		char pstore_dir[256];

		snprintf(par.dir, sizeof(par.dir), "../%s", parent);
		snprintf(par.id, sizeof(par.id), "%s", ID);
		snprintf(pstore_dir, sizeof(pstore_dir), "%s/%s/%s", tmpdir, parent, ID);
		cr_assert_eq(rst_chain_index_sum(pstore_dir, PID, &par.index_sum), 0);
		cr_assert_eq(rst_chain_write_parent(path, &par), 0);
	}
}

/* What a restore would write: per page the tag fed (0xff: never fed, 0: a hole). */
struct seen {
	uint8_t tag[40];
	int calls;
};

static int collect(void *arg, uint64_t addr, const void *data, uint32_t npages)
{
	struct seen *s = arg;

	s->calls++;
	for (uint32_t i = 0; i < npages; i++) {
		uint64_t pg = (addr - BASE) / PG + i;

		cr_assert_lt(pg, 40);
		s->tag[pg] = data ? ((const uint8_t *)data)[(size_t)i * PG] : 0;
	}
	return 0;
}

static int walk(const char *dir, struct seen *seen)
{
	char path[256];
	struct pstore *s;
	struct pstore_proc *p;
	struct rst_chain *c;
	int ret;

	memset(seen, 0xff, sizeof(seen->tag));
	seen->calls = 0;
	snprintf(path, sizeof(path), "%s/%s/%s", tmpdir, dir, ID);
	cr_assert_eq(pstore_open_ro(path, &s), 0);
	cr_assert_eq(pstore_proc_get(s, PID, false, &p), 0);
	ret = rst_chain_open(path, PID, &c);
	if (!ret)
		ret = rst_chain_walk(c, p, &layout, collect, seen);
	rst_chain_free(c);
	pstore_close(s);
	return ret;
}

Test(imgchain, parent_img_round_trips_byte_by_byte)
{
	struct rst_parent par = {.index_sum = 0x0123456789abcdefull}, back;
	uint8_t buf[512];
	int n;

	snprintf(par.dir, sizeof(par.dir), "../pre1");
	snprintf(par.id, sizeof(par.id), ID);
	n = rst_chain_encode(&par, buf, sizeof(buf));
	cr_assert_eq(n, 32 + 7 + 1 + (int)strlen(ID));
	cr_assert_eq(memcmp(buf, "HAULPAR1", 8), 0);
	cr_assert_eq(buf[8], 1);       /* version, LE */
	cr_assert_eq(buf[12], n - 32); /* length of the names, LE */
	cr_assert_eq(buf[24], 0xef);   /* the parent's index checksum, LE */
	cr_assert_eq(memcmp(buf + 32, "../pre1\0", 8), 0);
	cr_assert_eq(rst_chain_decode(buf, n, &back), 0);
	cr_assert_str_eq(back.dir, "../pre1");
	cr_assert_str_eq(back.id, ID);
	cr_assert_eq(back.index_sum, par.index_sum);
}

Test(imgchain, parent_img_refuses_damage_another_version_and_bad_names)
{
	struct rst_parent par = {.index_sum = 1}, back;
	uint8_t buf[512];
	int n;

	snprintf(par.dir, sizeof(par.dir), "/abs/dir");
	snprintf(par.id, sizeof(par.id), ID);
	n = rst_chain_encode(&par, buf, sizeof(buf));
	cr_assert_gt(n, 0);
	buf[40] ^= 1;
	cr_assert_eq(rst_chain_decode(buf, n, &back), -EBADMSG);
	buf[40] ^= 1;
	cr_assert_eq(rst_chain_decode(buf, n - 1, &back), -EBADMSG);
	buf[8] = 2;
	cr_assert_eq(rst_chain_decode(buf, n, &back), -EPROTO);
	snprintf(par.id, sizeof(par.id), "../escape");
	cr_assert_eq(rst_chain_encode(&par, buf, sizeof(buf)), -EINVAL);
	cr_assert_eq(rst_chain_encode(&par, buf, 8), -EINVAL);
}

Test(imgchain, restore_takes_each_page_from_the_newest_image_holding_it)
{
	/* d1: every page (tag 1) and the shared file's; d2: pages 2-5 (2), hole at 8; d3: 3 (3) */
	const int r1[][3] = {{0, NPG, 1}, {32, 4, 9}};
	const int r2[][3] = {{2, 4, 2}, {8, 1, 0}};
	const int r3[][3] = {{3, 1, 3}};
	struct seen s;

	mk_tmp();
	image("d1", r1, 2, NULL);
	image("d2", r2, 2, "d1");
	image("d3", r3, 1, "d2");
	cr_assert_eq(walk("d3", &s), 0);
	for (int pg = 0; pg < NPG; pg++) {
		int want = pg == 3 ? 3 : (pg >= 2 && pg <= 5) ? 2 : pg == 8 ? 0 : 1;

		cr_assert_eq(s.tag[pg], want, "page %d: %d, expected %d", pg, s.tag[pg], want);
	}
	/* the shared file's pages are the file's: never fed from a parent */
	for (int pg = 32; pg < 36; pg++)
		cr_assert_eq(s.tag[pg], 0xff, "page %d of the shared file mapping was fed", pg);
	/* an image without parent.img is walked as it is */
	cr_assert_eq(walk("d1", &s), 0);
	cr_assert_eq(s.tag[3], 1);
	rm_tmp();
}

Test(imgchain, restore_refuses_a_parent_replaced_after_the_child)
{
	const int r1[][3] = {{0, NPG, 1}};
	const int r2[][3] = {{2, 1, 2}};
	struct seen s;

	mk_tmp();
	image("d1", r1, 1, NULL);
	image("d2", r2, 1, "d1");
	image("d1", r2, 1, NULL); /* d1 checkpointed again: d2's pages are not its changes */
	cr_assert_eq(walk("d2", &s), -ESTALE);
	rm_tmp();
}

Test(imgchain, restore_refuses_a_missing_parent_and_a_loop)
{
	const int r1[][3] = {{0, NPG, 1}};
	const int r2[][3] = {{2, 1, 2}};
	char cmd[200];
	struct seen s;

	mk_tmp();
	image("d1", r1, 1, NULL);
	image("d2", r2, 1, "d1");
	image("d1", r1, 1, "d1"); /* names itself, with its own checksum */
	cr_assert_eq(walk("d1", &s), -ELOOP);
	snprintf(cmd, sizeof(cmd), "rm -rf %s/d1", tmpdir);
	cr_assert_eq(system(cmd), 0);
	cr_assert_eq(walk("d2", &s), -ENOENT);
	rm_tmp();
}
