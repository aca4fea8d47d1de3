/*
 * fd_copy.c - a copy of a process's fd in haul, for the fd kinds that
 * read a file's state with plain calls (getsockopt, ioctl, tcgetattr).
 *
 * pidfd_getfd gives haul the same open file description: what it reads is
 * the process's state, and closing the copy only drops a reference (a
 * socket is not shut down, a terminal not hung up).
 */
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restore/fd_int.h"

int rst_fd_copy(pid_t pid, int fd)
{
	int pidfd, cfd;

	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return -errno;
	cfd = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	if (cfd < 0)
		cfd = -errno;
	close(pidfd);
	return cfd;
}
