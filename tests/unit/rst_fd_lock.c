/*
 * rst_fd_lock.c - the fdinfo "lock:" lines (src/restore/fd_lock.c): which
 * are carried and as what, which are refused by name, and the call that
 * takes each again.  Lines as fs/locks.c lock_get_status prints them.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/syscall.h>

#include "restore/restore_int.h"

#define HEAD "pos:\t0\nflags:\t0100002\nmnt_id:\t25\nino:\t1234\n"

static int check(const char *info, char *why, size_t wl)
{
	why[0] = '\0';
	return rst_lock_check(7, "/var/lib/app/db", info, why, wl);
}

Test(rst_fd_lock, posix_ofd_flock_and_active_lease_are_carried)
{
	const char *info = HEAD "lock:\t1: POSIX  ADVISORY  WRITE 4242 08:01:1234 0 99\n"
				"lock:\t2: OFDLCK ADVISORY  READ  -1 08:01:1234 200 EOF\n"
				"lock:\t3: FLOCK  ADVISORY  WRITE 4242 08:01:1234 0 EOF\n"
				"lock:\t4: LEASE  ACTIVE    READ  4242 08:01:1234 0 EOF\n";
	Haul__Img__FileObject o = HAUL__IMG__FILE_OBJECT__INIT;
	char why[256];

	cr_assert_eq(check(info, why, sizeof(why)), 0, "%s", why);
	o.path = "/var/lib/app/db";
	cr_assert_eq(rst_lock_dump(info, 7, &o), 0);
	cr_assert_eq(o.n_locks, 4);
	cr_expect_eq(o.locks[0]->kind, HAUL__IMG__LOCK_KIND__LOCK_POSIX);
	cr_expect_eq(o.locks[0]->type, F_WRLCK);
	cr_expect_eq(o.locks[0]->start, 0);
	cr_expect_eq(o.locks[0]->len, 100, "bytes 0..99 are 100 bytes");
	cr_expect_eq(o.locks[1]->kind, HAUL__IMG__LOCK_KIND__LOCK_OFD);
	cr_expect_eq(o.locks[1]->type, F_RDLCK);
	cr_expect_eq(o.locks[1]->start, 200);
	cr_expect_eq(o.locks[1]->len, 0, "EOF is len 0");
	cr_expect_eq(o.locks[2]->kind, HAUL__IMG__LOCK_KIND__LOCK_FLOCK);
	cr_expect_eq(o.locks[3]->kind, HAUL__IMG__LOCK_KIND__LOCK_LEASE);
	cr_expect_eq(o.locks[3]->type, F_RDLCK);
	for (size_t i = 0; i < o.n_locks; i++)
		free(o.locks[i]);
	free(o.locks);
}

Test(rst_fd_lock, lease_being_broken_is_refused_naming_fd_and_file)
{
	char why[256];

	cr_assert_eq(check(HEAD "lock:\t1: LEASE  BREAKING  READ  4242 08:01:1234 0 EOF\n", why,
			   sizeof(why)),
		     -EOPNOTSUPP);
	cr_expect(strstr(why, "fd 7") && strstr(why, "/var/lib/app/db") &&
			  strstr(why, "lease being broken"),
		  "%s", why);
}

Test(rst_fd_lock, delegation_mandatory_and_unknown_locks_are_refused)
{
	static const char *const bad[] = {
		HEAD "lock:\t1: DELEG  ACTIVE    READ  4242 08:01:1234 0 EOF\n",
		HEAD "lock:\t1: POSIX  MANDATORY WRITE 4242 08:01:1234 0 EOF\n",
		HEAD "lock:\t1: ACCESS ADVISORY  READ  4242 08:01:1234 0 EOF\n",
		HEAD "lock:\t1: POSIX  ADVISORY  UNLCK 4242 08:01:1234 0 EOF\n",
		HEAD "lock:\tgarbage\n",
	};
	char why[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_expect_eq(check(bad[i], why, sizeof(why)), -EOPNOTSUPP, "accepted: %s", bad[i]);
		cr_expect(strstr(why, "fd 7"), "reason does not name the fd: %s", why);
	}
}

Test(rst_fd_lock, no_lock_lines_means_nothing_to_carry)
{
	Haul__Img__FileObject o = HAUL__IMG__FILE_OBJECT__INIT;
	char why[256];

	cr_expect_eq(check(HEAD, why, sizeof(why)), 0);
	cr_expect_eq(rst_lock_dump(HEAD, 7, &o), 0);
	cr_expect_eq(o.n_locks, 0);
	cr_expect_null(o.locks);
}

Test(rst_fd_lock, each_kind_is_taken_again_with_its_own_non_blocking_call)
{
	Haul__Img__FileLock posix = HAUL__IMG__FILE_LOCK__INIT, fl = HAUL__IMG__FILE_LOCK__INIT,
			    ofd = HAUL__IMG__FILE_LOCK__INIT, lease = HAUL__IMG__FILE_LOCK__INIT;
	struct rst_lock_call c;
	struct flock f;

	posix.kind = HAUL__IMG__LOCK_KIND__LOCK_POSIX;
	posix.type = F_WRLCK;
	posix.start = 10;
	posix.len = 5;
	cr_assert_eq(rst_lock_call(&posix, 9, &c), 0);
	cr_expect_eq(c.nr, SYS_fcntl);
	cr_expect_eq(c.args[0], 9);
	cr_expect_eq(c.args[1], F_SETLK);
	cr_assert_eq(c.buf_arg, 2);
	cr_assert_eq(c.buflen, sizeof(f));
	memcpy(&f, c.buf, sizeof(f));
	cr_expect_eq(f.l_type, F_WRLCK);
	cr_expect_eq(f.l_whence, SEEK_SET);
	cr_expect_eq(f.l_start, 10);
	cr_expect_eq(f.l_len, 5);
	cr_expect_eq(f.l_pid, 0);

	ofd.kind = HAUL__IMG__LOCK_KIND__LOCK_OFD;
	ofd.type = F_RDLCK;
	cr_assert_eq(rst_lock_call(&ofd, 9, &c), 0);
	cr_expect_eq(c.args[1], F_OFD_SETLK);

	fl.kind = HAUL__IMG__LOCK_KIND__LOCK_FLOCK;
	fl.type = F_RDLCK;
	cr_assert_eq(rst_lock_call(&fl, 9, &c), 0);
	cr_expect_eq(c.nr, SYS_flock);
	cr_expect_eq(c.args[1], LOCK_SH | LOCK_NB);
	cr_expect_lt(c.buf_arg, 0);

	lease.kind = HAUL__IMG__LOCK_KIND__LOCK_LEASE;
	lease.type = F_WRLCK;
	cr_assert_eq(rst_lock_call(&lease, 9, &c), 0);
	cr_expect_eq(c.args[1], F_SETLEASE);
	cr_expect_eq(c.args[2], F_WRLCK);
}
