/*
 * io_flusher.c - whether a thread has PR_SET_IO_FLUSHER set, also where
 * prctl(PR_GET_IO_FLUSHER) cannot say.
 *
 * The call answers -EPERM to a caller without CAP_SYS_RESOURCE: every
 * process of another uid and every container's process asks it in vain,
 * while haul, root, may read its own flag.  Compared raw, -1 against 0,
 * each such process would be refused.  The flag is two task flags
 * (PF_MEMALLOC_NOIO | PF_LOCAL_THROTTLE on 6.x), shown in /proc/TID/stat's
 * ninth field; their values differ between kernels, so they are learnt
 * once: haul sets the flag on its own thread, reads which bits appeared,
 * and clears it again.  Where haul may not set it either, nothing can be
 * learnt and the prctl answer stands (both sides then read -EPERM alike).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "restore/restore_int.h"

#define PR_SET_IO_FLUSHER_ 57

/* The task flags of @tid (0: this thread), or -errno. */
static long task_flags(pid_t tid)
{
	char path[64], buf[1024];
	const char *p;
	ssize_t n;
	int fd;

	if (tid)
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)tid);
	else
		snprintf(path, sizeof(path), "/proc/thread-self/stat");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -errno : -EIO;
	buf[n] = '\0';
	/* after the name in parentheses: state ppid pgrp session tty_nr tpgid flags */
	p = strrchr(buf, ')');
	for (int field = 3; p && field <= 9; field++) {
		p = strchr(p + 1, ' ');
		if (p && field == 9)
			return strtol(p + 1, NULL, 10) & 0x7fffffff;
	}
	return -EBADMSG;
}

/* The task bits PR_SET_IO_FLUSHER sets: 0 when haul may not set it. */
static long flusher_bits(void)
{
	static long bits = -1;
	long before, after;

	if (bits >= 0)
		return bits;
	bits = 0;
	before = task_flags(0);
	if (before < 0 || prctl(PR_SET_IO_FLUSHER_, 1, 0, 0, 0))
		return bits;
	after = task_flags(0);
	if (prctl(PR_SET_IO_FLUSHER_, 0, 0, 0, 0))
		return bits; /* cannot happen: the same capability set it */
	if (after > 0)
		bits = after & ~before;
	return bits;
}

long rst_io_flusher(pid_t tid, long answer)
{
	long bits, flags;

	if (answer != -EPERM)
		return answer;
	bits = flusher_bits();
	if (!bits)
		return answer;
	flags = task_flags(tid);
	if (flags < 0)
		return answer;
	return (flags & bits) == bits;
}
