/*
 * mig_unix_scm.c - `haul migrate` of a tree whose parent has files in
 * flight (SCM_RIGHTS) in the queue of a stream socketpair to its child
 * (tests/progs/unix_scm_stream tree): on the target the child gets each
 * file with the bytes it was sent with, and the files work; so does one
 * process whose queue holds a pipe, an eventfd and a memfd that no
 * process holds any more (unix_scm_stream pipe).  When haul is
 * killed with the state sent (a rollback: the guardian resumes the
 * source), the source's queue is as it was: the child reads the same.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "th_mig.h"
#include "th_rst.h"

static struct th_mig M;
static char dir[160]; /* the program's DIR: holds the tag, so teardown finds every copy */

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static void touch(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	close(open(path, O_WRONLY | O_CREAT, 0644));
}

static void teardown(void)
{
	touch("go");
	th_mig_teardown(&M);
}

/* Wait (bounded) until DIR/@name holds @needle. */
static bool wait_for(const char *name, const char *needle, int ms)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (int t = 0; t < ms; t += 10) {
		const char *s = th_slurp(path);

		if (s && strstr(s, needle))
			return true;
		sleep_ms(10);
	}
	return false;
}

/* unix_scm_stream @mode in namespace A, ready. */
static void start_tree(const char *mode)
{
	char bin[512], out[200], path[256];
	char *argv[] = {bin, (char *)mode, dir, NULL};

	th_mig_setup(&M, 0);
	snprintf(dir, sizeof(dir), "%s/%s", M.dir, M.tag);
	mkdir(dir, 0755);
	snprintf(bin, sizeof(bin), "%s/unix_scm_stream", th_progs_dir());
	snprintf(out, sizeof(out), "%s/root.stdout", dir);
	M.wl_pid = th_spawn(M.net.a, argv, out);
	cr_assert_gt(M.wl_pid, 0);
	snprintf(path, sizeof(path), "%s/ready-child", dir);
	for (int i = 0; i < 1000 && access(path, F_OK); i++)
		sleep_ms(10);
	snprintf(path, sizeof(path), "%s/ready-parent", dir);
	for (int i = 0; i < 1000 && access(path, F_OK); i++)
		sleep_ms(10);
	cr_assert_eq(access(path, F_OK), 0, "the tree never got ready");
}

static void expect_ok(void)
{
	char path[256];

	touch("go");
	cr_expect(wait_for("child.out", "ok child", 20000), "child: %s",
		  th_slurp(strcat(strcpy(path, dir), "/child.out")));
	cr_expect(wait_for("parent.out", "ok parent", 20000), "parent: %s",
		  th_slurp(strcat(strcpy(path, dir), "/parent.out")));
}

Test(mig_unix_scm, files_in_flight_on_a_stream_arrive_with_their_bytes_on_the_target,
     .fini = teardown, .timeout = 150)
{
	const char *extra[] = {"--downtime", "50", NULL};
	char path[256];
	struct stat ns;
	pid_t pid, there;
	int fd, st;

	start_tree("tree");
	pid = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, 90000);
	if (st)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate of the tree failed");
	there = (pid_t)th_mig_json(&M, "target_pid");
	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)there);
	cr_assert(there > 0 && !stat(path, &ns) && ns.st_ino == M.net_b,
		  "the tree does not run in the target");
	expect_ok();
}

Test(mig_unix_scm, files_in_flight_no_process_holds_are_made_again_on_the_target, .fini = teardown,
     .timeout = 150)
{
	const char *extra[] = {"--downtime", "50", NULL};
	pid_t pid;
	int fd, st;

	start_tree("pipe");
	pid = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, 90000);
	if (st)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate of the process failed");
	expect_ok();
}

Test(mig_unix_scm, haul_killed_with_the_state_sent_leaves_the_queue_as_it_was, .fini = teardown,
     .timeout = 150)
{
	const char *extra[] = {"--downtime", "50", NULL};
	char line[512];
	pid_t pid;
	int fd;

	start_tree("tree");
	setenv("HAUL_FAULT", "stall:state", 1);
	pid = th_mig_haul(&M, &fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(pid, 0);
	cr_assert_eq(th_wait_line(fd, "fault: stalled at", 60000, line, sizeof(line)), 0,
		     "haul never reached the fault point");
	kill(pid, SIGKILL);
	th_wait_exit(pid, 5000);
	close(fd);
	/* the guardian resumes the source: its child reads what was queued */
	expect_ok();
}
