/*
 * target_int.h - private to src/restore: the restore target as target.c
 * builds it, and the remote-call helpers that the per-resource files
 * (fd_restore.c and the fd kinds) use to rebuild their part in the stub.
 * Only target.c and the restore-side resource files include it.
 */
#ifndef HAUL_RESTORE_TARGET_INT_H
#define HAUL_RESTORE_TARGET_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/proc.h"
#include "common/rsys.h"
#include "common/vma.h"
#include "image.pb-c.h"
#include "restore/restore.h"
#include "restore/restore_int.h"

/*
 * Trampoline: one code page (syscall; int3 at 0, the batch blob
 * RSYS_BATCH_CODE at TRAMP_BLOB), the scratch area, then the batch area
 * (its table of RST_BATCH_MAX entries, then RST_BATCH_DATA bytes of data).
 */
#define TRAMP_CODE     4096UL
#define TRAMP_BLOB     16UL
#define TRAMP_SCRATCH  (64UL << 10)
#define RST_BATCH_MAX  128
#define RST_BATCH_DATA 8192UL
#define TRAMP_BATCH    (RST_BATCH_MAX * RSYS_BENTRY_SIZE + RST_BATCH_DATA)
#define TRAMP_SIZE     (TRAMP_CODE + TRAMP_SCRATCH + TRAMP_BATCH)
/* Keep this far from any VMA: a stack grows into the gap below it. */
#define TRAMP_PAD (16UL << 20)

/* Pages per bitmap chunk: 4 KiB of bits. */
#define BITS_CHUNK_PAGES 32768ULL

struct tvma {
	struct haul_vma v;
	/* 1 bit per page, 1: the page may hold data (not known to be zero); in
	 * chunks of BITS_CHUNK_PAGES, a NULL chunk is all `fill` */
	uint64_t **bits;
	bool fill;
};

/* res_sched.c: a thread's real-time policy, set once its deferred cgroups are joined. */
struct rst_sched_later {
	pid_t tid;
	uint32_t policy, priority;
	bool reset_on_fork;
};

struct rst_target {
	struct rst_target_opts o;
	pid_t mpid; /* M, our child unless detached */
	pid_t stub; /* S, as seen from here */
	int pidfd;  /* S: every signal goes through it, so a reused PID is never hit */
	bool pidns; /* S lives in a new PID namespace */
	int ctl;    /* write end: 'R' once resumed; EOF tells M we are gone */
	int mem;    /* /proc/S/mem */
	struct rsys r;
	bool seized;
	struct rsys *thr; /* the other threads, once created (resume) */
	size_t nthr;
	struct rsys *cur; /* the thread injected calls run in; NULL: the main one */
	uint64_t tramp;	  /* 0 until the first layout */
	struct tvma *v;
	size_t n;
	bool resumed;
	bool waited;
	struct rst_cg_later cg_later;	     /* cgroups frozen at the resume (o.cg_defer_frozen) */
	struct rst_sched_later *sched_later; /* real-time policies set after them (res_sched.c) */
	size_t nsched_later;
	/* shm_restore.c: the shmem objects made, the layout being applied */
	struct rst_tshm *shm;
	size_t nshm;
	size_t nsysv; /* SysV segments made in the stub's IPC namespace */
	bool ipcns;   /* the stub moved to a new IPC namespace for them */
	const struct haul_layout *lay;
	char **posix; /* POSIX shm files this restore created (absent here) */
	size_t nposix;
	struct rst_shm_tree *shm_tree; /* shm_tree.c: the tree's objects, NULL: alone */
	/* check_file (target_layout.c): the last file checked, and whether it passed */
	struct {
		uint64_t dev, ino, src_dev, src_ino;
		bool ok;
	} ident;
	/* vma_ghost.c: deleted mapped files made again whose names an fd still opens */
	struct rst_tghost *vghosts;
	size_t nvghosts;
	/* vma_ghost_pre.c: deleted mapped files made ahead, unnamed, before the state */
	struct rst_preghost {
		uint64_t dev, ino;
		int fd;
	} * pre;
	size_t npre;
	/* how long rst_target_ready took */
	double ready_ms;
	/* target_batch.c: run batches one call at a time (SIGTRAP ignored or queued) */
	bool batch_singly;
	/* fd_presock.c: fd numbers of sockets made before the fd loop, -1 once taken */
	int *presock;
	size_t npresock;
	/* forked with CLONE_FILES (target_fork.c): its fds are its parent's, restored there */
	bool files_shared;
	/* the signal that stops it again as it runs (job control at the dump), 0: none */
	int job_stop;
	/* target_boost.c: SCHED_FIFO during the resume, and what to go back to */
	struct rst_boost {
		bool self, stub;
		struct haul_sched_attr self_saved, stub_saved;
	} boost;
};

/*
 * target_jobstop.c: rst_job_stop_signal: the signal that stops a process
 * of state @ps again (0: it was running); rst_job_stop_send: queue
 * t->job_stop, before the threads are detached; rst_job_stop_check: after
 * the detach, SIGSTOP if it did not stop (dropped in an orphaned group).
 */
int rst_job_stop_signal(const Haul__Img__ProcessState *ps);
void rst_job_stop_send(struct rst_target *t);
void rst_job_stop_check(struct rst_target *t);

/* A shmem object made in the stub (shm_restore.c). */
struct rst_tshm {
	uint64_t dev, ino;  /* on the source: what VMAs and fds name */
	uint64_t tino;	    /* its inode here (a SysV segment's is its shmid: 0 is one) */
	bool gone;	    /* no longer exists here (tino means nothing) */
	long shmid;	    /* SysV: its id here */
	uint64_t size_made; /* SysV: the size it was created with */
	int fdnum;	    /* memfd made for an fd: that fd's number, else -1 */
	bool imported;	    /* made by another process of the tree (shm_tree.c) */
	bool finished;	    /* its size, mode, seals set at resume (rst_shm_finish) */
};

/*
 * Remote calls into the stub (the thread t->cur, else the main one).
 * rst_rcall: inject syscall @nr; 0, the remote -errno, or -errno of ptrace;
 * *@res (may be NULL) gets the raw return.  rst_scratch: the address of the
 * scratch area (TRAMP_SCRATCH bytes).  rst_poke/rst_peek: write/read the
 * stub's memory through /proc/PID/mem.  rst_put_str: copy @s to the scratch
 * area at @off, its remote address in *@addr; -ENAMETOOLONG if it does not fit.
 */
int rst_rcall(struct rst_target *t, long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
	      uint64_t a4, uint64_t a5, long *res);
uint64_t rst_scratch(const struct rst_target *t);
int rst_poke(struct rst_target *t, uint64_t addr, const void *data, size_t len);
int rst_peek(struct rst_target *t, uint64_t addr, void *buf, size_t len);
int rst_put_str(struct rst_target *t, size_t off, const char *s, uint64_t *addr);

/*
 * target_batch.c: independent calls into the stub (the thread t->cur, else
 * the main one) in few round trips (rsys_batch): rst_batch_init, then
 * rst_bcall for each call in order (@flags RSYS_BMAYFAIL: its failure does
 * not stop the list; @name, a string constant, names it in messages),
 * rst_bdata to place pointed-to data (its remote address in *@addr, valid
 * until the batch runs), and rst_batch_run.  A full table or data area
 * runs what it holds first.  rst_batch_run returns 0, or the remote -errno
 * of the first call that failed (later ones did not run) with "NAME (call I
 * of N in thread TID)" in b->what (I counts from 1) and its index (from 0)
 * in b->failed for the caller's message, or a -errno of ptrace (logged).  Once a run failed, later
 * rst_bcall/rst_bdata do nothing and rst_batch_run returns that error.
 * The caller's struct may live on its stack (~18 KiB).
 * Tests: HAUL_FAULT=fail:batch:NAME[:N] makes the Nth call named NAME (the
 * first by default) an unknown system call, which fails with ENOSYS.
 */
struct rst_batch {
	struct rsys_bcall c[RST_BATCH_MAX];
	size_t n;
	uint8_t data[RST_BATCH_DATA];
	size_t dlen;
	size_t done;   /* calls run by earlier, full tables of this batch */
	size_t failed; /* after a remote failure: its index among all calls added */
	int err;
	char what[96];
};
void rst_batch_init(struct rst_batch *b);
/* A batch on the heap (it is large), empty; NULL when out of memory. */
struct rst_batch *rst_batch_new(void);

/* target_threads.c: the image's other threads, made in the stub with their TIDs. */
int rst_create_threads(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl);
void rst_bcall(struct rst_target *t, struct rst_batch *b, uint32_t flags, const char *name, long nr,
	       uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4, uint64_t a5);
void rst_bdata(struct rst_target *t, struct rst_batch *b, const void *d, size_t len,
	       uint64_t *addr);
int rst_batch_run(struct rst_target *t, struct rst_batch *b);
/*
 * Whether @ps's batches must run one call at a time (t->batch_singly): it
 * ignores SIGTRAP or has one queued, which the blob's trap would reset or
 * deliver (rsys.h).
 */
bool rst_batch_sigtrap_taken(const Haul__Img__ProcessState *ps);
/* Round trips into the stub and its threads so far, and the ms they took (debug timings). */
unsigned long rst_round_trips(const struct rst_target *t);
double rst_round_trips_ms(const struct rst_target *t);

/*
 * target_boost.c: rst_boost_begin runs our thread and the stub SCHED_FIFO
 * (quietly nothing without CAP_SYS_NICE or when we are real-time already);
 * rst_boost_end_tracees puts the stub and any thread of it back (before
 * its timer slack is set and its threads cloned), rst_boost_end ourselves
 * too.  Idempotent.
 */
void rst_boost_begin(struct rst_target *t);
void rst_boost_end_tracees(struct rst_target *t);
void rst_boost_end(struct rst_target *t);

#define RST_MADV_GUARD_INSTALL 102 /* Linux 6.13 */
#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 1
#endif
#ifndef SYS_mseal
#define SYS_mseal 462
#endif

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef PTRACE_GET_RSEQ_CONFIGURATION
#define PTRACE_GET_RSEQ_CONFIGURATION 0x420f
#endif
#ifndef PR_SET_MM_MAP
#define PR_SET_MM_MAP 14
#endif
#define ARCH_MAP_VDSO_64_     0x2003
#define RSEQ_FLAG_UNREGISTER_ 1

struct clone_args_ {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
		set_tid_size, cgroup;
};

/* The exit status a helper process mirrors for a wait() @status. */
int rst_exit_code(int status);

/* 6.11's MAP_DROPPABLE; not in the libc headers. */
#define RST_MAP_DROPPABLE 0x08

/*
 * target_layout.c: rst_tvmas_free frees @n VMAs of the target's table and
 * the table; rst_create_prot: the protection a VMA is created with (before
 * its pages are written).
 */
void rst_tvmas_free(struct tvma *v, size_t n);
/*
 * target_layout.c: map the file open at stub fd @fd (a deleted file made
 * again, vma_ghost.c) privately over placeholder @o at its offset, with the
 * pages written into the placeholder (its bits) copied over, its protection
 * and advice.  0 or -errno, said.
 */
int rst_target_map_ghost(struct rst_target *t, struct tvma *o, int fd);
uint32_t rst_create_prot(const struct haul_vma *v);

/*
 * shm_restore.c: rst_shm_map: map [@s, @e) of shmem VMA @v of layout @l
 * (NULL: @v alone) in the stub, creating its object the first time (by
 * kind: memfd, SysV, shared anonymous) or mapping the object made for
 * another VMA.  rst_shm_finish: at resume, sizes, SysV mode and owners,
 * memfd seals (of a memfd no fd holds), from @ps; 0 or -errno with @why.
 * rst_shm_release: forget them (the stub keeps them).
 */
int rst_shm_map(struct rst_target *t, const struct haul_layout *l, const struct haul_vma *v,
		uint64_t s, uint64_t e);
int rst_shm_finish(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl);
void rst_shm_release(struct rst_target *t);
/*
 * For memfd fds (fd_memfd.c).  rst_shm_open: open, in the stub, the object
 * made for source (@dev, @ino), mapped or held by an fd restored before:
 * *@fd; -ENOENT when there is none yet.  rst_shm_memfd_new: make memfd @o
 * (name from @path) for the fd that will be @fdnum: *@fd.
 * rst_shm_finish_memfd: its size and seals, through @fd open here.
 */
int rst_shm_open(struct rst_target *t, uint64_t dev, uint64_t ino, int oflags, long *fd);
int rst_shm_memfd_new(struct rst_target *t, const Haul__Img__ShmObject *o, const char *path,
		      int fdnum, long *fd);
int rst_shm_finish_memfd(struct rst_target *t, const Haul__Img__ShmObject *o, int fd);
/*
 * POSIX shm (a file under /dev/shm) absent here: rst_shm_posix_create
 * makes @v's file as large as @l's VMAs reach; its pages are then written
 * like memory (rst_shm_posix_ours), rst_shm_finish gives it size, mode and
 * owner, or fails naming it when bytes outside the mappings were lost.
 */
int rst_shm_posix_create(struct rst_target *t, const struct haul_layout *l,
			 const struct haul_vma *v);
bool rst_shm_posix_ours(const struct rst_target *t, const char *path);

/*
 * fd_restore.c: every fd of @ps in the stub, at its number, with its open
 * file description shared as in the image, then what needs all of them
 * (pipe and socketpair contents, epoll targets, locks, O_ASYNC owners).
 * 0 or -errno with the reason in @why naming the fd.
 */
int rst_restore_fds(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl);

/*
 * fd_presock.c: rst_fd_presock makes, in batches, the socket of the first fd
 * of every AF_INET/AF_INET6 socket of x->ps at that fd's number, right
 * after the stub's fds were closed; 0 or -errno with @why naming the fd.
 * rst_fd_presock_take: whether fd @fd's socket was made so (once).
 */
struct rst_fd_rctx;
int rst_fd_presock(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl);
bool rst_fd_presock_take(struct rst_target *t, int fd);

/*
 * caps.c: the capability sets of Creds (read at dump: restore_int.h).
 * rst_caps_before_ids() adds its calls to @b, which the caller runs with
 * the id changes; rst_caps_after_ids() runs its own; both in the current
 * thread (no-ops for an image without them).  0 or -errno.
 */
bool rst_caps_carried(const Haul__Img__Creds *c);
void rst_caps_before_ids(struct rst_target *t, struct rst_batch *b, const Haul__Img__Creds *c);
int rst_caps_after_ids(struct rst_target *t, const Haul__Img__Creds *c);

/*
 * res_sched.c: the real-time policies sched_apply left for after the
 * cgroup moves deferred to the commit (rst_cg_place_later): set now, a
 * failure only warned of (the process runs, committed).
 */
void rst_sched_place_later(struct rst_target *t);

/*
 * cwd_ghost.c: the directory the task batch chdirs to, g->path: the
 * image's cwd, or, when it was deleted, one made again for the chdir
 * (g->pfd >= 0: rst_cwd_ghost_end removes it once the stub is in it).
 * 0 or -errno with @why.
 */
struct rst_cwd_ghost {
	char path[4096];
	char name[256]; /* its last component, in g->pfd */
	int pfd;	/* its parent directory; -1: nothing made */
};
int rst_cwd_ghost_begin(struct rst_target *t, const Haul__Img__ProcessState *ps,
			struct rst_cwd_ghost *g, char *why, size_t wl);
void rst_cwd_ghost_end(struct rst_target *t, struct rst_cwd_ghost *g);

#endif
