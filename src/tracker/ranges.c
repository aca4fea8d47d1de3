/*
 * ranges.c - sorted lists of page ranges and the set operations a round
 * needs (union, difference, intersection).
 *
 * Every scan walks VMAs in address order, so appends are almost always in
 * order and merge with the last range in O(1); a list only needs sorting
 * when several sources were concatenated.  Differences and intersections
 * are linear two-pointer sweeps over sorted, merged inputs, so a round
 * costs O(ranges), never O(pages).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tracker/trk_int.h"

static int rl_grow(struct trk_rl *l)
{
	size_t cap = l->cap ? l->cap * 2 : 64;
	struct trk_range *r = realloc(l->r, cap * sizeof(*r));

	if (!r)
		return -ENOMEM;
	l->r = r;
	l->cap = cap;
	return 0;
}

int trk_rl_add(struct trk_rl *l, uint64_t start, uint64_t npages)
{
	if (!npages)
		return 0;
	if (l->n) {
		struct trk_range *last = &l->r[l->n - 1];
		uint64_t end = last->start + last->npages * TRK_PAGE;

		if (start == end) {
			last->npages += npages;
			l->pages += npages;
			return 0;
		}
		if (start < end)
			l->unsorted = true;
	}
	if (l->n == l->cap && rl_grow(l))
		return -ENOMEM;
	l->r[l->n].start = start;
	l->r[l->n].npages = npages;
	l->n++;
	l->pages += npages;
	return 0;
}

int trk_rl_append(struct trk_rl *dst, const struct trk_rl *src)
{
	for (size_t i = 0; i < src->n; i++) {
		int ret = trk_rl_add(dst, src->r[i].start, src->r[i].npages);

		if (ret)
			return ret;
	}
	return 0;
}

static int cmp_range(const void *a, const void *b)
{
	const struct trk_range *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

int trk_rl_normalize(struct trk_rl *l)
{
	size_t o = 0;

	if (!l->unsorted)
		return 0;
	qsort(l->r, l->n, sizeof(*l->r), cmp_range);
	l->pages = 0;
	for (size_t i = 0; i < l->n; i++) {
		uint64_t s = l->r[i].start, e = s + l->r[i].npages * TRK_PAGE;

		if (o) {
			struct trk_range *last = &l->r[o - 1];
			uint64_t le = last->start + last->npages * TRK_PAGE;

			if (s <= le) {
				if (e > le)
					last->npages = (e - last->start) / TRK_PAGE;
				continue;
			}
		}
		l->r[o++] = l->r[i];
	}
	l->n = o;
	for (size_t i = 0; i < o; i++)
		l->pages += l->r[i].npages;
	l->unsorted = false;
	return 0;
}

int trk_rl_sub(const struct trk_rl *a, const struct trk_rl *b, struct trk_rl *out)
{
	size_t j = 0;

	for (size_t i = 0; i < a->n; i++) {
		uint64_t s = a->r[i].start, e = s + a->r[i].npages * TRK_PAGE;

		while (j < b->n && b->r[j].start + b->r[j].npages * TRK_PAGE <= s)
			j++;
		for (size_t k = j; k < b->n && b->r[k].start < e; k++) {
			uint64_t bs = b->r[k].start, be = bs + b->r[k].npages * TRK_PAGE;
			int ret;

			if (bs > s) {
				ret = trk_rl_add(out, s, (bs - s) / TRK_PAGE);
				if (ret)
					return ret;
			}
			if (be > s)
				s = be;
			if (s >= e)
				break;
		}
		if (s < e) {
			int ret = trk_rl_add(out, s, (e - s) / TRK_PAGE);

			if (ret)
				return ret;
		}
	}
	return 0;
}

int trk_rl_and(const struct trk_rl *a, const struct trk_rl *b, struct trk_rl *out)
{
	size_t i = 0, j = 0;

	while (i < a->n && j < b->n) {
		uint64_t as = a->r[i].start, ae = as + a->r[i].npages * TRK_PAGE;
		uint64_t bs = b->r[j].start, be = bs + b->r[j].npages * TRK_PAGE;
		uint64_t s = as > bs ? as : bs, e = ae < be ? ae : be;

		if (s < e) {
			int ret = trk_rl_add(out, s, (e - s) / TRK_PAGE);

			if (ret)
				return ret;
		}
		if (ae < be)
			i++;
		else
			j++;
	}
	return 0;
}

void trk_rl_release(struct trk_rl *l)
{
	free(l->r);
	memset(l, 0, sizeof(*l));
}

void trk_rl_move(struct trk_rl *l, struct trk_range **r, size_t *n)
{
	*r = l->r;
	*n = l->n;
	memset(l, 0, sizeof(*l));
}

size_t trk_rl_bsearch(const struct trk_rl *l, uint64_t addr)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->r[mid].start + l->r[mid].npages * TRK_PAGE <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}
