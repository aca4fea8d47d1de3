/*
 * rsys.h - run system calls inside another, ptrace-stopped process.
 *
 * No parasite code: a `syscall` instruction (0f 05) is found inside the
 * target's [vdso] (or a caller-given address, e.g. the restorer's trampoline)
 * and the target is single-stepped through it with PTRACE_SYSCALL, its
 * registers set to the call.  Used by the tracker (create a uffd inside the
 * target), the dump (rt_sigaction, sigaltstack, brk, PR_GET_TID_ADDRESS, ...)
 * and the restorer (mmap, mprotect, prctl, ...).
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
 */
#define RSYS_SCRATCH_SIZE 65536
int rsys_scratch(struct rsys *r, uint64_t *addr);

/* Restore the saved registers and PTRACE_DETACH (if we seized). Returns 0 or -errno. */
int rsys_release(struct rsys *r);

/* Read/write tracee memory (process_vm_readv/writev, falling back to /proc/PID/mem). */
int rsys_read(pid_t pid, uint64_t addr, void *buf, size_t len);
int rsys_write(pid_t pid, uint64_t addr, const void *buf, size_t len);

#endif
