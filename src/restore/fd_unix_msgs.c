/*
 * fd_unix_msgs.c - the messages queued on a datagram or seqpacket end of
 * a unix pair of the process, boundaries kept.
 *
 * Dump: MSG_PEEK sees only the first message; SO_PEEK_OFF (set on the
 * socket for the time of the dump, the process being stopped, then put
 * back) moves each peek on to the next one.  A message carrying fds
 * (SCM_RIGHTS) fails the dump by name, its duplicates closed.  Restore:
 * once every fd exists, each message is sent again, in order, through
 * the other end of the rebuilt pair (haul's pidfd_getfd copy of it).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

#define MSG_MAX	 (1 << 20) /* a larger message fails the dump */
#define MSGS_MAX 65536	   /* more messages fail the dump */

/* Close the fds a peek handed us; how many there were. */
static int drop_fds(struct msghdr *m)
{
	int n = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			close(fd);
			n++;
		}
	}
	return n;
}

/* Peek the next message of @sfd into a new o->msgs entry; 1 when there is none left. */
static int peek_one(int sfd, Haul__Img__UnixPairFile *o, char *buf)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 253)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {buf, MSG_MAX};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl.b,
			   .msg_controllen = sizeof(ctl.b)};
	ProtobufCBinaryData *nm;
	ssize_t n;

	n = recvmsg(sfd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN ? 1 : -errno;
	if (drop_fds(&m) || (m.msg_flags & MSG_CTRUNC)) {
		pr_err("unix socket %llu has file descriptors in flight (SCM_RIGHTS), which haul "
		       "does not carry: retry once the process has read them",
		       (unsigned long long)o->ino);
		return -EOPNOTSUPP;
	}
	if (n == 0 || n > MSG_MAX || o->n_msgs >= MSGS_MAX) {
		pr_err("unix socket %llu has a message of %zd bytes queued (or more than %d): not "
		       "carried; retry once the process has read it",
		       (unsigned long long)o->ino, n, MSGS_MAX);
		return -EOPNOTSUPP;
	}
	nm = realloc(o->msgs, (o->n_msgs + 1) * sizeof(*nm));
	if (!nm)
		return -ENOMEM;
	o->msgs = nm;
	nm[o->n_msgs].data = malloc(n);
	if (!nm[o->n_msgs].data)
		return -ENOMEM;
	memcpy(nm[o->n_msgs].data, buf, n);
	nm[o->n_msgs++].len = n;
	return 0;
}

int rst_unix_peek_msgs(int sfd, Haul__Img__UnixPairFile *o)
{
	int old = -1, zero = 0, ret = 0;
	socklen_t ol = sizeof(old);
	char *buf = malloc(MSG_MAX);

	if (!buf)
		return -ENOMEM;
	if (getsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &old, &ol) < 0 ||
	    setsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &zero, sizeof(zero)) < 0) {
		ret = -errno;
		pr_err("cannot peek past the first message of unix socket %llu (SO_PEEK_OFF): %s",
		       (unsigned long long)o->ino, strerror(-ret));
		free(buf);
		return ret;
	}
	while (!ret)
		ret = peek_one(sfd, o, buf);
	if (setsockopt(sfd, SOL_SOCKET, SO_PEEK_OFF, &old, sizeof(old)) < 0)
		pr_warn("cannot put SO_PEEK_OFF of unix socket %llu back to %d: %s",
			(unsigned long long)o->ino, old, strerror(errno));
	free(buf);
	return ret == 1 ? 0 : ret;
}

/* Send @u's messages, in order, into remote fd @fd (the other end of its pair). */
static int send_msgs(struct rst_target *t, int fd, const Haul__Img__UnixPairFile *u)
{
	int lfd, ret = 0;

	if (!u || !u->n_msgs)
		return 0;
	lfd = (int)syscall(SYS_pidfd_getfd, t->pidfd, fd, 0);
	if (lfd < 0)
		return -errno;
	for (size_t i = 0; i < u->n_msgs && !ret; i++)
		if (send(lfd, u->msgs[i].data, u->msgs[i].len, MSG_DONTWAIT) !=
		    (ssize_t)u->msgs[i].len)
			ret = errno ? -errno : -EIO;
	close(lfd);
	if (ret)
		pr_err("cannot queue the %zu messages of unix socket %llu again: %s", u->n_msgs,
		       (unsigned long long)u->ino, strerror(-ret));
	return ret;
}

int rst_unix_refill_msgs(struct rst_target *t, struct rst_fd_rctx *x)
{
	int ret = 0;

	for (size_t i = 0; i < x->npipes && !ret; i++) {
		const struct rst_tpipe *p = &x->pipes[i];

		if (!p->sock)
			continue;
		for (size_t k = 0; k < x->ps->n_files && !ret; k++) {
			const Haul__Img__UnixPairFile *u = x->ps->files[k]->unix_pair;

			if (!u || (u->ino != p->id && u->peer != p->id))
				continue;
			/* what the end had to read goes in through the other end */
			ret = send_msgs(t, u->ino == p->id ? p->w : p->r, u);
		}
	}
	return ret;
}
