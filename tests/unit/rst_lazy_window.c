/*
 * rst_lazy_window.c - the adaptive fault window (src/restore/lazy_window.c):
 * for each sequence of faults, the window each one fetches.  A random
 * writer gets its page alone, a sequential walk doubles up to 64 KiB in
 * the direction it walks, and walks of several threads keep their windows
 * while random faults come between them.  A fault past pages the push
 * filled (present) still continues its walk, and a thread faulting at
 * random cannot push out another thread's walk.
 */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "restore/lazy_int.h"

struct win_step {
	uint64_t page;	       /* the faulting source page */
	uint64_t below, above; /* pages present next to it */
	uint32_t tid;	       /* the faulting thread */
	uint64_t lo;	       /* the window it fetches */
	uint32_t npages;       /* its length */
};

struct win_case {
	const char *name;
	const struct win_step *steps;
	size_t n;
};

/* a fault with no pages present around it, thread unknown */
#define W(p, l, n)                                                                                 \
	{                                                                                          \
		p, 0, 0, 0, l, n                                                                   \
	}
/* a fault with @b pages present below it, @a above, by thread @t */
#define WX(p, b, a, t, l, n)                                                                       \
	{                                                                                          \
		p, b, a, t, l, n                                                                   \
	}

/* Uniform random: every fault fetches its own page only. */
static const struct win_step random_writer[] = {
	W(5000, 5000, 1), W(120, 120, 1),     W(90000, 90000, 1),
	W(7, 7, 1),	  W(40000, 40000, 1), W(262143, 262143, 1),
};

/* A forward walk: 1, 2, 4, 8, 16, then 16 pages at a time (LAZY_FAULT_AROUND_PAGES). */
static const struct win_step forward_walk[] = {
	W(100, 100, 1),	 W(101, 101, 2),  W(103, 103, 4),  W(107, 107, 8),
	W(115, 115, 16), W(131, 131, 16), W(147, 147, 16),
};

/* A backward walk grows below the fault. */
static const struct win_step backward_walk[] = {
	W(1000, 1000, 1), W(999, 998, 2),  W(997, 994, 4),
	W(993, 986, 8),	  W(985, 970, 16), W(969, 954, 16),
};

/* Pages the push brought meanwhile do not fault: a fault within one window past still grows. */
static const struct win_step walk_with_gaps[] = {
	W(200, 200, 1), W(201, 201, 2), W(204, 204, 4), W(210, 210, 8), W(222, 222, 16),
};

/* A fault beyond one window's width past the last is random again: back to one page. */
static const struct win_step walk_then_jump[] = {
	W(300, 300, 1), W(301, 301, 2), W(303, 303, 4),
	W(307, 307, 8), W(323, 323, 1), W(324, 324, 2),
};

/* Two walks interleaved with random faults: each walk keeps growing. */
static const struct win_step two_walks_and_noise[] = {
	W(1000, 1000, 1), W(5000, 5000, 1), W(1001, 1001, 2), W(77777, 77777, 1), W(5001, 5001, 2),
	W(1003, 1003, 4), W(5003, 5003, 4), W(123, 123, 1),   W(1007, 1007, 8),	  W(5007, 5007, 8),
};

/* A walk at page 0 going down cannot fetch below 0. */
static const struct win_step backward_at_zero[] = {
	W(2, 2, 1),
	W(1, 0, 2),
};

/* More random faults than streams push a walk out: it starts again at one page. */
static const struct win_step walk_forgotten[] = {
	W(10, 10, 1),	  W(11, 11, 2),	    W(9000, 9000, 1), W(9100, 9100, 1),
	W(9200, 9200, 1), W(9300, 9300, 1), W(13, 13, 1),
};

/* The push filled pages 107..399 ahead of the walk: its next fault, at 400, still continues it. */
static const struct win_step walk_past_pushed_pages[] = {
	W(100, 100, 1), W(101, 101, 2), W(103, 103, 4), WX(400, 293, 0, 0, 400, 8), W(408, 408, 16),
};

/* Pages between the window and the fault that are not all present: a new stream. */
static const struct win_step walk_past_a_hole[] = {
	W(100, 100, 1),
	W(101, 101, 2),
	W(103, 103, 4),
	WX(400, 292, 0, 0, 400, 1),
};

/* A backward walk past pages present above the fault (501..997) continues too. */
static const struct win_step backward_past_pushed_pages[] = {
	W(1000, 1000, 1),
	W(999, 998, 2),
	WX(500, 0, 497, 0, 497, 4),
};

/* Thread 2 faulting at random replaces its own streams once it holds half: thread 1's walk stays. */
static const struct win_step random_thread_keeps_to_its_streams[] = {
	WX(10, 0, 0, 1, 10, 1),	    WX(11, 0, 0, 1, 11, 2),	WX(9000, 0, 0, 2, 9000, 1),
	WX(9100, 0, 0, 2, 9100, 1), WX(9200, 0, 0, 2, 9200, 1), WX(9300, 0, 0, 2, 9300, 1),
	WX(9400, 0, 0, 2, 9400, 1), WX(13, 0, 0, 1, 13, 4),
};

#define CASE(x)                                                                                    \
	{                                                                                          \
#x, x, sizeof(x) / sizeof(x[0])                                                    \
	}
static const struct win_case cases[] = {
	CASE(random_writer),
	CASE(forward_walk),
	CASE(backward_walk),
	CASE(walk_with_gaps),
	CASE(walk_then_jump),
	CASE(two_walks_and_noise),
	CASE(backward_at_zero),
	CASE(walk_forgotten),
	CASE(walk_past_pushed_pages),
	CASE(walk_past_a_hole),
	CASE(backward_past_pushed_pages),
	CASE(random_thread_keeps_to_its_streams),
};

Test(rst_lazy_window, each_fault_fetches_the_window_its_access_pattern_earned)
{
	cr_assert_eq(LAZY_WIN_STREAMS, 4, "walk_forgotten assumes 4 streams");
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct lz_win w = {0};

		for (size_t k = 0; k < cases[c].n; k++) {
			const struct win_step *s = &cases[c].steps[k];
			struct lz_win_fault f = {s->page, s->below, s->above, s->tid};
			uint64_t lo = ~0ull;
			uint32_t n = 0;

			rst_lz_window_pick(&w, &f, &lo, &n);
			cr_expect(lo == s->lo && n == s->npages,
				  "%s, fault %zu at page %llu: window %llu+%u, expected %llu+%u",
				  cases[c].name, k, (unsigned long long)s->page,
				  (unsigned long long)lo, n, (unsigned long long)s->lo, s->npages);
			cr_expect(s->page >= lo && s->page < lo + n,
				  "%s, fault %zu: the window must hold the faulting page",
				  cases[c].name, k);
		}
	}
}

Test(rst_lazy_window, never_exceeds_the_largest_window)
{
	struct lz_win w = {0};
	uint64_t lo;
	uint32_t n;

	for (uint64_t p = 0; p < 4096; p += n) {
		struct lz_win_fault f = {.page = p, .below = p};

		rst_lz_window_pick(&w, &f, &lo, &n);
		cr_assert(n >= 1 && n <= LAZY_FAULT_AROUND_PAGES, "window of %u pages", n);
		cr_assert_eq(lo, p);
	}
}
