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
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "th_mig.h"
#include "th_net.h"
#include "th_tree.h"

static struct th_mig M;
static char dir[160]; /* the program's DIR: holds the tag, so teardown finds every copy */

static void teardown(void)
{
	if (dir[0]) /* not when the setup skipped the test */
		th_tree_touch(dir, "go");
	th_mig_teardown(&M);
}

/* unix_scm_stream @mode in namespace A, ready. */
static void start_tree(const char *mode)
{
	th_tree_start_in_a(&M, dir, sizeof(dir), "unix_scm_stream", mode);
}

static void expect_ok(void)
{
	th_tree_touch(dir, "go");
	th_tree_expect_ok(dir, 20000);
}

Test(mig_unix_scm, files_in_flight_on_a_stream_arrive_with_their_bytes_on_the_target,
     .fini = teardown, .timeout = 150)
{
	start_tree("tree");
	th_tree_migrate(&M);
	th_tree_assert_in_b(&M);
	expect_ok();
}

Test(mig_unix_scm, files_in_flight_no_process_holds_are_made_again_on_the_target, .fini = teardown,
     .timeout = 150)
{
	start_tree("pipe");
	th_tree_migrate(&M);
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
