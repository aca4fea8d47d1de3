/*
 * rst_batch.c - a batch of injected calls that fails during the target's
 * restore (src/restore/target_batch.c): the failed call is reported by
 * name, with its index in the batch and its errno, the restore fails, and
 * the migration rolls back: the process runs on in the source, one copy.
 * The target's page server makes one call fail with
 * HAUL_FAULT=fail:batch:NAME (an unknown system call: ENOSYS), in the
 * middle of the credentials batch of the main thread and of the
 * signal-actions batch.  And a process that ignores SIGTRAP, has one
 * pending or catches it comes back with it as it was (the blob's trap).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th_mig.h"
#include "th_net.h"
#include "th_verify.h"

static struct th_mig M;

static void teardown(void)
{
	th_mig_teardown(&M);
}

/* Migrate with the target's @fault; the line naming @call; the source must run on. */
static void fails_and_rolls_back(const char *fault, const char *call)
{
	char line[1024], needle[64];
	int fd, st;
	pid_t haul;
	long seq;

	setenv("HAUL_FAULT", fault, 1);
	th_mig_setup(&M, 0);
	unsetenv("HAUL_FAULT");
	th_mig_workload(&M, 16, -1, 0);
	haul = th_mig_haul(&M, &fd, NULL);
	snprintf(needle, sizeof(needle), "%s (call ", call);
	cr_expect_eq(th_wait_line(fd, needle, 60000, line, sizeof(line)), 0,
		     "haul did not name the failed call %s", call);
	cr_expect(strstr(line, " of ") && strstr(line, "in thread"), "no index: %s", line);
	cr_expect(strstr(line, strerror(ENOSYS)), "no errno: %s", line);
	st = th_wait_exit(haul, 60000);
	th_mig_dump_output(fd);
	close(fd);
	cr_assert_neq(st, 0, "haul migrate succeeded with a failing call");
	seq = th_mig_seq(&M);
	cr_assert(th_mig_ticking(&M, M.net_a, 5000), "the workload does not run on in the source");
	cr_assert_gt(th_mig_seq(&M), seq, "the workload made no progress");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
	cr_assert_eq(kill(M.wl_pid, 0), 0, "the process is gone");
}

Test(rst_batch, a_failed_credentials_call_is_named_and_the_migration_rolls_back, .fini = teardown,
     .timeout = 120)
{
	fails_and_rolls_back("fail:batch:setresuid", "setresuid");
}

Test(rst_batch, a_failed_signal_action_is_named_and_the_migration_rolls_back, .fini = teardown,
     .timeout = 120)
{
	fails_and_rolls_back("fail:batch:rt_sigaction", "rt_sigaction");
}

/*
 * `haul checkpoint` then `haul restore` of tests/progs/sigtrap_subject
 * @kind: the restored process has the same SIGTRAP action, mask and
 * pending set as before (th_verify), whether its batches ran one call at a
 * time (ignored, pending) or through the blob (caught).
 */
static void sigtrap_roundtrip(const char *kind)
{
	char dir[128], out[160], img[160], prog[512], spid[256], cmd[1024], line[256];
	char *argv[] = {prog, (char *)kind, out, NULL};
	struct th_state *before;
	pid_t pid, here;
	FILE *p;

	snprintf(dir, sizeof(dir), "/tmp/haul-sigtrap-%s-%d", kind, (int)getpid());
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(prog, sizeof(prog), "%s/sigtrap_subject", th_progs_dir());
	th_sh("rm -rf %s && mkdir -p %s", dir, dir);
	pid = th_spawn(NULL, argv, NULL);
	cr_assert_gt(pid, 0);
	cr_assert_eq(th_wait_file(out, 0, "ready", 10000, NULL, 0), 0, "%s never got ready", kind);
	cr_assert_eq(th_state_take(pid, 0, &before), 0);
	snprintf(spid, sizeof(spid), "%d", (int)pid);
	cr_assert_eq(th_sh("%s checkpoint %s --images %s", th_haul_bin(), spid, img), 0,
		     "checkpoint of %s failed", kind);
	th_wait_exit(pid, 5000);
	snprintf(cmd, sizeof(cmd), "%s restore --images %s --detach", th_haul_bin(), img);
	p = popen(cmd, "r");
	cr_assert(p);
	/* its last line on stdout is the pid */
	spid[0] = '\0';
	while (fgets(line, sizeof(line), p))
		snprintf(spid, sizeof(spid), "%s", line);
	cr_assert_eq(pclose(p), 0, "restore of %s failed", kind);
	here = (pid_t)atoi(spid);
	cr_assert_gt(here, 0);
	th_verify_same(before, here, 0, kind);
	kill(here, SIGKILL);
	th_state_free(before);
	th_sh("rm -rf %s", dir);
}

Test(rst_batch, an_ignored_sigtrap_stays_ignored, .timeout = 60)
{
	sigtrap_roundtrip("ignored");
}

Test(rst_batch, a_pending_sigtrap_stays_pending, .timeout = 60)
{
	sigtrap_roundtrip("pending");
}

Test(rst_batch, a_caught_sigtrap_keeps_its_handler, .timeout = 60)
{
	sigtrap_roundtrip("caught");
}
