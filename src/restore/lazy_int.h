/*
 * lazy_int.h - the fault server's private declarations, shared by lazy.c
 * (the public calls), lazy_region.c (regions and statistics), lazy_copy.c
 * (copying into the process), lazy_fault.c (events and the fault thread)
 * and lazy_fetch.c (the fetcher threads).  Nothing outside src/restore
 * includes it; the public API is lazy.h.  The design and its invariants
 * (one copier, the bitmaps under lz->lock) are in lazy.c's opening comment.
 */
#ifndef HAUL_RESTORE_LAZY_INT_H
#define HAUL_RESTORE_LAZY_INT_H

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/policy.h"
#include "restore/lazy.h"

#define PG	     HAUL_PAGE_SIZE
#define MAX_MSGS     64
#define HIST_SUB     8
#define HIST_BUCKETS 512
/* The fault-latency timeline: one histogram per 250 ms after the start, the last holds the rest. */
#define TL_SLOT_NS 250000000ull
#define TL_SLOTS   64

/* The events we need; each makes the process wait until the fault thread reads it. */
#define LAZY_EVENTS                                                                                \
	(UFFD_FEATURE_EVENT_REMAP | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP |         \
	 UFFD_FEATURE_EVENT_FORK)

struct lz_region {
	uint64_t start, end; /* where it is in the restored process now */
	uint64_t src;	     /* the source address of start */
	uint64_t *done, *zero, *claimed;
	uint64_t missing; /* pages not done */
};

/* One stream of the adaptive fault window (lazy_window.c): its last window, in source pages. */
struct lz_win_stream {
	uint64_t lo, hi;
	uint32_t pages; /* hi - lo; 0: unused */
	uint64_t used;	/* lz_win.tick when it last grew or started */
	uint32_t tid;	/* the thread whose fault it last served; 0: unknown */
};

/* The push's pace while the process faults (lazy_pace.c).  Under lz->lock. */
struct lz_pace {
	uint64_t bps;	  /* push bytes a second while faulting; 0: not paced */
	uint64_t next_ns; /* when the next paced push fetch may go */
	uint64_t step_ns; /* when the last step (a look at the queue) was */
	/* fault fetch times: over the base in this step (sum, count); the base's epochs */
	uint64_t step_sum_ns, step_n, base_ns, base_prev_ns, epoch_ns;
	/* the push's delivery: the window in progress, the last one, the fastest */
	uint64_t win_start_ns, win_bytes, rate_bps, rate_max_bps;
	bool waited; /* a push fetch waited for the pace in this step */
};

/* A fault as the window sees it (lazy_window.c). */
struct lz_win_fault {
	uint64_t page;	/* the faulting source page */
	uint64_t below; /* present pages just below it, counted up to LAZY_WIN_GAP_PAGES */
	uint64_t above; /* present pages just above it, likewise */
	uint32_t tid;	/* the faulting thread (UFFD_FEATURE_THREAD_ID); 0: unknown */
};

/* The fault window's state of one address space.  Fault thread only. */
struct lz_win {
	struct lz_win_stream s[LAZY_WIN_STREAMS];
	uint64_t tick;
};

/* One address space to fill: the restored process, or a child it forked during post-copy. */
struct lz_mm {
	int uffd;	     /* -1 once dead */
	bool dead;	     /* exited or exec'd: nothing more to copy */
	bool scanned;	     /* a child: its pid was looked for (kids_scan) */
	struct lz_region *r; /* sorted by start */
	size_t nr;
	uint64_t missing;  /* pages not done */
	struct lz_win win; /* the fault window's streams (lazy_window.c) */
};

struct lz_chunk {
	struct lz_mm *mm; /* whose pages */
	uint64_t src;	  /* source address of the first page */
	uint32_t npages;  /* fetched */
	uint32_t off;	  /* pages copied (or skipped) so far */
	void *buf;
	struct lz_chunk *next;
};

/*
 * A fault window: queued for a fault-fetch thread, being fetched, or fetched
 * and waiting for the fault thread (ahead of background chunks).
 */
struct lz_req {
	struct lz_mm *mm;
	uint64_t src;	 /* source address of the first page */
	uint32_t npages; /* fetched */
	uint32_t off;	 /* pages copied (or skipped) so far */
	uint32_t filled; /* of those, filled by this copy (it woke their waiters) */
	bool force;	 /* one page marked present: copied even though done */
	bool busy;	 /* fault thread only: in flight or not yet copied */
	void *buf;
	struct lz_req *next;
};

/* A fault read and not answered yet; with @req, waiting for that window. */
struct lz_pend {
	struct lz_mm *mm;
	uint64_t addr;
	uint64_t t0;
	struct lz_req *req;
	uint32_t tid; /* the faulting thread; 0 without UFFD_FEATURE_THREAD_ID */
};

/* A descendant of the restored process: killed with it on failure. */
struct lz_kid {
	pid_t pid;
	int pidfd;
};

struct rst_lazy {
	int pidfd, stopfd, readyfd;
	pid_t pid;
	struct rst_lazy_source src;
	unsigned nfetchers, nrunning;
	uint32_t chunk_pages;
	/* rst_lazy_on_fork(): told each forked child's uffd, under lock */
	void (*fork_fn)(void *arg, int uffd);
	void *fork_arg;
	/* the push's window (LAZY_PUSH_WINDOW_*), under lock */
	uint32_t push_window, push_window_max, push_inflight;
	unsigned faults_inflight; /* fault windows being fetched */
	uint64_t last_fault_ns;	  /* now_ns() when a fault was last read; under lock */
	uint32_t fault_chunk;	  /* pages per push fetch while faulting; under lock */
	uint32_t fault_chunk_cap; /* fault_chunk grows no further (a slow fault's half) */
	uint32_t cap_fast;	  /* fast faults at the cap since it last grew */
	struct lz_pace pace;	  /* the push's pace while faulting; under lock */
	bool fetch_inline;	  /* fault thread only: the next window may be fetched on it */
	pthread_t fault_thread;
	pthread_t *fetch_threads;
	pthread_t *ufetch_threads; /* fault-fetch threads */
	unsigned nurunning;
	bool started;

	pthread_mutex_t lock;
	pthread_cond_t cv;  /* fetchers: a free buffer, new work or stop; waiters: finished */
	pthread_cond_t ucv; /* fault-fetch threads: a window to fetch or stop */
	struct lz_mm **mm;  /* mm[0]: the restored process; never freed before rst_lazy_free */
	size_t nmm;
	uint64_t missing;  /* over every live mm */
	size_t hint_mm;	   /* where the background push continues: this mm ... */
	uint64_t hint;	   /* ... from this address */
	uint64_t work_gen; /* bumped when new work appears (a fork) or the push window has room */
	struct lz_chunk *chunks;
	struct lz_chunk *free_list, *ready_head, *ready_tail;
	struct lz_req *reqs;		  /* LAZY_FAULT_SLOTS */
	struct lz_req *uq_head, *uq_tail; /* fault windows to fetch */
	struct lz_req *ur_head, *ur_tail; /* fault windows fetched: the fault thread copies them */
	bool stopping, finished;
	bool marked; /* rst_lazy_mark_present() was used */
	bool exited; /* the restored process died before it had everything */
	int result;
	int fetch_err;
	uint64_t t_start;
	struct rst_lazy_stats st;
	uint32_t hist[HIST_BUCKETS];
	/* the timeline of fault latencies (rst_lz_timeline_log) */
	uint32_t tl_hist[TL_SLOTS][HIST_BUCKETS];
	uint32_t tl_faults[TL_SLOTS];
	uint64_t tl_max_ns[TL_SLOTS];

	/* fault thread only */
	struct lz_chunk *cur;
	struct lz_req *ucur; /* fault window being copied */
	struct lz_kid *kids;
	size_t nkids;
};

static inline uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

/* ---- bitmaps ----------------------------------------------------------------- */

static inline bool bit_test(const uint64_t *b, uint64_t i)
{
	return b[i / 64] >> (i % 64) & 1;
}

static inline void bit_set(uint64_t *b, uint64_t i)
{
	b[i / 64] |= 1ull << (i % 64);
}

static inline uint64_t *bits_new(uint64_t n)
{
	return calloc((n + 63) / 64 + 1, sizeof(uint64_t));
}

/*
 * Take the first element of the queue @head .. @tail (lz_chunk or lz_req,
 * linked by ->next), or NULL when it is empty.  Under lz->lock.
 */
#define lz_queue_pop(head, tail)                                                                   \
	({                                                                                         \
		__typeof__(head) e_ = (head);                                                      \
                                                                                                   \
		if (e_) {                                                                          \
			(head) = e_->next;                                                         \
			if (!(head))                                                               \
				(tail) = NULL;                                                     \
		}                                                                                  \
		e_;                                                                                \
	})

/* The first i in [from, n) set in neither @a nor @b, or n. */
static inline uint64_t find_clear2(const uint64_t *a, const uint64_t *b, uint64_t from, uint64_t n)
{
	uint64_t i = from;

	while (i < n) {
		uint64_t w = ~(a[i / 64] | b[i / 64]) & (~0ull << (i % 64));

		if (w) {
			i = (i & ~63ull) + __builtin_ctzll(w);
			return i < n ? i : n;
		}
		i = (i & ~63ull) + 64;
	}
	return n;
}

/* lazy_region.c */
void rst_lz_region_release(struct lz_region *rg);
int rst_lz_region_init(struct lz_region *rg, uint64_t start, uint64_t end, uint64_t src);
int rst_lz_region_slice(const struct lz_region *rg, uint64_t s, uint64_t e, uint64_t at,
			struct lz_region *out);
struct lz_region *rst_lz_region_find(struct lz_mm *mm, uint64_t addr);
struct lz_region *rst_lz_region_find_src(struct lz_mm *mm, uint64_t src);
int rst_lz_regions_insert(struct rst_lazy *lz, struct lz_mm *mm, struct lz_region *add,
			  size_t nadd);
int rst_lz_regions_cut(struct rst_lazy *lz, struct lz_mm *mm, uint64_t s, uint64_t e);
unsigned rst_lz_hist_idx(uint64_t ns);
uint64_t rst_lz_hist_pct(const uint32_t *h, uint64_t total, double pct);
void rst_lz_timeline_add(struct rst_lazy *lz, uint64_t t0, uint64_t dt);
void rst_lz_timeline_log(struct rst_lazy *lz);

/* lazy_copy.c */
void rst_lz_mark_done(struct rst_lazy *lz, struct lz_mm *mm, struct lz_region *rg, uint64_t i,
		      uint64_t n);
int rst_lz_uffd_wake(struct lz_mm *mm, uint64_t addr);
int rst_lz_fetch_fault(struct rst_lazy *lz, uint64_t addr, uint32_t npages, void *buf);
void rst_lz_fault_served(struct rst_lazy *lz, uint64_t t0);
int rst_lz_pend_answered(struct rst_lazy *lz, struct lz_pend *pend, size_t *npend, size_t k,
			 int ret);
int rst_lz_serve_fault(struct rst_lazy *lz, struct lz_pend *pf);
int rst_lz_copy_req(struct rst_lazy *lz, struct lz_req *q);
int rst_lz_req_done(struct rst_lazy *lz, struct lz_req *q, struct lz_pend *pend, size_t *npend,
		    bool *stalled);
int rst_lz_push_slice(struct rst_lazy *lz);

/* lazy_fault.c */
void rst_lz_fork_notify(struct rst_lazy *lz, struct lz_mm *mm);
void rst_lz_mm_dead(struct rst_lazy *lz, struct lz_mm *mm);
void rst_lz_finish(struct rst_lazy *lz, int result);
void rst_lz_kill_process(struct rst_lazy *lz);
void rst_lz_close_all(struct rst_lazy *lz);
void *rst_lz_fault_main(void *arg);

/* lazy_window.c */
/*
 * The window the fault @f fetches: *@lo and *@npages, source pages with
 * @f->page among them; updates @w's streams.  The caller clips it to the
 * region and to the missing pages around the fault.
 */
void rst_lz_window_pick(struct lz_win *w, const struct lz_win_fault *f, uint64_t *lo,
			uint32_t *npages);

/* lazy_fetch.c: a fault's fetch took @dt ns: the push's fetch size while faulting.  Under lz->lock. */
void rst_lz_fault_chunk_adapt(struct rst_lazy *lz, uint64_t dt);

/* lazy_pace.c, under lz->lock but rst_lz_pace_log; the _at forms take the time (tests) */
/* At the resume: the push starts at LAZY_PACE_START_MBPS. */
void rst_lz_pace_start(struct rst_lazy *lz);
/* @npages push pages arrived at @now: the push's delivery rate. */
void rst_lz_pace_delivered_at(struct rst_lazy *lz, uint32_t npages, uint64_t now);
/* A fault's fetch took @dt ns, done at @now: the pace follows the queue it shows. */
void rst_lz_pace_fault_at(struct rst_lazy *lz, uint64_t dt, uint64_t now);
/*
 * When a push fetch of @npages may go (CLOCK_MONOTONIC ns; 0: now), and
 * the pace's clock moves past it; @faulting: the process faults (no pace
 * otherwise).
 */
uint64_t rst_lz_pace_slot_at(struct rst_lazy *lz, uint32_t npages, bool faulting, uint64_t now);
/* Log what the pace did (takes lz->lock). */
void rst_lz_pace_log(struct rst_lazy *lz);

/* lazy_fetch.c */
void *rst_lz_fetch_main(void *arg);
void *rst_lz_ufetch_main(void *arg);
/*
 * The fault thread fetches window @q itself and queues it to be copied, as
 * a fault-fetch thread would (lazy_fetch.c).  Only when it is the one fault
 * waiting and nothing else is in flight: it saves two thread hand-overs.
 * Called with faults_inflight already counted for @q.
 */
bool rst_lz_ufetch_inline(struct rst_lazy *lz, struct lz_req *q, bool pays);

#endif
