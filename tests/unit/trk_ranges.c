/*
 * trk_ranges.c - the tracker's range-list algebra (what every round is
 * computed with), backend names, and zero-page detection.  No processes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tracker/trk_int.h"

#define P 4096ULL

static void add(struct trk_rl *l, uint64_t page, uint64_t n)
{
	cr_assert_eq(trk_rl_add(l, page * P, n), 0);
}

static void expect(const struct trk_rl *l, const uint64_t *pairs, size_t n)
{
	cr_assert_eq(l->n, n, "%zu ranges, want %zu", l->n, n);
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(l->r[i].start, pairs[2 * i] * P, "range %zu starts at page %llu", i,
			     (unsigned long long)(l->r[i].start / P));
		cr_assert_eq(l->r[i].npages, pairs[2 * i + 1], "range %zu", i);
	}
}

Test(trk_ranges, appends_in_order_merge_adjacent_ranges)
{
	struct trk_rl l = {0};
	const uint64_t want[] = {1, 3, 10, 1};

	add(&l, 1, 1);
	add(&l, 2, 2);
	add(&l, 10, 1);
	add(&l, 11, 0); /* empty: ignored */
	expect(&l, want, 2);
	cr_assert_eq(l.pages, 4);
	cr_assert(!l.unsorted);
	trk_rl_release(&l);
}

Test(trk_ranges, normalize_sorts_and_merges_overlaps)
{
	struct trk_rl l = {0};
	const uint64_t want[] = {1, 9, 20, 2};

	add(&l, 20, 2);
	add(&l, 5, 5);
	add(&l, 1, 5);
	add(&l, 3, 1);
	cr_assert(l.unsorted);
	cr_assert_eq(trk_rl_normalize(&l), 0);
	expect(&l, want, 2);
	cr_assert_eq(l.pages, 11);
	trk_rl_release(&l);
}

Test(trk_ranges, difference_cuts_holes_and_ends)
{
	struct trk_rl a = {0}, b = {0}, out = {0};
	const uint64_t want[] = {0, 2, 4, 2, 12, 3};

	add(&a, 0, 10);
	add(&a, 12, 5);
	add(&b, 2, 2);
	add(&b, 6, 5); /* covers 6..10, past a's end */
	add(&b, 15, 10);
	cr_assert_eq(trk_rl_sub(&a, &b, &out), 0);
	expect(&out, want, 3);
	trk_rl_release(&a);
	trk_rl_release(&b);
	trk_rl_release(&out);
}

Test(trk_ranges, difference_with_nothing_is_identity_and_of_everything_is_empty)
{
	struct trk_rl a = {0}, none = {0}, out = {0}, out2 = {0};
	const uint64_t want[] = {3, 4};

	add(&a, 3, 4);
	cr_assert_eq(trk_rl_sub(&a, &none, &out), 0);
	expect(&out, want, 1);
	cr_assert_eq(trk_rl_sub(&a, &a, &out2), 0);
	cr_assert_eq(out2.n, 0);
	trk_rl_release(&a);
	trk_rl_release(&out);
	trk_rl_release(&out2);
}

Test(trk_ranges, intersection_keeps_only_common_pages)
{
	struct trk_rl a = {0}, b = {0}, out = {0};
	const uint64_t want[] = {2, 2, 8, 1, 12, 2};

	add(&a, 0, 4);
	add(&a, 8, 6);
	add(&b, 2, 7); /* 2..8 */
	add(&b, 12, 10);
	cr_assert_eq(trk_rl_and(&a, &b, &out), 0);
	expect(&out, want, 3);
	trk_rl_release(&a);
	trk_rl_release(&b);
	trk_rl_release(&out);
}

Test(trk_ranges, move_hands_the_array_over)
{
	struct trk_rl l = {0};
	struct trk_range *r;
	size_t n;

	add(&l, 7, 1);
	trk_rl_move(&l, &r, &n);
	cr_assert_eq(n, 1);
	cr_assert_eq(r[0].start, 7 * P);
	cr_assert_null(l.r);
	cr_assert_eq(l.n, 0);
	free(r);
}

Test(trk_backend, names_round_trip_and_unknown_is_einval)
{
	static const enum trk_backend all[] = {TRK_AUTO, TRK_UFFD, TRK_SOFT_DIRTY, TRK_HASH};
	enum trk_backend b;

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
		cr_assert_eq(trk_backend_parse(trk_backend_name(all[i]), &b), 0);
		cr_assert_eq(b, all[i]);
	}
	cr_assert_eq(trk_backend_parse("softdirty", &b), -EINVAL);
	cr_assert_eq(trk_backend_parse("", &b), -EINVAL);
}

Test(trk_read, zero_page_detection_finds_any_nonzero_byte)
{
	static uint64_t page[512] __attribute__((aligned(4096)));
	unsigned char *b = (unsigned char *)page;

	memset(page, 0, sizeof(page));
	cr_assert(trk_page_is_zero(page));
	for (size_t off = 0; off < 4096; off += 511) {
		b[off] = 1;
		cr_assert(!trk_page_is_zero(page), "byte %zu set but page reads zero", off);
		b[off] = 0;
	}
	b[4095] = 0x80;
	cr_assert(!trk_page_is_zero(page));
}

Test(trk_free, null_is_a_noop)
{
	trk_free(NULL);
	trk_round_release(NULL);
}
