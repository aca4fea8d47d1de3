/*
 * mig_caps.c - the capability exchange at session open: a target that does
 * not announce a resource kind the process holds makes `haul migrate`
 * refuse before pre-copy and the freeze, naming the kind; the process
 * runs on in the source, untouched.  The target's page server is made to
 * announce fewer kinds with HAUL_FAULT=caps-without:KIND.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th_mig.h"

static struct th_mig M;

static void teardown(void)
{
	th_mig_teardown(&M);
}

Test(mig_caps, a_kind_the_target_does_not_announce_is_refused_before_the_freeze, .fini = teardown,
     .timeout = 90)
{
	char line[512], cg[256];
	int fd, st;
	pid_t haul;
	long seq;

	/* Only the page server (started by the setup) sees the hook. */
	setenv("HAUL_FAULT", "caps-without:FD_REG", 1);
	th_mig_setup(&M, 0);
	unsetenv("HAUL_FAULT");
	/* its stdout is a regular file (the tick log): kind FD_REG */
	th_mig_workload(&M, 16, -1, 0);
	haul = th_mig_haul(&M, &fd, NULL);
	st = th_wait_exit(haul, 30000);
	cr_expect_eq(th_wait_line(fd, "FD_REG", 1000, line, sizeof(line)), 0,
		     "haul did not name the kind the target lacks");
	cr_expect(strstr(line, "target cannot restore"), "%s", line);
	close(fd);
	cr_assert_eq(st, 1, "haul migrate exited with %d", st);
	seq = th_mig_seq(&M);
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the workload stopped in the source");
	cr_assert_gt(th_mig_seq(&M), seq, "the workload made no progress");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
	snprintf(cg, sizeof(cg), "/proc/%d/cgroup", M.wl_pid);
	cr_assert_eq(kill(M.wl_pid, 0), 0, "the process is gone");
	cr_assert_neq(th_sh("grep -q 'haul/mig-' %s", cg), 0, "it was moved into a cgroup");
}

/* A deleted file mapped privately: an older target would map whatever now has its path. */
Test(mig_caps, a_deleted_mapping_to_a_target_without_its_kind_is_refused, .fini = teardown,
     .timeout = 90)
{
	char line[512];
	int fd, st;
	pid_t haul;

	setenv("HAUL_FAULT", "caps-without:RES_VMA_GHOST", 1);
	th_mig_setup(&M, 0);
	unsetenv("HAUL_FAULT");
	M.vmcases = true; /* the "deleted" case maps a deleted file */
	th_mig_workload(&M, 16, -1, 0);
	haul = th_mig_haul(&M, &fd, NULL);
	st = th_wait_exit(haul, 30000);
	cr_expect_eq(th_wait_line(fd, "RES_VMA_GHOST", 1000, line, sizeof(line)), 0,
		     "haul did not name the kind the target lacks");
	cr_expect(strstr(line, "deleted files mapped privately"), "%s", line);
	close(fd);
	cr_assert_eq(st, 1, "haul migrate exited with %d", st);
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the workload stopped in the source");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}
