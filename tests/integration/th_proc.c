/*
 * th_proc.c - /proc ready signals (th_proc.h).  Every wait re-reads the
 * file each millisecond until its deadline: the states looked for are
 * reached within microseconds to milliseconds of the event, and polling
 * /proc costs the observed process nothing.  A vanished /proc entry ends
 * the wait at once with -ESRCH, so a crashed program fails fast.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "th_proc.h"

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The first @len - 1 bytes of @path; -errno when it cannot be read. */
static int read_text(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -EIO;
	buf[n] = '\0';
	return 0;
}

/* Poll @check(@pid, @arg) each millisecond for @timeout_ms: 1 found, 0 not yet, <0 error. */
static int poll_until(int (*check)(pid_t, const void *), pid_t pid, const void *arg, int timeout_ms)
{
	double deadline = now_ms() + timeout_ms;

	for (;;) {
		int r = check(pid, arg);

		if (r > 0)
			return 0;
		if (r < 0)
			return r;
		if (now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(1000);
	}
}

static int comm_is(pid_t pid, const void *arg)
{
	char path[64], buf[64];
	int ret;

	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	ret = read_text(path, buf, sizeof(buf));
	if (ret)
		return -ESRCH;
	buf[strcspn(buf, "\n")] = '\0';
	return !strcmp(buf, arg);
}

int th_wait_comm(pid_t pid, const char *comm, int timeout_ms)
{
	return poll_until(comm_is, pid, comm, timeout_ms);
}

static int sig_caught(pid_t pid, const void *arg)
{
	int sig = *(const int *)arg;
	char path[64], buf[4096], *p;
	unsigned long long mask;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if (read_text(path, buf, sizeof(buf)))
		return -ESRCH;
	p = strstr(buf, "\nSigCgt:");
	if (!p)
		return -ENOENT;
	mask = strtoull(p + 8, NULL, 16);
	return !!(mask & (1ULL << (sig - 1)));
}

int th_wait_sigcgt(pid_t pid, int sig, int timeout_ms)
{
	return poll_until(sig_caught, pid, &sig, timeout_ms);
}

static int gone(pid_t pid, const void *arg)
{
	char path[64], buf[1024], *p;

	(void)arg;
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (read_text(path, buf, sizeof(buf)))
		return 1;
	p = strrchr(buf, ')');
	return p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X');
}

int th_wait_gone(pid_t pid, int timeout_ms)
{
	return poll_until(gone, pid, NULL, timeout_ms);
}

struct sleep_arg {
	pid_t tid;
	const char *wchan;
};

static int sleeps_in(pid_t pid, const void *arg)
{
	const struct sleep_arg *a = arg;
	char base[64], path[96], buf[1024], *p;

	if (a->tid)
		snprintf(base, sizeof(base), "/proc/%d/task/%d", (int)pid, (int)a->tid);
	else
		snprintf(base, sizeof(base), "/proc/%d", (int)pid);
	snprintf(path, sizeof(path), "%s/stat", base);
	if (read_text(path, buf, sizeof(buf)))
		return -ESRCH;
	/* the state follows the command name, which may hold spaces and parentheses */
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EINVAL;
	if (p[2] == 'Z' || p[2] == 'X')
		return -ESRCH;
	if (p[2] != 'S' && p[2] != 'D')
		return 0;
	if (!a->wchan)
		return 1;
	snprintf(path, sizeof(path), "%s/wchan", base);
	if (read_text(path, buf, sizeof(buf)))
		return -ESRCH;
	return strstr(buf, a->wchan) != NULL;
}

int th_wait_sleeping(pid_t pid, pid_t tid, const char *wchan, int timeout_ms)
{
	struct sleep_arg a = {tid, wchan};

	return poll_until(sleeps_in, pid, &a, timeout_ms);
}

struct line_arg {
	const char *file, *needle;
	bool gone;
};

static int proc_has_line(pid_t pid, const void *arg)
{
	const struct line_arg *a = arg;
	char path[128], line[512];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, a->file);
	f = fopen(path, "r");
	if (!f)
		return -ESRCH;
	while (!found && fgets(line, sizeof(line), f))
		found = strstr(line, a->needle) != NULL;
	fclose(f);
	return found != a->gone;
}

int th_wait_proc_line(pid_t pid, const char *file, const char *needle, bool gone, int timeout_ms)
{
	struct line_arg a = {file, needle, gone};

	return poll_until(proc_has_line, pid, &a, timeout_ms);
}
