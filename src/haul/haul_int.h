/*
 * haul_int.h - private declarations of the haul module (orchestration,
 * cgroups and freezer, convergence model, workload registry).  Nothing
 * outside src/haul includes this header.
 */
#ifndef HAUL_HAUL_INT_H
#define HAUL_HAUL_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <signal.h>
#include <sys/types.h>

#include "common/proc.h"
#include "pageserver/pageserver.h"

/* ---- cgroup.c: where the hierarchies are, and a workload's cgroups -------- */

/* Mount points of the hierarchies haul uses; "" where there is none. */
struct haul_cg_mounts {
	char v2[PATH_MAX];	   /* cgroup2 (pure: /sys/fs/cgroup; hybrid: .../unified) */
	char v1_freezer[PATH_MAX]; /* v1 hierarchy with the freezer controller */
	char v1_cpu[PATH_MAX];	   /* v1 hierarchy with the cpu controller */
};

/* Parse the text of /proc/self/mounts. 0, or -ENOENT when no usable hierarchy. */
int haul_cg_parse_mounts(const char *text, struct haul_cg_mounts *m);
/* Read /proc/self/mounts. 0 or -errno.  HAUL_FREEZER=v1 hides cgroup2 (to test v1). */
int haul_cg_probe(struct haul_cg_mounts *m);

/*
 * From the text of /proc/PID/cgroup, the path of the cgroup of hierarchy
 * @ctrl ("" for cgroup2's "0::" line, else a v1 controller such as "freezer").
 * 0, -ENOENT when that hierarchy is not listed, -ENAMETOOLONG.
 */
int haul_cg_parse_proc(const char *text, const char *ctrl, char *out, size_t len);

/*
 * The cgroups a migrated workload is frozen and throttled in.  When the
 * process shares its cgroup with others (or sits in the root), haul makes
 * one (<mount>/haul/mig-<pid>) and moves it in; *_orig then remembers where
 * it came from so that a failed migration puts it back.
 */
struct haul_cg {
	pid_t pid;
	bool v2_freezer; /* freezer_dir is cgroup2 (cgroup.freeze), else v1 */
	char freezer_dir[PATH_MAX];
	char freezer_orig[PATH_MAX]; /* "" unless haul moved the process */
	bool v2_cpu;		     /* cpu_dir has cpu.max, else v1 cpu.cfs_quota_us */
	char cpu_dir[PATH_MAX];	     /* "" when no cpu controller can be reached */
	char cpu_orig[PATH_MAX];
	/* v1 cpu mount, while the move into a cpu cgroup of its own waits for the first
	 * throttle (cgroup.c: until then the process keeps its CPU share where it was) */
	char cpu_mnt[PATH_MAX];
	char cpu_limit[64];    /* the limit before haul: cpu.max, or v1 "QUOTA PERIOD" */
	unsigned throttle_pct; /* the current CPU throttle, 0 = none */
	/* throttle_pct is as applied (haul_conv_cpu_max: may be less than asked); each
	 * throttled stretch of it lasts at most this long */
	double throttle_stall_ms;
	/* the longest stretch a deep throttle may use (us; 0: HAUL_MIG_THROTTLE_STALL_US) */
	long throttle_stall_max_us;
	/* a throttle deeper than cpu.max makes short, as the freezer's duty cycle (duty.c);
	 * NULL when none runs.  The longest frozen stretch any of it had (ms). */
	struct haul_duty *duty;
	double duty_stretch_max_ms;
	/* a tree: the other processes, moved in and back with @pid (haul_cg_prepare_tree) */
	const pid_t *more;
	size_t nmore;
};

/*
 * Find or make the freezer and cpu cgroups of @pid, moving it when it has
 * none of its own.  0 or -errno (-EOPNOTSUPP: no freezer hierarchy).
 */
int haul_cg_prepare(pid_t pid, const struct haul_cg_mounts *m, struct haul_cg *cg);
/* The same for a tree: @more[0..@nmore) go with @pid (@more must outlive @cg). */
int haul_cg_prepare_tree(pid_t pid, const pid_t *more, size_t nmore, const struct haul_cg_mounts *m,
			 struct haul_cg *cg);
/*
 * Give the workload @pct percent less CPU than @cpus CPUs (cpu.max or
 * cfs_quota_us); @pct 0 puts back the limit it had before haul.  0, -EOPNOTSUPP when no cpu
 * controller is reachable, or -errno.
 */
int haul_cg_throttle(struct haul_cg *cg, unsigned pct, double cpus);
/*
 * Undo haul_cg_prepare after a failed migration: lift the throttle, thaw,
 * move the process back and remove what haul made.  Best effort, logs what
 * it cannot undo.  Safe in a forked child (the guardian).
 */
void haul_cg_undo(struct haul_cg *cg);
/* After the source was killed: remove the cgroups haul made (they empty as it exits). */
void haul_cg_cleanup(struct haul_cg *cg);

/* Whether @path/@file exists. */
bool haul_cg_has_file(const char *dir, const char *file);
/* Write @val to @dir/@file. 0 or -errno. */
int haul_cg_write(const char *dir, const char *file, const char *val);
/* Read @dir/@file into @buf (NUL-terminated). Length or -errno. */
int haul_cg_read(const char *dir, const char *file, char *buf, size_t len);
/*
 * Read the cgroup.procs of cgroup @path (an existing absolute path, else
 * relative to the cgroup2 mount, or the v1 freezer's without cgroup2) into
 * @buf; the cgroup's directory goes into @dir.  Length or -errno (logged).
 */
int haul_cg_read_procs(const char *path, char *dir, size_t dlen, char *buf, size_t len);
/* mkdir -p. 0 or -errno. */
int haul_cg_mkdir_p(const char *path);

/* ---- freezer.c: the cgroup freezer, v2 or v1 ---------------------------- */

/*
 * Freeze the cgroup and wait until every task in it is frozen, at most
 * @timeout_ms.  0, -ETIMEDOUT (left freezing: the caller thaws), or -errno.
 */
int haul_freeze(const struct haul_cg *cg, int timeout_ms);
/* The two halves of haul_freeze(): ask, then wait (tasks in ptrace-stop count as frozen). */
int haul_freeze_begin(const struct haul_cg *cg);
int haul_freeze_wait(const struct haul_cg *cg, int timeout_ms);
/* haul_freeze_wait without a word: whether a freeze asked by another has taken hold. */
int haul_freeze_settled(const struct haul_cg *cg, int timeout_ms);
/* Thaw. 0 or -errno. */
int haul_thaw(const struct haul_cg *cg);
/* Whether the cgroup is (being) frozen now. */
bool haul_frozen(const struct haul_cg *cg);

/* ---- guard.c: a child that undoes a migration when haul dies -------------- */

/*
 * The guardian is a forked, session-leading child that ignores SIGINT and
 * holds the read end of a pipe.  When haul dies before the commit point the
 * pipe reads EOF and the guardian undoes the cgroup changes (thaw: the
 * source runs on).  Past haul_guard_indoubt() it leaves the source frozen and
 * prints what an operator must check, because the target may already run.
 */
struct haul_guard {
	pid_t pid;
	int fd;	     /* write end, -1 when closed */
	pid_t owner; /* a tree: the process whose sockets the dump reports now (0: the root) */
};

/* @workdir: haul_mig_opts.workdir, removed if haul dies (NULL: none). */
int haul_guard_start(const struct haul_cg *cg, const char *to, const char *workdir,
		     struct haul_guard *g);
/* The restore command is about to go out: from now on a dead haul is in doubt. */
int haul_guard_indoubt(struct haul_guard *g);
/* Back to armed (the restore was refused: the source may be thawed). */
int haul_guard_rearm(struct haul_guard *g);
/* Dismiss the guardian (haul finished either way) and reap it. */
void haul_guard_stop(struct haul_guard *g);
/*
 * rst_tcp_hold_watch's callback (@guard: struct haul_guard): fd @fd of the
 * process enters TCP repair mode; if haul dies while the guardian is armed,
 * the guardian takes it out again (SO_REUSEADDR back to @reuse) before it
 * thaws the process, or its connection would never send again.
 */
void haul_guard_tcp_held(void *guard, pid_t pid, int fd, int reuse);
/*
 * A process of a tree other than the one the injection journal holds was
 * SIGSTOPped by haul (pid @pid): if haul dies while the guardian is armed,
 * it sends SIGCONT after the thaw.
 */
void haul_guard_stopped(struct haul_guard *g, pid_t pid);
/* The injection journal's survivor (injlog_survivor()): the guardian waits for it to exit. */
void haul_guard_journal(struct haul_guard *g, pid_t survivor);

/* ---- survivor.c: the forked child behind guard.c and netguard.c --------- */

/* What a survivor has read so far: 'C'/'A' set and clear indoubt, 'M' sets moved. */
struct haul_survivor_state {
	bool indoubt;
	bool moved;
	/* any other byte: @record (may be NULL) reads what follows it from @rfd */
	void (*record)(void *arg, char c, int rfd);
	void *arg;
};
/*
 * Fork a survivor named @name: the child's pid in the parent (*fd: the
 * pipe's write end, close-on-exec), 0 in the child (*fd: the read end; a
 * session leader that ignores SIGINT/SIGTERM/SIGHUP/SIGPIPE and holds no fd
 * of haul's but 0-2), or -errno (no child).
 */
pid_t haul_survivor_fork(const char *name, int *fd);
/* In the child: read state bytes into @st until EOF; 'D' exits 0 at once. */
void haul_survivor_wait(int rfd, struct haul_survivor_state *st);
/* In the parent: send one state byte; -EBADF once stopped. */
int haul_survivor_send(int fd, char c);
/* In the parent: send 'D', close *fd and reap *pid; both set to -1. */
void haul_survivor_stop(pid_t *pid, int *fd);

/* ---- converge.c: when to switch over, when to throttle ------------------- */

enum haul_conv_action {
	HAUL_CONV_CONTINUE = 0, /* another pre-copy round */
	HAUL_CONV_THROTTLE,	/* another round, with more CPU throttle (see .throttle_pct) */
	HAUL_CONV_SWITCH,	/* the expected downtime is within the target */
	HAUL_CONV_SWITCH_LIMIT, /* out of rounds: switch anyway, over the target */
	HAUL_CONV_SWITCH_FLOOR, /* over the target, but only the fixed costs are left */
	HAUL_CONV_SWITCH_HOT,	/* a hot set, at most 25% over the target */
};

/* What one pre-copy round measured. */
struct haul_conv_sample {
	uint64_t dirty_bytes; /* what the round's scan found (and the round sent) */
	double scan_gap_s;    /* time between this scan and the previous one (0 for round 1) */
	double send_s;	      /* time to send the round, from first page to round_end ack */
	double since_scan_s;  /* time from this round's scan to now (the decision) */
};

struct haul_conv {
	/* inputs */
	double target_ms; /* downtime target */
	double fixed_ms;  /* estimated freeze + state + restore cost */
	unsigned max_rounds;
	/* estimates, updated by haul_conv_update() */
	double bw;	  /* bytes/s the link moves pages at */
	double latency_s; /* fixed cost of one round trip (smallest excess of a round), -1 unknown */
	double dirty_rate;  /* bytes/s the workload dirties (latest round) */
	double expected_ms; /* downtime if we switched over now */
	uint64_t prev_dirty;
	bool shrinking; /* the latest round found under HAUL_MIG_CONVERGE_PCT of the one before */
	unsigned rounds;
	unsigned stalls;       /* rounds in a row that did not shrink */
	unsigned throttle_pct; /* what the policy asks for now */
	uint64_t free_dirty;   /* what the last round without a throttle found */
	double prev_gap_s;     /* the previous round's scan_gap_s */
	uint64_t sum_bytes;
	double sum_send_s;
};

void haul_conv_init(struct haul_conv *c, double target_ms, double fixed_ms, unsigned max_rounds);
enum haul_conv_action haul_conv_update(struct haul_conv *c, const struct haul_conv_sample *s);
/* Expected downtime if @bytes were left to send at switchover. */
double haul_conv_downtime_ms(const struct haul_conv *c, double bytes);
const char *haul_conv_action_name(enum haul_conv_action a);
/*
 * --hybrid goes post-copy where pre-copy stops converging, not where it would
 * throttle to converge faster: true when the latest verdict @a is to throttle
 * yet that round was still shrinking (c->shrinking), so another round,
 * unthrottled, leaves less to fetch after the resume.  It then clears the
 * throttle the model asked for (none is applied, and the model must not count
 * one).
 */
bool haul_conv_hybrid_goes_on(struct haul_conv *c, enum haul_conv_action a);
/*
 * cpu.max for a throttle of @pct of the @cpus CPUs the workload uses, with
 * the period chosen so that no throttled stretch exceeds
 * HAUL_MIG_THROTTLE_STALL_US, or, for a throttle the kernel's smallest quota
 * cannot express so, what it needs up to @stall_max_us.  Returns the
 * throttle applied: @pct, or less where even that cannot express it.
 */
unsigned haul_conv_cpu_max(unsigned pct, double cpus, long stall_max_us, long *quota_us,
			   long *period_us);
/* How long one thread waits per period once the quota is spent (ms). */
double haul_conv_throttle_stall_ms(long quota_us, long period_us, double cpus);
/*
 * The freezer's duty cycle for a throttle of @pct (duty.c): frozen
 * HAUL_MIG_DUTY_FROZEN_US, running what leaves the workload 100 - @pct percent
 * of the time, at least HAUL_MIG_DUTY_MIN_RUN_US; a deeper throttle freezes
 * longer, up to @stall_max_us less the thaw's margin.  Returns the throttle
 * applied: @pct, or less where that limit lowers it.
 */
unsigned haul_conv_duty(unsigned pct, long stall_max_us, long *frozen_us, long *run_us);

/* ---- duty.c: a deep throttle as a duty cycle of the cgroup2 freezer --------- */

struct haul_duty;
/*
 * Start a thread that freezes @freezer_dir (cgroup2) for @frozen_us and thaws it
 * for @run_us, over and over.  0 or -errno (logged).
 */
int haul_duty_start(pid_t pid, const char *freezer_dir, long frozen_us, long run_us,
		    struct haul_duty **out);
/* Change the cycle of a running @d (from the next stretch on). */
void haul_duty_set(struct haul_duty *d, long frozen_us, long run_us);
/* The frozen stretch the cycle is set to (ms); 0 for NULL. */
double haul_duty_frozen_ms(const struct haul_duty *d);
/* The longest frozen stretch measured so far (ms); 0 for NULL. */
double haul_duty_stretch_max_ms(const struct haul_duty *d);
/* Running windows extended so far because the workload waited for a CPU in them; 0 for NULL. */
long long haul_duty_extended(const struct haul_duty *d);
/*
 * Stop the thread, thaw the cgroup and free @d (NULL: nothing).  0, or the
 * -errno of a write to cgroup.freeze that failed.
 */
int haul_duty_stop(struct haul_duty *d);
/*
 * Hold @d's next frozen stretch: wait (up to @timeout_ms) until the thread
 * has frozen the cgroup again, which then stays frozen past the stretch's
 * end until haul_duty_release() or haul_duty_stop_frozen().  *@held_at_ms:
 * when that freeze began (haul_now_ms's clock).  0, -ETIMEDOUT (no hold) or
 * the thread's -errno.
 */
int haul_duty_hold(struct haul_duty *d, int timeout_ms, double *held_at_ms);
/* End a hold: the stretch ends when it would have (at once if that is past). */
void haul_duty_release(struct haul_duty *d);
/*
 * Stop the thread of @d, which holds a stretch, leaving the cgroup frozen,
 * and free @d.  0, or the -errno of a write to cgroup.freeze that failed
 * (@d freed all the same); -EINVAL (nothing done) when no stretch is held.
 */
int haul_duty_stop_frozen(struct haul_duty *d);
/*
 * Throttle @cg to @pct with the duty cycle, lifting a cpu.max throttle in
 * force; sets cg->throttle_pct as applied.  0 or -errno.
 */
int haul_cg_duty_throttle(struct haul_cg *cg, unsigned pct);
/*
 * Stop @cg's duty cycle, which holds a stretch (haul_duty_hold), leaving the
 * cgroup frozen for the switchover.  0; -EINVAL (nothing done) without a
 * held stretch; another -errno: the cycle is stopped, but a write of it
 * failed, and the cgroup's state is not known (logged).
 */
int haul_cg_duty_keep_frozen(struct haul_cg *cg);
/* Stop @cg's duty cycle, if any; the cgroup is thawed.  0 or -errno. */
int haul_cg_duty_lift(struct haul_cg *cg);
/*
 * Whether a throttle of @pct of @cpus CPUs should be the duty cycle: cgroup2
 * freezer, and cpu.max cannot make it with stretches of at most
 * HAUL_MIG_THROTTLE_STALL_US (or no cpu controller is reachable).
 */
bool haul_cg_duty_wanted(const struct haul_cg *cg, unsigned pct, double cpus);

/* ---- stall.c: the client's stalls before the freeze, seen from outside -------- */

/* What the stall probe saw (all ms). */
struct haul_stall_stats {
	double max_ms;	       /* longest time a thread wanted to run and could not */
	double max_blocked_ms; /* of which blocked in the kernel ('D', 't'); the rest queued */
	double round_ms;       /* longest stall that ended since haul_stall_probe_take() */
	double max_at_ms;      /* haul_now_ms() when that stall ended */
	double period_ms;      /* the sampling period asked for */
	double resolution_ms;  /* the longest interval between two samples actually had */
	uint64_t samples;
	unsigned threads; /* most threads seen at once */
	unsigned procs;	  /* most processes seen at once (a tree's) */
	pid_t max_pid;	  /* the process of the longest stall (0: none seen) */
};

/* One thread's samples (haul_stall_feed's state); zero it before the first. */
struct haul_stall_thread {
	pid_t pid; /* its process: st->max_pid */
	bool have, blocked;
	double t_ms, stretch_ms, stretch_blocked_ms;
	uint64_t run_ns, delay_ns;
};

/*
 * Feed one sample taken at @t_ms: the thread's total run time and run-queue
 * wait (/proc/.../schedstat) and whether it is blocked in the kernel now
 * ('D' or 't').  Updates @st->max_ms when a stall ends.  Pure.
 */
void haul_stall_feed(struct haul_stall_thread *th, double t_ms, uint64_t run_ns, uint64_t delay_ns,
		     bool blocked, struct haul_stall_stats *st);
/* No more samples of @th: a stall still open counts as far as seen. */
void haul_stall_close(struct haul_stall_thread *th, struct haul_stall_stats *st);

struct haul_stall_probe;
/*
 * Start sampling every thread of @pid (@tree: and of its descendants, found
 * again as they come and go) on a thread of ours.  0 or -errno (logged).
 */
int haul_stall_probe_start(pid_t pid, bool tree, struct haul_stall_probe **out);
/* The sampler's thread id (waits for it to start): it keeps full weight (cpuweight.h). */
pid_t haul_stall_probe_tid(struct haul_stall_probe *p);
/* The longest stall that ended since the last call (ms), for one round; 0 for NULL @p. */
double haul_stall_probe_take(struct haul_stall_probe *p);
/* Stop, join, free; copy what it saw to @st (may be NULL).  NULL @p is a no-op. */
void haul_stall_probe_stop(struct haul_stall_probe *p, struct haul_stall_stats *st);

/* ---- registry.c: workloads started by `haul run` (/run/haul/<name>) ------- */

struct haul_wl {
	char name[64];
	pid_t pid;		  /* in haul's PID namespace */
	unsigned long long start; /* /proc/PID/stat starttime, to tell PID reuse */
	char cgroup[PATH_MAX];
	char cmd[512];
	char log[PATH_MAX];
	char migrated_to[128]; /* "" unless haul migrate moved it away */
};

/* The registry directory: $HAUL_RUN_DIR or /run/haul. */
const char *haul_reg_dir(void);
int haul_reg_save(const struct haul_wl *w);
int haul_reg_load(const char *name, struct haul_wl *w);
/* Parse the key=value text of a registry entry. 0 or -EINVAL. */
int haul_reg_parse(const char *text, struct haul_wl *w);
/* The entry whose process is @pid (and still the same process), or -ENOENT. */
int haul_reg_find_pid(pid_t pid, struct haul_wl *w);
/* The state letter of /proc/PID/stat ('R', 'S', 'Z', ...), or 0 when gone. */
char haul_proc_state(pid_t pid);
/*
 * The fixed switchover cost (freeze, seize, dump, state, restore) measured by
 * earlier migrations from this host, or @fallback; and record a new one.
 */
double haul_costs_load(double fallback);
void haul_costs_save(double measured_ms);
/* utime + stime of @pid in clock ticks, or -errno. */
long long haul_proc_cpu_ticks(pid_t pid);

/* ---- postcopy.c: the source's half of post-copy and hybrid -------------- */

struct haul_pc;

struct trk_range;
struct trk;
/* A post-copy plan for @pid.  0 or -ENOMEM. */
int haul_pc_new(pid_t pid, struct haul_pc **out);
/* NULL is a no-op. */
void haul_pc_free(struct haul_pc *pc);
/*
 * --postcopy, before the freeze, @l the running process's layout with
 * VmFlags: *@send the ranges to send now (the eager VMAs; owned by @pc,
 * valid until the next call), their count and pages.  From here on every
 * page read for sending must go through haul_pc_record.  0 or -errno.
 */
int haul_pc_presend(struct haul_pc *pc, const struct haul_layout *l, const struct ps_range **send,
		    size_t *n, uint64_t *pages);
/*
 * pc_hot.c: the recent working set of @pid to send before the freeze (the
 * union of two windows' writes, when they repeat and fit
 * HAUL_PC_HOT_MAX_PAGES): *@out (malloc'd, sorted, merged), *@n, *@pages;
 * none, with @why saying why, otherwise.  The tracker it attached is left
 * in *@keep (NULL when none), for the caller to trk_free() once the process
 * is frozen or gone.  0 or -ENOMEM.
 */
int haul_pc_hot_set(pid_t pid, struct trk **keep, struct ps_range **out, size_t *n, uint64_t *pages,
		    char *why, size_t wl);
/* Pages of sorted, merged @a also in sorted, merged @b. */
uint64_t haul_pc_overlap(const struct trk_range *a, size_t na, const struct trk_range *b,
			 size_t nb);
/* Their union as sorted, merged ps_ranges (*@out malloc'd).  0 or -ENOMEM. */
int haul_pc_union(const struct trk_range *a, size_t na, const struct trk_range *b, size_t nb,
		  struct ps_range **out, size_t *n);
/* Remember the hashes of pages read to be sent (@buf, @zero as trk_read_pages); NULL @pc: no-op. */
int haul_pc_record(struct haul_pc *pc, const struct trk_range *r, size_t n, const uint8_t *buf,
		   const uint64_t *zero);
/*
 * At the freeze, @pid seized and stopped by the calling thread, @l its
 * layout now with VmFlags: find what must reach the target before the
 * resume (VMAs that cannot be lazy, the rseq page).  With @send
 * (--postcopy): *@send (malloc'd, sorted) the pages of that set the target
 * lacks or holds older than now, *@layout_changed whether @l differs from
 * the presend layout; presend pages that now lie in lazy VMAs become stale
 * (haul_pc_state).  0 or -errno.
 */
int haul_pc_freeze(struct haul_pc *pc, const struct haul_layout *l, struct ps_range **send,
		   size_t *nsend, bool *layout_changed);
/*
 * --hybrid: split the final round's @dirty runs (sorted) into what must be
 * sent now (*@send, malloc'd, sorted) and what the target drops and fetches
 * (kept in @pc for haul_pc_state).  0 or -ENOMEM.
 */
int haul_pc_split(struct haul_pc *pc, const struct ps_range *dirty, size_t n,
		  struct ps_range **send, size_t *nsend);
/*
 * Send the state with the stale runs of haul_pc_split or haul_pc_freeze;
 * @complete (--hybrid): every other page of the lazy VMAs went in the rounds.
 */
int haul_pc_state(struct haul_pc *pc, struct ps_client *c, const void *blob, size_t len,
		  bool complete, uint64_t *stale_pages);
/*
 * After the target resumed: answer its page requests from the frozen
 * source until it has every page (0) or the session fails (-errno: the
 * target killed its copy).  A broken connection (ps_client_broken) with
 * the source alive is re-established (ps_client_reconnect, for up to
 * @idle_ms) and serving goes on; ps_client_stats.reconnects counts them.
 * *@served: pages served.  @idle_ms as ps_client_serve; @fault the
 * migration's HAUL_FAULT ("reset:serve:N", tests) or NULL.
 */
int haul_pc_serve(struct haul_pc *pc, struct ps_client *c, int idle_ms, const char *fault,
		  uint64_t *served);

/* ---- migrate.c: one live migration ------------------------------------ */

enum haul_mig_mode {
	HAUL_MIG_PRECOPY = 0,
	HAUL_MIG_POSTCOPY, /* resume at once, memory follows on demand */
	HAUL_MIG_HYBRID,   /* pre-copy; post-copy for what does not converge */
};

/* What one round did (pre-copy rounds and the final, frozen one). */
struct haul_mig_round {
	uint64_t seq;
	uint64_t pages;	     /* dirty pages found and sent */
	uint64_t wire_bytes; /* bytes on the wire for them */
	double ms;	     /* scan to round_end ack */
	double scan_ms;
	double mbps;	    /* payload MB/s */
	double dirty_mbps;  /* dirty rate measured at this round */
	double expected_ms; /* expected downtime had we switched over after it */
	unsigned throttle_pct;
	bool final; /* the frozen round */
	/* the client's longest stall that ended during it (stall probe) */
	double stall_ms;
	unsigned nprocs; /* a tree's live processes, whose sum it is; 0: one process */
};

struct haul_mig_opts {
	pid_t pid;    /* in haul's PID namespace */
	pid_t ns_pid; /* in its own PID namespace (0: same as pid) */
	const char *to;
	uint8_t key[PS_KEY_LEN];
	double downtime_ms;
	uint64_t bandwidth; /* bytes/s, 0 = no cap */
	unsigned streams;
	enum ps_compress compress;
	bool encrypt;	     /* encrypt the streams (chacha20-poly1305) after authentication */
	unsigned max_rounds; /* 0: HAUL_MIG_MAX_ROUNDS */
	bool stop_and_copy;
	enum haul_mig_mode mode;
	/*
	 * Post-copy failed after the resume (the target's copy is dead): thaw
	 * the source at its switchover point instead of keeping it frozen for
	 * the operator.  Effects the process had on the target since the
	 * resume may then happen twice (DESIGN "crash points").
	 */
	bool postcopy_rollback;
	int timeout_ms;		     /* per reply from the page server; 0: default */
	const char *fault;	     /* HAUL_FAULT (tests) */
	volatile sig_atomic_t *stop; /* set by SIGINT/SIGTERM: abort before the commit point */
	void (*on_round)(void *arg, const struct haul_mig_round *r);
	/*
	 * During a round, every HAUL_MIG_PROGRESS_MS: pages sent so far of @total,
	 * payload MB/s.  A tree (@nprocs > 0): summed over its processes up to
	 * process @proc (1-based), being sent; each is scanned just before it is
	 * sent, so @total grows as the round reaches the next.
	 */
	void (*on_progress)(void *arg, uint64_t seq, uint64_t sent, uint64_t total, double mbps,
			    unsigned proc, unsigned nprocs);
	void *arg;
	struct haul_events *events; /* --events (events.c); NULL: none */
	/* --precopy-nice: haul's threads (and the target's page server) at nice +N until the
	 * freeze (cpuweight.c); 0: full weight throughout */
	int precopy_nice;
	/* --move-address ADDR/PREFIX (mig_net.c) and --on-switch CMD (onswitch.c) */
	const char *const *move_addrs;
	size_t nmove_addrs;
	const char *on_switch;
	/*
	 * --container (ctr_migrate.c): the migration id (0: a random one), and
	 * a step run while the process is frozen, after its state went out and
	 * before the restore command; an error rolls the migration back.
	 */
	uint64_t session_id;
	int (*on_frozen)(void *arg, pid_t pid);
	void *frozen_arg;
	/*
	 * A scratch directory of this migration's own (the container's dump),
	 * or NULL: the guardian removes it if haul dies (haul removes it itself
	 * otherwise).
	 */
	const char *workdir;
};

struct haul_mig_result {
	int err;
	const char *
		phase; /* where it stopped: precheck, cgroup, connect, track, precopy, switchover */
	bool committed; /* the target runs the process, the source is dead */
	bool indoubt;	/* the restore command went out and no answer came */
	/* why it switched over expecting more than --downtime (a static phrase); NULL: it did not */
	const char *over_why;
	/* post-copy and hybrid */
	bool lazy;	       /* the process resumed before all its memory arrived */
	bool lost;	       /* post-copy failed and the source is gone: the process is lost */
	bool rolled_back;      /* post-copy failed; the source was thawed (--postcopy-rollback) */
	double complete_ms;    /* freeze to "every page arrived" (0 until then) */
	uint64_t eager_pages;  /* sent before the resume (--postcopy: before and in the stop) */
	uint64_t stale_pages;  /* hybrid: pre-copied pages named stale (fetched again) */
	uint64_t served_pages; /* sent after the resume, on request */
	uint64_t served_bytes; /* wire bytes sent while serving (ps_client_stats.serve_bytes) */
	uint64_t lane_replies; /* of the requests served, those on the fault lane */
	unsigned reconnects;   /* broken connections re-established while serving */
	/* what the target measured (ps_client_lazy_report); false: an older target sent none */
	bool has_report;
	struct ps_lazy_report report;
	pid_t target_pid;
	unsigned nprocs;	      /* processes moved: 1, or a tree's (zombies included) */
	double total_ms, downtime_ms; /* downtime: freeze to the target's "running" reply */
	/* parts of the downtime; state_ms = dump_ms + sending the state */
	double t_freeze, freeze_ms, seize_ms, final_ms, dump_ms, state_ms, restore_ms, kill_ms;
	/*
	 * the rest of the downtime, between those: the network lock and the accept
	 * drain (after the freeze), the hand-over from the freezer to our group-stop
	 * (a tree: its shape read again), the hand-back to the freezer after the
	 * state, and the guardian's and network's "in doubt" before the restore
	 */
	double lock_ms, handover_ms, refreeze_ms, indoubt_ms;
	double expected_ms;
	double fixed_est_ms; /* the fixed cost the estimates assumed */
	unsigned rounds, throttle_max;
	/* what a client felt outside the downtime (issue 16; 0: not measured) */
	bool stall_measured;	       /* the stall probe ran during pre-copy */
	int precopy_nice;	       /* haul's threads ran pre-copy at nice +N (0: full weight) */
	struct haul_stall_stats stall; /* its findings before the freeze */
	double attach_stop_ms;	       /* tracker attach kept it stopped this long; a tree: max */
	double scan_call_max_ms;       /* longest single tracker scan call (mmap_lock held) */
	double throttle_stall_max_ms;  /* longest throttled stretch per cpu.max period */
	double held_ms; /* the downtime began in a held throttle stretch this long before the
			   switchover's freeze (0: it began there; mig_precopy.c) */
	uint64_t bytes_sent, pages_sent;
	struct haul_mig_round *round;
	size_t nround;
	char why[256];
};

/* Migrate @o->pid to @o->to. 0 (committed) or -errno; @res says how far it got. */
int haul_migrate(const struct haul_mig_opts *o, struct haul_mig_result *res);
void haul_mig_result_release(struct haul_mig_result *res);
double haul_now_ms(void);

/* bytes/s (opts.c): "500M" (K/M/G = 10^3..), "60MiB/s" (2^20..), "1gbit". 0 or -EINVAL. */
int haul_parse_rate(const char *s, uint64_t *out);

/* ---- lock.c: one haul per process at once ---------------------------------- */

/* Where the locks live; HAUL_LOCK_DIR in the environment overrides it (tests). */
#define HAUL_LOCK_DIR "/run/haul"

struct haul_pid_lock {
	int fd; /* -1: not held */
	char path[PATH_MAX];
};

/*
 * Take the lock of @pid for @verb ("migrated", "checkpointed", "tracked":
 * named in a refusal).  0; -EBUSY when another haul holds it; -ESRCH when
 * @pid is gone; -errno.  On failure @why says it for the user ("pid N is
 * already being migrated by haul pid M; ..."); nothing is logged.  Held
 * until haul_pid_unlock() or until this process exits.
 */
int haul_pid_lock(pid_t pid, const char *verb, struct haul_pid_lock *l, char *why, size_t wl);
/* Release it; a no-op when not held. */
void haul_pid_unlock(struct haul_pid_lock *l);

/* ---- events.c: --events, one JSON object per line ---------------------------- */

struct haul_events;

/*
 * @spec: an fd number (all digits, open for writing) or a file path
 * (created, truncated).  0, -EBADF, -errno; logged.  @pid names the
 * migrated process in every event.
 */
int haul_events_open(const char *spec, pid_t pid, struct haul_events **out);
void haul_events_free(struct haul_events *ev);
/* Each is a no-op for a NULL @ev; a write failure is warned about once. */
void haul_events_started(struct haul_events *ev, const char *to, const char *mode,
			 double downtime_ms);
void haul_events_round(struct haul_events *ev, const struct haul_mig_round *r);
void haul_events_frozen(struct haul_events *ev);
void haul_events_resumed(struct haul_events *ev, pid_t target_pid, double downtime_ms);
void haul_events_memory_complete(struct haul_events *ev, double complete_ms, uint64_t served_pages);
/* committed, rolled_back, in_doubt or lost, from @r (the exit status). */
void haul_events_end(struct haul_events *ev, const struct haul_mig_result *r);

/* ---- opts.c: the one option parser of every haul command ------------------- */

enum haul_opt_type {
	HAUL_OPT_FLAG,	   /* bool: set when given */
	HAUL_OPT_STR,	   /* const char *: any non-empty text */
	HAUL_OPT_PATH,	   /* const char *: a non-empty path shorter than PATH_MAX */
	HAUL_OPT_INT,	   /* long long, in [min, max] */
	HAUL_OPT_DURATION, /* double, milliseconds: 500ms, 10s, 2m, 1.5h; bare: ms */
	HAUL_OPT_SIZE,	   /* uint64_t bytes: 4096, 64K = 64KiB = 65536, 64KB = 64000 */
	HAUL_OPT_RATE,	   /* uint64_t bytes/s: haul_parse_rate() */
	HAUL_OPT_HOSTPORT, /* const char *: HOST:PORT, [V6]:PORT; port in [min, max] */
	HAUL_OPT_ENUM,	   /* int: the value of the choice named */
};

#define HAUL_OPT_HOUR_MS  3600000.0 /* durations are in ms: a bound of an hour */
#define HAUL_OPT_REQUIRED 0x1	    /* the command refuses to run without it */
#define HAUL_OPT_REPEAT	  0x2	    /* STR/PATH: may be given again; @dst is a haul_opt_list */
#define HAUL_OPT_DEFAULT  0x4	    /* --help shows the value @dst holds before parsing */

struct haul_opt_choice {
	const char *name;
	int value;
};

/* The values of a HAUL_OPT_REPEAT option, in the order given; argv owns the strings. */
struct haul_opt_list {
	const char **v;
	size_t n;
};

struct haul_opt {
	const char *name; /* long name without "--"; NULL ends the table */
	char short_name;  /* 0: none */
	enum haul_opt_type type;
	unsigned flags;	  /* HAUL_OPT_REQUIRED | HAUL_OPT_REPEAT | HAUL_OPT_DEFAULT */
	void *dst;	  /* where the value goes: the type says what it points to */
	const char *arg;  /* the value's name in --help: "MS", "FILE" */
	const char *help; /* one line or several ('\n'); the default is appended */
	double min, max;  /* INT, DURATION (ms), SIZE, RATE, HOSTPORT (port); both 0: any */
	const struct haul_opt_choice *choices; /* ENUM: ends with a NULL name */
};

/* A command's usage: --help is generated from it; nothing else prints options. */
struct haul_cmd_spec {
	const char *name;     /* "migrate": names the command in every message */
	const char *synopsis; /* after "usage: haul NAME " */
	const char *intro;    /* before the options; may be NULL */
	const char *outro;    /* after the options; may be NULL */
	const struct haul_opt *opts;
	int min_args, max_args; /* positional arguments; max -1: any number */
	bool stop_at_arg;	/* options end at the first argument (haul run -- CMD) */
};

/*
 * Parse @argv[1..] by @spec into the options' @dst.  Returns the index of the
 * first positional argument (>= 1); HAUL_OPTS_HELP when --help was asked and
 * printed on stdout; -EINVAL when the line is wrong: then the message, naming
 * the option, the bad value and what is expected, is logged.  The command
 * exits 0 on HAUL_OPTS_HELP and 2 on -EINVAL (haul_opts_exit()).
 */
#define HAUL_OPTS_HELP (-1000)
int haul_opts_parse(const struct haul_cmd_spec *spec, int argc, char **argv);
/*
 * ckpt_cgroup.c: the root of the one process tree cgroup @path holds
 * (absolute, or relative to the cgroup2 or v1 freezer mount): the one
 * process whose parent is outside it.  0, or -EINVAL (logged) when it
 * holds none or several trees, -errno when it cannot be read.
 */
int haul_cgroup_tree_root(const char *path, pid_t *root);
/* The exit status for a haul_opts_parse() result that is not an index. */
int haul_opts_exit(int ret);
/* The generated help on @f. */
void haul_opts_usage(const struct haul_cmd_spec *spec, FILE *f);

/* Free a HAUL_OPT_REPEAT list (not the strings, argv's). */
void haul_opt_list_release(struct haul_opt_list *l);

/*
 * external.c: the two option entries for fds whose other end stays behind
 * (struct haul_opt_list *@byfd, *@bykind), and their rules handed to the
 * restorer once parsed (the lists are released).  0, or -EINVAL logged.
 */
extern const char haul_external_fd_help[], haul_external_kind_help[];
/* Two table entries, one per line (clang-format would put each field on its own). */
/* clang-format off */
#define HAUL_OPTS_EXTERNAL(byfd, bykind)                                                           \
	{"external-fd", 0, HAUL_OPT_STR, HAUL_OPT_REPEAT, (byfd), "FD=SPEC",                       \
	 haul_external_fd_help, 0, 0, NULL},                                                       \
	{"external", 0, HAUL_OPT_STR, HAUL_OPT_REPEAT, (bykind), "KIND=SPEC",                      \
	 haul_external_kind_help, 0, 0, NULL}
/* clang-format on */
int haul_external_apply(struct haul_opt_list *byfd, struct haul_opt_list *bykind);
/*
 * haul_opts_parse() of a command whose table has HAUL_OPTS_EXTERNAL(@byfd,
 * @bykind), then haul_external_apply(): what haul_opts_parse() returns, or
 * -EINVAL (logged) when a rule is wrong.
 */
int haul_opts_parse_external(const struct haul_cmd_spec *spec, int argc, char **argv,
			     struct haul_opt_list *byfd, struct haul_opt_list *bykind);

/* One value, as the parser reads it; 0 or -EINVAL (nothing logged). */
int haul_parse_duration_ms(const char *s, double *ms);
int haul_parse_size(const char *s, uint64_t *out);
int haul_parse_hostport(const char *s, long min_port, long max_port);

#endif
