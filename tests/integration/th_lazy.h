/*
 * th_lazy.h - test helper for post-copy tests: a forked reader process that
 * holds a copy of a region whose pages are to arrive by userfaultfd.  It
 * waits for a go byte, reads every page in a random order (and optionally
 * every word once more in order), compares each word with the test's
 * pattern and writes the count of wrong words back.  The test seizes it
 * while it is blocked in read() of the go pipe: th_reader_wait_blocked is
 * that ready signal (its wchan, /proc), not a fixed sleep.
 */
#ifndef HAUL_TESTS_TH_LAZY_H
#define HAUL_TESTS_TH_LAZY_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The word expected at @addr. */
typedef uint64_t (*th_pattern_fn)(uint64_t addr);

enum {
	TH_READER_DROP = 1 << 0,  /* MADV_DONTNEED the inherited pages first */
	TH_READER_SWEEP = 1 << 1, /* after the random pass, check every word in order */
};

struct th_reader {
	pid_t pid;
	int go, res; /* write end of the go pipe, read end of the result pipe */
};

/* Fork the reader over [@base, @base + @len) with xorshift @seed; cr_assert on failure. */
void th_reader_spawn(struct th_reader *r, char *base, size_t len, th_pattern_fn pattern,
		     uint64_t seed, unsigned flags);
/* Wait until the reader sleeps in read() of its go pipe; cr_assert after @ms. */
void th_reader_wait_blocked(const struct th_reader *r, int ms);
/* Send the go byte. */
void th_reader_go(const struct th_reader *r);

struct rst_lazy;
struct haul_layout;
/*
 * Wait until at least @pages pages have arrived in @lz (by fault or push,
 * rst_lazy_stats); the ready signal for "part of the memory is there".
 * cr_assert after @ms.
 */
void th_lazy_wait_arrived(struct rst_lazy *lz, uint64_t pages, int ms);

/*
 * Page server sink callbacks (struct ps_sink) for test targets that take
 * no part in a step: they accept it and do nothing.
 */
int th_sink_layout_ignored(void *sess, const struct haul_layout *l);
int th_sink_pages_ignored(void *sess, uint64_t addr, const void *data, uint32_t npages);
int th_sink_round_end_ignored(void *sess, uint64_t round);
int th_sink_state_ignored(void *sess, const void *blob, size_t len);

#endif
