/*
 * hash.c - dirty tracking by content: XXH3-64 of every populated page.
 *
 * For kernels with neither uffd-wp async nor soft-dirty.  Each round reads
 * pagemap to find populated pages, reads them with process_vm_readv in
 * batches of HASH_BATCH pages (hashed while still in cache), and compares
 * each hash with the one kept for that address.  The kept hashes are one
 * uint64_t per populated page, in address order, aligned with the populated
 * range list: the comparison is a forward merge, no lookups.
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
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/probe.h"
#include "tracker/trk_int.h"

/* Pages read and hashed per batch: 1 MiB stays in L2 between read and hash. */
#define HASH_BATCH 256

struct hash_state {
	/* the last round: populated pages and their hashes, in address order */
	struct trk_rl present;
	uint64_t *hash;
	uint64_t *base; /* base[i]: index in hash[] of present.r[i]'s first page */
	/* the round being scanned */
	uint64_t *nhash;
	size_t nhash_n, nhash_cap;
	size_t ci;    /* merge cursor into present */
	uint64_t *pm; /* pagemap chunk */
	char *buf;    /* HASH_BATCH pages */
	struct trk_range batch[HASH_BATCH];
	size_t nbatch, batch_pages;
	int memfd;
};

static int hash_open(struct trk *t)
{
	struct hash_state *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	st->memfd = -1;
	st->pm = malloc(TRK_PM_CHUNK * sizeof(*st->pm));
	st->buf = aligned_alloc(4096, HASH_BATCH * TRK_PAGE);
	if (!st->pm || !st->buf) {
		free(st->pm);
		free(st->buf);
		free(st);
		return -ENOMEM;
	}
	t->priv = st;
	return 0;
}

static void hash_close(struct trk *t)
{
	struct hash_state *st = t->priv;

	if (!st)
		return;
	if (st->memfd >= 0)
		close(st->memfd);
	trk_rl_release(&st->present);
	free(st->hash);
	free(st->base);
	free(st->nhash);
	free(st->pm);
	free(st->buf);
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

static int push_hash(struct hash_state *st, uint64_t h)
{
	if (st->nhash_n == st->nhash_cap) {
		size_t cap = st->nhash_cap ? st->nhash_cap * 2 : 4096;
		uint64_t *n = realloc(st->nhash, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		st->nhash = n;
		st->nhash_cap = cap;
	}
	st->nhash[st->nhash_n++] = h;
	return 0;
}

static int flush_batch(struct trk *t, struct hash_state *st, struct trk_scan *out)
{
	const char *p = st->buf;
	int ret;

	if (!st->nbatch)
		return 0;
	ret = trk_vm_read(t->pid, &st->memfd, st->batch, st->nbatch, st->buf);
	if (ret)
		return ret;
	for (size_t i = 0; i < st->nbatch; i++) {
		for (uint64_t j = 0; j < st->batch[i].npages; j++, p += TRK_PAGE) {
			uint64_t addr = st->batch[i].start + j * TRK_PAGE, h, old;

			h = XXH3_64bits(p, TRK_PAGE);
			ret = push_hash(st, h);
			if (!ret)
				ret = trk_rl_add(&out->present, addr, 1);
			if (!ret && (!old_hash(st, addr, &old) || old != h))
				ret = trk_rl_add(&out->written, addr, 1);
			if (ret)
				return ret;
		}
	}
	st->nbatch = 0;
	st->batch_pages = 0;
	return 0;
}

static int queue_page(struct trk *t, struct hash_state *st, uint64_t addr, struct trk_scan *out)
{
	if (st->nbatch) {
		struct trk_range *last = &st->batch[st->nbatch - 1];

		if (last->start + last->npages * TRK_PAGE == addr) {
			last->npages++;
			goto added;
		}
	}
	st->batch[st->nbatch].start = addr;
	st->batch[st->nbatch].npages = 1;
	st->nbatch++;
added:
	if (++st->batch_pages == HASH_BATCH || st->nbatch == HASH_BATCH)
		return flush_batch(t, st, out);
	return 0;
}

static int hash_scan_vma(struct trk *t, struct hash_state *st, const struct haul_vma *v,
			 struct trk_scan *out)
{
	for (uint64_t a = v->start; a < v->end;) {
		size_t n = (v->end - a) / TRK_PAGE;
		int ret;

		if (n > TRK_PM_CHUNK)
			n = TRK_PM_CHUNK;
		ret = trk_pagemap_read(t->pagemap_fd, a, n, st->pm);
		if (ret)
			return ret;
		for (size_t i = 0; i < n; i++) {
			if (!(st->pm[i] & (PM_ENTRY_PRESENT | PM_ENTRY_SWAPPED)))
				continue;
			ret = queue_page(t, st, a + i * TRK_PAGE, out);
			if (ret)
				return ret;
		}
		a += n * TRK_PAGE;
	}
	return 0;
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
	st->nhash_n = st->nhash_cap = 0;
	return 0;
}

static int hash_scan(struct trk *t, const struct haul_layout *cur, const struct trk_rl *fresh,
		     struct trk_scan *out)
{
	struct hash_state *st = t->priv;
	int ret = 0;

	(void)fresh; /* the core sends fresh ranges whole */
	st->ci = 0;
	st->nbatch = st->batch_pages = 0;
	st->nhash_n = 0;
	for (size_t i = 0; i < cur->n && !ret; i++)
		if (haul_vma_is_memory(&cur->v[i]))
			ret = hash_scan_vma(t, st, &cur->v[i], out);
	if (!ret)
		ret = flush_batch(t, st, out);
	if (!ret)
		ret = keep_round(st, &out->present);
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
			size_t lo = 0, hi = p->n;

			while (lo < hi) {
				size_t mid = lo + (hi - lo) / 2;

				if (p->r[mid].start + p->r[mid].npages * TRK_PAGE <= addr)
					lo = mid + 1;
				else
					hi = mid;
			}
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
