/*
 * cmd_run.c - `haul run [--name N] [--log FILE] -- CMD...`: start a workload
 * so that it can be migrated later.
 *
 * The workload gets a cgroup of its own (<cgroup2>/haul/NAME, or the v1
 * freezer hierarchy's haul/NAME on hosts without cgroup2), so that migrate
 * can freeze and throttle it alone, and a PID namespace of its own, in which
 * it is PID 1: its PID inside stays the same wherever it is restored, and
 * nothing of the source host's PID space leaks into it.  It is detached:
 * haul forks an intermediate that clones the workload and exits, so the
 * workload is reparented to init and `haul run` returns at once.  The
 * workload is moved into its cgroup before it execs (a pipe holds it), and
 * exec failures come back on a close-on-exec pipe.  stdin is /dev/null,
 * stdout and stderr go to --log (default /run/haul/NAME/out), a regular file
 * that haul can migrate.  The registry entry (registry.c) feeds `haul ps`.
 *
 * Note: PID 1 of a namespace ignores signals it has no handler for, even
 * SIGTERM from outside; SIGKILL always works.
 */
#define LOG_PREFIX "run: "
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul.h"
#include "haul/haul_int.h"

static bool name_ok(const char *n)
{
	if (!*n || strlen(n) >= sizeof(((struct haul_wl *)0)->name) || n[0] == '.')
		return false;
	for (const char *s = n; *s; s++)
		if (!(*s == '-' || *s == '_' || *s == '.' || (*s >= '0' && *s <= '9') ||
		      (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
			return false;
	return true;
}

/* The workload itself: PID 1 of its namespace; waits for its cgroup, then execs. */
static void workload_main(char **cmd, const char *log, int go_fd, int err_fd)
{
	char c;
	int fd, err;

	if (read(go_fd, &c, 1) != 1)
		_exit(126);
	close(go_fd);
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0 && fd != 0) {
		dup2(fd, 0);
		close(fd);
	}
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0)
		goto fail;
	dup2(fd, 1);
	dup2(fd, 2);
	if (fd > 2)
		close(fd);
	signal(SIGPIPE, SIG_DFL);
	/* nothing of haul's caller leaks in (a stray pipe would make it unmigratable) */
	syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
	execvp(cmd[0], cmd);
fail:
	err = errno;
	if (write(err_fd, &err, sizeof(err)) < 0)
		_exit(127);
	_exit(127);
}

/* The intermediate: clone the workload into a new PID namespace, report its pid, exit. */
static void intermediate_main(char **cmd, const char *log, int go_fd, int err_fd, int pid_fd)
{
	struct clone_args ca = {.flags = CLONE_NEWPID, .exit_signal = SIGCHLD};
	pid_t pid;

	setsid();
	pid = syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0) {
		int err = -errno;

		if (write(pid_fd, &err, sizeof(err)) < 0)
			_exit(1);
		_exit(1);
	}
	if (pid == 0) {
		close(pid_fd);
		workload_main(cmd, log, go_fd, err_fd);
	}
	if (write(pid_fd, &pid, sizeof(pid)) < 0)
		_exit(1);
	_exit(0);
}

static int spawn(struct haul_wl *w, char **cmd)
{
	int go[2] = {-1, -1}, err[2] = {-1, -1}, pp[2] = {-1, -1};
	pid_t mid, pid = 0;
	int ret, e = 0;
	char v[32];
	ssize_t n;

	if (pipe2(go, O_CLOEXEC) || pipe2(err, O_CLOEXEC) || pipe2(pp, O_CLOEXEC)) {
		ret = -errno;
		goto out;
	}
	mid = fork();
	if (mid < 0) {
		ret = -errno;
		goto out;
	}
	if (mid == 0) {
		close(go[1]);
		close(err[0]);
		close(pp[0]);
		intermediate_main(cmd, w->log, go[0], err[1], pp[1]);
	}
	close(go[0]);
	go[0] = -1;
	close(err[1]);
	err[1] = -1;
	close(pp[1]);
	pp[1] = -1;
	n = read(pp[0], &pid, sizeof(pid));
	waitpid(mid, NULL, 0);
	if (n != sizeof(pid) || pid <= 0) {
		ret = n == sizeof(pid) ? pid : -ECHILD;
		pr_err_r(ret, "cannot start '%s' in a new PID namespace", cmd[0]);
		goto out;
	}
	w->pid = pid;
	snprintf(v, sizeof(v), "%d", pid);
	ret = haul_cg_write(w->cgroup, "cgroup.procs", v);
	if (ret) {
		pr_err_r(ret, "cannot move pid %d into cgroup '%s'", pid, w->cgroup);
		kill(pid, SIGKILL);
		goto out;
	}
	haul_proc_starttime(pid, &w->start);
	if (write(go[1], "g", 1) != 1) {
		ret = -errno;
		kill(pid, SIGKILL);
		goto out;
	}
	close(go[1]);
	go[1] = -1;
	/* EOF: exec succeeded (the pipe was close-on-exec) */
	n = read(err[0], &e, sizeof(e));
	if (n == sizeof(e)) {
		ret = -e;
		pr_err_r(ret, "cannot run '%s' (log '%s')", cmd[0], w->log);
		goto out;
	}
	ret = 0;
out:
	for (int i = 0; i < 2; i++) {
		if (go[i] >= 0)
			close(go[i]);
		if (err[i] >= 0)
			close(err[i]);
		if (pp[i] >= 0)
			close(pp[i]);
	}
	return ret;
}

int haul_cmd_run(int argc, char **argv)
{
	struct haul_cg_mounts m;
	struct haul_wl w = {0}, old;
	const char *name = NULL, *log = NULL, *base;
	char dir[PATH_MAX], logs[PATH_MAX + 16];
	const struct haul_opt opts[] = {
		{"name", 'n', HAUL_OPT_STR, 0, &name, "NAME",
		 "registry name (default: CMD's basename and a number)", 0, 0, NULL},
		{"log", 'l', HAUL_OPT_PATH, 0, &log, "FILE", logs, 0, 0, NULL},
		{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL},
	};
	const struct haul_cmd_spec spec = {
		"run",
		"[--name NAME] [--log FILE] -- CMD [ARGS...]",
		"Start CMD detached, in its own cgroup and PID namespace, "
		"so that\n'haul migrate' can move it later.  Prints NAME "
		"and its PID.\n",
		NULL,
		opts,
		1,
		-1,
		true};
	size_t off = 0;
	int arg, ret;

	snprintf(logs, sizeof(logs), "stdout and stderr (default: %s/NAME/out)", haul_reg_dir());
	arg = haul_opts_parse(&spec, argc, argv);
	if (arg < 0)
		return haul_opts_exit(arg);
	base = strrchr(argv[arg], '/');
	base = base ? base + 1 : argv[arg];
	if (name)
		snprintf(w.name, sizeof(w.name), "%s", name);
	else
		snprintf(w.name, sizeof(w.name), "%.40s-%d", base, getpid());
	if (!name_ok(w.name)) {
		pr_err("name '%s' is not usable: use letters, digits, '-', '_' or '.'", w.name);
		return 2;
	}
	if (!haul_reg_load(w.name, &old) && haul_proc_state(old.pid) &&
	    !haul_proc_starttime(old.pid, &old.start) && !old.migrated_to[0]) {
		pr_err("a workload named '%s' runs already (pid %d); pick another --name", w.name,
		       old.pid);
		return 1;
	}
	ret = haul_cg_probe(&m); /* logs what is missing and what to do */
	if (ret)
		return 1;
	if ((size_t)snprintf(w.cgroup, sizeof(w.cgroup), "%s/%s/%s", m.v2[0] ? m.v2 : m.v1_freezer,
			     HAUL_CG_PARENT, w.name) >= sizeof(w.cgroup) ||
	    (size_t)snprintf(dir, sizeof(dir), "%s/%s", haul_reg_dir(), w.name) >= sizeof(dir) ||
	    (size_t)snprintf(w.log, sizeof(w.log), "%s/out", dir) >= sizeof(w.log)) {
		pr_err("cgroup or registry path for '%s' is too long", w.name);
		return 1;
	}
	ret = haul_cg_mkdir_p(w.cgroup);
	if (ret) {
		pr_err_r(ret, "cannot make cgroup '%s'", w.cgroup);
		return 1;
	}
	ret = haul_cg_mkdir_p(dir);
	if (ret) {
		pr_err_r(ret, "cannot make registry directory '%s'", dir);
		return 1;
	}
	if (log)
		snprintf(w.log, sizeof(w.log), "%s", log);
	for (int i = arg; i < argc && off + 1 < sizeof(w.cmd); i++)
		off += snprintf(w.cmd + off, sizeof(w.cmd) - off, "%s%s", i > arg ? " " : "",
				argv[i]);
	ret = spawn(&w, argv + arg);
	if (ret) {
		rmdir(w.cgroup);
		return 1;
	}
	ret = haul_reg_save(&w);
	if (ret)
		pr_warn_r(ret, "pid %d runs but cannot be recorded in '%s'", w.pid, dir);
	printf("%s %d\n", w.name, w.pid);
	return 0;
}
