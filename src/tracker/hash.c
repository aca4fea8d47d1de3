/*
 * hash.c - dirty tracking by content: XXH3-64 of every populated page.
 *
 * For kernels with neither uffd-wp async nor soft-dirty.  Each round reads
 * pagemap to find populated pages, then reads them with process_vm_readv in
 * batches of HASH_BATCH pages (hashed while still in cache) on two threads,
 * each taking half of the populated pages, and compares each hash with the
 * one kept for that address.  The kept hashes are one uint64_t per
 * populated page, in address order, aligned with the populated range list:
 * the comparison is a forward merge, no lookups.
 *
 * A write that restores a page's old bytes is invisible to hashing.  That is
 * harmless only if the hash we keep is of the bytes the receiver holds: the
 * caller reads pages after the round, maybe after another change.  So
 * trk_read() calls hash_read_done(), which replaces the kept hash with the
 * hash of the bytes actually read.  A caller that reads with
 * trk_read_pages() instead gives up that guarantee.
 */
#define LOG_PREFIX "trk: "
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/probe.h"
#include "tracker/trk_int.h"

/* Pages read and hashed per batch: 1 MiB stays in L2 between read and hash. */
#define HASH_BATCH 256
/* Readers per round, and the populated pages (64 MiB) from which a second one pays. */
#define HASH_THREADS	 2
#define HASH_SPLIT_PAGES 16384

struct hash_state {
	/* the last round: populated pages and their hashes, in address order */
	struct trk_rl present;
	uint64_t *hash;
	uint64_t *base;		 /* base[i]: index in hash[] of present.r[i]'s first page */
	uint64_t *nhash;	 /* the round being scanned */
	size_t ci;		 /* merge cursor into present */
	uint64_t *pm;		 /* pagemap chunk */
	char *buf[HASH_THREADS]; /* HASH_BATCH pages per reader */
};

static void hash_close(struct trk *t);

static int hash_open(struct trk *t)
{
	struct hash_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	t->priv = st;
	st->pm = malloc(TRK_PM_CHUNK * sizeof(*st->pm));
	for (int k = 0; k < HASH_THREADS; k++)
		st->buf[k] = aligned_alloc(4096, HASH_BATCH * TRK_PAGE);
	for (int k = 0; k < HASH_THREADS; k++)
		if (!st->buf[k] || !st->pm) {
			hash_close(t);
			return -ENOMEM;
		}
	return 0;
}

static void hash_close(struct trk *t)
{
	struct hash_state *st = t->priv;

	if (!st)
		return;
	trk_rl_release(&st->present);
	free(st->hash);
	free(st->base);
	free(st->nhash);
	free(st->pm);
	for (int k = 0; k < HASH_THREADS; k++)
		free(st->buf[k]);
	free(st);
	t->priv = NULL;
}

/* The kept hash of @addr, if it was populated last round. Addresses only grow. */
static bool old_hash(struct hash_state *st, uint64_t addr, uint64_t *h)
{
	const struct trk_rl *p = &st->present;

	while (st->ci < p->n && p->r[st->ci].start + p->r[st->ci].npages * TRK_PAGE <= addr)
		st->ci++;
	if (st->ci >= p->n || p->r[st->ci].start > addr)
		return false;
	*h = st->hash[st->base[st->ci] + (addr - p->r[st->ci].start) / TRK_PAGE];
	return true;
}

/*
 * One reader: read and hash @n pages of @r (in order), starting at page
 * @skip of r[0], into @out[].  Runs on the caller's thread or a helper.
 */
struct hash_job {
	pid_t pid;
	const struct trk_range *r; /* the populated ranges */
	size_t nr;
	uint64_t first, count; /* page indexes into the populated set */
	uint64_t *out;	       /* hashes, indexed from first */
	char *buf;	       /* HASH_BATCH pages */
	int ret;
};

static void *hash_job_run(void *arg)
{
	struct hash_job *j = arg;
	struct trk_range batch[HASH_BATCH];
	uint64_t idx = 0, done = 0;
	size_t i = 0, nb = 0, bp = 0;
	int memfd = -1;

	/* find the range holding page j->first */
	while (i < j->nr && idx + j->r[i].npages <= j->first)
		idx += j->r[i++].npages;
	uint64_t off = j->first - idx; /* pages into r[i] */

	j->ret = 0;
	while (done < j->count && !j->ret) {
		/* gather up to HASH_BATCH pages */
		nb = bp = 0;
		while (i < j->nr && bp < HASH_BATCH && done + bp < j->count) {
			uint64_t n = j->r[i].npages - off, want = HASH_BATCH - bp;

			if (n > want)
				n = want;
			if (n > j->count - done - bp)
				n = j->count - done - bp;
			batch[nb].start = j->r[i].start + off * TRK_PAGE;
			batch[nb].npages = n;
			nb++;
			bp += n;
			off += n;
			if (off == j->r[i].npages) {
				i++;
				off = 0;
			}
		}
		j->ret = trk_vm_read(j->pid, &memfd, batch, nb, j->buf);
		for (size_t k = 0; k < bp && !j->ret; k++)
			j->out[done + k] = XXH3_64bits(j->buf + k * TRK_PAGE, TRK_PAGE);
		done += bp;
	}
	if (memfd >= 0)
		close(memfd);
	return NULL;
}

/* Keep this round's populated set and hashes; index the ranges for lookups. */
static int keep_round(struct hash_state *st, const struct trk_rl *present)
{
	uint64_t *base = malloc((present->n ? present->n : 1) * sizeof(*base)), idx = 0;

	if (!base)
		return -ENOMEM;
	trk_rl_release(&st->present);
	if (trk_rl_append(&st->present, present)) {
		free(base);
		return -ENOMEM;
	}
	for (size_t i = 0; i < present->n; i++) {
		base[i] = idx;
		idx += present->r[i].npages;
	}
	free(st->base);
	st->base = base;
	free(st->hash);
	st->hash = st->nhash;
	st->nhash = NULL;
	return 0;
}

/*
 * Read and hash every populated page, on two threads when there is enough
 * to share (the copy out of the target, not the hashing, is the cost: two
 * readers move about twice the bytes, `make bench-tracker`), then compare in address
 * order with the kept hashes.
 */
static int hash_scan(struct trk *t, const struct haul_layout *cur, const struct trk_rl *fresh,
		     struct trk_scan *out)
{
	struct hash_state *st = t->priv;
	struct hash_job job[HASH_THREADS];
	pthread_t helper;
	bool helped = false;
	uint64_t total, idx = 0;
	int ret = 0, njobs;

	double t0 = trk_now_ms(), t1, t2;

	(void)fresh; /* the core sends fresh ranges whole */
	for (size_t i = 0; i < cur->n && !ret; i++)
		if (haul_vma_is_memory(&cur->v[i]))
			/* the populated pages, from pagemap: no page is read here */
			ret = trk_pagemap_populated(t->pagemap_fd, st->pm, &cur->v[i],
						    &out->present, NULL, 0);
	if (ret)
		return ret;
	total = out->present.pages;
	free(st->nhash);
	st->nhash = malloc((total ? total : 1) * sizeof(*st->nhash));
	if (!st->nhash)
		return -ENOMEM;

	t1 = trk_now_ms();
	njobs = total >= HASH_SPLIT_PAGES ? HASH_THREADS : 1;
	for (int k = 0; k < njobs; k++) {
		job[k] = (struct hash_job){
			.pid = t->pid,
			.r = out->present.r,
			.nr = out->present.n,
			.first = total * k / njobs,
			.count = total * (k + 1) / njobs - total * k / njobs,
			.buf = st->buf[k],
		};
		job[k].out = st->nhash + job[k].first;
	}
	if (njobs > 1)
		helped = pthread_create(&helper, NULL, hash_job_run, &job[1]) == 0;
	hash_job_run(&job[0]);
	if (njobs > 1) {
		if (helped)
			pthread_join(helper, NULL);
		else
			hash_job_run(&job[1]);
	}
	for (int k = 0; k < njobs; k++)
		if (job[k].ret)
			return job[k].ret;

	/* compare in address order: the kept hashes are in the same order */
	t2 = trk_now_ms();
	st->ci = 0;
	for (size_t i = 0; i < out->present.n && !ret; i++)
		for (uint64_t p = 0; p < out->present.r[i].npages && !ret; p++, idx++) {
			uint64_t addr = out->present.r[i].start + p * TRK_PAGE, old;

			if (!old_hash(st, addr, &old) || old != st->nhash[idx])
				ret = trk_rl_add(&out->written, addr, 1);
		}
	if (!ret)
		ret = keep_round(st, &out->present);
	pr_debug("pid %d: hash round over %llu pages: pagemap %.2f ms, read and hash %.2f ms "
		 "(%d readers), compare %.2f ms",
		 (int)t->pid, (unsigned long long)total, t1 - t0, t2 - t1, njobs,
		 trk_now_ms() - t2);
	return ret;
}

/* The caller now holds these bytes: keep their hashes (see the top comment). */
static void hash_read_done(struct trk *t, const struct trk_range *r, size_t n, const void *buf)
{
	struct hash_state *st = t->priv;
	const struct trk_rl *p = &st->present;
	const char *b = buf;

	for (size_t i = 0; i < n; i++) {
		for (uint64_t j = 0; j < r[i].npages; j++, b += TRK_PAGE) {
			uint64_t addr = r[i].start + j * TRK_PAGE;
			size_t lo = trk_rl_bsearch(p, addr);

			if (lo < p->n && p->r[lo].start <= addr)
				st->hash[st->base[lo] + (addr - p->r[lo].start) / TRK_PAGE] =
					XXH3_64bits(b, TRK_PAGE);
		}
	}
}

const struct trk_ops trk_hash_ops = {
	.id = TRK_HASH,
	.open = hash_open,
	.scan = hash_scan,
	.close = hash_close,
	.read_done = hash_read_done,
};
