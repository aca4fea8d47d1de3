/*
 * rst_lazy_pace.c - the post-copy push's pace while the process faults
 * (src/restore/lazy_pace.c), driven by hand-made fault fetch times and
 * deliveries on a clock of the test's own: a queue behind the push slows
 * it, never under half its fastest delivery; fast faults let a pace that
 * held the push back open up; one stalled fetch is not a queue; a push fast
 * enough that its round trips are the CPUs' is not paced; paced fetches are
 * spaced by their bytes at the pace, and only while the process faults.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "restore/lazy_int.h"

#define MS 1000000ull
#define US 1000ull
#define MB 1000000ull

static struct rst_lazy *lz;

static void setup(void)
{
	lz = calloc(1, sizeof(*lz));
	cr_assert_not_null(lz);
	lz->t_start = 1000 * MS;
	rst_lz_pace_start(lz);
}

static void teardown(void)
{
	free(lz);
}

TestSuite(rst_lazy_pace, .init = setup, .fini = teardown);

/*
 * The push delivers @mbps MB/s in the first LAZY_PACE_WINDOW_MS window;
 * returns its end, where the controller's next step starts.
 */
static uint64_t deliver(uint64_t mbps)
{
	uint64_t bytes = mbps * MB * LAZY_PACE_WINDOW_MS / 1000, end;

	end = lz->t_start + LAZY_PACE_WINDOW_MS * MS;
	rst_lz_pace_delivered_at(lz, (uint32_t)(bytes / PG), end);
	lz->pace.step_ns = end;
	return end;
}

/* @n fault fetches of @dt ns each, spread over one step from @t; returns the step's end. */
static uint64_t faults(unsigned n, uint64_t dt, uint64_t t)
{
	for (unsigned i = 1; i <= n; i++)
		rst_lz_pace_fault_at(lz, dt, t + i * (LAZY_PACE_STEP_US * US) / n);
	return t + LAZY_PACE_STEP_US * US;
}

Test(rst_lazy_pace, the_push_starts_slow_and_is_paced_only_while_faulting)
{
	uint64_t t = lz->t_start, a, b;

	cr_assert_eq(lz->pace.bps, LAZY_PACE_START_MBPS * MB);
	/* 4 pages at 16 MB/s: 1.024 ms apart */
	a = rst_lz_pace_slot_at(lz, 4, true, t);
	b = rst_lz_pace_slot_at(lz, 4, true, t);
	cr_assert_eq(a, 0, "the first fetch goes at once");
	cr_assert_eq(b, t + 4 * PG * 1000000000ull / lz->pace.bps);
	cr_assert_eq(rst_lz_pace_slot_at(lz, 4, false, t), 0, "no fault: no pace");
}

Test(rst_lazy_pace, a_queue_behind_the_push_cuts_the_pace_down_to_half_its_fastest_delivery)
{
	uint64_t t = deliver(100);

	lz->pace.bps = 120 * MB;
	t = faults(8, 100 * US, t); /* the base: 100 us */
	for (int i = 0; i < 20; i++)
		t = faults(8, 500 * US, t); /* 400 us of queue on every fetch */
	cr_assert_eq(lz->pace.bps, lz->pace.rate_max_bps / LAZY_PACE_FLOOR_DIV, "pace %lu",
		     (unsigned long)lz->pace.bps);
	cr_assert_gt(lz->pace.rate_max_bps, 99 * MB);
	cr_assert_eq(lz->st.pace_min_bps, lz->pace.bps);
}

Test(rst_lazy_pace, fast_faults_open_a_pace_that_held_the_push_back)
{
	uint64_t t = lz->t_start, before = lz->pace.bps;

	(void)rst_lz_pace_slot_at(lz, 4, true, t);
	(void)rst_lz_pace_slot_at(lz, 4, true, t); /* this one waits: the pace held it */
	t = faults(8, 100 * US, t);
	cr_assert_eq(lz->pace.bps, before + before / 8);
	/* a step in which no fetch waited says nothing about a faster pace */
	before = lz->pace.bps;
	t = faults(8, 100 * US, t);
	cr_assert_eq(lz->pace.bps, before);
}

Test(rst_lazy_pace, one_stalled_fetch_is_not_a_queue)
{
	uint64_t t = deliver(100), before;

	lz->pace.bps = 90 * MB;
	t = faults(8, 100 * US, t);
	before = lz->pace.bps;
	/* one fetch of 10 ms (the host took the CPU) among seven at the base */
	for (unsigned i = 1; i <= 8; i++)
		rst_lz_pace_fault_at(lz, i == 4 ? 10 * MS : 100 * US,
				     t + i * (LAZY_PACE_STEP_US * US) / 8);
	cr_assert_eq(lz->pace.bps, before, "pace %lu", (unsigned long)lz->pace.bps);
}

Test(rst_lazy_pace, a_push_fast_enough_for_its_round_trips_to_be_the_cpus_is_not_paced)
{
	uint64_t t = deliver(LAZY_INLINE_MIN_MBPS + 50);

	t = faults(8, 500 * US, t);
	cr_assert_eq(lz->pace.bps, 0);
	cr_assert_eq(rst_lz_pace_slot_at(lz, 4, true, t), 0);
	cr_assert_eq(rst_lz_pace_slot_at(lz, 4, true, t), 0);
}
