/*
 * rst_tree_img.c - tree.img, the process tree of a multi-process image:
 * what is written reads back the same, and a damaged or inconsistent file
 * is refused (-EBADMSG) before a restore uses any of it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restore/tree_int.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/haul-unit-tree-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, RST_TREE_FILE);
	unlink(path);
	rmdir(dir);
}

/* root 10 (session 7, group 9), children 11 and 12 (zombie "worker", status 42 << 8), grandchild 13 */
static void write_tree(int swap)
{
	struct rst_tree_proc p[4] = {
		{.pid = 10, .ppid = 0, .pgid = 9, .sid = 7},
		{.pid = 11, .ppid = 10, .pgid = 11, .sid = 7},
		{.pid = 12,
		 .ppid = 10,
		 .pgid = 9,
		 .sid = 7,
		 .zombie = true,
		 .exit_status = 42 << 8,
		 .comm = "worker"},
		{.pid = 13, .ppid = 11, .pgid = 11, .sid = 7},
	};
	struct rst_tree t = {p, 4, 4};
	int fd = open(dir, O_DIRECTORY | O_RDONLY);

	if (swap) {
		struct rst_tree_proc x = p[1];

		p[1] = p[3];
		p[3] = x;
	}
	cr_assert_geq(fd, 0);
	cr_assert_eq(rst_tree_img_write(fd, &t), 0);
	close(fd);
}

TestSuite(rst_tree_img, .init = setup, .fini = teardown);

Test(rst_tree_img, reads_back_what_was_written)
{
	Haul__Img__Tree *tr = NULL;

	write_tree(0);
	cr_assert(rst_is_tree_image(dir));
	cr_assert_eq(rst_tree_img_read(dir, &tr), 0);
	cr_assert_eq(tr->root, 10);
	cr_assert_eq(tr->n_procs, 4);
	cr_expect_eq(tr->procs[2]->zombie, true);
	cr_expect_eq(tr->procs[2]->exit_status, 42 << 8);
	cr_expect_str_eq(tr->procs[2]->comm ? tr->procs[2]->comm : "", "worker");
	cr_expect_null(tr->procs[1]->comm, "a live process's name is its state's, not the tree's");
	cr_expect_eq(tr->procs[3]->ppid, 11);
	cr_expect_eq(tr->procs[1]->sid, 7);
	haul__img__tree__free_unpacked(tr, NULL);
}

Test(rst_tree_img, a_flipped_byte_is_refused)
{
	Haul__Img__Tree *tr = NULL;
	char path[128];
	uint8_t b;
	int fd;

	write_tree(0);
	snprintf(path, sizeof(path), "%s/%s", dir, RST_TREE_FILE);
	fd = open(path, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_assert_eq(pread(fd, &b, 1, 40), 1);
	b ^= 1;
	cr_assert_eq(pwrite(fd, &b, 1, 40), 1);
	close(fd);
	cr_expect_eq(rst_tree_img_read(dir, &tr), -EBADMSG);
}

Test(rst_tree_img, a_child_before_its_parent_is_refused)
{
	Haul__Img__Tree *tr = NULL;

	write_tree(1);
	cr_expect_eq(rst_tree_img_read(dir, &tr), -EBADMSG);
}

Test(rst_tree_img, a_directory_without_a_tree_is_not_one)
{
	Haul__Img__Tree *tr = NULL;

	cr_expect_not(rst_is_tree_image(dir));
	cr_expect_eq(rst_tree_img_read(dir, &tr), -ENOENT);
}

/* A child sharing its parent's fd table and fs info: version 2, read back. */
Test(rst_tree_img, a_child_sharing_its_parents_tables_reads_back_as_version_2)
{
	struct rst_tree_proc p[2] = {
		{.pid = 10, .ppid = 0, .pgid = 10, .sid = 10},
		{.pid = 11, .ppid = 10, .pgid = 10, .sid = 10, .shares = RST_TREE_SHARES},
	};
	struct rst_tree t = {p, 2, 2};
	Haul__Img__Tree *tr = NULL;
	int fd = open(dir, O_DIRECTORY | O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(rst_tree_img_write(fd, &t), 0);
	close(fd);
	cr_assert_eq(rst_tree_img_read(dir, &tr), 0);
	cr_expect_eq(tr->version, RST_TREE_VERSION_SHARES);
	cr_expect_eq(tr->procs[1]->shares, RST_TREE_SHARES);
	cr_expect_eq(tr->procs[0]->shares, 0);
	haul__img__tree__free_unpacked(tr, NULL);
}

/* The root has no parent in the tree to share with: the image is damaged. */
Test(rst_tree_img, a_root_sharing_with_its_parent_is_refused)
{
	struct rst_tree_proc p[1] = {{.pid = 10, .pgid = 10, .sid = 10, .shares = 0x400}};
	struct rst_tree t = {p, 1, 1};
	Haul__Img__Tree *tr = NULL;
	int fd = open(dir, O_DIRECTORY | O_RDONLY);

	cr_assert_geq(fd, 0);
	cr_assert_eq(rst_tree_img_write(fd, &t), 0);
	close(fd);
	cr_expect_eq(rst_tree_img_read(dir, &tr), -EBADMSG);
	cr_expect_null(tr);
}
