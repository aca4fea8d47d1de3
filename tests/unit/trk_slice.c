/*
 * trk_slice.c - the sliced walk (src/tracker/slice.c): whatever walk_end a
 * kernel call returns, the slices tile the range in order, each page exactly
 * once, no call spans more than a slice, and slice ends fall on 2 MiB
 * boundaries so that a THP is not split at one.  A fake walker stands in for
 * PAGEMAP_SCAN and marks each page it covers; no processes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tracker/trk_int.h"

#define P   4096ULL
#define MiB (1ULL << 20)

struct fake {
	uint64_t base;
	uint8_t *seen; /* per page: times covered */
	uint64_t slice;
	uint64_t max_pages; /* stop early after this many pages, like max_pages; 0: never */
	uint64_t next_pos;  /* where the next call must start */
	unsigned calls;
	unsigned rnd;
	int fail_at; /* call number that returns an error; -1 never */
	bool stall;  /* return walk_end = s (no progress) on the 3rd call */
};

static int fake_walk(void *arg, uint64_t s, uint64_t e, uint64_t *walk_end)
{
	struct fake *f = arg;
	uint64_t stop = e;

	cr_assert_eq(s, f->next_pos, "call %u starts at %#llx, not where the last stopped",
		     f->calls, (unsigned long long)s);
	cr_assert_gt(e, s);
	cr_assert_leq(e - s, f->slice, "call %u spans %llu bytes", f->calls,
		      (unsigned long long)(e - s));
	if ((int)f->calls == f->fail_at)
		return -EIO;
	if (f->stall && f->calls == 2) {
		f->calls++;
		*walk_end = s;
		return 0;
	}
	if (f->max_pages) {
		/* stop after a pseudo-random number of pages, at most max_pages */
		f->rnd = f->rnd * 1103515245u + 12345u;
		uint64_t n = 1 + (f->rnd >> 8) % f->max_pages;

		if (s + n * P < e)
			stop = s + n * P;
	}
	for (uint64_t a = s; a < stop; a += P)
		f->seen[(a - f->base) / P]++;
	f->calls++;
	f->next_pos = stop;
	*walk_end = stop;
	return 0;
}

static void run(uint64_t start, uint64_t len, uint64_t slice, uint64_t max_pages)
{
	struct fake f = {.base = start,
			 .slice = slice,
			 .max_pages = max_pages,
			 .next_pos = start,
			 .rnd = 7,
			 .fail_at = -1};

	f.seen = calloc(len / P, 1);
	cr_assert_not_null(f.seen);
	cr_assert_eq(trk_slice_walk(start, start + len, slice, fake_walk, &f), 0);
	for (uint64_t i = 0; i < len / P; i++)
		cr_assert_eq(f.seen[i], 1, "page %llu covered %u times", (unsigned long long)i,
			     f.seen[i]);
	cr_assert_eq(f.next_pos, start + len);
	free(f.seen);
}

Test(trk_slice, slices_cover_an_aligned_range_exactly_once)
{
	run(0x7f0000000000ULL, 256 * MiB, 64 * MiB, 0);
}

Test(trk_slice, slices_cover_an_unaligned_range_exactly_once)
{
	run(0x7f0000003000ULL, 200 * MiB + 5 * P, 64 * MiB, 0);
}

Test(trk_slice, early_stops_resume_exactly_where_the_call_stopped)
{
	run(0x7f0000001000ULL, 96 * MiB + 3 * P, 8 * MiB, 700);
	run(0x7f0000000000ULL, 64 * MiB, 64 * MiB, 3);
}

Test(trk_slice, a_range_shorter_than_a_slice_is_one_call)
{
	cr_assert_eq(trk_slice_end(0x1000, 0x5000, 64 * MiB), 0x5000);
	cr_assert_eq(trk_slice_end(0x1000, 0x5000, 0), 0x5000, "0: no slicing");
}

Test(trk_slice, slice_ends_fall_on_2mib_boundaries)
{
	uint64_t pos = 0x7f0000123000ULL, end = pos + 1024 * MiB;

	while (pos < end) {
		uint64_t e = trk_slice_end(pos, end, 64 * MiB);

		cr_assert_gt(e, pos);
		cr_assert_leq(e - pos, 64 * MiB);
		if (e != end)
			cr_assert_eq(e % (2 * MiB), 0, "slice end %#llx", (unsigned long long)e);
		pos = e;
	}
}

Test(trk_slice, a_slice_below_the_alignment_still_progresses)
{
	/* pos just below a 2 MiB boundary with a 1 MiB slice: the bound, not the boundary */
	cr_assert_eq(trk_slice_end(0x1ff000, 0x10000000, MiB), 0x200000);
	cr_assert_eq(trk_slice_end(0x200000, 0x10000000, MiB), 0x300000);
}

Test(trk_slice, an_error_stops_the_walk_and_is_returned)
{
	struct fake f = {.base = 0, .slice = 2 * MiB, .fail_at = 2};

	f.seen = calloc(8 * MiB / P, 1);
	cr_assert_eq(trk_slice_walk(0, 8 * MiB, 2 * MiB, fake_walk, &f), -EIO);
	cr_assert_eq(f.calls, 2);
	free(f.seen);
}

Test(trk_slice, a_call_without_progress_ends_the_walk)
{
	struct fake f = {.base = 0, .slice = 2 * MiB, .fail_at = -1, .stall = true};

	f.seen = calloc(16 * MiB / P, 1);
	cr_assert_eq(trk_slice_walk(0, 16 * MiB, 2 * MiB, fake_walk, &f), 0);
	cr_assert_eq(f.calls, 3, "the vanished range is not walked again");
	free(f.seen);
}
