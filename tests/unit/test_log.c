/* test_log.c - the logging helpers format one line per message. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <unistd.h>

#define LOG_PREFIX "t: "
#include "common/log.h"

Test(log, err_r_appends_strerror)
{
	int fds[2];
	char buf[256] = {0};

	cr_assert_eq(pipe(fds), 0);
	int saved = dup(STDERR_FILENO);
	dup2(fds[1], STDERR_FILENO);
	pr_err_r(-ENOENT, "cannot open '%s'", "x");
	dup2(saved, STDERR_FILENO);
	close(fds[1]);
	cr_assert_gt(read(fds[0], buf, sizeof(buf) - 1), 0);
	cr_assert_str_eq(buf, "haul: error: t: cannot open 'x': No such file or directory\n");
}
