/*
 * mig_sessions.c - one page server, several migrations of the same
 * in-namespace PID: sessions are told apart by their id, never by the PID.
 * Two `haul run` workloads (both pid 1 of their namespaces) migrate to one
 * page server at once; a post-copy whose source vanished mid-way (its
 * session detached, waiting for a rejoin) does not block a new migration of
 * another pid 1.
 *
 * Both workloads share the fixture's two hosts and page server (M); the
 * second (W) has its own output, control file, tag and --json.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "th_mig.h"

static struct th_mig M, W;

/* W: a second workload on M's hosts, sharing its page server. */
static void second_workload_init(void)
{
	W = M;
	W.ps_pid = 0;
	W.ps_fd = -1;
	W.wl_pid = 0;
	snprintf(W.out, sizeof(W.out), "%s/out2", M.dir);
	snprintf(W.control, sizeof(W.control), "%s/control2", M.dir);
	snprintf(W.json, sizeof(W.json), "%s/migrate2.json", M.dir);
	snprintf(W.tag, sizeof(W.tag), "migtagw%d", getpid());
}

static void teardown(void)
{
	pid_t pid;

	for (int i = 0; W.tag[0] && i < 10 && th_count_procs(W.tag, &pid) > 0; i++) {
		kill(pid, SIGKILL);
		usleep(20000);
	}
	if (W.wl_pid > 0)
		kill(W.wl_pid, SIGKILL); /* started by haul run: not our child */
	memset(&W, 0, sizeof(W));
	th_mig_teardown(&M);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void dump_output(int fd)
{
	char line[512];

	while (th_read_line(fd, line, sizeof(line)) == 0)
		cr_log_info("haul: %s", line);
}

/* Replace the fixture's page server by one that waits @timeout_ms for a source to rejoin. */
static void restart_page_server(int timeout_ms)
{
	char ms[16], line[256];
	char *argv[] = {(char *)th_haul_bin(),
			"pageserver",
			"--listen",
			TH_IP_B ":" TH_MIG_PORT,
			"--key",
			M.key,
			"--timeout",
			ms,
			NULL};

	snprintf(ms, sizeof(ms), "%d", timeout_ms);
	th_kill(M.ps_pid, SIGKILL, 2000);
	close(M.ps_fd);
	M.ps_pid = th_spawn_pipe(M.net.b, argv, &M.ps_fd);
	cr_assert_gt(M.ps_pid, 0);
	cr_assert_eq(th_wait_line(M.ps_fd, "listening on", 5000, line, sizeof(line)), 0,
		     "the page server did not restart");
}

/* After a migration: @m ticks in B, its memory verifies, one copy of it. */
static void assert_moved(struct th_mig *m, const char *which)
{
	cr_assert(th_mig_ticking(m, m->net_b, 5000), "%s does not tick in the target", which);
	cr_assert(th_mig_verify(m), "the memory of %s is not intact after the move", which);
	cr_assert_eq(th_mig_copies(m), 1, "not exactly one copy of %s", which);
}

Test(mig_sessions, two_haul_run_workloads_migrate_to_one_page_server_at_once, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--downtime", "200", NULL};
	char a[32], b[32];
	int fa, fb, sa, sb;
	pid_t ha, hb;

	snprintf(a, sizeof(a), "migrun%da", getpid());
	snprintf(b, sizeof(b), "migrun%db", getpid());
	th_mig_setup(&M, 0);
	second_workload_init();
	th_mig_workload_run(&M, a, 16, 4);
	th_mig_workload_run(&W, b, 16, 4);
	/* both are pid 1 of their own namespace: the same PID in their SessionOpen */
	cr_assert_eq(th_wait_file(M.out, 0, "pid=1 ", 2000, NULL, 0), 0);
	cr_assert_eq(th_wait_file(W.out, 0, "pid=1 ", 2000, NULL, 0), 0);
	ha = th_mig_haul(&M, &fa, extra);
	hb = th_mig_haul(&W, &fb, extra);
	cr_assert_gt(ha, 0);
	cr_assert_gt(hb, 0);
	sa = th_wait_exit(ha, 60000);
	sb = th_wait_exit(hb, 60000);
	if (sa)
		dump_output(fa);
	if (sb)
		dump_output(fb);
	close(fa);
	close(fb);
	cr_assert_eq(sa, 0, "the migration of the first pid 1 failed (exit %d)", sa);
	cr_assert_eq(sb, 0, "the migration of the second pid 1 failed (exit %d)", sb);
	assert_moved(&M, "the first workload");
	assert_moved(&W, "the second workload");
}

Test(mig_sessions, a_stale_postcopy_session_does_not_block_a_new_one, .fini = teardown,
     .timeout = 120)
{
	const char *lazy[] = {"--postcopy", NULL};
	const char *plain[] = {"--downtime", "200", NULL};
	char a[32], b[32], line[512];
	double t0;
	int fa, fb, st;
	pid_t ha, hb;

	snprintf(a, sizeof(a), "migrun%da", getpid());
	snprintf(b, sizeof(b), "migrun%db", getpid());
	th_mig_setup(&M, 0);
	/* a detached session waits 30 s for its source: far longer than the second migration */
	restart_page_server(30000);
	second_workload_init();
	th_mig_workload_run(&M, a, 16, 4);
	th_mig_workload_run(&W, b, 16, 4);

	/* the first: resumed on B by post-copy, then its haul vanishes before the commit */
	setenv("HAUL_FAULT", "stall:restored:30000", 1);
	ha = th_mig_haul(&M, &fa, lazy);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(ha, 0);
	cr_assert_eq(th_wait_line(fa, "stalled at", 30000, NULL, 0), 0,
		     "haul never reached the resume");
	th_kill(ha, SIGKILL, 2000);
	close(fa);
	cr_assert_eq(th_wait_line(M.ps_fd, "waiting up", 10000, line, sizeof(line)), 0,
		     "the page server did not detach the first session");
	cr_log_info("page server: %s", line);

	/* the second pid 1 migrates while the first session still waits */
	t0 = now_ms();
	hb = th_mig_haul(&W, &fb, plain);
	cr_assert_gt(hb, 0);
	st = th_wait_exit(hb, 25000);
	if (st)
		dump_output(fb);
	close(fb);
	cr_assert_eq(st, 0, "the second migration failed (exit %d) behind a stale session", st);
	cr_assert_lt(now_ms() - t0, 25000);
	assert_moved(&W, "the second workload");
}
