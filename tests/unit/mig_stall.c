/*
 * mig_stall.c - the stall probe's arithmetic (src/haul/stall.c): from a
 * thread's run time, run-queue wait and state at each sample, the longest
 * time it wanted to run and could not.  Synthetic samples; no processes.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "haul/haul_int.h"

#define MS 1000000ULL /* ns */

struct feed {
	struct haul_stall_thread th;
	struct haul_stall_stats st;
	double t;
	uint64_t run, delay;
};

/* Advance @f by @dt ms in which the thread ran @run ms and waited queued @wait ms. */
static void step(struct feed *f, double dt, double run, double wait, bool blocked)
{
	f->t += dt;
	f->run += (uint64_t)(run * MS);
	f->delay += (uint64_t)(wait * MS);
	haul_stall_feed(&f->th, f->t, f->run, f->delay, blocked, &f->st);
}

static void start(struct feed *f)
{
	memset(f, 0, sizeof(*f));
	f->t = 1000;
	haul_stall_feed(&f->th, f->t, 0, 0, false, &f->st);
}

Test(mig_stall, a_sleeping_thread_is_never_stalled)
{
	struct feed f;

	start(&f);
	for (int i = 0; i < 100; i++)
		step(&f, 2, 0.05, 0.01, false);
	haul_stall_close(&f.th, &f.st);
	cr_assert_lt(f.st.max_ms, 0.1, "max %.3f ms", f.st.max_ms);
	cr_assert_float_eq(f.st.resolution_ms, 2, 1e-9);
}

Test(mig_stall, waiting_on_the_run_queue_across_samples_adds_up)
{
	struct feed f;

	start(&f);
	step(&f, 2, 0.1, 0.2, false);
	/* 10 ms queued without running (contention or a throttle), then it runs */
	for (int i = 0; i < 5; i++)
		step(&f, 2, 0, 2, false);
	step(&f, 2, 1.5, 0.3, false);
	cr_assert_float_eq(f.st.max_ms, 10.3, 1e-6);
	cr_assert_float_eq(f.st.max_blocked_ms, 0, 1e-9);
	cr_assert_float_eq(f.st.max_at_ms, f.t, 1e-9);
	cr_assert_float_eq(f.st.round_ms, 10.3, 1e-6, "the round's longest, until taken");
}

Test(mig_stall, a_thread_that_runs_is_not_stalled_however_busy)
{
	struct feed f;

	start(&f);
	/* busy: runs 1.6 of every 2 ms, waits 0.4 */
	for (int i = 0; i < 50; i++)
		step(&f, 2, 1.6, 0.4, false);
	cr_assert_float_eq(f.st.max_ms, 0.4, 1e-6);
}

Test(mig_stall, blocked_in_the_kernel_at_both_ends_counts_the_interval)
{
	struct feed f;

	start(&f);
	step(&f, 2, 0.1, 0, true); /* blocked from here on ('D' or stopped by a tracer) */
	step(&f, 3, 0, 0, true);
	step(&f, 3, 0, 0, true);
	step(&f, 2, 0.5, 0.1, false);
	cr_assert_float_eq(f.st.max_ms, 6.1, 1e-6);
	cr_assert_float_eq(f.st.max_blocked_ms, 6, 1e-6, "the blocked part, the rest queued");
}

Test(mig_stall, a_stall_still_open_when_sampling_ends_counts_so_far)
{
	struct feed f;

	start(&f);
	for (int i = 0; i < 4; i++)
		step(&f, 2, 0, 2, false);
	cr_assert_float_eq(f.st.max_ms, 0, 1e-9);
	haul_stall_close(&f.th, &f.st);
	cr_assert_float_eq(f.st.max_ms, 8, 1e-6);
}

Test(mig_stall, the_resolution_is_the_longest_interval_between_samples)
{
	struct feed f;

	start(&f);
	step(&f, 2, 0.1, 0, false);
	step(&f, 17, 0.1, 0, false); /* the sampler itself ran late */
	step(&f, 2, 0.1, 0, false);
	cr_assert_float_eq(f.st.resolution_ms, 17, 1e-9);
}

Test(mig_stall, the_longest_stall_names_the_process_of_its_thread)
{
	struct feed a, b;

	/* two threads of a tree sharing one result: a stalls 4 ms, b (pid 202) 8 ms */
	start(&a);
	start(&b);
	a.th.pid = 101;
	b.th.pid = 202;
	for (int i = 0; i < 2; i++)
		step(&a, 2, 0, 2, false);
	step(&a, 2, 1.5, 0, false);
	b.st = a.st;
	cr_assert_eq(b.st.max_pid, 101);
	for (int i = 0; i < 4; i++)
		step(&b, 2, 0, 2, false);
	/* still stalled when sampling ends: counted as far as seen, in its process */
	haul_stall_close(&b.th, &b.st);
	cr_assert_float_eq(b.st.max_ms, 8, 1e-6);
	cr_assert_eq(b.st.max_pid, 202);
}
