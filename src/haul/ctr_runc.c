/*
 * ctr_runc.c - the container runtime (runc 1.1), run as a command: haul
 * never edits runc's state files; it asks runc (`runc state`, `runc
 * restore`, `runc delete`) as an operator would, so that runc keeps
 * managing the container on either side.  runc's `state` output is one
 * flat JSON object; haul_json_flat() reads a key of it and nothing more
 * (no JSON library is a dependency of haul).
 */
#define LOG_PREFIX "container: "
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/ctr_int.h"
#include "haul/haul_int.h"

bool haul_ctr_id_ok(const char *id)
{
	size_t n = strlen(id);

	if (!n || n > 127 || id[0] == '.' || id[0] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)id[i]) && !strchr("_.+-", id[i]))
			return false;
	return true;
}

/* The child: stdio, PATH, exec.  Never returns. */
static void runc_child(const char *const argv[], const char *path_first, const char *log, int out)
{
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);

	setpgid(0, 0); /* its own group: a timeout kills runc with what it started */
	int err = log ? open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600) : out;

	if (null < 0 || err < 0)
		_exit(126);
	dup2(null, 0);
	dup2(out >= 0 ? out : null, 1);
	dup2(err >= 0 ? err : null, 2);
	if (path_first) {
		const char *old = getenv("PATH");
		char *p = malloc(strlen(path_first) + (old ? strlen(old) : 0) + 2);

		if (!p)
			_exit(126);
		sprintf(p, "%s%s%s", path_first, old ? ":" : "", old ? old : "");
		setenv("PATH", p, 1);
	}
	execvp(argv[0], (char *const *)argv);
	_exit(127);
}

/* Wait for @child until @deadline (ms, haul_now_ms; 0: none); past it, kill its group. */
static int wait_child(pid_t child, double deadline, int *status)
{
	for (;;) {
		pid_t r = waitpid(child, status, deadline > 0 ? WNOHANG : 0);

		if (r == child)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r == 0 && haul_now_ms() > deadline) {
			/* runc and what it started (criu, a half-restored container) */
			kill(-child, SIGKILL);
			kill(child, SIGKILL);
			waitpid(child, status, 0);
			return -ETIMEDOUT;
		}
		if (r == 0)
			usleep(2000);
	}
}

int haul_runc(const char *runtime, const char *root, const char *const args[],
	      const char *path_first, const char *log, char *out, size_t len, int timeout_ms)
{
	double deadline = timeout_ms > 0 ? haul_now_ms() + timeout_ms : 0;
	const char *argv[32];
	size_t n = 0, got = 0;
	int pfd[2], status, ret;
	pid_t child;

	argv[n++] = runtime;
	if (root && root[0]) {
		argv[n++] = "--root";
		argv[n++] = root;
	}
	for (size_t i = 0; args[i] && n < 31; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	child = fork();
	if (child < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return -errno;
	}
	/*
	 * Without @out the child's stdout is /dev/null, not the pipe: what runc
	 * restore -d leaves running (criu's helpers, the container) would hold
	 * the pipe open and the read below would never see its end.
	 */
	if (child == 0)
		runc_child(argv, path_first, log, out ? pfd[1] : -1);
	close(pfd[1]);
	for (;;) {
		char sink[4096];
		ssize_t r;

		if (out && got + 1 < len)
			r = read(pfd[0], out + got, len - 1 - got);
		else
			r = read(pfd[0], sink, sizeof(sink));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (out && got + 1 < len)
			got += (size_t)r;
	}
	close(pfd[0]);
	if (out && len)
		out[got] = '\0';
	ret = wait_child(child, deadline, &status);
	if (ret == -ETIMEDOUT)
		pr_err("'%s %s' did not finish within %d ms; killed", runtime, args[0], timeout_ms);
	if (ret)
		return ret;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
		pr_err("cannot run '%s': not found on PATH; install it (apt-get install runc)",
		       runtime);
		return -ENOENT;
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

int haul_json_flat(const char *text, const char *key, char *out, size_t len)
{
	char pat[96];
	const char *p;
	size_t n = 0;

	snprintf(pat, sizeof(pat), "\"%s\"", key);
	for (p = strstr(text, pat); p; p = strstr(p + 1, pat)) {
		const char *v = p + strlen(pat);

		while (isspace((unsigned char)*v))
			v++;
		if (*v != ':')
			continue;
		v++;
		while (isspace((unsigned char)*v))
			v++;
		if (*v == '"') {
			for (v++; *v && *v != '"'; v++) {
				char ch = *v;

				if (ch == '\\' && v[1]) {
					v++;
					ch = *v == 'n' ? '\n' : *v == 't' ? '\t' : *v;
				}
				if (n + 1 >= len)
					return -ENAMETOOLONG;
				out[n++] = ch;
			}
		} else {
			while (*v && (isalnum((unsigned char)*v) || *v == '-' || *v == '.')) {
				if (n + 1 >= len)
					return -ENAMETOOLONG;
				out[n++] = *v++;
			}
		}
		out[n] = '\0';
		return 0;
	}
	return -ENOENT;
}

int haul_runc_state(const char *runtime, const char *root, const char *id,
		    struct haul_runc_state *st)
{
	const char *args[] = {"state", id, NULL};
	char *out = malloc(65536), pid[32];
	int ret;

	if (!out)
		return -ENOMEM;
	memset(st, 0, sizeof(*st));
	ret = haul_runc(runtime, root, args, NULL, "/dev/null", out, 65536,
			HAUL_CTR_RUNC_TIMEOUT_MS);
	if (ret == -EIO)
		ret = -ENOENT; /* runc state fails only for a container it does not know */
	if (!ret && (haul_json_flat(out, "pid", pid, sizeof(pid)) ||
		     haul_json_flat(out, "status", st->status, sizeof(st->status)) ||
		     haul_json_flat(out, "bundle", st->bundle, sizeof(st->bundle)) ||
		     haul_json_flat(out, "rootfs", st->rootfs, sizeof(st->rootfs))))
		ret = -EBADMSG;
	if (!ret)
		st->pid = atoi(pid);
	free(out);
	return ret;
}
