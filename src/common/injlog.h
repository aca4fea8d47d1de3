/*
 * injlog.h - the injection journal: what haul changed inside a live process
 * while it injects system calls (rsys), kept where a process that survives
 * haul can read it and undo it.
 *
 * A SIGKILLed tracer is detached by the kernel and its tracees run on
 * whatever registers and signal mask they have: injected ones, in the middle
 * of a dump or a tracker attach.  So while haul injects into a live process:
 *  - the process is held in a group-stop (SIGSTOP) that haul owns
 *    (injlog_hold): a SEIZEd tracee still runs the injected calls when the
 *    tracer resumes it, but when the tracer dies the kernel puts it back
 *    into the group-stop before it runs a user instruction (ptrace_unlink
 *    re-arms JOBCTL_STOP_PENDING), under any freezer layout or none;
 *  - each thread's own registers and signal mask are written to a
 *    MAP_SHARED journal BEFORE the first register change, with the call in
 *    flight and what the calls created (the scratch mapping, a userfaultfd),
 *    and cleared once they are back;
 *  - a survivor process forked by injlog_open() waits for haul's end.  If
 *    haul dies with the journal dirty it seizes each dirty thread, closes
 *    the fd and unmaps the scratch mapping the calls left, puts back the
 *    registers and mask, detaches (the thread returns to the group-stop) and
 *    only then sends SIGCONT.  A journal that is clean at haul's end costs
 *    nothing: the survivor exits.
 *
 * Only the thread that opened the journal writes it (the tracer thread);
 * the survivor reads it only after the writer is dead.  Without
 * injlog_open() rsys injects as before (the restorer's own stub needs none).
 *
 * Fault injection (tests): HAUL_FAULT=kill:inject:STEP[:N] makes haul SIGKILL
 * itself at the Nth (default 1st) time it reaches STEP, one of
 *   hold     the process is group-stopped, no thread seized yet
 *   seize    a thread is seized and stopped, nothing changed yet
 *   mask     a thread's signal mask was just set to "all blocked"
 *   regs     the registers of a call are set, before syscall entry
 *   entry    the tracee stopped at the injected call's entry
 *   exit     the tracee stopped at its exit
 *   call     the result was read (between two calls)
 *   restore  a thread's registers and mask are back, before its detach
 *   unhold   every thread is released, before the SIGCONT
 * printing "fault: killed at inject:STEP:N" first.
 */
#ifndef HAUL_COMMON_INJLOG_H
#define HAUL_COMMON_INJLOG_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

/* Threads of one process the journal can hold at once (~330 bytes each, shared anon memory). */
#define INJLOG_MAX_THREADS 8192
/* TCP sockets in repair mode it can hold (24 bytes each). */
#define INJLOG_MAX_SOCKS 16384
/* Other processes it can owe a SIGCONT (16 bytes each). */
#define INJLOG_MAX_OWED 16384

/* One thread's entry; owned by the journal, pointed to by its struct rsys. */
struct injlog_thr {
	pid_t tid;		      /* 0: free */
	int32_t dirty;		      /* registers or mask differ from regs/sigmask */
	int64_t inflight_nr;	      /* the call whose registers were set last, -1: none */
	int32_t rfd;		      /* fd a call created in the tracee, -1: none */
	uint64_t sc_addr;	      /* the syscall instruction used */
	uint64_t scratch;	      /* rsys scratch mapping, 0: none */
	uint64_t sigmask;	      /* the thread's own mask */
	struct user_regs_struct regs; /* its own registers (an interrupted syscall rewound) */
};

/*
 * Map the journal and fork its survivor.  @fault is HAUL_FAULT or NULL;
 * @run_dir holds inject.lock, the per-process lock of holds across hauls
 * (haul's registry directory).  Call once per haul process, before any fd
 * worth hiding from the survivor is opened is best (it closes all but
 * stderr anyway).  Returns 0 or -errno.
 */
int injlog_open(const char *fault, const char *run_dir);

/*
 * Hand the survivor haul's end: it exits when the journal is clean.  Waits
 * for it unless entries are still dirty (then it repairs them once this
 * process has exited and the kernel has detached its tracees).
 */
void injlog_close(void);

/* The journal's survivor process (-1: none), for a guardian that must let it finish first. */
pid_t injlog_survivor(void);

/* Whether a journal is open in this process (rsys records into it). */
bool injlog_active(void);

/*
 * Group-stop @pid (SIGSTOP, unless injlog_stop() sent it) and wait until
 * the stop has begun (one thread stopped: every other one stops before its
 * next user instruction), before any thread of it is seized.  Recorded
 * first, so a survivor owes it the SIGCONT.  A process stopped already (by
 * its owner) is left to its owner.  A no-op without a journal.  Returns 0,
 * -ETIMEDOUT (no thread stopped, e.g. all in uninterruptible sleep; the
 * process is continued again) or -errno.
 */
int injlog_hold(pid_t pid);

/*
 * The first half of injlog_hold(): record and send the SIGSTOP, without
 * waiting (a cgroup2-frozen process stops only once thawed, before it runs
 * a user instruction).  Holds nest: a caller that stops @pid before
 * rst_seize() keeps it stopped past rst_release() until its own
 * injlog_unhold() (migrate: until it is frozen again).
 */
int injlog_stop(pid_t pid);

/*
 * Whether @pid is in a group-stop of its owner's (job control), not ours:
 * the journal's answer while it holds @pid, else its state (T).
 */
bool injlog_owner_stopped(pid_t pid);

/*
 * Drop one hold of @pid; the last one continues it if we stopped it.
 * Every thread must be released first.
 */
void injlog_unhold(pid_t pid);

/* @pid was killed on purpose (checkpoint without --leave-running): forget its entries. */
void injlog_forget(pid_t pid);

/* A journal entry for thread @tid (NULL without a journal, or when full). */
struct injlog_thr *injlog_thread(pid_t tid);

/* The thread's state is its own again: free the entry. */
void injlog_thread_done(struct injlog_thr *e);

/*
 * Thread @tid's scheduling attributes (struct sched_attr, @len bytes) before
 * haul raised them for the injection; the survivor puts them back.  @len 0
 * forgets them (haul put them back itself).
 */
void injlog_sched(pid_t tid, const void *attr, size_t len);

/*
 * fd @fd of @pid is about to enter TCP repair mode for a dump after which
 * the process may run on (haul checkpoint: it runs on whenever the
 * checkpoint fails): a socket left in repair mode never sends again, and a
 * send on it fails.  If haul dies, the survivor takes each such socket out
 * of repair mode (SO_REUSEADDR @reuse back: leaving repair clears it)
 * before it continues any process.  Not for a live migration, whose
 * guardian decides (in doubt, the sockets must stay).  injlog_tcp_done:
 * every such socket is out of repair mode again, or its process is dead:
 * forget them.  No-ops without a journal.
 */
void injlog_tcp_repair(pid_t pid, int fd, int reuse);
/* The same as rst_tcp_hold_watch's callback (@arg unused). */
void injlog_tcp_held(void *arg, pid_t pid, int fd, int reuse);
void injlog_tcp_done(void);
/*
 * The journal holds one process (injlog_hold); a dump of a tree keeps the
 * others in the group-stop it put them in itself.  injlog_owe_cont: @pid
 * (its start time read now) is one: if haul dies, the survivor sends it
 * the SIGCONT, last, after its sockets and the lock.  injlog_owe_paid:
 * haul continued it (or killed it) itself.  No-ops without a journal.
 */
void injlog_owe_cont(pid_t pid);
void injlog_owe_paid(pid_t pid);
/*
 * Another survivor (@pid; 0: none) that must finish before the journal's
 * continues a process: haul checkpoint's network lock survivor, which
 * lifts the lock (a UDP send it dropped would fail with EPERM).  Waited
 * for up to 5 s.
 */
void injlog_companion(pid_t pid);

/* HAUL_FAULT=kill:inject:@step[:N]: SIGKILL ourselves at the Nth time @step is reached. */
void injlog_fault(const char *step);

#endif
