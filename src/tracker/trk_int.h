/*
 * trk_int.h - the tracker's private declarations: range lists, the backend
 * interface and the tracker object.  Nothing outside src/tracker includes it.
 */
#ifndef HAUL_TRACKER_TRK_INT_H
#define HAUL_TRACKER_TRK_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/vma.h"
#include "tracker/tracker.h"

#define TRK_PAGE 4096ULL

/*
 * A growable list of page ranges.  trk_rl_add() keeps it sorted and merged
 * as long as callers append in address order (every scan walks VMAs in
 * order); trk_rl_normalize() sorts and merges after out-of-order appends.
 */
struct trk_rl {
	struct trk_range *r;
	size_t n, cap;
	uint64_t pages; /* sum of r[].npages, valid while sorted */
	bool unsorted;
};

int trk_rl_add(struct trk_rl *l, uint64_t start, uint64_t npages);
int trk_rl_append(struct trk_rl *dst, const struct trk_rl *src);
int trk_rl_normalize(struct trk_rl *l);
/* out = a \ b; a and b sorted and merged. */
int trk_rl_sub(const struct trk_rl *a, const struct trk_rl *b, struct trk_rl *out);
/* out = a ∩ b; a and b sorted and merged. */
int trk_rl_and(const struct trk_rl *a, const struct trk_rl *b, struct trk_rl *out);
void trk_rl_release(struct trk_rl *l);
/* The index of the first range of sorted, merged @l that ends after @addr; l->n if none. */
size_t trk_rl_bsearch(const struct trk_rl *l, uint64_t addr);
/*
 * alias.c: add to @dirty (sorted, merged) the same object pages at every
 * other address where a shared memory object of @l is mapped.  0 or -ENOMEM.
 */
int trk_shmem_aliases(const struct haul_layout *l, struct trk_rl *dirty);
/*
 * alias.c: add to @dirty (sorted, merged) the pages of @whole (the ranges
 * sent whole: fresh or replaced) that shmem VMAs of @l show and their
 * object holds, mapped here or not.  0 or -errno.
 */
int trk_shmem_data(pid_t pid, const struct haul_layout *l, const struct trk_rl *whole,
		   struct trk_rl *dirty);
/* Hand the array over to a trk_round (which frees it with free()). */
void trk_rl_move(struct trk_rl *l, struct trk_range **r, size_t *n);

/* What a backend's scan hands back to the core for one round. */
struct trk_scan {
	struct trk_rl written;	/* written since the last scan (round 1: present pages) */
	struct trk_rl present;	/* populated now (present or swapped) */
	struct trk_rl replaced; /* mappings found replaced under us: drop and resend */
	/* pages that may hold data, unknown (a swap entry pagemap hides): sent where whole */
	struct trk_rl maybe;
	/*
	 * Where present[] is authoritative.  A backend that leaves
	 * partial_present false covers every memory VMA; uffd's fast scan
	 * knows only written pages and lists the VMAs it counted in known[].
	 */
	bool partial_present;
	struct trk_rl known;
};

struct trk;

struct trk_ops {
	enum trk_backend id;
	/* Set up backend state for t->pid; -EOPNOTSUPP when unusable here. */
	int (*open)(struct trk *t);
	/* Scan the memory VMAs of @cur (fresh: ranges new since the last round). */
	int (*scan)(struct trk *t, const struct haul_layout *cur, const struct trk_rl *fresh,
		    struct trk_scan *out);
	void (*close)(struct trk *t);
	/* Optional: the round of layout @cur failed after scan() returned 0 or not. */
	void (*round_failed)(struct trk *t, const struct haul_layout *cur);
	/* Optional: the caller now holds these bytes of these pages (trk_read). */
	void (*read_done)(struct trk *t, const struct trk_range *r, size_t n, const void *buf);
};

extern const struct trk_ops trk_uffd_ops;
extern const struct trk_ops trk_sd_ops;
extern const struct trk_ops trk_hash_ops;

struct trk {
	pid_t pid;
	int pidfd;
	int pagemap_fd; /* bound to the mm at open: reads 0 bytes once that mm is gone */
	const struct trk_ops *ops;
	void *priv; /* backend state */
	struct trk_opts opts;
	uint64_t seq;
	struct haul_layout prev; /* layout at the previous round */
	struct trk_rl prev_present;
	/*
	 * Pages trk_read() returned with data although the last scan saw them
	 * unpopulated (refilled after the scan): the caller holds data there,
	 * so if they are found unpopulated again they must be re-sent as zero.
	 * Merged into prev_present at the next round.
	 */
	struct trk_rl held;
	struct trk_rl known;   /* where the last round tracked the populated set */
	double stop_ms;	       /* longest time the target was stopped by us */
	double call_ms;	       /* longest single scan call of this round (holds mmap_lock) */
	bool frozen;	       /* the caller froze it: do not stop it again */
	unsigned fail_rescans; /* trk_test_fail_rescans() */
};

/* Regions one PAGEMAP_SCAN call may return (each walker's vector): 768 KiB, bounded
 * whatever the dirty pattern. */
#define TRK_SCAN_VEC 32768

/* One thread's share of a parallel fast walk (scan_par.c). */
struct trk_walk_part {
	uint64_t start, end;
	struct page_region *vec; /* TRK_SCAN_VEC entries, zeroed past *used */
	size_t *used;		 /* entries the last call filled */
	struct trk_scan out;	 /* only out.written is filled */
	double call_ms;		 /* its longest call */
	int ret;
};
/* uffd.c: the fast walk of [p->start, p->end), re-protecting; callable from any thread. */
int trk_uffd_walk_part(struct trk *t, struct trk_walk_part *p);
/*
 * uffd.c: part @i's result vector and its used count, kept for the tracker's
 * life (zeroing 768 KiB per part per walk would cost the downtime); part 0's
 * is the one a walk on the caller's thread uses.  0 or -ENOMEM.
 */
int trk_uffd_part_vec(struct trk *t, unsigned i, struct page_region **vec, size_t **used);
/* scan_par.c: how many threads a frozen fast walk of @bytes gets (1: walk it alone). */
unsigned trk_walk_threads(const struct trk *t, uint64_t bytes);
/*
 * scan_par.c: the fast walk of [start, end) split across @n threads (from
 * trk_walk_threads()).  Every part's written pages reach out->written in address order,
 * whatever the others' errors (each part re-protected what it reported).
 * 0, or the first part's error in address order.
 */
int trk_walk_parallel(struct trk *t, uint64_t start, uint64_t end, unsigned n,
		      struct trk_scan *out);

/* Whether the mm we attached to is still the process's: 0, -ESRCH exited, -ECHILD exec'd. */
int trk_check_mm(struct trk *t);

/* Read @n ranges of pid into @buf, zero-filling pages nobody can read. */
int trk_vm_read(pid_t pid, int *memfd, const struct trk_range *r, size_t n, void *buf);

/* Read @n pagemap entries from @start; entries past a vanished mm read as 0. */
int trk_pagemap_read(int fd, uint64_t start, size_t n, uint64_t *ent);

/* Pagemap entries read per pread: 512 KiB of entries covers 256 MiB. */
#define TRK_PM_CHUNK 65536

/*
 * Walk the pagemap of @v through @pm (room for TRK_PM_CHUNK entries): every
 * populated page (present or swapped) goes to @present and, when @written is
 * not NULL and its entry has a bit of @wmask, to @written too.  0 or -errno.
 */
int trk_pagemap_populated(int fd, uint64_t *pm, const struct haul_vma *v, struct trk_rl *present,
			  struct trk_rl *written, uint64_t wmask);

/* Whether a 4 KiB page is all zeroes. */
bool trk_page_is_zero(const void *p);
/* Bit i of @zero: page i of @buf (the @n ranges @r read in order) is all zeroes. */
void trk_zero_map(const struct trk_range *r, size_t n, const void *buf, uint64_t *zero);

/* Stop every thread of @pid with ptrace (soft-dirty needs a still target). */
struct trk_frozen {
	pid_t *tids;
	size_t n, cap;
};
int trk_freeze(pid_t pid, struct trk_frozen *f);
void trk_thaw(struct trk_frozen *f);

/*
 * Slices (slice.c).  A walker called for [s, e) stores in *walk_end where it
 * stopped (e when done, less when it stopped early); 0 or -errno.
 */
typedef int (*trk_slice_fn)(void *arg, uint64_t s, uint64_t e, uint64_t *walk_end);
/* End of the slice that starts at @pos: at most @slice bytes on, 2 MiB-aligned, <= @end. */
uint64_t trk_slice_end(uint64_t pos, uint64_t end, uint64_t slice);
/* Call @fn over [start, end) slice by slice, each next slice starting at the last walk_end. */
int trk_slice_walk(uint64_t start, uint64_t end, uint64_t slice, trk_slice_fn fn, void *arg);

/* Monotonic milliseconds. */
double trk_now_ms(void);

/* Memory VMAs of a layout as a range list (what a round tracks). */
int trk_layout_ranges(const struct haul_layout *l, struct trk_rl *out);

#endif
