/*
 * restore_int.h - private to src/restore: the image format version and the
 * helpers dump.c, target.c, sink.c and the image commands share.
 */
#ifndef HAUL_RESTORE_INT_H
#define HAUL_RESTORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/user.h>

#include "common/rsys.h"
#include "common/vma.h"
#include "image.pb-c.h"

/* ProcessState.version: bump when an older restorer would misapply an image. */
#define RST_IMAGE_VERSION 6

/* Largest content of a deleted-but-open file carried inside the state. */
#define RST_DELETED_FILE_MAX (64ULL << 20)

/* x86_64 user address-space end with 4-level page tables (TASK_SIZE_MAX). */
#define RST_TASK_SIZE 0x7ffffffff000ULL

/* A process stopped by rst_seize (seize.c); dump.c reads it. */
struct rst_seized {
	pid_t pid;
	size_t n;
	struct rsys *thr;	      /* thr[0] is the main thread */
	struct user_regs_struct *raw; /* registers as stopped, before rsys rewound them */
	bool held;		      /* injlog_hold() group-stopped it for the injection */
	bool owner_stopped;	      /* in its owner's group-stop before ours (job control) */
};

/*
 * Check what can be checked from /proc without stopping @pid: threads,
 * tracer (unless it is @tracer), seccomp, children, posix timers, fds and
 * VMAs.  Returns 0 or -EOPNOTSUPP with the reason in @why.
 */
int rst_check_resources(pid_t pid, pid_t tracer, char *why, size_t whylen);

/* target_jobstop.c: whether @pid here is stopped (State T in /proc/PID/status: a group-stop). */
bool rst_proc_stopped(pid_t pid);

/*
 * PR_GET_IO_FLUSHER of thread @tid (0: the caller's) given the prctl's
 * @answer there: -EPERM (no CAP_SYS_RESOURCE) becomes the flag read from
 * its task flags where haul can tell them (io_flusher.c); else @answer.
 */
long rst_io_flusher(pid_t tid, long answer);

/*
 * prep.c: at the freeze, before any call is injected, note whether the
 * prepared VmFlags still hold (@p NULL: no-op).
 */
struct rst_dump_prep;
void rst_prep_freeze(struct rst_dump_prep *p);
/* The layout of frozen @pid with VmFlags: from maps + @p when they hold, else smaps. */
int rst_prep_layout(struct rst_dump_prep *p, pid_t pid, struct haul_layout *out);
/* Where @p keeps what vma_ghost_pre.c sent (NULL: @p NULL); the table itself, or NULL. */
struct rst_ghost_pre;
struct rst_ghost_pre **rst_prep_ghost_slot(struct rst_dump_prep *p);
struct rst_ghost_pre *rst_prep_ghosts(struct rst_dump_prep *p);

/*
 * vmcheck.c: whether every VMA of @l can be carried exactly (VmFlags, shared
 * memory); 0 or -EOPNOTSUPP naming the VMA in @why.  rst_vma_precheck reads
 * the VmFlags for it (rst_layout_read_flags, before the process is touched).
 */
int rst_vma_refusal(const struct haul_layout *l, char *why, size_t whylen);
int rst_vma_precheck(pid_t pid, char *why, size_t whylen);

/*
 * vmflags.c: the layout of @pid with VmFlags, as haul_layout_read(pid, true)
 * gives it, but from the kernel's vm_flags words (a BPF iterator) instead of
 * smaps's page-table walk where this haul could learn their bits; else smaps.
 * rst_vmflags_fast: whether the iterator is in use.
 * rst_layout_read_flags_running: for a process that runs and may map all the
 * time, the VMAs that changed between the two reads are left out of @out
 * (prep.c: the dump reads them again at the freeze) instead of falling back
 * to smaps.
 */
int rst_layout_read_flags(pid_t pid, struct haul_layout *out);
int rst_layout_read_flags_running(pid_t pid, struct haul_layout *out);
bool rst_vmflags_fast(void);

/*
 * ipc.c: rst_ipc_read: /proc/sysvipc/@what ("shm", "sem", "msg") as @pid's
 * IPC namespace shows it, NUL-terminated in *@out (free it); 0 or -errno.
 * rst_ipc_precheck: 0, or -EOPNOTSUPP naming in @why a semaphore set or
 * message queue @pid could use (haul carries neither).
 */
int rst_ipc_read(pid_t pid, const char *what, char **out);
int rst_ipc_precheck(pid_t pid, char *why, size_t whylen);
/*
 * shm_precheck.c: 0, or -EOPNOTSUPP naming in @why a shared memory object
 * of @pid that another process maps or attaches too.
 */
int rst_shm_precheck(pid_t pid, char *why, size_t whylen);

/*
 * shm_dump.c: the shared memory objects of @pid into @ps->shm_objects: one
 * per (dev, ino) of its shmem VMAs in @l and of its FD_MEMFD files in @ps.
 * *@buf owns what @ps points to: free it with rst_shm_buf_free (also on
 * failure).  0 or -errno (logged).
 */
struct rst_shm_buf;
Haul__Img__ShmKind rst_shm_kind(const char *path);
/* Whether @path names POSIX shared memory (under /dev/shm). */
bool rst_shm_posix_path(const char *path);
/*
 * The pages of shared VMA @v of @pid whose object holds data (SEEK_DATA):
 * *@n address ranges [start, end) as pairs in *@out (free it).  They may
 * be absent from the process's page tables (swapped out, written through
 * another mapping or an fd), where pagemap does not show them.
 */
int rst_shm_data(pid_t pid, const struct haul_vma *v, uint64_t **out, size_t *n);
int rst_shm_dump(pid_t pid, const struct haul_layout *l, Haul__Img__ProcessState *ps,
		 struct rst_shm_buf **buf);
void rst_shm_buf_free(struct rst_shm_buf *buf);

/* pagemap bit 58 (PM_GUARD_REGION, 6.14+): a guard page (MADV_GUARD_INSTALL), unreadable. */
static inline bool rst_pm_is_guard(uint64_t pm)
{
	return pm >> 58 & 1;
}

struct rst_guard_range {
	uint64_t start, end;
};
struct rst_guards {
	struct rst_guard_range *r; /* sorted, merged */
	size_t n, cap;
};
/*
 * The guard pages of @v (read from the open /proc/PID/pagemap @pagemap;
 * none unless VmFlags "gu"), replacing @g's ranges.  0 or -errno.
 */
int rst_vma_guards(int pagemap, const struct haul_vma *v, struct rst_guards *g);
void rst_guards_release(struct rst_guards *g);

/* The layout carried by a ProcessState, as a haul_layout (release it). */
int rst_state_layout(const Haul__Img__ProcessState *ps, struct haul_layout *out);

/*
 * fd_lock.c: the file locks and leases of an OFD, from its fdinfo text.
 * rst_lock_check: 0, or -EOPNOTSUPP with @why naming fd @fd and @path when
 * a lock cannot be carried.  rst_lock_dump fills @o->locks (free them with
 * rst_lock_free).  rst_lock_call: the syscall that takes @l again on
 * remote fd @fd; when buf_arg >= 0, args[buf_arg] must point at a copy of
 * buf[0..buflen) in the process.
 */
struct rst_lock_call {
	long nr;
	uint64_t args[6];
	int buf_arg;
	uint8_t buf[32];
	size_t buflen;
};
int rst_lock_check(int fd, const char *path, const char *fdinfo, char *why, size_t whylen);
int rst_lock_dump(const char *fdinfo, int fd, Haul__Img__FileObject *o);
int rst_lock_call(const Haul__Img__FileLock *l, int fd, struct rst_lock_call *c);
const char *rst_lock_name(const Haul__Img__FileLock *l);

/*
 * fd_ofd.c: which fds of @k[0..n) (all of @pid, dumped) share one open
 * file description: @lead[i] is the index of the first fd of i's (i for
 * the first itself).
 */
struct rst_ofd_key {
	int fd;
	Haul__Img__FdKind kind;
	uint64_t dev, ino, pos, efd_count;
	uint32_t flags;
};
int rst_ofd_assign(pid_t pid, const struct rst_ofd_key *k, size_t n, size_t *lead);

/*
 * fd_ghost.c: deleted-but-open regular files, carried by content.
 * rst_ghost_bytes: the bytes the image would carry for @st (its data,
 * holes excluded, as far as st_blocks tells).  rst_ghost_dump reads the
 * data extents, owner and times of the file open as @fd in @pid into @o.
 * rst_ghost_create makes a new file like it under a free name near
 * @o->path in the stub's root (a container's), returned in @path with its
 * directory in *@dirfd: content, holes, size, mode, owner, times; the
 * caller opens it for every fd and then unlinks it (rst_ghost_remove).
 */
uint64_t rst_ghost_bytes(const struct stat *st);
int rst_ghost_dump(pid_t pid, int fd, Haul__Img__FileObject *o);
/* The content, size, mode, owner and times of the file at @path into @o (-EFBIG: too large). */
int rst_ghost_read(const char *path, Haul__Img__GhostFile *o);
int rst_ghost_read_fd(int fd, Haul__Img__GhostFile *o);
/* Owner, mode, size and times of @st into @o. */
void rst_ghost_meta(const struct stat *st, Haul__Img__GhostFile *o);
/* Write @o's extents, size, owner, mode and times into new file @fd. */
int rst_ghost_fill(int fd, const Haul__Img__GhostFile *o);
struct rst_target;
int rst_ghost_create(const struct rst_target *t, const Haul__Img__FileObject *o, char *path,
		     size_t plen, int *dirfd);
/*
 * Ahead of rst_ghost_create: a new unnamed file (O_TMPFILE, read-write) in
 * the directory of the stub's root that rst_ghost_create would make
 * @path's file in; its fd or -errno (-EOPNOTSUPP: that filesystem has none).
 * rst_ghost_link names it there as rst_ghost_create would name a new one.
 */
int rst_ghost_tmpfile(const struct rst_target *t, const char *path);
int rst_ghost_link(const struct rst_target *t, const Haul__Img__FileObject *f, int tmpfd,
		   char *path, size_t plen, int *dirfd);
/*
 * The made-again file @path by its directory @dirfd (rst_ghost_create's):
 * removed (and *@dirfd closed, -1; 0 when already), or its stat.
 */
int rst_ghost_remove(int *dirfd, const char *path);
int rst_ghost_fstat(int dirfd, const char *path, struct stat *st);
/*
 * cwd_ghost.c: directory @dir (absolute, in the stub's root) as an O_PATH
 * fd, resolved inside that root (RESOLVE_IN_ROOT); -errno.
 */
int rst_dir_in_root(const struct rst_target *t, const char *dir);

/*
 * vma_ghost.c: files deleted while mapped MAP_PRIVATE, carried by content.
 * rst_vma_ghost: whether @v is one.  rst_vma_ghost_refusal: 0, or
 * -EOPNOTSUPP with @why for a deleted mapping that cannot be carried
 * (shared, AIO ring, linked elsewhere, too large).  rst_vma_ghost_dump:
 * each inode's content into @ps->mapped_ghosts, the allocations in *@priv
 * (rst_vma_ghost_release).  rst_vma_ghost_name: the name a deleted inode
 * was made again under, while an fd of the process still has to open it;
 * rst_vma_ghost_unlink removes those names.
 */
struct rst_target;
bool rst_vma_ghost(const struct haul_vma *v);
int rst_vma_ghost_refusal(pid_t pid, const struct haul_vma *v, char *why, size_t len);
/* @pre: the files sent before the freeze (NULL: none); unchanged ones go as `presented`. */
int rst_vma_ghost_dump(pid_t pid, const struct haul_layout *l, struct rst_ghost_pre *pre,
		       Haul__Img__ProcessState *ps, void **priv, char *why, size_t wl);
/* An absolute path without "." or ".." components, short enough for a ".haul-" name beside. */
bool rst_vma_ghost_path_ok(const char *p);
void rst_vma_ghost_release(void *priv);
bool rst_vma_ghost_name(const struct rst_target *t, uint64_t dev, uint64_t ino, char *path,
			size_t plen);
void rst_vma_ghost_unlink(struct rst_target *t);

/*
 * vma_ghost_pre.c: deleted mapped files sent before a migration's freeze.
 * Source: rst_ghost_pre_unchanged, at the dump (@pid stopped): whether the
 * file @v maps was kept by the target and is unchanged since it was read;
 * then @o gets its owner, mode, size and times and `presented`.  Target
 * (rst_target_ghost_pre in restore.h): rst_target_ghost_pre_fd, the kept
 * file of (@dev, @ino), or -1.
 */
bool rst_ghost_pre_unchanged(struct rst_ghost_pre *g, pid_t pid, const struct haul_vma *v,
			     Haul__Img__GhostFile *o);
void rst_ghost_pre_free(struct rst_ghost_pre *g);
int rst_target_ghost_pre_fd(const struct rst_target *t, uint64_t dev, uint64_t ino);
void rst_target_ghost_pre_release(struct rst_target *t);

/*
 * cgplace.c: cgroup membership.  rst_cg_dump() records @pid's placement
 * and, for each of its threads @tids[i] (not the main one; their
 * ThreadStates @th[i]), the hierarchies where it differs; the strings live
 * in *@out (rst_cg_buf_free).  rst_cg_place() puts the restored process
 * (@here, its PID as seen from here; @tids its threads, in ps->threads'
 * order) there, creating missing directories.  0 or -errno, a reason in
 * @why naming the cgroup.
 */
struct rst_cg_buf {
	Haul__Img__Cgroup *cg;
	Haul__Img__Cgroup **ptr;
	size_t n, cap;
};
int rst_cg_dump(pid_t pid, const pid_t *tids, Haul__Img__ThreadState **th, size_t nthr,
		Haul__Img__ProcessState *ps, struct rst_cg_buf **out);
void rst_cg_buf_free(struct rst_cg_buf *b);
/*
 * @later set: a frozen cgroup is not written (the restored process would
 * stop in it: on one host it is the source's own, frozen until the
 * commit); rst_cg_place_later() places those entries (and frees them).
 * A task already in its cgroup is left there (no move, no cost).
 */
struct rst_cg_later_one {
	char *dir, *ctrls;
	pid_t id;
	bool thread;
};
struct rst_cg_later {
	struct rst_cg_later_one *e;
	size_t n;
};
int rst_cg_place(pid_t pid, pid_t here, const pid_t *tids, const Haul__Img__ProcessState *ps,
		 struct rst_cg_later *later, char *why, size_t wl);
void rst_cg_place_later(pid_t pid, struct rst_cg_later *later);
void rst_cg_later_free(struct rst_cg_later *later);
/*
 * Before the switch: put the stub @here of @pid into each of @lines
 * ("controllers:path") that is neither frozen nor in use, so the pages
 * written meanwhile are charged there and the resume has no move to make
 * (a cgroup move waits for an RCU grace period, milliseconds).  Failures
 * are left for the resume to report.
 */
void rst_cg_early(pid_t pid, pid_t here, char *const *lines, size_t n);

/*
 * dump_thread.c: what ptrace and /proc show of one stopped thread.
 * rst_dump_regs: its registers @saved (as rsys saved them) in image form,
 * an ERESTART_RESTARTBLOCK sleep in @raw (the registers it stopped with)
 * run again as its original call.  rst_dump_peek_signals: its own queue
 * (or with @shared the process-wide one) appended to *@arr and *@si
 * (arrays grown; *@n counts, *@cap their room); 0 or -errno.
 * rst_dump_inner_tid: the id thread @tid of @pid knows itself by (the last
 * NSpid), @tid when /proc does not say.
 */
void rst_dump_regs(const struct user_regs_struct *saved, const struct user_regs_struct *raw,
		   Haul__Img__Regs *o);
int rst_dump_peek_signals(pid_t tid, bool shared, Haul__Img__PendingSignal **arr,
			  uint8_t (**si)[128], size_t *n, size_t *cap);
int rst_dump_inner_tid(pid_t pid, pid_t tid);

/*
 * procattr.c: process attributes (DESIGN.md "Supported and not supported",
 * process attributes).  rst_attr_audit_proc() judges, from /proc alone,
 * every field of the status of every thread of @pid and the per-process
 * files (oom_score_adj, autogroup, attr/, sched, ioprio, time namespace):
 * each must be carried or at the value a restored process gets.
 * rst_attr_audit_seized() does the same for what only injected calls can
 * read (prctl, membarrier, arch_prctl), in every thread @thr[0..n) (thr[0]
 * the main thread, @scratch mapped in it), and when @ps is not NULL stores
 * the carried values there.  rst_attr_dump_proc() stores the carried
 * values /proc shows.  0, -EOPNOTSUPP with the reason in @why, or -errno.
 */
struct rsys;
int rst_attr_audit_proc(pid_t pid, char *why, size_t whylen);
int rst_attr_audit_seized(struct rsys *thr, size_t n, uint64_t scratch, Haul__Img__ProcessState *ps,
			  char *why, size_t whylen);
int rst_attr_dump_proc(pid_t pid, Haul__Img__ProcessState *ps);
/* For both halves of the audit: "pid P" or "thread T of pid P"; the refusal's advice. */
void rst_attr_who(char *buf, size_t len, pid_t pid, pid_t tid);
extern const char rst_attr_not_carried[];
/*
 * Whether @pid's main thread has a time namespace pending for its children
 * (ns/time_for_children is not ns/time); the offsets of the one it is in
 * (read by a helper that enters it: /proc/PID/timens_offsets shows the
 * pending one).  0 or -errno.
 */
bool rst_attr_timens_pending(pid_t pid);
int rst_attr_active_timens(pid_t pid, int64_t *mono, int64_t *boot);
/*
 * Write what is set from outside into restored @here (its threads @tids):
 * oom_score_adj, coredump_filter, cgroups.  0 or -errno with @why.
 */
int rst_attr_apply(pid_t here, const pid_t *tids, const Haul__Img__ProcessState *ps,
		   struct rst_cg_later *later, char *why, size_t wl);

/* caps.c: the capability sets of the text of /proc/PID/status into @c. */
void rst_caps_read(const char *status, Haul__Img__Creds *c);

/*
 * cwd_ghost.c: a deleted working directory @cwd of @pid that cannot be made
 * again (on a filesystem the kernel fills: /proc, sysfs, cgroupfs...):
 * -EOPNOTSUPP with @why; else 0.
 */
int rst_cwd_ghost_check(pid_t pid, const char *cwd, char *why, size_t wl);

#endif
