/*
 * trk_drive.h - drive tests/progs/trk_target.c and compare what it wrote
 * with what the tracker reported.  Plain C (no Criterion): the soft-dirty
 * test inside qemu (tests/qemu/trk_sd_guest.c) uses it too.
 */
#ifndef HAUL_TESTS_TRK_DRIVE_H
#define HAUL_TESTS_TRK_DRIVE_H

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../progs/trk_proto.h"
#include "tracker/tracker.h"

#define TD_PG 4096ULL

struct td_region {
	uint64_t kind, addr, npages;
};

struct td {
	pid_t pid;
	int to, from; /* pipes to and from the target */
	struct td_region reg[TT_NKINDS + 8];
	int nreg;
};

static inline int td_io(int fd, void *buf, size_t len, bool wr)
{
	char *p = buf;

	while (len) {
		ssize_t n = wr ? write(fd, p, len) : read(fd, p, len);

		if (n <= 0)
			return n < 0 ? -errno : -EPIPE;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* One command; returns the target's status, or -errno when the pipe broke. */
static inline int64_t td_cmd(struct td *d, uint32_t op, uint64_t arg, const uint64_t *v, uint32_t n,
			     uint64_t *out, uint64_t maxout)
{
	struct tt_req q = {op, n, arg};
	struct tt_reply r;
	int ret;

	ret = td_io(d->to, &q, sizeof(q), true);
	if (!ret && n)
		ret = td_io(d->to, (void *)v, n * 8ULL, true);
	if (!ret)
		ret = td_io(d->from, &r, sizeof(r), false);
	if (ret)
		return ret;
	for (uint64_t i = 0; i < r.n; i++) {
		uint64_t x;

		ret = td_io(d->from, &x, 8, false);
		if (ret)
			return ret;
		if (i < maxout)
			out[i] = x;
	}
	return r.status;
}

static inline int td_info(struct td *d)
{
	uint64_t out[1 + (TT_NKINDS + 8) * 3 + 3] = {0};
	int64_t st = td_cmd(d, TT_INFO, 0, NULL, 0, out, sizeof(out) / 8);

	if (st)
		return (int)st;
	d->pid = (pid_t)out[0];
	d->nreg = 0;
	for (int i = 0; i < TT_NKINDS + 8 && out[1 + i * 3 + 2]; i++) {
		d->reg[i].kind = out[1 + i * 3];
		d->reg[i].addr = out[1 + i * 3 + 1];
		d->reg[i].npages = out[1 + i * 3 + 2];
		d->nreg++;
	}
	return 0;
}

/* Start @bin -d (not our child: it double-forks) and learn its regions. */
static inline int td_start(struct td *d, const char *bin)
{
	int to[2], from[2], st;
	pid_t c;

	memset(d, 0, sizeof(*d));
	if (pipe(to) || pipe(from))
		return -errno;
	c = fork();
	if (c < 0)
		return -errno;
	if (c == 0) {
		dup2(to[0], 0);
		dup2(from[1], 1);
		close(to[1]);
		close(from[0]);
		execl(bin, "trk_target", "-d", (char *)NULL);
		_exit(127);
	}
	close(to[0]);
	close(from[1]);
	d->to = to[1];
	d->from = from[0];
	waitpid(c, &st, 0);
	return td_info(d);
}

static inline void td_stop(struct td *d)
{
	if (d->pid > 0)
		kill(d->pid, SIGKILL);
	if (d->to > 0)
		close(d->to);
	if (d->from > 0)
		close(d->from);
	d->pid = 0;
	d->to = d->from = -1;
}

/* Whether the round's dirty ranges hold @addr (binary search). */
static inline bool td_dirty_has(const struct trk_round *r, uint64_t addr)
{
	size_t lo = 0, hi = r->ndirty;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (r->dirty[mid].start + r->dirty[mid].npages * TD_PG <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < r->ndirty && r->dirty[lo].start <= addr;
}

static inline bool td_gone_has(const struct trk_round *r, uint64_t addr)
{
	for (size_t i = 0; i < r->ngone; i++)
		if (addr >= r->gone[i].start && addr < r->gone[i].start + r->gone[i].npages * TD_PG)
			return true;
	return false;
}

/* Pages of the test regions reported dirty though not in @set (sorted). */
static inline uint64_t td_false_positives(const struct td *d, const struct trk_round *r,
					  const uint64_t *set, size_t n)
{
	uint64_t fp = 0;

	for (int k = 0; k < d->nreg; k++)
		for (uint64_t i = 0; i < d->reg[k].npages; i++) {
			uint64_t a = d->reg[k].addr + i * TD_PG;
			size_t lo = 0, hi = n;

			if (!td_dirty_has(r, a))
				continue;
			while (lo < hi) {
				size_t mid = (lo + hi) / 2;

				if (set[mid] < a)
					lo = mid + 1;
				else
					hi = mid;
			}
			if (lo == n || set[lo] != a)
				fp++;
		}
	return fp;
}

static inline int td_cmp64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* A random set of about @permille of every region's pages, sorted. */
static inline size_t td_random_set(const struct td *d, unsigned int permille, unsigned int *seed,
				   uint64_t **out)
{
	size_t n = 0, cap = 0;
	uint64_t *v = NULL;

	for (int k = 0; k < d->nreg; k++)
		cap += d->reg[k].npages;
	v = malloc((cap ? cap : 1) * sizeof(*v));
	for (int k = 0; k < d->nreg; k++)
		for (uint64_t i = 0; i < d->reg[k].npages; i++)
			if ((unsigned int)rand_r(seed) % 1000 < permille)
				v[n++] = d->reg[k].addr + i * TD_PG;
	qsort(v, n, sizeof(*v), td_cmp64);
	*out = v;
	return n;
}

/* Pages of @set missing from the round. */
static inline size_t td_missed(const struct trk_round *r, const uint64_t *set, size_t n)
{
	size_t missed = 0;

	for (size_t i = 0; i < n; i++)
		if (!td_dirty_has(r, set[i])) {
			if (missed < 5)
				fprintf(stderr, "trk test: page %#llx not reported\n",
					(unsigned long long)set[i]);
			missed++;
		}
	return missed;
}

/* Whether the target holds a userfaultfd (it must not, ever). */
static inline bool td_has_uffd(pid_t pid)
{
	char path[64], link[128];
	bool found = false;

	for (int fd = 0; fd < 1024 && !found; fd++) {
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
		n = readlink(path, link, sizeof(link) - 1);
		if (n <= 0)
			continue;
		link[n] = '\0';
		found = strstr(link, "userfaultfd") != NULL;
	}
	return found;
}

struct td_stats {
	uint64_t rounds, written, missed, false_pos, dirty;
	uint64_t shared_unseen; /* shared pages written by another process, not reported */
	double max_round_ms, stop_ms;
};

#define TD_FAIL(...)                                                                               \
	do {                                                                                       \
		snprintf(err, errlen, __VA_ARGS__);                                                \
		ret = -1;                                                                          \
		goto out;                                                                          \
	} while (0)

static inline int td_round(struct trk *t, struct trk_round *r, struct td_stats *s)
{
	int ret = trk_round(t, r);

	if (!ret) {
		s->rounds++;
		s->dirty += r->dirty_pages;
		if (r->scan_ms > s->max_round_ms)
			s->max_round_ms = r->scan_ms;
	}
	return ret;
}

static inline int td_region_index(const struct td *d, uint64_t kind)
{
	for (int i = 0; i < d->nreg; i++)
		if (d->reg[i].kind == kind)
			return i;
	return -1;
}

/* Write @set, run a round, and count what it missed. */
static inline int td_write_round(struct td *d, struct trk *t, const uint64_t *set, size_t n,
				 struct td_stats *s, size_t *missed)
{
	struct trk_round r;
	int64_t st = td_cmd(d, TT_WRITE, 0, set, (uint32_t)n, NULL, 0);
	int ret;

	if (st)
		return st < 0 ? (int)st : -EINVAL;
	ret = td_round(t, &r, s);
	if (ret)
		return ret;
	*missed = td_missed(&r, set, n);
	s->written += n;
	s->missed += *missed;
	s->false_pos += td_false_positives(d, &r, set, n);
	trk_round_release(&r);
	return 0;
}

/*
 * The whole accuracy scenario for one backend: random writes over every
 * region kind, mremap, a new mapping, a mapping replaced at the same
 * address, MADV_DONTNEED, fork; the target's own checksums; and that it runs
 * on untouched after trk_free().  Returns 0, or -1 with @err set.
 */
static inline int td_scenario(struct td *d, enum trk_backend b, bool populated, struct td_stats *s,
			      char *err, size_t errlen)
{
	static const unsigned int permille[] = {10, 100, 50, 300, 1};
	struct trk_opts o = {.backend = b, .populated = populated};
	struct trk_round r = {0};
	struct trk *t = NULL;
	unsigned int seed = 42;
	uint64_t *set = NULL, v[64], out[2];
	size_t n, missed;
	int ret, idx;
	int64_t st;

	memset(s, 0, sizeof(*s));
	ret = trk_open(d->pid, &o, &t);
	if (ret)
		TD_FAIL("trk_open(%s): %s", trk_backend_name(b), strerror(-ret));
	if (b == TRK_UFFD && td_has_uffd(d->pid))
		TD_FAIL("the target holds a userfaultfd after trk_open");
	if (sched_getscheduler(d->pid) != SCHED_OTHER)
		TD_FAIL("the target's scheduling policy changed under tracking");

	/* round 1: every populated page */
	ret = td_round(t, &r, s);
	if (ret)
		TD_FAIL("round 1: %s", strerror(-ret));
	for (int k = 0; k < d->nreg; k++)
		for (uint64_t i = 0; i < d->reg[k].npages; i++)
			if (!td_dirty_has(&r, d->reg[k].addr + i * TD_PG))
				TD_FAIL("round 1 lacks populated page %#llx of region kind %llu",
					(unsigned long long)(d->reg[k].addr + i * TD_PG),
					(unsigned long long)d->reg[k].kind);
	trk_round_release(&r);

	/* random sets, several densities */
	for (size_t i = 0; i < sizeof(permille) / sizeof(permille[0]); i++) {
		n = td_random_set(d, permille[i], &seed, &set);
		ret = td_write_round(d, t, set, n, s, &missed);
		free(set);
		set = NULL;
		if (ret)
			TD_FAIL("random round %zu: %s", i, strerror(-ret));
		if (missed)
			TD_FAIL("random round %zu (%u permille): %zu of %zu written pages missed",
				i, permille[i], missed, n);
	}

	/* mremap: the moved region is reported whole, its old range gone */
	idx = td_region_index(d, TT_ANON);
	{
		uint64_t old = d->reg[idx].addr, np = d->reg[idx].npages;

		st = td_cmd(d, TT_MREMAP, (uint64_t)idx, NULL, 0, out, 1);
		if (st)
			TD_FAIL("mremap in the target: %s", strerror((int)-st));
		ret = td_round(t, &r, s);
		if (ret)
			TD_FAIL("round after mremap: %s", strerror(-ret));
		for (uint64_t i = 0; i < np; i++)
			if (!td_dirty_has(&r, out[0] + i * TD_PG))
				TD_FAIL("moved page %#llx not reported",
					(unsigned long long)(out[0] + i * TD_PG));
		if (!td_gone_has(&r, old))
			TD_FAIL("old range %#llx of the moved region not reported gone",
				(unsigned long long)old);
		trk_round_release(&r);
		if (td_info(d))
			TD_FAIL("target stopped answering");
		/* and writes at the new place are tracked */
		for (int i = 0; i < 16; i++)
			v[i] = out[0] + (uint64_t)(i * 7 % np) * TD_PG;
		qsort(v, 16, 8, td_cmp64);
		ret = td_write_round(d, t, v, 16, s, &missed);
		if (ret || missed)
			TD_FAIL("writes after mremap: %zu missed (%s)", missed, strerror(-ret));
	}

	/* a new mapping: its populated (even) pages */
	st = td_cmd(d, TT_MMAP, 64, NULL, 0, out, 1);
	if (st)
		TD_FAIL("mmap in the target failed");
	ret = td_round(t, &r, s);
	if (ret)
		TD_FAIL("round after mmap: %s", strerror(-ret));
	for (uint64_t i = 0; i < 64; i += 2)
		if (!td_dirty_has(&r, out[0] + i * TD_PG))
			TD_FAIL("page %#llx of a new mapping not reported",
				(unsigned long long)(out[0] + i * TD_PG));
	trk_round_release(&r);
	if (td_info(d))
		TD_FAIL("target stopped answering");
	for (int i = 0; i < 32; i++)
		v[i] = out[0] + (uint64_t)i * 2 * TD_PG + TD_PG; /* the odd, untouched pages */
	ret = td_write_round(d, t, v, 32, s, &missed);
	if (ret || missed)
		TD_FAIL("first writes to untouched pages of a new mapping: %zu missed", missed);

	/* munmap + mmap at the same address, between two rounds */
	idx = td_region_index(d, TT_ANON);
	st = td_cmd(d, TT_REMAP_SAME, (uint64_t)idx, NULL, 0, NULL, 0);
	if (st)
		TD_FAIL("remap at the same address failed: %s", strerror((int)-st));
	ret = td_round(t, &r, s);
	if (ret)
		TD_FAIL("round after remap: %s", strerror(-ret));
	for (uint64_t i = 0; i < d->reg[idx].npages; i++) {
		uint64_t a = d->reg[idx].addr + i * TD_PG;

		if (i % 3 == 0 && !td_dirty_has(&r, a))
			TD_FAIL("page %#llx of a replaced mapping not reported",
				(unsigned long long)a);
		if (i % 3 && !td_dirty_has(&r, a) && !td_gone_has(&r, a))
			TD_FAIL("stale page %#llx of a replaced mapping neither dirty nor gone",
				(unsigned long long)a);
	}
	trk_round_release(&r);

	/*
	 * MADV_DONTNEED on private memory: the zapped pages read as zero (or
	 * as the file) now, so they must be dirty.  On shared memory the
	 * contents stay in the page cache: reporting them is optional.
	 */
	n = 0;
	for (int k = 0; k < d->nreg && n < 60; k++)
		for (uint64_t i = 3; i < d->reg[k].npages && i < 40; i += 12)
			if (d->reg[k].kind != TT_STACK && d->reg[k].kind != TT_SHARED &&
			    d->reg[k].kind != TT_FILE_SHARED)
				v[n++] = d->reg[k].addr + i * TD_PG;
	qsort(v, n, 8, td_cmp64);
	st = td_cmd(d, TT_ZAP, 0, v, (uint32_t)n, NULL, 0);
	if (st)
		TD_FAIL("madvise in the target failed");
	ret = td_round(t, &r, s);
	if (ret)
		TD_FAIL("round after MADV_DONTNEED: %s", strerror(-ret));
	missed = td_missed(&r, v, n);
	for (size_t i = 0; i < n; i++)
		for (int k = 0; k < d->nreg; k++)
			if (!td_dirty_has(&r, v[i]) && v[i] >= d->reg[k].addr &&
			    v[i] < d->reg[k].addr + d->reg[k].npages * TD_PG)
				fprintf(stderr, "trk test: zapped page %#llx of kind %llu missed\n",
					(unsigned long long)v[i],
					(unsigned long long)d->reg[k].kind);
	trk_round_release(&r);
	if (missed)
		TD_FAIL("%zu of %zu zapped pages not reported", missed, n);

	/*
	 * fork: the child's private writes are its own; its writes to shared
	 * memory change ours, but page tables (uffd-wp, soft-dirty) only see
	 * this process's own stores: only hashing can see them.
	 */
	n = td_random_set(d, 20, &seed, &set);
	st = td_cmd(d, TT_FORK, 0, set, (uint32_t)n, NULL, 0);
	if (st)
		TD_FAIL("fork in the target failed");
	ret = td_round(t, &r, s);
	if (ret)
		TD_FAIL("round after fork: %s", strerror(-ret));
	for (size_t i = 0; i < n; i++) {
		idx = -1;
		for (int k = 0; k < d->nreg; k++)
			if (set[i] >= d->reg[k].addr &&
			    set[i] < d->reg[k].addr + d->reg[k].npages * TD_PG)
				idx = k;
		if (idx < 0 ||
		    (d->reg[idx].kind != TT_SHARED && d->reg[idx].kind != TT_FILE_SHARED))
			continue;
		if (!td_dirty_has(&r, set[i])) {
			s->shared_unseen++;
			if (b == TRK_HASH)
				TD_FAIL("hash missed shared page %#llx written by a child",
					(unsigned long long)set[i]);
		}
	}
	trk_round_release(&r);
	free(set);
	set = NULL;
	n = td_random_set(d, 50, &seed, &set);
	ret = td_write_round(d, t, set, n, s, &missed);
	free(set);
	set = NULL;
	if (ret || missed)
		TD_FAIL("writes after fork: %zu missed (%s)", missed, strerror(-ret));

	st = td_cmd(d, TT_VERIFY, 0, NULL, 0, out, 1);
	if (st || out[0])
		TD_FAIL("the target's own checks failed under tracking: %llu pages differ",
			(unsigned long long)out[0]);
	s->stop_ms = trk_stop_ms(t);
	trk_free(t);
	t = NULL;

	/* detached: the target runs on, with nothing of ours left in it */
	if (td_has_uffd(d->pid))
		TD_FAIL("the target holds a userfaultfd after trk_free");
	n = td_random_set(d, 100, &seed, &set);
	st = td_cmd(d, TT_WRITE, 0, set, (uint32_t)n, NULL, 0);
	free(set);
	set = NULL;
	if (st)
		TD_FAIL("target cannot write after trk_free");
	st = td_cmd(d, TT_VERIFY, 0, NULL, 0, out, 1);
	if (st || out[0])
		TD_FAIL("the target's own checks failed after trk_free: %llu pages differ",
			(unsigned long long)out[0]);
	ret = 0;
out:
	free(set);
	trk_round_release(&r);
	trk_free(t);
	return ret;
}

/* Copy the round's dirty pages that fall in the test regions into @mirror. */
static inline int td_copy_round(struct td *d, struct trk *t, char **mirror, struct td_stats *s)
{
	struct trk_round r;
	int ret = td_round(t, &r, s);

	if (ret)
		return ret;
	for (size_t i = 0; i < r.ndirty && !ret; i++) {
		uint64_t ds = r.dirty[i].start, de = ds + r.dirty[i].npages * TD_PG;

		for (int k = 0; k < d->nreg && !ret; k++) {
			uint64_t rs = d->reg[k].addr, re = rs + d->reg[k].npages * TD_PG;
			uint64_t a = ds > rs ? ds : rs, e = de < re ? de : re;
			struct trk_range sub = {a, (e - a) / TD_PG};

			if (a < e)
				ret = trk_read(t, &sub, 1, mirror[k] + (a - rs), NULL);
		}
	}
	trk_round_release(&r);
	return ret;
}

/*
 * Pre-copy, as migrate does it: copy round 1, then copy each round's dirty
 * pages while @nthreads threads of the target write without pause, stop
 * them, copy a final round, and compare the copy with the target's memory.
 * Any page a round missed shows up as a difference.
 */
static inline int td_precopy_o(struct td *d, const struct trk_opts *o, int nthreads, int rounds,
			       struct td_stats *s, char *err, size_t errlen)
{
	struct trk *t = NULL;
	char *mirror[TT_NKINDS + 8] = {0}, *actual = NULL;
	uint64_t out[1], differ = 0;
	int ret;

	memset(s, 0, sizeof(*s));
	for (int k = 0; k < d->nreg; k++)
		mirror[k] = calloc(d->reg[k].npages, TD_PG);
	ret = trk_open(d->pid, o, &t);
	if (ret)
		TD_FAIL("trk_open(%s): %s", trk_backend_name(o->backend), strerror(-ret));
	ret = td_copy_round(d, t, mirror, s);
	if (ret)
		TD_FAIL("round 1: %s", strerror(-ret));
	if (td_cmd(d, TT_THREADS, (uint64_t)nthreads, NULL, 0, NULL, 0))
		TD_FAIL("cannot start writer threads");
	for (int i = 0; i < rounds; i++) {
		usleep(2000);
		ret = td_copy_round(d, t, mirror, s);
		if (ret)
			TD_FAIL("round %d under load: %s", i + 2, strerror(-ret));
	}
	if (td_cmd(d, TT_QUIESCE, 0, NULL, 0, out, 1))
		TD_FAIL("cannot stop writer threads");
	s->written = out[0];
	ret = td_copy_round(d, t, mirror, s);
	if (ret)
		TD_FAIL("final round: %s", strerror(-ret));
	for (int k = 0; k < d->nreg; k++) {
		struct trk_range all = {d->reg[k].addr, d->reg[k].npages};

		actual = realloc(actual, d->reg[k].npages * TD_PG);
		ret = trk_read_pages(d->pid, &all, 1, actual, NULL);
		if (ret)
			TD_FAIL("cannot read region %d: %s", k, strerror(-ret));
		for (uint64_t i = 0; i < d->reg[k].npages; i++)
			if (memcmp(actual + i * TD_PG, mirror[k] + i * TD_PG, TD_PG)) {
				if (differ < 5)
					fprintf(stderr,
						"trk test: page %#llx (kind %llu) copy differs\n",
						(unsigned long long)(d->reg[k].addr + i * TD_PG),
						(unsigned long long)d->reg[k].kind);
				differ++;
			}
	}
	s->missed = differ;
	if (differ)
		TD_FAIL("%llu pages of the pre-copied image differ from the target",
			(unsigned long long)differ);
	if (td_cmd(d, TT_VERIFY, 0, NULL, 0, out, 1) || out[0])
		TD_FAIL("the target's own checks failed: %llu pages", (unsigned long long)out[0]);
	s->stop_ms = trk_call_ms(t); /* here: the longest scan call */
	ret = 0;
out:
	trk_free(t);
	for (int k = 0; k < d->nreg; k++)
		free(mirror[k]);
	free(actual);
	return ret;
}

static inline int td_precopy(struct td *d, enum trk_backend b, int nthreads, int rounds,
			     struct td_stats *s, char *err, size_t errlen)
{
	struct trk_opts o = {.backend = b};

	return td_precopy_o(d, &o, nthreads, rounds, s, err, errlen);
}

/* SIGSTOP @pid and wait until every thread is stopped, or SIGCONT it. */
static inline int td_freeze(pid_t pid, bool stop)
{
	char path[64], buf[512], *p;

	if (kill(pid, stop ? SIGSTOP : SIGCONT))
		return -errno;
	if (!stop)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	for (int i = 0; i < 2000; i++) {
		FILE *f = fopen(path, "r");
		size_t n = f ? fread(buf, 1, sizeof(buf) - 1, f) : 0;

		if (f)
			fclose(f);
		buf[n] = '\0';
		p = strrchr(buf, ')');
		if (p && p[1] == ' ' && p[2] == 'T')
			return 0;
		usleep(1000);
	}
	return -ETIMEDOUT;
}

/*
 * A copy of a whole address space, page by page: what a receiver holds.
 * Open addressing; a dropped page keeps its slot with data NULL.
 */
struct td_img {
	uint64_t *addr;
	char **data;
	int *stored, *dropped; /* round that last stored / dropped each page (diagnostics) */
	int round;
	size_t cap;
};

static inline void td_img_init(struct td_img *m, size_t cap)
{
	memset(m, 0, sizeof(*m));
	m->cap = cap; /* a power of 2 */
	m->addr = calloc(m->cap, sizeof(*m->addr));
	m->data = calloc(m->cap, sizeof(*m->data));
	m->stored = calloc(m->cap, sizeof(int));
	m->dropped = calloc(m->cap, sizeof(int));
}

static inline void td_img_free(struct td_img *m)
{
	for (size_t k = 0; k < m->cap; k++)
		free(m->data ? m->data[k] : NULL);
	free(m->addr);
	free(m->data);
	free(m->stored);
	free(m->dropped);
	memset(m, 0, sizeof(*m));
}

static inline size_t td_img_slot(struct td_img *m, uint64_t a, bool insert)
{
	size_t i = (size_t)((a >> 12) * 0x9E3779B97F4A7C15ULL) & (m->cap - 1);

	while (m->addr[i] && m->addr[i] != a)
		i = (i + 1) & (m->cap - 1);
	if (!m->addr[i] && insert)
		m->addr[i] = a;
	return i;
}

static inline int td_first_diff(const char *a, const char *b)
{
	for (int i = 0; i < (int)TD_PG; i++)
		if (a[i] != b[i])
			return i;
	return -1;
}

static inline bool td_zero(const char *p)
{
	for (size_t i = 0; i < TD_PG; i++)
		if (p[i])
			return false;
	return true;
}

/* Apply one round as a receiver would: drop gone[], then store dirty[]. */
static inline int td_img_apply(struct td_img *m, struct trk *t, const struct trk_round *r)
{
	char *buf = NULL;
	int ret = 0;

	m->round++;
	for (size_t i = 0; i < r->ngone; i++)
		for (uint64_t j = 0; j < r->gone[i].npages; j++) {
			size_t k = td_img_slot(m, r->gone[i].start + j * TD_PG, false);

			free(m->data[k]);
			m->data[k] = NULL;
			m->dropped[k] = m->round;
		}
	for (size_t i = 0; i < r->ndirty && !ret; i++) {
		buf = realloc(buf, r->dirty[i].npages * TD_PG);
		ret = trk_read(t, &r->dirty[i], 1, buf, NULL);
		for (uint64_t j = 0; j < r->dirty[i].npages && !ret; j++) {
			size_t k = td_img_slot(m, r->dirty[i].start + j * TD_PG, true);

			if (!m->data[k])
				m->data[k] = malloc(TD_PG);
			memcpy(m->data[k], buf + j * TD_PG, TD_PG);
			m->stored[k] = m->round;
		}
	}
	free(buf);
	return ret;
}

/*
 * Pre-copy the whole process while a thread maps, moves, replaces, zaps,
 * mprotects and writes memory nonstop (layout changes land mid-round), then
 * stop it, copy a final round, and compare every readable page of the
 * target with the copy: each must be equal, or zero where the copy has
 * nothing; the copy must hold nothing outside the final layout.
 */
static inline int td_churn_precopy(struct td *d, enum trk_backend b, int rounds, struct td_stats *s,
				   char *err, size_t errlen)
{
	struct trk_opts o = {.backend = b};
	struct td_img m = {0};
	struct trk_round r = {0};
	struct trk *t = NULL;
	uint64_t out[1], differ = 0, stale = 0;
	char *actual = NULL;
	int ret;

	memset(s, 0, sizeof(*s));
	td_img_init(&m, 1 << 18);
	ret = trk_open(d->pid, &o, &t);
	if (ret)
		TD_FAIL("trk_open(%s): %s", trk_backend_name(b), strerror(-ret));
	if (td_cmd(d, TT_CHURN, 0, NULL, 0, NULL, 0) || td_cmd(d, TT_THREADS, 2, NULL, 0, NULL, 0))
		TD_FAIL("cannot start the churn and writer threads");
	for (int i = 0; i <= rounds; i++) {
		ret = td_round(t, &r, s);
		if (!ret)
			ret = td_img_apply(&m, t, &r);
		trk_round_release(&r);
		if (ret)
			TD_FAIL("round %d under churn: %s", i + 1, strerror(-ret));
		usleep(1000);
	}
	if (td_cmd(d, TT_QUIESCE, 0, NULL, 0, out, 1))
		TD_FAIL("cannot stop the churn");
	s->written = out[0];
	/*
	 * The final round runs frozen, as in a migration: the main thread
	 * still writes its stack and TLS on the way back into read().
	 */
	if (td_freeze(d->pid, true))
		TD_FAIL("cannot stop the target for the final round");
	trk_set_frozen(t, true);
	ret = td_round(t, &r, s);
	if (!ret)
		ret = td_img_apply(&m, t, &r);
	if (ret)
		TD_FAIL("final round: %s", strerror(-ret));

	/* every readable page of the target against the copy */
	for (size_t i = 0; i < r.layout.n; i++) {
		const struct haul_vma *v = &r.layout.v[i];
		struct trk_range all = {v->start, haul_vma_pages(v)};

		if (!haul_vma_is_memory(v) || !(v->prot & PROT_READ))
			continue;
		actual = realloc(actual, all.npages * TD_PG);
		ret = trk_read_pages(d->pid, &all, 1, actual, NULL);
		if (ret)
			TD_FAIL("cannot read %#llx: %s", (unsigned long long)v->start,
				strerror(-ret));
		for (uint64_t j = 0; j < all.npages; j++) {
			size_t k = td_img_slot(&m, v->start + j * TD_PG, false);
			const char *want = m.addr[k] ? m.data[k] : NULL;
			const char *got = actual + j * TD_PG;

			char file_page[TD_PG];

			/* never populated: a file page reads the file, anything else zero */
			if (!want && (v->flags & HAUL_VMA_FILE) && !(v->flags & HAUL_VMA_DELETED) &&
			    v->path) {
				int fd = open(v->path, O_RDONLY | O_CLOEXEC);
				ssize_t n = fd >= 0 ? pread(fd, file_page, TD_PG,
							    (off_t)(v->pgoff + j * TD_PG))
						    : -1;

				if (fd >= 0)
					close(fd);
				if (n < 0)
					continue;
				memset(file_page + (n > 0 ? n : 0), 0, TD_PG - (n > 0 ? n : 0));
				want = file_page;
			}
			if (want ? memcmp(want, got, TD_PG) : !td_zero(got)) {
				if (differ < 5)
					fprintf(stderr,
						"trk test: page %#llx (vma %#llx-%#llx %x %x; "
						"stored in round %d, dropped in %d, of %d; "
						"copy %#llx, target %#llx, first difference at byte %d) %s\n",
						(unsigned long long)(v->start + j * TD_PG),
						(unsigned long long)v->start,
						(unsigned long long)v->end, v->prot, v->flags,
						m.addr[k] ? m.stored[k] : -1,
						m.addr[k] ? m.dropped[k] : -1, m.round,
						want ? (unsigned long long)*(const uint64_t *)want
						     : 0ULL,
						(unsigned long long)*(const uint64_t *)got,
						want ? td_first_diff(want, got) : -1,
						want ? "differs from the copy"
						     : "has data the copy never got");
				differ++;
			}
		}
	}
	/* nothing the receiver holds may lie outside the final layout */
	for (size_t k = 0; k < m.cap; k++) {
		const struct haul_vma *v;

		if (!m.addr[k] || !m.data[k])
			continue;
		v = haul_layout_find(&r.layout, m.addr[k]);
		if (!v || !haul_vma_is_memory(v)) {
			if (stale < 5)
				fprintf(stderr, "trk test: copy still holds unmapped page %#llx\n",
					(unsigned long long)m.addr[k]);
			stale++;
		}
	}
	td_freeze(d->pid, false);
	s->missed = differ;
	s->false_pos = stale;
	if (differ || stale)
		TD_FAIL("%llu pages differ from the target, %llu stale pages never dropped",
			(unsigned long long)differ, (unsigned long long)stale);
	ret = 0;
out:
	trk_round_release(&r);
	trk_free(t);
	td_img_free(&m);
	free(actual);
	return ret;
}

#endif
