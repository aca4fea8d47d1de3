/*
 * survivor.c - the forked child behind the guardian (guard.c) and the
 * network survivor (netguard.c): what both do alike.
 *
 * A survivor must outlive a haul that is killed or dies, and must not be
 * killed with it: it becomes a session leader (Ctrl-C on the terminal does
 * not reach it), ignores SIGINT/SIGTERM/SIGHUP/SIGPIPE, keeps only fds 0-2
 * and the read end of a pipe, and reads one byte per state change.  'D'
 * (done) makes it exit quietly; EOF without 'D' means its parent died, and
 * the caller's child code then undoes what the state read so far calls for.
 * The parent holds the write end; closing it after 'D' and reaping the
 * child is haul_survivor_stop().
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "haul/haul_int.h"

pid_t haul_survivor_fork(const char *name, int *fd)
{
	int p[2];
	pid_t pid;

	if (pipe2(p, O_CLOEXEC))
		return -errno;
	pid = fork();
	if (pid < 0) {
		int ret = -errno;

		close(p[0]);
		close(p[1]);
		return ret;
	}
	if (pid > 0) {
		close(p[0]);
		*fd = p[1];
		return pid;
	}
	close(p[1]);
	/* keep stdin/stdout/stderr and the pipe; nothing else of haul's */
	for (int i = 3; i < 1024; i++)
		if (i != p[0])
			close(i);
	setsid();
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_NAME, name, 0, 0, 0);
	*fd = p[0];
	return 0;
}

void haul_survivor_wait(int rfd, struct haul_survivor_state *st)
{
	char c;
	ssize_t n;

	for (;;) {
		n = read(rfd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		if (c == 'D')
			_exit(0);
		if (c == 'M')
			st->moved = true;
		else if (c == 'C')
			st->indoubt = true;
		else if (c == 'A')
			st->indoubt = false;
		else if (st->record)
			st->record(st->arg, c, rfd);
	}
}

int haul_survivor_send(int fd, char c)
{
	if (fd < 0)
		return -EBADF;
	if (write(fd, &c, 1) != 1)
		return -errno;
	return 0;
}

void haul_survivor_stop(pid_t *pid, int *fd)
{
	if (*fd >= 0) {
		haul_survivor_send(*fd, 'D');
		close(*fd);
		*fd = -1;
	}
	if (*pid > 0) {
		waitpid(*pid, NULL, 0);
		*pid = -1;
	}
}
