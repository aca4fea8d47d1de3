/*
 * trk_pagemap.c - the pagemap walk the hash and soft-dirty backends share
 * (trk_pagemap_populated) and the range-list search (trk_rl_bsearch), on a
 * pagemap written into a memfd: no process, no kernel soft-dirty needed.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/probe.h"
#include "tracker/trk_int.h"

#define P 4096ULL

/* A fake pagemap: entry @page of @n holds @e[page]. */
static int fake_pagemap(const uint64_t *e, size_t n, uint64_t first_page)
{
	int fd = memfd_create("trk-pagemap", MFD_CLOEXEC);

	cr_assert_geq(fd, 0);
	cr_assert_eq(pwrite(fd, e, n * sizeof(*e), (off_t)(first_page * sizeof(*e))),
		     (ssize_t)(n * sizeof(*e)));
	return fd;
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

static const uint64_t entries[] = {
	PM_ENTRY_PRESENT,
	PM_ENTRY_PRESENT | PM_ENTRY_SOFT_DIRTY,
	0, /* never touched */
	PM_ENTRY_SWAPPED | PM_ENTRY_SOFT_DIRTY,
	PM_ENTRY_SWAPPED,
	PM_ENTRY_SOFT_DIRTY, /* dirty bit without a page: not populated */
};

Test(trk_pagemap, populated_pages_are_present_or_swapped_and_written_ones_match_the_mask)
{
	uint64_t *pm = malloc(TRK_PM_CHUNK * sizeof(*pm));
	struct haul_vma v = {.start = 100 * P, .end = 106 * P};
	struct trk_rl present = {0}, written = {0};
	const uint64_t want_present[] = {100, 2, 103, 2}, want_written[] = {101, 1, 103, 1};
	int fd = fake_pagemap(entries, 6, 100);

	cr_assert_not_null(pm);
	cr_assert_eq(trk_pagemap_populated(fd, pm, &v, &present, &written, PM_ENTRY_SOFT_DIRTY), 0);
	expect(&present, want_present, 2);
	expect(&written, want_written, 2);
	trk_rl_release(&present);
	trk_rl_release(&written);
	close(fd);
	free(pm);
}

Test(trk_pagemap, a_full_mask_counts_every_populated_page_written_and_null_none)
{
	uint64_t *pm = malloc(TRK_PM_CHUNK * sizeof(*pm));
	struct haul_vma v = {.start = 100 * P, .end = 106 * P};
	struct trk_rl present = {0}, written = {0}, alone = {0};
	const uint64_t want[] = {100, 2, 103, 2};
	int fd = fake_pagemap(entries, 6, 100);

	cr_assert_not_null(pm);
	cr_assert_eq(trk_pagemap_populated(fd, pm, &v, &present, &written, ~0ULL), 0);
	expect(&present, want, 2);
	expect(&written, want, 2);
	cr_assert_eq(trk_pagemap_populated(fd, pm, &v, &alone, NULL, 0), 0);
	expect(&alone, want, 2);
	trk_rl_release(&present);
	trk_rl_release(&written);
	trk_rl_release(&alone);
	close(fd);
	free(pm);
}

Test(trk_pagemap, a_vma_past_the_end_of_the_pagemap_reads_unpopulated)
{
	uint64_t *pm = malloc(TRK_PM_CHUNK * sizeof(*pm));
	/* more than one chunk, and beyond what the file holds: a vanished mm */
	struct haul_vma v = {.start = 100 * P, .end = (100 + TRK_PM_CHUNK + 3) * P};
	struct trk_rl present = {0};
	const uint64_t want[] = {100, 2, 103, 2};
	int fd = fake_pagemap(entries, 6, 100);

	cr_assert_not_null(pm);
	cr_assert_eq(trk_pagemap_populated(fd, pm, &v, &present, NULL, 0), 0);
	expect(&present, want, 2);
	trk_rl_release(&present);
	close(fd);
	free(pm);
}

Test(trk_ranges, bsearch_finds_the_first_range_ending_after_an_address)
{
	struct trk_rl l = {0};

	cr_assert_eq(trk_rl_bsearch(&l, 0), 0, "an empty list has no range");
	cr_assert_eq(trk_rl_add(&l, 10 * P, 2), 0); /* pages 10, 11 */
	cr_assert_eq(trk_rl_add(&l, 20 * P, 1), 0); /* page 20 */
	cr_assert_eq(trk_rl_bsearch(&l, 0), 0);
	cr_assert_eq(trk_rl_bsearch(&l, 10 * P), 0);
	cr_assert_eq(trk_rl_bsearch(&l, 12 * P - 1), 0, "the last byte of the range");
	cr_assert_eq(trk_rl_bsearch(&l, 12 * P), 1, "the first byte past it");
	cr_assert_eq(trk_rl_bsearch(&l, 20 * P), 1);
	cr_assert_eq(trk_rl_bsearch(&l, 21 * P), 2, "past the last range: n");
	trk_rl_release(&l);
}
