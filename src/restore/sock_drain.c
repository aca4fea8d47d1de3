/*
 * sock_drain.c - connections the kernel completed but the program had not
 * accept()ed when it was stopped.
 *
 * They sit in a listener's accept queue, which no socket call can refill on
 * the target (CRIU refuses them).  Carrying them would need a listener
 * whose queue haul builds, so instead the program drains it itself: when
 * the stop finds a listener with connections queued (first /proc/PID/net/tcp
 * and tcp6, one read each: a LISTEN line's rx_queue is its accept queue;
 * only then the process's fds, where TCP_INFO's tcpi_unacked of a listener
 * is its accept queue), the caller lets the
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

/* Connections waiting in the accept queues of @pid's listeners (0 when it has none). */
static uint32_t pending(pid_t pid, int *where)
{
	struct dirent *de;
	uint32_t total = 0;
	DIR *d = haul_proc_opendir(pid, "fd");

	if (!d)
		return 0;
	while ((de = readdir(d))) {
		struct rst_fd_probe p = {.pid = pid, .fd = atoi(de->d_name)};
		struct rst_inet_id id;
		struct stat st;
		char link[96];
		uint32_t q = 0;

		if (de->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, p.fd);
		if (stat(link, &st) < 0)
			continue;
		p.st = &st;
		if (!rst_inet_probe(&p, &id) || id.type != SOCK_STREAM || !id.listening)
			continue;
		if (rst_tcp_listen_queued(pid, p.fd, &q) == 0 && q) {
			total += q;
			*where = p.fd;
		}
	}
	closedir(d);
	return total;
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

bool rst_sock_accept_pending(pid_t pid)
{
	int fd = -1;
	uint32_t n = any_listener_queued(pid) ? pending(pid, &fd) : 0;

	if (n)
		pr_info("pid %d has %u connections not yet accepted (fd %d and maybe others); "
			"waiting up to %d ms for it to accept them",
			(int)pid, n, fd, RST_ACCEPT_DRAIN_MS);
	return n != 0;
}

int rst_sock_drain_wait(pid_t pid)
{
	struct timespec ms = {0, 1000000};
	int fd;

	for (int i = 0; i < RST_ACCEPT_DRAIN_MS; i++) {
		if (!any_listener_queued(pid) || !pending(pid, &fd))
			return 0;
		nanosleep(&ms, NULL);
	}
	return -ETIMEDOUT;
}
