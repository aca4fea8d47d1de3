/*
 * target_fork.c - the processes of a restored tree, created inside the
 * tree itself: each child is forked by its restored parent, so parent
 * links, sessions and process groups are the kernel's own.
 *
 * Every process of a tree is created before any is laid out: the parent
 * is still a stub (a copy of haul, stopped in pause()), and the clone3
 * injected into it makes a stub as well, with the same memory.  Its
 * arguments go into the stub's copy of a static buffer of haul's own image
 * (fork_area: same address in every stub, written through /proc/PID/mem).
 * With PTRACE_O_TRACEFORK the kernel attaches the child to us and stops it
 * before its first instruction; its set_tid is its pid in the tree's PID
 * namespace (the stub's own).  The child gets PR_SET_PDEATHSIG SIGKILL: if
 * the restore fails, killing the first stub takes every one along.
 *
 * A child that shared its parent's fd table or fs info on the source
 * (CLONE_FILES, CLONE_FS without CLONE_THREAD: tree_ckpt.c records it) is
 * forked with the same flag: the stubs share them from the start, and the
 * fds are restored once, by the parent (made ready first), never by the
 * child (files_shared); cwd and umask are set by both, to the same values.
 *
 * A zombie is a stub made to exit (exit_group, or its fatal signal once
 * unblocked) with its parent still stopped: the parent then holds it
 * unreaped, and the SIGCHLD of that exit, which the original parent took
 * long ago, is consumed with rt_sigtimedwait.
 */
#define LOG_PREFIX "restore: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

/* Only its copy in each stub is ever written: the arguments of injected calls. */
static struct {
	struct clone_args_ a;
	int32_t tid;
	uint64_t sigset;
	uint64_t timeout[2];
	char comm[16];
} fork_area;

static uint64_t area_addr(size_t off)
{
	return (uint64_t)(uintptr_t)&fork_area + off;
}

/* The child of @parent_here whose pid in its own namespace is @pid, as seen from here. */
static pid_t find_child(pid_t parent_here, pid_t pid)
{
	char name[64], *text = NULL;
	pid_t found = -ESRCH;

	snprintf(name, sizeof(name), "task/%d/children", (int)parent_here);
	if (rst_read_proc(parent_here, name, &text, NULL))
		return -ESRCH;
	for (char *s = text, *end; *s && found < 0; s = end) {
		long c = strtol(s, &end, 10);
		char *status = NULL;
		const char *f;

		if (end == s)
			break;
		if (rst_read_proc((pid_t)c, "status", &status, NULL))
			continue;
		/* the last number of the NSpid line: the pid in its own namespace */
		for (f = rst_status_field(status, "NSpid"); f;) {
			char *e;
			long v = strtol(f, &e, 10);

			if (e == f)
				break;
			f = e;
			if (*e == '\n' || !*e) {
				if (v == pid)
					found = (pid_t)c;
				break;
			}
		}
		free(status);
	}
	free(text);
	return found;
}

/* The new stub, stopped by its auto-attach, as a target of its own. */
static int adopt(struct rst_target *parent, pid_t pid, pid_t here, struct rst_target **out)
{
	struct rst_target *c = calloc(1, sizeof(*c));
	char path[64];
	int ret, status;

	if (!c)
		return -ENOMEM;
	while (waitpid(here, &status, __WALL) < 0)
		if (errno != EINTR) {
			free(c);
			return -errno;
		}
	c->o = parent->o;
	c->o.pid = pid;
	c->o.hold_for = 0;
	c->o.lazy = false;
	c->o.before_resume = NULL;
	c->ctl = c->mem = -1;
	c->mpid = -1;
	c->pidns = parent->pidns;
	c->stub = here;
	c->seized = true;
	c->pidfd = (int)syscall(SYS_pidfd_open, here, 0);
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)here);
	c->mem = open(path, O_RDWR | O_CLOEXEC);
	ret = c->pidfd < 0 || c->mem < 0 ? -errno : 0;
	if (!ret)
		ret = rsys_attach_stopped(&c->r, here, parent->r.sc_addr);
	if (!ret)
		ret = rst_rcall(c, SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0, 0, NULL);
	if (ret) {
		pr_err_r(ret, "cannot take over the new process %d (pid %d here)", (int)pid,
			 (int)here);
		rst_target_free(c);
		return ret;
	}
	*out = c;
	return 0;
}

int rst_target_fork(struct rst_target *parent, pid_t pid, struct rst_target **out)
{
	return rst_target_fork_flags(parent, pid, 0, out);
}

int rst_target_fork_flags(struct rst_target *parent, pid_t pid, unsigned shares,
			  struct rst_target **out)
{
	struct clone_args_ a = {0};
	int32_t tid = pid;
	pid_t here;
	long res;
	int ret;

	if (parent->tramp) {
		pr_err("cannot fork pid %d from pid %d: its parent is laid out already", (int)pid,
		       (int)parent->o.pid);
		return -EINVAL;
	}
	if (shares & ~(unsigned)RST_TREE_SHARES) {
		pr_err("cannot fork pid %d from pid %d sharing %#x: only its fd table and fs info "
		       "can be shared",
		       (int)pid, (int)parent->o.pid, shares);
		return -EINVAL;
	}
	a.flags = shares;
	a.exit_signal = SIGCHLD;
	a.set_tid = area_addr(offsetof(typeof(fork_area), tid));
	a.set_tid_size = 1;
	ret = rst_poke(parent, area_addr(0), &a, sizeof(a));
	if (!ret)
		ret = rst_poke(parent, a.set_tid, &tid, sizeof(tid));
	if (!ret && ptrace(PTRACE_SETOPTIONS, parent->stub, 0,
			   PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACEFORK) < 0)
		ret = -errno;
	if (!ret)
		ret = rst_rcall(parent, SYS_clone3, area_addr(0), sizeof(a), 0, 0, 0, 0, &res);
	if (ret == -EEXIST) {
		pr_err("cannot restore pid %d: the PID is in use here; restore into a new PID "
		       "namespace (--pidns always)",
		       (int)pid);
		return ret;
	}
	if (ret) {
		pr_err_r(ret, "cannot fork pid %d from restored pid %d", (int)pid,
			 (int)parent->o.pid);
		return ret;
	}
	here = find_child(parent->stub, pid);
	if (here < 0) {
		pr_err("cannot find the new process %d, child of pid %d", (int)pid,
		       (int)parent->o.pid);
		return here;
	}
	ret = adopt(parent, pid, here, out);
	if (!ret)
		(*out)->files_shared = shares & CLONE_FILES;
	return ret;
}

int rst_target_setsid(struct rst_target *t)
{
	int ret = rst_rcall(t, SYS_setsid, 0, 0, 0, 0, 0, 0, NULL);

	if (ret)
		pr_err_r(ret, "cannot make restored pid %d a session leader", (int)t->o.pid);
	return ret;
}

int rst_target_setpgid(struct rst_target *t, pid_t pgid)
{
	int ret = rst_rcall(t, SYS_setpgid, 0, (uint64_t)pgid, 0, 0, 0, 0, NULL);

	if (ret)
		pr_err_r(ret, "cannot put restored pid %d into process group %d", (int)t->o.pid,
			 (int)pgid);
	return ret;
}

/*
 * Detach @t set up to run exit_group(@code) or to take fatal @sig; wait for
 * its end.  A signal is queued while @t is stopped and taken once the mask
 * is cleared, except SIGKILL: that one ends a ptrace-stopped task at once,
 * under us, before it can be detached (and the kernel would hand its exit
 * to us, the tracer, not to its parent).  So for SIGKILL @t is detached
 * into pause() with every other signal blocked, and killed there.
 */
static int let_die(struct rst_target *t, int code, int sig)
{
	struct user_regs_struct regs = t->r.saved;
	struct pollfd p = {t->pidfd, POLLIN, 0};
	uint64_t mask = sig == SIGKILL ? ~0ULL : 0;

	regs.orig_rax = (unsigned long long)-1;
	regs.rip = t->r.sc_addr;
	regs.rax = sig == SIGKILL ? SYS_pause : SYS_exit_group;
	regs.rdi = (unsigned long long)code;
	if (sig) {
		/* no core file for a signal that dumps one: only the status matters */
		struct rlimit zero = {0, 0};

		prlimit(t->stub, RLIMIT_CORE, &zero, NULL);
		if (sig != SIGKILL && syscall(SYS_pidfd_send_signal, t->pidfd, sig, NULL, 0) < 0)
			return -errno;
	}
	if (ptrace(PTRACE_SETREGS, t->stub, 0, &regs) < 0 ||
	    ptrace(PTRACE_SETSIGMASK, t->stub, sizeof(mask), &mask) < 0 ||
	    ptrace(PTRACE_DETACH, t->stub, 0, 0) < 0)
		return -errno;
	t->seized = false;
	t->resumed = true; /* nothing of ours to kill any more */
	if (sig == SIGKILL && syscall(SYS_pidfd_send_signal, t->pidfd, sig, NULL, 0) < 0)
		return -errno;
	if (poll(&p, 1, 10000) != 1)
		return -ETIMEDOUT;
	return 0;
}

int rst_target_exit(struct rst_target *t, struct rst_target *parent, int status)
{
	uint64_t chld = 1ULL << (SIGCHLD - 1), zero[2] = {0, 0};
	int ret;

	if (WIFSIGNALED(status))
		ret = let_die(t, 0, WTERMSIG(status));
	else
		ret = let_die(t, WEXITSTATUS(status), 0);
	if (ret) {
		pr_err_r(ret, "cannot make restored pid %d a zombie", (int)t->o.pid);
		return ret;
	}
	if (!parent)
		return 0;
	/* The parent's SIGCHLD for it: queued (blocked while injected), not the program's. */
	ret = rst_poke(parent, area_addr(offsetof(typeof(fork_area), sigset)), &chld, 8);
	if (!ret)
		ret = rst_poke(parent, area_addr(offsetof(typeof(fork_area), timeout)), zero,
			       sizeof(zero));
	if (!ret) {
		ret = rst_rcall(parent, SYS_rt_sigtimedwait,
				area_addr(offsetof(typeof(fork_area), sigset)), 0,
				area_addr(offsetof(typeof(fork_area), timeout)), 8, 0, 0, NULL);
		if (ret == -EAGAIN)
			ret = 0;
	}
	if (ret)
		pr_err_r(ret, "cannot take the SIGCHLD of zombie %d from restored pid %d",
			 (int)t->o.pid, (int)parent->o.pid);
	return ret;
}

int rst_target_reap(struct rst_target *t, pid_t pid)
{
	long got = 0;
	int ret = rst_rcall(t, SYS_wait4, (uint64_t)pid, 0, __WALL, 0, 0, 0, &got);

	if (!ret && got != pid)
		ret = -ECHILD;
	if (ret)
		pr_err_r(ret, "restored pid %d cannot reap the group stand-in %d", (int)t->o.pid,
			 (int)pid);
	return ret;
}

int rst_target_set_name(struct rst_target *t, const char *comm)
{
	char name[16] = {0};
	uint64_t at = area_addr(offsetof(typeof(fork_area), comm));
	int ret;

	snprintf(name, sizeof(name), "%s", comm);
	ret = rst_poke(t, at, name, sizeof(name));
	if (!ret)
		ret = rst_rcall(t, SYS_prctl, PR_SET_NAME, at, 0, 0, 0, 0, NULL);
	if (ret)
		pr_err_r(ret, "cannot name restored zombie %d '%s'", (int)t->o.pid, name);
	return ret;
}

int rst_target_release_holder(struct rst_target *t)
{
	int ret;

	/* Back to its wait loop, SIGCHLD blocked as it was: its saved registers and mask. */
	ret = rsys_release(&t->r);
	if (ret) {
		pr_err_r(ret, "cannot let the session stand-in %d run", (int)t->o.pid);
		return ret;
	}
	t->seized = false;
	if (t->ctl >= 0 && write(t->ctl, "R", 1) != 1)
		return -errno;
	t->resumed = true;
	return 0;
}
