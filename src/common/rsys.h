/*
 * rsys.h - run system calls inside another, ptrace-stopped process.
 *
 * No parasite code: a `syscall` instruction (0f 05) is found inside the
 * target's [vdso] (or a caller-given address, e.g. the restorer's trampoline)
 * and the target is single-stepped through it with PTRACE_SYSCALL, its
 * registers set to the call.  Used by the tracker (create a uffd inside the
 * target), the dump (rt_sigaction, sigaltstack, brk, PR_GET_TID_ADDRESS, ...)
 * and the restorer (mmap, mprotect, prctl, ...).  Batches: a small code blob
 * of haul's makes many calls in one round trip (rsys_batch, rsys_batch.c),
 * in the restorer's trampoline on the target, and in the last page of the
 * scratch mapping of a live process for the dump's read-only calls
 * (rsys_batch_code), unmapped with it.
 *
 * The process must be stopped by the calling thread's ptrace (only the
 * tracer thread may call these).  x86_64 only.
 *
 * On a live process (not the restorer's stub) open the injection journal
 * first (injlog_open) and hold the process (injlog_hold) before seizing it:
 * then each thread's own registers and mask are journaled before the first
 * change, and a survivor puts them back if haul dies mid-injection.
 */
#ifndef HAUL_COMMON_RSYS_H
#define HAUL_COMMON_RSYS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/user.h>

#include "common/injlog.h"

struct rsys {
	pid_t pid;		       /* the tracee (thread id) */
	uint64_t sc_addr;	       /* address of a 0f 05 in the tracee */
	struct user_regs_struct saved; /* registers at seize time */
	bool seized;		       /* we did PTRACE_SEIZE (detach on release) */
	bool in_syscall_restart;       /* saved regs were rewound to restart a syscall */
	uint64_t scratch;	       /* remote scratch mapping (0 until rsys_scratch) */
	uint64_t sigmask;	       /* the tracee's own signal mask, read at attach */
	bool sigmask_blocked;	       /* we blocked all signals for the injected calls */
	struct injlog_thr *log;	       /* its journal entry (injlog.h), NULL: none */
	unsigned long calls;	       /* round trips into it so far (the debug timings) */
	uint64_t call_ns;	       /* and the time they took, CLOCK_MONOTONIC */
	uint64_t code_scratch;	       /* the scratch mapping rsys_batch_code judged, 0: none */
	uint64_t code;		       /* its RSYS_BATCH_CODE, 0: batches run one call at a time */
	int stop_sig; /* WSTOPSIG of the seize's event-stop: a group-stop's signal, else SIGTRAP */
};

/*
 * PTRACE_SEIZE + PTRACE_INTERRUPT @pid, wait for its event-stop, save its
 * registers and rewind an interrupted syscall so that it restarts on resume
 * (rsys.c explains the rewind).  Finds the vdso
 * syscall instruction.  Returns 0 or -errno (-ESRCH: gone, -EPERM: already
 * traced or not allowed).
 */
int rsys_seize(struct rsys *r, pid_t pid);

/*
 * rsys_seize in two halves, so that many threads stop at once: start
 * (PTRACE_SEIZE + PTRACE_INTERRUPT: the thread is traced, its stop on the
 * way) for each, then finish each (wait for its stop, save its registers);
 * @sc_addr as for rsys_attach_stopped (another thread's: the same mm has
 * the same vdso).  Either half detaches the thread when it fails.
 */
int rsys_seize_start(pid_t pid);
int rsys_seize_finish(struct rsys *r, pid_t pid, uint64_t sc_addr);

/*
 * Whether thread @tid, which PTRACE_SEIZE refused with EPERM, has exited:
 * ptrace refuses a task that has an exit state (a zombie, or being reaped)
 * with EPERM, not ESRCH, and a thread of a busy process that just ended is
 * listed in /proc/PID/task for a moment longer.  Such a thread is not a
 * reason to fail; rsys_seize_start says -ESRCH for it.
 */
bool rsys_thread_gone(pid_t tid);

/*
 * Use a tracee already seized and in a ptrace-stop by this thread.  @sc_addr
 * is the address of a syscall instruction in it, or 0 to find one in its
 * [vdso].  Saves (and rewinds, as rsys_seize) its registers; rsys_release()
 * then restores them but does not detach.  With a journal open, takes the
 * thread's entry (-ENOSPC past INJLOG_MAX_THREADS).
 */
int rsys_attach_stopped(struct rsys *r, pid_t pid, uint64_t sc_addr);

/* Wait for @pid's PTRACE_EVENT_STOP after PTRACE_INTERRUPT (signal stops are passed on). */
int rsys_wait_event_stop(pid_t pid);

/* The address of a `syscall` instruction in @pid's [vdso], or -errno. */
int rsys_find_vdso_syscall(pid_t pid, uint64_t *addr);

/*
 * Execute syscall @nr with up to 6 arguments in the tracee.  Returns 0 and
 * the syscall's raw return value in *@ret (which may be a -errno of the
 * remote call), or a -errno of our own when ptrace fails (-ESRCH: the
 * tracee died).  All signals are blocked in the tracee (PTRACE_SETSIGMASK)
 * from the first call until rsys_release(), so no handler runs on the
 * injected registers; they stay pending and are delivered after release.
 */
int rsys_call(struct rsys *r, long nr, const uint64_t args[6], long *ret);

/*
 * A RSYS_SCRATCH_SIZE read-write anonymous mapping inside the tracee, for
 * syscall arguments passed by pointer; mapped on first use, unmapped by
 * rsys_release().  Returns 0 and its address in *@addr, or -errno.
 * Callers use it from offset 0 up to RSYS_SCRATCH_TABLE; from there a
 * batch's table (rsys_batch_code), and the last page may hold its code.
 */
#define RSYS_SCRATCH_SIZE  65536
#define RSYS_SCRATCH_TABLE 32768
#define RSYS_SCRATCH_CODE  (RSYS_SCRATCH_SIZE - 4096)
/* the most calls one batch in the scratch mapping takes */
#define RSYS_SCRATCH_BATCH ((RSYS_SCRATCH_CODE - RSYS_SCRATCH_TABLE) / 64)
int rsys_scratch(struct rsys *r, uint64_t *addr);

/*
 * Before the first change to the tracee's registers: journal what it must
 * get back (with a journal) and block every signal.  rsys_call and
 * rsys_batch do it themselves.  Returns 0 or -errno.
 */
int rsys_block_signals(struct rsys *r);

/*
 * A batch: many independent calls in one round trip.  RSYS_BATCH_CODE is
 * a code blob that the caller places, executable, in the tracee (the
 * restorer's trampoline); it runs the calls of a table in order with the
 * tracee's own `syscall`, writes each result back into the table, stops
 * at the first call that fails (unless that entry may fail) and traps
 * with int3.  Table entry (RSYS_BENTRY_SIZE bytes, host byte order):
 *   0  u32 nr             system call number
 *   4  u32 flags          RSYS_BMAYFAIL: an error does not stop the list
 *   8  u64 args[6]
 *   56 s64 ret            raw return, RSYS_BNOT_RUN until the blob ran it
 * The blob takes the table in rbx and the number of entries in r12 (>= 1);
 * it leaves r12 = 0 when every call ran, else the entries left counting
 * the failed one (its index is n - r12).
 */
#define RSYS_BENTRY_SIZE 64
/* a batch, as the journal's call in flight (injlog.h): no system call has that number */
#define RSYS_NR_BATCH (-2)
#define RSYS_BMAYFAIL 1u
#define RSYS_BNOT_RUN INT64_MIN
extern const uint8_t RSYS_BATCH_CODE[56];

struct rsys_bcall {
	const char *name; /* for messages: "setresuid" */
	long nr;
	uint64_t args[6];
	uint32_t flags; /* RSYS_BMAYFAIL */
	long ret;	/* out: raw return, RSYS_BNOT_RUN if not run */
};

/* Encode @n calls into @table (n * RSYS_BENTRY_SIZE bytes), every ret RSYS_BNOT_RUN. */
void rsys_batch_encode(const struct rsys_bcall *c, size_t n, void *table);

/*
 * Take the results of a table that ran back into @c.  Returns 0 when every
 * call that must succeed did, else the raw -errno of the first that did
 * not with its index in *@failed; -EPROTO when the table contradicts
 * itself (a call not run before a failure: a broken blob or a peer).
 */
int rsys_batch_decode(struct rsys_bcall *c, size_t n, const void *table, size_t *failed);

/*
 * Run @n calls in the tracee: with @code (the address of RSYS_BATCH_CODE
 * in it) and @table (n * RSYS_BENTRY_SIZE writable bytes in it) in one
 * round trip, or with @code == 0 one rsys_call each, with the same result:
 * 0, or the remote -errno of the first failing call that may not fail,
 * its index in *@failed (later calls are not run), or a -errno of our own
 * with *@failed = n (ptrace failed, the tracee died or stopped elsewhere).
 * During the round trip SIGTRAP alone is unblocked, for the blob's int3:
 * the caller makes sure that the tracee does not ignore SIGTRAP (the kernel
 * would reset the action of a forced one: rsys_batch_code checks).  A
 * SIGTRAP from elsewhere that the thread takes meanwhile is queued to it
 * again after the batch (thread-directed, its siginfo kept), so none is
 * lost.  With a journal (a live process) the batch is journaled as one
 * call in flight (injlog.h): a survivor puts the registers and mask back.
 */
int rsys_batch(struct rsys *r, uint64_t code, uint64_t table, struct rsys_bcall *c, size_t n,
	       size_t *failed);

/*
 * For batches in a live process: place RSYS_BATCH_CODE in the last page of
 * @r's scratch mapping (rsys_scratch) and make that page read-only and
 * executable; *@code its address, for rsys_batch in any thread of the
 * process with tables at scratch + RSYS_SCRATCH_TABLE.  *@code is 0 (and
 * rsys_batch then makes one call at a time, with the same results) when
 * the process ignores SIGTRAP or refuses executable memory (MDWE, an LSM),
 * or HAUL_RSYS_SINGLY is set (to measure against, or to rule batches out).
 * Judged once per scratch mapping.  Returns 0 or -errno.
 */
int rsys_batch_code(struct rsys *r, uint64_t *code);

/* Restore the saved registers and PTRACE_DETACH (if we seized). Returns 0 or -errno. */
int rsys_release(struct rsys *r);

/* Read/write tracee memory (process_vm_readv/writev, falling back to /proc/PID/mem). */
int rsys_read(pid_t pid, uint64_t addr, void *buf, size_t len);
int rsys_write(pid_t pid, uint64_t addr, const void *buf, size_t len);

#endif
