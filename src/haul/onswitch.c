/*
 * onswitch.c - the --on-switch hook: an operator's command run at the
 * moments the service changes hosts, for what --move-address does not
 * cover (a cloud VIP, a route, a load balancer).
 *
 * `sh -c CMD` with, in its environment:
 *   HAUL_SWITCH_PHASE  source-down, source-up, source-done (haul migrate);
 *                      target-prepare, target-up, target-abort (haul pageserver)
 *   HAUL_SIDE          source or target
 *   HAUL_PID           the migrated process's pid (on the source, in its namespace)
 *   HAUL_MIGRATION_ID  the migration's id (hex; the session id, the same on both sides)
 *   HAUL_ADDRESSES     the --move-address values, comma-separated ("" when none)
 * Its stdout and stderr are haul's; stdin is /dev/null.  It runs inside the
 * downtime, so it is waited for at most HAUL_SWITCH_HOOK_TIMEOUT_MS and
 * then killed (with its process group).  The callers decide what a failure
 * means: before the commit point it rolls the migration back, after it it
 * is reported (DESIGN.md "The network around the process").
 */
#define LOG_PREFIX "on-switch: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"

static void __attribute__((noreturn))
hook_child(const struct haul_switch_hook *h, const char *phase)
{
	char pid[16], id[24];
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);

	setpgid(0, 0);
	if (null >= 0)
		dup2(null, 0);
	snprintf(pid, sizeof(pid), "%d", (int)h->pid);
	snprintf(id, sizeof(id), "%llx", (unsigned long long)h->id);
	setenv("HAUL_SWITCH_PHASE", phase, 1);
	setenv("HAUL_SIDE", h->side ? h->side : "", 1);
	setenv("HAUL_PID", pid, 1);
	setenv("HAUL_MIGRATION_ID", id, 1);
	setenv("HAUL_ADDRESSES", h->addresses ? h->addresses : "", 1);
	signal(SIGPIPE, SIG_DFL);
	execl("/bin/sh", "sh", "-c", h->cmd, (char *)NULL);
	_exit(127);
}

int haul_switch_hook_run(const struct haul_switch_hook *h, const char *phase)
{
	int limit = h->timeout_ms ? h->timeout_ms : HAUL_SWITCH_HOOK_TIMEOUT_MS, status;
	double until = haul_now_ms() + limit;
	pid_t pid, w;

	if (!h->cmd)
		return 0;
	pid = fork();
	if (pid < 0) {
		int ret = -errno;

		pr_err_r(ret, "cannot start the %s hook '%s'", phase, h->cmd);
		return ret;
	}
	if (pid == 0)
		hook_child(h, phase);
	setpgid(pid, pid); /* either of us may get there first */
	while ((w = waitpid(pid, &status, WNOHANG)) == 0) {
		if (haul_now_ms() > until) {
			kill(-pid, SIGKILL);
			waitpid(pid, NULL, 0);
			pr_err("the %s hook '%s' of pid %d ran longer than %d ms and was killed",
			       phase, h->cmd, (int)h->pid, limit);
			return -ETIMEDOUT;
		}
		usleep(1000);
	}
	if (w < 0) {
		int ret = -errno;

		pr_err_r(ret, "cannot wait for the %s hook '%s'", phase, h->cmd);
		return ret;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		pr_err("the %s hook '%s' of pid %d failed with exit status %d", phase, h->cmd,
		       (int)h->pid, WEXITSTATUS(status));
	else
		pr_err("the %s hook '%s' of pid %d was killed by signal %d", phase, h->cmd,
		       (int)h->pid, WTERMSIG(status));
	return -ECANCELED;
}
