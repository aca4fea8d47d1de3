/*
 * restore.h - checkpoint (dump) and restore of a process, without CRIU.
 *
 * Dump: with the process stopped (frozen and ptrace-seized), read its
 * registers, xstate, signals, kernel bookkeeping and files, and serialise
 * them as an image.proto ProcessState.  Memory is not in the state: it goes
 * page by page through the tracker and the page server, or into an images
 * directory (page store).
 *
 * Restore target: a stub process, forked from haul, rebuilt by ptrace into
 * the dumped process.  It can be created early (live migration): the layout and
 * pages are applied while pre-copy runs; at switchover only the last pages
 * and the state remain.  Only the thread that created a target may call
 * its functions (it is the ptrace tracer).
 */
#ifndef HAUL_RESTORE_H
#define HAUL_RESTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/rsys.h"
#include "common/vma.h"
#include "pageserver/pageserver.h"

/* ---- dump (source side) ---------------------------------------------------- */

/*
 * Check, without changing it, whether @pid uses only what haul can migrate:
 * /proc first, then a short stop (seize, injected read-only calls, release)
 * for the attributes only the process can tell (prctl values).  Returns 0,
 * or -EOPNOTSUPP with a user-facing reason in @why naming the resource and
 * its fd, VMA or attribute ("fd 4 is a socket (socket:[123])").
 */
int rst_dump_precheck(pid_t pid, char *why, size_t whylen);

/*
 * The capability exchange (fd_caps.c).  rst_resource_caps: the resource
 * kinds this haul restores, for the page server's SessionOk; kinds named
 * in @without (a comma list, the HAUL_FAULT=caps-without:KIND,... test
 * hook; NULL: none) are left out.  *@out is static storage.
 * rst_caps_check: whether the target of session @c (the kinds it announced,
 * ps_client_caps; none: an older target, which restores the kinds of image
 * version 3) can restore every kind @pid holds.  0, or -EOPNOTSUPP with
 * @why naming the fd, its kind and what to do; -errno if @pid's fds cannot
 * be read.
 */
size_t rst_resource_caps(const char *without, const struct ps_resource_cap **out);
/* The capability of a target that restores a live process tree (SessionOpen.tree), version 1. */
#define RST_CAP_TREE "PROCESS_TREE"
int rst_caps_check(pid_t pid, const struct ps_client *c, char *why, size_t whylen);

/* Whether @pid is a kernel thread (nothing haul can dump or track); false if gone. */
bool rst_is_kthread(pid_t pid);

/*
 * Dump the state of @pid, which the caller holds stopped: every thread
 * PTRACE_SEIZE'd and interrupted by rst_seize() below.  Allocates *@blob
 * (free() it) holding a serialised ProcessState.  0 or -errno.
 */
struct rst_seized;
int rst_seize(pid_t pid, struct rst_seized **out); /* seize + interrupt all threads */
int rst_dump_state(struct rst_seized *s, uint8_t **blob, size_t *len);
/*
 * The switchover fast path (prep.c).  rst_dump_prepare() reads the layout
 * with VmFlags (/proc/PID/smaps: its page-table walk costs ~30 ms per GiB)
 * while @pid still runs, and watches its threads for the mmap write lock,
 * which every change of VmFlags takes (a perf counter on a tracepoint).
 * *@p NULL: start (allocates *@p even when watching is impossible); later
 * calls re-read smaps only when the lock was taken since.  Call it during
 * pre-copy, from the thread that will dump.  0 or -errno.
 */
struct rst_dump_prep;
int rst_dump_prepare(pid_t pid, struct rst_dump_prep **p);
/*
 * rst_dump_state() that reads only /proc/PID/maps and takes VmFlags from
 * @p when no lock was taken since and each VMA is unchanged; otherwise (or
 * @p NULL) it reads smaps in the stop.  The dumped VmFlags are the stopped
 * process's either way.
 */
int rst_dump_state_prepared(struct rst_seized *s, struct rst_dump_prep *p, uint8_t **blob,
			    size_t *len);
/*
 * The layout of @pid with VmFlags, as rst_dump_state_prepared() would take
 * it: from maps, the VmFlags from @p where they still hold, else from
 * smaps.  For the source's own decisions at the freeze (which pages must
 * precede a lazy resume).  0 or -errno.
 */
int rst_dump_prep_layout(struct rst_dump_prep *p, pid_t pid, struct haul_layout *out);
/*
 * Give the VMAs of pre-copy layout @l (read from maps) the creation flags
 * smaps showed for the same VMA in @p (MAP_NORESERVE, MAP_GROWSDOWN,
 * MAP_DROPPABLE, a shared file's write mode): the target then makes them
 * right from the first round, and the state's layout at the switchover
 * does not make them again (copying their pages, in the downtime: 770 ms
 * for redis-server's 600 MiB of MAP_NORESERVE arenas).  @p NULL: nothing.
 */
void rst_dump_prep_annotate(const struct rst_dump_prep *p, struct haul_layout *l);
/*
 * Send each deleted file that @l maps privately and that was not sent yet
 * (vma_ghost_pre.c) with @send, while @pid runs (pre-copy): a packed image
 * MappedGhost with its content; *kept: the target kept it.  The dump with
 * @p then names an unchanged one without its bytes.  0, or @send's -errno.
 */
typedef int (*rst_ghost_send_fn)(void *arg, const void *blob, size_t len, bool *kept);
int rst_dump_prep_ghosts(struct rst_dump_prep *p, pid_t pid, const struct haul_layout *l,
			 rst_ghost_send_fn send, void *arg);
/* Whether the last rst_dump_state_prepared() with @p took the fast path. */
bool rst_dump_prep_fast(const struct rst_dump_prep *p);
/* NULL is a no-op. */
void rst_dump_prep_free(struct rst_dump_prep *p);
/* Detach (the process resumes, or stays frozen if its cgroup is frozen). NULL is a no-op. */
void rst_release(struct rst_seized *s);
/*
 * Whether @s was stopped by its owner (job control) before haul: its image
 * keeps it stopped.  rst_seize() reads it from the state before its own
 * hold; a caller that group-stopped it itself first says so here.
 */
void rst_seized_owner_stopped(struct rst_seized *s, bool stopped);
/* Kill the seized process (it never runs again) and forget it. NULL is a no-op. */
void rst_kill_seized(struct rst_seized *s);
/*
 * fd_tcp.c: the dump leaves the source's established TCP sockets in repair
 * mode (nothing is sent from them; closed in repair mode they vanish
 * without FIN or RST) and keeps a copy of each.  Call once the source's fate
 * is known: @resume false when the process never runs again on the source
 * (killed after the target runs it), true when it runs on (rollback,
 * --leave-running, a failed dump): repair mode is left before it does.
 * Either way the copies are closed.  No-op when nothing is held.
 */
void rst_tcp_hold_end(bool resume);
/*
 * @cb is told (@fd of process @pid, its SO_REUSEADDR) before the dump puts
 * a TCP socket in repair mode, so that a survivor of the dumper can take it
 * out again if the dumper dies (haul migrate: its guardian; haul
 * checkpoint: the injection journal's survivor).  NULL: no one.
 */
void rst_tcp_hold_watch(void (*cb)(void *arg, pid_t pid, int fd, int reuse), void *arg);
/*
 * The network lock of a checkpoint (ckpt_lock.c): haul takes and lifts it
 * (src/haul/ckpt_netlock.c), the restorer says when.  @take: every process
 * of a checkpoint is stopped (@pids, host PIDs, the root first) and none of
 * their sockets read yet; @image is where the image will be committed (an
 * absolute DIR/<id>): a lock that outlives the checkpoint belongs to it
 * from its commit on.  @take puts the lock's name in @name ("": none
 * taken; at most RST_NETLOCK_NAME bytes with the NUL) and returns 0 or
 * -errno (the checkpoint fails, they run on).  @lift: a checkpoint failed
 * or left its processes running (before they run), or the restore of an
 * image that keeps a lock made every socket and no connection left repair
 * mode yet.  0 or -errno (the restore fails; the lock stays).  Without
 * them (NULL: CRIU's entry points) nothing is taken, and an image that
 * keeps a lock is restored with a warning naming it.
 */
#define RST_NETLOCK_NAME   48
#define RST_NETLOCK_NAME_S "47"
struct rst_netlock_ops {
	int (*take)(const pid_t *pids, size_t n, bool leave_running, const char *image, char *name,
		    size_t len);
	int (*lift)(const char *name);
	/* the image is committed and its processes killed: the lock is the image's now */
	void (*keep)(const char *name);
};
void rst_netlock_set(const struct rst_netlock_ops *ops);
/*
 * fd_tcp.c: whether a checkpoint carries TCP connections (true, haul's own
 * commands) or refuses each by name, as CRIU does without
 * --tcp-established (the criu entry point's DUMP without tcp_established).
 * Listeners are carried either way.
 */
void rst_tcp_carry_connections(bool carry);
/*
 * The lock the image in @store keeps (its file `netlock`): the table's
 * name and the inode of the network namespace it is in.  0; -ENOENT: none;
 * -EBADMSG: not a record haul wrote.
 */
int rst_netlock_record(const char *store, char *name, size_t len, unsigned long long *netns);
/*
 * fd_external.c: which other processes hold the pipes of running @pid, read
 * (one scan of every /proc/PID/fd on the host) just before the freeze, so
 * that the stop and the dump, within HOLDERS_TTL_NS of it, ask it rather
 * than scan in the downtime.  Nothing is scanned when @pid holds no pipe.
 * 0 or -errno (the dump then scans itself).
 */
int rst_ext_prescan(pid_t pid);
/*
 * sock_drain.c: rst_sock_listeners: the fds of running @pid that are
 * listening TCP sockets (*@fds: free it; an empty list when none), found
 * before a stop so that the stop asks only them.  rst_sock_accept_pending: whether @pid (stopped) has
 * connections queued on a listener, not yet accepted (logged): on the fds
 * @fds[0..n) when @fds is set, else on every listener.  rst_sock_drain_wait:
 * with @pid running again, wait until it has accepted them all: 0, or
 * -ETIMEDOUT after RST_ACCEPT_DRAIN_MS.  The caller stops it again and asks
 * once more (up to RST_ACCEPT_DRAIN_TRIES times); what is left, on a
 * listener made after the list too, is refused by the dump.
 */
int rst_sock_listeners(pid_t pid, int **fds, size_t *n);
bool rst_sock_accept_pending(pid_t pid, const int *fds, size_t n);
int rst_sock_drain_wait(pid_t pid, const int *fds, size_t n);

/*
 * haul moved @pid from cgroup directory @orig into @dir (a cgroup of its
 * own, to freeze or throttle it): the dump carries @orig as the process's
 * placement in that hierarchy, not @dir.  Call from the thread that dumps.
 */
void rst_cg_note_moved(pid_t pid, const char *dir, const char *orig);
/*
 * fd_socket.c: what socket fd @fd of @pid is: its family (AF_*) in
 * *@family, and in @desc its protocol and addresses as a user reads them
 * ("TCP 127.0.0.1:6379 listening").  0, -ENOENT when the fd was closed
 * meanwhile, or -errno (pidfd_getfd needs ptrace access to @pid).
 */
int rst_sock_describe(pid_t pid, int fd, int *family, char *desc, size_t len);
/*
 * fd_socket.c: 0, or -EOPNOTSUPP with @why naming fd @fd of @pid when its
 * socket has a filter attached (classic or eBPF): the unix kinds' precheck.
 */
int rst_sock_refuse_filter(pid_t pid, int fd, char *why, size_t wl);
/*
 * @pid's cgroups as "controllers:path" lines (haul's own freezer cgroup
 * undone, as the dump records them), for SessionOpen: *@out holds *@n
 * strings, free each and the array.  0 or -errno.
 */
int rst_cg_lines(pid_t pid, char ***out, size_t *n);
/*
 * The AppArmor profiles @pid's threads run under, each name once (none
 * when every thread is unconfined or AppArmor is off), for SessionOpen:
 * *@out holds *@n strings, free them with rst_apparmor_profiles_free.  0,
 * -EOPNOTSUPP for a label haul does not carry (a stack, a namespace), -E2BIG
 * for more than VAL_MAX_AA_PROFILES names, or -errno; @why says which.
 */
int rst_apparmor_profiles(pid_t pid, char ***out, size_t *n, char *why, size_t wl);
void rst_apparmor_profiles_free(char **names, size_t n);
/*
 * Whether every profile of @names (@n of them, "" skipped) is loaded on
 * this host, for process @pid: 0, or -EOPNOTSUPP (not loaded, AppArmor
 * off) or -errno with @why naming the profile and what to do.
 */
int rst_apparmor_check_profiles(int32_t pid, char *const *names, size_t n, char *why, size_t wl);

/* ---- restore target (target side) ------------------------------------------- */

enum rst_pidns {
	RST_PIDNS_AUTO = 0,
	RST_PIDNS_ALWAYS,
	RST_PIDNS_NEVER
};

struct rst_target_opts {
	pid_t pid; /* the PID to give the process (its PID on the source) */
	enum rst_pidns
		pidns; /* AUTO: same PID in our namespace if free, else a new PID namespace */
	bool lazy;     /* register memory with userfaultfd (missing) before resume */
	/*
	 * The process runs in a new time namespace whose CLOCK_MONOTONIC and
	 * CLOCK_BOOTTIME are ours plus these offsets (ns).  0 is right when
	 * source and target share a clock (same host, process not in a time
	 * namespace); an image restore sets them so the clocks go on from the
	 * dump (rst_image_clock_offsets).
	 */
	int64_t monotonic_offset_ns;
	int64_t boottime_offset_ns;
	/*
	 * The restored process must outlive us (page server): its helper
	 * processes are not our children.  Without it, rst_target_wait() gives
	 * its exit status.
	 */
	bool detach;
	/*
	 * Called once in rst_target_resume() (on the tracer thread) when the
	 * address space is complete (every VMA, the vDSO) and before any
	 * injected call that may touch the process's memory (rseq, fds,
	 * signals...): @r is attached to the stopped stub, @l its layout.  For
	 * post-copy: create and register the uffd, start the fault thread.
	 * Nonzero fails the resume.  Required when @lazy is set.
	 */
	int (*before_resume)(void *arg, struct rsys *r, const struct haul_layout *l);
	void *before_resume_arg;
	/*
	 * A tree whose session leader is not in it (tree_restore.c): the stub
	 * is that leader's stand-in, which forks the tree's root (PID
	 * @hold_for), holds the session id, and exits with the root's status
	 * once the root exits.  0: a plain stub.
	 */
	pid_t hold_for;
	/*
	 * A cgroup of the image that is frozen at the resume is joined only at
	 * rst_target_committed() (migration on one host: the source's own
	 * cgroup stays frozen until the commit; the process must not stop in it).
	 */
	bool cg_defer_frozen;
	/*
	 * A container (restore/ctr.h): its namespaces and mounts are made
	 * around the process, which is pid 1 of a new PID namespace and sees
	 * only the container's root.  NULL: a plain process.
	 */
	const struct rst_ctr *ctr;
	/*
	 * With @ctr and @detach: the container's pid 1 is a child of our
	 * parent (CRIU's rst_sibling: the engine that ran us waits for it).
	 */
	bool sibling;
};

/* A range for rst_target_zap: @npages pages from @addr, MADV_REMOVE when @shared. */
struct rst_zap {
	uint64_t addr, npages;
	bool shared;
};
/*
 * For a before_resume hook, with the @r it was given (the target's own): drop
 * @n ranges of the stub's memory (MADV_DONTNEED; MADV_REMOVE for shared
 * memory, whose page cache DONTNEED would keep) in few round trips, as
 * batches of injected calls.  0, or the -errno of the first that failed
 * (logged with its range; later ones did not run).
 */
int rst_target_zap(struct rsys *r, const struct rst_zap *z, size_t n);

struct rst_target;
struct rst_ctr;

/* Start the stub (and its PID namespace init when needed). 0 or -errno. */
int rst_target_new(const struct rst_target_opts *o, struct rst_target **out);
/*
 * Before the switch: the stub joins the process's cgroups ("controllers:path",
 * from the source) that are neither frozen nor in use; see rst_cg_early().
 */
void rst_target_cgroups_early(struct rst_target *t, char *const *lines, size_t n);
/* The migration is committed: join the cgroups left for it (cg_defer_frozen). */
void rst_target_committed(struct rst_target *t);
/* Make the stub's address space match @l (create, remove, move VMAs). */
int rst_target_layout(struct rst_target *t, const struct haul_layout *l);
/* Write @npages pages at @addr (@data NULL: make them zero). */
int rst_target_pages(struct rst_target *t, uint64_t addr, const void *data, uint32_t npages);
/*
 * A deleted file the process maps privately, sent before the freeze (a
 * packed image MappedGhost with its content; vma_ghost_pre.c): made here
 * at once, unnamed, until the state names it.  1: kept, 0: declined (the
 * state must carry it), -EBADMSG: malformed.
 */
int rst_target_ghost_pre(struct rst_target *t, const void *blob, size_t len);
/*
 * Apply @state (a ProcessState) and let the process run.  On success *@pid
 * is its PID as seen from here.  On failure the stub is killed and a
 * user-facing reason is in @why.
 */
int rst_target_resume(struct rst_target *t, const void *state, size_t len, pid_t *pid, char *why,
		      size_t whylen);
/* Kill the stub unless it was resumed. NULL is a no-op. */
void rst_target_free(struct rst_target *t);
/* The stub's (later the process's) PID as seen from here. */
pid_t rst_target_pid(const struct rst_target *t);
/*
 * SIGKILL the stub (the restored process once resumed) through its pidfd:
 * never another process that reused its PID.  0, -ESRCH once it is reaped.
 */
int rst_target_kill(struct rst_target *t);
/* Its pidfd, owned by @t (valid until rst_target_free); dup it to keep it longer. */
int rst_target_pidfd(const struct rst_target *t);
/*
 * Wait until the restored process exits (not with opts.detach); its exit
 * status as a shell reports it (128 + signal when killed).  -errno.
 */
int rst_target_wait(struct rst_target *t);
/*
 * Offsets for rst_target_opts that make the clocks of a process restored
 * from @state (a ProcessState) continue from the values they had at dump.
 */
int rst_image_clock_offsets(const void *state, size_t len, int64_t *mono, int64_t *boot);

/* The time-namespace offsets of @pid (0 outside one), ns. 0 or -errno. */
int rst_timens_offsets(pid_t pid, int64_t *mono, int64_t *boot);
/*
 * Offsets for rst_target_opts of a live session (@info from the open): the
 * same host (boot_id) gets the process's own offsets; another host gets
 * source clock - ours, so the clocks go on from the source's (the open's
 * one-way time estimated as half a round trip); an older client, 0.
 */
void rst_session_clock_offsets(const struct ps_session_info *info, int64_t *mono, int64_t *boot);

/* ---- images directory (haul checkpoint / haul restore) ---------------------- */

struct rst_ckpt_stats {
	uint64_t pages;	     /* pages with data stored */
	uint64_t zero_pages; /* pages stored as zero holes */
	uint64_t frozen_ns;  /* from the stop to the durable commit */
	uint64_t total_ns;
	char id[96]; /* the image's identity: it is DIR/<id>/ */
};

/*
 * A checkpoint of @pid into the images directory @dir as image DIR/<id>/
 * (id in st->id; a page store directory), made in steps; the order, and
 * the pre-copy rounds of --leave-running, are haul_checkpoint_images()'s
 * (src/haul/checkpoint.c).  State, layout and pages go into one durable
 * commit, written beside the previous image of the same process and
 * switched in atomically (src/restore/imgdir.c); any failure leaves the
 * previous image as it was.
 *
 * rst_ckpt_begin(): refuse what cannot be dumped (logged naming the
 * resource; the process runs on; -EOPNOTSUPP) and start the new image.
 * rst_ckpt_store_round(): run one round of tracker @t and stage what it
 * found (the process may run).  rst_ckpt_seize(): stop every thread.
 * rst_ckpt_commit(): dump the state, stage every existing page unless
 * @tracked (the rounds staged them), commit durably; without
 * @leave_running the process is killed once committed (it never runs
 * after the dump), with it, it resumes before the commit.  @fault:
 * HAUL_FAULT (tests; "ckpt-kill:staged|committed|switched") or NULL.
 * rst_ckpt_end(): with @ret nonzero, drop what was staged; release all
 * (a seized process resumes).  NULL is a no-op.  Each: 0 or -errno.
 */
struct rst_ckpt;
struct trk;
int rst_ckpt_begin(pid_t pid, const char *dir, struct rst_ckpt_stats *st, struct rst_ckpt **out);
int rst_ckpt_store_round(struct rst_ckpt *ck, struct trk *t);
int rst_ckpt_seize(struct rst_ckpt *ck);
int rst_ckpt_commit(struct rst_ckpt *ck, bool tracked, bool leave_running, const char *fault);
void rst_ckpt_end(struct rst_ckpt *ck, int ret);
/*
 * A checkpoint of @pid and all its descendants into @dir as one image
 * DIR/<id>/ (tree_ckpt.c): every process prechecked while running (a
 * refusal names the pid and resource, -EOPNOTSUPP, nothing stopped), then
 * all stopped together until no new child appears, each dumped into its
 * own DIR/<id>/<pid>/ with the tree (ids, zombies and their exit status)
 * in DIR/<id>/tree.img, committed and switched in as one image.  Without
 * @leave_running every process is killed once the image is durable.
 * Memory is copied while stopped.  0 or -errno, logged.
 * rst_has_children: whether @pid has a child process.
 */
int rst_tree_checkpoint(pid_t pid, const char *dir, bool leave_running, const char *fault,
			struct rst_ckpt_stats *st);
bool rst_has_children(pid_t pid);
/*
 * Write the tree @tr (a packed one as SessionOpen.tree carries it) as
 * tree.img into the page store directory @dirfd, fsynced (tree_img.c; the
 * container sink's image of a migrated tree).  0 or -errno, logged.
 */
struct Haul__Img__Tree;
int rst_tree_img_put(int dirfd, const struct Haul__Img__Tree *tr);
/*
 * A live migration's process tree, source side (tree_mig.c).
 * rst_mig_tree_new: walk @root's descendants, precheck every process
 * while all run (children and what the tree shares are accepted from now
 * until rst_mig_tree_free, on this thread), refuse sharing haul does not
 * rebuild; the reason in @why.  rst_mig_tree_count / _proc: entry @i in
 * tree order (parents first, the root at 0): host PID, PID in the tree's
 * namespace, zombie.  rst_mig_tree_pack: the shape as a packed
 * haul.img.Tree (*@buf malloc'd) for SessionOpen.tree.
 * rst_mig_tree_unchanged: read again (the tree frozen): -EAGAIN, naming
 * the pid in @why, if a process appeared, exited or changed its ids.
 * rst_mig_tree_merge: entry @i's dumped state, in tree order, rewritten so
 * that open files shared with an earlier process name it (*@blob
 * replaced).  Each 0 or -errno.
 */
struct rst_mig_tree;
int rst_mig_tree_new(pid_t root, struct rst_mig_tree **out, char *why, size_t wl);
size_t rst_mig_tree_count(const struct rst_mig_tree *mt);
void rst_mig_tree_proc(const struct rst_mig_tree *mt, size_t i, pid_t *host, pid_t *pid,
		       bool *zombie);
int rst_mig_tree_pack(const struct rst_mig_tree *mt, uint8_t **buf, size_t *len);
int rst_mig_tree_unchanged(const struct rst_mig_tree *mt, char *why, size_t wl);
int rst_mig_tree_merge(struct rst_mig_tree *mt, size_t i, uint8_t **blob, size_t *len);
void rst_mig_tree_free(struct rst_mig_tree *mt);
/*
 * Restore the image @id (NULL: the only one) of process @pid (0: any) from
 * @dir with @o (its pid and clock offsets are filled in here).  The image
 * is opened read-only and every page checked before anything is created.
 * On success *@out is the resumed target (rst_target_wait /
 * rst_target_free) and *@here its PID as seen from here.  0 or -errno, the
 * reason logged (several images match: -EINVAL, listed).
 */
int rst_restore_images(const char *dir, const char *id, pid_t pid, const struct rst_target_opts *o,
		       struct rst_target **out, pid_t *here);

/*
 * Images that hold only the pages written since a parent image (criu
 * pre-dump rounds; the format of DIR/<id>/parent.img is in imgchain.c).
 * rst_ckpt_stage*(): pages found by a tracker held by another process
 * (src/haul/trackd.c): rst_ckpt_stage_layout() sets the layout now,
 * rst_ckpt_stage() stages @npages at @addr (@data NULL: their contents are
 * gone, zero holes), clipped to the VMAs of @l whose pages are stored.
 * rst_ckpt_commit_pages(): commit what was staged, without a state (a
 * pre-dump image: only a parent, never restored itself); the process was
 * never stopped.  rst_ckpt_path(): the image's page store directory until
 * the switch (where parent.img goes, before the commit).
 */
int rst_ckpt_stage_layout(struct rst_ckpt *ck, const struct haul_layout *l);
int rst_ckpt_stage(struct rst_ckpt *ck, const struct haul_layout *l, uint64_t addr,
		   const void *data, uint32_t npages);
int rst_ckpt_commit_pages(struct rst_ckpt *ck, const struct haul_layout *l);
const char *rst_ckpt_path(const struct rst_ckpt *ck);

/* Whether a checkpoint stores the pages of @v (image.c; also for a chain's parents). */
bool rst_vma_stored(const struct haul_vma *v);

#define RST_CHAIN_FILE	   "parent.img"
#define RST_CHAIN_MAX	   32	/* images in one chain: a loop is refused, not followed */
#define RST_CHAIN_NAME_MAX 4096 /* the names in parent.img */

/* What parent.img says: the parent's images directory, image id, index checksum. */
struct rst_parent {
	char dir[RST_CHAIN_NAME_MAX];
	char id[256];
	uint64_t index_sum;
};
/* parent.img bytes of @par into @buf: the length, or -EINVAL / -ENOSPC. */
int rst_chain_encode(const struct rst_parent *par, uint8_t *buf, size_t len);
/* parent.img bytes: 0, -EBADMSG (damaged), -EPROTO (another version). */
int rst_chain_decode(const uint8_t *buf, size_t len, struct rst_parent *out);
/* The index checksum of pid @pid's image in the page store @store. 0 or -errno. */
int rst_chain_index_sum(const char *store, pid_t pid, uint64_t *sum);
/* Write @store/parent.img durably. 0 or -errno, logged. */
int rst_chain_write_parent(const char *store, const struct rst_parent *par);
/*
 * The parents of image @store (pid @pid), each opened read-only and every
 * page checked: *@out NULL when it has none.  0 or -errno, logged.
 */
struct rst_chain;
struct pstore_proc;
int rst_chain_open(const char *store, pid_t pid, struct rst_chain **out);
void rst_chain_free(struct rst_chain *c);
/*
 * Call @fn (pstore_walk's callback) for the pages of @top, then for those
 * of each parent that no newer image holds, inside the stored VMAs of @l.
 * @c NULL: pstore_walk(@top).  0 or the first error.
 */
int rst_chain_walk(struct rst_chain *c, struct pstore_proc *top, const struct haul_layout *l,
		   int (*fn)(void *arg, uint64_t addr, const void *data, uint32_t npages),
		   void *arg);

/*
 * Fds whose other end stays behind (a pipe to a process that does not
 * move, a unix socket connected to a path, a terminal): what each becomes
 * on the target (fd_extrules.c).  @rule is "FD=SPEC" (@by_fd, the
 * --external-fd option) or "KIND=SPEC" (--external; KIND pipe, fifo, unix,
 * tty); SPEC null, file:/PATH, fd:N, reconnect, journal or tty.  The rules
 * hold for every later dump and restore of this haul process; set them
 * before any.  0, or -EINVAL logged naming the rule.
 */
int rst_external_add(const char *rule, bool by_fd);
void rst_external_clear(void);

/* The ProcessState.version this build writes and accepts (haul version). */
int rst_image_version(void);

/* The page server sink that restores live sessions into rst_targets. */
extern const struct ps_sink_ops rst_live_sink;

/*
 * Shared memory of a tree migrated with one tracker per process
 * (shm_tree_route.c): a dirty page of a shared object is sent once, by its
 * owner, the first process (tree order) whose layout maps that object
 * offset, at its address there.  rst_shm_route_new: the table for the
 * tree's @n layouts @l in tree order (NULL: a zombie); rebuild it when a
 * layout changes.  rst_shm_route: dirty range [@addr, +@npages pages) of
 * process @i to @fn, piece by piece, as (sending process, its address,
 * pages): private memory stays @i's.  0, -ENOMEM, -ENOENT (an address of a
 * shared VMA not in @l[@i]), -EINVAL (@i out of range), or @fn's nonzero.
 */
struct rst_shm_route;
typedef int (*rst_shm_route_fn)(void *arg, size_t proc, uint64_t addr, uint64_t npages);
int rst_shm_route_new(const struct haul_layout *const *l, size_t n, struct rst_shm_route **out);
int rst_shm_route(const struct rst_shm_route *r, size_t i, uint64_t addr, uint64_t npages,
		  rst_shm_route_fn fn, void *arg);
void rst_shm_route_free(struct rst_shm_route *r);
/*
 * The rounds @r of the tree's @n processes (tree order, all scanned, none
 * sent; a zombie's: an empty round; @pids their host PIDs): each one's
 * dirty list replaced by what its session sends, shared memory routed to
 * its owners, plus what changed owner since the previous round (*@prev:
 * that round's table, NULL at first; replaced by this round's, free it
 * with rst_shm_route_free at the end); sorted, merged, dirty_pages
 * recounted.  0 or -ENOMEM, -ENOENT as rst_shm_route; on failure the
 * rounds and *@prev are as they were.
 */
struct trk_round;
int rst_shm_route_rounds(struct rst_shm_route **prev, const pid_t *pids, struct trk_round *r,
			 size_t n);

#endif
