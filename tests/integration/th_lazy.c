/*
 * th_lazy.c - the post-copy reader process (th_lazy.h), once for lazy_live,
 * lazy_net and lazy_source instead of a copy in each.  The reader is a
 * fork of the test, so its region sits at the test's address and a
 * word's expected value depends only on that address; its only fds that
 * matter are the two pipes, and its exit status says which step failed
 * (2: the go byte, 3: the result).
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "restore/lazy.h"
#include "th_lazy.h"
#include "th_proc.h"

#define TH_PGSZ 4096UL

static uint64_t bad_words(char *base, size_t len, th_pattern_fn pattern, uint64_t x, unsigned flags)
{
	size_t npages = len / TH_PGSZ;
	uint64_t bad = 0;

	for (size_t k = 0; k < npages; k++) {
		const uint64_t *w;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		w = (const uint64_t *)(base + (x % npages) * TH_PGSZ);
		for (unsigned i = 0; i < TH_PGSZ / 8; i++)
			bad += w[i] != pattern((uint64_t)(uintptr_t)(w + i));
	}
	if (flags & TH_READER_SWEEP)
		for (size_t off = 0; off < len; off += 8)
			bad += *(uint64_t *)(base + off) !=
			       pattern((uint64_t)(uintptr_t)(base + off));
	return bad;
}

void th_reader_spawn(struct th_reader *r, char *base, size_t len, th_pattern_fn pattern,
		     uint64_t seed, unsigned flags)
{
	int go[2], res[2];

	cr_assert_eq(pipe(go), 0);
	cr_assert_eq(pipe(res), 0);
	r->pid = fork();
	cr_assert_geq(r->pid, 0);
	if (r->pid == 0) {
		uint64_t bad;
		char c;

		close(go[1]);
		close(res[0]);
		/* Inherited the filled pages: drop them, they must come over the wire. */
		if ((flags & TH_READER_DROP) && madvise(base, len, MADV_DONTNEED))
			_exit(2);
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		bad = bad_words(base, len, pattern, seed, flags);
		if (write(res[1], &bad, sizeof(bad)) != sizeof(bad))
			_exit(3);
		_exit(0);
	}
	close(go[0]);
	close(res[1]);
	r->go = go[1];
	r->res = res[0];
}

void th_reader_wait_blocked(const struct th_reader *r, int ms)
{
	int ret = th_wait_sleeping(r->pid, 0, "pipe_read", ms);

	cr_assert_eq(ret, 0,
		     "reader pid %d is not blocked in read() of its go pipe after %d ms (%s)",
		     (int)r->pid, ms, strerror(-ret));
}

void th_reader_go(const struct th_reader *r)
{
	cr_assert_eq(write(r->go, "g", 1), 1, "cannot wake reader pid %d", (int)r->pid);
}

void th_lazy_wait_arrived(struct rst_lazy *lz, uint64_t pages, int ms)
{
	struct rst_lazy_stats st;

	for (int waited = 0;; waited++) {
		rst_lazy_stats(lz, &st);
		if (st.fault_pages + st.pushed_pages >= pages)
			return;
		cr_assert_lt(waited, ms, "%llu of %llu pages arrived in %d ms",
			     (unsigned long long)(st.fault_pages + st.pushed_pages),
			     (unsigned long long)pages, ms);
		usleep(1000);
	}
}

int th_sink_layout_ignored(void *sess, const struct haul_layout *l)
{
	(void)sess;
	(void)l;
	return 0;
}

int th_sink_pages_ignored(void *sess, uint64_t addr, const void *data, uint32_t npages)
{
	(void)sess;
	(void)addr;
	(void)data;
	(void)npages;
	return 0;
}

int th_sink_round_end_ignored(void *sess, uint64_t round)
{
	(void)sess;
	(void)round;
	return 0;
}

int th_sink_state_ignored(void *sess, const void *blob, size_t len)
{
	(void)sess;
	(void)blob;
	(void)len;
	return 0;
}
