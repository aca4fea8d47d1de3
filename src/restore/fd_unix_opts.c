/*
 * fd_unix_opts.c - the options of a unix socket that change what the
 * program reads: SO_PASSCRED (every message comes with SCM_CREDENTIALS).
 *
 * Dump: getsockopt on a pidfd_getfd copy.  Restore: the kinds' setup hook
 * (after the fd is at its number) sets it again by an injected
 * setsockopt, after O_NONBLOCK.  Credentials of messages queued at the
 * dump are not carried: a message sent again carries the credentials of
 * whoever sends it at the restore (the restored process itself for
 * datagram sockets others send to, haul for the pairs' queues, which the
 * program sees as pid 0 when haul is outside its PID namespace), and
 * only when SO_PASSCRED was already on at that send.
 */
#include <errno.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

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

int rst_unix_setup(struct rst_target *t, const Haul__Img__FileObject *f,
		   const Haul__Img__FdEntry *e)
{
	bool on = (f->unix_pair && f->unix_pair->passcred) ||
		  (f->unix_dgram && f->unix_dgram->passcred) ||
		  (f->unix_listen && f->unix_listen->passcred);
	int one = 1, ret = rst_fd_set_nonblock(t, f, e);

	if (ret || !on)
		return ret;
	ret = rst_poke(t, rst_scratch(t), &one, sizeof(one));
	return ret ? ret
		   : rst_rcall(t, SYS_setsockopt, e->fd, SOL_SOCKET, SO_PASSCRED, rst_scratch(t),
			       sizeof(one), 0, NULL);
}
