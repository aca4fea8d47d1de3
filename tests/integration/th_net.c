/*
 * th_net.c - two network namespaces joined by veth, and process helpers for
 * the integration tests (see th_net.h).  Uses `ip` and `tc` (iproute2) for
 * the namespaces: that is what an operator would type, and what the tests
 * should exercise.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/close_range.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "th_net.h"

static double th_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int th_sh(const char *fmt, ...)
{
	char cmd[1024];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st < 0)
		return -errno;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int th_net_create(struct th_net *n, const char *tag, unsigned rate_mbit)
{
	int pid = getpid();

	memset(n, 0, sizeof(*n));
	snprintf(n->a, sizeof(n->a), "haul-%s-%d-a", tag, pid);
	snprintf(n->b, sizeof(n->b), "haul-%s-%d-b", tag, pid);
	snprintf(n->va, sizeof(n->va), "hva%d", pid % 1000000);
	snprintf(n->vb, sizeof(n->vb), "hvb%d", pid % 1000000);
	if (th_sh("command -v ip >/dev/null 2>&1"))
		return -EOPNOTSUPP;
	if (th_sh("ip netns add %s && ip netns add %s", n->a, n->b))
		return -EOPNOTSUPP;
	n->made = true;
	if (th_sh("ip link add %s type veth peer name %s && ip link set %s netns %s && "
		  "ip link set %s netns %s",
		  n->va, n->vb, n->va, n->a, n->vb, n->b))
		goto fail;
	if (th_sh("ip -n %s link set lo up && ip -n %s link set lo up && "
		  "ip -n %s addr add " TH_IP_A "/30 dev %s && ip -n %s addr add " TH_IP_B
		  "/30 dev %s && ip -n %s link set %s up && ip -n %s link set %s up",
		  n->a, n->b, n->a, n->va, n->b, n->vb, n->a, n->va, n->b, n->vb))
		goto fail;
	if (rate_mbit &&
	    th_sh("tc -n %s qdisc add dev %s root tbf rate %umbit burst 512kb latency 50ms && "
		  "tc -n %s qdisc add dev %s root tbf rate %umbit burst 512kb latency 50ms",
		  n->a, n->va, rate_mbit, n->b, n->vb, rate_mbit))
		goto fail;
	/* the link needs a moment to come up (carrier) */
	for (int i = 0; i < 100; i++) {
		if (!th_sh("ip -n %s -o link show %s | grep -q LOWER_UP && "
			   "ip -n %s -o link show %s | grep -q LOWER_UP",
			   n->a, n->va, n->b, n->vb))
			return 0;
		usleep(20000);
	}
fail:
	th_net_destroy(n);
	return -EIO;
}

void th_net_destroy(struct th_net *n)
{
	if (!n->made)
		return;
	th_sh("ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null", n->a, n->b);
	n->made = false;
}

int th_net_link(struct th_net *n, bool up)
{
	const char *s = up ? "up" : "down";

	return th_sh("ip -n %s link set %s %s && ip -n %s link set %s %s", n->a, n->va, s, n->b,
		     n->vb, s)
		       ? -EIO
		       : 0;
}

static void child_setup(const char *netns)
{
	int fd;

	setpgid(0, 0);
	if (netns) {
		char p[128];

		snprintf(p, sizeof(p), "/run/netns/%s", netns);
		fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, CLONE_NEWNET)) {
			fprintf(stderr, "th_spawn: cannot enter netns %s\n", netns);
			_exit(126);
		}
		close(fd);
	}
	fd = open("/dev/null", O_RDONLY);
	if (fd >= 0) {
		dup2(fd, 0);
		close(fd);
	}
	/* the test runner's own fds (pipes) must not leak into a process haul migrates */
	syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
}

pid_t th_spawn(const char *netns, char *const argv[], const char *out_path)
{
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int fd;

		child_setup(netns);
		fd = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
			if (fd > 2)
				close(fd);
		}
		execv(argv[0], argv);
		fprintf(stderr, "th_spawn: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	return pid;
}

pid_t th_spawn_pipe(const char *netns, char *const argv[], int *rfd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -errno;
	}
	if (pid == 0) {
		child_setup(netns);
		dup2(p[1], 1);
		dup2(p[1], 2);
		execv(argv[0], argv);
		fprintf(stderr, "th_spawn: cannot run %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(p[1]);
	*rfd = p[0];
	return pid;
}

/*
 * Read lines from @fd until one holds @needle, until @timeout_ms passes; with
 * @idle, the time is counted from the last byte read instead.
 */
static int wait_line(int fd, const char *needle, int timeout_ms, bool idle, char *line, size_t len)
{
	double deadline = th_now_ms() + timeout_ms;
	double cap = deadline + (idle ? 9.0 * timeout_ms : 0); /* a line that never ends */
	char buf[4096];
	size_t have = 0;

	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int left = (int)(deadline - th_now_ms());
		ssize_t n;
		char *nl;

		while ((nl = memchr(buf, '\n', have))) {
			*nl = '\0';
			if (strstr(buf, needle)) {
				if (line)
					snprintf(line, len, "%s", buf);
				return 0;
			}
			have -= nl + 1 - buf;
			memmove(buf, nl + 1, have);
		}
		if (left <= 0)
			return -ETIMEDOUT;
		if (poll(&pfd, 1, left) <= 0)
			continue;
		/* one byte at a time: a line after ours stays in the pipe for the next call */
		n = read(fd, buf + have, 1);
		if (n <= 0)
			return -EPIPE;
		if (idle && th_now_ms() + timeout_ms < cap)
			deadline = th_now_ms() + timeout_ms;
		have += n;
		if (have == sizeof(buf))
			have = 0;
	}
}

int th_wait_line(int fd, const char *needle, int timeout_ms, char *line, size_t len)
{
	return wait_line(fd, needle, timeout_ms, false, line, len);
}

int th_read_line(int fd, char *line, size_t len)
{
	return wait_line(fd, "", TH_LINE_IDLE_MS, true, line, len);
}

size_t th_file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? 0 : (size_t)st.st_size;
}

int th_wait_file(const char *path, size_t from, const char *needle, int timeout_ms, char *line,
		 size_t len)
{
	double deadline = th_now_ms() + timeout_ms;

	for (;;) {
		FILE *f = fopen(path, "r");
		char buf[1024];
		bool found = false;

		if (f) {
			fseek(f, (long)from, SEEK_SET);
			while (fgets(buf, sizeof(buf), f))
				if (strstr(buf, needle)) {
					found = true;
					if (line)
						snprintf(line, len, "%s", buf);
				}
			fclose(f);
		}
		if (found)
			return 0;
		if (th_now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(10000);
	}
}

int th_wait_exit(pid_t pid, int timeout_ms)
{
	double deadline = th_now_ms() + timeout_ms;
	int st;

	for (;;) {
		pid_t r = waitpid(pid, &st, WNOHANG);

		if (r == pid)
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		if (r < 0)
			return -errno;
		if (th_now_ms() >= deadline)
			return -ETIMEDOUT;
		usleep(5000);
	}
}

void th_kill(pid_t pid, int sig, int timeout_ms)
{
	if (pid <= 0)
		return;
	kill(pid, sig);
	if (th_wait_exit(pid, timeout_ms) == -ETIMEDOUT && sig != SIGKILL) {
		kill(pid, SIGKILL);
		th_wait_exit(pid, 1000);
	}
}

static bool proc_live_with(const char *pid, const char *tag)
{
	char p[64], buf[4096], st[512], *s;
	ssize_t n;
	int fd;

	snprintf(p, sizeof(p), "/proc/%s/cmdline", pid);
	fd = open(p, O_RDONLY);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	for (ssize_t i = 0; i < n; i++)
		if (!buf[i])
			buf[i] = ' ';
	buf[n] = '\0';
	if (!strstr(buf, tag))
		return false;
	snprintf(p, sizeof(p), "/proc/%s/stat", pid);
	fd = open(p, O_RDONLY);
	if (fd < 0)
		return false;
	n = read(fd, st, sizeof(st) - 1);
	close(fd);
	if (n <= 0)
		return false;
	st[n] = '\0';
	s = strrchr(st, ')');
	return s && s[1] == ' ' && s[2] != 'Z' && s[2] != 'X';
}

int th_count_procs(const char *tag, pid_t *first)
{
	struct dirent *de;
	DIR *d = opendir("/proc");
	int n = 0;

	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		if (atoi(de->d_name) == getpid())
			continue;
		if (proc_live_with(de->d_name, tag)) {
			if (!n && first)
				*first = atoi(de->d_name);
			n++;
		}
	}
	closedir(d);
	return n;
}

const char *th_haul_bin(void)
{
	const char *p = getenv("HAUL_BIN");

	return p && *p ? p : "build/haul";
}

const char *th_progs_dir(void)
{
	const char *p = getenv("HAUL_PROGS");

	return p && *p ? p : "build/progs";
}

int th_make_key(const char *path)
{
	unsigned char k[32];
	int fd, in = open("/dev/urandom", O_RDONLY);

	if (in < 0 || read(in, k, sizeof(k)) != (ssize_t)sizeof(k)) {
		if (in >= 0)
			close(in);
		return -EIO;
	}
	close(in);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, k, sizeof(k)) != (ssize_t)sizeof(k)) {
		close(fd);
		return -EIO;
	}
	close(fd);
	return 0;
}

int th_run(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	FILE *f;
	size_t n = 0;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd) - 8, fmt, ap);
	va_end(ap);
	strcat(cmd, " 2>&1");
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	while (n + 1 < cap) {
		size_t k = fread(out + n, 1, cap - 1 - n, f);

		if (!k)
			break;
		n += k;
	}
	out[n] = '\0';
	while (fgetc(f) != EOF)
		;
	st = pclose(f);
	cr_log_info("%s -> %d: %s", cmd, WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void th_show_file(const char *what, const char *path)
{
	th_sh("sed 's/^/%s: /' %s >&2", what, path);
}

void th_expect_line(const char *path, const char *needle, int ms)
{
	char line[256];

	if (th_wait_file(path, 0, needle, ms, line, sizeof(line))) {
		th_show_file(path, path);
		cr_assert_fail("no \"%s\" in %s", needle, path);
	}
}

pid_t th_read_pid_file(const char *path)
{
	FILE *f = fopen(path, "r");
	int v = -1;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}
