/*
 * tracker.h - which pages of a running, foreign process changed since the
 * last round.
 *
 * Backends, probed at trk_open() and chosen in this order unless forced:
 *   TRK_UFFD        userfaultfd write-protect (async) + PAGEMAP_SCAN, kernel >= 6.7
 *   TRK_SOFT_DIRTY  clear_refs "4" + pagemap bit 55 (CONFIG_MEM_SOFT_DIRTY)
 *   TRK_HASH        XXH3 of every page read with process_vm_readv
 *
 * The tracked process is not our child and keeps running between rounds.
 * Only the thread that called trk_open() may call the other functions.
 */
#ifndef HAUL_TRACKER_H
#define HAUL_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/vma.h"

enum trk_backend { TRK_AUTO = 0, TRK_UFFD, TRK_SOFT_DIRTY, TRK_HASH };

/* A run of pages: [start, start + npages * 4096). */
struct trk_range {
	uint64_t start;
	uint64_t npages;
};

/* What one round found. */
struct trk_round {
	uint64_t seq;              /* 1 for the first round */
	struct trk_range *dirty;   /* sorted, merged; first round: every populated page */
	size_t ndirty;
	uint64_t dirty_pages;      /* sum of dirty[].npages */
	struct haul_layout layout; /* the layout at this round */
	bool layout_changed;       /* VMAs appeared, vanished, moved or changed prot */
	/*
	 * Ranges that stopped being mapped since the previous round (the
	 * receiver drops them). New or moved VMAs are reported whole in dirty[]
	 * (only their populated pages).
	 */
	struct trk_range *gone;
	size_t ngone;
	double scan_ms;            /* time the scan itself took */
};

struct trk;

struct trk_opts {
	enum trk_backend backend; /* TRK_AUTO picks the best that works */
	bool verbose;
};

/*
 * Attach to @pid (all its threads).  For TRK_UFFD the process is stopped
 * for well under 2 ms while a userfaultfd is created inside it and pulled out.
 * Returns 0 or -errno: -ESRCH gone, -EPERM not allowed or already traced,
 * -EOPNOTSUPP the forced backend is unavailable here.
 */
int trk_open(pid_t pid, const struct trk_opts *opts, struct trk **out);

/* Detach; the process runs on with nothing of ours left in it. NULL is a no-op. */
void trk_free(struct trk *t);

enum trk_backend trk_backend(const struct trk *t);
const char *trk_backend_name(enum trk_backend b);
/* Parse "uffd", "soft-dirty", "hash", "auto"; -EINVAL otherwise. */
int trk_backend_parse(const char *s, enum trk_backend *out);

/*
 * One round: what was written since the previous call (the first call:
 * every populated page), and the layout now.  -ESRCH when the process
 * exited, -ECHILD when it exec'd (a new mm: start over).  The caller
 * releases @out with trk_round_release().
 */
int trk_round(struct trk *t, struct trk_round *out);
void trk_round_release(struct trk_round *r);

/*
 * Read the pages of @r (n ranges) into @buf (sum of npages * 4096 bytes)
 * with few, large process_vm_readv calls.  When @zero is non-NULL, bit i is
 * set for each page i (in order) that is all zeroes.  Pages that vanished
 * meanwhile read as zero.  Returns 0 or -errno.  Callable from any thread.
 */
int trk_read_pages(pid_t pid, const struct trk_range *r, size_t n, void *buf, uint64_t *zero);

#endif
