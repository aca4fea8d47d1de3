/*
 * mig_postcopy.c - `haul migrate --postcopy` and `--hybrid` between two
 * network namespaces: the workload resumes on the target before its memory
 * has arrived, keeps writing at random, and must end with every page intact
 * and exactly one copy; when the source dies mid-post-copy the migration
 * fails cleanly (no hang), the target's copy is killed and the loss is
 * reported (exit 4); when the target dies, the source stays frozen at the
 * switchover point (exit 3), or is thawed with --postcopy-rollback.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/haul_int.h"
#include "pageserver/pageserver.h"
#include "th_mig.h"

static struct th_mig M;

static void teardown(void)
{
	th_mig_teardown(&M);
}

Test(mig_postcopy, postcopy_moves_a_randomly_writing_workload_intact, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--postcopy", "--streams", "2", NULL};
	long seq;

	th_mig_setup(&M, 0);
	M.random_seed = 12345;
	th_mig_workload(&M, 64, 32, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 90000), 0, "haul migrate --postcopy failed");
	th_mig_assert_moved(&M, seq);
	/* only the non-lazy VMAs and the rseq page go before the resume */
	cr_assert_gt(th_mig_json(&M, "eager_pages"), 0);
	cr_assert_lt(th_mig_json(&M, "eager_pages"), 64 * 256 / 4);
	cr_assert_geq(th_mig_json(&M, "served_pages"), 64 * 256 / 2,
		      "most of the memory should follow the resume");
	cr_assert_gt(th_mig_json(&M, "resume_ms"), 0);
	cr_assert_geq(th_mig_json(&M, "memory_complete_ms"), th_mig_json(&M, "resume_ms"));
	/* the target's own measurements came back with its "every page arrived" */
	cr_assert_eq(th_sh("grep -q '\"target_report\": true' %s", M.json), 0,
		     "no fault statistics from the target");
	cr_assert_gt(th_mig_json(&M, "faults"), 0);
	cr_assert_leq(th_mig_json(&M, "fault_pages") + th_mig_json(&M, "pushed_pages"),
		      th_mig_json(&M, "served_pages"));
	cr_assert_leq(th_mig_json(&M, "fault_p50_us"), th_mig_json(&M, "fault_p99_us"));
	cr_assert_leq(th_mig_json(&M, "fault_p99_us"), th_mig_json(&M, "fault_max_us"));
	cr_assert_gt(th_mig_json(&M, "target_complete_ms"), 0);
	cr_assert_gt(th_mig_json(&M, "served_bytes"), 0);
	/* the source opened the fault lane while the target resumed: faults took it */
	cr_assert_gt(th_mig_json(&M, "lane_replies"), th_mig_json(&M, "faults") / 2,
		     "%g of %g faults over the fault lane", th_mig_json(&M, "lane_replies"),
		     th_mig_json(&M, "faults"));
	/* the eager pages go before the freeze; the frozen round only sends what changed */
	cr_assert_eq(th_mig_json(&M, "rounds"), 2);
	cr_log_info("postcopy: resume %.1f ms, all memory after %.1f ms, %g pages served, "
		    "%g faults, %g over the fault lane",
		    th_mig_json(&M, "resume_ms"), th_mig_json(&M, "memory_complete_ms"),
		    th_mig_json(&M, "served_pages"), th_mig_json(&M, "faults"),
		    th_mig_json(&M, "lane_replies"));
}

/*
 * A workload that rewrites a 2 MiB hot set of its 64 MiB: its writes repeat,
 * so post-copy sends that working set before the freeze (eager_pages grows
 * by about the hot set), the pages written again before the freeze are named
 * stale, and the memory arrives intact.
 */
/* Each thread's rseq area is registered by an injected call before any page can be fetched. */
Test(mig_postcopy, postcopy_moves_a_multithreaded_workload, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--postcopy", NULL};
	long seq;

	th_mig_setup(&M, 0);
	M.threads = 3;
	th_mig_workload(&M, 64, 32, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 90000), 0, "haul migrate --postcopy failed");
	th_mig_assert_moved(&M, seq);
}

Test(mig_postcopy, postcopy_sends_a_repeating_working_set_before_the_freeze, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--postcopy", NULL};
	long seq;

	th_mig_setup(&M, 0);
	M.random_seed = 777;
	th_mig_workload(&M, 64, 32, 2);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 90000), 0, "haul migrate --postcopy failed");
	th_mig_assert_moved(&M, seq);
	cr_log_info("hot set: %g pages before the resume, %g named stale, %g served, %g faults",
		    th_mig_json(&M, "eager_pages"), th_mig_json(&M, "stale_pages"),
		    th_mig_json(&M, "served_pages"), th_mig_json(&M, "faults"));
	cr_assert_geq(th_mig_json(&M, "eager_pages"), 2 * 256 / 2,
		      "the hot set did not go before the freeze");
	cr_assert_lt(th_mig_json(&M, "eager_pages"), 64 * 256 / 4);
}

/*
 * --postcopy sends the eager pages (here a private file mapping) before the
 * freeze.  Between that and the freeze the workload keeps rewriting half of
 * them, and replaces the other half with anonymous memory (lazy now): the
 * frozen round must resend what changed, and the target must drop the
 * replaced pages and fetch them.
 */
Test(mig_postcopy, postcopy_resends_eager_pages_changed_after_the_presend, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--postcopy", NULL};
	char ctl[128];
	long seq;
	pid_t h;
	int fd, st;

	th_mig_setup(&M, 0);
	M.filemap = true;
	th_mig_workload(&M, 16, 8, 0);
	th_mig_ticks(&M, 2, 10000);
	seq = th_mig_seq(&M);
	h = th_mig_haul_stalled(&M, "stall:presend:2000", extra, &fd);
	snprintf(ctl, sizeof(ctl), "echo swap > %s", M.control);
	cr_assert_eq(th_sh("%s", ctl), 0);
	cr_assert_eq(th_wait_file(M.out, 0, "swapped", 5000, NULL, 0), 0,
		     "the workload did not swap its mapping");
	st = th_wait_exit(h, 60000);
	if (st)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate --postcopy failed");
	th_mig_assert_moved(&M, seq);
	cr_assert_eq(th_mig_json(&M, "rounds"), 2);
	cr_assert_geq(th_mig_json(&M, "stale_pages"), 32, "the swapped pages were not named stale");
	cr_log_info("presend: %g eager pages, %g stale, resume %.1f ms",
		    th_mig_json(&M, "eager_pages"), th_mig_json(&M, "stale_pages"),
		    th_mig_json(&M, "resume_ms"));
}

Test(mig_postcopy, hybrid_finishes_a_workload_that_outruns_the_link, .fini = teardown,
     .timeout = 150)
{
	const char *extra[] = {"--hybrid", "--downtime", "50",	 "--bandwidth",
			       "60M",	   "--compress", "none", NULL};
	long seq;

	th_mig_setup(&M, 1000);
	M.random_seed = 777;
	/* unbounded random writes over 8 MiB: far more than 60 MB/s */
	th_mig_workload(&M, 48, -1, 8);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 120000), 0, "haul migrate --hybrid failed");
	th_mig_assert_moved(&M, seq);
	cr_assert_geq(th_mig_json(&M, "rounds"), 2);
	cr_assert_gt(th_mig_json(&M, "stale_pages"), 0, "it converged without post-copy?");
	cr_assert_eq(th_mig_json(&M, "throttle_max_pct"), 0, "hybrid must not throttle");
	cr_assert_gt(th_mig_json(&M, "served_pages"), 0);
	cr_log_info("hybrid: %g rounds, %g stale pages, %g served, resume %.1f ms, complete "
		    "%.1f ms",
		    th_mig_json(&M, "rounds"), th_mig_json(&M, "stale_pages"),
		    th_mig_json(&M, "served_pages"), th_mig_json(&M, "resume_ms"),
		    th_mig_json(&M, "memory_complete_ms"));
	/*
	 * The rounds delivered every other page (State.complete): only the
	 * stale ones are copied in after the resume (a window fetched twice,
	 * by a fault and by the push, is served twice but copied once).
	 */
	cr_assert_leq(th_mig_json(&M, "fault_pages") + th_mig_json(&M, "pushed_pages"),
		      th_mig_json(&M, "stale_pages"),
		      "%g pages that were not stale were copied in after the resume",
		      th_mig_json(&M, "fault_pages") + th_mig_json(&M, "pushed_pages") -
			      th_mig_json(&M, "stale_pages"));
}

Test(mig_postcopy, hybrid_of_a_converging_workload_switches_over_like_pre_copy, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--hybrid", "--downtime", "200", NULL};
	long seq;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 32, 4, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 90000), 0, "haul migrate --hybrid failed");
	th_mig_assert_moved(&M, seq);
	cr_assert_eq(th_mig_json(&M, "stale_pages"), 0, "a converging workload went post-copy");
	cr_assert_geq(th_mig_json(&M, "rounds"), 2);
	/* nothing stale: no page, not even an untouched one, is fetched after the resume */
	cr_assert_eq(th_mig_json(&M, "served_pages"), 0, "%g pages fetched after the resume",
		     th_mig_json(&M, "served_pages"));
}

/*
 * A job that ends by itself on the target right after the move, long before
 * its memory could all arrive (128 MiB over 100 Mbit/s: ~11 s): post-copy
 * is over then, as if every page had arrived.  The target says so, the
 * migration commits at once, not after the 30 s it would wait for a page
 * request, and kills the source (thawed, it would run the job's end again);
 * --json names the exit status.
 */
Test(mig_postcopy, a_process_that_exits_on_the_target_mid_postcopy_ends_the_migration,
     .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--postcopy", "--timeout", "30000", NULL};
	double t0;
	int st;

	th_mig_setup(&M, 100);
	M.exit_on_move = 3;
	th_mig_workload(&M, 128, 4, 0);
	th_mig_ticks(&M, 3, 10000);
	t0 = haul_now_ms();
	st = th_mig_migrate(&M, extra, 90000);
	cr_assert_eq(st, 0, "haul migrate --postcopy failed (exit %d)", st);
	cr_assert_lt(haul_now_ms() - t0, 9000, "the migration waited %.0f ms: for the pages?",
		     haul_now_ms() - t0);
	cr_assert_eq(th_wait_file(M.out, 0, "exiting on move status=3", 5000, NULL, 0), 0,
		     "the workload did not exit on the target");
	if (th_sh("grep -q '\"target_ended\": \"exited\"' %s", M.json)) {
		th_show_file("json", M.json);
		cr_assert_fail("--json does not say the process exited on the target");
	}
	cr_assert_eq(th_mig_json(&M, "target_exit_status"), 3);
	cr_assert_lt(th_mig_json(&M, "served_pages"), 128 * 256 / 2,
		     "most of the memory was never needed");
	/* the source was killed (by haul: our child, reaped here), nothing runs on */
	cr_assert_eq(th_wait_exit(M.wl_pid, 5000), 128 + SIGKILL, "the source was not killed");
	M.wl_pid = 0;
	cr_assert_eq(th_mig_copies(&M), 0, "a copy of the process runs on");
}

/* A process that execs on the target needs its old memory no more: the same, labelled "exec". */
Test(mig_postcopy, a_process_that_execs_on_the_target_mid_postcopy_ends_the_migration,
     .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--postcopy", "--timeout", "30000", NULL};
	int st;

	th_mig_setup(&M, 100);
	M.exit_on_move = -1;
	th_mig_workload(&M, 128, 4, 0);
	th_mig_ticks(&M, 3, 10000);
	st = th_mig_migrate(&M, extra, 90000);
	cr_assert_eq(st, 0, "haul migrate --postcopy failed (exit %d)", st);
	cr_assert_eq(th_wait_file(M.out, 0, "exec on move", 5000, NULL, 0), 0,
		     "the workload did not exec on the target");
	if (th_sh("grep -q '\"target_ended\": \"exec\"' %s", M.json)) {
		th_show_file("json", M.json);
		cr_assert_fail("--json does not say the process exec'd on the target");
	}
	cr_assert_eq(th_wait_exit(M.wl_pid, 5000), 128 + SIGKILL, "the source was not killed");
	M.wl_pid = 0;
}

/*
 * A process killed by a signal on the target mid-post-copy does not end
 * post-copy: the target fails the session at once, naming the signal, and
 * the source stays frozen in doubt (exit 3), well before its 30 s wait for
 * a page request would have ended it.
 */
Test(mig_postcopy, a_process_killed_on_the_target_mid_postcopy_fails_at_once, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--postcopy", "--timeout", "30000", NULL};
	double t0;
	int fd, st;
	pid_t haul;

	th_mig_setup(&M, 100);
	M.exit_on_move = -SIGKILL;
	th_mig_workload(&M, 128, 4, 0);
	th_mig_ticks(&M, 3, 10000);
	t0 = haul_now_ms();
	haul = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(haul, 0);
	st = th_wait_exit(haul, 90000);
	if (st != 3 || getenv("TH_SHOW"))
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 3, "haul exit %d, not 3 (in doubt, source frozen)", st);
	cr_assert_lt(haul_now_ms() - t0, 15000, "the failure took %.0f ms", haul_now_ms() - t0);
	cr_assert_eq(th_wait_file(M.out, 0, "killing itself on move signal=9", 1000, NULL, 0), 0,
		     "the workload was not killed on the target");
	for (int i = 0; i < 100 && th_mig_copies(&M) > 1; i++)
		usleep(100000);
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy (the frozen source)");
}

Test(mig_postcopy, source_killed_mid_postcopy_reports_the_loss_without_hanging, .fini = teardown,
     .timeout = 90)
{
	const char *extra[] = {"--postcopy", "--timeout", "3000", NULL};
	int fd, st;
	pid_t haul;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 64, 16, 0);
	th_mig_ticks(&M, 3, 10000);
	haul = th_mig_haul_stalled(&M, "stall:restored:2000", extra, &fd);
	/* the target runs the process; most of its memory is still only in the source */
	kill(M.wl_pid, SIGKILL);
	st = th_wait_exit(haul, 40000);
	if (st != 4)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 4, "haul exit %d, not 4 (lost)", st);
	cr_assert_eq(th_sh("grep -q '\"result\": \"lost\"' %s", M.json), 0,
		     "the report does not say lost");
	/* the target killed its copy: nothing runs, on either side */
	for (int i = 0; i < 100 && th_mig_copies(&M); i++)
		usleep(100000);
	cr_assert_eq(th_mig_copies(&M), 0, "a copy runs without its memory");
}

Test(mig_postcopy, target_killed_mid_postcopy_keeps_the_source_frozen, .fini = teardown,
     .timeout = 90)
{
	const char *extra[] = {"--postcopy", "--timeout", "3000", NULL};
	int fd, st;
	pid_t haul;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 64, 16, 0);
	th_mig_ticks(&M, 3, 10000);
	haul = th_mig_haul_stalled(&M, "stall:restored:2000", extra, &fd);
	th_kill(M.ps_pid, SIGKILL, 2000);
	M.ps_pid = 0;
	st = th_wait_exit(haul, 40000);
	if (st != 3)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 3, "haul exit %d, not 3 (in doubt, source frozen)", st);
	for (int i = 0; i < 100 && th_mig_copies(&M) > 1; i++)
		usleep(100000);
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy (the frozen source)");
	cr_assert_not(th_mig_ticking(&M, 0, 500), "something still ticks");
}

/*
 * The process forks during post-copy (its child reads all its memory, over
 * and over), then the page server is SIGKILLed.  The child's memory is
 * registered with a uffd only the page server held, and the watchdog's copy
 * of it: the child must never read zeros for memory that did not arrive,
 * and it must die with its parent.
 */
Test(mig_postcopy, page_server_killed_after_a_fork_kills_the_child_too, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--postcopy", "--timeout", "3000", NULL};
	char line[256];
	int fd, st;
	pid_t haul;

	th_mig_setup(&M, 50); /* 64 MiB at 50 Mbit/s: post-copy lasts ~10 s */
	M.fork_on_move = true;
	th_mig_workload(&M, 64, 4, 0);
	th_mig_ticks(&M, 3, 10000);
	haul = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(haul, 0);
	cr_assert_eq(th_wait_file(M.out, 0, "forked child=", 20000, line, sizeof(line)), 0,
		     "the workload did not fork after its move");
	/* a window, the behaviour under test: the child reads memory still arriving */
	usleep(500000);
	cr_assert_neq(th_sh("grep -q 'child verify' %s", M.out), 0,
		      "all memory arrived before the page server could be killed");
	th_kill(M.ps_pid, SIGKILL, 2000);
	M.ps_pid = 0;
	st = th_wait_exit(haul, 40000);
	if (st != 3)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 3, "haul exit %d, not 3 (in doubt, source frozen)", st);
	for (int i = 0; i < 100 && th_mig_copies(&M) > 1; i++)
		usleep(100000);
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy (the frozen source)");
	cr_assert_neq(th_sh("grep -q 'child verify FAIL' %s", M.out), 0,
		      "the child read memory that never arrived");
}

/*
 * The page server dies the instant after the process resumed there, before it
 * answers the source.  The watchdog was armed before the resume, so the copy
 * on the target dies with it instead of running on zeros where its memory
 * had not arrived; the source, unanswered, stays frozen (in doubt).
 */
Test(mig_postcopy, page_server_killed_right_after_the_resume_takes_its_copy_along, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--postcopy", "--timeout", "3000", NULL};
	int fd, st;
	pid_t haul;

	setenv("HAUL_FAULT", "ps-kill:resumed", 1); /* for the page server alone */
	th_mig_setup(&M, 0);
	unsetenv("HAUL_FAULT");
	th_mig_workload(&M, 64, 16, 0);
	th_mig_ticks(&M, 3, 10000);
	haul = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(haul, 0);
	st = th_wait_exit(haul, 40000);
	if (st != 3)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 3, "haul exit %d, not 3 (in doubt, source frozen)", st);
	M.ps_pid = 0;
	for (int i = 0; i < 100 && th_mig_copies(&M) > 1; i++)
		usleep(100000);
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy (the frozen source)");
	cr_assert_not(th_mig_ticking(&M, 0, 500), "something still ticks");
}

Test(mig_postcopy, postcopy_rollback_thaws_the_source_when_the_target_dies, .fini = teardown,
     .timeout = 90)
{
	const char *extra[] = {"--postcopy", "--postcopy-rollback", "--timeout", "3000", NULL};
	int fd, st;
	pid_t haul;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 64, 16, 0);
	th_mig_ticks(&M, 3, 10000);
	haul = th_mig_haul_stalled(&M, "stall:restored:2000", extra, &fd);
	th_kill(M.ps_pid, SIGKILL, 2000);
	M.ps_pid = 0;
	st = th_wait_exit(haul, 40000);
	if (st != 1)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 1, "haul exit %d, not 1 (rolled back)", st);
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the source does not run again");
	cr_assert(th_mig_verify(&M), "the source's memory is not intact");
	for (int i = 0; i < 100 && th_mig_copies(&M) > 1; i++)
		usleep(100000);
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}

Test(mig_postcopy, link_down_mid_postcopy_kills_the_target_copy_and_keeps_the_source,
     .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--postcopy", "--timeout", "3000", NULL};
	int fd, st;
	pid_t haul;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 64, 16, 0);
	th_mig_ticks(&M, 3, 10000);
	haul = th_mig_haul_stalled(&M, "stall:restored:1000", extra, &fd);
	cr_assert_eq(th_net_link(&M.net, false), 0);
	st = th_wait_exit(haul, 40000);
	if (st != 3)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 3, "haul exit %d, not 3 (in doubt, source frozen)", st);
	/* the target's fetches time out (the page server's 10 s stall timeout): it kills its copy */
	for (int i = 0; i < 200 && th_mig_copies(&M) > 1; i++)
		usleep(100000);
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy (the frozen source)");
	cr_assert_not(th_mig_ticking(&M, 0, 500), "something still ticks");
}

/*
 * Post-copy recovery end to end: haul's connections to the page server are
 * shut down once mid post-copy (HAUL_FAULT=reset:serve:N, as a reset
 * would); the target detaches the session instead of killing the process,
 * haul reconnects and serves on, and the workload arrives intact, once.
 */
Test(mig_postcopy, broken_connection_mid_postcopy_reconnects_and_completes, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--postcopy", "--streams", "2", NULL};
	char line[512], said[512] = "";
	long seq;
	pid_t h;
	int fd, st;

	th_mig_setup(&M, 0);
	M.random_seed = 4242;
	th_mig_workload(&M, 64, 32, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	th_mig_state_before(&M);
	setenv("HAUL_FAULT", "reset:serve:40", 1);
	h = th_mig_haul(&M, &fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(h, 0);
	/* every line of haul's, until it exits: the reconnect's is kept */
	while (th_wait_line(fd, "", 60000, line, sizeof(line)) == 0) {
		if (strstr(line, "reconnected after"))
			snprintf(said, sizeof(said), "%s", line);
		cr_log_info("haul: %s", line);
	}
	st = th_wait_exit(h, 60000);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate --postcopy failed after the reconnect");
	cr_assert(said[0], "haul did not say it reconnected");
	cr_log_info("%s", said);
	th_mig_assert_moved(&M, seq);
	cr_assert_eq(th_mig_json(&M, "reconnects"), 1);
	cr_assert_geq(th_mig_json(&M, "served_pages"), 64 * 256 / 2);
}

static void *run_server(void *arg)
{
	ps_server_run(arg);
	return NULL;
}

/* State.stale is for lazy live sessions only: a page store must never take it. */
Test(mig_postcopy, stale_pages_are_refused_outside_a_lazy_live_session, .timeout = 30)
{
	struct ps_range stale = {.addr = 0x10000000, .npages = 4};
	struct ps_server_opts so = {0};
	struct ps_client_opts co = {0};
	struct ps_server *s;
	struct ps_client *c;
	char to[64], blob[16] = "state";
	pthread_t st;

	log_init("test");
	so.listen = "127.0.0.1:0";
	memset(so.key, 7, sizeof(so.key));
	cr_assert_eq(ps_server_new(&so, &s), 0);
	cr_assert_eq(pthread_create(&st, NULL, run_server, s), 0);
	snprintf(to, sizeof(to), "127.0.0.1:%d", ps_server_port(s));
	co.to = to;
	memcpy(co.key, so.key, sizeof(co.key));
	co.nstreams = 1;
	co.pid = getpid();
	co.comm = "itest";
	co.timeout_ms = 5000;
	co.kind = PS_SESSION_STORE;
	cr_assert_eq(ps_client_new(&co, &c), 0);
	cr_expect_eq(ps_client_state_stale(c, blob, sizeof(blob), &stale, 1, false), -EPROTO);
	cr_expect_eq(ps_client_state_stale(c, blob, sizeof(blob), &stale, PS_MAX_STALE_RANGES + 1,
					   false),
		     -E2BIG);
	ps_client_free(c);
	/* a plain state still goes through on a fresh session */
	cr_assert_eq(ps_client_new(&co, &c), 0);
	cr_expect_eq(ps_client_state(c, blob, sizeof(blob)), 0);
	ps_client_free(c);
	ps_server_stop(s);
	pthread_join(st, NULL);
	ps_server_free(s);
}
