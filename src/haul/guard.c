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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/haul_int.h"

static void guard_main(struct haul_cg *cg, const char *to, int rfd)
{
	struct haul_survivor_state st = {0};

	haul_survivor_wait(rfd, &st);
	if (st.indoubt) {
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
	int fd;
	pid_t pid;

	g->pid = -1;
	g->fd = -1;
	pid = haul_survivor_fork("haul-guard", &fd);
	if (pid < 0)
		return pid;
	if (pid == 0)
		guard_main(&copy, to, fd);
	g->pid = pid;
	g->fd = fd;
	return 0;
}

int haul_guard_indoubt(struct haul_guard *g)
{
	return haul_survivor_send(g->fd, 'C');
}

int haul_guard_rearm(struct haul_guard *g)
{
	return haul_survivor_send(g->fd, 'A');
}

void haul_guard_stop(struct haul_guard *g)
{
	haul_survivor_stop(&g->pid, &g->fd);
}
