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
 * Only the thread that called trk_open() may call the other functions
 * (trk_read_pages excepted).
 *
 * Changes since the lead's draft (all source compatible):
 *  - struct trk_round gained present_pages; the meaning of gone[] vs dirty[]
 *    is spelled out (drop gone[] first, then apply dirty[]).
 *  - trk_read(): like trk_read_pages() but through the tracker.  Migrate
 *    MUST use it for the pages it sends: it records what the caller now
 *    holds (the hash of the bytes read, with TRK_HASH; pages read with data
 *    that the scan saw unpopulated, with every backend).  Without it a page
 *    that changes and changes back between a round and the read, or is
 *    zapped, refilled and zapped again, would be missed.
 *  - trk_stop_ms(): how long trk_open() kept the target stopped.
 *  - trk_opts.populated: also count populated pages (slower with uffd).
 *  - trk_set_frozen(): the caller froze the process; rounds do not stop it.
 */
#ifndef HAUL_TRACKER_H
#define HAUL_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/vma.h"

enum trk_backend {
	TRK_AUTO = 0,
	TRK_UFFD,
	TRK_SOFT_DIRTY,
	TRK_HASH
};

/* A run of pages: [start, start + npages * 4096). */
struct trk_range {
	uint64_t start;
	uint64_t npages;
};

/* What one round found. */
struct trk_round {
	uint64_t seq;		 /* 1 for the first round */
	struct trk_range *dirty; /* sorted, merged; first round: every populated page */
	size_t ndirty;
	uint64_t dirty_pages;	   /* sum of dirty[].npages */
	struct haul_layout layout; /* the layout at this round */
	bool layout_changed;	   /* VMAs appeared, vanished, moved or changed prot */
	/*
	 * Ranges whose previous contents no longer exist: unmapped, moved away,
	 * or replaced by another mapping.  The receiver drops these first and
	 * then applies dirty[]: a replaced range can be in both (its old
	 * mapping gone, its new one's populated pages dirty).  New or moved
	 * VMAs are reported whole in dirty[] (their populated pages).  A page
	 * that was populated and no longer is (MADV_DONTNEED) is in dirty[]
	 * and reads as zero.
	 */
	struct trk_range *gone;
	size_t ngone;
	/* populated (present or swapped) pages now; 0 when not counted (uffd without .populated) */
	uint64_t present_pages;
	double scan_ms; /* time the round took */
};

struct trk;

struct trk_opts {
	enum trk_backend backend; /* TRK_AUTO picks the best that works */
	bool verbose;
	/*
	 * Count populated pages each round (trk_round.present_pages).  uffd
	 * then walks every page with the general PAGEMAP_SCAN path (~1.6 ms
	 * per GiB instead of ~0.2); the dirty set is the same either way.
	 */
	bool populated;
	/*
	 * Bounds of one PAGEMAP_SCAN call (uffd): bytes walked and pages
	 * reported and re-protected; 0 takes the policy's (TRK_SCAN_SLICE_*).
	 * Tests make them tiny so that writes land during a sliced pass.
	 */
	uint64_t slice_bytes;
	uint64_t slice_pages;
	/*
	 * Frozen rounds (uffd): the smallest part of a walk one thread takes;
	 * 0 takes TRK_SCAN_PAR_PART_BYTES.  Tests make it small, so that a
	 * small region is split.
	 */
	uint64_t par_part_bytes;
};

/*
 * Attach to @pid (all its threads).  For TRK_UFFD the process is stopped
 * for well under 2 ms while a userfaultfd is created inside it and pulled out.
 * Returns 0 or -errno: -ESRCH gone, -EPERM not allowed or already traced,
 * -EOPNOTSUPP the forced backend is unavailable here.
 */
int trk_open(pid_t pid, const struct trk_opts *opts, struct trk **out);

/*
 * Tests only (uffd): the next @n walks of a re-registered VMA fail as if it
 * had changed again, to reach what happens to a VMA that keeps changing.
 */
void trk_test_fail_rescans(struct trk *t, unsigned n);

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

/*
 * trk_read_pages() of one range @r inside VMA @v of stopped process @pid:
 * in a private file mapping the pages the process never wrote (pagemap)
 * come from the file itself (read_file.c: nothing is faulted into the
 * process's page tables), the others from the process.  Any other VMA, or
 * a file that cannot be read the same way: trk_read_pages().  0 or -errno.
 */
int trk_read_file_pages(pid_t pid, const struct haul_vma *v, const struct trk_range *r, void *buf,
			uint64_t *zero);

/*
 * trk_read_pages() for the tracked process, from the trk_open() thread; use
 * it for every page sent.  It remembers what the caller now holds: with
 * TRK_HASH the hash of each page as read; with every backend the pages read
 * with data although the last scan saw them unpopulated (so that if they
 * are unpopulated again, the next round reports them, to be sent as zero).
 * Returns 0 or -errno like trk_read_pages().
 */
int trk_read(struct trk *t, const struct trk_range *r, size_t n, void *buf, uint64_t *zero);

/*
 * The caller has frozen (@frozen true) or thawed the process with a cgroup
 * freezer.  Rounds then need not stop it themselves (soft-dirty otherwise
 * holds every thread with ptrace, which under the v1 freezer would wait for
 * the thaw).  The final round of a migration runs frozen.
 */
void trk_set_frozen(struct trk *t, bool frozen);

/* Longest time (ms) the target was kept stopped by trk_open() or a round. */
double trk_stop_ms(const struct trk *t);

/*
 * Longest single scan call (ms) of the last round: with uffd, how long one PAGEMAP_SCAN
 * held the target's mmap_lock at most (calls are sliced to keep it ~1 ms;
 * the target's faults do not wait for it, its mmap/munmap/mprotect do).
 * 0 for backends that make no such call.
 */
double trk_call_ms(const struct trk *t);

#endif
