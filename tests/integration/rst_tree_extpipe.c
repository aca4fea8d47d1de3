/*
 * rst_tree_extpipe.c - a tree's pipes to processes that stay, found for
 * every member although the host-wide scan of pipe holders (fd_external.c)
 * is made once per tree, not once per process.
 *
 * The tree: a bash root holding the read end of a pipe inside the tree
 * (process substitution: its writer is a child), so the scan is made for
 * the root first; and a child whose fd 3 is a pipe to this test process.
 * `haul checkpoint` of the root must refuse naming the child's fd 3 and
 * this process, leaving the tree running.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "th_net.h"

static char dir[64];
static pid_t root = -1;
static int rd = -1;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/haul-rsttreeext-%d", getpid());
	mkdir(dir, 0755);
	setenv("HAUL_LOCK_DIR", dir, 1);
	if (access(th_haul_bin(), X_OK))
		cr_skip_test("no haul binary at %s", th_haul_bin());
	if (access("/bin/bash", X_OK))
		cr_skip_test("no /bin/bash to build the tree with");
}

static void teardown(void)
{
	if (root > 0) {
		kill(-root, SIGKILL);
		th_kill(root, SIGKILL, 5000);
	}
	if (rd >= 0)
		close(rd);
	th_sh("rm -rf %s", dir);
}

TestSuite(rst_tree_extpipe, .init = setup, .fini = teardown, .timeout = 60);

Test(rst_tree_extpipe, a_child_pipe_to_a_process_that_stays_is_refused_after_the_root_was_scanned)
{
	/* fd 1 (the pipe to us) moves to fd 3 of the child only; the root keeps fd 5 of its own pipe */
	char *argv[] = {"/bin/bash", "-c",
			"exec 3>&1 1>/dev/null 2>/dev/null; exec 5< <(exec sleep 1000); "
			"{ echo ready >&3; exec sleep 1000; } & exec 3>&-; wait",
			NULL};
	char out[4096], want[64], line[64];

	root = th_spawn_pipe(NULL, argv, &rd);
	cr_assert_gt(root, 0);
	cr_assert_eq(th_wait_line(rd, "ready", 10000, line, sizeof(line)), 0,
		     "the tree did not start");
	cr_expect_eq(th_run(out, sizeof(out), "%s checkpoint %d --images %s/img", th_haul_bin(),
			    (int)root, dir),
		     1);
	snprintf(want, sizeof(want), "fd 3 is a pipe to pid %d", (int)getpid());
	cr_expect(strstr(out, want), "said: %s", out);
	cr_expect_eq(kill(root, 0), 0, "the tree's root is gone after the refusal");
}
