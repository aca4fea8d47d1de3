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
 * --postcopy sends the eager pages before the freeze too (haul_pc_presend,
 * while the process runs: file-backed VMAs can be large, and a link of
 * 1 Gbit/s carries only ~120 KiB per ms).  Each page sent then is hashed
 * (XXH3, from the very bytes sent: haul_pc_record).  At the freeze
 * (haul_pc_freeze) the eager pages of the stopped process are read and
 * compared: only the ones that changed, or were not sent, go in the frozen
 * round; pages sent before the freeze that now lie in lazy VMAs (the VMA
 * was replaced) are named stale, so the target drops them and fetches the
 * current contents.  The frozen round then costs the eager set's read
 * (~0.2 ms for the 2 MiB of a typical binary and libc), not its transfer.
 *
 * After the resume, haul_pc_serve() answers the target's page requests
 * from the frozen source with process_vm_readv until the target has every
 * page.  The source must stay frozen and alive until then: it is the only
 * copy of the memory that has not arrived.
 */
#define LOG_PREFIX "migrate: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"
#include "restore/lazy.h"
#include "tracker/tracker.h"

/* A page sent before the freeze, and the hash of what was sent. */
struct pc_sent {
	uint64_t addr;
	uint64_t hash;
};

struct haul_pc {
	pid_t pid;
	struct haul_layout layout; /* as frozen: the target may fetch only inside it */
	struct ps_range *eager;	   /* sorted, merged */
	size_t neager;
	struct ps_range *pins; /* the eager ranges inside lazy VMAs (the rseq page) */
	size_t npins;
	struct ps_range *stale;
	size_t nstale, cstale;
	/* --postcopy: what went before the freeze (haul_pc_presend, haul_pc_record) */
	bool recording;
	struct haul_layout pre; /* the layout sent before the freeze */
	struct pc_sent *sent;
	size_t nsent, csent;
	struct ps_range *presend; /* eager ∪ hot (pc_hot.c), what haul_pc_presend sends */
	size_t npresend;
	uint8_t *buf;	     /* haul_pc_freeze's reads */
	struct trk *hot_trk; /* pc_hot.c's tracker, detached in haul_pc_free */
	uint64_t zero[HAUL_MIG_READ_PAGES / 64];
};

/* The hash a page is known by: all-zero pages (as trk_read_pages reports them) hash as 0. */
static uint64_t page_hash(const uint8_t *page, bool zero)
{
	uint64_t h;

	if (zero)
		return 0;
	h = XXH3_64bits(page, HAUL_PAGE_SIZE);
	return h ? h : 1;
}

static int cmp_range(const void *a, const void *b)
{
	const struct ps_range *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static uint64_t rend(const struct ps_range *r)
{
	return r->addr + r->npages * HAUL_PAGE_SIZE;
}

int haul_pc_new(pid_t pid, struct haul_pc **out)
{
	struct haul_pc *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return -ENOMEM;
	pc->pid = pid;
	*out = pc;
	return 0;
}

/*
 * The eager ranges of @l (sorted, merged) and the pins among them: with
 * @stopped the rseq page too (PTRACE_GET_RSEQ_CONFIGURATION needs the
 * process seized and stopped); before the freeze only the VMAs.
 */
static int find_eager(struct haul_pc *pc, const struct haul_layout *l, bool stopped)
{
	struct rst_lazy_range *er = NULL;
	size_t n = 0, k = 0;
	int ret;

	haul_layout_release(&pc->layout);
	free(pc->eager);
	free(pc->pins);
	pc->eager = pc->pins = NULL;
	pc->neager = pc->npins = 0;
	ret = haul_layout_copy(l, &pc->layout);
	if (ret)
		return ret;
	ret = rst_lazy_eager_ranges(stopped ? pc->pid : 0, l, &er, &n);
	if (ret) {
		pr_err_r(ret, "cannot tell which pages of pid %d must go before the resume",
			 pc->pid);
		return ret;
	}
	pc->eager = calloc(n ? n : 1, sizeof(*pc->eager));
	pc->pins = calloc(n ? n : 1, sizeof(*pc->pins));
	if (!pc->eager || !pc->pins) {
		free(er);
		return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		if (er[i].end > er[i].start)
			pc->eager[k++] = (struct ps_range){er[i].start, (er[i].end - er[i].start) /
										HAUL_PAGE_SIZE};
	free(er);
	qsort(pc->eager, k, sizeof(*pc->eager), cmp_range);
	/* merge overlapping or adjacent runs (the rseq page may lie in an eager VMA) */
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
	return 0;
}

void haul_pc_free(struct haul_pc *pc)
{
	if (!pc)
		return;
	haul_layout_release(&pc->layout);
	haul_layout_release(&pc->pre);
	free(pc->eager);
	free(pc->pins);
	free(pc->stale);
	free(pc->sent);
	free(pc->presend);
	free(pc->buf);
	/* after the switchover (source gone: nothing to lift) or frozen (a rollback) */
	trk_free(pc->hot_trk);
	free(pc);
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

/*
 * The eager ranges and the hot set (pc_hot.c) as one sorted, merged list:
 * pages the process is likely to write first after the resume go with the
 * eager ones, before the freeze, and count as arrived on the target unless
 * the freeze finds them written since (then they are named stale).
 */
static int add_hot(struct haul_pc *pc)
{
	struct ps_range *hot = NULL, *all;
	size_t nhot = 0, cap = 0, n = 0;
	uint64_t pages = 0;
	char why[160] = "";
	int ret;

	trk_free(pc->hot_trk); /* one tracker at a time */
	ret = haul_pc_hot_set(pc->pid, &pc->hot_trk, &hot, &nhot, &pages, why, sizeof(why));
	if (ret)
		return ret;
	if (!nhot)
		pr_debug("no prefetch for pid %d: %s", pc->pid, why);
	else
		pr_info("pid %d: sending its recent working set (%llu pages) before the freeze",
			pc->pid, (unsigned long long)pages);
	all = malloc((pc->neager + nhot ? pc->neager + nhot : 1) * sizeof(*all));
	if (!all) {
		free(hot);
		return -ENOMEM;
	}
	memcpy(all, pc->eager, pc->neager * sizeof(*all));
	if (nhot)
		memcpy(all + pc->neager, hot, nhot * sizeof(*all));
	free(hot);
	qsort(all, pc->neager + nhot, sizeof(*all), cmp_range);
	free(pc->presend);
	pc->presend = NULL;
	pc->npresend = 0;
	for (size_t i = 0; i < pc->neager + nhot && !ret; i++) {
		uint64_t a = all[i].addr, e = rend(&all[i]);

		if (n && rend(&pc->presend[n - 1]) > a)
			a = rend(&pc->presend[n - 1]); /* overlaps the last: only what is beyond */
		ret = push(&pc->presend, &n, &cap, a, e);
	}
	free(all);
	pc->npresend = n;
	return ret;
}

/*
 * haul_pc_freeze's read buffer, every page of it written once.  Fresh
 * memory's first write costs ~10 us a page on the 2-core VM (4 MiB:
 * 10.4-10.8 ms, the next pass 0.1 ms): in the stop that was 8 of a
 * post-copy's 21 ms of downtime.  A volatile store per page: malloc and a
 * memset of zeros may be made a calloc, which touches nothing.
 */
static int buf_ready(struct haul_pc *pc)
{
	if (pc->buf)
		return 0;
	pc->buf = malloc(HAUL_MIG_READ_PAGES * HAUL_PAGE_SIZE);
	if (!pc->buf)
		return -ENOMEM;
	for (size_t i = 0; i < HAUL_MIG_READ_PAGES; i++)
		((volatile uint8_t *)pc->buf)[i * HAUL_PAGE_SIZE] = 0;
	return 0;
}

int haul_pc_presend(struct haul_pc *pc, const struct haul_layout *l, const struct ps_range **send,
		    size_t *n, uint64_t *pages)
{
	int ret = find_eager(pc, l, false);

	if (!ret)
		ret = buf_ready(pc); /* here, while the process runs, not in the stop */
	if (ret)
		return ret;
	haul_layout_release(&pc->pre);
	ret = haul_layout_copy(l, &pc->pre);
	if (ret)
		return ret;
	ret = add_hot(pc);
	if (ret)
		return ret;
	pc->recording = true;
	pc->nsent = 0;
	*pages = 0;
	for (size_t i = 0; i < pc->npresend; i++)
		*pages += pc->presend[i].npages;
	*send = pc->presend;
	*n = pc->npresend;
	return 0;
}

int haul_pc_record(struct haul_pc *pc, const struct trk_range *r, size_t n, const uint8_t *buf,
		   const uint64_t *zero)
{
	size_t off = 0;

	if (!pc || !pc->recording)
		return 0;
	for (size_t i = 0; i < n; i++) {
		for (uint64_t p = 0; p < r[i].npages; p++, off++) {
			if (pc->nsent == pc->csent) {
				size_t nc = pc->csent ? pc->csent * 2 : 1024;
				struct pc_sent *ns = realloc(pc->sent, nc * sizeof(*ns));

				if (!ns)
					return -ENOMEM;
				pc->sent = ns;
				pc->csent = nc;
			}
			pc->sent[pc->nsent++] = (struct pc_sent){
				r[i].start + p * HAUL_PAGE_SIZE,
				page_hash(buf + off * HAUL_PAGE_SIZE,
					  zero[off / 64] & (1ULL << (off % 64))),
			};
		}
	}
	return 0;
}

static int cmp_sent(const void *a, const void *b)
{
	const struct pc_sent *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

/* Whether the page at @addr lies in a pin (the pins are few: the rseq page). */
static bool pinned(const struct haul_pc *pc, uint64_t addr)
{
	for (size_t i = 0; i < pc->npins; i++)
		if (addr >= pc->pins[i].addr && addr < rend(&pc->pins[i]))
			return true;
	return false;
}

/*
 * The eager pages of the stopped process that the target lacks or holds
 * older: read each eager run and compare every page with what
 * haul_pc_presend sent (pc->sent, sorted).
 */
static int eager_changes(struct haul_pc *pc, struct ps_range **send, size_t *nsend)
{
	size_t csend = 0, s = 0;
	int ret;

	ret = buf_ready(pc);
	if (ret)
		return ret;
	for (size_t i = 0; i < pc->neager; i++) {
		for (uint64_t a = pc->eager[i].addr, e = rend(&pc->eager[i]); a < e;) {
			const struct haul_vma *v = haul_layout_find(&pc->layout, a);
			uint64_t np = (e - a) / HAUL_PAGE_SIZE;
			struct trk_range r;

			if (np > HAUL_MIG_READ_PAGES)
				np = HAUL_MIG_READ_PAGES;
			/* a VMA at a time: a library's unwritten pages come from its file */
			if (v && v->end < a + np * HAUL_PAGE_SIZE)
				np = (v->end - a) / HAUL_PAGE_SIZE;
			r = (struct trk_range){.start = a, .npages = np};
			ret = v ? trk_read_file_pages(pc->pid, v, &r, pc->buf, pc->zero)
				: trk_read_pages(pc->pid, &r, 1, pc->buf, pc->zero);
			if (ret) {
				pr_err_r(ret, "cannot read the pages of pid %d at %#llx", pc->pid,
					 (unsigned long long)a);
				return ret;
			}
			for (uint64_t p = 0; p < np; p++, a += HAUL_PAGE_SIZE) {
				bool same;

				while (s < pc->nsent && pc->sent[s].addr < a)
					s++;
				same = s < pc->nsent && pc->sent[s].addr == a &&
				       pc->sent[s].hash ==
					       page_hash(pc->buf + p * HAUL_PAGE_SIZE,
							 pc->zero[p / 64] & (1ULL << (p % 64)));
				if (!same) {
					ret = push(send, nsend, &csend, a, a + HAUL_PAGE_SIZE);
					if (ret)
						return ret;
				}
			}
		}
	}
	return 0;
}

/*
 * Pages sent before the freeze that lie in lazy VMAs now: the hot set
 * (pc_hot.c), and eager pages whose VMA was replaced by a lazy one.  The
 * target holds what was sent; each page whose contents changed since (read
 * now, compared by hash) is named stale, so the target drops it and fetches
 * it; an unchanged one counts as arrived.  Runs of consecutive pages are
 * read together, at most HAUL_MIG_READ_PAGES at a time.
 */
static int lazy_changes(struct haul_pc *pc, const struct haul_layout *l)
{
	size_t i = 0;
	int ret;

	pc->nstale = 0;
	while (i < pc->nsent) {
		const struct haul_vma *v = haul_layout_find(l, pc->sent[i].addr);
		struct trk_range r = {.start = pc->sent[i].addr, .npages = 1};
		size_t j = i + 1;

		if (!v || !rst_lazy_vma_ok(v) || pinned(pc, pc->sent[i].addr)) {
			i++;
			continue;
		}
		/* the run of consecutive sent pages from i inside this VMA */
		while (j < pc->nsent && r.npages < HAUL_MIG_READ_PAGES &&
		       pc->sent[j].addr == r.start + r.npages * HAUL_PAGE_SIZE &&
		       pc->sent[j].addr < v->end && !pinned(pc, pc->sent[j].addr)) {
			r.npages++;
			j++;
		}
		ret = trk_read_pages(pc->pid, &r, 1, pc->buf, pc->zero);
		if (ret) {
			pr_err_r(ret, "cannot read the pages of pid %d at %#llx", pc->pid,
				 (unsigned long long)r.start);
			return ret;
		}
		for (uint64_t p = 0; p < r.npages; p++) {
			const struct pc_sent *x = &pc->sent[i + p];

			if (x->hash == page_hash(pc->buf + p * HAUL_PAGE_SIZE,
						 pc->zero[p / 64] & (1ULL << (p % 64))))
				continue;
			ret = push(&pc->stale, &pc->nstale, &pc->cstale, x->addr,
				   x->addr + HAUL_PAGE_SIZE);
			if (ret)
				return ret;
		}
		i = j;
	}
	return 0;
}

int haul_pc_freeze(struct haul_pc *pc, const struct haul_layout *l, struct ps_range **send,
		   size_t *nsend, bool *layout_changed)
{
	int ret;

	pc->recording = false;
	ret = find_eager(pc, l, true);
	if (ret || !send)
		return ret;
	*send = NULL;
	*nsend = 0;
	*layout_changed = !haul_layout_same(&pc->pre, l); /* no presend: empty */
	qsort(pc->sent, pc->nsent, sizeof(*pc->sent), cmp_sent);
	ret = eager_changes(pc, send, nsend);
	if (ret)
		goto fail;
	ret = lazy_changes(pc, l);
	if (ret)
		goto fail;
	return 0;
fail:
	free(*send);
	*send = NULL;
	*nsend = 0;
	return ret;
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
}

static uint64_t stale_sum(const struct haul_pc *pc)
{
	uint64_t n = 0;

	for (size_t i = 0; i < pc->nstale; i++)
		n += pc->stale[i].npages;
	return n;
}

int haul_pc_state(struct haul_pc *pc, struct ps_client *c, const void *blob, size_t len,
		  bool complete, uint64_t *stale_pages)
{
	uint64_t written = stale_sum(pc);
	size_t runs = pc->nstale;

	coalesce(pc);
	*stale_pages = stale_sum(pc);
	/* the target zaps and fetches each one: say so when that grew much */
	if (*stale_pages > 2 * written)
		pr_info("pid %d: %llu stale pages in %zu runs are named as %llu (one State "
			"carries %d runs): the target fetches them all after the resume",
			pc->pid, (unsigned long long)written, runs,
			(unsigned long long)*stale_pages, PS_MAX_STALE_RANGES);
	return ps_client_state_stale(c, blob, len, pc->stale, pc->nstale, complete);
}

/*
 * @fault "reset:serve:N" (HAUL_FAULT, tests): break every connection once,
 * after N requests served, as a reset would.  0 when not asked for.
 */
static uint64_t fault_reset_after(const char *f)
{
	unsigned long long n;

	if (!f || sscanf(f, "reset:serve:%llu", &n) != 1)
		return 0;
	return n ? n : 1;
}

static bool source_alive(pid_t pid)
{
	char st = haul_proc_state(pid);

	return st && st != 'Z' && st != 'X';
}

int haul_pc_serve(struct haul_pc *pc, struct ps_client *c, int idle_ms, const char *fault,
		  uint64_t *served)
{
	struct rst_lazy_src *src;
	int ret = rst_lazy_src_open(pc->pid, &pc->layout, &src);

	*served = 0;
	if (ret)
		return ret;
	ps_client_fault_break(c, fault_reset_after(fault));
	for (;;) {
		double t0;

		ret = ps_client_serve(c, rst_lazy_src_fetch, src, idle_ms);
		/*
		 * A broken connection, with the source still there to serve:
		 * the target waits for us (its stall timeout), so rejoin, for
		 * at most our own reply timeout.  A dead source cannot serve:
		 * no reconnect, the target has killed or will kill its copy.
		 */
		if (!ret || !ps_client_broken(c) || !source_alive(pc->pid))
			break;
		pr_warn("post-copy of pid %d: connection to %s lost (%s); reconnecting", pc->pid,
			ps_client_server(c), strerror(-ret));
		t0 = haul_now_ms();
		ret = ps_client_reconnect(c, idle_ms);
		if (ret)
			break;
		pr_info("post-copy of pid %d: connection to %s lost, reconnected after %.0f ms",
			pc->pid, ps_client_server(c), haul_now_ms() - t0);
	}
	ps_client_fault_break(c, 0);
	*served = rst_lazy_src_served(src);
	rst_lazy_src_free(src);
	return ret;
}
