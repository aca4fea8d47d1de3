/*
 * sock_drain.c - connections the kernel completed but the program had not
 * accept()ed when it was stopped.
 *
 * They sit in a listener's accept queue, which no socket call can refill on
 * the target (CRIU refuses them).  Carrying them would need a listener
 * whose queue haul builds, so instead the program drains it itself: when
 * the stop finds a listener with connections queued (haul migrate: the
 * listening fds found just before the freeze, rst_sock_listeners(), each
 * asked with TCP_INFO, whose tcpi_unacked of a listener is its accept
 * queue; reading /proc/PID/net/tcp walks the whole connection hash table,
 * ~5 ms per file even with no socket, 12 ms of a 25 ms downtime; without
 * the list, as haul checkpoint does: /proc/PID/net/tcp and tcp6 first, then
 * the fds), the caller lets the
 * process run until the queues are empty (polled every millisecond, at most
 * RST_ACCEPT_DRAIN_MS) and stops it again, up to RST_ACCEPT_DRAIN_TRIES
 * times.  During `haul migrate` the network lock keeps new SYNs (and the
 * last ACK of a handshake) out from the freeze on, so the queues only
 * shrink; for `haul checkpoint` without a lock a new connection may still
 * race in, hence the tries.  A program that does not accept within the
 * time is refused by name at the dump (fd_inet_listen.c): the process runs
 * on and nothing is dropped.
 */
#define LOG_PREFIX "sock: "
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/proc.h"
#include "restore/fd_inet.h"
#include "restore/fd_int.h"
#include "restore/restore.h"

/* Whether fd @fd of @pid (stat @st) is a listening TCP socket. */
static bool is_listener(pid_t pid, int fd, struct stat *st)
{
	struct rst_fd_probe p = {.pid = pid, .fd = fd, .st = st};
	struct rst_inet_id id;

	return rst_inet_probe(&p, &id) && id.type == SOCK_STREAM && id.listening;
}

/* Each fd of @pid that is a listening TCP socket: @fn(@arg, fd), until it returns nonzero. */
static int each_listener(pid_t pid, int (*fn)(void *arg, int fd), void *arg)
{
	struct dirent *de;
	DIR *d = haul_proc_opendir(pid, "fd");
	int ret = 0;

	if (!d)
		return 0;
	while (!ret && (de = readdir(d))) {
		int fd = atoi(de->d_name);
		struct stat st;
		char link[96];

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, fd);
		if (stat(link, &st) == 0 && S_ISSOCK(st.st_mode) && is_listener(pid, fd, &st))
			ret = fn(arg, fd);
	}
	closedir(d);
	return ret;
}

struct queued {
	pid_t pid;
	uint32_t total;
	int where;
};

static int add_queued(void *arg, int fd)
{
	struct queued *q = arg;
	uint32_t n = 0;

	if (rst_tcp_listen_queued(q->pid, fd, &n) == 0 && n) {
		q->total += n;
		q->where = fd;
	}
	return 0;
}

/*
 * Connections waiting in the accept queues of @pid's listeners: those of
 * @fds[0..n) when @fds is set (found before the stop), else of every fd.
 */
static uint32_t pending(pid_t pid, const int *fds, size_t n, int *where)
{
	struct queued q = {.pid = pid};

	if (fds)
		for (size_t i = 0; i < n; i++)
			add_queued(&q, fds[i]);
	else
		each_listener(pid, add_queued, &q);
	*where = q.where;
	return q.total;
}

/*
 * Whether any listener of @pid's network namespace has connections queued:
 * /proc/PID/net/tcp{,6} shows a LISTEN (0A) socket's accept queue as its
 * rx_queue.  One read each, so the common case (none) costs no per-fd
 * probe in the downtime of a process with thousands of connections.
 */
static bool any_listener_queued(pid_t pid)
{
	static const char *const files[] = {"net/tcp", "net/tcp6"};
	bool any = false;

	for (int f = 0; f < 2 && !any; f++) {
		char *text = NULL, *line, *save = NULL;

		if (rst_read_proc(pid, files[f], &text, NULL))
			return true; /* cannot tell: ask each fd */
		for (line = strtok_r(text, "\n", &save); line && !any;
		     line = strtok_r(NULL, "\n", &save)) {
			unsigned st, rx;

			any = sscanf(line, "%*d: %*s %*s %x %*x:%x", &st, &rx) == 2 && st == 0x0A &&
			      rx;
		}
		free(text);
	}
	return any;
}

struct fd_list {
	int *fd;
	size_t n;
};

static int add_fd(void *arg, int fd)
{
	struct fd_list *l = arg;
	int *nf = realloc(l->fd, (l->n + 1) * sizeof(*nf));

	if (!nf)
		return -ENOMEM;
	l->fd = nf;
	l->fd[l->n++] = fd;
	return 0;
}

int rst_sock_listeners(pid_t pid, int **fds, size_t *n)
{
	struct fd_list l = {0};
	int ret = each_listener(pid, add_fd, &l);

	if (ret) {
		free(l.fd);
		return ret;
	}
	/*
	 * none is an empty list, not NULL: the stop then asks nothing, where NULL
	 * reads /proc/PID/net/tcp{,6} (~5 ms each, per process of a tree)
	 */
	*fds = l.fd ? l.fd : calloc(1, sizeof(int));
	*n = l.n;
	return 0;
}

bool rst_sock_accept_pending(pid_t pid, const int *fds, size_t nfds)
{
	int fd = -1;
	uint32_t n = 0;

	if (fds ? nfds != 0 : any_listener_queued(pid))
		n = pending(pid, fds, nfds, &fd);
	if (n)
		pr_info("pid %d has %u connections not yet accepted (fd %d and maybe others); "
			"waiting up to %d ms for it to accept them",
			(int)pid, n, fd, RST_ACCEPT_DRAIN_MS);
	return n != 0;
}

int rst_sock_drain_wait(pid_t pid, const int *fds, size_t nfds)
{
	struct timespec ms = {0, 1000000};
	int fd;

	for (int i = 0; i < RST_ACCEPT_DRAIN_MS; i++) {
		if (!(fds ? nfds != 0 : any_listener_queued(pid)) || !pending(pid, fds, nfds, &fd))
			return 0;
		nanosleep(&ms, NULL);
	}
	return -ETIMEDOUT;
}
