/*
 * lazy.h - post-copy (lazy) restore: the userfaultfd fault server.
 *
 * The lazy module's public header: src/haul/postcopy.c (which plugs the
 * network in), src/restore/sink.c, bench/lazy_bench.c and the tests use it;
 * the fault server's own declarations are in lazy_int.h.  A restored process whose anonymous memory has not arrived yet has
 * that memory registered with userfaultfd in missing mode.  struct rst_lazy
 * owns the uffd and one fault thread that answers every fault and every
 * mm event (unmap, remap, remove) of that process, fetching page contents
 * from a source (a local buffer, a page store, or the migration source over
 * the wire) and pushing what was not asked for in the background, in the
 * order the faults suggest, until every page is present.
 *
 * Order of use on the restore target (DESIGN.md "The restorer must never wait
 * for a lazy page"; tests/integration/lazy_restore.c):
 *   1. rst_lazy_uffd_create(): with the stub stopped and its layout final,
 *      create the uffd inside it and register the lazy VMAs;
 *   2. rst_lazy_new() + rst_lazy_start(): the fault thread runs BEFORE any
 *      further injected syscall can touch lazy memory (rseq, set_robust_list,
 *      process_vm_writev of non-lazy state are fine; anything that reads or
 *      writes a lazy page blocks until this thread answers);
 *   3. resume the process; rst_lazy_wait_complete(); rst_lazy_free().
 * If a fetch fails (the link or the source died), the process cannot
 * continue: the fault thread says so and SIGKILLs it, so nothing hangs.
 */
#ifndef HAUL_RESTORE_LAZY_H
#define HAUL_RESTORE_LAZY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/rsys.h"
#include "common/vma.h"
#include "pageserver/pageserver.h"

/*
 * The largest fault window: 64 KiB (issue 6), clipped to the VMA.  A fault
 * fetches its page alone unless it continues a walk through an earlier
 * window, which then doubles up to this (lazy_window.c): at 1 Gbit/s 64 KiB
 * is 0.5 ms on the wire, wasted on a random writer.
 */
#define LAZY_FAULT_AROUND_PAGES 16
/* Fault windows followed at once: one per thread walking its own way. */
#define LAZY_WIN_STREAMS 4
/*
 * How far a fault may land past a stream's window and still continue it when
 * every page between is present (the push filled them just ahead of the walk):
 * 4 MiB, the bitmap walk it costs is ~1024 bit tests per fault.
 */
#define LAZY_WIN_GAP_PAGES 1024
/* Pages per background fetch: 1 MiB amortises a network round trip to ~10% at 3 GB/s. */
#define LAZY_PUSH_CHUNK_PAGES 256
/* Pages per background UFFDIO_COPY between two looks at the uffd: bounds fault latency
 * to one 64 KiB copy (~16 us warm, ~160 us into never-touched memory here). */
#define LAZY_PUSH_SLICE_PAGES 16
/*
 * The background push's window: pages it may have requested and not yet
 * received.  A fault's window queues behind them on the link, on the
 * source's threads and in the page server's loop.  While the process faults
 * (a fault read in the last LAZY_FAULT_RECENT_MS, and from the resume on:
 * it ran an instant before) the push's fetches start at
 * LAZY_PUSH_FAULTING_PAGES, one per fetcher: behind 1 MiB chunks a fault
 * waited 0.9 ms (p50, 1 GiB at 64 MiB/s, loopback, 2 cores), behind 64 KiB
 * ones 0.3 ms; over 1 Gbit/s behind 64 KiB ones 0.59 ms, behind 16 KiB ones
 * 0.39-0.43 ms with the link as full (1 GiB in 9.0 s either way), and
 * smaller fetches gained nothing more (bench/RESULTS.md, stop 30).  The
 * fetch grows by LAZY_PUSH_FAULTING_PAGES per fault fetch back within
 * LAZY_FAULT_FAST_US (the 50 ms a tick of issue 16 over 161 faults: the
 * push ahead costs the fault little), up to a cap; past twice that it drops
 * to the floor and the cap to half what was out (rst_lz_fault_chunk_adapt,
 * lazy_fetch.c).  When a
 * fault's fetch still takes longer than LAZY_FAULT_TARGET_US (half the 2 ms
 * p99 of issue 16) the window halves, down to LAZY_PUSH_WINDOW_MIN_PAGES
 * (one fetch: 0.13 ms at 1 Gbit/s); it widens by
 * LAZY_PUSH_WINDOW_STEP_PAGES per fault fetch back within
 * LAZY_FAULT_FAST_US (a slow one was a busy CPU, not the link), and per
 * push fetch once faults have stopped, up to all fetchers' whole chunks,
 * which amortise the round trip.
 */
#define LAZY_FAULT_TARGET_US	 1000
#define LAZY_FAULT_RECENT_MS	 20
#define LAZY_FAULT_FAST_US	 250
#define LAZY_PUSH_FAULTING_PAGES 4
/* Fast faults at the fetch size's cap before the cap grows a page (lazy_fetch.c). */
#define LAZY_PUSH_CAP_REGROW	    16
#define LAZY_PUSH_WINDOW_MIN_PAGES  4
#define LAZY_PUSH_WINDOW_STEP_PAGES 16
/*
 * The push's pace while the process faults (lazy_pace.c).  Each fault
 * fetch's time over the base (the fastest of the last one or two
 * LAZY_PACE_EPOCH_MS, each sample counted at most 4 x LAZY_PACE_QUEUE_US)
 * is averaged over a step of LAZY_PACE_STEP_US (~8 faults at 1 Gbit/s): a
 * mean over LAZY_PACE_QUEUE_US (a 1 Gbit/s link holding 12 KiB of push ahead
 * of the faults) cuts the pace by 1/8, one under half of it raises a pace
 * that held the push back by 1/8.  The push starts at LAZY_PACE_START_MBPS
 * at the resume (the process faults at once) and never goes under
 * LAZY_PACE_MIN_MBPS nor under 1/LAZY_PACE_FLOOR_DIV of its fastest
 * LAZY_PACE_WINDOW_MS window, so that a queue of busy CPUs cannot starve it.
 * Measured at 1 Gbit/s (bench/RESULTS.md, stop 31): 100 us gave faults of
 * 0.16-0.18 ms p50 (0.43 unpaced), p99 at most 1.2 ms, all memory 8-30%
 * later; 150 us lost less time but let p99 reach 1.6-3.7 ms.
 */
#define LAZY_PACE_EPOCH_MS   500
#define LAZY_PACE_QUEUE_US   100
#define LAZY_PACE_STEP_US    2000
#define LAZY_PACE_WINDOW_MS  10
#define LAZY_PACE_FLOOR_DIV  2
#define LAZY_PACE_START_MBPS 16
#define LAZY_PACE_MIN_MBPS   16
/* Background fetch threads: two overlap one fetch with the other's copy. */
#define LAZY_DEFAULT_FETCHERS 2
/*
 * A fault that is the only one waiting, with no other window in flight, is
 * fetched on the fault thread itself (two thread wake-ups fewer) when the
 * push has been moving at least LAZY_INLINE_MIN_MBPS since the resume (after
 * LAZY_INLINE_AFTER_MS): there the round trip is the threads' and the CPUs',
 * and on loopback such faults took 60-120 us against 0.36-0.43 ms through a
 * fault-fetch thread (the blocked fault thread also holds the push back, so
 * all memory arrives later: 1 GiB in 2.0-2.4 s against 1.7-2.0 s).  Over
 * 1 Gbit/s (~118 MB/s pushed) the round trip is the link's, the push must
 * keep it busy meanwhile, and blocking doubled the p99 (1.6 -> 3.2-3.4 ms).
 * The rate is judged from 20 ms on: the first tick after the resume writes a
 * backlog of up to 161 missing pages, and through the fault-fetch threads
 * that tick took 70-105 ms on the 2-core VM (client gap 88 ms; 40-43 ms
 * with the decision at 20 ms; over 1 Gbit/s p99 1.51 ms, unchanged).
 */
#define LAZY_INLINE_MIN_MBPS 250
#define LAZY_INLINE_AFTER_MS 20
/* Fetched chunks waiting to be copied, per fetcher. */
#define LAZY_BUFS_PER_FETCHER 2
/* Fault-fetch threads: fault windows are fetched off the fault thread, which
 * copies meanwhile; two let two faulting threads wait on the source at once. */
#define LAZY_FAULT_FETCHERS 2
/* Fault windows in flight or fetched and not yet copied (64 KiB each); a fault
 * that finds none free waits until a window is copied. */
#define LAZY_FAULT_SLOTS 16

/*
 * Where page contents come from.  fetch() fills @buf with @npages pages of
 * the source process at source address @addr (the address the pages had
 * when the process was frozen; remaps on the target are translated here).
 * It is called from the fault-fetch threads and the fetcher threads
 * concurrently, so it must be thread-safe.  Returns 0 or -errno; any error is fatal to
 * the restored process (it is killed: its memory can no longer arrive).
 * -ESRCH is reserved for "the restored process exited": a source that is
 * gone says -EHOSTDOWN, a broken link -ECONNRESET/-EPIPE/-ETIMEDOUT.
 */
struct rst_lazy_source {
	int (*fetch)(void *arg, uint64_t addr, uint32_t npages, void *buf);
	void *arg;
	/*
	 * Optional: what the fault-fetch threads call instead of fetch() (a
	 * process is waiting on these pages): a source may give them a path of
	 * their own so that they do not queue behind background chunks.
	 */
	int (*fetch_fault)(void *arg, uint64_t addr, uint32_t npages, void *buf);
	/*
	 * Optional: a fault fetch quick enough for the fault thread to wait for
	 * itself when one fault alone is waiting and no window is out (two
	 * thread wake-ups fewer a fault): 0 with @buf filled, or -EAGAIN when
	 * that path cannot take it now (busy, absent, broken), and the window
	 * goes to a fault-fetch thread as usual.
	 */
	int (*fetch_fault_try)(void *arg, uint64_t addr, uint32_t npages, void *buf);
};

struct rst_lazy_opts {
	int uffd;  /* API'd and registered (rst_lazy_uffd_create); owned by rst_lazy */
	pid_t pid; /* the restored process: SIGKILLed when its memory cannot arrive */
	const struct haul_layout *vmas; /* the registered VMAs; every page missing at first */
	struct rst_lazy_source src;
	unsigned fetchers;    /* background fetch threads; 0: LAZY_DEFAULT_FETCHERS */
	unsigned chunk_pages; /* pages per background fetch; 0: LAZY_PUSH_CHUNK_PAGES (the most) */
};

struct rst_lazy_stats {
	uint64_t total_pages;	/* pages of the lazy VMAs at start */
	uint64_t present_pages; /* of those, found in place at attach (eager, pre-copy rounds) */
	uint64_t settled_pages; /* of those, taken as in place or zero unseen (hybrid, complete) */
	uint64_t missing_pages; /* pages not yet present (or dropped by unmap/remove) */
	uint64_t faults;	/* fault messages answered */
	uint64_t faults_inline; /* fault windows the fault thread fetched itself */
	uint64_t fault_pages;	/* pages copied because of a fault (with fault-around) */
	uint64_t pushed_pages;	/* pages copied by the background push */
	uint64_t zero_pages;	/* faults answered with zeros (memory the process zapped) */
	uint64_t zero_filled;	/* pages whose contents were all zeros: mapped, not copied */
	uint64_t fetched_bytes; /* bytes asked of the source */
	uint64_t eexist;	/* pages that were present already when copied */
	uint64_t eagain;	/* copies retried because the address space was changing */
	uint64_t events;	/* unmap, remap and remove events */
	uint64_t fault_p50_ns;	/* time from reading a fault to waking its thread */
	uint64_t fault_p99_ns;
	uint64_t fault_max_ns;
	uint64_t complete_ns;	  /* from rst_lazy_start() until all present; 0 until then */
	uint32_t push_window_min; /* the smallest push window reached (pages) */
	uint64_t pace_min_bps;	  /* the slowest pace set while faulting (0: never paced) */
	uint64_t paced_fetches;	  /* push fetches that waited for their pace */
	uint64_t attach_ns; /* rst_lazy_attach(): uffd injected, registered, threads started */
};

struct rst_lazy;

/* Whether @v can be restored lazily: private anonymous or shmem memory (not SysV), not mlocked. */
bool rst_lazy_vma_ok(const struct haul_vma *v);

/*
 * With @r attached to the stopped process (rsys_seize or rsys_attach_stopped;
 * the calling thread is its tracer), create a userfaultfd inside it, pull
 * the fd into this process (pidfd_getfd), close it there, enable missing
 * faults with the unmap/remap/remove events, and register every VMA of
 * @vmas (each must satisfy rst_lazy_vma_ok()).  From here on, an unmap or
 * madvise(DONTNEED) of those VMAs by the process blocks until the fault
 * thread reads the event: start it (rst_lazy_new + rst_lazy_start) before
 * the process or an injected syscall touches that memory.  Returns 0 and
 * the fd in *@uffd, or -errno (-EOPNOTSUPP: no userfaultfd or a missing
 * feature, with a logged reason).
 */
int rst_lazy_uffd_create(struct rsys *r, const struct haul_layout *vmas, int *uffd);

/*
 * The restore target's one call (rst_target_resume, with the address space
 * final and before any other injected syscall): the VMAs of @l that can be
 * lazy (rst_lazy_vma_ok) are registered through @r, the fault server is
 * created for process @pid with @src and started.  Pages already present in
 * those VMAs (written by the restorer: pre-copy rounds, pages sent eagerly)
 * count as arrived and must hold the right contents; zap stale ones first
 * (rst_lazy_zap).  A restorer whose fetches depend on its own thread (the
 * page server's loop) must have every page its injected calls touch written
 * before: the rseq area (the one such page seen: rseq registration writes it).  *@lazy then holds the
 * VMAs made lazy (haul_layout_release() it): every other VMA's pages must be
 * written before resume as in pre-copy.  0 or -errno (nothing is left
 * registered on failure).
 */
int rst_lazy_attach(struct rsys *r, pid_t pid, const struct haul_layout *l,
		    const struct rst_lazy_source *src, struct haul_layout *lazy,
		    struct rst_lazy **out);

/*
 * rst_target_opts.before_resume for post-copy (set .lazy too), with @arg a
 * struct rst_lazy_hook: calls rst_lazy_attach() for the stub.  The caller
 * writes before resume the pages of every VMA that rst_lazy_vma_ok() refuses
 * (file-backed, mlocked), waits with rst_lazy_wait_complete(hook.lz) after
 * the resume, then rst_lazy_free()s it and releases hook.lazy.
 */
struct rst_lazy_hook {
	struct rst_lazy_source src; /* in: where the pages come from */
	/* in (hybrid): pages pre-copied but dirtied again since; zapped before registration;
	 * each inside one VMA that can be lazy */
	const struct rst_lazy_range *stale;
	size_t nstale;
	/*
	 * in (hybrid, State.complete): every other page is in place, or zero
	 * where the stub has none: only the VMAs holding stale pages are
	 * registered, and only the stale pages are fetched
	 */
	bool complete;
	struct rst_lazy *lz;	 /* out: the running fault server */
	struct haul_layout lazy; /* out: the VMAs made lazy */
};
int rst_lazy_before_resume(void *arg, struct rsys *r, const struct haul_layout *l);

/* Take ownership of @o->uffd (closed on failure too). 0 or -errno. */
int rst_lazy_new(const struct rst_lazy_opts *o, struct rst_lazy **out);

/*
 * Before rst_lazy_start(): @npages pages at @addr are in the process
 * already (written before registration) and need no fetch.  They must
 * really be there: a fault on them is answered from the source again.
 */
int rst_lazy_mark_present(struct rst_lazy *lz, uint64_t addr, uint64_t npages);

/*
 * Hybrid switchover: pages written into the stub by pre-copy rounds but
 * dirtied again before the freeze are stale.  Drop @npages pages at @addr
 * of VMA @v (injected madvise through @r, the stub stopped: MADV_DONTNEED
 * for private memory, MADV_REMOVE for shmem, whose page cache DONTNEED
 * would keep) BEFORE rst_lazy_uffd_create, and do not mark them present:
 * they then fault and arrive from the source.  @v must satisfy
 * rst_lazy_vma_ok (-EINVAL otherwise: stale pages of other VMAs must be
 * sent again before resume).  One injected syscall per call (~10-20 us):
 * pass merged ranges.  0 or -errno.
 */
int rst_lazy_zap(struct rsys *r, const struct haul_vma *v, uint64_t addr, uint64_t npages);

/* Start the fault thread and the fetchers. 0 or -errno. */
int rst_lazy_start(struct rst_lazy *lz);

/*
 * Wait until every page is present (0), the process died or exited before
 * (-ESRCH), the source failed (its -errno; the process was killed), or
 * @timeout_ms passed (-ETIMEDOUT; negative: wait for ever).  Any thread.
 */
int rst_lazy_wait_complete(struct rst_lazy *lz, int timeout_ms);

/*
 * After rst_lazy_wait_complete() said -ESRCH, how the process came to need
 * no more of its memory: RST_LAZY_EXITED, *@wstatus its wait status (-1
 * where the kernel cannot tell: before Linux 6.15), or RST_LAZY_EXECED (it
 * runs on, in new memory).  Any thread, until rst_lazy_free().
 */
#define RST_LAZY_EXITED 1
#define RST_LAZY_EXECED 2
int rst_lazy_end(struct rst_lazy *lz, int *wstatus);

/*
 * A duplicate (close-on-exec) of the restored process's uffd while memory
 * is still missing, or -ENOENT once it is closed (complete, or dead).
 * Holding it keeps the registration: missing-page faults wait instead of
 * reading zeros, even if this process dies (the page server's watchdog).
 */
int rst_lazy_dup_uffd(struct rst_lazy *lz);
/*
 * The same for the processes it forks during post-copy: @fn(@arg, uffd) is
 * called, under the fault server's lock, with a duplicate (close-on-exec,
 * @fn owns it) of the uffd of every child forked so far and of each later
 * one as its FORK event is read.  NULL @fn: no more calls.
 */
void rst_lazy_on_fork(struct rst_lazy *lz, void (*fn)(void *arg, int uffd), void *arg);

/* A snapshot of the counters; any thread, any time. */
void rst_lazy_stats(struct rst_lazy *lz, struct rst_lazy_stats *st);

/*
 * Stop the threads and close the uffd.  If memory is still missing, the
 * process is SIGKILLed first (closing the uffd would let it read zeros
 * where its data should be).  NULL is a no-op.
 */
void rst_lazy_free(struct rst_lazy *lz);

/* ---- source side: pages of the frozen process ------------------------------ */

struct rst_lazy_range {
	uint64_t start, end; /* page aligned, end exclusive */
};

/*
 * What the source must send before resume in a post-copy switchover, with
 * @pid frozen and seized by the calling thread: every readable memory VMA
 * of @l that cannot be lazy (rst_lazy_vma_ok), and the page(s) of the rseq
 * area (rseq registration during the restore writes it: with the page
 * server's loop as the restorer's tracer, a lazy page there would deadlock
 * until the stall timeout).  @pid 0: the VMAs only (the process still runs,
 * before the freeze).  *@out is malloc'd.  0 or -errno.
 */
int rst_lazy_eager_ranges(pid_t pid, const struct haul_layout *l, struct rst_lazy_range **out,
			  size_t *n);

/*
 * The source's whole post-copy part, after ps_client_restore() of a lazy
 * session said the process runs on the target: serve the target's page
 * requests from frozen @pid (within @l) until it has every page (0; the
 * caller then kills the source and commits) or the session fails (-errno:
 * the target has killed its copy, see DESIGN "Post-copy").  @idle_ms: give
 * up after that long without a request (0: never).
 */
int rst_lazy_serve(struct ps_client *c, pid_t pid, const struct haul_layout *l, int idle_ms);

struct rst_lazy_src;

/*
 * Serve pages of @pid (frozen, on this host) that lie in @vmas (copied).
 * A pidfd makes sure a reused PID never answers for it.  0 or -errno.
 */
int rst_lazy_src_open(pid_t pid, const struct haul_layout *vmas, struct rst_lazy_src **out);

/*
 * Read @npages pages at @addr (process_vm_readv; /proc/PID/mem for pages the
 * process cannot read itself).  Thread-safe.  0, -ERANGE (not inside the
 * VMAs: a confused or hostile peer), -EHOSTDOWN (the process is gone), or
 * another -errno.
 */
int rst_lazy_src_read(struct rst_lazy_src *s, uint64_t addr, uint32_t npages, void *buf);

/* Pages served so far. */
uint64_t rst_lazy_src_served(struct rst_lazy_src *s);

/* NULL is a no-op. */
void rst_lazy_src_free(struct rst_lazy_src *s);

/* rst_lazy_source.fetch over a struct rst_lazy_src (@arg): source and target on one host. */
int rst_lazy_src_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf);

/* ---- a page server as the source (lazy restore of a stored image) ----------- */

struct rst_lazy_ps;

/*
 * Open @n FETCH sessions (@o->kind is forced to FETCH) to the page server
 * holding the committed image of @o->pid: one per thread that may fetch at
 * once (the fetchers and the fault thread: LAZY_DEFAULT_FETCHERS + 1), since
 * a ps_client serves one request at a time; with n >= 2 the first is kept
 * for faults (rst_lazy_ps_fetch_fault).  0 or -errno.
 */
int rst_lazy_ps_open(const struct ps_client_opts *o, unsigned n, struct rst_lazy_ps **out);

/*
 * rst_lazy_source.fetch over a struct rst_lazy_ps (@arg), for up to
 * WIRE_MAX_REQ_PAGES pages per request (split otherwise).  After one failure
 * every later call fails at once with the same error (the link is gone).
 * rst_lazy_ps_fetch_fault (rst_lazy_source.fetch_fault) uses the first
 * session only, which background fetches never take.
 */
int rst_lazy_ps_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf);
int rst_lazy_ps_fetch_fault(void *arg, uint64_t addr, uint32_t npages, void *buf);

/* NULL is a no-op. */
void rst_lazy_ps_free(struct rst_lazy_ps *p);

/*
 * A live migration's source (post-copy): rst_lazy_source.fetch over
 * ps_session_fetch(), @arg the struct ps_session of the sink's session.
 * Never call it on the page server's loop thread (-EDEADLK): the fault
 * server's threads do.  The source answers with
 * ps_client_serve(c, rst_lazy_src_fetch, src, idle_ms).
 */
int rst_lazy_session_fetch(void *arg, uint64_t addr, uint32_t npages, void *buf);
/* rst_lazy_source.fetch_fault of the same: the session's fault lane, else ps_session_fetch_urgent(). */
int rst_lazy_session_fetch_fault(void *arg, uint64_t addr, uint32_t npages, void *buf);
/* rst_lazy_source.fetch_fault_try of the same: the fault lane alone (ps_session_lane_fetch). */
int rst_lazy_session_fetch_fault_try(void *arg, uint64_t addr, uint32_t npages, void *buf);

#endif
