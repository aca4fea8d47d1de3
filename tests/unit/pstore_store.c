/* pstore_store.c - the page store: staging, commit, latest round wins, holes, images on disk. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/pstore.h"

#define BASE 0x7f0000000000ull
#define PG   4096

static struct haul_vma vmas[2] = {
	{.start = BASE, .end = BASE + 64 * PG, .prot = 3, .flags = 2},
	{.start = BASE + 128 * PG, .end = BASE + 256 * PG, .prot = 3, .flags = 2},
};
static struct haul_layout layout = {vmas, 2};

static void fill(uint8_t *p, uint32_t n, uint8_t tag)
{
	for (uint32_t i = 0; i < n; i++)
		memset(p + (size_t)i * PG, tag + i, PG);
}

static char tmpdir[64];

static void mkdtemp_dir(void)
{
	snprintf(tmpdir, sizeof(tmpdir), "/tmp/pstore-test-%d-XXXXXX", getpid());
	cr_assert_not_null(mkdtemp(tmpdir));
}

static void rmrf(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
	cr_assert_eq(system(cmd), 0);
}

Test(pstore, staged_pages_are_invisible_until_commit)
{
	static uint8_t data[4 * PG], buf[4 * PG];
	struct pstore_proc *p;
	struct pstore *s;

	cr_assert_eq(pstore_open(NULL, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 100, false, &p), -ENOENT);
	cr_assert_eq(pstore_proc_get(s, 100, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	fill(data, 4, 1);
	cr_assert_eq(pstore_put(p, BASE, data, 4), 0);
	cr_assert_eq(pstore_read(p, BASE, 4, buf), 0);
	cr_assert_eq(pstore_round(p), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	cr_assert_eq(pstore_read(p, BASE, 4, buf), 4);
	cr_assert_arr_eq(buf, data, sizeof(data));
	pstore_close(s);
}

Test(pstore, latest_round_wins_and_zero_pages_are_holes)
{
	static uint8_t a[4 * PG], b[4 * PG], buf[4 * PG], zero[PG];
	struct pstore_proc *p;
	struct pstore *s;

	cr_assert_eq(pstore_open(NULL, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 7, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	fill(a, 4, 10);
	fill(b, 4, 50);
	cr_assert_eq(pstore_put(p, BASE, a, 4), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	/* round 2 rewrites page 1, zeroes page 2 */
	cr_assert_eq(pstore_put(p, BASE + PG, b + PG, 1), 0);
	cr_assert_eq(pstore_put(p, BASE + 2 * PG, NULL, 1), 0);
	cr_assert_eq(pstore_commit(p, 2), 0);
	cr_assert_eq(pstore_read(p, BASE, 4, buf), 4);
	cr_assert_arr_eq(buf, a, PG);
	cr_assert_arr_eq(buf + PG, b + PG, PG);
	cr_assert_arr_eq(buf + 2 * PG, zero, PG);
	cr_assert_arr_eq(buf + 3 * PG, a + 3 * PG, PG);
	cr_assert_eq(pstore_npages(p), 4);
	/* never stored pages read as zero and are not counted */
	cr_assert_eq(pstore_read(p, BASE + 10 * PG, 1, buf), 0);
	cr_assert_arr_eq(buf, zero, PG);
	pstore_close(s);
}

Test(pstore, aborted_round_leaves_previous_commit)
{
	static uint8_t a[2 * PG], b[2 * PG], buf[2 * PG];
	struct pstore_proc *p;
	struct pstore *s;

	cr_assert_eq(pstore_open(NULL, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 7, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	fill(a, 2, 1);
	fill(b, 2, 99);
	cr_assert_eq(pstore_put(p, BASE, a, 2), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(pstore_put(p, BASE, b, 2), 0);
		pstore_abort(p);
	}
	cr_assert_eq(pstore_read(p, BASE, 2, buf), 2);
	cr_assert_arr_eq(buf, a, sizeof(a));
	cr_assert_eq(pstore_round(p), 1);
	cr_assert_eq(pstore_commit(p, 0), -EINVAL);
	pstore_close(s);
}

Test(pstore, rejects_pages_outside_the_layout)
{
	static uint8_t a[2 * PG];
	struct pstore_proc *p;
	struct pstore *s;

	cr_assert_eq(pstore_open(NULL, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 7, true, &p), 0);
	cr_assert_eq(pstore_put(p, BASE, a, 1), -ERANGE); /* no layout yet */
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	cr_assert_eq(pstore_put(p, BASE + 63 * PG, a, 2), -ERANGE); /* crosses the end */
	cr_assert_eq(pstore_put(p, BASE + 100 * PG, a, 1), -ERANGE);
	cr_assert_eq(pstore_put(p, BASE + 1, a, 1), -EINVAL);
	cr_assert_eq(pstore_put(p, BASE + 128 * PG, a, 1), 0);
	pstore_close(s);
}

Test(pstore, new_layout_drops_pages_of_vanished_vmas)
{
	static uint8_t a[PG], buf[PG];
	struct haul_layout one = {vmas, 1};
	struct pstore_proc *p;
	struct pstore *s;

	cr_assert_eq(pstore_open(NULL, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 7, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	fill(a, 1, 3);
	cr_assert_eq(pstore_put(p, BASE, a, 1), 0);
	cr_assert_eq(pstore_put(p, BASE + 130 * PG, a, 1), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	cr_assert_eq(pstore_npages(p), 2);
	cr_assert_eq(pstore_set_layout(p, &one), 0);
	cr_assert_eq(pstore_commit(p, 2), 0);
	cr_assert_eq(pstore_npages(p), 1);
	cr_assert_eq(pstore_read(p, BASE + 130 * PG, 1, buf), 0);
	cr_assert_eq(pstore_layout(p)->n, 1);
	pstore_close(s);
}

static int walk_sum(void *arg, uint64_t addr, const void *data, uint32_t n)
{
	uint64_t *acc = arg;

	(void)addr;
	acc[data ? 0 : 1] += n;
	return 0;
}

Test(pstore, images_survive_reopen_and_uncommitted_round_is_dropped)
{
	static uint8_t a[64 * PG], b[64 * PG], buf[64 * PG];
	struct pstore_proc *p;
	struct pstore *s;
	uint64_t acc[2] = {0, 0};
	int32_t pids[4];
	size_t len;

	mkdtemp_dir();
	fill(a, 64, 1);
	fill(b, 64, 77);
	cr_assert_eq(pstore_open(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 4242, true, &p), 0);
	cr_assert_eq(pstore_set_comm(p, "worker"), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	cr_assert_eq(pstore_set_state(p, "STATE", 5), 0);
	cr_assert_eq(pstore_put(p, BASE, a, 60), 0);
	cr_assert_eq(pstore_put(p, BASE + 60 * PG, NULL, 4), 0);
	cr_assert_eq(pstore_commit(p, 3), 0);
	/* a round that never commits (the server dies): */
	cr_assert_eq(pstore_put(p, BASE, b, 64), 0);
	pstore_close(s);

	cr_assert_eq(pstore_open(tmpdir, &s), 0);
	cr_assert_eq(pstore_list(s, pids, 4), 1);
	cr_assert_eq(pids[0], 4242);
	cr_assert_eq(pstore_proc_get(s, 4242, false, &p), 0);
	cr_assert_eq(pstore_round(p), 3);
	cr_assert_str_eq(pstore_comm(p), "worker");
	cr_assert_eq(pstore_layout(p)->n, 2);
	cr_assert_eq(memcmp(pstore_state(p, &len), "STATE", 5), 0);
	cr_assert_eq(len, 5);
	cr_assert_eq(pstore_read(p, BASE, 64, buf), 64);
	cr_assert_arr_eq(buf, a, 60 * PG);
	cr_assert_eq(pstore_walk(p, walk_sum, acc), 0);
	cr_assert_eq(acc[0], 60);
	cr_assert_eq(acc[1], 4);

	/* The next round reuses the uncommitted slots and commits. */
	cr_assert_eq(pstore_put(p, BASE, b, 64), 0);
	cr_assert_eq(pstore_commit(p, 4), 0);
	pstore_close(s);
	cr_assert_eq(pstore_open(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 4242, false, &p), 0);
	cr_assert_eq(pstore_read(p, BASE, 64, buf), 64);
	cr_assert_arr_eq(buf, b, sizeof(b));
	pstore_close(s);
	rmrf();
}

Test(pstore, corrupt_index_is_ignored_and_stale_tmp_removed)
{
	static uint8_t a[PG];
	struct pstore_proc *p;
	struct pstore *s;
	char path[128];
	int fd;

	mkdtemp_dir();
	fill(a, 1, 5);
	cr_assert_eq(pstore_open(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 10, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	cr_assert_eq(pstore_put(p, BASE, a, 1), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	cr_assert_eq(pstore_proc_get(s, 11, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	cr_assert_eq(pstore_put(p, BASE, a, 1), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	pstore_close(s);

	/* flip a byte in pid 11's index: its checksum no longer matches */
	snprintf(path, sizeof(path), "%s/11/index.img", tmpdir);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, "X", 1, 40), 1);
	close(fd);
	/* a half-written tmp index from a crash mid-commit of pid 10 */
	snprintf(path, sizeof(path), "%s/10/index.img.tmp", tmpdir);
	fd = open(path, O_WRONLY | O_CREAT, 0600);
	cr_assert_eq(write(fd, "HAULIDX1junk", 12), 12);
	close(fd);

	cr_assert_eq(pstore_open(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 10, false, &p), 0);
	cr_assert_eq(pstore_round(p), 1);
	cr_assert_eq(pstore_proc_get(s, 11, false, &p), -ENOENT);
	cr_assert_neq(access(path, F_OK), 0);
	cr_assert_eq(pstore_proc_remove(s, 10), 0);
	pstore_close(s);
	rmrf();
}

Test(pstore, many_rounds_reuse_slots_instead_of_growing)
{
	static uint8_t a[64 * PG];
	struct pstore_proc *p;
	struct pstore *s;
	struct stat st;
	char path[128];

	mkdtemp_dir();
	cr_assert_eq(pstore_open(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 12, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	for (int r = 1; r <= 10; r++) {
		fill(a, 64, (uint8_t)r);
		cr_assert_eq(pstore_put(p, BASE, a, 64), 0);
		cr_assert_eq(pstore_commit(p, r), 0);
	}
	snprintf(path, sizeof(path), "%s/12/pages.img", tmpdir);
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_leq(st.st_size, 2 * 64 * PG);
	pstore_close(s);
	rmrf();
}

Test(pstore, direct_writes_are_staged_like_puts)
{
	static uint8_t a[4 * PG], buf[4 * PG];
	uint8_t *dst[4];
	struct pstore_proc *p;
	struct pstore *s;

	cr_assert_eq(pstore_open(NULL, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 9, true, &p), 0);
	cr_assert(pstore_direct_ok(p));
	cr_assert_eq(pstore_put_direct(p, BASE, 4, dst), -ERANGE);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	cr_assert_eq(pstore_put_direct(p, BASE, 4, dst), 0);
	fill(a, 4, 40);
	for (int i = 0; i < 4; i++)
		memcpy(dst[i], a + i * PG, PG);
	cr_assert_eq(pstore_read(p, BASE, 4, buf), 0); /* staged only */
	cr_assert_eq(pstore_commit(p, 1), 0);
	cr_assert_eq(pstore_read(p, BASE, 4, buf), 4);
	cr_assert_arr_eq(buf, a, sizeof(a));

	/* a staged cell replaced by a zero page is not handed out again in that round */
	cr_assert_eq(pstore_put_direct(p, BASE, 1, dst), 0);
	cr_assert_eq(pstore_put(p, BASE, NULL, 1), 0);
	uint8_t *again[1];
	cr_assert_eq(pstore_put_direct(p, BASE + PG, 1, again), 0);
	cr_assert_neq(again[0], dst[0]);
	pstore_close(s);
}

Test(pstore, direct_writes_are_refused_on_disk)
{
	uint8_t *dst[1];
	struct pstore_proc *p;
	struct pstore *s;

	mkdtemp_dir();
	cr_assert_eq(pstore_open(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 9, true, &p), 0);
	cr_assert_not(pstore_direct_ok(p));
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	cr_assert_eq(pstore_put_direct(p, BASE, 1, dst), -EOPNOTSUPP);
	pstore_close(s);
	rmrf();
}

/* Commit one process (pid 20, 8 data pages, 2 zero pages) into tmpdir; its file @name's path. */
static void commit_one(char *path, size_t len, const char *name)
{
	static uint8_t a[8 * PG];
	struct pstore_proc *p;
	struct pstore *s;

	mkdtemp_dir();
	fill(a, 8, 3);
	cr_assert_eq(pstore_open(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 20, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, &layout), 0);
	cr_assert_eq(pstore_set_state(p, "STATE", 5), 0);
	cr_assert_eq(pstore_put(p, BASE, a, 8), 0);
	cr_assert_eq(pstore_put(p, BASE + 8 * PG, NULL, 2), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	pstore_close(s);
	snprintf(path, len, "%s/20/%s", tmpdir, name);
}

static void poke(const char *path, off_t off, uint8_t byte)
{
	int fd = open(path, O_WRONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, &byte, 1, off), 1);
	close(fd);
}

static off_t size_of(const char *path)
{
	struct stat st;

	cr_assert_eq(stat(path, &st), 0);
	return st.st_size;
}

Test(pstore, read_only_open_checks_every_slot_and_changes_nothing)
{
	static uint8_t buf[8 * PG];
	struct pstore_proc *p;
	struct pstore *s;
	char pages[128], tmp[128];
	int fd;

	commit_one(pages, sizeof(pages), "pages.img");
	snprintf(tmp, sizeof(tmp), "%s/20/index.img.tmp", tmpdir);
	fd = open(tmp, O_WRONLY | O_CREAT, 0600);
	close(fd);
	cr_assert_eq(pstore_open_ro(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 20, false, &p), 0);
	cr_assert_eq(pstore_verify(p), 0);
	cr_assert_eq(pstore_read(p, BASE, 8, buf), 8);
	cr_assert_eq(pstore_put(p, BASE, buf, 1), -EROFS);
	cr_assert_eq(pstore_commit(p, 2), -EROFS);
	cr_assert_eq(pstore_proc_get(s, 21, true, &p), -EROFS);
	pstore_close(s);
	cr_assert_eq(access(tmp, F_OK), 0, "a read-only open deleted index.img.tmp");

	poke(pages, 5 * PG + 17, 0xee);
	cr_assert_eq(pstore_open_ro(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 20, false, &p), 0);
	cr_assert_eq(pstore_verify(p), -EBADMSG);
	cr_assert_eq(pstore_read(p, BASE + 4 * PG, 2, buf), -EBADMSG);
	cr_assert_eq(pstore_read(p, BASE, 4, buf), 4); /* the slots before it are intact */
	pstore_close(s);
	rmrf();
}

Test(pstore, truncated_pages_file_is_refused_and_never_grown)
{
	struct pstore_proc *p;
	struct pstore *s;
	char pages[128];

	commit_one(pages, sizeof(pages), "pages.img");
	cr_assert_eq(truncate(pages, 3 * PG), 0);
	cr_assert_eq(pstore_open_ro(tmpdir, &s), -EBADMSG);
	cr_assert_eq(size_of(pages), 3 * PG);
	/* The page server's open ignores the damaged process and does not grow its file. */
	cr_assert_eq(pstore_open(tmpdir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 20, false, &p), -ENOENT);
	pstore_close(s);
	cr_assert_eq(size_of(pages), 3 * PG);
	rmrf();
}

Test(pstore, damaged_or_other_version_index_is_refused_by_a_read_only_open)
{
	char index[128];
	struct pstore *s;
	off_t n;

	commit_one(index, sizeof(index), "index.img");
	n = size_of(index);
	poke(index, n - 2, 0x5a); /* inside the message: its checksum fails */
	cr_assert_eq(pstore_open_ro(tmpdir, &s), -EBADMSG);
	rmrf();

	commit_one(index, sizeof(index), "index.img");
	poke(index, 8, 1); /* format version 1 */
	cr_assert_eq(pstore_open_ro(tmpdir, &s), -EPROTONOSUPPORT);
	rmrf();

	commit_one(index, sizeof(index), "index.img");
	cr_assert_eq(truncate(index, n - 1), 0);
	cr_assert_eq(pstore_open_ro(tmpdir, &s), -EBADMSG);
	cr_assert_eq(unlink(index), 0);
	cr_assert_eq(pstore_open_ro(tmpdir, &s), -ENOENT);
	rmrf();
}
