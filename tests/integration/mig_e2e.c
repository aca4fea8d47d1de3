/*
 * mig_e2e.c - live migrations between two network namespaces: the workload
 * keeps writing while haul moves it, and must carry on in the target
 * namespace with every page intact, its progress counter continuing, and
 * exactly one copy left.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "haul/haul_int.h"
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
	dt = th_mig_json(&M, "downtime_ms");
	cr_assert(dt > 0 && dt <= 100 * 1.5, "downtime %.1f ms for a 100 ms target", dt);
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
