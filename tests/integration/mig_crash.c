/*
 * mig_crash.c - the crash points of a migration (DESIGN.md "Migration
 * protocol ... crash points"): whatever dies, exactly one copy runs
 * afterwards, with its memory intact.  HAUL_FAULT=stall:POINT parks haul at
 * a point so that the test can kill something exactly there.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "haul/haul_int.h"
#include "th_mig.h"
#include "th_proc.h"
#include "th_verify.h"

static struct th_mig M;
/* The source's state before the migration that fails (th_verify). */
static struct th_state *before;

static void teardown(void)
{
	th_state_free(before);
	before = NULL;
	th_mig_teardown(&M);
}

/* The source copy runs on, intact, alone. */
static void assert_source_runs(void)
{
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the source does not run");
	cr_assert(th_mig_verify(&M), "the source's memory is not intact");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
	if (before)
		th_verify_same(before, M.wl_pid, TH_VERIFY_LIVE,
			       "the source after a failed migration");
}

static void start(int mem)
{
	th_mig_setup(&M, 0);
	th_mig_workload(&M, mem, 16, 0);
	cr_assert_eq(th_state_take(M.wl_pid, TH_VERIFY_LIVE, &before), 0);
}

/* Send SIG to a haul and reap it (within MS), then drop its pipe: its exit status. */
static int stop_haul(pid_t haul, int fd, int sig, int ms)
{
	int status;

	kill(haul, sig);
	status = th_wait_exit(haul, ms);
	close(fd);
	return status;
}

/* Start a workload of MEM MiB, park haul at POINT, and stop it there with SIG. */
static int stop_haul_at(int mem, const char *point, int sig, int ms)
{
	int fd;
	pid_t haul;

	start(mem);
	haul = th_mig_haul_stalled(&M, point, NULL, &fd);
	return stop_haul(haul, fd, sig, ms);
}

/* The guardian has moved the workload back out of the cgroup haul made for it. */
static void assert_out_of_haul_cgroup(void)
{
	char path[64];

	th_wait_proc_line(M.wl_pid, "cgroup", "haul/mig-", true, 5000);
	snprintf(path, sizeof(path), "/proc/%d/cgroup", M.wl_pid);
	cr_assert_neq(th_sh("grep -q 'haul/mig-' %s", path), 0, "still in haul's cgroup");
}

/* Stop the page server with SIG mid-round: haul fails cleanly, the source runs. */
static void stop_page_server_mid_round(int sig, int ms)
{
	int fd;
	pid_t haul;

	start(64);
	haul = th_mig_haul_stalled(&M, "stall:precopy:1500", NULL, &fd);
	th_kill(M.ps_pid, sig, ms);
	M.ps_pid = 0;
	cr_assert_eq(th_wait_exit(haul, 30000), 1, "haul did not fail cleanly");
	close(fd);
	assert_source_runs();
}

Test(mig_crash, page_server_killed_mid_round, .fini = teardown, .timeout = 60)
{
	stop_page_server_mid_round(SIGKILL, 2000);
}

Test(mig_crash, page_server_interrupted_mid_round, .fini = teardown, .timeout = 60)
{
	stop_page_server_mid_round(SIGINT, 5000);
}

Test(mig_crash, link_down_mid_round, .fini = teardown, .timeout = 60)
{
	const char *extra[] = {"--timeout", "2000", NULL};
	int fd;
	pid_t haul;

	start(64);
	haul = th_mig_haul_stalled(&M, "stall:precopy:1000", extra, &fd);
	cr_assert_eq(th_net_link(&M.net, false), 0);
	cr_assert_eq(th_wait_exit(haul, 40000), 1, "haul did not give up on a dead link");
	close(fd);
	assert_source_runs();
}

Test(mig_crash, restore_refused_thaws_the_source, .fini = teardown, .timeout = 60)
{
	int fd;
	pid_t haul;

	start(32);
	setenv("HAUL_FAULT", "corrupt-state", 1);
	haul = th_mig_haul(&M, &fd, NULL);
	unsetenv("HAUL_FAULT");
	cr_assert_eq(th_wait_exit(haul, 40000), 1, "a refused restore did not fail");
	close(fd);
	assert_source_runs();
}

Test(mig_crash, haul_interrupted_while_frozen, .fini = teardown, .timeout = 60)
{
	cr_assert_eq(stop_haul_at(32, "stall:frozen", SIGINT, 20000), 1);
	assert_source_runs();
}

Test(mig_crash, haul_interrupted_mid_round, .fini = teardown, .timeout = 60)
{
	cr_assert_eq(stop_haul_at(32, "stall:precopy", SIGINT, 20000), 1);
	assert_source_runs();
}

Test(mig_crash, haul_killed_while_throttling_lifts_the_throttle, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--bandwidth", "60M", "--compress", "none", NULL};
	int fd;
	pid_t haul;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 32, -1, 8);
	haul = th_mig_haul_stalled(&M, "stall:throttled", extra, &fd);
	stop_haul(haul, fd, SIGKILL, 5000);
	/* the guardian moved it back out of the throttled cgroup haul made */
	assert_out_of_haul_cgroup();
	assert_source_runs();
}

/*
 * The cgroup2 directory of the workload (from /proc/PID/cgroup's "0::" line),
 * or "" when there is no cgroup2 freezer.
 */
static void wl_cgroup2(char *dir, size_t len)
{
	struct haul_cg_mounts m;
	char path[64], text[4096], rel[PATH_MAX / 2];
	FILE *f;
	size_t n;

	dir[0] = '\0';
	if (haul_cg_probe(&m) || !m.v2[0])
		return;
	snprintf(path, sizeof(path), "/proc/%d/cgroup", M.wl_pid);
	f = fopen(path, "r");
	cr_assert_not_null(f);
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	cr_assert_eq(haul_cg_parse_proc(text, "", rel, sizeof(rel)), 0);
	cr_assert_lt((size_t)snprintf(dir, len, "%s%s", m.v2, rel), len);
}

/*
 * Start a migration of a busy writer whose hot set every round finds whole:
 * the throttle steps up each round (haul parks 100 ms at each), from cpu.max
 * to the freezer's duty cycle once it is deeper than cpu.max makes short
 * (~80% of one thread).  Returns once the duty cycle has the workload frozen.
 */
static pid_t haul_mid_duty_cycle(int *fd)
{
	const char *extra[] = {"--bandwidth", "60M", "--compress", "none", NULL};
	char dir[PATH_MAX], v[16] = "";
	pid_t haul;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 32, -1, 8);
	haul = th_mig_haul_stalled(&M, "stall:throttled:100", extra, fd);
	wl_cgroup2(dir, sizeof(dir));
	if (!dir[0]) {
		kill(haul, SIGKILL);
		cr_skip_test("no cgroup2 freezer: the throttle is cpu.max alone");
	}
	/* 3 ms of every cycle frozen: a read every 0.2 ms sees it */
	for (int i = 0; i < 50000 && v[0] != '1'; i++) {
		if (haul_cg_read(dir, "cgroup.freeze", v, sizeof(v)) <= 0)
			v[0] = '\0';
		if (v[0] != '1')
			usleep(200);
	}
	cr_assert_eq(v[0], '1', "the throttle of pid %d in %s never froze it: not a duty cycle?",
		     M.wl_pid, dir);
	return haul;
}

/* Its cgroup (wherever the undo put it) is not frozen; the root cannot be. */
static void assert_not_frozen(void)
{
	char dir[PATH_MAX], ev[256] = "";

	wl_cgroup2(dir, sizeof(dir));
	if (!haul_cg_has_file(dir, "cgroup.events"))
		return;
	cr_assert_gt(haul_cg_read(dir, "cgroup.events", ev, sizeof(ev)), 0);
	cr_assert(strstr(ev, "frozen 0"), "pid %d left frozen in %s: %s", M.wl_pid, dir, ev);
}

Test(mig_crash, haul_killed_mid_duty_cycle_thaws_the_source, .fini = teardown, .timeout = 90)
{
	int fd;
	pid_t haul;

	haul = haul_mid_duty_cycle(&fd);
	stop_haul(haul, fd, SIGKILL, 5000);
	/* the guardian thaws it and moves it back out of haul's cgroup */
	assert_out_of_haul_cgroup();
	assert_not_frozen();
	assert_source_runs();
}

Test(mig_crash, haul_interrupted_mid_duty_cycle_thaws_the_source, .fini = teardown, .timeout = 90)
{
	int fd;
	pid_t haul;

	haul = haul_mid_duty_cycle(&fd);
	cr_assert_eq(stop_haul(haul, fd, SIGINT, 20000), 1, "haul did not fail cleanly");
	assert_not_frozen();
	assert_source_runs();
}

Test(mig_crash, haul_killed_while_frozen, .fini = teardown, .timeout = 60)
{
	stop_haul_at(32, "stall:frozen", SIGKILL, 5000);
	assert_source_runs();
}

Test(mig_crash, haul_killed_while_seized, .fini = teardown, .timeout = 60)
{
	stop_haul_at(32, "stall:seized", SIGKILL, 5000);
	assert_source_runs();
}

Test(mig_crash, haul_killed_with_the_state_sent_under_the_v1_freezer, .fini = teardown,
     .timeout = 60)
{
	struct haul_cg_mounts mnt;

	if (haul_cg_probe(&mnt) || !mnt.v1_freezer[0])
		cr_skip_test("no v1 freezer hierarchy on this host");
	/* haul reads HAUL_FREEZER at its start, before it parks */
	setenv("HAUL_FREEZER", "v1", 1);
	stop_haul_at(32, "stall:state", SIGKILL, 5000);
	unsetenv("HAUL_FREEZER");
	assert_source_runs();
}

Test(mig_crash, haul_killed_with_the_state_sent, .fini = teardown, .timeout = 60)
{
	stop_haul_at(32, "stall:state", SIGKILL, 5000);
	assert_source_runs();
}

Test(mig_crash, haul_killed_between_resume_and_commit_never_runs_two, .fini = teardown,
     .timeout = 60)
{
	bool target_runs;

	stop_haul_at(32, "stall:restored", SIGKILL, 5000);
	/* in doubt: the source stays frozen whatever the target does */
	target_runs = th_mig_ticking(&M, M.net_b, 1500);
	cr_assert_not(th_mig_ticking(&M, M.net_a, 500), "the in-doubt source runs");
	cr_assert_geq(th_mig_copies(&M), 1, "no copy left at all");
	th_mig_resolve_in_doubt(&M, target_runs);
	cr_assert(th_mig_ticking(&M, target_runs ? M.net_b : M.net_a, 3000));
	cr_assert(th_mig_verify(&M), "memory is not intact");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}

Test(mig_crash, haul_killed_after_commit_leaves_the_target_running, .fini = teardown, .timeout = 60)
{
	stop_haul_at(32, "stall:committed", SIGKILL, 5000);
	cr_assert(th_mig_ticking(&M, M.net_b, 3000), "the committed target does not run");
	cr_assert_not(th_mig_ticking(&M, M.net_a, 500), "both copies run");
	th_mig_resolve_in_doubt(&M, true);
	cr_assert(th_mig_verify(&M));
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}

Test(mig_crash, link_down_before_restore_is_in_doubt_and_never_runs_two, .fini = teardown,
     .timeout = 60)
{
	const char *extra[] = {"--timeout", "2000", NULL};
	int fd;
	pid_t haul;

	start(32);
	haul = th_mig_haul_stalled(&M, "stall:state:1000", extra, &fd);
	cr_assert_eq(th_net_link(&M.net, false), 0);
	/* exit status 3: in doubt, the source stays frozen */
	cr_assert_eq(th_wait_exit(haul, 30000), 3, "haul did not report the migration in doubt");
	close(fd);
	cr_assert_not(th_mig_ticking(&M, M.net_a, 500), "an in-doubt source runs");
	cr_assert_not(th_mig_ticking(&M, M.net_b, 500), "the target runs without the command");
	th_mig_resolve_in_doubt(&M, false);
	assert_source_runs();
}
