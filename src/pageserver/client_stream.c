/*
 * client_stream.c - the page send path: one sender thread per stream, and
 * ps_client_pages()/ps_client_pages_v() handing batches to them.
 *
 * The caller's thread hands batches of up to WIRE_BATCH_PAGES pages to the
 * streams round-robin through each stream's job slot (under mu); a stream
 * thread encodes its batch and sends it.  A call returns once every page it
 * was given has been sent or copied, so the caller may reuse its buffer.
 * ps_client_flush() waits until every stream is idle, before control frames.
 */
#define LOG_PREFIX "ps-client: "
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/client_int.h"

/* ---- sender threads ------------------------------------------------------------------- */

static bool zero_bit(const uint64_t *bm, uint64_t i)
{
	return bm && (bm[i / 64] >> (i % 64)) & 1;
}

/* Encode @npages pages at @addr from @data, zero bits from @zbase on, into st->enc. */
static int encode_range(struct ps_stream *st, uint64_t addr, const uint8_t *data, uint64_t zbase,
			uint32_t npages)
{
	uint32_t i = 0;

	while (i < npages) {
		uint32_t n = 1;
		bool z = zero_bit(st->job_zero, zbase + i);
		int r;

		while (i + n < npages && zero_bit(st->job_zero, zbase + i + n) == z)
			n++;
		if (z)
			r = wire_pages_enc_zero(&st->enc, addr + (uint64_t)i * HAUL_PAGE_SIZE, n);
		else
			r = wire_pages_enc_add(&st->enc, addr + (uint64_t)i * HAUL_PAGE_SIZE,
					       data + (size_t)i * HAUL_PAGE_SIZE, n);
		if (r < 0)
			return r;
		if ((uint32_t)r != n)
			return -EMSGSIZE; /* a batch always fits: WIRE_BATCH_PAGES ranges */
		i += n;
	}
	return 0;
}

/* Encode the job's pages into st->enc.  Only reads the caller's data. */
static int encode_job(struct ps_stream *st)
{
	uint64_t off = 0;
	int ret = 0;

	wire_pages_enc_reset(&st->enc);
	if (!st->job_r)
		return encode_range(st, st->job_addr, st->job_data, st->job_zero_base, st->job_n);
	for (size_t k = 0; k < st->job_nr && !ret; k++) {
		ret = encode_range(st, st->job_r[k].addr, st->job_data + off * HAUL_PAGE_SIZE,
				   st->job_zero_base + off, (uint32_t)st->job_r[k].npages);
		off += st->job_r[k].npages;
	}
	return ret;
}

void *ps_stream_thread(void *arg)
{
	struct ps_stream *st = arg;
	struct ps_client *c = st->cl;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		Haul__Wire__Pages m;
		uint64_t p0, z0, l0;
		uint32_t njob;
		int ret;

		while (!st->has_job && !st->quit)
			pthread_cond_wait(&c->cv, &c->mu);
		if (st->quit)
			break;
		st->busy = true;
		/* Once has_job drops, the caller may queue the next job over job_n. */
		njob = st->job_n;
		pthread_mutex_unlock(&c->mu);

		p0 = st->enc.pages;
		z0 = st->enc.zero_pages;
		l0 = st->enc.lz4_pages;
		ret = encode_job(st);

		pthread_mutex_lock(&c->mu);
		/* Copied: the caller's data is no longer needed.  By reference: after the send. */
		if (!st->enc.ref)
			st->has_job = false;
		c->pages += st->enc.pages - p0;
		c->zero_pages += st->enc.zero_pages - z0;
		c->lz4_pages += st->enc.lz4_pages - l0;
		c->payload_bytes += (uint64_t)njob * HAUL_PAGE_SIZE;
		c->round_payload += (uint64_t)njob * HAUL_PAGE_SIZE;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);

		if (!ret) {
			wire_pages_enc_msg(&st->enc, &m);
			ret = ps_stream_sendv(st, WIRE_PAGES, &m.base, st->enc.segs, st->enc.nsegs,
					      (uint32_t)st->enc.len);
			st->round_pages += njob;
			st->round_bytes += st->enc.len;
		}

		/* A server that closes on us says why first: read its Error for the log. */
		if (ret == -EPIPE || ret == -ECONNRESET)
			ret = ps_stream_why(st, ret);

		pthread_mutex_lock(&c->mu);
		if (st->enc.ref)
			st->has_job = false;
		if (ret && !st->err) {
			pr_err_r(ret, "cannot send pages to %s on stream %u", c->o.to, st->idx);
			st->err = ret;
		}
		st->busy = false;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* Wait until every stream is idle; the first stream error, if any. */
int ps_client_flush(struct ps_client *c)
{
	int err = 0;

	pthread_mutex_lock(&c->mu);
	for (unsigned i = 0; i < c->n; i++) {
		struct ps_stream *st = &c->st[i];

		while (st->has_job || st->busy)
			pthread_cond_wait(&c->cv, &c->mu);
		if (st->err && !err)
			err = st->err;
	}
	pthread_mutex_unlock(&c->mu);
	return err;
}

/* The next stream round-robin once its job slot is free; NULL (*@err set) if it failed.  mu. */
static struct ps_stream *job_slot(struct ps_client *c, int *err)
{
	struct ps_stream *st = &c->st[c->next];

	while (st->has_job && !st->err)
		pthread_cond_wait(&c->cv, &c->mu);
	if (st->err) {
		*err = st->err;
		return NULL;
	}
	return st;
}

/* Hand @st the job just filled in; the next one goes to the next stream.  mu. */
static void job_post(struct ps_client *c, struct ps_stream *st)
{
	st->has_job = true;
	pthread_cond_broadcast(&c->cv);
	c->next = (c->next + 1) % c->n;
}

/* Wait until every stream has taken its job (copied what it named).  mu. */
static void jobs_taken(struct ps_client *c)
{
	for (unsigned i = 0; i < c->n; i++)
		while (c->st[i].has_job)
			pthread_cond_wait(&c->cv, &c->mu);
}

int ps_client_pages(struct ps_client *c, uint64_t addr, const void *data, uint32_t npages,
		    const uint64_t *zero)
{
	const uint8_t *p = data;
	int err = 0;

	if (!c->in_round)
		return -EINVAL;
	if (addr & (HAUL_PAGE_SIZE - 1))
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	for (uint32_t off = 0; off < npages && !err;) {
		uint32_t n = npages - off < WIRE_BATCH_PAGES ? npages - off : WIRE_BATCH_PAGES;
		struct ps_stream *st = job_slot(c, &err);

		if (!st)
			break;
		st->job_addr = addr + (uint64_t)off * HAUL_PAGE_SIZE;
		st->job_data = p + (size_t)off * HAUL_PAGE_SIZE;
		st->job_zero = zero;
		st->job_zero_base = off;
		st->job_n = n;
		st->job_r = NULL;
		job_post(c, st);
		off += n;
	}
	/* Return only once every stream has copied what it took from @data. */
	jobs_taken(c);
	pthread_mutex_unlock(&c->mu);
	return err;
}

int ps_client_pages_v(struct ps_client *c, const struct ps_range *r, size_t n, const void *data,
		      const uint64_t *zero)
{
	struct ps_range *piece;
	size_t np = 0, k = 0;
	uint64_t off = 0;
	int err = 0;

	if (!c->in_round)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if ((r[i].addr & (HAUL_PAGE_SIZE - 1)) || !r[i].npages)
			return -EINVAL;
		np += (r[i].npages + WIRE_BATCH_PAGES - 1) / WIRE_BATCH_PAGES;
	}
	piece = malloc((np ? np : 1) * sizeof(*piece));
	if (!piece)
		return -ENOMEM;
	/* Cut ranges to fit a batch; a job is a run of whole pieces of <= WIRE_BATCH_PAGES pages. */
	np = 0;
	for (size_t i = 0; i < n; i++)
		for (uint64_t o = 0; o < r[i].npages; o += WIRE_BATCH_PAGES) {
			uint64_t left = r[i].npages - o;

			piece[np].addr = r[i].addr + o * HAUL_PAGE_SIZE;
			piece[np++].npages = left < WIRE_BATCH_PAGES ? left : WIRE_BATCH_PAGES;
		}
	pthread_mutex_lock(&c->mu);
	while (k < np && !err) {
		struct ps_stream *st;
		size_t first = k;
		uint64_t pages = 0;

		while (k < np && pages + piece[k].npages <= WIRE_BATCH_PAGES)
			pages += piece[k++].npages;
		st = job_slot(c, &err);
		if (!st)
			break;
		st->job_addr = piece[first].addr;
		st->job_data = (const uint8_t *)data + off * HAUL_PAGE_SIZE;
		st->job_zero = zero;
		st->job_zero_base = off;
		st->job_n = (uint32_t)pages;
		st->job_r = &piece[first];
		st->job_nr = k - first;
		job_post(c, st);
		off += pages;
	}
	/* Return only once every stream has copied what it took (and the pieces). */
	jobs_taken(c);
	pthread_mutex_unlock(&c->mu);
	free(piece);
	return err;
}
