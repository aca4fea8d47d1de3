/*
 * target_batch.c - the restorer's batches of injected calls: many
 * independent system calls run in the stub in one round trip.
 *
 * Why: a resume is a few hundred injected calls, each two ptrace stops and
 * the context switches around them (~40-100 us), all while the process is
 * down.  Calls whose results nothing in between needs (credentials, the
 * setup of each new thread, the signal actions, epoll targets, fd flags)
 * are collected in a struct rst_batch and run by the blob that rsys_batch
 * places in the trampoline's code page (rsys_batch.c, DESIGN.md).
 *
 * Area (target_int.h): the trampoline's last TRAMP_BATCH bytes hold the
 * table (RST_BATCH_MAX entries of RSYS_BENTRY_SIZE) and then the batch's
 * data (RST_BATCH_DATA bytes, 16-byte aligned pieces), apart from the
 * scratch area so that neither overwrites the other.
 *
 * A batch runs one call at a time (the same results, the same stop at the
 * first failure) when t->batch_singly: the image ignores SIGTRAP or has
 * one queued, which the blob's trap would disturb (rsys.h).  The round
 * trips of a target (single calls and batches alike) are counted here for
 * the resume's debug timings.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>

#include "common/log.h"
#include "common/policy.h"
#include "restore/target_int.h"

/* An unknown system call number: what HAUL_FAULT=fail:batch:NAME substitutes. */
#define FAULT_NR 0x7fff

static uint64_t table_addr(const struct rst_target *t)
{
	return t->tramp + TRAMP_CODE + TRAMP_SCRATCH;
}

static uint64_t data_addr(const struct rst_target *t)
{
	return table_addr(t) + RST_BATCH_MAX * RSYS_BENTRY_SIZE;
}

/* HAUL_FAULT=fail:batch:NAME[:N]: true for the Nth call named @name. */
static bool fault_hit(const char *name)
{
	static char want[32];
	static unsigned long nth, seen;
	static int parsed;

	if (!parsed) {
		const char *f = getenv("HAUL_FAULT");
		char *colon;

		parsed = 1;
		if (f && !strncmp(f, "fail:batch:", 11)) {
			snprintf(want, sizeof(want), "%s", f + 11);
			colon = strchr(want, ':');
			nth = 1;
			if (colon) {
				*colon = '\0';
				nth = strtoul(colon + 1, NULL, 10);
			}
		}
	}
	return want[0] && name && !strcmp(name, want) && ++seen == nth;
}

void rst_batch_init(struct rst_batch *b)
{
	b->n = 0;
	b->dlen = 0;
	b->done = 0;
	b->failed = 0;
	b->err = 0;
	b->what[0] = '\0';
}

struct rst_batch *rst_batch_new(void)
{
	struct rst_batch *b = malloc(sizeof(*b));

	if (b)
		rst_batch_init(b);
	return b;
}

/* Run what @b holds and empty it; the first failure stays in b->err. */
static int flush(struct rst_target *t, struct rst_batch *b)
{
	struct rsys *r = t->cur ? t->cur : &t->r;
	size_t failed;
	int ret;

	if (b->err || !b->n)
		return b->err;
	if (b->dlen) {
		ret = rst_poke(t, data_addr(t), b->data, b->dlen);
		if (ret) {
			pr_err_r(ret, "cannot write the data of %zu injected calls into pid %d",
				 b->n, (int)t->stub);
			snprintf(b->what, sizeof(b->what), "%zu injected calls in thread %d", b->n,
				 (int)r->pid);
			b->err = ret;
			return ret;
		}
	}
	ret = rsys_batch(r, t->batch_singly ? 0 : t->tramp + TRAMP_BLOB, table_addr(t), b->c, b->n,
			 &failed);
	if (ret && failed < b->n) {
		b->failed = b->done + failed;
		snprintf(b->what, sizeof(b->what), "%s (call %zu of %zu in thread %d)",
			 b->c[failed].name ? b->c[failed].name : "?", b->done + failed + 1,
			 b->done + b->n, (int)r->pid);
	} else if (ret) {
		pr_err_r(ret, "cannot run %zu injected calls in thread %d of restored pid %d", b->n,
			 (int)r->pid, (int)t->o.pid);
		snprintf(b->what, sizeof(b->what), "%zu injected calls in thread %d", b->n,
			 (int)r->pid);
	}
	b->done += b->n;
	b->n = 0;
	b->dlen = 0;
	b->err = ret;
	return ret;
}

void rst_bcall(struct rst_target *t, struct rst_batch *b, uint32_t flags, const char *name, long nr,
	       uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5)
{
	struct rsys_bcall *c;

	if (b->n == RST_BATCH_MAX)
		flush(t, b);
	if (b->err)
		return;
	c = &b->c[b->n++];
	c->name = name;
	c->nr = fault_hit(name) ? FAULT_NR : nr;
	c->args[0] = a0;
	c->args[1] = a1;
	c->args[2] = a2;
	c->args[3] = a3;
	c->args[4] = a4;
	c->args[5] = a5;
	c->flags = flags;
	c->ret = RSYS_BNOT_RUN;
}

void rst_bdata(struct rst_target *t, struct rst_batch *b, const void *d, size_t len, uint64_t *addr)
{
	size_t off = (b->dlen + 15) & ~(size_t)15;

	*addr = 0;
	if (len > RST_BATCH_DATA && !b->err) {
		snprintf(b->what, sizeof(b->what), "%zu bytes for one injected call", len);
		b->err = -E2BIG;
	}
	if (!b->err && off + len > RST_BATCH_DATA) {
		flush(t, b);
		off = 0;
	}
	if (b->err)
		return;
	if (len) /* setgroups(0, NULL) passes none */
		memcpy(b->data + off, d, len);
	b->dlen = off + len;
	*addr = data_addr(t) + off;
}

int rst_batch_run(struct rst_target *t, struct rst_batch *b)
{
	return flush(t, b);
}

static bool queues_sigtrap(Haul__Img__PendingSignal *const *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int32_t signo;

		if (p[i]->siginfo.len != 128)
			continue;
		memcpy(&signo, p[i]->siginfo.data, sizeof(signo));
		if (signo == SIGTRAP)
			return true;
	}
	return false;
}

bool rst_batch_sigtrap_taken(const Haul__Img__ProcessState *ps)
{
	for (size_t i = 0; i < ps->n_sigactions; i++)
		if (ps->sigactions[i]->signo == SIGTRAP &&
		    ps->sigactions[i]->handler == (uint64_t)(uintptr_t)SIG_IGN)
			return true;
	if (queues_sigtrap(ps->pending, ps->n_pending))
		return true;
	for (size_t i = 0; i < ps->n_threads; i++)
		if (queues_sigtrap(ps->threads[i]->pending, ps->threads[i]->n_pending))
			return true;
	return false;
}

/* Round trips into the stub and its threads so far (the debug timings). */
unsigned long rst_round_trips(const struct rst_target *t)
{
	unsigned long n = t->r.calls;

	for (size_t i = 0; i < t->nthr; i++)
		n += t->thr[i].calls;
	return n;
}

/* Milliseconds spent in those round trips. */
double rst_round_trips_ms(const struct rst_target *t)
{
	uint64_t ns = t->r.call_ns;

	for (size_t i = 0; i < t->nthr; i++)
		ns += t->thr[i].call_ns;
	return ns / 1e6;
}

int rst_target_zap(struct rsys *r, const struct rst_zap *z, size_t n)
{
	/* the hook's @r is the target's own (rst_target_opts.before_resume) */
	struct rst_target *t = (struct rst_target *)((char *)r - offsetof(struct rst_target, r));
	struct rst_batch *b;
	int ret;

	if (!n)
		return 0;
	b = rst_batch_new();
	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		rst_bcall(t, b, 0, "madvise", SYS_madvise, z[i].addr, z[i].npages * HAUL_PAGE_SIZE,
			  z[i].shared ? MADV_REMOVE : MADV_DONTNEED, 0, 0, 0);
	ret = rst_batch_run(t, b);
	if (ret && b->failed < n)
		pr_err_r(ret, "cannot drop stale pages %#llx-%#llx of pid %d (%s)",
			 (unsigned long long)z[b->failed].addr,
			 (unsigned long long)(z[b->failed].addr +
					      z[b->failed].npages * HAUL_PAGE_SIZE),
			 (int)t->o.pid, b->what);
	free(b);
	return ret;
}
