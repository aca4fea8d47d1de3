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
 *                ├─ else unshare(PID|mount) ─▶ I (pid 1: mounts /proc,
 *                │      reaps) ─ clone3(set_tid = pid) ─▶ S
 *                │      (pid == 1: S is the namespace's init itself)
 *                └─ a container in a PID namespace it joined: setns(PID),
 *                       unshare(mount), clone3(set_tid = pid) ─▶ S
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
 * This file holds the helper processes, the remote calls and the start;
 * target_layout.c the layouts and pages, target_resume.c the resume, and
 * fd_restore.c the fds (target_int.h is what they share).
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
#include "restore/ctr.h"
#include "restore/fd_inet.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

struct ready_msg {
	int32_t err;   /* 0 or -errno of the step that failed */
	int32_t pidns; /* S is in a new PID namespace */
};

/* ---- the helper processes (run after fork: raw syscalls only) ------------ */

struct spawn {
	pid_t pid;
	pid_t hold_for; /* H: the root it forks and mirrors (0: a plain stub S) */
	enum rst_pidns mode;
	int ready;
	int ctl;
	int devnull;
	char offsets[128];
	const struct rst_ctr *ctr; /* a container: its namespaces and mounts (ns_ctr.c) */
	bool sibling;		   /* the container's pid 1 is a child of our parent */
	int errfd;		   /* container: where its pid 1 says what failed (fd 202 in M) */
};

static void report(int fd, int err, int pidns)
{
	struct ready_msg m = {err, pidns};

	if (write(fd, &m, sizeof(m)) < 0)
		_exit(127);
}

int rst_exit_code(int status)
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

/*
 * H: the stand-in for a session leader that is not in the restored tree
 * (tree_restore.c).  It holds the session id; its only child is the
 * tree's root, forked into it by an injected clone3; it reaps the group
 * stand-ins forked beside the root, and exits with the root's status.
 * SIGCHLD stays blocked and is taken with sigwaitinfo: no handler is
 * installed that the root could inherit.
 */
static void __attribute__((noreturn)) holder_main(int ready, int pidns, pid_t root)
{
	sigset_t chld;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	setsid();
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, NULL);
	report(ready, 0, pidns);
	close(ready);
	for (;;) {
		int status;
		pid_t w;

		sigwaitinfo(&chld, NULL);
		while ((w = waitpid(-1, &status, WNOHANG)) > 0)
			if (w == root)
				_exit(rst_exit_code(status));
	}
}

static void __attribute__((noreturn)) stub_or_holder(struct spawn *sp, int pidns)
{
	if (sp->hold_for)
		holder_main(sp->ready, pidns, sp->hold_for);
	stub_main(sp->ready, pidns);
}

/* I: pid 1 of the new namespace; exits with S's status, killing the namespace. */
static void __attribute__((noreturn)) init_main(struct spawn *sp)
{
	pid_t child;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	child = clone_with_pid(sp->pid);
	if (child == 0)
		stub_or_holder(sp, 1);
	if (child < 0) {
		report(sp->ready, -errno, 1);
		_exit(127);
	}
	close(sp->ready);
	for (;;) {
		int status;
		pid_t w = waitpid(-1, &status, 0);

		if (w == child)
			_exit(rst_exit_code(status));
		if (w < 0 && errno != EINTR)
			_exit(127);
	}
}

/*
 * M's start: only the two pipes survive (at 200 and 201, and the error
 * pipe at 202 for a container), stdio is /dev/null, every signal action
 * default and unmasked, normal scheduling; it tells T its pid.
 */
static void m_reset(struct spawn *sp)
{
	int fd;
	int32_t self = getpid();

	/* S inherits nothing of haul's */
	fd = fcntl(sp->ready, F_DUPFD_CLOEXEC, 300);
	sp->ctl = fcntl(sp->ctl, F_DUPFD_CLOEXEC, 300);
	dup3(fd, 200, O_CLOEXEC);
	dup3(sp->ctl, 201, O_CLOEXEC);
	sp->ready = 200;
	sp->ctl = 201;
	dup3(sp->devnull, 0, 0);
	dup3(sp->devnull, 1, 0);
	dup3(sp->devnull, 2, 0);
	if (sp->ctr) {
		dup3(sp->errfd, 202, O_CLOEXEC);
		sp->errfd = 202;
	}
	close_range(3, 199, 0);
	close_range(sp->ctr ? 203 : 202, ~0U, 0);
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
}

/*
 * M's watch over its child @child (S, or pid 1 of a new PID namespace):
 * its exit status is M's; EOF on the control pipe before 'R' (T died
 * before the resume) kills it.
 */
static void __attribute__((noreturn)) m_watch(struct spawn *sp, pid_t child)
{
	struct pollfd pfd[2];
	bool resumed = false;

	pfd[0].fd = sp->ctl;
	pfd[0].events = POLLIN;
	pfd[1].fd = syscall(SYS_pidfd_open, child, 0);
	pfd[1].events = POLLIN;
	for (;;) {
		int status;

		if (pfd[1].fd < 0) {
			/* No pidfd: just wait (the restored process outlives T anyway). */
			if (waitpid(child, &status, 0) == child)
				_exit(rst_exit_code(status));
			continue;
		}
		if (poll(pfd, 2, -1) < 0)
			continue;
		if (pfd[0].revents) {
			char c = 0;

			if (read(sp->ctl, &c, 1) == 1 && c == 'R') {
				resumed = true;
				/*
				 * A container's pid 1 is left to the host's init (or
				 * subreaper) as the engine leaves it: no helper of
				 * haul stays in the container's cgroup.
				 */
				if (sp->ctr)
					_exit(0);
			} else {
				if (!resumed)
					syscall(SYS_pidfd_send_signal, pfd[1].fd, SIGKILL, NULL, 0);
				pfd[0].fd = -1;
			}
		}
		if (pfd[1].revents) {
			if (waitpid(child, &status, 0) == child)
				_exit(rst_exit_code(status));
			if (sp->sibling)
				_exit(127); /* not ours to reap: it died before its resume */
		}
	}
}

static void __attribute__((noreturn)) m_main(struct spawn *sp)
{
	pid_t child = -1;
	int fd;

	m_reset(sp);
	/* A container's user namespace first: the others are made inside it (userns_ctr.c). */
	if (sp->ctr) {
		fd = rst_ctr_userns(sp->ctr, sp->errfd);
		if (fd) {
			report(sp->ready, fd, 1);
			_exit(127);
		}
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

	/* A container's uts, ipc, net and cgroup namespaces exist before its pid 1. */
	if (sp->ctr) {
		fd = rst_ctr_unshare(sp->ctr);
		if (fd) {
			dprintf(sp->errfd, "cannot create the container's namespaces: %s\n",
				strerror(-fd));
			report(sp->ready, fd, 1);
			_exit(127);
		}
	}
	if (sp->mode != RST_PIDNS_ALWAYS && !sp->ctr) {
		child = clone_with_pid(sp->pid);
		if (child == 0) {
			close(sp->ctl);
			stub_or_holder(sp, 0);
		}
		if (child < 0 && (errno != EEXIST || sp->mode == RST_PIDNS_NEVER)) {
			report(sp->ready, -errno, 0);
			_exit(127);
		}
	}
	/* a PID namespace the container joined: its process keeps its pid there (pidns_ctr.c) */
	if (sp->ctr && sp->ctr->pidns[0]) {
		child = rst_ctr_clone_joined(sp->ctr, sp->pid, sp->sibling, sp->errfd);
		if (child == 0) {
			int err;

			close(sp->ctl);
			err = rst_ctr_enter(sp->ctr, sp->errfd);
			close(sp->errfd);
			if (err) {
				report(sp->ready, err, 1);
				_exit(127);
			}
			stub_or_holder(sp, 1);
		}
		if (child < 0) {
			report(sp->ready, -errno, 1);
			_exit(127);
		}
	}
	if (child < 0) {
		if (unshare(CLONE_NEWPID | CLONE_NEWNS) < 0 ||
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
			report(sp->ready, -errno, 1);
			_exit(127);
		}
		/* rst_sibling: M is our parent's child already, and so is pid 1 */
		child = sp->sibling ? syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0)
				    : raw_fork();
		if (child == 0) {
			close(sp->ctl);
			/* A container's own mounts and root (its /proc among them)... */
			if (sp->ctr) {
				int err = rst_ctr_enter(sp->ctr, sp->errfd);

				close(sp->errfd);
				if (err) {
					report(sp->ready, err, 1);
					_exit(127);
				}
			} else if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC,
					 NULL) < 0) {
				/* ...else our own /proc, so that /proc/self is the restored PID. */
				report(sp->ready, -errno, 1);
				_exit(127);
			}
			if (sp->pid == 1)
				stub_or_holder(sp, 1);
			init_main(sp);
		}
		if (child < 0) {
			report(sp->ready, -errno, 1);
			_exit(127);
		}
	}
	close(sp->ready);

	m_watch(sp, child);
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

/* Find S (as seen from here), hold it by a pidfd, seize it, open its memory. */
static int attach_stub(struct rst_target *t)
{
	char path[64];
	pid_t child;
	int ret;

	/* S as seen from here: M's child, or I's child in a new namespace... */
	if (t->o.ctr && t->o.sibling)
		child = rst_ctr_find_sibling(getppid(), t->mpid); /* ...or our parent's */
	else
		child = first_child(t->mpid);
	/* (in a joined PID namespace S is M's child, or our parent's, itself) */
	if (child > 0 && t->pidns && t->o.pid != 1 && !t->o.sibling &&
	    !(t->o.ctr && t->o.ctr->pidns[0]))
		child = first_child(child);
	if (child <= 0) {
		ret = child < 0 ? child : -ESRCH;
		pr_err_r(ret, "cannot find the restore stub for pid %d", (int)t->o.pid);
		return ret;
	}
	t->stub = child;
	/* S is not our child: held by a pidfd from here on, never signalled by its PID */
	t->pidfd = (int)syscall(SYS_pidfd_open, t->stub, 0);
	if (t->pidfd < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot open a pidfd for the restore stub of pid %d (kernel >= 5.3)",
			 (int)t->o.pid);
		return ret;
	}
	ret = rsys_seize(&t->r, t->stub);
	if (ret)
		return ret;
	t->seized = true;
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)t->stub);
	t->mem = open(path, O_RDWR | O_CLOEXEC);
	if (t->mem < 0) {
		ret = -errno;
		return ret;
	}
	ret = unregister_stub_rseq(t);
	if (ret)
		return ret;
	return 0;
}

/* The options a target cannot be made with: 0, or -errno (logged). */
static int check_opts(const struct rst_target_opts *o)
{
	if (o->ctr && o->pid != 1 && !o->ctr->pidns[0]) {
		pr_err("cannot restore pid %d as a container: a container's process is pid 1 of "
		       "its PID namespace, or in one the engine names (external pid)",
		       (int)o->pid);
		return -EINVAL;
	}
	if (o->lazy && !o->before_resume) {
		pr_err("lazy (post-copy) restore needs a fault server hooked in "
		       "(rst_target_opts.before_resume); migrate with pre-copy only");
		return -EOPNOTSUPP;
	}
	if (o->pid <= 0) {
		pr_err("cannot restore pid %d: not a valid PID", (int)o->pid);
		return -EINVAL;
	}
	return 0;
}

/* Why the helper for @o failed to start (@err), with a container's words from @errfd. */
static void say_not_started(const struct rst_target_opts *o, int err, int errfd)
{
	if (err == -EEXIST)
		pr_err("cannot restore pid %d: the PID is in use here and a new PID namespace "
		       "was not allowed",
		       (int)o->pid);
	else
		pr_err_r(err, "cannot start the restore stub for pid %d", (int)o->pid);
	if (errfd >= 0) {
		char msg[512];
		ssize_t n = read(errfd, msg, sizeof(msg) - 1);

		if (n > 0) {
			msg[n] = '\0';
			msg[strcspn(msg, "\n")] = '\0';
			pr_err("the container of pid %d: %s", (int)o->pid, msg);
		}
	}
}

int rst_target_new(const struct rst_target_opts *o, struct rst_target **out)
{
	struct rst_target *t;
	struct spawn sp = {0};
	struct ready_msg m;
	int ready[2] = {-1, -1}, ctl[2] = {-1, -1}, errp[2] = {-1, -1};
	int32_t mpid;
	pid_t child;
	int ret;

	ret = check_opts(o);
	if (ret)
		return ret;
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
	sp.hold_for = o->hold_for;
	sp.mode = o->pidns;
	sp.ready = ready[1];
	sp.ctl = ctl[0];
	sp.devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (sp.devnull < 0) {
		ret = -errno;
		goto fail;
	}
	sp.ctr = o->ctr;
	if (o->ctr && pipe2(errp, O_CLOEXEC | O_NONBLOCK) < 0) {
		ret = -errno;
		close(sp.devnull);
		goto fail;
	}
	sp.errfd = errp[1];
	offsets_text(sp.offsets, sizeof(sp.offsets), o->monotonic_offset_ns, o->boottime_offset_ns);

	/*
	 * A container for an engine that waits for it (rst_sibling): M is
	 * made our parent's child (CLONE_PARENT) and makes pid 1 so too.
	 */
	sp.sibling = o->ctr && o->sibling;
	child = sp.sibling ? syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0) : fork();
	if (child < 0) {
		ret = -errno;
		close(sp.devnull);
		goto fail;
	}
	if (child == 0) {
		if (o->detach && !sp.sibling) {
			/* Orphan M so that it is not our child. */
			pid_t g = raw_fork();

			if (g != 0)
				_exit(g < 0 ? 127 : 0);
		}
		m_main(&sp);
	}
	close(sp.devnull);
	if (errp[1] >= 0)
		close(errp[1]);
	errp[1] = -1;
	close(ready[1]);
	ready[1] = -1;
	close(ctl[0]);
	ctl[0] = -1;
	t->ctl = ctl[1];
	ctl[1] = -1;
	if (o->detach && !sp.sibling) {
		int status;

		waitpid(child, &status, 0);
	} else if (!o->detach) {
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
		say_not_started(o, ret, errp[0]);
		goto fail;
	}
	if (errp[0] >= 0)
		close(errp[0]);
	errp[0] = -1;
	t->pidns = m.pidns;
	ret = attach_stub(t);
	if (ret)
		goto fail;
	close(ready[0]);
	pr_debug("pid %d: stub is pid %d here%s", (int)o->pid, (int)t->stub,
		 t->pidns ? " (new PID namespace)" : "");
	*out = t;
	return 0;
fail:
	if (errp[0] >= 0)
		close(errp[0]);
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
	/* a failed restore: its connections kept in repair mode go too (fd_tcp_local.c) */
	if (!t->resumed)
		rst_tcp_deferred_drop();
	if (t->pidfd < 0)
		return -ESRCH;
	if (syscall(SYS_pidfd_send_signal, t->pidfd, SIGKILL, NULL, 0) < 0)
		return -errno;
	return 0;
}

void rst_target_cgroups_early(struct rst_target *t, char *const *lines, size_t n)
{
	if (!t->resumed)
		rst_cg_early(t->o.pid, t->stub, lines, n);
}

void rst_target_committed(struct rst_target *t)
{
	if (t->resumed) {
		rst_cg_place_later(t->o.pid, &t->cg_later);
		rst_sched_place_later(t);
	}
}

int rst_target_pidfd(const struct rst_target *t)
{
	return t->pidfd;
}

pid_t rst_target_pid(const struct rst_target *t)
{
	return t->stub;
}

/* ---- lifetime ------------------------------------------------------------ */

int rst_target_wait(struct rst_target *t)
{
	int status;

	if (t->o.detach || t->waited || t->mpid <= 0)
		return -ECHILD;
	if (waitpid(t->mpid, &status, 0) < 0)
		return -errno;
	t->waited = true;
	return rst_exit_code(status);
}

void rst_target_free(struct rst_target *t)
{
	if (!t)
		return;
	if (!t->resumed && t->stub > 0) {
		rst_target_kill(t);
		/* a traced leader's death is reported after its traced threads' (a tree's ready ones) */
		for (size_t i = 0; t->seized && i < t->nthr; i++)
			waitpid(t->thr[i].pid, NULL, __WALL);
		if (t->seized)
			waitpid(t->stub, NULL, __WALL);
	}
	rst_cg_later_free(&t->cg_later);
	free(t->sched_later);
	if (t->ctl >= 0)
		close(t->ctl); /* M: EOF before 'R' kills what is left */
	if (t->mem >= 0)
		close(t->mem);
	if (t->pidfd >= 0)
		close(t->pidfd);
	if (!t->resumed && !t->o.detach && !t->waited && t->mpid > 0)
		waitpid(t->mpid, NULL, 0);
	rst_tvmas_free(t->v, t->n);
	rst_shm_release(t);
	rst_vma_ghost_unlink(t);
	rst_target_ghost_pre_release(t);
	free(t->thr);
	free(t->presock);
	free(t);
}
