/*
 * tracker.c - the backend-independent half of a round.
 *
 * A round is: check that the mm we attached to is still the process's;
 * read the layout; compare it with the previous one; let the backend scan;
 * combine.  The backend reports what it can see (pages written since its
 * last scan, pages populated now, and mappings it found replaced under it);
 * the core adds what no backend sees reliably:
 *
 *   kept    = ranges mapped now and at the last round by the same mapping
 *             (same anon/file identity, same file offset at each address)
 *   fresh   = memory ranges now \ kept     (new, moved, replaced mappings)
 *   gone    = memory ranges before \ kept  (+ replaced ranges the backend found)
 *   zapped  = (populated before ∩ kept) \ populated now   (MADV_DONTNEED: reads as zero)
 *   dirty   = written ∪ zapped ∪ ((fresh ∪ replaced) ∩ (populated now ∪ maybe))
 *             (∪ shmem object data there, and every alias of a dirty shmem page)
 *
 * So the first round (nothing kept) returns every populated page, and a
 * mapping that moved or was replaced is sent whole whatever the backend
 * thinks: every page dropped (gone) that holds data now is sent again in
 * the same round.  A backend must know the populated set of its fresh and
 * replaced ranges.  Everything is kept as sorted range lists: a round
 * allocates O(ranges), not O(pages).
 *
 * Exit and exec: /proc/PID/pagemap is opened once, at trk_open(), and stays
 * bound to that mm; when the mm is gone a read returns 0 bytes.  Checked
 * before and after the scan, so a round that overlaps an exec fails with
 * -ECHILD instead of returning a mix of two address spaces.
 */
#define LOG_PREFIX "trk: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "common/probe.h"
#include "common/proc.h"
#include "common/sysno.h"
#include "tracker/trk_int.h"

static const struct {
	enum trk_backend b;
	const char *name;
} backend_names[] = {
	{TRK_AUTO, "auto"},
	{TRK_UFFD, "uffd"},
	{TRK_SOFT_DIRTY, "soft-dirty"},
	{TRK_HASH, "hash"},
};

const char *trk_backend_name(enum trk_backend b)
{
	for (size_t i = 0; i < sizeof(backend_names) / sizeof(backend_names[0]); i++)
		if (backend_names[i].b == b)
			return backend_names[i].name;
	return "?";
}

int trk_backend_parse(const char *s, enum trk_backend *out)
{
	for (size_t i = 0; i < sizeof(backend_names) / sizeof(backend_names[0]); i++)
		if (!strcmp(s, backend_names[i].name)) {
			*out = backend_names[i].b;
			return 0;
		}
	return -EINVAL;
}

enum trk_backend trk_backend(const struct trk *t)
{
	return t->ops->id;
}

void trk_test_fail_rescans(struct trk *t, unsigned n)
{
	t->fail_rescans = n;
}

void trk_set_frozen(struct trk *t, bool frozen)
{
	t->frozen = frozen;
}

double trk_stop_ms(const struct trk *t)
{
	return t->stop_ms;
}

double trk_call_ms(const struct trk *t)
{
	return t->call_ms;
}

/* 'Z' (zombie) or 'X' counts as gone: an init may take seconds to reap an orphan. */
static bool pid_running(struct trk *t)
{
	char state;

	if (syscall(SYS_pidfd_send_signal, t->pidfd, 0, NULL, 0) < 0)
		return false;
	if (haul_proc_stat_field(t->pid, 3, &state, NULL))
		return false;
	return state != 'Z' && state != 'X';
}

/* Whether @pid has an address space now (an exiting task has none). */
static bool has_mm(pid_t pid)
{
	char path[64], c;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, &c, 1);
	close(fd);
	return n == 1;
}

int trk_check_mm(struct trk *t)
{
	uint64_t e;

	if (pread(t->pagemap_fd, &e, sizeof(e), 0) == sizeof(e))
		return 0;
	/*
	 * Our mm is gone: the process exec'd a new one, or is exiting (between
	 * exit_mm() and becoming a zombie it still looks alive, but has no mm
	 * at all, so its maps read empty).
	 */
	return pid_running(t) && has_mm(t->pid) ? -ECHILD : -ESRCH;
}

int trk_layout_ranges(const struct haul_layout *l, struct trk_rl *out)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i];
		int ret;

		if (!haul_vma_is_memory(v))
			continue;
		ret = trk_rl_add(out, v->start, haul_vma_pages(v));
		if (ret)
			return ret;
	}
	return 0;
}

/* Same mapping at @addr in both VMAs: anon vs file, shared, and file offset. */
static bool same_backing(const struct haul_vma *a, const struct haul_vma *b, uint64_t addr)
{
	const uint32_t m = HAUL_VMA_SHARED | HAUL_VMA_ANON | HAUL_VMA_FILE | HAUL_VMA_SHMEM;

	if ((a->flags & m) != (b->flags & m) || a->dev != b->dev || a->ino != b->ino)
		return false;
	if (a->flags & HAUL_VMA_FILE)
		return a->pgoff + (addr - a->start) == b->pgoff + (addr - b->start);
	return true;
}

/* Ranges covered now and before by the same mapping. */
static int kept_ranges(const struct haul_layout *prev, const struct haul_layout *cur,
		       struct trk_rl *kept)
{
	size_t j = 0;

	for (size_t i = 0; i < cur->n; i++) {
		const struct haul_vma *c = &cur->v[i];

		if (!haul_vma_is_memory(c))
			continue;
		while (j < prev->n && prev->v[j].end <= c->start)
			j++;
		for (size_t k = j; k < prev->n && prev->v[k].start < c->end; k++) {
			const struct haul_vma *p = &prev->v[k];
			uint64_t s = p->start > c->start ? p->start : c->start;
			uint64_t e = p->end < c->end ? p->end : c->end;
			int ret;

			if (!haul_vma_is_memory(p) || s >= e || !same_backing(c, p, s))
				continue;
			ret = trk_rl_add(kept, s, (e - s) / TRK_PAGE);
			if (ret)
				return ret;
		}
	}
	return 0;
}

static const struct trk_ops *backend_ops(enum trk_backend b)
{
	switch (b) {
	case TRK_UFFD:
		return &trk_uffd_ops;
	case TRK_SOFT_DIRTY:
		return &trk_sd_ops;
	case TRK_HASH:
		return &trk_hash_ops;
	default:
		return NULL;
	}
}

static bool backend_available(enum trk_backend b, const char **why)
{
	switch (b) {
	case TRK_UFFD:
		return probe_uffd_wp_async(why);
	case TRK_SOFT_DIRTY:
		*why = "soft-dirty bits do not track writes on this kernel "
		       "(CONFIG_MEM_SOFT_DIRTY is not set)";
		return probe_soft_dirty();
	case TRK_HASH:
		*why = NULL;
		return true;
	default:
		*why = "unknown backend";
		return false;
	}
}

int trk_open(pid_t pid, const struct trk_opts *opts, struct trk **out)
{
	static const enum trk_backend order[] = {TRK_UFFD, TRK_SOFT_DIRTY, TRK_HASH};
	struct trk_opts dflt = {0};
	char path[64];
	struct trk *t;
	int ret;

	if (!opts)
		opts = &dflt;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->pid = pid;
	t->opts = *opts;
	t->pagemap_fd = -1;
	t->pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (t->pidfd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open pid %d", (int)pid);
		goto err;
	}
	snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	t->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
	if (t->pagemap_fd < 0) {
		ret = errno == ENOENT ? -ESRCH : -errno;
		pr_err_r(ret, "cannot open %s", path);
		goto err;
	}

	ret = -EOPNOTSUPP;
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		enum trk_backend b = order[i];
		const char *why = NULL;

		if (opts->backend != TRK_AUTO && opts->backend != b)
			continue;
		if (!backend_available(b, &why)) {
			if (opts->backend == b)
				pr_err("tracker '%s' is not available here: %s; run 'haul check' "
				       "and pick another with --tracker",
				       trk_backend_name(b), why);
			else
				pr_debug("tracker '%s' unavailable: %s", trk_backend_name(b), why);
			continue;
		}
		t->ops = backend_ops(b);
		ret = t->ops->open(t);
		if (!ret)
			break;
		t->ops = NULL;
		/* gone: no other backend will do better */
		if (ret == -ESRCH || opts->backend != TRK_AUTO)
			goto err;
		/* EPERM here is "traced by someone else": hashing needs no ptrace */
		pr_warn("tracker '%s' failed on pid %d (%s); trying the next one",
			trk_backend_name(b), (int)pid, strerror(-ret));
	}
	if (!t->ops)
		goto err;
	pr_debug("tracking pid %d with '%s'", (int)pid, trk_backend_name(t->ops->id));
	*out = t;
	return 0;
err:
	trk_free(t);
	return ret;
}

void trk_free(struct trk *t)
{
	if (!t)
		return;
	if (t->ops)
		t->ops->close(t);
	if (t->pagemap_fd >= 0)
		close(t->pagemap_fd);
	if (t->pidfd >= 0)
		close(t->pidfd);
	haul_layout_release(&t->prev);
	trk_rl_release(&t->prev_present);
	trk_rl_release(&t->held);
	trk_rl_release(&t->known);
	free(t);
}

void trk_round_release(struct trk_round *r)
{
	if (!r)
		return;
	free(r->dirty);
	free(r->gone);
	haul_layout_release(&r->layout);
	memset(r, 0, sizeof(*r));
}

/*
 * From scan @s of layout @cur: what the round reports.  @dirty: written,
 * zapped (present before in a kept range, counted now, not present now),
 * fresh and replaced ranges present now (trk_rl_and appends to @tmp: both
 * land in it), and shared memory's aliases and unmapped data; @gone (holding
 * the vanished ranges): plus the replaced ones.  0 or -ENOMEM.
 */
static int round_sets(struct trk *t, struct trk_scan *s, const struct haul_layout *cur,
		      const struct trk_rl *kept, const struct trk_rl *fresh, struct trk_rl *dirty,
		      struct trk_rl *gone)
{
	struct trk_rl tmp = {0}, zapped = {0}, whole = {0};
	int ret;

	ret = trk_rl_normalize(&s->written);
	if (!ret)
		ret = trk_rl_normalize(&s->present);
	if (!ret)
		ret = trk_rl_normalize(&s->replaced);
	/* zapped = (present before ∩ kept ∩ counted now) \ present now */
	if (!ret && s->partial_present)
		ret = trk_rl_normalize(&s->known);
	if (!ret)
		ret = trk_rl_and(&t->prev_present, kept, &tmp);
	if (!ret && s->partial_present) {
		struct trk_rl k2 = {0};

		ret = trk_rl_and(&tmp, &s->known, &k2);
		trk_rl_release(&tmp);
		tmp = k2;
	}
	if (!ret)
		ret = trk_rl_sub(&tmp, &s->present, &zapped);
	trk_rl_release(&tmp);
	/* whole = fresh ∪ replaced: what gone drops comes back, ∩ (present ∪ maybe) */
	if (!ret)
		ret = trk_rl_append(&whole, fresh);
	if (!ret)
		ret = trk_rl_append(&whole, &s->replaced);
	if (!ret)
		ret = trk_rl_normalize(&whole);
	if (!ret)
		ret = trk_rl_normalize(&s->maybe);
	if (!ret)
		ret = trk_rl_and(&whole, &s->present, &tmp);
	if (!ret)
		ret = trk_rl_and(&whole, &s->maybe, &tmp);
	if (!ret)
		ret = trk_rl_append(dirty, &s->written);
	if (!ret)
		ret = trk_rl_append(dirty, &zapped);
	if (!ret)
		ret = trk_rl_append(dirty, &tmp);
	if (!ret)
		ret = trk_rl_normalize(dirty);
	/* a new or replaced shmem VMA: its object's data, also what the page tables lack */
	if (!ret)
		ret = trk_shmem_data(t->pid, cur, &whole, dirty);
	/* a store through one mapping of a shmem object dirties all of them */
	if (!ret)
		ret = trk_shmem_aliases(cur, dirty);
	if (!ret)
		ret = trk_rl_append(gone, &s->replaced);
	if (!ret)
		ret = trk_rl_normalize(gone);
	trk_rl_release(&tmp);
	trk_rl_release(&zapped);
	trk_rl_release(&whole);
	return ret;
}

int trk_round(struct trk *t, struct trk_round *out)
{
	struct trk_rl cur_mem = {0}, prev_mem = {0}, kept = {0}, fresh = {0}, gone = {0};
	struct trk_rl dirty = {0};
	struct trk_scan s;
	struct haul_layout cur = {0};
	double t0 = trk_now_ms();
	bool scanned = false;
	int ret;

	t->call_ms = 0; /* trk_call_ms() is per round */
	memset(out, 0, sizeof(*out));
	memset(&s, 0, sizeof(s));
	ret = trk_check_mm(t);
	if (ret)
		goto out;
	ret = haul_layout_read(t->pid, false, &cur);
	if (ret)
		goto out;
	haul_layout_identify(t->pid, &cur, &t->prev);
	ret = trk_layout_ranges(&cur, &cur_mem);
	if (!ret)
		ret = trk_layout_ranges(&t->prev, &prev_mem);
	if (!ret)
		ret = kept_ranges(&t->prev, &cur, &kept);
	if (!ret)
		ret = trk_rl_sub(&cur_mem, &kept, &fresh);
	/* what the caller holds since the last scan counts as populated before */
	if (!ret && t->held.n) {
		ret = trk_rl_append(&t->prev_present, &t->held);
		if (!ret)
			ret = trk_rl_normalize(&t->prev_present);
		trk_rl_release(&t->held);
	}
	if (!ret)
		ret = trk_rl_sub(&prev_mem, &kept, &gone);
	if (ret)
		goto out;

	scanned = true;
	ret = t->ops->scan(t, &cur, &fresh, &s);
	if (ret)
		goto out;
	/* an exec during the scan leaves us half in each mm: report it, not a mix */
	ret = trk_check_mm(t);
	if (ret)
		goto out;

	ret = round_sets(t, &s, &cur, &kept, &fresh, &dirty, &gone);
	if (ret)
		goto out;

	t->seq++;
	out->seq = t->seq;
	out->dirty_pages = dirty.pages;
	trk_rl_move(&dirty, &out->dirty, &out->ndirty);
	trk_rl_move(&gone, &out->gone, &out->ngone);
	out->present_pages = s.partial_present ? 0 : s.present.pages;
	out->layout_changed = t->seq > 1 && !haul_layout_same(&t->prev, &cur);
	ret = haul_layout_copy(&cur, &out->layout);
	if (ret) {
		trk_round_release(out);
		goto out;
	}
	haul_layout_release(&t->prev);
	t->prev = cur;
	memset(&cur, 0, sizeof(cur));
	trk_rl_release(&t->prev_present);
	t->prev_present = s.present;
	memset(&s.present, 0, sizeof(s.present));
	/* where the populated set is tracked: only there can trk_read() help */
	trk_rl_release(&t->known);
	if (s.partial_present) {
		t->known = s.known;
		memset(&s.known, 0, sizeof(s.known));
	} else {
		t->known = cur_mem;
		memset(&cur_mem, 0, sizeof(cur_mem));
	}
	out->scan_ms = trk_now_ms() - t0;
	if (t->opts.verbose)
		pr_info("pid %d round %llu: %llu dirty pages in %zu ranges, %llu populated, %.2f ms",
			(int)t->pid, (unsigned long long)out->seq,
			(unsigned long long)out->dirty_pages, out->ndirty,
			(unsigned long long)out->present_pages, out->scan_ms);
out:
	if (ret == -ESRCH)
		pr_debug("pid %d exited", (int)t->pid);
	else if (ret == -ECHILD)
		pr_warn("pid %d exec'd a new program: its memory must be tracked from scratch",
			(int)t->pid);
	else if (ret)
		pr_err_r(ret, "tracking round %llu of pid %d failed",
			 (unsigned long long)t->seq + 1, (int)t->pid);
	/* what the scan protected is reported nowhere: the backend must not trust it */
	if (ret && scanned && t->ops->round_failed)
		t->ops->round_failed(t, &cur);
	haul_layout_release(&cur);
	trk_rl_release(&cur_mem);
	trk_rl_release(&prev_mem);
	trk_rl_release(&kept);
	trk_rl_release(&fresh);
	trk_rl_release(&gone);
	trk_rl_release(&dirty);
	trk_rl_release(&s.written);
	trk_rl_release(&s.present);
	trk_rl_release(&s.replaced);
	trk_rl_release(&s.maybe);
	trk_rl_release(&s.known);
	return ret;
}
