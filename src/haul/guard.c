/*
 * guard.c - the guardian: a child process that keeps a failed or killed
 * `haul migrate` from costing the workload.
 *
 * haul forks it once the workload's cgroups are prepared, before anything
 * is frozen, throttled or seized.  It becomes a session leader (Ctrl-C on the
 * terminal does not reach it), ignores SIGINT/SIGTERM/SIGHUP, closes every fd
 * but stderr and the read end of a pipe, and waits on that pipe.  haul sends
 * one byte per state change:
 *   'C' the restore command goes out: the target may run the process from now
 *       on, so a dead haul leaves the source frozen ("in doubt");
 *   'A' back to armed (the target refused the restore);
 *   'D' haul is done (committed or undone by itself): exit quietly.
 * EOF without 'D' means haul died: when armed, the guardian undoes the
 * cgroup changes (lifts the throttle, thaws: the source runs on, the kernel
 * has already dropped haul's ptrace and uffd, and the injection survivor,
 * src/common/injlog.c, puts back what a dump or attach in progress changed
 * before it lets the process run); when in doubt, it leaves the source
 * frozen and prints what the operator must check.
 */
#define LOG_PREFIX "guard: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/haul_int.h"

static void guard_main(struct haul_cg *cg, const char *to, int rfd)
{
	bool indoubt = false;
	char c;
	ssize_t n;

	setsid();
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_NAME, "haul-guard", 0, 0, 0);
	for (;;) {
		n = read(rfd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (c == 'D')
			_exit(0);
		if (c == 'C')
			indoubt = true;
		else if (c == 'A')
			indoubt = false;
	}
	if (indoubt) {
		pr_err("haul migrate died after asking %s to resume pid %d; the source copy stays "
		       "frozen in '%s'. If the process runs on %s, kill the source "
		       "(kill -9 %d; write 0 to cgroup.freeze); if it does not, thaw the source "
		       "(write 0 to cgroup.freeze)",
		       to, cg->pid, cg->freezer_dir, to, cg->pid);
		_exit(1);
	}
	haul_cg_undo(cg);
	pr_warn("haul migrate of pid %d died before the commit point; pid %d was thawed and runs "
		"on here",
		cg->pid, cg->pid);
	_exit(0);
}

int haul_guard_start(const struct haul_cg *cg, const char *to, struct haul_guard *g)
{
	struct haul_cg copy = *cg;
	int p[2];
	pid_t pid;

	g->pid = -1;
	g->fd = -1;
	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		int ret = -errno;

		close(p[0]);
		close(p[1]);
		return ret;
	}
	if (pid == 0) {
		close(p[1]);
		/* keep stdin/stdout/stderr and the pipe; nothing else of haul's */
		for (int fd = 3; fd < 1024; fd++)
			if (fd != p[0])
				close(fd);
		guard_main(&copy, to, p[0]);
	}
	close(p[0]);
	g->pid = pid;
	g->fd = p[1];
	return 0;
}

static int guard_send(struct haul_guard *g, char c)
{
	if (g->fd < 0)
		return -EBADF;
	if (write(g->fd, &c, 1) != 1)
		return -errno;
	return 0;
}

int haul_guard_indoubt(struct haul_guard *g)
{
	return guard_send(g, 'C');
}

int haul_guard_rearm(struct haul_guard *g)
{
	return guard_send(g, 'A');
}

void haul_guard_stop(struct haul_guard *g)
{
	if (g->fd >= 0) {
		guard_send(g, 'D');
		close(g->fd);
		g->fd = -1;
	}
	if (g->pid > 0) {
		waitpid(g->pid, NULL, 0);
		g->pid = -1;
	}
}
