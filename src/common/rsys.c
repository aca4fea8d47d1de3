/*
 * rsys.c - system calls injected into a ptrace-stopped process.
 *
 * No code is written into the tracee: a `syscall` instruction (0f 05) that
 * already exists in its [vdso] (the fallback paths of the vDSO time calls
 * have one) is executed with the registers set to the call, stopping at
 * syscall entry and exit with PTRACE_SYSCALL (DESIGN.md "Kernel facts";
 * tests/integration/common_rsys.c).
 *
 * Invariants:
 *  - The registers saved at attach are what the tracee resumes with.  A
 *    syscall it was interrupted in is rewound here (rax = orig_rax, rip -= 2,
 *    or restart_syscall for -ERESTART_RESTARTBLOCK) and orig_rax set to -1,
 *    because the kernel's own restart logic would otherwise act on the
 *    injected registers instead.
 *  - Every injected call runs with orig_rax = -1 on entry for the same reason.
 *  - Signals are blocked in the tracee while calls are injected, so that no
 *    handler runs on borrowed registers; its own mask is put back at release.
 *  - With a journal (injlog.h), the saved registers, mask and syscall address
 *    are journaled before the first change (the mask), the number of each
 *    call before its registers are set, and what the calls create (scratch
 *    mapping, userfaultfd) as soon as it exists; the entry is freed only
 *    when registers and mask are back.  HAUL_FAULT=kill:inject:STEP hooks
 *    sit between every two of these steps.
 */
#define LOG_PREFIX "rsys: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RSYS_O_SUSPEND_SECCOMP (1 << 21) /* PTRACE_O_SUSPEND_SECCOMP, Linux 4.3 */

#include "common/log.h"
#include "common/proc.h"
#include "common/rsys.h"
#include "common/vma.h"

#define ERESTARTSYS_	       512
#define ERESTARTNOINTR_	       513
#define ERESTARTNOHAND_	       514
#define ERESTART_RESTARTBLOCK_ 516

/* A signal-delivery-stop seen while waiting for a ptrace event: pass the signal on. */
static bool is_signal_stop(int status)
{
	return WIFSTOPPED(status) && (status >> 16) == 0 && WSTOPSIG(status) != (SIGTRAP | 0x80);
}

/* Wait until the tracee @pid stops: 0 with its @status, -ESRCH once it is gone, or -errno. */
static int wait_stopped(pid_t pid, int *status)
{
	for (;;) {
		if (waitpid(pid, status, __WALL) < 0)
			return -errno;
		if (WIFEXITED(*status) || WIFSIGNALED(*status))
			return -ESRCH;
		if (WIFSTOPPED(*status))
			return 0;
	}
}

/* rsys_wait_event_stop, the stop's WSTOPSIG in *@sig. */
static int wait_event_stop(pid_t pid, int *sig)
{
	for (;;) {
		int status, ret = wait_stopped(pid, &status);

		if (ret)
			return ret;
		*sig = WSTOPSIG(status);
		if ((status >> 16) == PTRACE_EVENT_STOP)
			return 0;
		/*
		 * A signal arrived first: deliver it and keep waiting.  The
		 * pending PTRACE_INTERRUPT stays armed and stops the tracee at
		 * its next chance.
		 */
		if (ptrace(PTRACE_CONT, pid, 0, is_signal_stop(status) ? WSTOPSIG(status) : 0) < 0)
			return -errno;
	}
}

int rsys_wait_event_stop(pid_t pid)
{
	int sig;

	return wait_event_stop(pid, &sig);
}

int rsys_find_vdso_syscall(pid_t pid, uint64_t *addr)
{
	struct haul_layout l;
	const struct haul_vma *vdso = NULL;
	unsigned char *buf;
	int ret;

	ret = haul_layout_read(pid, false, &l);
	if (ret)
		return ret;
	for (size_t i = 0; i < l.n; i++)
		if (l.v[i].flags & HAUL_VMA_VDSO)
			vdso = &l.v[i];
	if (!vdso) {
		pr_err("pid %d has no [vdso]; cannot inject system calls", pid);
		ret = -ENOENT;
		goto out;
	}
	buf = malloc(vdso->end - vdso->start);
	if (!buf) {
		ret = -ENOMEM;
		goto out;
	}
	ret = rsys_read(pid, vdso->start, buf, vdso->end - vdso->start);
	if (!ret) {
		ret = -ENOENT;
		for (uint64_t off = 0; off + 1 < vdso->end - vdso->start; off++)
			if (buf[off] == 0x0f && buf[off + 1] == 0x05) {
				*addr = vdso->start + off;
				ret = 0;
				break;
			}
		if (ret)
			pr_err("no syscall instruction in the [vdso] of pid %d", pid);
	}
	free(buf);
out:
	haul_layout_release(&l);
	return ret;
}

/* Rewind an interrupted syscall so that the tracee restarts it on resume. */
static void rewind_syscall(struct rsys *r)
{
	struct user_regs_struct *g = &r->saved;
	long rax = (long)g->rax;

	if ((long)g->orig_rax < 0)
		return;
	switch (-rax) {
	case ERESTARTSYS_:
	case ERESTARTNOINTR_:
	case ERESTARTNOHAND_:
		g->rax = g->orig_rax;
		g->rip -= 2;
		r->in_syscall_restart = true;
		break;
	case ERESTART_RESTARTBLOCK_:
		g->rax = SYS_restart_syscall;
		g->rip -= 2;
		r->in_syscall_restart = true;
		break;
	default:
		break;
	}
	g->orig_rax = (unsigned long long)-1;
}

static int save_state(struct rsys *r)
{
	if (ptrace(PTRACE_GETREGS, r->pid, 0, &r->saved) < 0)
		return -errno;
	if (ptrace(PTRACE_GETSIGMASK, r->pid, sizeof(r->sigmask), &r->sigmask) < 0)
		return -errno;
	rewind_syscall(r);
	return 0;
}

/*
 * When @pid runs under seccomp (status "Seccomp:" 1 or 2), set
 * PTRACE_O_SUSPEND_SECCOMP: its filters, or strict mode, must not judge
 * the calls injected into it (a container's profile refusing userfaultfd,
 * say).  The detach clears it.  Needs CAP_SYS_ADMIN.  0 or -errno.
 */
static int suspend_seccomp(pid_t pid)
{
	char path[64], buf[4096], *f;
	ssize_t n;
	int fd, ret;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	ret = n < 0 ? -errno : 0;
	close(fd);
	if (ret)
		return ret;
	buf[n] = '\0';
	f = strstr(buf, "\nSeccomp:");
	if (!f || atoi(f + 9) == 0)
		return 0;
	if (ptrace(PTRACE_SETOPTIONS, pid, 0, PTRACE_O_TRACESYSGOOD | RSYS_O_SUSPEND_SECCOMP) < 0) {
		ret = -errno;
		pr_err_r(ret,
			 "cannot suspend the seccomp filters of thread %d for injected calls "
			 "(needs CAP_SYS_ADMIN)",
			 pid);
	}
	return ret;
}

int rsys_attach_stopped(struct rsys *r, pid_t pid, uint64_t sc_addr)
{
	int ret;

	memset(r, 0, sizeof(*r));
	r->pid = pid;
	ret = save_state(r);
	if (ret) {
		pr_err_r(ret, "cannot read the registers of pid %d", pid);
		return ret;
	}
	ret = suspend_seccomp(pid);
	if (ret)
		return ret;
	if (!sc_addr) {
		ret = rsys_find_vdso_syscall(pid, &sc_addr);
		if (ret)
			return ret;
	}
	r->sc_addr = sc_addr;
	if (injlog_active()) {
		r->log = injlog_thread(pid);
		if (!r->log) {
			pr_err("cannot journal thread %d: more than %d threads injected into at once",
			       pid, INJLOG_MAX_THREADS);
			return -ENOSPC;
		}
	}
	injlog_fault("seize");
	return 0;
}

bool rsys_thread_gone(pid_t tid)
{
	char st = 0;
	int ret = haul_proc_stat_field(tid, 3, &st, NULL);

	return ret == -ENOENT || ret == -ESRCH || (!ret && (st == 'Z' || st == 'X'));
}

int rsys_seize_start(pid_t pid)
{
	int ret;

	if (ptrace(PTRACE_SEIZE, pid, 0, PTRACE_O_TRACESYSGOOD) < 0) {
		ret = -errno;
		if (ret == -EPERM && rsys_thread_gone(pid))
			return -ESRCH;
		pr_err_r(ret, "cannot attach to pid %d (is it traced already, or gone?)", pid);
		return ret;
	}
	if (ptrace(PTRACE_INTERRUPT, pid, 0, 0) < 0) {
		ret = -errno;
		ptrace(PTRACE_DETACH, pid, 0, 0);
		return ret;
	}
	return 0;
}

int rsys_seize_finish(struct rsys *r, pid_t pid, uint64_t sc_addr)
{
	int ret, sig = 0;

	memset(r, 0, sizeof(*r));
	ret = wait_event_stop(pid, &sig);
	if (!ret)
		ret = rsys_attach_stopped(r, pid, sc_addr);
	if (ret) {
		ptrace(PTRACE_DETACH, pid, 0, 0);
		return ret;
	}
	r->seized = true;
	r->stop_sig = sig;
	return 0;
}

int rsys_seize(struct rsys *r, pid_t pid)
{
	int ret = rsys_seize_start(pid);

	return ret ? ret : rsys_seize_finish(r, pid, 0);
}

/* Resume to the next syscall stop (entry or exit), passing over other stops. */
static int step_syscall(pid_t pid)
{
	int sig = 0;

	for (;;) {
		int status, ret;

		if (ptrace(PTRACE_SYSCALL, pid, 0, sig) < 0)
			return -errno;
		sig = 0;
		ret = wait_stopped(pid, &status);
		if (ret)
			return ret;
		if (WSTOPSIG(status) == (SIGTRAP | 0x80))
			return 0;
		/*
		 * Signals are blocked, so only an unblockable stop (SIGSTOP
		 * group-stop, PTRACE_EVENT_STOP) lands here; swallow it: a stop
		 * request is re-raised by nobody, but the caller holds the tracee
		 * stopped anyway.
		 */
	}
}

/* Journal what an injected call left in the tracee, for a survivor to undo. */
static void journal_result(struct injlog_thr *e, long nr, const uint64_t args[6], long ret)
{
	if (nr == SYS_userfaultfd && ret >= 0)
		e->rfd = (int32_t)ret;
	else if (nr == SYS_close && (int64_t)args[0] == e->rfd)
		e->rfd = -1;
	else if (nr == SYS_munmap && args[0] == e->scratch && ret == 0)
		e->scratch = 0;
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int call_once(struct rsys *r, long nr, const uint64_t args[6], long *ret);

int rsys_call(struct rsys *r, long nr, const uint64_t args[6], long *ret)
{
	uint64_t t0 = mono_ns();
	int err = call_once(r, nr, args, ret);

	r->call_ns += mono_ns() - t0;
	return err;
}

int rsys_block_signals(struct rsys *r)
{
	uint64_t all = ~0ULL;

	if (r->sigmask_blocked)
		return 0;
	if (r->log && !r->log->dirty) {
		/* before the first change: what the thread must get back */
		r->log->regs = r->saved;
		r->log->sigmask = r->sigmask;
		r->log->sc_addr = r->sc_addr;
		r->log->dirty = 1;
	}
	if (ptrace(PTRACE_SETSIGMASK, r->pid, sizeof(all), &all) < 0)
		return -errno;
	r->sigmask_blocked = true;
	injlog_fault("mask");
	return 0;
}

static int call_once(struct rsys *r, long nr, const uint64_t args[6], long *ret)
{
	struct user_regs_struct regs = r->saved;
	int err = rsys_block_signals(r);

	if (err)
		return err;
	r->calls++;
	regs.rax = nr;
	regs.orig_rax = (unsigned long long)-1;
	regs.rdi = args[0];
	regs.rsi = args[1];
	regs.rdx = args[2];
	regs.r10 = args[3];
	regs.r8 = args[4];
	regs.r9 = args[5];
	regs.rip = r->sc_addr;
	if (r->log)
		r->log->inflight_nr = nr;
	if (ptrace(PTRACE_SETREGS, r->pid, 0, &regs) < 0)
		return -errno;
	injlog_fault("regs");
	err = step_syscall(r->pid); /* entry */
	if (err)
		return err;
	injlog_fault("entry");
	err = step_syscall(r->pid); /* exit */
	if (err)
		return err;
	injlog_fault("exit");
	if (ptrace(PTRACE_GETREGS, r->pid, 0, &regs) < 0)
		return -errno;
	*ret = (long)regs.rax;
	if (r->log)
		journal_result(r->log, nr, args, *ret);
	injlog_fault("call");
	return 0;
}

int rsys_scratch(struct rsys *r, uint64_t *addr)
{
	uint64_t args[6] = {0,
			    RSYS_SCRATCH_SIZE,
			    PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS,
			    (uint64_t)-1,
			    0};
	long ret;
	int err;

	if (r->scratch) {
		*addr = r->scratch;
		return 0;
	}
	err = rsys_call(r, SYS_mmap, args, &ret);
	if (err)
		return err;
	if (ret < 0 && ret > -4096) {
		pr_err_r((int)ret, "cannot map a scratch page in pid %d", r->pid);
		return (int)ret;
	}
	r->scratch = (uint64_t)ret;
	if (r->log)
		r->log->scratch = r->scratch;
	*addr = r->scratch;
	return 0;
}

int rsys_release(struct rsys *r)
{
	int ret = 0;

	if (r->scratch) {
		uint64_t args[6] = {r->scratch, RSYS_SCRATCH_SIZE};
		long rv;

		ret = rsys_call(r, SYS_munmap, args, &rv);
		r->scratch = 0;
		r->code_scratch = r->code = 0;
	}
	if (r->sigmask_blocked) {
		if (ptrace(PTRACE_SETSIGMASK, r->pid, sizeof(r->sigmask), &r->sigmask) < 0 && !ret)
			ret = -errno;
		r->sigmask_blocked = false;
	}
	if (ptrace(PTRACE_SETREGS, r->pid, 0, &r->saved) < 0 && !ret)
		ret = -errno;
	/* freed even after a failure: a survivor must never touch a thread we let run */
	injlog_thread_done(r->log);
	r->log = NULL;
	injlog_fault("restore");
	if (r->seized) {
		if (ptrace(PTRACE_DETACH, r->pid, 0, 0) < 0 && !ret)
			ret = -errno;
		r->seized = false;
	}
	return ret;
}

static int mem_io(pid_t pid, uint64_t addr, void *buf, size_t len, bool write)
{
	size_t done = 0;
	char path[64];
	int fd;

	while (done < len) {
		struct iovec l = {(char *)buf + done, len - done};
		struct iovec rv = {(void *)(uintptr_t)(addr + done), len - done};
		ssize_t n = write ? process_vm_writev(pid, &l, 1, &rv, 1, 0)
				  : process_vm_readv(pid, &l, 1, &rv, 1, 0);

		if (n <= 0)
			break;
		done += n;
	}
	if (done == len)
		return 0;
	/*
	 * process_vm_* refuse what the tracee cannot access itself (a
	 * read-only page for writes, PROT_NONE); /proc/PID/mem goes through
	 * FOLL_FORCE like a debugger does.
	 */
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)pid);
	fd = open(path, (write ? O_WRONLY : O_RDONLY) | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	while (done < len) {
		ssize_t n = write ? pwrite(fd, (const char *)buf + done, len - done, addr + done)
				  : pread(fd, (char *)buf + done, len - done, addr + done);

		if (n <= 0) {
			int ret = n < 0 ? -errno : -EIO;

			close(fd);
			return ret;
		}
		done += n;
	}
	close(fd);
	return 0;
}

int rsys_read(pid_t pid, uint64_t addr, void *buf, size_t len)
{
	return mem_io(pid, addr, buf, len, false);
}

int rsys_write(pid_t pid, uint64_t addr, const void *buf, size_t len)
{
	return mem_io(pid, addr, (void *)buf, len, true);
}
