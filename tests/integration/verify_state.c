/*
 * verify_state.c - the before/after state verifier (th_verify.c) itself: a
 * process read twice without change compares equal, and each kind of change
 * a restorer could miss is named (fd flags, a mapping's protection, a lock,
 * a blocked signal, a prctl, a limit).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th_verify.h"

/*
 * A child with some state (a file with a lock, a private mapping); on a byte
 * from @cmd it changes one thing of each kind and answers on @ack.
 */
static pid_t spawn_subject(int *cmd, int *ack, const char *file)
{
	int c[2], a[2];
	pid_t pid;

	cr_assert_eq(pipe(c), 0);
	cr_assert_eq(pipe(a), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(file, O_RDWR | O_CREAT | O_TRUNC, 0600);
		char *m = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1,
			       0);
		struct rlimit rl = {64, 128};
		sigset_t set;
		char b = 0;

		close(c[1]);
		close(a[0]);
		if (fd < 0 || m == MAP_FAILED || flock(fd, LOCK_SH) || write(a[1], &b, 1) != 1)
			_exit(1);
		if (read(c[0], &b, 1) != 1)
			_exit(0);
		fcntl(fd, F_SETFD, FD_CLOEXEC);
		mprotect(m, 4096, PROT_READ);
		flock(fd, LOCK_EX);
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		sigprocmask(SIG_BLOCK, &set, NULL);
		prctl(PR_SET_PDEATHSIG, SIGHUP);
		setrlimit(RLIMIT_NOFILE, &rl);
		if (write(a[1], &b, 1) != 1)
			_exit(1);
		for (;;)
			pause();
	}
	close(c[0]);
	close(a[1]);
	*cmd = c[1];
	*ack = a[0];
	return pid;
}

static void reap(pid_t pid)
{
	int st;

	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
}

Test(verify, a_process_read_twice_unchanged_compares_equal, .timeout = 30)
{
	char file[64], report[8192], b;
	struct th_state *x, *y;
	int cmd, ack;
	pid_t pid;

	snprintf(file, sizeof(file), "/tmp/haul-verify-%d", (int)getpid());
	pid = spawn_subject(&cmd, &ack, file);
	cr_assert_eq(read(ack, &b, 1), 1);
	cr_assert_eq(th_state_take(pid, 0, &x), 0);
	cr_assert_eq(th_state_take(pid, 0, &y), 0);
	cr_expect_eq(th_state_diff(x, y, 0, report, sizeof(report)), 0, "%s", report);
	th_state_free(x);
	th_state_free(y);
	reap(pid);
	unlink(file);
}

Test(verify, names_each_changed_item, .timeout = 30)
{
	static const char *const want[] = {"flags",	      "map ",
					   "lock FLOCK",      "status SigBlk",
					   "prctl pdeathsig", "limit Max open files"};
	char file[64], report[8192], b = 1;
	struct th_state *x, *y;
	int cmd, ack;
	pid_t pid;

	snprintf(file, sizeof(file), "/tmp/haul-verify-%d", (int)getpid());
	pid = spawn_subject(&cmd, &ack, file);
	cr_assert_eq(read(ack, &b, 1), 1);
	cr_assert_eq(th_state_take(pid, 0, &x), 0);
	cr_assert_eq(write(cmd, &b, 1), 1);
	cr_assert_eq(read(ack, &b, 1), 1);
	cr_assert_eq(th_state_take(pid, 0, &y), 0);
	cr_expect_geq(th_state_diff(x, y, 0, report, sizeof(report)), 6, "%s", report);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		cr_expect(strstr(report, want[i]), "'%s' not reported:\n%s", want[i], report);
	th_state_free(x);
	th_state_free(y);
	reap(pid);
	unlink(file);
}
