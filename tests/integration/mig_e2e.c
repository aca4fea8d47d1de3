/*
 * mig_e2e.c - live migrations between two network namespaces: the workload
 * keeps writing while haul moves it, and must carry on in the target
 * namespace with every page intact, its progress counter continuing, and
 * exactly one copy left; or be refused, before anything stops, by name.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "haul/haul_int.h"
#include "pageserver/pageserver.h"
#include "th_mig.h"
#include "th_proc.h"
#include "th_rst.h"

static struct th_mig M;

static void teardown(void)
{
	th_mig_teardown(&M);
}

Test(mig_e2e, moves_a_writing_workload_with_its_memory_intact, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--downtime", "100", "--streams", "2", NULL};
	long seq;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 64, 16, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	cr_assert_geq(th_mig_json(&M, "rounds"), 2);
	cr_assert_gt(th_mig_json(&M, "downtime_ms"), 0);
	cr_assert_geq(th_mig_json(&M, "pages_sent"), 64 * 256);
}

Test(mig_e2e, moves_over_a_link_capped_at_1gbit, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--downtime", "200", "--compress", "none", NULL};
	long seq;

	th_mig_setup(&M, 1000);
	th_mig_workload(&M, 96, 8, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 90000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	/* 96 MiB over 125 MB/s cannot take less than ~0.8 s */
	cr_assert_gt(th_mig_json(&M, "total_ms"), 700);
}

Test(mig_e2e, non_converging_workload_meets_its_downtime_by_throttling, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--downtime", "100",  "--bandwidth", "60M",
			       "--compress", "none", NULL};
	double dt;
	long seq;

	th_mig_setup(&M, 0);
	/* unbounded writes over 8 MiB: GB/s, far more than the 60 MB/s link */
	th_mig_workload(&M, 32, -1, 8);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 100000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	cr_assert_gt(th_mig_json(&M, "throttle_max_pct"), 0, "it converged without throttling?");
	/* the first "mbps" is round 1's payload rate: the 60 MB/s cap holds */
	cr_assert_leq(th_mig_json(&M, "mbps"), 60 * 1.1, "--bandwidth 60M was exceeded");
	/*
	 * A bound, not a goal (those are make bench's): the whole 8 MiB dirty set
	 * at 60 MB/s is ~140 ms, and on a loaded 2-core host the fixed costs alone
	 * vary by 100 ms (228 ms seen once in a quiet CI-like run, 2.7-3 s tests).
	 */
	dt = th_mig_json(&M, "downtime_ms");
	cr_assert(dt > 0 && dt <= 100 * 3, "downtime %.1f ms for a 100 ms target", dt);
}

/*
 * A paced writer faster than the link converges only under a deep throttle,
 * a duty cycle of the freezer whose running windows let it catch up its
 * 10 ms backlog at once.  Near the end a round scans in a held frozen
 * stretch, and when what it found fits the target that stretch is the stop
 * (mig_precopy.c, hold_stretch): the set it found is sent in the stop, and
 * every page verifies.
 */
Test(mig_e2e, a_deep_throttle_switches_over_in_the_stretch_of_its_last_scan, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--downtime", "100",  "--bandwidth", "12M",
			       "--compress", "none", NULL};
	struct haul_cg_mounts cgm;
	long seq;

	if (haul_cg_probe(&cgm) || !cgm.v2[0])
		cr_skip_test("no cgroup2 hierarchy: a deep throttle is cpu.max, nothing to hold");
	th_mig_setup(&M, 0);
	th_mig_workload(&M, 16, 16, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 100000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	/* cpu.max makes throttles up to 80% (a loaded host's fixed costs may switch earlier) */
	if (th_mig_json(&M, "throttle_max_pct") <= 80)
		cr_skip_test("the throttle stayed at %.0f%% here: no duty cycle, nothing to hold",
			     th_mig_json(&M, "throttle_max_pct"));
	cr_assert_gt(th_mig_json(&M, "held_ms"), 0, "the stop did not begin in a held stretch");
	cr_log_info("held %.1f ms of a %.1f ms downtime; final round %ld pages; %.0f rounds in "
		    "%.1f s",
		    th_mig_json(&M, "held_ms"), th_mig_json(&M, "downtime_ms"),
		    th_mig_final_round_pages(&M), th_mig_json(&M, "rounds"),
		    th_mig_json(&M, "total_ms") / 1e3);
}

Test(mig_e2e, stop_and_copy_moves_the_workload_too, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--stop-and-copy", NULL};
	long seq;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 32, 16, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	cr_assert_eq(th_mig_json(&M, "rounds"), 1);
}

Test(mig_e2e, moves_with_the_v1_freezer, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--downtime", "100", NULL};
	struct haul_cg_mounts m;
	long seq;
	int st;

	if (haul_cg_probe(&m) || !m.v1_freezer[0])
		cr_skip_test("no v1 freezer hierarchy on this host");
	th_mig_setup(&M, 0);
	th_mig_workload(&M, 32, 16, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	setenv("HAUL_FREEZER", "v1", 1);
	st = th_mig_migrate(&M, extra, 60000);
	unsetenv("HAUL_FREEZER");
	cr_assert_eq(st, 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
}

Test(mig_e2e, moves_a_haul_run_workload_named_by_its_cgroup, .fini = teardown, .timeout = 90)
{
	char name[32], cg[64], line[512];
	const char *extra[] = {"--cgroup", cg, "--downtime", "100", NULL};
	long seq;
	FILE *p;
	bool migrated = false;

	snprintf(name, sizeof(name), "migrun%d", getpid());
	snprintf(cg, sizeof(cg), "haul/%s", name);
	th_mig_setup(&M, 0);
	th_mig_workload_run(&M, name, 32, 16);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	/* it was PID 1 of its namespace, and still is */
	cr_assert_eq(th_wait_file(M.out, th_file_size(M.out), "pid=1 ", 2000, NULL, 0), 0);
	p = popen("\"$HAUL_BIN\" ps", "r");
	cr_assert_not_null(p);
	while (fgets(line, sizeof(line), p))
		migrated |= strstr(line, name) && strstr(line, "migrated to");
	pclose(p);
	cr_assert(migrated, "haul ps does not show the workload as migrated");
	/* its cgroup was frozen at the resume (the source's own): joined at the commit */
	{
		char path[64], want[96];
		pid_t copy = 0;
		bool joined = false;

		cr_assert_eq(th_count_procs(M.tag, &copy), 1, "not exactly one copy");
		snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)copy);
		snprintf(want, sizeof(want), "/haul/%s\n", name);
		for (int i = 0; i < 200 && !joined; i++) {
			joined = strstr(th_slurp(path), want) != NULL;
			if (!joined)
				usleep(10000);
		}
		cr_expect(joined, "the copy is not in its cgroup %s:\n%s", want, th_slurp(path));
		cr_expect(th_mig_ticking(&M, M.net_b, 3000), "the copy is not running");
	}
}

Test(mig_e2e, stops_at_max_rounds_and_reports_the_cost, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--downtime", "5", "--max-rounds", "2", NULL};
	long seq;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 64, 64, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	cr_assert_eq(th_mig_json(&M, "rounds"), 3, "2 pre-copy rounds and the frozen one");
	cr_assert_eq(th_sh("grep -q '\"over_target\": true' %s", M.json), 0,
		     "the summary does not say the target was missed");
	cr_assert_eq(th_sh("grep -q '\"over_target_why\": \".*--max-rounds' %s", M.json), 0,
		     "the summary does not say why the target was missed");
}

Test(mig_e2e, refuses_an_unmigratable_process_without_touching_it, .fini = teardown, .timeout = 60)
{
	char *argv[] = {"/bin/sleep", "60", NULL};
	char line[512], cg[256];
	int fd, wfd, st;
	pid_t haul;

	th_mig_setup(&M, 0);
	/* its stdout is a pipe: haul cannot move a pipe */
	M.wl_pid = th_spawn_pipe(M.net.a, argv, &wfd);
	cr_assert_gt(M.wl_pid, 0);
	cr_assert_eq(th_wait_comm(M.wl_pid, "sleep", 5000), 0, "pid %d never exec'd /bin/sleep",
		     (int)M.wl_pid);
	haul = th_mig_haul(&M, &fd, NULL);
	st = th_wait_exit(haul, 30000);
	cr_assert_eq(th_wait_line(fd, "pipe", 1000, line, sizeof(line)), 0,
		     "haul did not name the pipe");
	close(fd);
	close(wfd);
	cr_assert_eq(st, 1);
	cr_assert_eq(kill(M.wl_pid, 0), 0, "the process is gone");
	snprintf(cg, sizeof(cg), "/proc/%d/cgroup", M.wl_pid);
	cr_assert_neq(th_sh("grep -q 'haul/mig-' %s", cg), 0, "it was moved into a cgroup");
}

Test(mig_e2e, moves_a_multithreaded_workload, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--downtime", "100", NULL};
	long seq;

	th_mig_setup(&M, 0);
	M.threads = 3;
	th_mig_workload(&M, 64, 32, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
}

/* A page server on 127.0.0.1 (the AppArmor test's), its key file. */
static pid_t aa_ps = -1;
static int aa_fd = -1;
static char aa_key[64];

static void aa_teardown(void)
{
	if (aa_ps > 0)
		th_kill(aa_ps, SIGKILL, 5000);
	if (aa_fd >= 0)
		close(aa_fd);
	unlink(aa_key);
}

/*
 * haul migrate of a confined process names its AppArmor profiles in the
 * session's open (SessionOpen.apparmor_profiles): a target that has not
 * loaded one refuses the open by name, before it makes anything (and so
 * before the source freezes); the same open without the name is taken.
 * AppArmor is off on most test hosts: there the refusal says that.  A real
 * confined process moving is tests/extra/rst_apparmor_qemu.sh's.
 */
Test(mig_e2e, a_target_lacking_the_apparmor_profile_refuses_the_open_by_name, .fini = aa_teardown,
     .timeout = 60)
{
	char *argv[] = {(char *)th_haul_bin(),
			"pageserver",
			"--listen",
			"127.0.0.1:0",
			"--key",
			aa_key,
			NULL};
	char line[256], to[32], profile[64], refusal[256] = "", want[128], *colon;
	char *names[] = {profile};
	struct ps_client_opts o = {0};
	struct ps_client *c = NULL;
	int ret;

	snprintf(aa_key, sizeof(aa_key), "/tmp/haul-mig-aa-%d.key", getpid());
	cr_assert_eq(th_make_key(aa_key), 0);
	aa_ps = th_spawn_pipe(NULL, argv, &aa_fd);
	cr_assert_gt(aa_ps, 0);
	cr_assert_eq(th_wait_line(aa_fd, "listening on", 10000, line, sizeof(line)), 0,
		     "the page server did not start");
	colon = strrchr(line, ':');
	cr_assert_not_null(colon);
	snprintf(to, sizeof(to), "127.0.0.1:%d", atoi(colon + 1));
	cr_assert_eq(ps_key_load(aa_key, o.key), 0);
	o.to = to;
	o.nstreams = 1;
	o.pid = getpid();
	o.comm = "mig-aa";
	o.kind = PS_SESSION_LIVE;
	o.timeout_ms = 20000;
	snprintf(profile, sizeof(profile), "haul-test-%d-not-loaded", getpid());
	o.apparmor_profiles = names;
	o.napparmor_profiles = 1;
	o.refusal = refusal;
	o.refusal_len = sizeof(refusal);

	ret = ps_client_new(&o, &c);
	cr_assert_eq(ret, -EOPNOTSUPP, "the open naming '%s' got %d (%s)", profile, ret, refusal);
	cr_assert_null(c);
	snprintf(want, sizeof(want), "pid %d: AppArmor profile '%s' ", getpid(), profile);
	cr_expect(strstr(refusal, want), "the refusal does not name the profile: %s", refusal);
	cr_expect(strstr(refusal, "is not loaded on this host: load it (apparmor_parser -r FILE) "
				  "and retry") ||
			  strstr(refusal, "AppArmor is not enabled on this host"),
		  "the refusal does not say why: %s", refusal);

	/* the same open without the profile is taken (its stub goes with the close) */
	o.apparmor_profiles = NULL;
	o.napparmor_profiles = 0;
	refusal[0] = '\0';
	ret = ps_client_new(&o, &c);
	cr_assert_eq(ret, 0, "the open without a profile got %d (%s)", ret, refusal);
	ps_client_free(c);
}
