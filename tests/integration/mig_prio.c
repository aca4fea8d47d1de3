/*
 * mig_prio.c - haul's pre-copy yields the CPU to the workload
 * (--precopy-nice, common/cpuweight.c): while the rounds run, every thread of
 * `haul migrate` but the stall probe's, and the target's page server, are
 * at nice +N; from the freeze on both are back at full weight; and a
 * workload that keeps the CPUs busy still converges and moves.  Threads are
 * read from /proc while HAUL_FAULT=stall:POINT parks haul at a point.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/cpuweight.h"
#include "common/proc.h"
#include "th_mig.h"
#include "th_net.h"

static struct th_mig M;

static void teardown(void)
{
	th_mig_teardown(&M);
}

/* How many threads of @pid are at nice @nice, and how many there are in all. */
static size_t threads_at(pid_t pid, int nice, size_t *all)
{
	pid_t *tids;
	size_t n, k = 0;

	cr_assert_eq(haul_proc_tids(pid, &tids, &n), 0, "cannot list the threads of %d", pid);
	for (size_t i = 0; i < n; i++) {
		int v;

		if (!haul_cpuweight_thread_nice(tids[i], &v) && v == nice)
			k++;
	}
	free(tids);
	*all = n;
	return k;
}

/* Every thread of @haul and of the page server at nice 0 (@when: for the message). */
static void assert_full_weight(pid_t haul, const char *when)
{
	size_t n, full;

	full = threads_at(haul, 0, &n);
	cr_assert_eq(full, n, "%zu of %zu threads of haul at nice 0%s", full, n, when);
	full = threads_at(M.ps_pid, 0, &n);
	cr_assert_eq(full, n, "%zu of %zu threads of the page server at nice 0%s", full, n, when);
}

static void start(void)
{
	th_mig_setup(&M, 0);
	th_mig_workload(&M, 64, 16, 0);
	th_mig_ticks(&M, 3, 10000);
}

Test(mig_prio, precopy_runs_both_ends_at_the_lowered_nice, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--precopy-nice", "7", NULL};
	size_t n, low;
	int fd, v;
	pid_t haul;

	start();
	/* parked in the middle of round 1: the round began, pages are flowing */
	haul = th_mig_haul_stalled(&M, "stall:precopy:2000", extra, &fd);
	low = threads_at(haul, 7, &n);
	/* the main thread, the page client's stream, and not the stall probe */
	cr_assert_geq(low, 2, "%zu of %zu threads of haul at nice 7", low, n);
	cr_assert_eq(threads_at(haul, 0, &n), 1, "the stall probe alone keeps nice 0");
	cr_assert_eq(haul_cpuweight_thread_nice(M.ps_pid, &v), 0);
	cr_assert_eq(v, 7, "the page server's loop thread is at nice %d in round 1", v);
	cr_assert_eq(th_wait_exit(haul, 60000), 0, "haul migrate failed");
	close(fd);
	cr_assert_eq(th_mig_json(&M, "precopy_nice"), 7);
	cr_assert_eq(haul_cpuweight_thread_nice(M.ps_pid, &v), 0);
	cr_assert_eq(v, 0, "the page server stayed at nice %d after the migration", v);
}

Test(mig_prio, the_downtime_runs_at_full_weight, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--precopy-nice", "7", NULL};
	int fd, v;
	pid_t haul;

	start();
	/* parked with the process frozen, after the final round and the state went out */
	haul = th_mig_haul_stalled(&M, "stall:state:1000", extra, &fd);
	assert_full_weight(haul, " in the downtime");
	cr_assert_eq(th_wait_exit(haul, 60000), 0, "haul migrate failed");
	close(fd);
	cr_assert_eq(haul_cpuweight_thread_nice(M.ps_pid, &v), 0);
	cr_assert_eq(v, 0);
}

Test(mig_prio, off_leaves_every_thread_at_full_weight, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--precopy-nice", "0", NULL};
	int fd;
	pid_t haul;

	start();
	haul = th_mig_haul_stalled(&M, "stall:precopy:1000", extra, &fd);
	assert_full_weight(haul, "");
	cr_assert_eq(th_wait_exit(haul, 60000), 0, "haul migrate failed");
	close(fd);
	cr_assert_eq(th_mig_json(&M, "precopy_nice"), 0);
}

/*
 * A writer on every CPU: nice 19 still gives haul a share (SCHED_OTHER,
 * not SCHED_IDLE), the throttle still works, and the rounds converge.
 */
Test(mig_prio, a_workload_busy_on_every_cpu_still_converges_at_nice_19, .fini = teardown,
     .timeout = 180)
{
	const char *extra[] = {"--precopy-nice", "19", "--downtime", "100", NULL};
	long seq;

	th_mig_setup(&M, 0);
	M.threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
	th_mig_workload(&M, 64, -1, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 150000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	cr_assert_eq(th_mig_json(&M, "precopy_nice"), 19);
}
