/*
 * rst_lazy_chunk.c - the post-copy push's fetch size while the process
 * faults (rst_lz_fault_chunk_adapt, src/restore/lazy_fetch.c), driven by
 * hand-made fault fetch times: fast faults grow it to its cap; a slow one
 * drops it to the floor and caps it at half what was out, so that it does
 * not grow back to the size that held the fault; the cap regrows slowly;
 * fetch times between fast and slow change nothing.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "restore/lazy_int.h"

#define US 1000ull

static struct rst_lazy *lz;

static void setup(void)
{
	lz = calloc(1, sizeof(*lz));
	cr_assert_not_null(lz);
	lz->chunk_pages = LAZY_PUSH_CHUNK_PAGES;
	lz->fault_chunk = LAZY_PUSH_FAULTING_PAGES;
	lz->fault_chunk_cap = LAZY_PUSH_CHUNK_PAGES;
}

static void teardown(void)
{
	free(lz);
}

TestSuite(rst_lazy_chunk, .init = setup, .fini = teardown);

static void faults(int n, uint64_t dt)
{
	for (int i = 0; i < n; i++)
		rst_lz_fault_chunk_adapt(lz, dt);
}

Test(rst_lazy_chunk, fast_faults_grow_it_to_a_whole_chunk)
{
	faults(1000, 100 * US);
	cr_assert_eq(lz->fault_chunk, LAZY_PUSH_CHUNK_PAGES);
}

Test(rst_lazy_chunk, a_slow_fault_drops_it_and_caps_it_at_half_what_was_out)
{
	faults(1000, 100 * US);
	faults(1, 2 * LAZY_FAULT_FAST_US * US + 1);
	cr_assert_eq(lz->fault_chunk, LAZY_PUSH_FAULTING_PAGES);
	cr_assert_eq(lz->fault_chunk_cap, LAZY_PUSH_CHUNK_PAGES / 2);
	/* growing back stops at the cap, which regrows a page per LAZY_PUSH_CAP_REGROW */
	faults(LAZY_PUSH_CHUNK_PAGES / 2 / LAZY_PUSH_FAULTING_PAGES, 100 * US);
	cr_assert_eq(lz->fault_chunk, LAZY_PUSH_CHUNK_PAGES / 2);
	faults(LAZY_PUSH_CAP_REGROW, 100 * US);
	cr_assert_eq(lz->fault_chunk_cap, LAZY_PUSH_CHUNK_PAGES / 2 + 1);
	faults(1, 100 * US);
	cr_assert_eq(lz->fault_chunk, LAZY_PUSH_CHUNK_PAGES / 2 + 1);
}

Test(rst_lazy_chunk, repeated_slow_faults_bring_the_cap_to_the_floor)
{
	/* each time it has just grown back to its cap */
	for (int k = 0; k < 10; k++) {
		faults((int)(lz->fault_chunk_cap / LAZY_PUSH_FAULTING_PAGES), 100 * US);
		faults(1, 5000 * US);
	}
	cr_assert_eq(lz->fault_chunk_cap, LAZY_PUSH_FAULTING_PAGES);
	cr_assert_eq(lz->fault_chunk, LAZY_PUSH_FAULTING_PAGES);
}

Test(rst_lazy_chunk, fetch_times_between_fast_and_slow_change_nothing)
{
	faults(10, 100 * US);
	faults(100, LAZY_FAULT_FAST_US * US + 100 * US);
	cr_assert_eq(lz->fault_chunk, LAZY_PUSH_FAULTING_PAGES + 10 * LAZY_PUSH_FAULTING_PAGES);
	cr_assert_eq(lz->fault_chunk_cap, LAZY_PUSH_CHUNK_PAGES);
}
