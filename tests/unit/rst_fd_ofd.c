/*
 * rst_fd_ofd.c - which fds share one open file description (fd_ofd.c),
 * without kcmp: a pid kcmp cannot look at makes rst_ofd_assign fall back
 * to comparing inode, position and flags.  (With kcmp: tests/integration/
 * rst_files.c.)
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <string.h>

#include "restore/restore_int.h"

static void fd_at(struct rst_ofd_key *o, int fd, uint64_t ino, uint64_t pos, uint32_t flags)
{
	memset(o, 0, sizeof(*o));
	o->fd = fd;
	o->dev = 2049;
	o->ino = ino;
	o->pos = pos;
	o->flags = flags;
}

Test(rst_fd_ofd, without_kcmp_same_inode_offset_and_flags_make_one_open_file)
{
	struct rst_ofd_key f[5];
	size_t lead[5];

	fd_at(&f[0], 0, 7, 0, O_RDONLY);		/* another file */
	fd_at(&f[1], 1, 42, 4096, O_WRONLY);		/* cmd >log ... */
	fd_at(&f[2], 2, 42, 4096, O_WRONLY);		/* ... 2>&1: the same OFD */
	fd_at(&f[3], 3, 42, 0, O_RDONLY);		/* a reader of the log: its own OFD */
	fd_at(&f[4], 4, 42, 4096, O_WRONLY | O_APPEND); /* other flags: its own OFD */
	/* pid -1: kcmp fails (ESRCH), so the fallback decides. */
	cr_assert_eq(rst_ofd_assign(-1, f, 5, lead), 0);
	cr_expect_eq(lead[2], 1, "fds 1 and 2 must share one open file");
	cr_expect_eq(lead[0], 0);
	cr_expect_eq(lead[1], 1, "the first fd of an open file leads it");
	cr_expect_eq(lead[3], 3);
	cr_expect_eq(lead[4], 4);
}

Test(rst_fd_ofd, every_fd_leads_its_open_file_even_alone)
{
	struct rst_ofd_key f[1];
	size_t lead[1] = {99};

	fd_at(&f[0], 5, 9, 0, O_RDWR);
	cr_assert_eq(rst_ofd_assign(-1, f, 1, lead), 0);
	cr_expect_eq(lead[0], 0);
}

Test(rst_fd_ofd, without_kcmp_two_eventfds_on_the_one_anon_inode_stay_apart)
{
	struct rst_ofd_key f[2];
	size_t lead[2];

	fd_at(&f[0], 3, 1, 0, O_RDWR);
	fd_at(&f[1], 4, 1, 0, O_RDWR);
	f[0].kind = f[1].kind = HAUL__IMG__FD_KIND__FD_EVENTFD;
	cr_assert_eq(rst_ofd_assign(-1, f, 2, lead), 0);
	cr_expect_eq(lead[1], 1);
}
