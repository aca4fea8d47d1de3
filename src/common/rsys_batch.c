/*
 * rsys_batch.c - many injected system calls in one ptrace round trip.
 *
 * One rsys_call costs two PTRACE_SYSCALL stops (entry, exit) and the
 * context switches around them: ~40 us on an idle host, far more when the
 * tracee waits for a CPU.  A restore makes a few hundred of them while the
 * process is down.  Here a table of calls is written into the tracee and a
 * small code blob (RSYS_BATCH_CODE, placed by the caller in an executable
 * page of the tracee) runs them with PTRACE_CONT: no syscall stops, one
 * trap (int3) at the end.  rsys.h documents the table byte by byte.
 *
 * The blob, in order (rbx = entry, r12 = entries left):
 *   loop: eax = nr; rdi, rsi, rdx, r10, r8, r9 = args; syscall;
 *         ret = rax; if rax is -4095..-1 and !(flags & MAYFAIL) goto done;
 *         rbx += 64; if --r12 goto loop;
 *   done: int3
 *
 * Invariants:
 *  - The calls run in the order given, exactly as with one rsys_call each
 *    (the fallback when no blob is mapped), and stop at the same call.
 *  - While the blob runs every signal but SIGTRAP is blocked: no handler
 *    runs on borrowed registers.  A forced SIGTRAP that is blocked or
 *    ignored would reset its action to SIG_DFL (force_sig_info_to_task), so
 *    it is unblocked for the round trip, and the caller keeps batches to
 *    moments when the tracee does not ignore SIGTRAP nor has one pending.
 *  - The trap's SIGTRAP is never delivered: the next restart of the tracee
 *    (a call, a batch, the final registers) passes signal 0.
 *  - In a live process (the source's dump) the blob sits in the last page
 *    of the scratch mapping, made read-only and executable
 *    (rsys_batch_code), and the batch is journaled as one call in flight
 *    (RSYS_NR_BATCH): the calls there only read, so a survivor of a killed
 *    haul just puts registers and mask back and unmaps the scratch.  A
 *    SIGTRAP that another process sends meanwhile is taken by the thread
 *    (it alone is unblocked): it is told apart from the blob's own by its
 *    si_code (int3 gives SI_KERNEL, which no sender can forge) and queued
 *    again to the thread after the batch, siginfo and all.
 */
#define LOG_PREFIX "rsys: "
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>

#include "common/injlog.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/rsys.h"

/* as(1) of the loop in the opening comment; `done` is the last byte */
const uint8_t RSYS_BATCH_CODE[56] = {
	0x8b, 0x03,			    /* 00 mov eax, [rbx] */
	0x48, 0x8b, 0x7b, 0x08,		    /* 02 mov rdi, [rbx+8] */
	0x48, 0x8b, 0x73, 0x10,		    /* 06 mov rsi, [rbx+16] */
	0x48, 0x8b, 0x53, 0x18,		    /* 0a mov rdx, [rbx+24] */
	0x4c, 0x8b, 0x53, 0x20,		    /* 0e mov r10, [rbx+32] */
	0x4c, 0x8b, 0x43, 0x28,		    /* 12 mov r8, [rbx+40] */
	0x4c, 0x8b, 0x4b, 0x30,		    /* 16 mov r9, [rbx+48] */
	0x0f, 0x05,			    /* 1a syscall */
	0x48, 0x89, 0x43, 0x38,		    /* 1c mov [rbx+56], rax */
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff, /* 20 cmp rax, -4095 */
	0x72, 0x06,			    /* 26 jb 2e */
	0xf6, 0x43, 0x04, 0x01,		    /* 28 test byte [rbx+4], 1 */
	0x74, 0x09,			    /* 2c jz 37 */
	0x48, 0x83, 0xc3, 0x40,		    /* 2e add rbx, 64 */
	0x49, 0xff, 0xcc,		    /* 32 dec r12 */
	0x75, 0xc9,			    /* 35 jnz 00 */
	0xcc,				    /* 37 int3 */
};

#define OFF_NR	  0
#define OFF_FLAGS 4
#define OFF_ARGS  8
#define OFF_RET	  56

static bool is_err(long v)
{
	return v < 0 && v >= -4095;
}

void rsys_batch_encode(const struct rsys_bcall *c, size_t n, void *table)
{
	uint8_t *e = table;
	int64_t not_run = RSYS_BNOT_RUN;

	for (size_t i = 0; i < n; i++, e += RSYS_BENTRY_SIZE) {
		uint32_t nr = (uint32_t)c[i].nr, flags = c[i].flags;

		memcpy(e + OFF_NR, &nr, 4);
		memcpy(e + OFF_FLAGS, &flags, 4);
		memcpy(e + OFF_ARGS, c[i].args, 48);
		memcpy(e + OFF_RET, &not_run, 8);
	}
}

int rsys_batch_decode(struct rsys_bcall *c, size_t n, const void *table, size_t *failed)
{
	const uint8_t *e = table;
	int ret = 0;

	for (size_t i = 0; i < n; i++, e += RSYS_BENTRY_SIZE) {
		int64_t v;

		memcpy(&v, e + OFF_RET, 8);
		c[i].ret = (long)v;
		if (ret)
			continue;
		if (v == RSYS_BNOT_RUN) {
			/* a call left out with no failure before it */
			*failed = i;
			ret = -EPROTO;
		} else if (is_err(v) && !(c[i].flags & RSYS_BMAYFAIL)) {
			*failed = i;
			ret = (int)v;
		}
	}
	return ret;
}

/* One rsys_call each: the same contract as the blob. */
static int batch_singly(struct rsys *r, struct rsys_bcall *c, size_t n, size_t *failed)
{
	for (size_t i = 0; i < n; i++)
		c[i].ret = RSYS_BNOT_RUN;
	for (size_t i = 0; i < n; i++) {
		int ret = rsys_call(r, c[i].nr, c[i].args, &c[i].ret);

		if (ret) {
			*failed = n;
			return ret;
		}
		if (is_err(c[i].ret) && !(c[i].flags & RSYS_BMAYFAIL)) {
			*failed = i;
			return (int)c[i].ret;
		}
	}
	return 0;
}

/* SIGTRAPs from elsewhere the thread took during a batch, to queue again after it. */
struct foreign_traps {
	siginfo_t si[4];
	unsigned n;
};

/*
 * PTRACE_CONT until the blob's trap: a SIGTRAP with si_code SI_KERNEL (int3,
 * which no other process can send) at the end of the blob.  Other stops
 * (SIGSTOP, group-stop) are passed over; another SIGTRAP is kept in @ft.
 */
static int run_to_trap(pid_t pid, uint64_t trap_rip, struct foreign_traps *ft)
{
	for (;;) {
		struct user_regs_struct regs;
		siginfo_t si;
		int status;

		if (ptrace(PTRACE_CONT, pid, 0, 0) < 0)
			return -errno;
		if (waitpid(pid, &status, __WALL) < 0)
			return -errno;
		if (WIFEXITED(status) || WIFSIGNALED(status))
			return -ESRCH;
		if (!WIFSTOPPED(status) || (status >> 16) != 0)
			continue;
		if (WSTOPSIG(status) == SIGSTOP)
			continue;
		if (WSTOPSIG(status) != SIGTRAP) {
			pr_err("injected calls in thread %d stopped by signal %d instead of their "
			       "trap",
			       (int)pid, WSTOPSIG(status));
			return -EFAULT;
		}
		if (ptrace(PTRACE_GETREGS, pid, 0, &regs) < 0 ||
		    ptrace(PTRACE_GETSIGINFO, pid, 0, &si) < 0)
			return -errno;
		if (si.si_code != SI_KERNEL) {
			if (ft->n == sizeof(ft->si) / sizeof(ft->si[0])) {
				pr_err("thread %d took %u SIGTRAPs from elsewhere during its "
				       "injected calls",
				       (int)pid, ft->n + 1);
				return -EAGAIN;
			}
			ft->si[ft->n++] = si;
			continue;
		}
		if (regs.rip != trap_rip) {
			pr_err("injected calls in thread %d trapped at %#llx, not at %#llx",
			       (int)pid, regs.rip, (unsigned long long)trap_rip);
			return -EFAULT;
		}
		return 0;
	}
}

/* Queue again, to the thread that took them, the SIGTRAPs of @ft (all signals blocked now). */
static int requeue_traps(struct rsys *r, uint64_t table, const struct foreign_traps *ft)
{
	uint64_t none[6] = {0};
	long tgid, tid, res;
	int ret;

	if (!ft->n)
		return 0;
	/* the ids as the thread's own pid namespace sees them */
	ret = rsys_call(r, SYS_getpid, none, &tgid);
	if (!ret)
		ret = rsys_call(r, SYS_gettid, none, &tid);
	for (unsigned i = 0; !ret && i < ft->n; i++) {
		uint64_t args[6] = {(uint64_t)tgid, (uint64_t)tid, SIGTRAP, table};

		ret = rsys_write(r->pid, table, &ft->si[i], sizeof(ft->si[i]));
		if (!ret)
			ret = rsys_call(r, SYS_rt_tgsigqueueinfo, args, &res);
		if (!ret && res < 0)
			ret = (int)res;
	}
	if (ret)
		pr_err_r(ret, "cannot queue again a SIGTRAP thread %d took during injected calls",
			 (int)r->pid);
	return ret;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int set_mask(pid_t pid, uint64_t mask)
{
	return ptrace(PTRACE_SETSIGMASK, pid, sizeof(mask), &mask) < 0 ? -errno : 0;
}

int rsys_batch(struct rsys *r, uint64_t code, uint64_t table, struct rsys_bcall *c, size_t n,
	       size_t *failed)
{
	const uint64_t trap_bit = 1ULL << (SIGTRAP - 1), t0 = mono_ns();
	struct user_regs_struct regs = r->saved;
	struct foreign_traps ft = {.n = 0};
	size_t len = n * RSYS_BENTRY_SIZE;
	uint8_t *buf;
	int ret, mret;

	*failed = n;
	if (!n)
		return 0;
	if (!code)
		return batch_singly(r, c, n, failed);
	buf = malloc(len);
	if (!buf)
		return -ENOMEM;
	rsys_batch_encode(c, n, buf);
	ret = rsys_write(r->pid, table, buf, len);
	if (!ret)
		ret = rsys_block_signals(r); /* journals the thread first */
	if (ret)
		goto out;
	regs.rip = code;
	regs.rbx = table;
	regs.r12 = n;
	regs.orig_rax = (unsigned long long)-1;
	r->calls++;
	if (r->log)
		r->log->inflight_nr = RSYS_NR_BATCH;
	ret = set_mask(r->pid, ~trap_bit);
	if (!ret && ptrace(PTRACE_SETREGS, r->pid, 0, &regs) < 0)
		ret = -errno;
	injlog_fault("regs");
	if (!ret)
		ret = run_to_trap(r->pid, code + sizeof(RSYS_BATCH_CODE), &ft);
	/* every signal blocked again, as between injected calls */
	mret = set_mask(r->pid, ~0ULL);
	if (!ret)
		ret = mret;
	if (!ret)
		ret = rsys_read(r->pid, table, buf, len);
	if (!ret)
		injlog_fault("call");
	if (!mret) {
		int qret = requeue_traps(r, table, &ft);

		ret = ret ? ret : qret;
	}
	if (!ret) {
		ret = rsys_batch_decode(c, n, buf, failed);
		if (ret && c[*failed].ret == RSYS_BNOT_RUN) {
			pr_err("the injected calls of thread %d left call %zu (%s) out",
			       (int)r->pid, *failed, c[*failed].name ? c[*failed].name : "?");
			*failed = n;
		}
	}
out:
	free(buf);
	r->call_ns += mono_ns() - t0;
	return ret;
}

/* Whether @pid ignores SIGTRAP (status SigIgn): a forced one would reset its action. */
static bool ignores_sigtrap(pid_t pid)
{
	char path[64], text[4096];
	const char *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (haul_read_file(path, text, sizeof(text)) < 0 || !(f = strstr(text, "\nSigIgn:")))
		return true; /* unknown: no batches */
	return strtoull(f + 8, NULL, 16) & 1ULL << (SIGTRAP - 1);
}

int rsys_batch_code(struct rsys *r, uint64_t *code)
{
	uint64_t page, args[6];
	long res;
	int ret;

	*code = 0;
	if (!r->scratch)
		return -EINVAL;
	if (r->code_scratch == r->scratch) {
		*code = r->code;
		return 0;
	}
	r->code_scratch = r->scratch;
	r->code = 0;
	if (getenv("HAUL_RSYS_SINGLY")) /* to measure against, or to rule batches out */
		return 0;
	if (ignores_sigtrap(r->pid)) {
		pr_debug("pid %d ignores SIGTRAP: its injected calls run one at a time",
			 (int)r->pid);
		return 0;
	}
	/* written while the page is still writable, then made executable */
	page = r->scratch + RSYS_SCRATCH_CODE;
	ret = rsys_write(r->pid, page, RSYS_BATCH_CODE, sizeof(RSYS_BATCH_CODE));
	if (ret)
		return ret;
	args[0] = page;
	args[1] = RSYS_SCRATCH_SIZE - RSYS_SCRATCH_CODE;
	args[2] = PROT_READ | PROT_EXEC;
	ret = rsys_call(r, SYS_mprotect, args, &res);
	if (ret)
		return ret;
	if (res < 0) {
		pr_debug("pid %d refuses executable memory (%s): its injected calls run one at a "
			 "time",
			 (int)r->pid, strerror((int)-res));
		return 0;
	}
	r->code = page;
	*code = page;
	return 0;
}
