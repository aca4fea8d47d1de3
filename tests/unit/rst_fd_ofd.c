/*
 * rst_fd_ofd.c - which fds share one open file description (fd_ofd.c),
 * without kcmp: a pid kcmp cannot look at makes rst_ofd_assign fall back
 * to comparing inode, position and flags.  (With kcmp: tests/integration/
 * rst_files.c.)
 */
#include <criterion/criterion.h>
#include <fcntl.h>

#include "restore/restore_int.h"

static void fd_at(Haul__Img__Fd *o, int fd, uint64_t ino, uint64_t pos, uint32_t flags)
{
	haul__img__fd__init(o);
	o->fd = fd;
	o->path = "/var/log/app.log";
	o->dev = 2049;
	o->ino = ino;
	o->pos = pos;
	o->flags = flags;
}

Test(rst_fd_ofd, without_kcmp_same_inode_offset_and_flags_make_one_open_file)
{
	Haul__Img__Fd f[5];

	fd_at(&f[0], 0, 7, 0, O_RDONLY);		/* another file */
	fd_at(&f[1], 1, 42, 4096, O_WRONLY);		/* cmd >log ... */
	fd_at(&f[2], 2, 42, 4096, O_WRONLY);		/* ... 2>&1: the same OFD */
	fd_at(&f[3], 3, 42, 0, O_RDONLY);		/* a reader of the log: its own OFD */
	fd_at(&f[4], 4, 42, 4096, O_WRONLY | O_APPEND); /* other flags: its own OFD */
	/* pid -1: kcmp fails (ESRCH), so the fallback decides. */
	cr_assert_eq(rst_ofd_assign(-1, f, 5), 0);
	for (int i = 0; i < 5; i++)
		cr_assert(f[i].has_file_id);
	cr_expect_eq(f[2].file_id, f[1].file_id, "fds 1 and 2 must share one open file");
	cr_expect_neq(f[0].file_id, f[1].file_id);
	cr_expect_neq(f[3].file_id, f[1].file_id);
	cr_expect_neq(f[4].file_id, f[1].file_id);
	cr_expect_neq(f[4].file_id, f[3].file_id);
	cr_expect_eq(f[1].file_id, 2, "an id is its first fd's index + 1");
}

Test(rst_fd_ofd, every_fd_gets_an_id_even_alone)
{
	Haul__Img__Fd f[1];

	fd_at(&f[0], 5, 9, 0, O_RDWR);
	cr_assert_eq(rst_ofd_assign(-1, f, 1), 0);
	cr_expect(f[0].has_file_id);
	cr_expect_eq(f[0].file_id, 1);
}

Test(rst_fd_ofd, without_kcmp_two_eventfds_on_the_one_anon_inode_stay_apart)
{
	Haul__Img__Fd f[2];

	fd_at(&f[0], 3, 1, 0, O_RDWR);
	fd_at(&f[1], 4, 1, 0, O_RDWR);
	f[0].kind = f[1].kind = HAUL__IMG__FD_KIND__FD_EVENTFD;
	cr_assert_eq(rst_ofd_assign(-1, f, 2), 0);
	cr_expect_neq(f[0].file_id, f[1].file_id);
}
