/*
 * fd_kinds.c - the table of fd kinds haul carries, and the classification
 * of a live fd by it.
 *
 * The kinds are tried in table order, the first match wins: O_PATH comes
 * first (an O_PATH fd on a regular file is not that file open), the
 * kinds of a regular file before the others (a memfd before those).  A
 * matched kind may still refuse the fd (its refuse hook, e.g. a TCP
 * socket); an fd no kind matches is refused here, named by what it is.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/proc.h"
#include "restore/fd_inet.h"
#include "restore/fd_int.h"

const struct rst_fd_ops *const rst_fd_kinds[] = {
	&rst_fd_path,	    /* fd_file.c */
	&rst_fd_memfd,	    /* fd_memfd.c: before the kinds of a regular file */
	&rst_fd_reg,	    /* fd_file.c */
	&rst_fd_deleted,    /* fd_ghost.c */
	&rst_fd_dir,	    /* fd_file.c */
	&rst_fd_chr,	    /* fd_file.c */
	&rst_fd_eventfd,    /* fd_eventfd.c */
	&rst_fd_signalfd,   /* fd_signalfd.c */
	&rst_fd_timerfd,    /* fd_timerfd.c */
	&rst_fd_pty,	    /* both ends of a pty, before the terminals */
	&rst_fd_fifo,	    /* fd_fifo.c: a named FIFO only the moving processes hold */
	&rst_fd_external,   /* before pipes and sockets: the other end stays behind */
	&rst_fd_pipe,	    /* fd_pipe.c */
	&rst_fd_tcp_listen, /* fd_inet_listen.c */
	&rst_fd_tcp,	    /* fd_inet*.c */
	&rst_fd_udp,	    /* fd_inet*.c */
	&rst_fd_unix_lsn,   /* fd_unix_listen.c: a unix listener */
	&rst_fd_unix_dgram, /* fd_unix_dgram.c: a datagram socket not one end of a pair */
	&rst_fd_unix_pair,  /* fd_unix.c */
	&rst_fd_pidfd,	    /* fd_pidfd.c */
	&rst_fd_inotify,    /* fd_inotify.c */
	&rst_fd_fanotify,   /* fd_fanotify.c */
	&rst_fd_epoll,	    /* last: its finish re-arms targets once pipes hold their bytes */
	NULL,
};

const struct rst_fd_ops *rst_fd_ops_of(Haul__Img__FdKind kind)
{
	for (size_t i = 0; rst_fd_kinds[i]; i++)
		if (rst_fd_kinds[i]->kind == kind)
			return rst_fd_kinds[i];
	return NULL;
}

/* Why an fd that no kind matches is refused. */
static int unknown_fd(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	const struct stat *st = p->st;
	int fd = p->fd;

	if (S_ISFIFO(st->st_mode))
		snprintf(why, whylen,
			 "fd %d is a pipe or fifo (named fifo %s: only anonymous pipes are "
			 "carried; use a pipe or a regular file)",
			 fd, p->target);
	else if ((S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) && p->deleted)
		snprintf(why, whylen,
			 "fd %d is device node %s, deleted since it was opened (a deleted device "
			 "node cannot be reopened)",
			 fd, p->target);
	else if (S_ISSOCK(st->st_mode))
		snprintf(why, whylen, "fd %d is a socket (%s)", fd, p->target);
	else if (S_ISCHR(st->st_mode))
		snprintf(why, whylen, "fd %d is character device %s (only /dev/null-like devices)",
			 fd, p->target);
	else
		snprintf(why, whylen, "fd %d is %s", fd, p->target);
	return -EOPNOTSUPP;
}

int rst_fd_classify(pid_t pid, int fd, const char *fdinfo, char *target, size_t tlen,
		    struct stat *st, struct rst_fd_probe *p, const struct rst_fd_ops **ops,
		    char *why, size_t whylen)
{
	char link[64];
	int ret;

	snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, fd);
	ret = rst_read_link(link, target, tlen);
	if (ret)
		return ret;
	if (stat(link, st) < 0)
		return -errno;
	memset(p, 0, sizeof(*p));
	p->pid = pid;
	p->fd = fd;
	p->flags = rst_fdinfo_flags(fdinfo);
	p->deleted = rst_strip_deleted(target);
	p->target = target;
	p->st = st;
	p->fdinfo = fdinfo;
	for (size_t i = 0; rst_fd_kinds[i]; i++) {
		const struct rst_fd_ops *k = rst_fd_kinds[i];

		if (!k->match(p))
			continue;
		*ops = k;
		return k->refuse ? k->refuse(p, why, whylen) : 0;
	}
	return unknown_fd(p, why, whylen);
}

int rst_fd_each(pid_t pid, rst_fd_visit fn, void *arg, char *why, size_t whylen)
{
	struct dirent *de;
	DIR *d = haul_proc_opendir(pid, "fd");
	int ret = 0;

	if (!d) {
		ret = -errno;
		snprintf(why, whylen, "cannot list the fds of pid %d", (int)pid);
		return ret;
	}
	while (!ret && (de = readdir(d))) {
		const struct rst_fd_ops *k = NULL;
		char target[4096], info[64], *fdinfo = NULL;
		struct rst_fd_probe p;
		struct stat st;
		int fd = atoi(de->d_name);

		if (de->d_name[0] == '.')
			continue;
		snprintf(info, sizeof(info), "fdinfo/%d", fd);
		ret = rst_read_proc(pid, info, &fdinfo, NULL);
		if (!ret)
			ret = rst_fd_classify(pid, fd, fdinfo, target, sizeof(target), &st, &p, &k,
					      why, whylen);
		/* closed meanwhile (the process is still running): fdinfo's read says ESRCH */
		if (ret == -ESRCH && kill(pid, 0) == 0)
			ret = -ENOENT;
		if (ret == -ENOENT) {
			free(fdinfo);
			ret = 0;
			continue;
		}
		if (ret == -ESRCH && !why[0])
			snprintf(why, whylen, "pid %d exited during the precheck", (int)pid);
		if (!ret)
			ret = fn(arg, &p, k, why, whylen);
		free(fdinfo);
	}
	closedir(d);
	return ret;
}
