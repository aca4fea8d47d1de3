/*
 * target.c - the restore target: a stub process rebuilt by ptrace into the
 * dumped process.
 *
 * Processes (T is the calling thread, the tracer):
 *
 *   T ── fork ─▶ M  (a copy of haul, single-threaded; mirrors the exit
 *                    status of the restored process, kills it if T goes
 *                    away before resume)
 *                ├─ same PID free here: clone3(set_tid = pid) ─▶ S
 *                └─ else unshare(PID|mount) ─▶ I (pid 1: mounts /proc,
 *                       reaps) ─ clone3(set_tid = pid) ─▶ S
 *                       (pid == 1: S is the namespace's init itself)
 *
 * M first unshares a time namespace whose offsets keep CLOCK_MONOTONIC and
 * CLOCK_BOOTTIME continuous (they can only be written before any process
 * enters it, hence before S exists).  S closes every fd and pause()s; T
 * seizes it by its PID as seen from here and does everything else with
 * injected system calls (rsys):
 *
 *  first layout: map a trampoline (a `syscall` instruction and a scratch
 *    area) at an address no VMA of the image uses, switch rsys to it,
 *    unmap everything else (haul's image, its vDSO), then create each VMA;
 *  later layouts: diff against what exists: keep compatible overlaps (same
 *    kind, same file at the same offset) with their contents, unmap the
 *    rest, create what is new; the trampoline moves if a VMA needs its place;
 *  pages: process_vm_writev straight into the VMAs (/proc/PID/mem for
 *    read-only ones: FOLL_FORCE), so pre-copy fills the memory while the
 *    source still runs and switchover writes only the last dirty pages;
 *  resume: vDSO at its old address (ARCH_MAP_VDSO_64), fds, cwd, umask,
 *    PR_SET_MM_MAP, personality, name, signal actions, altstack, rseq,
 *    robust list, tid address, itimers, pending signals, rlimits; the other
 *    threads (injected clone3 with their TIDs, auto-attached); creds in
 *    every thread; unmap the trampoline while stopped at that syscall's
 *    exit; xstate, registers and signal mask of every thread; detach.
 *
 * Invariants: file-backed MAP_SHARED VMAs are never written (the file holds
 * their content; writing stale pre-copy pages into it would corrupt it).
 * Anonymous private memory stays anonymous private.  A per-VMA bitmap marks
 * pages that may hold non-zero data, so a zero page is written only where
 * it replaces something (fresh anonymous memory is already zero).  It is
 * kept in 4 KiB chunks (128 MiB of VMA each), allocated only where a page
 * differs from the VMA's default (0 anonymous, 1 file): its cost follows
 * the pages that arrive, not the VMA sizes a peer declares (a 16 TiB VMA
 * costs a 1 MiB chunk table, not a 512 MiB bitmap).
 */
#define LOG_PREFIX "restore: "
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/rsys.h"
#include "common/validate.h"
#include "common/vma.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

#define RST_MAP_DROPPABLE      0x08 /* Linux 6.11; not in the libc headers */
#define RST_MADV_GUARD_INSTALL 102  /* Linux 6.13 */
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

struct ready_msg {
	int32_t err;   /* 0 or -errno of the step that failed */
	int32_t pidns; /* S is in a new PID namespace */
};

struct clone_args_ {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid,
		set_tid_size, cgroup;
};

/* ---- the helper processes (run after fork: raw syscalls only) ------------ */

struct spawn {
	pid_t pid;
	enum rst_pidns mode;
	int ready;
	int ctl;
	int devnull;
	char offsets[128];
};

static void report(int fd, int err, int pidns)
{
	struct ready_msg m = {err, pidns};

	if (write(fd, &m, sizeof(m)) < 0)
		_exit(127);
}

static int exit_code(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 127;
}

static pid_t clone_with_pid(pid_t pid)
{
	struct clone_args_ a;
	pid_t tid = pid;

	memset(&a, 0, sizeof(a));
	a.exit_signal = SIGCHLD;
	a.set_tid = (uint64_t)(uintptr_t)&tid;
	a.set_tid_size = 1;
	return syscall(SYS_clone3, &a, sizeof(a));
}

/*
 * fork() inside a child of a multi-threaded process would run glibc's
 * atfork locking on locks another thread may have held when we were forked
 * (malloc arenas): deadlock.  The raw system call takes no lock.
 */
static pid_t raw_fork(void)
{
	return syscall(SYS_fork);
}

/* S: wait to be seized. Every fd but the ready pipe is closed already. */
static void __attribute__((noreturn)) stub_main(int ready, int pidns)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Its own session: a ^C or hangup meant for haul's process group is not for it. */
	setsid();
	report(ready, 0, pidns);
	close(ready);
	for (;;)
		pause();
}

/* I: pid 1 of the new namespace; exits with S's status, killing the namespace. */
static void __attribute__((noreturn)) init_main(struct spawn *sp)
{
	pid_t child;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	child = clone_with_pid(sp->pid);
	if (child == 0)
		stub_main(sp->ready, 1);
	if (child < 0) {
		report(sp->ready, -errno, 1);
		_exit(127);
	}
	close(sp->ready);
	for (;;) {
		int status;
		pid_t w = waitpid(-1, &status, 0);

		if (w == child)
			_exit(exit_code(status));
		if (w < 0 && errno != EINTR)
			_exit(127);
	}
}

static void __attribute__((noreturn)) m_main(struct spawn *sp)
{
	struct pollfd pfd[2];
	bool resumed = false;
	pid_t child = -1;
	int fd;
	int32_t self = getpid();

	/* Only the two pipes survive (at 200 and 201): S inherits nothing of haul's. */
	fd = fcntl(sp->ready, F_DUPFD_CLOEXEC, 300);
	sp->ctl = fcntl(sp->ctl, F_DUPFD_CLOEXEC, 300);
	dup3(fd, 200, O_CLOEXEC);
	dup3(sp->ctl, 201, O_CLOEXEC);
	sp->ready = 200;
	sp->ctl = 201;
	dup3(sp->devnull, 0, 0);
	dup3(sp->devnull, 1, 0);
	dup3(sp->devnull, 2, 0);
	close_range(3, 199, 0);
	close_range(202, ~0U, 0);
	if (write(sp->ready, &self, sizeof(self)) < 0)
		_exit(127);
	{
		sigset_t all;
		struct sched_param prio = {0};

		uint64_t dfl[4] = {0, 0, 0, 0}; /* SIG_DFL, no flags, empty mask */

		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		/*
		 * Raw: glibc's signal() would leave SA_RESTART and a mask.  The
		 * stub inherits these all-zero actions, so resume sets only
		 * the image's (non-default) ones.
		 */
		for (int sig = 1; sig < 65; sig++)
			if (sig != SIGKILL && sig != SIGSTOP)
				syscall(SYS_rt_sigaction, sig, dfl, NULL, 8);
		sched_setscheduler(0, SCHED_OTHER, &prio);
	}
	if (unshare(CLONE_NEWTIME) < 0) {
		report(sp->ready, -errno, 0);
		_exit(127);
	}
	fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, sp->offsets, strlen(sp->offsets)) < 0) {
		report(sp->ready, -errno, 0);
		_exit(127);
	}
	close(fd);

	if (sp->mode != RST_PIDNS_ALWAYS) {
		child = clone_with_pid(sp->pid);
		if (child == 0) {
			close(sp->ctl);
			stub_main(sp->ready, 0);
		}
		if (child < 0 && (errno != EEXIST || sp->mode == RST_PIDNS_NEVER)) {
			report(sp->ready, -errno, 0);
			_exit(127);
		}
	}
	if (child < 0) {
		if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
			report(sp->ready, -errno, 1);
			_exit(127);
		}
		child = raw_fork();
		if (child == 0) {
			close(sp->ctl);
			/* Our own /proc, so that /proc/self is the restored PID. */
			if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) <
			    0) {
				report(sp->ready, -errno, 1);
				_exit(127);
			}
			if (sp->pid == 1)
				stub_main(sp->ready, 1);
			init_main(sp);
		}
		if (child < 0) {
			report(sp->ready, -errno, 1);
			_exit(127);
		}
	}
	close(sp->ready);

	pfd[0].fd = sp->ctl;
	pfd[0].events = POLLIN;
	pfd[1].fd = syscall(SYS_pidfd_open, child, 0);
	pfd[1].events = POLLIN;
	for (;;) {
		int status;

		if (pfd[1].fd < 0) {
			/* No pidfd: just wait (the restored process outlives T anyway). */
			if (waitpid(child, &status, 0) == child)
				_exit(exit_code(status));
			continue;
		}
		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[0].revents) {
			char c = 0;

			if (read(sp->ctl, &c, 1) == 1 && c == 'R') {
				resumed = true;
			} else {
				if (!resumed)
					syscall(SYS_pidfd_send_signal, pfd[1].fd, SIGKILL, NULL, 0);
				pfd[0].fd = -1;
			}
		}
		if (pfd[1].revents) {
			if (waitpid(child, &status, 0) == child)
				_exit(exit_code(status));
		}
	}
}

/* ---- remote calls -------------------------------------------------------- */

/* Inject @nr; a remote failure comes back as its -errno. */
int rst_rcall(struct rst_target *t, long nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3,
	      uint64_t a4, uint64_t a5, long *res)
{
	uint64_t args[6] = {a0, a1, a2, a3, a4, a5};
	long rv;
	int ret;

	ret = rsys_call(t->cur ? t->cur : &t->r, nr, args, &rv);
	if (ret) {
		pr_err_r(ret, "cannot run syscall %ld in restored pid %d", nr, (int)t->stub);
		return ret;
	}
	if (res)
		*res = rv;
	if (rv < 0 && rv > -4096)
		return (int)rv;
	return 0;
}

uint64_t rst_scratch(const struct rst_target *t)
{
	return t->tramp + TRAMP_CODE;
}

int rst_poke(struct rst_target *t, uint64_t addr, const void *data, size_t len)
{
	ssize_t n = pwrite(t->mem, data, len, addr);

	if (n == (ssize_t)len)
		return 0;
	return n < 0 ? -errno : -EIO;
}

/* Copy @s into the scratch area at @off; returns its remote address. */
int rst_put_str(struct rst_target *t, size_t off, const char *s, uint64_t *addr)
{
	size_t len = strlen(s) + 1;

	if (off + len > TRAMP_SCRATCH)
		return -ENAMETOOLONG;
	*addr = rst_scratch(t) + off;
	return rst_poke(t, *addr, s, len);
}

int rst_peek(struct rst_target *t, uint64_t addr, void *buf, size_t len)
{
	ssize_t n = pread(t->mem, buf, len, addr);

	if (n == (ssize_t)len)
		return 0;
	return n < 0 ? -errno : -EIO;
}

/* ---- start --------------------------------------------------------------- */

static pid_t first_child(pid_t pid)
{
	char path[64];
	int tries = 0;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)pid, (int)pid);
	while (tries++ < 1000) {
		char buf[64];
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		ssize_t n;

		if (fd < 0)
			return -errno;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n > 0) {
			buf[n] = '\0';
			return atoi(buf);
		}
		usleep(1000);
	}
	return -ESRCH;
}

static void offsets_text(char *buf, size_t len, int64_t mono, int64_t boot)
{
	/* Seconds may be negative; nanoseconds must lie in [0, 1e9). */
	long long ms = mono / 1000000000LL, mn = mono % 1000000000LL;
	long long bs = boot / 1000000000LL, bn = boot % 1000000000LL;

	if (mn < 0) {
		mn += 1000000000LL;
		ms--;
	}
	if (bn < 0) {
		bn += 1000000000LL;
		bs--;
	}
	snprintf(buf, len, "monotonic %lld %lld\nboottime %lld %lld\n", ms, mn, bs, bn);
}

static int read_ready(int fd, void *buf, size_t len)
{
	struct pollfd p = {fd, POLLIN, 0};
	size_t got = 0;

	while (got < len) {
		ssize_t n;
		int r = poll(&p, 1, 10000);

		if (r == 0)
			return -ETIMEDOUT;
		if (r < 0)
			return -errno;
		n = read(fd, (char *)buf + got, len - got);
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EPIPE;
		got += n;
	}
	return 0;
}

static int unregister_stub_rseq(struct rst_target *t)
{
	struct {
		uint64_t ptr;
		uint32_t size, sig, flags, pad;
	} rc;

	if (ptrace(PTRACE_GET_RSEQ_CONFIGURATION, t->stub, sizeof(rc), &rc) != sizeof(rc) ||
	    !rc.ptr)
		return 0;
	/* haul's glibc registered one; the kernel would write into memory about to go. */
	return rst_rcall(t, SYS_rseq, rc.ptr, rc.size, RSEQ_FLAG_UNREGISTER_, rc.sig, 0, 0, NULL);
}

int rst_target_new(const struct rst_target_opts *o, struct rst_target **out)
{
	struct rst_target *t;
	struct spawn sp = {0};
	struct ready_msg m;
	int ready[2] = {-1, -1}, ctl[2] = {-1, -1};
	int32_t mpid;
	pid_t child;
	char path[64];
	int ret;

	if (o->lazy && !o->before_resume) {
		pr_err("lazy (post-copy) restore needs a fault server hooked in "
		       "(rst_target_opts.before_resume); migrate with pre-copy only");
		return -EOPNOTSUPP;
	}
	if (o->pid <= 0) {
		pr_err("cannot restore pid %d: not a valid PID", (int)o->pid);
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->o = *o;
	t->ctl = t->mem = t->pidfd = -1;
	t->mpid = -1;

	if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(ctl, O_CLOEXEC) < 0) {
		ret = -errno;
		goto fail;
	}
	sp.pid = o->pid;
	sp.mode = o->pidns;
	sp.ready = ready[1];
	sp.ctl = ctl[0];
	sp.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (sp.devnull < 0) {
		ret = -errno;
		goto fail;
	}
	offsets_text(sp.offsets, sizeof(sp.offsets), o->monotonic_offset_ns, o->boottime_offset_ns);

	child = fork();
	if (child < 0) {
		ret = -errno;
		close(sp.devnull);
		goto fail;
	}
	if (child == 0) {
		if (o->detach) {
			/* Orphan M so that it is not our child. */
			pid_t g = raw_fork();

			if (g != 0)
				_exit(g < 0 ? 127 : 0);
		}
		m_main(&sp);
	}
	close(sp.devnull);
	close(ready[1]);
	ready[1] = -1;
	close(ctl[0]);
	ctl[0] = -1;
	t->ctl = ctl[1];
	ctl[1] = -1;
	if (o->detach) {
		int status;

		waitpid(child, &status, 0);
	} else {
		t->mpid = child;
	}

	ret = read_ready(ready[0], &mpid, sizeof(mpid));
	if (!ret)
		ret = read_ready(ready[0], &m, sizeof(m));
	if (ret) {
		pr_err_r(ret, "the restore helper for pid %d died before it was ready",
			 (int)o->pid);
		goto fail;
	}
	t->mpid = mpid;
	if (m.err) {
		ret = m.err;
		if (ret == -EEXIST)
			pr_err("cannot restore pid %d: the PID is in use here and a new PID namespace "
			       "was not allowed",
			       (int)o->pid);
		else
			pr_err_r(ret, "cannot start the restore stub for pid %d", (int)o->pid);
		goto fail;
	}
	t->pidns = m.pidns;
	/* S as seen from here: M's child, or I's child in a new namespace. */
	child = first_child(t->mpid);
	if (child > 0 && t->pidns && o->pid != 1)
		child = first_child(child);
	if (child <= 0) {
		ret = child < 0 ? child : -ESRCH;
		pr_err_r(ret, "cannot find the restore stub for pid %d", (int)o->pid);
		goto fail;
	}
	t->stub = child;
	/* S is not our child: held by a pidfd from here on, never signalled by its PID */
	t->pidfd = (int)syscall(SYS_pidfd_open, t->stub, 0);
	if (t->pidfd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open a pidfd for the restore stub of pid %d (kernel >= 5.3)",
			 (int)o->pid);
		goto fail;
	}
	ret = rsys_seize(&t->r, t->stub);
	if (ret)
		goto fail;
	t->seized = true;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)t->stub);
	t->mem = open(path, O_RDWR | O_CLOEXEC);
	if (t->mem < 0) {
		ret = -errno;
		goto fail;
	}
	ret = unregister_stub_rseq(t);
	if (ret)
		goto fail;
	close(ready[0]);
	pr_debug("pid %d: stub is pid %d here%s", (int)o->pid, (int)t->stub,
		 t->pidns ? " (new PID namespace)" : "");
	*out = t;
	return 0;
fail:
	if (ready[0] >= 0)
		close(ready[0]);
	if (ready[1] >= 0)
		close(ready[1]);
	if (ctl[0] >= 0)
		close(ctl[0]);
	if (ctl[1] >= 0)
		close(ctl[1]);
	rst_target_free(t);
	return ret;
}

int rst_target_kill(struct rst_target *t)
{
	if (t->pidfd < 0)
		return -ESRCH;
	if (syscall(SYS_pidfd_send_signal, t->pidfd, SIGKILL, NULL, 0) < 0)
		return -errno;
	return 0;
}

int rst_target_pidfd(const struct rst_target *t)
{
	return t->pidfd;
}

pid_t rst_target_pid(const struct rst_target *t)
{
	return t->stub;
}

/* ---- layout -------------------------------------------------------------- */

static bool overlaps(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	return a < d && c < b;
}

static bool tramp_clear(const struct haul_layout *l, uint64_t at)
{
	for (size_t i = 0; i < l->n; i++)
		if (overlaps(at - TRAMP_PAD, at + TRAMP_SIZE + TRAMP_PAD, l->v[i].start,
			     l->v[i].end))
			return false;
	return at >= (1ULL << 32) && at + TRAMP_SIZE + TRAMP_PAD < RST_TASK_SIZE;
}

/* Map a fresh trampoline clear of @l, using the current syscall address. */
static int tramp_map(struct rst_target *t, const struct haul_layout *l)
{
	static const uint8_t code[] = {0x0f, 0x05, 0xcc};
	uint64_t top = RST_TASK_SIZE - (1ULL << 30);
	long res;
	int ret;

	/* Candidates: 1 GiB steps down from the top of the address space. */
	for (uint64_t at = top; at > (1ULL << 32); at -= 1ULL << 30) {
		if (!tramp_clear(l, at) ||
		    (t->tramp && overlaps(at, at + TRAMP_SIZE, t->tramp, t->tramp + TRAMP_SIZE)))
			continue;
		ret = rst_rcall(t, SYS_mmap, at, TRAMP_SIZE, PROT_READ | PROT_WRITE,
				MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, (uint64_t)-1, 0,
				&res);
		if (ret == -EEXIST)
			continue;
		if (ret)
			return ret;
		if ((uint64_t)res != at) {
			rst_rcall(t, SYS_munmap, res, TRAMP_SIZE, 0, 0, 0, 0, NULL);
			continue;
		}
		ret = rst_poke(t, at, code, sizeof(code));
		if (!ret)
			ret = rst_rcall(t, SYS_mprotect, at, TRAMP_CODE, PROT_READ | PROT_EXEC, 0,
					0, 0, NULL);
		if (ret)
			return ret;
		if (t->tramp)
			rst_rcall(t, SYS_munmap, t->tramp, TRAMP_SIZE, 0, 0, 0, 0, NULL);
		t->tramp = at;
		t->r.sc_addr = at;
		return 0;
	}
	pr_err("no room for the restorer's trampoline in the address space of pid %d",
	       (int)t->o.pid);
	return -ENOMEM;
}

static bool compatible(const struct haul_vma *a, const struct haul_vma *b)
{
	const uint32_t kind = HAUL_VMA_SHARED | HAUL_VMA_ANON | HAUL_VMA_FILE | HAUL_VMA_SHMEM;

	if ((a->flags & kind) != (b->flags & kind))
		return false;
	if (a->flags & HAUL_VMA_SHMEM) /* one shmem object per mapping */
		return a->start == b->start && a->end == b->end;
	if (a->flags & HAUL_VMA_FILE)
		return a->dev == b->dev && a->ino == b->ino &&
		       a->start - a->pgoff == b->start - b->pgoff;
	return true;
}

/*
 * What mmap fixes for good and no later call changes: the file's open mode
 * behind a shared file mapping (mw: whether mprotect(PROT_WRITE) may ever
 * succeed), MAP_NORESERVE, MAP_DROPPABLE, MAP_GROWSDOWN (a stack made
 * without it never grows: the next deeper call chain faults).  Pre-copy layouts come from maps
 * and lack them; the state's layout has them, and a VMA made without them
 * is made again (remake).
 */
static uint32_t creation_flags(const struct haul_vma *v)
{
	uint32_t f = v->flags & (HAUL_VMA_NORESERVE | HAUL_VMA_DROPPABLE | HAUL_VMA_GROWSDOWN);

	if ((v->flags & HAUL_VMA_FILE) && (v->flags & HAUL_VMA_SHARED) &&
	    !(v->flags & HAUL_VMA_SHMEM))
		f |= v->flags & HAUL_VMA_MAYWRITE;
	return f;
}

/*
 * The protection a VMA is created with.  Shared memory is written through
 * its mapping, and /proc/PID/mem forces writes only into private (COW)
 * mappings: a read-only or PROT_NONE shmem VMA stays writable until resume
 * (finish_vmas), where it gets its own protection.
 */
static uint32_t create_prot(const struct haul_vma *v)
{
	if ((v->flags & HAUL_VMA_SHMEM) && (v->flags & HAUL_VMA_SHARED))
		return v->prot | PROT_READ | PROT_WRITE;
	return v->prot;
}

/* Whether a VMA of the image is one the restorer creates as memory. */
static bool wanted(const struct haul_vma *v)
{
	return haul_vma_is_memory(v);
}

static int apply_advice(struct rst_target *t, const struct haul_vma *v, uint64_t s, uint64_t e)
{
	static const struct {
		uint32_t flag;
		int advice;
	} adv[] = {
		{HAUL_VMA_HUGEPAGE, MADV_HUGEPAGE},	{HAUL_VMA_NOHUGE, MADV_NOHUGEPAGE},
		{HAUL_VMA_DONTFORK, MADV_DONTFORK},	{HAUL_VMA_DONTDUMP, MADV_DONTDUMP},
		{HAUL_VMA_WIPEONFORK, MADV_WIPEONFORK}, {HAUL_VMA_RANDOM, MADV_RANDOM},
		{HAUL_VMA_SEQ, MADV_SEQUENTIAL},	{HAUL_VMA_MERGEABLE, MADV_MERGEABLE},
	};

	for (size_t i = 0; i < sizeof(adv) / sizeof(adv[0]); i++) {
		int ret;

		if (!(v->flags & adv[i].flag))
			continue;
		ret = rst_rcall(t, SYS_madvise, s, e - s, adv[i].advice, 0, 0, 0, NULL);
		if (ret)
			pr_warn_r(ret, "cannot advise %#" PRIx64 "-%#" PRIx64 " of pid %d (%d)", s,
				  e, (int)t->o.pid, adv[i].advice);
	}
	return 0;
}

/* Create [@s, @e) of @v in the stub. */
static int create_part(struct rst_target *t, const struct haul_vma *v, uint64_t s, uint64_t e)
{
	uint64_t flags = MAP_FIXED | ((v->flags & HAUL_VMA_SHARED) ? MAP_SHARED : MAP_PRIVATE);
	long res;
	int ret, fd = -1;

	if (v->flags & HAUL_VMA_GROWSDOWN)
		flags |= MAP_GROWSDOWN;
	if (v->flags & HAUL_VMA_NORESERVE)
		flags |= MAP_NORESERVE;
	if ((v->flags & HAUL_VMA_DROPPABLE) && !(v->flags & HAUL_VMA_FILE))
		flags = (flags & ~(uint64_t)MAP_PRIVATE) | RST_MAP_DROPPABLE;
	if ((v->flags & HAUL_VMA_FILE) && !(v->flags & HAUL_VMA_SHMEM)) {
		uint64_t path;
		/* A shared mapping of a file opened for writing may be made writable later. */
		int oflags = ((v->flags & HAUL_VMA_SHARED) &&
			      ((v->prot & PROT_WRITE) || (v->flags & HAUL_VMA_MAYWRITE)))
				     ? O_RDWR
				     : O_RDONLY;

		ret = rst_put_str(t, 0, v->path, &path);
		if (!ret)
			ret = rst_rcall(t, SYS_openat, AT_FDCWD, path, oflags | O_CLOEXEC, 0, 0, 0,
					&res);
		if (ret) {
			pr_err_r(ret, "cannot open %s for VMA %#" PRIx64 " of pid %d", v->path,
				 v->start, (int)t->o.pid);
			return ret;
		}
		fd = (int)res;
		ret = rst_rcall(t, SYS_mmap, s, e - s, v->prot, flags, fd,
				v->pgoff + (s - v->start), &res);
		rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
	} else {
		ret = rst_rcall(t, SYS_mmap, s, e - s, create_prot(v), flags | MAP_ANONYMOUS,
				(uint64_t)-1, 0, &res);
	}
	if (!ret && (uint64_t)res != s)
		ret = -EFAULT;
	if (ret) {
		pr_err_r(ret, "cannot map %#" PRIx64 "-%#" PRIx64 " %s in pid %d", s, e,
			 v->path ? v->path : "(anon)", (int)t->o.pid);
		return ret;
	}
	if (v->path && (!strncmp(v->path, "[anon:", 6) || !strncmp(v->path, "[anon_shmem:", 12))) {
		/* A name given with PR_SET_VMA_ANON_NAME: "[anon:NAME]". */
		const char *name = strchr(v->path, ':') + 1;
		char buf[96];
		uint64_t rname;

		snprintf(buf, sizeof(buf), "%.*s", (int)strcspn(name, "]"), name);
		ret = rst_put_str(t, 0, buf, &rname);
		if (!ret)
			ret = rst_rcall(t, SYS_prctl, PR_SET_VMA, PR_SET_VMA_ANON_NAME, s, e - s,
					rname, 0, NULL);
		if (ret)
			pr_warn_r(ret, "cannot name %#" PRIx64 "-%#" PRIx64 " of pid %d '%s'", s, e,
				  (int)t->o.pid, buf);
	}
	return apply_advice(t, v, s, e);
}

static size_t bits_nchunks(const struct haul_vma *v)
{
	return (haul_vma_pages(v) + BITS_CHUNK_PAGES - 1) / BITS_CHUNK_PAGES;
}

/* The chunk table of @o, every page @fill. 0 or -ENOMEM. */
static int bits_init(struct tvma *o, bool fill)
{
	size_t n = bits_nchunks(&o->v);

	o->fill = fill;
	o->bits = calloc(n ? n : 1, sizeof(*o->bits));
	return o->bits ? 0 : -ENOMEM;
}

/* Page @i of @o; 0 or -ENOMEM (the first page of a chunk that differs from the fill). */
static int bit_set(struct tvma *o, uint64_t i, bool on)
{
	uint64_t **c = &o->bits[i / BITS_CHUNK_PAGES];

	i %= BITS_CHUNK_PAGES;
	if (!*c) {
		if (on == o->fill)
			return 0;
		*c = malloc(BITS_CHUNK_PAGES / 8);
		if (!*c)
			return -ENOMEM;
		memset(*c, o->fill ? 0xff : 0, BITS_CHUNK_PAGES / 8);
	}
	if (on)
		(*c)[i / 64] |= 1ULL << (i % 64);
	else
		(*c)[i / 64] &= ~(1ULL << (i % 64));
	return 0;
}

static bool bit_get(const struct tvma *o, uint64_t i)
{
	const uint64_t *c = o->bits[i / BITS_CHUNK_PAGES];

	i %= BITS_CHUNK_PAGES;
	return c ? c[i / 64] >> (i % 64) & 1 : o->fill;
}

/* Copy the bits of [@s, @e) from @o to @w, skipping chunks that are the fill on both. */
static int bits_carry(struct tvma *w, const struct tvma *o, uint64_t s, uint64_t e)
{
	for (uint64_t a = s; a < e;) {
		uint64_t oi = (a - o->v.start) >> 12, wi = (a - w->v.start) >> 12;
		uint64_t run = (e - a) >> 12;

		if (BITS_CHUNK_PAGES - oi % BITS_CHUNK_PAGES < run)
			run = BITS_CHUNK_PAGES - oi % BITS_CHUNK_PAGES;
		if (BITS_CHUNK_PAGES - wi % BITS_CHUNK_PAGES < run)
			run = BITS_CHUNK_PAGES - wi % BITS_CHUNK_PAGES;
		if (o->bits[oi / BITS_CHUNK_PAGES] || w->bits[wi / BITS_CHUNK_PAGES] ||
		    o->fill != w->fill)
			for (uint64_t k = 0; k < run; k++) {
				int ret = bit_set(w, wi + k, bit_get(o, oi + k));

				if (ret)
					return ret;
			}
		a += run << 12;
	}
	return 0;
}

static void tvmas_free(struct tvma *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].v.path);
		for (size_t k = 0; v[i].bits && k < bits_nchunks(&v[i].v); k++)
			free(v[i].bits[k]);
		free(v[i].bits);
	}
	free(v);
}

static int write_mem(struct rst_target *t, uint64_t addr, const void *data, size_t len);

/*
 * Make [@s, @e) of kept VMA @o again as @w, whose creation flags differ,
 * keeping its contents: a file-shared part is simply mapped again (the file
 * holds it); anonymous memory is mapped fresh elsewhere, the pages that may
 * hold data are copied over by the tracer (/proc/PID/mem: PROT_NONE too),
 * and mremap moves it over the old part, replacing it in one step.  Only
 * the first layout with VmFlags (the state's, at the switchover) meets
 * this, for VMAs made from a pre-copy layout: the stack (MAP_GROWSDOWN),
 * and rarely MAP_NORESERVE, MAP_DROPPABLE, a shared file opened for writing.
 */
static int remake(struct rst_target *t, const struct tvma *o, const struct haul_vma *w, uint64_t s,
		  uint64_t e)
{
	uint64_t flags = MAP_ANONYMOUS | MAP_PRIVATE, chunk = 64 << 10;
	char *buf;
	long tmp;
	int ret;

	if (w->flags & HAUL_VMA_FILE) {
		if (w->flags & HAUL_VMA_SHARED)
			return create_part(t, w, s, e);
		pr_warn("cannot remake private file mapping %#" PRIx64 "-%#" PRIx64
			" of pid %d with its mmap flags (%#x); it keeps those of pre-copy",
			s, e, (int)t->o.pid, creation_flags(w));
		return 0;
	}
	if (w->flags & HAUL_VMA_SHARED)
		flags = MAP_ANONYMOUS | MAP_SHARED;
	else if (w->flags & HAUL_VMA_DROPPABLE)
		flags = MAP_ANONYMOUS | RST_MAP_DROPPABLE;
	if (w->flags & HAUL_VMA_NORESERVE)
		flags |= MAP_NORESERVE;
	if (w->flags & HAUL_VMA_GROWSDOWN) /* mremap keeps it: the stack grows again */
		flags |= MAP_GROWSDOWN;
	ret = rst_rcall(t, SYS_mmap, 0, e - s, PROT_READ | PROT_WRITE, flags, (uint64_t)-1, 0,
			&tmp);
	if (ret) {
		pr_err_r(ret, "cannot map a copy of %#" PRIx64 "-%#" PRIx64 " in pid %d", s, e,
			 (int)t->o.pid);
		return ret;
	}
	buf = malloc(chunk);
	if (!buf)
		ret = -ENOMEM;
	for (uint64_t a = s; a < e && !ret; a += HAUL_PAGE_SIZE) {
		uint64_t b = a;

		while (b < e && b - a < chunk && bit_get(o, (b - o->v.start) >> 12))
			b += HAUL_PAGE_SIZE;
		if (b == a)
			continue;
		ret = rst_peek(t, a, buf, b - a);
		if (!ret)
			ret = write_mem(t, (uint64_t)tmp + (a - s), buf, b - a);
		a = b - HAUL_PAGE_SIZE;
	}
	free(buf);
	if (!ret)
		ret = rst_rcall(t, SYS_mremap, (uint64_t)tmp, e - s, e - s,
				MREMAP_MAYMOVE | MREMAP_FIXED, s, 0, NULL);
	if (ret) {
		pr_err_r(ret,
			 "cannot remake %#" PRIx64 "-%#" PRIx64 " of pid %d with its mmap flags", s,
			 e, (int)t->o.pid);
		rst_rcall(t, SYS_munmap, (uint64_t)tmp, e - s, 0, 0, 0, 0, NULL);
		return ret;
	}
	if (create_prot(w) != (PROT_READ | PROT_WRITE))
		ret = rst_rcall(t, SYS_mprotect, s, e - s, create_prot(w), 0, 0, 0, NULL);
	if (!ret)
		ret = apply_advice(t, w, s, e);
	return ret;
}

/* VmFlags: what smaps adds to a maps line; layouts sent in pre-copy lack them. */
#define VMFLAGS_MASK HAUL_VMA_VMFLAGS

/*
 * Whether @l has exactly the VMAs the stub has (ranges, protections, kinds,
 * files; VmFlags aside).  Then nothing is mapped or unmapped and no page
 * bitmap is rebuilt: the state's layout at the switchover is normally the
 * last one sent, and rebuilding the bitmaps page by page cost time in
 * proportion to memory size (~7 ms for 4 GiB) inside the downtime.
 */
static bool same_geometry(const struct rst_target *t, const struct haul_layout *l)
{
	size_t k = 0;

	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i], *o;

		if (!wanted(v))
			continue;
		if (k == t->n)
			return false;
		o = &t->v[k++].v;
		if (o->start != v->start || o->end != v->end || o->prot != v->prot ||
		    o->pgoff != v->pgoff || o->dev != v->dev || o->ino != v->ino ||
		    (o->flags & ~VMFLAGS_MASK) != (v->flags & ~VMFLAGS_MASK))
			return false;
		if (!o->path || !v->path ? o->path != v->path : strcmp(o->path, v->path) != 0)
			return false;
	}
	return k == t->n;
}

/* Same geometry: take @l's VmFlags, advising only what is new (the diff keeps such VMAs too). */
static int update_vmflags(struct rst_target *t, const struct haul_layout *l)
{
	size_t k = 0;

	for (size_t i = 0; i < l->n; i++) {
		struct haul_vma add;
		struct tvma *o;

		if (!wanted(&l->v[i]))
			continue;
		o = &t->v[k++];
		add = l->v[i];
		add.flags &= ~o->v.flags & ~HAUL_VMA_UFFD_WP;
		if (creation_flags(&o->v) != creation_flags(&l->v[i])) {
			int ret = remake(t, o, &l->v[i], o->v.start, o->v.end);

			if (ret)
				return ret;
		} else if (add.flags & VMFLAGS_MASK) {
			apply_advice(t, &add, add.start, add.end);
		}
		o->v.flags = l->v[i].flags & ~HAUL_VMA_UFFD_WP;
	}
	return 0;
}

int rst_target_layout(struct rst_target *t, const struct haul_layout *l)
{
	struct tvma *nv;
	size_t nn = 0;
	int ret = 0;

	if (t->resumed)
		return -EINVAL;
	if (!t->tramp || !tramp_clear(l, t->tramp)) {
		ret = tramp_map(t, l);
		if (ret)
			return ret;
	}
	if (!t->v) {
		/* First layout: nothing of haul may remain (its vDSO blocks ARCH_MAP_VDSO). */
		ret = rst_rcall(t, SYS_munmap, 0, t->tramp, 0, 0, 0, 0, NULL);
		if (!ret)
			ret = rst_rcall(t, SYS_munmap, t->tramp + TRAMP_SIZE,
					RST_TASK_SIZE - (t->tramp + TRAMP_SIZE), 0, 0, 0, 0, NULL);
		if (ret) {
			pr_err_r(ret, "cannot clear the address space of the stub for pid %d",
				 (int)t->o.pid);
			return ret;
		}
	}
	if (t->v && same_geometry(t, l))
		return update_vmflags(t, l);

	nv = calloc(l->n ? l->n : 1, sizeof(*nv));
	if (!nv)
		return -ENOMEM;
	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i];
		struct tvma *o = &nv[nn];
		bool file = (v->flags & HAUL_VMA_FILE) && !(v->flags & HAUL_VMA_SHMEM);

		if (!wanted(v))
			continue;
		o->v = *v;
		o->v.flags &= ~HAUL_VMA_UFFD_WP;
		o->v.path = v->path ? strdup(v->path) : NULL;
		ret = bits_init(o, file);
		nn++;
		if (ret || (v->path && !o->v.path)) {
			ret = -ENOMEM;
			goto out;
		}
	}

	/* Unmap whatever of the old VMAs no compatible new VMA keeps. */
	for (size_t i = 0; i < t->n && !ret; i++) {
		const struct haul_vma *ov = &t->v[i].v;
		uint64_t cur = ov->start;

		for (size_t j = 0; j < nn && cur < ov->end; j++) {
			const struct haul_vma *w = &nv[j].v;

			if (!overlaps(ov->start, ov->end, w->start, w->end) || !compatible(ov, w))
				continue;
			if (w->start > cur)
				ret = rst_rcall(t, SYS_munmap, cur, w->start - cur, 0, 0, 0, 0,
						NULL);
			cur = w->end < ov->end ? w->end : ov->end;
		}
		if (!ret && cur < ov->end)
			ret = rst_rcall(t, SYS_munmap, cur, ov->end - cur, 0, 0, 0, 0, NULL);
	}
	/* Create what is new, fix protections of what is kept, carry the bits over. */
	for (size_t j = 0; j < nn && !ret; j++) {
		struct tvma *w = &nv[j];
		uint64_t cur = w->v.start;

		for (size_t i = 0; i < t->n && !ret; i++) {
			struct tvma *o = &t->v[i];
			uint64_t s, e;

			if (!overlaps(o->v.start, o->v.end, w->v.start, w->v.end) ||
			    !compatible(&o->v, &w->v))
				continue;
			s = o->v.start > w->v.start ? o->v.start : w->v.start;
			e = o->v.end < w->v.end ? o->v.end : w->v.end;
			if (s > cur)
				ret = create_part(t, &w->v, cur, s);
			if (!ret && creation_flags(&o->v) != creation_flags(&w->v)) {
				ret = remake(t, o, &w->v, s, e);
			} else if (!ret) {
				/* advice the kept part lacks: pre-copy layouts carry no VmFlags */
				struct haul_vma add = w->v;

				add.flags &= ~o->v.flags;
				if (create_prot(&o->v) != create_prot(&w->v))
					ret = rst_rcall(t, SYS_mprotect, s, e - s,
							create_prot(&w->v), 0, 0, 0, NULL);
				if (!ret && (add.flags & VMFLAGS_MASK))
					apply_advice(t, &add, s, e);
			}
			if (!ret)
				ret = bits_carry(w, o, s, e);
			cur = e;
		}
		if (!ret && cur < w->v.end)
			ret = create_part(t, &w->v, cur, w->v.end);
	}
out:
	if (ret) {
		tvmas_free(nv, nn);
		return ret;
	}
	tvmas_free(t->v, t->n);
	t->v = nv;
	t->n = nn;
	return 0;
}

/* ---- pages --------------------------------------------------------------- */

static struct tvma *find_tvma(struct rst_target *t, uint64_t addr)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (addr < t->v[mid].v.start)
			hi = mid;
		else if (addr >= t->v[mid].v.end)
			lo = mid + 1;
		else
			return &t->v[mid];
	}
	return NULL;
}

static int write_mem(struct rst_target *t, uint64_t addr, const void *data, size_t len)
{
	struct iovec l = {(void *)data, len}, r = {(void *)(uintptr_t)addr, len};
	ssize_t n = process_vm_writev(t->stub, &l, 1, &r, 1, 0);

	if (n == (ssize_t)len)
		return 0;
	if (n < 0)
		n = 0;
	/* A read-only VMA (or a partial write): /proc/PID/mem forces it. */
	return rst_poke(t, addr + n, (const char *)data + n, len - n);
}

static const uint8_t zeros[64 << 10];

int rst_target_pages(struct rst_target *t, uint64_t addr, const void *data, uint32_t npages)
{
	uint64_t end = addr + (uint64_t)npages * HAUL_PAGE_SIZE;

	if (t->resumed)
		return -EINVAL;
	while (addr < end) {
		struct tvma *v = find_tvma(t, addr);
		uint64_t stop, first;
		int ret = 0;

		if (!v) {
			pr_err("page %#" PRIx64 " of pid %d lies outside every VMA of the layout",
			       addr, (int)t->o.pid);
			return -ERANGE;
		}
		stop = end < v->v.end ? end : v->v.end;
		first = (addr - v->v.start) >> 12;
		if ((v->v.flags & HAUL_VMA_FILE) && (v->v.flags & HAUL_VMA_SHARED) &&
		    !(v->v.flags & HAUL_VMA_SHMEM)) {
			/* The file has these pages; never write stale copies into it. */
		} else if (data) {
			ret = write_mem(t, addr, data, stop - addr);
			for (uint64_t i = 0; !ret && i < (stop - addr) >> 12; i++)
				ret = bit_set(v, first + i, true);
		} else {
			/* Zero only pages that may hold something else. */
			for (uint64_t a = addr; a < stop && !ret;) {
				uint64_t b = a;

				while (b < stop && bit_get(v, (b - v->v.start) >> 12) &&
				       b - a < sizeof(zeros))
					b += HAUL_PAGE_SIZE;
				if (b == a) {
					a += HAUL_PAGE_SIZE;
					continue;
				}
				ret = write_mem(t, a, zeros, b - a);
				for (uint64_t p = a; !ret && p < b; p += HAUL_PAGE_SIZE)
					ret = bit_set(v, (p - v->v.start) >> 12, false);
				a = b;
			}
		}
		if (ret) {
			pr_err_r(ret, "cannot write pages at %#" PRIx64 " of pid %d", addr,
				 (int)t->o.pid);
			return ret;
		}
		if (data)
			data = (const char *)data + (stop - addr);
		addr = stop;
	}
	return 0;
}

/* ---- resume -------------------------------------------------------------- */

struct prctl_mm_map_ {
	uint64_t start_code, end_code, start_data, end_data, start_brk, brk, start_stack;
	uint64_t arg_start, arg_end, env_start, env_end;
	uint64_t auxv;
	uint32_t auxv_size;
	uint32_t exe_fd;
};

static void img_to_regs(const Haul__Img__Regs *o, struct user_regs_struct *g)
{
	memset(g, 0, sizeof(*g));
	g->r15 = o->r15;
	g->r14 = o->r14;
	g->r13 = o->r13;
	g->r12 = o->r12;
	g->rbp = o->rbp;
	g->rbx = o->rbx;
	g->r11 = o->r11;
	g->r10 = o->r10;
	g->r9 = o->r9;
	g->r8 = o->r8;
	g->rax = o->rax;
	g->rcx = o->rcx;
	g->rdx = o->rdx;
	g->rsi = o->rsi;
	g->rdi = o->rdi;
	g->orig_rax = o->orig_rax;
	g->rip = o->rip;
	g->cs = o->cs;
	g->eflags = o->eflags;
	g->rsp = o->rsp;
	g->ss = o->ss;
	g->fs_base = o->fs_base;
	g->gs_base = o->gs_base;
	g->ds = o->ds;
	g->es = o->es;
	g->fs = o->fs;
	g->gs = o->gs;
}

/* The vDSO of this kernel, at the address the process knew (vvar first). */
static int restore_vdso(struct rst_target *t, const struct haul_layout *l, char *why, size_t wl)
{
	uint64_t vvar = 0, vdso = 0, vdso_end = 0;
	struct haul_layout now;
	const struct haul_vma *got;
	int ret;

	for (size_t i = 0; i < l->n; i++) {
		if ((l->v[i].flags & HAUL_VMA_VVAR) && (!vvar || l->v[i].start < vvar))
			vvar = l->v[i].start;
		if (l->v[i].flags & HAUL_VMA_VDSO) {
			vdso = l->v[i].start;
			vdso_end = l->v[i].end;
		}
	}
	if (!vdso)
		return 0;
	ret = rst_rcall(t, SYS_arch_prctl, ARCH_MAP_VDSO_64_, vvar ? vvar : vdso, 0, 0, 0, 0, NULL);
	if (ret) {
		snprintf(why, wl, "cannot map the vDSO at %#" PRIx64 ": %s", vvar ? vvar : vdso,
			 strerror(-ret));
		return ret;
	}
	ret = haul_layout_read(t->stub, false, &now);
	if (ret)
		return ret;
	got = haul_layout_find(&now, vdso);
	if (!got || !(got->flags & HAUL_VMA_VDSO) || got->start != vdso || got->end != vdso_end) {
		snprintf(why, wl,
			 "the vDSO of this kernel does not fit where the source had it "
			 "(%#" PRIx64 "-%#" PRIx64 "); restore needs the same kernel build",
			 vdso, vdso_end);
		ret = -EOPNOTSUPP;
	}
	haul_layout_release(&now);
	return ret;
}

static int restore_mm(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	const Haul__Img__MmMap *mm = ps->mm;
	struct prctl_mm_map_ m = {0};
	uint64_t rexe;
	long res;
	int ret, exe_fd;

	ret = rst_put_str(t, 4096, mm->exe, &rexe);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rexe, O_RDONLY | O_CLOEXEC, 0, 0, 0, &res);
	if (ret) {
		snprintf(why, wl, "cannot open the executable %.256s: %s", mm->exe, strerror(-ret));
		return ret;
	}
	exe_fd = (int)res;
	if (ps->auxv.len > 2048) {
		snprintf(why, wl, "the auxiliary vector (%zu bytes) is too large", ps->auxv.len);
		return -E2BIG;
	}
	m.start_code = mm->start_code;
	m.end_code = mm->end_code;
	m.start_data = mm->start_data;
	m.end_data = mm->end_data;
	m.start_brk = mm->start_brk;
	m.brk = mm->brk;
	m.start_stack = mm->start_stack;
	m.arg_start = mm->arg_start;
	m.arg_end = mm->arg_end;
	m.env_start = mm->env_start;
	m.env_end = mm->env_end;
	m.auxv = rst_scratch(t) + 1024;
	m.auxv_size = ps->auxv.len;
	m.exe_fd = exe_fd;
	{
		/*
		 * The stub's exe is haul's binary.  When the process runs that same
		 * file (and maps it), the kernel refuses to replace the exe by
		 * itself (EBUSY while the old one is mapped); it is right already.
		 */
		struct stat cur, want;
		char link[64];

		snprintf(link, sizeof(link), "/proc/%d/exe", (int)t->stub);
		if (!stat(link, &cur) && !stat(mm->exe, &want) && cur.st_dev == want.st_dev &&
		    cur.st_ino == want.st_ino)
			m.exe_fd = (uint32_t)-1;
	}
	ret = rst_poke(t, rst_scratch(t) + 1024, ps->auxv.data, ps->auxv.len);
	if (!ret)
		ret = rst_poke(t, rst_scratch(t), &m, sizeof(m));
	if (!ret)
		ret = rst_rcall(t, SYS_prctl, PR_SET_MM, PR_SET_MM_MAP, rst_scratch(t), sizeof(m),
				0, 0, NULL);
	rst_rcall(t, SYS_close, exe_fd, 0, 0, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl, "cannot set the memory map fields (PR_SET_MM_MAP): %s",
			 strerror(-ret));
	return ret;
}

static int restore_signals(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			   size_t wl)
{
	uint64_t ss[3];
	int ret = 0;

	/* The stub's actions are all SIG_DFL with no flags (helper M): set only the image's. */
	for (size_t i = 0; i < ps->n_sigactions && !ret; i++) {
		const Haul__Img__SigAction *a = ps->sigactions[i];
		uint64_t ka[4] = {a->handler, a->flags, a->restorer, a->mask};
		int sig = (int)a->signo;

		if (sig < 1 || sig > 64 || sig == SIGKILL || sig == SIGSTOP)
			continue;
		ret = rst_poke(t, rst_scratch(t), ka, sizeof(ka));
		if (!ret)
			ret = rst_rcall(t, SYS_rt_sigaction, sig, rst_scratch(t), 0, 8, 0, 0, NULL);
		if (ret)
			snprintf(why, wl, "cannot set the action of signal %d: %s", sig,
				 strerror(-ret));
	}
	if (ret)
		return ret;
	if (ps->has_altstack_flags) {
		if (ps->altstack_flags & SS_DISABLE) {
			ss[0] = 0;
			ss[1] = SS_DISABLE;
			ss[2] = 0;
		} else {
			ss[0] = ps->altstack_sp;
			ss[1] = ps->altstack_flags & ~(uint32_t)SS_ONSTACK;
			ss[2] = ps->altstack_size;
		}
		ret = rst_poke(t, rst_scratch(t), ss, sizeof(ss));
		if (!ret)
			ret = rst_rcall(t, SYS_sigaltstack, rst_scratch(t), 0, 0, 0, 0, 0, NULL);
		if (ret) {
			snprintf(why, wl, "cannot set the alternate signal stack: %s",
				 strerror(-ret));
			return ret;
		}
	}
	/* Queued signals stay pending: every signal is blocked until the mask is set last. */
	for (size_t i = 0; i < ps->n_pending; i++) {
		const Haul__Img__PendingSignal *p = ps->pending[i];
		int32_t signo;

		if (p->siginfo.len != 128)
			continue;
		memcpy(&signo, p->siginfo.data, sizeof(signo));
		ret = rst_poke(t, rst_scratch(t), p->siginfo.data, 128);
		if (!ret && p->shared)
			ret = rst_rcall(t, SYS_rt_sigqueueinfo, t->o.pid, signo, rst_scratch(t), 0,
					0, 0, NULL);
		else if (!ret)
			ret = rst_rcall(t, SYS_rt_tgsigqueueinfo, t->o.pid, t->o.pid, signo,
					rst_scratch(t), 0, 0, NULL);
		if (ret) {
			snprintf(why, wl, "cannot requeue pending signal %d: %s", signo,
				 strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static int restore_task(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			size_t wl)
{
	uint64_t addr;
	int ret;

	ret = rst_put_str(t, 0, ps->cwd, &addr);
	if (!ret)
		ret = rst_rcall(t, SYS_chdir, addr, 0, 0, 0, 0, 0, NULL);
	if (ret) {
		snprintf(why, wl, "cannot enter the working directory %.256s: %s", ps->cwd,
			 strerror(-ret));
		return ret;
	}
	ret = rst_rcall(t, SYS_umask, ps->umask, 0, 0, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_personality, ps->personality, 0, 0, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_put_str(t, 0, ps->comm, &addr);
	if (!ret)
		ret = rst_rcall(t, SYS_prctl, PR_SET_NAME, addr, 0, 0, 0, 0, NULL);
	if (!ret && ps->rseq)
		ret = rst_rcall(t, SYS_rseq, ps->rseq->addr, ps->rseq->len, 0, ps->rseq->sig, 0, 0,
				NULL);
	if (ret) {
		snprintf(why, wl, "cannot restore cwd, umask, personality, name or rseq: %s",
			 strerror(-ret));
		return ret;
	}
	if (ps->has_robust_list)
		ret = rst_rcall(t, SYS_set_robust_list, ps->robust_list, ps->robust_list_len, 0, 0,
				0, 0, NULL);
	if (!ret && ps->has_tid_address)
		ret = rst_rcall(t, SYS_set_tid_address, ps->tid_address, 0, 0, 0, 0, 0, NULL);
	if (!ret && ps->has_timerslack_ns)
		ret = rst_rcall(t, SYS_prctl, PR_SET_TIMERSLACK, ps->timerslack_ns, 0, 0, 0, 0,
				NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_prctl, PR_SET_PDEATHSIG,
				ps->has_pdeathsig ? ps->pdeathsig : 0, 0, 0, 0, 0, NULL);
	for (size_t i = 0; !ret && i < ps->n_itimers; i++) {
		const Haul__Img__Itimer *it = ps->itimers[i];
		uint64_t tv[4] = {it->interval_us / 1000000, it->interval_us % 1000000,
				  it->value_us / 1000000, it->value_us % 1000000};

		ret = rst_poke(t, rst_scratch(t), tv, sizeof(tv));
		if (!ret)
			ret = rst_rcall(t, SYS_setitimer, it->which, rst_scratch(t), 0, 0, 0, 0,
					NULL);
	}
	if (ret) {
		snprintf(why, wl, "cannot restore robust list, tid address or timers: %s",
			 strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < ps->n_rlimits; i++) {
		struct rlimit rl = {ps->rlimits[i]->cur, ps->rlimits[i]->max};

		if (prlimit(t->stub, ps->rlimits[i]->resource, &rl, NULL) < 0) {
			struct rlimit old;

			/* Without CAP_SYS_RESOURCE a hard limit cannot grow: keep ours. */
			if (errno == EPERM &&
			    !prlimit(t->stub, ps->rlimits[i]->resource, NULL, &old)) {
				rl.rlim_max = old.rlim_max;
				if (rl.rlim_cur > rl.rlim_max)
					rl.rlim_cur = rl.rlim_max;
				prlimit(t->stub, ps->rlimits[i]->resource, &rl, NULL);
			}
			pr_warn("pid %d: cannot set rlimit %u to %" PRIu64 "/%" PRIu64
				" (no CAP_SYS_RESOURCE?); it keeps a lower hard limit",
				(int)t->o.pid, ps->rlimits[i]->resource, ps->rlimits[i]->cur,
				ps->rlimits[i]->max);
		}
	}
	if (ps->has_nice)
		setpriority(PRIO_PROCESS, t->stub, ps->nice);
	return 0;
}

/*
 * loginuid can only be written by the process itself (proc_loginuid_write),
 * with CAP_AUDIT_CONTROL: before the credentials drop it.
 */
static int restore_loginuid(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			    size_t wl)
{
	char path[64], cur[32] = "", v[16];
	uint64_t addr, vaddr;
	long fd;
	int ret, fdr;

	snprintf(path, sizeof(path), "/proc/%d/loginuid", (int)t->stub);
	fdr = open(path, O_RDONLY | O_CLOEXEC);
	if (fdr >= 0) {
		ssize_t n = read(fdr, cur, sizeof(cur) - 1);

		cur[n > 0 ? n : 0] = '\0';
		close(fdr);
	}
	if (strtoul(cur, NULL, 10) == ps->loginuid)
		return 0;
	snprintf(v, sizeof(v), "%u", ps->loginuid);
	ret = rst_put_str(t, 0, "/proc/self/loginuid", &addr);
	if (!ret)
		ret = rst_put_str(t, 64, v, &vaddr);
	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, addr, O_WRONLY | O_CLOEXEC, 0, 0, 0, &fd);
	if (!ret) {
		ret = rst_rcall(t, SYS_write, fd, vaddr, strlen(v), 0, 0, 0, NULL);
		rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
	}
	if (ret)
		snprintf(
			why, wl,
			"cannot set the loginuid of pid %d to %u (the restorer's is %.16s): %s; it "
			"can be set once, with CAP_AUDIT_CONTROL: run haul where loginuid is "
			"unset or the same",
			ps->pid, ps->loginuid, cur, strerror(-ret));
	return ret;
}

/* Attributes only the process can set on itself (procattr.c dumped them). */
static int restore_attrs(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			 size_t wl)
{
	const char *what = "PR_SET_CHILD_SUBREAPER";
	int ret = 0;

	if (ps->has_loginuid) {
		ret = restore_loginuid(t, ps, why, wl);
		if (ret)
			return ret;
	}
	if (ps->has_child_subreaper && ps->child_subreaper)
		ret = rst_rcall(t, SYS_prctl, PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0, 0, NULL);
	if (!ret && ps->has_thp_disable && (ps->thp_disable & 1)) {
		what = "PR_SET_THP_DISABLE";
		ret = rst_rcall(t, SYS_prctl, PR_SET_THP_DISABLE, 1, ps->thp_disable & ~1u, 0, 0, 0,
				NULL);
	}
	/* Each bit of GET_REGISTRATIONS is the REGISTER_* command that set it. */
	for (unsigned b = 0; !ret && ps->has_membarrier && b < 32; b++)
		if (ps->membarrier & (1u << b)) {
			what = "a membarrier registration";
			ret = rst_rcall(t, SYS_membarrier, 1u << b, 0, 0, 0, 0, 0, NULL);
		}
	if (ret)
		snprintf(why, wl, "cannot restore %s of pid %d: %s", what, ps->pid, strerror(-ret));
	return ret;
}

/* oom_score_adj, coredump_filter and cgroups, written from here (procattr.c). */
static int apply_attrs(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl)
{
	pid_t *tids = calloc(t->nthr + 1, sizeof(*tids));
	int ret;

	if (!tids) {
		snprintf(why, wl, "out of memory placing pid %d in its cgroups", ps->pid);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->nthr; i++)
		tids[i] = t->thr[i].pid;
	ret = rst_attr_apply(t->stub, tids, ps, why, wl);
	free(tids);
	if (ret && !why[0])
		snprintf(why, wl, "cannot set the cgroups or OOM score of pid %d: %s", ps->pid,
			 strerror(-ret));
	return ret;
}

/* "S N" of timens_offsets for @ns: N in [0, 1e9). */
static void split_ns(int64_t ns, long long *sec, long long *nsec)
{
	*sec = ns / 1000000000LL;
	*nsec = ns % 1000000000LL;
	if (*nsec < 0) {
		*nsec += 1000000000LL;
		(*sec)--;
	}
}

/*
 * A time namespace pending for its children: unshare one in the main
 * thread (before the threads are created, which share it as they did on
 * the source, and before the credentials drop CAP_SYS_ADMIN) and give it
 * the image's offsets relative to the process's own namespace.
 */
static int restore_timens_children(struct rst_target *t, const Haul__Img__ProcessState *ps,
				   char *why, size_t wl)
{
	long long ms, mn, bs, bn;
	char path[64], text[128];
	int ret, fd;

	if (!ps->has_children_monotonic_ns || !ps->has_children_boottime_ns)
		return 0;
	ret = rst_rcall(t, SYS_unshare, CLONE_NEWTIME, 0, 0, 0, 0, 0, NULL);
	if (!ret) {
		split_ns(t->o.monotonic_offset_ns + ps->children_monotonic_ns, &ms, &mn);
		split_ns(t->o.boottime_offset_ns + ps->children_boottime_ns, &bs, &bn);
		snprintf(text, sizeof(text), "monotonic %lld %lld\nboottime %lld %lld\n", ms, mn,
			 bs, bn);
		snprintf(path, sizeof(path), "/proc/%d/timens_offsets", (int)t->stub);
		fd = open(path, O_WRONLY | O_CLOEXEC);
		ret = fd < 0 ? -errno : 0;
		if (!ret && write(fd, text, strlen(text)) != (ssize_t)strlen(text))
			ret = -errno;
		if (fd >= 0)
			close(fd);
	}
	if (ret)
		snprintf(why, wl,
			 "cannot restore the time namespace pending for the children of pid %d: %s",
			 ps->pid, strerror(-ret));
	return ret;
}

/* no_new_privs in every thread: after the credentials (it is one-way). */
static int restore_nnp(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl)
{
	int ret = 0;

	if (!ps->has_no_new_privs || !ps->no_new_privs)
		return 0;
	for (size_t i = 0; i < t->nthr && !ret; i++) {
		t->cur = &t->thr[i];
		ret = rst_rcall(t, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0, NULL);
	}
	t->cur = NULL;
	if (!ret)
		ret = rst_rcall(t, SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0, 0, NULL);
	if (ret)
		snprintf(why, wl, "cannot set no_new_privs in pid %d: %s", ps->pid, strerror(-ret));
	return ret;
}

/* The thread of the stub (as seen from here) that is not the main one nor known yet. */
static pid_t new_thread(struct rst_target *t)
{
	char path[64];
	struct dirent *de;
	pid_t found = -ESRCH;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)t->stub);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		pid_t tid = atoi(de->d_name);
		bool known = tid == t->stub;

		for (size_t i = 0; i < t->nthr; i++)
			known |= t->thr[i].pid == tid;
		if (tid > 0 && !known) {
			found = tid;
			break;
		}
	}
	closedir(d);
	return found;
}

/*
 * Create thread @th inside the stub: clone3 with the thread flags glibc
 * uses and set_tid = its old TID, injected in the main thread.  With
 * PTRACE_O_TRACECLONE the kernel attaches it to us and stops it before it
 * runs a single instruction; its registers come last, with everyone's.
 */
static int create_thread(struct rst_target *t, const Haul__Img__ThreadState *th, char *why,
			 size_t wl)
{
	struct clone_args_ a = {0};
	struct rsys *r;
	int32_t tid = th->tid;
	pid_t outer;
	int ret, status;

	a.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
	a.set_tid = rst_scratch(t) + 256;
	a.set_tid_size = 1;
	ret = rst_poke(t, rst_scratch(t), &a, sizeof(a));
	if (!ret)
		ret = rst_poke(t, rst_scratch(t) + 256, &tid, sizeof(tid));
	if (!ret)
		ret = rst_rcall(t, SYS_clone3, rst_scratch(t), sizeof(a), 0, 0, 0, 0, NULL);
	if (ret) {
		if (ret == -EEXIST)
			snprintf(why, wl,
				 "thread id %d is in use here; restore into a new PID namespace",
				 tid);
		else
			snprintf(why, wl, "cannot create thread %d: %s", tid, strerror(-ret));
		return ret;
	}
	outer = new_thread(t);
	if (outer < 0) {
		snprintf(why, wl, "cannot find new thread %d", tid);
		return outer;
	}
	/* Its first stop: attached by PTRACE_O_TRACECLONE. */
	while (waitpid(outer, &status, __WALL) < 0) {
		if (errno != EINTR) {
			snprintf(why, wl, "cannot wait for new thread %d: %s", tid,
				 strerror(errno));
			return -errno;
		}
	}
	r = &t->thr[t->nthr];
	ret = rsys_attach_stopped(r, outer, t->tramp);
	if (ret)
		return ret;
	t->nthr++;

	/* Its own bookkeeping, injected in it. */
	t->cur = r;
	if (th->rseq)
		ret = rst_rcall(t, SYS_rseq, th->rseq->addr, th->rseq->len, 0, th->rseq->sig, 0, 0,
				NULL);
	if (!ret && th->has_robust_list)
		ret = rst_rcall(t, SYS_set_robust_list, th->robust_list, th->robust_list_len, 0, 0,
				0, 0, NULL);
	if (!ret && th->has_tid_address)
		ret = rst_rcall(t, SYS_set_tid_address, th->tid_address, 0, 0, 0, 0, 0, NULL);
	if (!ret && th->has_altstack_flags && !(th->altstack_flags & SS_DISABLE)) {
		uint64_t ss[3] = {th->altstack_sp, th->altstack_flags & ~(uint32_t)SS_ONSTACK,
				  th->altstack_size};

		ret = rst_poke(t, rst_scratch(t), ss, sizeof(ss));
		if (!ret)
			ret = rst_rcall(t, SYS_sigaltstack, rst_scratch(t), 0, 0, 0, 0, 0, NULL);
	}
	if (!ret && th->comm) {
		uint64_t addr;

		ret = rst_put_str(t, 0, th->comm, &addr);
		if (!ret)
			ret = rst_rcall(t, SYS_prctl, PR_SET_NAME, addr, 0, 0, 0, 0, NULL);
	}
	t->cur = NULL;
	/* Its own queue of signals, sent to it by TID. */
	for (size_t i = 0; !ret && i < th->n_pending; i++) {
		int32_t signo;

		if (th->pending[i]->siginfo.len != 128)
			continue;
		memcpy(&signo, th->pending[i]->siginfo.data, sizeof(signo));
		ret = rst_poke(t, rst_scratch(t), th->pending[i]->siginfo.data, 128);
		if (!ret)
			ret = rst_rcall(t, SYS_rt_tgsigqueueinfo, t->o.pid, th->tid, signo,
					rst_scratch(t), 0, 0, NULL);
	}
	if (ret)
		snprintf(why, wl, "cannot set up thread %d: %s", tid, strerror(-ret));
	return ret;
}

static int create_threads(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			  size_t wl)
{
	int ret = 0;

	if (!ps->n_threads)
		return 0;
	t->thr = calloc(ps->n_threads, sizeof(*t->thr));
	if (!t->thr)
		return -ENOMEM;
	if (ptrace(PTRACE_SETOPTIONS, t->stub, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE) < 0)
		return -errno;
	for (size_t i = 0; i < ps->n_threads && !ret; i++)
		ret = create_thread(t, ps->threads[i], why, wl);
	return ret;
}

/* Registers, xstate and signal mask of a thread stopped at an injected call's exit. */
static int load_cpu(pid_t tid, const Haul__Img__Regs *ir, const ProtobufCBinaryData *xstate,
		    uint64_t mask, char *why, size_t wl)
{
	struct user_regs_struct regs;
	struct iovec iov = {xstate->data, xstate->len};

	if (ptrace(PTRACE_SETREGSET, tid, NT_X86_XSTATE, &iov) < 0) {
		snprintf(why, wl, "cannot load the FPU/xstate of %d (another CPU model?): %s",
			 (int)tid, strerror(errno));
		return -errno;
	}
	img_to_regs(ir, &regs);
	if (ptrace(PTRACE_SETREGS, tid, 0, &regs) < 0 ||
	    ptrace(PTRACE_SETSIGMASK, tid, sizeof(mask), &mask) < 0) {
		snprintf(why, wl, "cannot load the registers of %d: %s", (int)tid, strerror(errno));
		return -errno;
	}
	return 0;
}

/* The raw id system calls change one thread only (glibc broadcasts; we are not glibc). */
static int creds_on(struct rst_target *t, const Haul__Img__Creds *c)
{
	int ret;

	ret = rst_poke(t, rst_scratch(t), c->groups, c->n_groups * sizeof(uint32_t));
	if (!ret)
		ret = rst_rcall(t, SYS_setgroups, c->n_groups, rst_scratch(t), 0, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_setresgid, c->rgid, c->egid, c->sgid, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_setfsgid, c->fsgid, 0, 0, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_setresuid, c->ruid, c->euid, c->suid, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_setfsuid, c->fsuid, 0, 0, 0, 0, 0, NULL);
	return ret;
}

static int restore_creds(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
			 size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i < t->nthr && !ret; i++) {
		t->cur = &t->thr[i];
		ret = creds_on(t, ps->creds);
	}
	t->cur = NULL;
	if (!ret)
		ret = creds_on(t, ps->creds);
	/* Changing ids resets dumpability: set it after. */
	if (!ret && ps->has_dumpable)
		ret = rst_rcall(t, SYS_prctl, PR_SET_DUMPABLE, ps->dumpable ? 1 : 0, 0, 0, 0, 0,
				NULL);
	if (ret)
		snprintf(why, wl, "cannot restore credentials: %s", strerror(-ret));
	return ret;
}

static int check_image(const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	struct utsname u;

	uname(&u);
	if (ps->version != RST_IMAGE_VERSION) {
		snprintf(why, wl, "image version %u, this haul restores version %u", ps->version,
			 RST_IMAGE_VERSION);
		return -EPROTO;
	}
	if (strcmp(ps->arch, "x86_64")) {
		snprintf(why, wl, "image is for %.32s, this is x86_64", ps->arch);
		return -EOPNOTSUPP;
	}
	if (strcmp(ps->kernel_release, u.release)) {
		snprintf(why, wl,
			 "image is from kernel %.64s, this is %.64s: restore needs the same kernel "
			 "on both sides (vDSO, xstate layout)",
			 ps->kernel_release, u.release);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* Milliseconds since *@t, and *@t = now: the phases of a resume (debug log). */
static double lap_ms(struct timespec *t)
{
	struct timespec n;
	double ms;

	clock_gettime(CLOCK_MONOTONIC, &n);
	ms = (n.tv_sec - t->tv_sec) * 1e3 + (n.tv_nsec - t->tv_nsec) / 1e6;
	*t = n;
	return ms;
}

/*
 * What a VMA gets once its pages are in: its guard pages (MADV_GUARD_INSTALL
 * zaps what the page copy may have put there), the final protection of
 * shared memory (create_prot), mlock (MLOCK_ONFAULT for "lf"), and last
 * mseal, after which nothing may change the VMA.
 */
static int finish_vmas(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl)
{
	int ret = 0;

	for (size_t i = 0; i < ps->n_vmas && !ret; i++)
		for (size_t k = 0; k < ps->vmas[i]->n_guards && !ret; k++) {
			const Haul__Img__GuardRange *g = ps->vmas[i]->guards[k];

			ret = rst_rcall(t, SYS_madvise, g->start, g->end - g->start,
					RST_MADV_GUARD_INSTALL, 0, 0, 0, NULL);
			if (ret)
				snprintf(why, wl,
					 "cannot install guard pages %#" PRIx64 "-%#" PRIx64
					 ": %s (MADV_GUARD_INSTALL needs Linux 6.13)",
					 g->start, g->end, strerror(-ret));
		}
	for (size_t i = 0; i < t->n && !ret; i++) {
		const struct haul_vma *v = &t->v[i].v;

		if (create_prot(v) != v->prot) {
			ret = rst_rcall(t, SYS_mprotect, v->start, v->end - v->start, v->prot, 0, 0,
					0, NULL);
			if (ret)
				snprintf(why, wl, "cannot protect %#" PRIx64 "-%#" PRIx64 ": %s",
					 v->start, v->end, strerror(-ret));
		}
		if (!ret && (v->flags & HAUL_VMA_LOCKED)) {
			int r = (v->flags & HAUL_VMA_LOCKFAULT)
					? rst_rcall(t, SYS_mlock2, v->start, v->end - v->start,
						    MLOCK_ONFAULT, 0, 0, 0, NULL)
					: rst_rcall(t, SYS_mlock, v->start, v->end - v->start, 0, 0,
						    0, 0, NULL);

			if (r)
				pr_warn_r(r, "cannot mlock %#" PRIx64 "-%#" PRIx64 " of pid %d",
					  v->start, v->end, (int)t->o.pid);
		}
	}
	for (size_t i = 0; i < t->n && !ret; i++) {
		const struct haul_vma *v = &t->v[i].v;

		if (!(v->flags & HAUL_VMA_SEALED))
			continue;
		ret = rst_rcall(t, SYS_mseal, v->start, v->end - v->start, 0, 0, 0, 0, NULL);
		if (ret)
			snprintf(why, wl, "cannot seal %#" PRIx64 "-%#" PRIx64 ": %s", v->start,
				 v->end, strerror(-ret));
	}
	return ret;
}

static int resume(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	struct haul_layout l;
	uint64_t mask = ps->sigmask;
	struct timespec lap;
	double ms[8] = {0};
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &lap);

	ret = check_image(ps, why, wl);
	if (ret)
		return ret;
	if (ps->pid != t->o.pid) {
		snprintf(why, wl, "image is of pid %d, the target was made for pid %d", ps->pid,
			 (int)t->o.pid);
		return -EINVAL;
	}
	ret = rst_state_layout(ps, &l);
	if (ret)
		return ret;
	/* Normally a no-op: the last layout sent was this one. */
	ret = rst_target_layout(t, &l);
	ms[0] = lap_ms(&lap);
	if (!ret)
		ret = restore_vdso(t, &l, why, wl);
	ms[1] = lap_ms(&lap);
	if (!ret && t->o.before_resume) {
		ret = t->o.before_resume(t->o.before_resume_arg, &t->r, &l);
		if (ret)
			snprintf(why, wl, "cannot prepare post-copy memory: %s", strerror(-ret));
	}
	haul_layout_release(&l);
	if (ret) {
		if (!why[0])
			snprintf(why, wl, "cannot rebuild the address space: %s", strerror(-ret));
		return ret;
	}
	ret = finish_vmas(t, ps, why, wl);
	if (ret)
		return ret;

	ms[2] = lap_ms(&lap);
	ret = rst_restore_fds(t, ps, why, wl);
	ms[3] = lap_ms(&lap);
	if (!ret)
		ret = restore_mm(t, ps, why, wl);
	ms[4] = lap_ms(&lap);
	if (!ret)
		ret = restore_task(t, ps, why, wl);
	if (!ret)
		ret = restore_attrs(t, ps, why, wl);
	if (!ret)
		ret = restore_signals(t, ps, why, wl);
	ms[5] = lap_ms(&lap);
	/* Before the threads: clone(CLONE_VM) shares it with them, as on the source. */
	if (!ret)
		ret = restore_timens_children(t, ps, why, wl);
	if (!ret)
		ret = create_threads(t, ps, why, wl);
	if (!ret)
		ret = restore_creds(t, ps, why, wl);
	if (!ret)
		ret = restore_nnp(t, ps, why, wl);
	ms[6] = lap_ms(&lap);
	if (ret) {
		if (!why[0])
			snprintf(why, wl, "%s", strerror(-ret));
		return ret;
	}

	/* The last injected call: stopped at its exit, nothing runs from the trampoline again. */
	ret = rst_rcall(t, SYS_munmap, t->tramp, TRAMP_SIZE, 0, 0, 0, 0, NULL);
	if (ret) {
		snprintf(why, wl, "cannot unmap the restorer's trampoline: %s", strerror(-ret));
		return ret;
	}
	for (size_t i = 0; i < t->nthr && !ret; i++)
		ret = load_cpu(t->thr[i].pid, ps->threads[i]->regs, &ps->threads[i]->xstate,
			       ps->threads[i]->sigmask, why, wl);
	if (!ret)
		ret = load_cpu(t->stub, ps->regs, &ps->xstate, mask, why, wl);
	/*
	 * Its cgroups last, once no call is injected any more: on the same
	 * host the source's own cgroup may be frozen by haul migrate (until
	 * the commit thaws it), and a frozen tracee would run no injected call.
	 */
	if (!ret)
		ret = apply_attrs(t, ps, why, wl);
	if (ret)
		return ret;
	/* M stops guarding: from here the process lives on without us. */
	if (write(t->ctl, "R", 1) != 1) {
		ret = -errno;
		snprintf(why, wl, "cannot tell the restore helper: %s", strerror(errno));
		return ret;
	}
	t->resumed = true;
	for (size_t i = 0; i < t->nthr; i++)
		if (ptrace(PTRACE_DETACH, t->thr[i].pid, 0, 0) < 0)
			pr_warn("cannot detach thread %d of restored pid %d: %s", t->thr[i].pid,
				(int)t->o.pid, strerror(errno));
	t->nthr = 0;
	if (ptrace(PTRACE_DETACH, t->stub, 0, 0) < 0) {
		ret = -errno;
		snprintf(why, wl, "cannot let the process run: %s", strerror(errno));
		return ret;
	}
	t->seized = false;
	ms[7] = lap_ms(&lap);
	pr_debug("pid %d resume phases (ms): layout %.2f, vdso %.2f, memory hooks and mlock "
		 "%.2f, fds %.2f, mm %.2f, task and signals %.2f, threads and creds %.2f, "
		 "registers and detach %.2f",
		 (int)t->o.pid, ms[0], ms[1], ms[2], ms[3], ms[4], ms[5], ms[6], ms[7]);
	return 0;
}

int rst_target_resume(struct rst_target *t, const void *state, size_t len, pid_t *pid, char *why,
		      size_t whylen)
{
	Haul__Img__ProcessState *ps;
	struct timespec t0, t1;
	int ret;

	why[0] = '\0';
	if (t->resumed) {
		snprintf(why, whylen, "pid %d was resumed already", (int)t->o.pid);
		return -EINVAL;
	}
	ps = haul__img__process_state__unpack(NULL, len, state);
	if (!ps) {
		snprintf(why, whylen, "the process state of pid %d is corrupt", (int)t->o.pid);
		return -EBADMSG;
	}
	/* nothing of it is used before every field passed (common/validate.h) */
	if (val_process_state(ps, why, whylen)) {
		haul__img__process_state__free_unpacked(ps, NULL);
		pr_err("cannot restore pid %d: bad process state: %s", (int)t->o.pid, why);
		return -EBADMSG;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ret = resume(t, ps, why, whylen);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	haul__img__process_state__free_unpacked(ps, NULL);
	if (ret) {
		pr_err("cannot restore pid %d: %s", (int)t->o.pid, why);
		if (t->resumed)
			rst_target_kill(t);
		else if (t->seized) {
			rst_target_kill(t);
			for (size_t i = 0; i < t->nthr; i++)
				waitpid(t->thr[i].pid, NULL, __WALL);
			t->nthr = 0;
			waitpid(t->stub, NULL, __WALL);
			t->seized = false;
		}
		return ret;
	}
	if (t->mem >= 0) {
		close(t->mem);
		t->mem = -1;
	}
	*pid = t->stub;
	pr_info("pid %d restored in %.1f ms (pid %d here%s)", (int)t->o.pid,
		(t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6, (int)t->stub,
		t->pidns ? ", in a new PID namespace" : "");
	return 0;
}

int rst_target_wait(struct rst_target *t)
{
	int status;

	if (t->o.detach || t->waited || t->mpid <= 0)
		return -ECHILD;
	if (waitpid(t->mpid, &status, 0) < 0)
		return -errno;
	t->waited = true;
	return exit_code(status);
}

void rst_target_free(struct rst_target *t)
{
	if (!t)
		return;
	if (!t->resumed && t->stub > 0) {
		rst_target_kill(t);
		if (t->seized)
			waitpid(t->stub, NULL, __WALL);
	}
	if (t->ctl >= 0)
		close(t->ctl); /* M: EOF before 'R' kills what is left */
	if (t->mem >= 0)
		close(t->mem);
	if (t->pidfd >= 0)
		close(t->pidfd);
	if (!t->resumed && !t->o.detach && !t->waited && t->mpid > 0)
		waitpid(t->mpid, NULL, 0);
	tvmas_free(t->v, t->n);
	free(t->thr);
	free(t);
}

int rst_image_clock_offsets(const void *state, size_t len, int64_t *mono, int64_t *boot)
{
	Haul__Img__ProcessState *ps = haul__img__process_state__unpack(NULL, len, state);
	struct timespec m, b;

	if (!ps)
		return -EBADMSG;
	clock_gettime(CLOCK_MONOTONIC, &m);
	clock_gettime(CLOCK_BOOTTIME, &b);
	*mono = (int64_t)ps->monotonic_ns - (m.tv_sec * 1000000000LL + m.tv_nsec);
	*boot = (int64_t)ps->boottime_ns - (b.tv_sec * 1000000000LL + b.tv_nsec);
	haul__img__process_state__free_unpacked(ps, NULL);
	return 0;
}
