/* mig_converge.c - the pre-copy convergence model: when to switch over, when to throttle. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "common/policy.h"
#include "haul/haul_int.h"
#include "tracker/tracker.h"

#define MiB (1024.0 * 1024)
#define GB  1e9

/* Feed one round of @dirty bytes sent at @bw bytes/s plus @lat s, scans @gap s apart. */
static enum haul_conv_action round_at(struct haul_conv *c, double dirty, double bw, double lat,
				      double gap)
{
	struct haul_conv_sample s = {
		.dirty_bytes = (uint64_t)dirty,
		.scan_gap_s = gap,
		.send_s = dirty / bw + lat,
		.since_scan_s = dirty / bw + lat,
	};

	return haul_conv_update(c, &s);
}

Test(mig_converge, never_switches_after_the_first_round)
{
	struct haul_conv c;

	haul_conv_init(&c, 1000, 1, 30);
	cr_assert_eq(round_at(&c, 4096, GB, 0, 0), HAUL_CONV_CONTINUE);
}

Test(mig_converge, switches_an_idle_workload_after_round_two)
{
	struct haul_conv c;

	haul_conv_init(&c, 25, 10, 30);
	cr_assert_eq(round_at(&c, 1024 * MiB, GB, 0.001, 0), HAUL_CONV_CONTINUE);
	cr_assert_eq(round_at(&c, 0, GB, 0.001, 1.07), HAUL_CONV_SWITCH);
	cr_assert(c.expected_ms >= 10 && c.expected_ms < 12, "expected %f", c.expected_ms);
}

Test(mig_converge, estimates_bandwidth_from_bytes_over_time)
{
	struct haul_conv c;

	haul_conv_init(&c, 25, 10, 30);
	round_at(&c, 2 * GB, 2 * GB, 0, 0);
	cr_assert_float_eq(c.bw, 2 * GB, 1e6);
}

Test(mig_converge, expected_downtime_is_fixed_cost_plus_dirty_since_scan_over_bandwidth)
{
	struct haul_conv c;
	struct haul_conv_sample s = {
		.dirty_bytes = 16 * MiB, .scan_gap_s = 0.25, .send_s = 0, .since_scan_s = 0.5};

	haul_conv_init(&c, 1, 5, 30);
	round_at(&c, 640 * MiB, 640 * MiB, 0, 0); /* bw 640 MiB/s */
	haul_conv_update(&c, &s);
	/* 64 MiB/s dirty for 0.5 s = 32 MiB, at 640 MiB/s = 50 ms, + 5 ms fixed */
	cr_assert_float_eq(c.dirty_rate, 64 * MiB, 1);
	cr_assert(c.expected_ms > 54 && c.expected_ms < 56, "expected %f", c.expected_ms);
}

Test(mig_converge, a_hot_set_is_expected_whole_however_short_the_interval)
{
	struct haul_conv c;
	struct haul_conv_sample s = {
		.dirty_bytes = 64 * MiB, .scan_gap_s = 1, .send_s = 0, .since_scan_s = 0.1};

	haul_conv_init(&c, 1, 5, 30);
	round_at(&c, 640 * MiB, 640 * MiB, 0, 0);
	haul_conv_update(&c, &s);
	/* the rate says 6.4 MiB in 0.1 s, but the round found 64 MiB: 100 ms + 5 */
	cr_assert(c.expected_ms > 104 && c.expected_ms < 106, "expected %f", c.expected_ms);
}

Test(mig_converge, converging_rounds_continue_then_switch)
{
	struct haul_conv c;
	double dirty = 1024 * MiB, bw = 1 * GB, rate = 100 * MiB, t;
	enum haul_conv_action a = HAUL_CONV_CONTINUE;
	int i;

	haul_conv_init(&c, 25, 5, 30);
	for (i = 0; i < 30 && a != HAUL_CONV_SWITCH; i++) {
		t = dirty / bw;
		a = round_at(&c, dirty, bw, 0, i ? t : 0);
		cr_assert_neq(a, HAUL_CONV_THROTTLE, "round %d throttled", i + 1);
		dirty = rate * t;
	}
	cr_assert_eq(a, HAUL_CONV_SWITCH);
	cr_assert_eq(c.throttle_pct, 0);
	cr_assert(c.expected_ms <= 25);
}

Test(mig_converge, throttles_when_rounds_stop_shrinking_and_steps_up)
{
	struct haul_conv c;
	double bw = 100 * MiB, dirty = 50 * MiB;

	haul_conv_init(&c, 25, 5, 30);
	cr_assert_eq(round_at(&c, 512 * MiB, bw, 0, 0), HAUL_CONV_CONTINUE);
	/* a hot set: 50 MiB found every round at 50 MiB/s, half the bandwidth */
	cr_assert_eq(round_at(&c, dirty, bw, 0, 1), HAUL_CONV_CONTINUE);
	cr_assert_eq(round_at(&c, dirty, bw, 0, 1), HAUL_CONV_THROTTLE);
	cr_assert_eq(c.throttle_pct, HAUL_MIG_THROTTLE_INITIAL);
	cr_assert_eq(round_at(&c, dirty, bw, 0, 1), HAUL_CONV_THROTTLE);
	cr_assert_eq(c.throttle_pct, HAUL_MIG_THROTTLE_INITIAL + HAUL_MIG_THROTTLE_STEP);
}

/*
 * 1 GiB at 64 MiB/s over 1 Gbit/s (~119.5 MB/s): the rounds shrink by 0.50-0.57,
 * slower than half, but steadily and to well under the target.  Measured before
 * this rule: 20% at round 4 up to 97%, with 24 ms frozen stretches, and the
 * rate did not fall.
 */
Test(mig_converge, a_steady_rate_over_half_the_link_converges_unthrottled)
{
	struct haul_conv c;
	const double bw = 119.5e6, rate = 64 * MiB, lat = 0.003;
	double d = 1024 * MiB, gap = 0;
	enum haul_conv_action a = HAUL_CONV_CONTINUE;
	int i;

	haul_conv_init(&c, 25, 6, 30);
	for (i = 0; i < 30 && a == HAUL_CONV_CONTINUE; i++) {
		a = round_at(&c, d, bw, lat, gap);
		cr_assert_neq(a, HAUL_CONV_THROTTLE, "round %d (%.0f pages) throttled", i + 1,
			      d / 4096);
		gap = d / bw + lat;
		d = rate * gap;
	}
	cr_assert_eq(a, HAUL_CONV_SWITCH, "%s", haul_conv_action_name(a));
	cr_assert_leq(i, 16, "%d rounds", i);
}

/* The same shrinking, but to a point over the target (a long round trip): throttled. */
Test(mig_converge, a_steady_rate_that_cannot_reach_the_target_is_throttled)
{
	struct haul_conv c;
	const double bw = 119.5e6, rate = 64 * MiB, lat = 0.015;
	double d = 1024 * MiB, gap = 0;
	enum haul_conv_action a = HAUL_CONV_CONTINUE;

	haul_conv_init(&c, 25, 6, 30);
	for (int i = 0; i < 30 && a == HAUL_CONV_CONTINUE; i++) {
		a = round_at(&c, d, bw, lat, gap);
		gap = d / bw + lat;
		d = rate * gap;
	}
	cr_assert_eq(a, HAUL_CONV_THROTTLE, "%s", haul_conv_action_name(a));
}

Test(mig_converge, throttle_stops_at_its_maximum)
{
	struct haul_conv c;
	double bw = 100 * MiB, dirty = 50 * MiB;

	haul_conv_init(&c, 1, 5, 100);
	round_at(&c, 512 * MiB, bw, 0, 0);
	for (int i = 0; i < 40; i++)
		round_at(&c, dirty, bw, 0, 0.25);
	cr_assert_eq(c.throttle_pct, HAUL_MIG_THROTTLE_MAX);
	cr_assert_eq(round_at(&c, dirty, bw, 0, 0.25), HAUL_CONV_CONTINUE);
}

Test(mig_converge, switches_at_the_round_limit_over_target)
{
	struct haul_conv c;
	double bw = 100 * MiB, dirty = 50 * MiB;

	haul_conv_init(&c, 1, 5, 3);
	round_at(&c, 512 * MiB, bw, 0, 0);
	round_at(&c, dirty, bw, 0, 0.25);
	cr_assert_eq(round_at(&c, dirty, bw, 0, 0.25), HAUL_CONV_SWITCH_LIMIT);
	cr_assert(c.expected_ms > 1);
}

Test(mig_converge, small_rounds_measure_latency_not_bandwidth)
{
	struct haul_conv c;

	haul_conv_init(&c, 25, 0, 30);
	round_at(&c, 1024 * MiB, 1 * GB, 0, 0);
	/* 4 KiB taking 2 ms is a round trip, not a 2 MB/s link */
	round_at(&c, 4096, 1 * GB, 0.002, 0.5);
	cr_assert(c.bw > 0.9 * GB, "bw %f", c.bw);
	cr_assert(c.latency_s > 0.0019 && c.latency_s < 0.0021, "latency %f", c.latency_s);
}

Test(mig_converge, throttles_at_once_when_the_dirty_rate_exceeds_the_bandwidth)
{
	struct haul_conv c;
	double bw = 100 * MiB;

	haul_conv_init(&c, 25, 5, 30);
	round_at(&c, 512 * MiB, bw, 0, 0);
	/* the first measured rate: 400 MiB/s against a ~100 MiB/s link */
	cr_assert_eq(round_at(&c, 200 * MiB, bw, 0, 0.5), HAUL_CONV_THROTTLE);
	/* straight to what halves the rounds: 400 -> under 50 MiB/s, ~88% */
	cr_assert(c.throttle_pct >= 85 && c.throttle_pct <= 90, "throttle %u", c.throttle_pct);
}

Test(mig_converge, switches_when_only_fixed_costs_exceed_the_target)
{
	struct haul_conv c;

	haul_conv_init(&c, 10, 30, 30);
	round_at(&c, 512 * MiB, GB, 0, 0);
	/* nothing dirty: 30 ms of fixed costs against a 10 ms target */
	cr_assert_eq(round_at(&c, 0, GB, 0, 0.5), HAUL_CONV_SWITCH_FLOOR);
	cr_assert_eq(c.throttle_pct, 0);
}

Test(mig_converge, high_fixed_costs_switch_once_the_data_is_a_tenth_of_them)
{
	struct haul_conv c;

	haul_conv_init(&c, 25, 90, 30);
	round_at(&c, 512 * MiB, GB, 0, 0);
	/* 8 ms of data left, 90 ms of fixed costs: more rounds gain < 10% */
	cr_assert_eq(round_at(&c, 8e6, GB, 0, 0.5), HAUL_CONV_SWITCH_FLOOR);
}

/* memcached at 4 GiB: ~250 pages a round, whatever the throttle (its hot items and LRU). */
Test(mig_converge, a_hot_set_the_throttle_does_not_shrink_switches_a_little_over_the_target)
{
	struct haul_conv c;
	const double hot = 250 * 4096.0, bw = 250e6;

	haul_conv_init(&c, 25, 21, 30);
	round_at(&c, 4096 * MiB, bw, 0, 0);
	/* rounds 2 and 3: the hot set, over the target (21 + 4 ms of data + a round's latency) */
	cr_assert_eq(round_at(&c, hot, bw, 0.004, 0.01), HAUL_CONV_CONTINUE);
	cr_assert_eq(round_at(&c, hot, bw, 0.004, 0.01), HAUL_CONV_THROTTLE);
	cr_assert_gt(c.throttle_pct, 0);
	/* throttled, about as much again: throttling more would only stall it */
	cr_assert_eq(round_at(&c, hot * 0.95, bw, 0.004, 0.01), HAUL_CONV_SWITCH_HOT,
		     "expected %.1f ms", c.expected_ms);
}

/* The same hot set seen without a throttle: as much after 10 ms as after 17 s. */
Test(mig_converge, a_hot_set_found_whole_in_a_much_shorter_interval_switches_unthrottled)
{
	struct haul_conv c;
	const double bw = 250e6;

	haul_conv_init(&c, 25, 21, 30);
	round_at(&c, 4096 * MiB, bw, 0, 0);
	cr_assert_eq(round_at(&c, 289 * 4096.0, bw, 0.004, 17), HAUL_CONV_CONTINUE);
	cr_assert_eq(round_at(&c, 255 * 4096.0, bw, 0.004, 0.01), HAUL_CONV_SWITCH_HOT,
		     "expected %.1f ms", c.expected_ms);
	cr_assert_eq(c.throttle_pct, 0);
}

/* A writer at a steady rate: each round finds the rate times a shorter interval. */
Test(mig_converge, a_steady_rate_in_shrinking_rounds_is_not_a_hot_set)
{
	struct haul_conv c;
	const double bw = 450e6, rate = 64 * MiB;
	double gap = 2.3;
	enum haul_conv_action a = HAUL_CONV_CONTINUE;

	haul_conv_init(&c, 25, 10, 30);
	round_at(&c, 1024 * MiB, bw, 0, 0);
	for (int i = 0; i < 6 && a != HAUL_CONV_SWITCH; i++) {
		double d = rate * gap;

		a = round_at(&c, d, bw, 0.004, gap);
		cr_assert_neq(a, HAUL_CONV_SWITCH_HOT, "round %d (%.0f bytes)", i + 2, d);
		gap = d / bw + 0.004;
	}
}

Test(mig_converge, a_rate_the_throttle_slows_is_throttled_on_not_taken_for_a_hot_set)
{
	struct haul_conv c;
	const double bw = 250e6;
	double d = 8 * MiB;

	haul_conv_init(&c, 25, 21, 30);
	round_at(&c, 1024 * MiB, bw, 0, 0);
	cr_assert_eq(round_at(&c, d, bw, 0.004, 0.12), HAUL_CONV_CONTINUE);
	cr_assert_eq(round_at(&c, d, bw, 0.004, 0.12), HAUL_CONV_THROTTLE);
	/* the throttle halves what a round finds: a rate, not a hot set */
	cr_assert_neq(round_at(&c, d / 2, bw, 0.004, 0.12), HAUL_CONV_SWITCH_HOT);
}

Test(mig_converge, a_hot_set_far_over_the_target_is_not_switched_for)
{
	struct haul_conv c;
	const double hot = 64 * MiB, bw = 250e6;

	haul_conv_init(&c, 25, 21, 30);
	round_at(&c, 4096 * MiB, bw, 0, 0);
	cr_assert_eq(round_at(&c, hot, bw, 0.004, 0.3), HAUL_CONV_CONTINUE);
	cr_assert_eq(round_at(&c, hot, bw, 0.004, 0.3), HAUL_CONV_THROTTLE);
	/* ~290 ms expected: far over the target, so the throttle goes on */
	cr_assert_neq(round_at(&c, hot, bw, 0.004, 0.3), HAUL_CONV_SWITCH_HOT);
}

/* ---- the throttle as cpu.max: a slowdown, never long stalls ----------------------- */

Test(mig_converge, throttle_periods_keep_every_throttled_stretch_short)
{
	const double cpus[] = {0.05, 0.3, 1.0, 1.7, 4.0};

	for (size_t i = 0; i < sizeof(cpus) / sizeof(cpus[0]); i++)
		for (unsigned pct = 1; pct <= 100; pct++) {
			long q, p;
			unsigned applied = haul_conv_cpu_max(pct, cpus[i], 0, &q, &p);
			double stall = haul_conv_throttle_stall_ms(q, p, cpus[i]);

			cr_assert_geq(q, HAUL_MIG_THROTTLE_MIN_QUOTA_US, "%u%% of %.2f cpus", pct,
				      cpus[i]);
			cr_assert(p >= 1000 && p <= HAUL_MIG_THROTTLE_MAX_PERIOD_US,
				  "period %ld us for %u%% of %.2f cpus", p, pct, cpus[i]);
			cr_assert_leq(stall, HAUL_MIG_THROTTLE_STALL_US / 1e3 + 0.01,
				      "%u%% of %.2f cpus stalls %.2f ms", pct, cpus[i], stall);
			cr_assert_leq(applied, pct);
		}
}

Test(mig_converge, a_moderate_throttle_is_applied_as_asked)
{
	long q, p;

	/* one busy thread, half its CPU: 4 ms run, 4 ms wait */
	cr_assert_eq(haul_conv_cpu_max(50, 1.0, 0, &q, &p), 50);
	cr_assert_eq(p, 8000);
	cr_assert_eq(q, 4000);
	/* four threads, 75%: each waits 4 ms of every period too */
	cr_assert_eq(haul_conv_cpu_max(75, 4.0, 0, &q, &p), 75);
	cr_assert_float_eq(haul_conv_throttle_stall_ms(q, p, 4.0), 4.0, 0.01);
}

Test(mig_converge, a_throttle_deeper_than_short_stalls_allow_is_lowered)
{
	long q, p;
	unsigned applied = haul_conv_cpu_max(99, 1.0, 0, &q, &p);

	/* 1 ms of quota and at most 4 ms of waiting: 80% at most for one thread */
	cr_assert_eq(applied, 80);
	cr_assert_eq(q, 1000);
	cr_assert_eq(p, 5000);
}

Test(mig_converge, a_deep_throttle_stretches_up_to_the_downtime_target_and_no_further)
{
	long q, p;

	/* 99% of one thread needs 99 ms stretches: allowed with a 100 ms target */
	cr_assert_eq(haul_conv_cpu_max(99, 1.0, 100000, &q, &p), 99);
	cr_assert_eq(q, 1000);
	cr_assert_eq(p, 100000);
	cr_assert_float_eq(haul_conv_throttle_stall_ms(q, p, 1.0), 99, 0.01);
	/* with the default 25 ms target: 96%, stretches of 24-25 ms */
	cr_assert_eq(haul_conv_cpu_max(99, 1.0, 25000, &q, &p), 96);
	cr_assert_leq(haul_conv_throttle_stall_ms(q, p, 1.0), 25.01);
	/* a moderate throttle keeps its short stretches whatever the target */
	cr_assert_eq(haul_conv_cpu_max(50, 1.0, 100000, &q, &p), 50);
	cr_assert_eq(p, 8000);
}

/* ---- a deeper throttle as the freezer's duty cycle: short stops at any depth ------ */

Test(mig_converge, duty_cycle_freezes_briefly_up_to_80_percent)
{
	for (unsigned pct = 1; pct <= 100; pct++) {
		long f, r;
		unsigned applied = haul_conv_duty(pct, 0, &f, &r);

		cr_assert_leq(f, HAUL_MIG_DUTY_FROZEN_US, "%u%%: frozen %ld us", pct, f);
		cr_assert_geq(r, HAUL_MIG_DUTY_MIN_RUN_US, "%u%%: running %ld us", pct, r);
		cr_assert_leq(applied, pct);
		cr_assert_geq(applied, pct < 80 ? pct : 80, "%u%%: applied %u%%", pct, applied);
		/* what it applies is what the cycle leaves, within a percent */
		cr_assert_float_eq(100.0 * f / (f + r), applied, 1.0, "%u%%: %ld/%ld us", pct, f,
				   r);
	}
}

Test(mig_converge, duty_cycle_applies_throttles_cpu_max_cannot_make_short)
{
	long f, r, q, p;

	/* a light workload's 20% is a long cpu.max period, but 3 ms of every 15 frozen */
	cr_assert_lt(haul_conv_cpu_max(20, 0.1, 0, &q, &p), 20);
	cr_assert_eq(haul_conv_duty(20, 0, &f, &r), 20);
	cr_assert_eq(f, 3000);
	cr_assert_eq(r, 12000);
	/* 80% of it: 3 ms frozen, 0.75 ms running */
	cr_assert_eq(haul_conv_duty(80, 0, &f, &r), 80);
	cr_assert_eq(r, HAUL_MIG_DUTY_MIN_RUN_US);
}

Test(mig_converge, a_deeper_duty_cycle_freezes_longer_up_to_the_downtime_target)
{
	long f, r, q, p;

	/* 90%: 6.75 ms frozen, 0.75 running; cpu.max needs 9 ms stretches for one thread */
	cr_assert_eq(haul_conv_duty(90, 25000, &f, &r), 90);
	cr_assert_eq(f, 6750);
	cr_assert_eq(r, HAUL_MIG_DUTY_MIN_RUN_US);
	cr_assert_eq(haul_conv_cpu_max(90, 1.0, 25000, &q, &p), 90);
	cr_assert_gt(haul_conv_throttle_stall_ms(q, p, 1.0), f / 1e3);
	/* 99% would freeze 74 ms: the 25 ms target keeps 1 ms for the thaw, 97% */
	cr_assert_eq(haul_conv_duty(99, 25000, &f, &r), 97);
	cr_assert_eq(f, 24000);
	/* no target given: 3 ms, 80% at most */
	cr_assert_eq(haul_conv_duty(99, 0, &f, &r), 80);
	cr_assert_eq(f, 3000);
}

/* ---- post-copy's working set (pc_hot.c): overlap and union of two windows ---------- */

Test(mig_converge, hot_set_overlap_counts_pages_written_in_both_windows)
{
	const uint64_t P = HAUL_PAGE_SIZE;
	const struct trk_range a[] = {{0x1000 * P, 4}, {0x2000 * P, 10}, {0x3000 * P, 1}};
	const struct trk_range b[] = {{0x1002 * P, 4}, {0x2008 * P, 1}, {0x4000 * P, 3}};

	cr_assert_eq(haul_pc_overlap(a, 3, b, 3), 3);
	cr_assert_eq(haul_pc_overlap(b, 3, a, 3), 3);
	cr_assert_eq(haul_pc_overlap(a, 3, NULL, 0), 0);
}

Test(mig_converge, hot_set_union_is_sorted_and_merged)
{
	const uint64_t P = HAUL_PAGE_SIZE;
	const struct trk_range a[] = {{0x1000 * P, 4}, {0x2000 * P, 10}};
	const struct trk_range b[] = {{0x1002 * P, 4}, {0x200a * P, 2}, {0x4000 * P, 3}};
	struct ps_range *u = NULL;
	size_t n = 0;

	cr_assert_eq(haul_pc_union(a, 2, b, 3, &u, &n), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(u[0].addr, 0x1000 * P);
	cr_assert_eq(u[0].npages, 6);
	cr_assert_eq(u[1].addr, 0x2000 * P);
	cr_assert_eq(u[1].npages, 12, "adjacent runs merge");
	cr_assert_eq(u[2].addr, 0x4000 * P);
	cr_assert_eq(u[2].npages, 3);
	free(u);
}

/*
 * --hybrid: rounds that halve go on unthrottled where pre-copy would throttle
 * (4 GiB at 64 MiB/s over 1 Gbit/s, rounds 2-3: 452 k -> 227 k pages); a round
 * at 70% or more of the last, or any other verdict, is hybrid's switch.
 */
Test(mig_converge, hybrid_goes_on_while_rounds_shrink_and_switches_where_they_stop)
{
	struct haul_conv c;

	haul_conv_init(&c, 25, 3, 30);
	/* round 3 of that cell: 227 k pages after 452 k */
	c.rounds = 2;
	c.prev_dirty = 452000;
	round_at(&c, 227000, GB, 0, 1);
	c.throttle_pct = 20;
	cr_assert(haul_conv_hybrid_goes_on(&c, HAUL_CONV_THROTTLE));
	cr_assert_eq(c.throttle_pct, 0, "a throttle asked for and not applied is counted");
	/* round 12: 2711 after 3708, 73%: no longer shrinking */
	c.prev_dirty = 3708;
	round_at(&c, 2711, GB, 0, 1);
	cr_assert_not(haul_conv_hybrid_goes_on(&c, HAUL_CONV_THROTTLE));
	/* any other verdict is hybrid's switch, shrinking or not */
	c.prev_dirty = 3708;
	round_at(&c, 100, GB, 0, 1);
	cr_assert_not(haul_conv_hybrid_goes_on(&c, HAUL_CONV_SWITCH_HOT));
	cr_assert_not(haul_conv_hybrid_goes_on(&c, HAUL_CONV_SWITCH_LIMIT));
	/* rounds 1 and 2 (everything, then the first rate) prove nothing */
	haul_conv_init(&c, 25, 3, 30);
	round_at(&c, 1000000, GB, 0, 0);
	round_at(&c, 1000, GB, 0, 1);
	cr_assert_not(haul_conv_hybrid_goes_on(&c, HAUL_CONV_THROTTLE));
}
