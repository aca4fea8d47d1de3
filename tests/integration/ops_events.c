/*
 * ops_events.c - `haul migrate --events FD|FILE`: an orchestrator can follow
 * a migration from the stream alone.  Each test runs a real migration
 * between two network namespaces (th_mig) and hands the stream to
 * ops_events.py, which parses every line as JSON and checks the sequence:
 * started, rounds, frozen, the final round, resumed, committed; or, for a
 * restore the target refuses (HAUL_FAULT=corrupt-state), rolled_back with
 * the phase, and no resumed.
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

/* Run haul migrate to completion with @extra; its exit status (output logged on failure). */
static int migrate(const char *const extra[])
{
	char line[512];
	int fd, st;
	pid_t pid = th_mig_haul(&M, &fd, extra);

	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, 60000);
	while (th_read_line(fd, line, sizeof(line)) == 0)
		cr_log_info("haul: %s", line);
	close(fd);
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	return st;
}

/* ops_events.py on @path: whether the stream is well-formed and ends with @end. */
static void assert_stream_mode(const char *path, const char *end, const char *mode)
{
	const char *src = getenv("HAUL_SRC");

	cr_assert_eq(th_sh("python3 %s/tests/integration/ops_events.py %s %s %s", src ? src : ".",
			   path, end, mode),
		     0, "the --events stream in %s is not what an orchestrator expects", path);
}

static void assert_stream(const char *path, const char *end)
{
	assert_stream_mode(path, end, "precopy");
}

Test(ops_events, a_migration_streams_started_rounds_frozen_resumed_committed, .fini = teardown,
     .timeout = 90)
{
	char path[128];
	const char *extra[] = {"--downtime", "100", "--events", path, NULL};

	th_mig_setup(&M, 0);
	snprintf(path, sizeof(path), "%s/events.jsonl", M.dir);
	th_mig_workload(&M, 32, 8, 0);
	cr_assert_eq(migrate(extra), 0, "haul migrate failed");
	assert_stream(path, "committed");
}

Test(ops_events, an_fd_from_the_shell_takes_the_stream_too, .fini = teardown, .timeout = 90)
{
	char path[128], script[256], pid[16];
	const char *argv[] = {"/bin/sh", "-c",		script,
			      "sh",	 th_haul_bin(), "migrate",
			      pid,	 "--to",	TH_IP_B ":" TH_MIG_PORT,
			      "--key",	 M.key,		"--stop-and-copy",
			      NULL};
	char line[512];
	int fd, st;
	pid_t haul;

	th_mig_setup(&M, 0);
	snprintf(path, sizeof(path), "%s/events-fd.jsonl", M.dir);
	th_mig_workload(&M, 16, 8, 0);
	snprintf(pid, sizeof(pid), "%d", M.wl_pid);
	/* as an orchestrator would: fd 3 opened for haul by its parent */
	snprintf(script, sizeof(script), "exec \"$@\" --events 3 3>%s", path);
	haul = th_spawn_pipe(M.net.a, (char *const *)argv, &fd);
	cr_assert_gt(haul, 0);
	st = th_wait_exit(haul, 60000);
	while (th_read_line(fd, line, sizeof(line)) == 0)
		cr_log_info("haul: %s", line);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate failed");
	assert_stream(path, "committed");
}

Test(ops_events, a_refused_restore_ends_the_stream_with_rolled_back, .fini = teardown,
     .timeout = 90)
{
	char path[128];
	const char *extra[] = {"--events", path, NULL};
	int st;

	th_mig_setup(&M, 0);
	snprintf(path, sizeof(path), "%s/events-rb.jsonl", M.dir);
	th_mig_workload(&M, 16, 8, 0);
	setenv("HAUL_FAULT", "corrupt-state", 1);
	st = migrate(extra);
	unsetenv("HAUL_FAULT");
	cr_assert_eq(st, 1, "a refused restore did not exit 1");
	assert_stream(path, "rolled_back");
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the source does not run on");
}

Test(ops_events, a_postcopy_migration_streams_memory_complete_after_resumed, .fini = teardown,
     .timeout = 90)
{
	char path[128];
	const char *extra[] = {"--postcopy", "--events", path, NULL};

	th_mig_setup(&M, 0);
	snprintf(path, sizeof(path), "%s/events-pc.jsonl", M.dir);
	th_mig_workload(&M, 32, 8, 0);
	cr_assert_eq(migrate(extra), 0, "haul migrate --postcopy failed");
	assert_stream_mode(path, "committed", "postcopy");
}
