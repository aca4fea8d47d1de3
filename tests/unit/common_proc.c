/*
 * common_proc.c - small file reads and /proc/PID/stat fields (common/proc.h)
 * on this test's own process and a temporary file.  No root.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/proc.h"

Test(common_proc, read_file_terminates_and_returns_the_length)
{
	char path[] = "/tmp/haul-proc-test-XXXXXX", buf[8];
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "0123456789", 10), 10);
	close(fd);
	cr_assert_eq(haul_read_file(path, buf, sizeof(buf)), 7, "one short of the buffer");
	cr_assert_str_eq(buf, "0123456");
	unlink(path);
	cr_assert_eq(haul_read_file(path, buf, sizeof(buf)), -ENOENT);
}

Test(common_proc, stat_fields_count_after_a_comm_with_spaces_and_parens)
{
	unsigned long long ppid = 0, start = 0, again = 0;
	char state = 0;

	/* the comm may hold ") " itself: the fields start after the last ')' */
	cr_assert_eq(prctl(PR_SET_NAME, "a) b) c", 0, 0, 0), 0);
	cr_assert_eq(haul_proc_stat_field(getpid(), 4, &state, &ppid), 0);
	cr_assert_eq(state, 'R');
	cr_assert_eq(ppid, (unsigned long long)getppid());
	cr_assert_eq(haul_proc_starttime(getpid(), &start), 0);
	cr_assert_gt(start, 0);
	cr_assert_eq(haul_proc_stat_field(getpid(), 22, NULL, &again), 0);
	cr_assert_eq(again, start);
}

Test(common_proc, a_missing_pid_or_field_is_an_error)
{
	unsigned long long v;

	cr_assert_eq(haul_proc_starttime(-1, &v), -ENOENT);
	cr_assert_eq(haul_proc_stat_field(getpid(), 1000, NULL, &v), -EINVAL);
}

Test(common_proc, opendir_lists_this_process_threads_and_fails_for_no_process)
{
	struct dirent *de;
	bool self = false;
	DIR *d = haul_proc_opendir(getpid(), "task");

	cr_assert_not_null(d);
	while ((de = readdir(d)))
		if (atoi(de->d_name) == (int)getpid())
			self = true;
	closedir(d);
	cr_assert(self, "the main thread is listed in /proc/PID/task");
	errno = 0;
	cr_assert_null(haul_proc_opendir(-1, "task"));
	cr_assert_eq(errno, ENOENT);
}
