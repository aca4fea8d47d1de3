/*
 * postcopy.c - the source's half of `haul migrate --postcopy` and --hybrid:
 * which pages must reach the target before the resume, which may follow,
 * and serving the rest from the frozen source afterwards.
 *
 * Before the resume the target needs every page of the VMAs that cannot be
 * lazy (file-backed, mlocked: rst_lazy_vma_ok) and the rseq page, which
 * the restorer itself writes (rst_lazy_eager_ranges, DESIGN "Post-copy").
 * Those inside lazy VMAs are "pins": they must be present before the
 * resume, so they are never named stale.  --postcopy sends exactly the
 * eager ranges; --hybrid splits the final round's dirty set: what is eager
 * goes now, the rest is named stale (State.stale) and the target drops its
 * old copy of those pages and fetches them.
 *
 * Naming more pages stale than were written is always correct (they are
 * fetched again from the frozen source, which holds the right contents),
 * so a dirty set with more runs than one State can carry is coalesced
 * within each VMA, never across a pin, until it fits.
 *
 * After the resume, haul_pc_serve() answers the target's page requests
 * from the frozen source with process_vm_readv until the target has every
 * page.  The source must stay frozen and alive until then: it is the only
 * copy of the memory that has not arrived.
 */
#define LOG_PREFIX "migrate: "
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"
#include "restore/lazy_int.h"

struct haul_pc {
	pid_t pid;
	struct haul_layout layout; /* as frozen: the target may fetch only inside it */
	struct ps_range *eager;	   /* sorted, merged */
	size_t neager;
	struct ps_range *pins; /* the eager ranges inside lazy VMAs (the rseq page) */
	size_t npins;
	struct ps_range *stale;
	size_t nstale, cstale;
	uint64_t stale_pages;
};

static int cmp_range(const void *a, const void *b)
{
	const struct ps_range *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static uint64_t rend(const struct ps_range *r)
{
	return r->addr + r->npages * HAUL_PAGE_SIZE;
}

int haul_pc_new(pid_t pid, const struct haul_layout *l, struct haul_pc **out)
{
	struct rst_lazy_range *er = NULL;
	struct haul_pc *pc;
	size_t n = 0, k = 0;
	int ret;

	pc = calloc(1, sizeof(*pc));
	if (!pc)
		return -ENOMEM;
	pc->pid = pid;
	ret = haul_layout_copy(l, &pc->layout);
	if (ret)
		goto fail;
	ret = rst_lazy_eager_ranges(pid, l, &er, &n);
	if (ret) {
		pr_err_r(ret, "cannot tell which pages of pid %d must go before the resume", pid);
		goto fail;
	}
	pc->eager = calloc(n ? n : 1, sizeof(*pc->eager));
	pc->pins = calloc(n ? n : 1, sizeof(*pc->pins));
	if (!pc->eager || !pc->pins) {
		ret = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < n; i++)
		if (er[i].end > er[i].start)
			pc->eager[k++] = (struct ps_range){er[i].start, (er[i].end - er[i].start) /
										HAUL_PAGE_SIZE};
	qsort(pc->eager, k, sizeof(*pc->eager), cmp_range);
	/* merge overlapping or adjacent runs (the rseq page may lie in an eager VMA) */
	pc->neager = 0;
	for (size_t i = 0; i < k; i++) {
		struct ps_range *last = pc->neager ? &pc->eager[pc->neager - 1] : NULL;

		if (last && pc->eager[i].addr <= rend(last)) {
			uint64_t e =
				rend(&pc->eager[i]) > rend(last) ? rend(&pc->eager[i]) : rend(last);

			last->npages = (e - last->addr) / HAUL_PAGE_SIZE;
		} else {
			pc->eager[pc->neager++] = pc->eager[i];
		}
	}
	for (size_t i = 0; i < pc->neager; i++) {
		const struct haul_vma *v = haul_layout_find(&pc->layout, pc->eager[i].addr);

		if (v && rst_lazy_vma_ok(v))
			pc->pins[pc->npins++] = pc->eager[i];
	}
	free(er);
	*out = pc;
	return 0;
fail:
	free(er);
	haul_pc_free(pc);
	return ret;
}

void haul_pc_free(struct haul_pc *pc)
{
	if (!pc)
		return;
	haul_layout_release(&pc->layout);
	free(pc->eager);
	free(pc->pins);
	free(pc->stale);
	free(pc);
}

const struct ps_range *haul_pc_eager(const struct haul_pc *pc, size_t *n, uint64_t *pages)
{
	*pages = 0;
	for (size_t i = 0; i < pc->neager; i++)
		*pages += pc->eager[i].npages;
	*n = pc->neager;
	return pc->eager;
}

static int push(struct ps_range **v, size_t *n, size_t *cap, uint64_t addr, uint64_t end)
{
	if (end <= addr)
		return 0;
	if (*n && rend(&(*v)[*n - 1]) == addr) {
		(*v)[*n - 1].npages += (end - addr) / HAUL_PAGE_SIZE;
		return 0;
	}
	if (*n == *cap) {
		size_t nc = *cap ? *cap * 2 : 64;
		struct ps_range *nv = realloc(*v, nc * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = nc;
	}
	(*v)[(*n)++] = (struct ps_range){addr, (end - addr) / HAUL_PAGE_SIZE};
	return 0;
}

/* Split [a, b), inside one lazy VMA, around the pins: pins to @send, the rest stale. */
static int split_lazy(struct haul_pc *pc, uint64_t a, uint64_t b, struct ps_range **send,
		      size_t *nsend, size_t *csend)
{
	int ret;

	for (size_t i = 0; i < pc->npins && a < b; i++) {
		uint64_t ps = pc->pins[i].addr, pe = rend(&pc->pins[i]);

		if (pe <= a || ps >= b)
			continue;
		if (ps > a) {
			ret = push(&pc->stale, &pc->nstale, &pc->cstale, a, ps);
			if (ret)
				return ret;
		}
		ret = push(send, nsend, csend, ps > a ? ps : a, pe < b ? pe : b);
		if (ret)
			return ret;
		a = pe;
	}
	if (a < b)
		return push(&pc->stale, &pc->nstale, &pc->cstale, a, b);
	return 0;
}

int haul_pc_split(struct haul_pc *pc, const struct ps_range *dirty, size_t n,
		  struct ps_range **send, size_t *nsend)
{
	size_t csend = 0;
	int ret = 0;

	*send = NULL;
	*nsend = 0;
	pc->nstale = 0;
	for (size_t i = 0; i < n && !ret; i++) {
		uint64_t a = dirty[i].addr, b = rend(&dirty[i]);

		while (a < b && !ret) {
			const struct haul_vma *v = haul_layout_find(&pc->layout, a);
			uint64_t e = v && v->end < b ? v->end : b;

			if (v && rst_lazy_vma_ok(v))
				ret = split_lazy(pc, a, e, send, nsend, &csend);
			else
				ret = push(send, nsend, &csend, a, e);
			a = e;
		}
	}
	if (ret) {
		free(*send);
		*send = NULL;
		*nsend = 0;
		return ret;
	}
	pc->stale_pages = 0;
	for (size_t i = 0; i < pc->nstale; i++)
		pc->stale_pages += pc->stale[i].npages;
	return 0;
}

/* Whether merging stale runs @x and @y (x before y) keeps them in one VMA and off the pins. */
static bool mergeable(const struct haul_pc *pc, const struct ps_range *x, const struct ps_range *y,
		      uint64_t gap_pages)
{
	const struct haul_vma *v = haul_layout_find(&pc->layout, x->addr);

	if (y->addr - rend(x) > gap_pages * HAUL_PAGE_SIZE || !v || rend(y) > v->end)
		return false;
	for (size_t i = 0; i < pc->npins; i++)
		if (pc->pins[i].addr < y->addr && rend(&pc->pins[i]) > rend(x))
			return false;
	return true;
}

/* Coalesce the stale runs until they fit one State (more stale pages, fewer runs). */
static void coalesce(struct haul_pc *pc)
{
	/* a bound for a layout of more VMAs than runs allowed: the send then says -E2BIG */
	for (uint64_t gap = 1; pc->nstale > PS_MAX_STALE_RANGES && gap < (1ULL << 40); gap *= 2) {
		size_t k = 0;

		for (size_t i = 0; i < pc->nstale; i++) {
			if (k && mergeable(pc, &pc->stale[k - 1], &pc->stale[i], gap))
				pc->stale[k - 1].npages =
					(rend(&pc->stale[i]) - pc->stale[k - 1].addr) /
					HAUL_PAGE_SIZE;
			else
				pc->stale[k++] = pc->stale[i];
		}
		pc->nstale = k;
	}
	pc->stale_pages = 0;
	for (size_t i = 0; i < pc->nstale; i++)
		pc->stale_pages += pc->stale[i].npages;
}

int haul_pc_state(struct haul_pc *pc, struct ps_client *c, const void *blob, size_t len,
		  uint64_t *stale_pages)
{
	coalesce(pc);
	*stale_pages = pc->stale_pages;
	return ps_client_state_stale(c, blob, len, pc->stale, pc->nstale);
}

int haul_pc_serve(struct haul_pc *pc, struct ps_client *c, int idle_ms, uint64_t *served)
{
	struct rst_lazy_src *src;
	int ret = rst_lazy_src_open(pc->pid, &pc->layout, &src);

	*served = 0;
	if (ret)
		return ret;
	ret = ps_client_serve(c, rst_lazy_src_fetch, src, idle_ms);
	*served = rst_lazy_src_served(src);
	rst_lazy_src_free(src);
	return ret;
}
