/*
 * fd_unix_opts.c - the options of a unix socket that change what the
 * program reads: SO_PASSCRED (every message comes with SCM_CREDENTIALS),
 * and its shutdown (reads end, writes fail with EPIPE).
 *
 * Dump: getsockopt on a pidfd_getfd copy.  Restore: the kinds' setup hook
 * (after the fd is at its number) sets it again by an injected
 * setsockopt, after O_NONBLOCK.  Credentials of messages queued at the
 * dump are not carried: a message sent again carries the credentials of
 * whoever sends it at the restore (the restored process itself for
 * datagram sockets others send to, haul for the pairs' queues, which the
 * program sees as pid 0 when haul is outside its PID namespace), and
 * only when SO_PASSCRED was already on at that send.
 *
 * A shutdown (UNIX_DIAG_SHUTDOWN at the dump) is made again with
 * shutdown() on a pidfd_getfd copy, but only once every queue of the
 * restore is refilled (fd_tcp_local.c's deferred list, just before the
 * first process runs): the bytes an end has to read are written through
 * its peer, which may be the end shut for writes, possibly in a later
 * process of a tree.  A stream or seqpacket shutdown also marks the peer
 * (the kernel mirrors it), so each end's own answer, given again, makes
 * both; a datagram socket's marks only itself, as at the dump.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restore/fd_inet.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

int rst_unix_passcred(pid_t pid, int fd)
{
	int sfd = rst_fd_copy(pid, fd), on = 0, ret;
	socklen_t ol = sizeof(on);

	if (sfd < 0)
		return sfd;
	ret = getsockopt(sfd, SOL_SOCKET, SO_PASSCRED, &on, &ol) < 0 ? -errno : on != 0;
	close(sfd);
	return ret;
}

/* fd @fd of the target shut down again (@shut: 1 reads, 2 writes, 3 both) just before it runs. */
static int shut_later(struct rst_target *t, int fd, uint32_t shut)
{
	static const int how[] = {0, SHUT_RD, SHUT_WR, SHUT_RDWR};
	int sfd = (int)syscall(SYS_pidfd_getfd, rst_target_pidfd(t), fd, 0), ret;

	if (sfd < 0)
		return -errno;
	ret = rst_sock_defer_shutdown(sfd, how[shut & 3]);
	close(sfd);
	return ret;
}

int rst_unix_setup(struct rst_target *t, const Haul__Img__FileObject *f,
		   const Haul__Img__FdEntry *e)
{
	bool on = (f->unix_pair && f->unix_pair->passcred) ||
		  (f->unix_dgram && f->unix_dgram->passcred) ||
		  (f->unix_listen && f->unix_listen->passcred);
	uint32_t shut = f->unix_pair	? f->unix_pair->shutdown
			: f->unix_dgram ? f->unix_dgram->shutdown
					: 0;
	int one = 1, ret = rst_fd_set_nonblock(t, f, e);

	if (!ret && shut)
		ret = shut_later(t, e->fd, shut);
	if (ret || !on)
		return ret;
	ret = rst_poke(t, rst_scratch(t), &one, sizeof(one));
	return ret ? ret
		   : rst_rcall(t, SYS_setsockopt, e->fd, SOL_SOCKET, SO_PASSCRED, rst_scratch(t),
			       sizeof(one), 0, NULL);
}
