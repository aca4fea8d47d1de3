/*
 * fd_inet_listen.c - a listening TCP socket, IPv4 or IPv6 (dual-stack when
 * IPV6_V6ONLY is off), with its options and backlog.
 *
 * Dump: the common part (fd_inet.c: address, options that differ from a
 * new socket's, SO_LINGER, buffer sizes) and the backlog listen() was given,
 * which TCP_INFO reports for a listener as tcpi_sacked (sk_max_ack_backlog;
 * tcpi_unacked is the accept queue's length now).  Restore: socket, the
 * options bind() depends on (reuse, v6only, freebind, transparent), bind,
 * listen(backlog), the other options.  Connections the kernel completed
 * but the program had not accepted are the listener's accept queue, which
 * no call can refill: the freeze drains them first (sock_drain.c); one
 * still queued at the dump is refused by name (the dump fails, the process
 * runs on), never dropped.
 */
#define LOG_PREFIX "sock: "
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "restore/fd_inet.h"
#include "restore/target_int.h"

static bool listen_match(const struct rst_fd_probe *p)
{
	struct rst_inet_id id;

	return rst_inet_probe(p, &id) && id.type == SOCK_STREAM && id.listening;
}

/* The listener's backlog (sk_max_ack_backlog) and accept queue length, from TCP_INFO. */
static int listen_queue(int sfd, uint32_t *backlog, uint32_t *queued)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);

	memset(&ti, 0, sizeof(ti));
	if (getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0)
		return -errno;
	*backlog = ti.tcpi_sacked;
	*queued = ti.tcpi_unacked;
	return 0;
}

int rst_tcp_listen_queued(pid_t pid, int fd, uint32_t *queued)
{
	uint32_t backlog;
	int sfd = rst_inet_getfd(pid, fd), ret;

	if (sfd < 0)
		return sfd;
	ret = listen_queue(sfd, &backlog, queued);
	close(sfd);
	return ret;
}

static int listen_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		       Haul__Img__FileObject *const *prev, size_t nprev)
{
	uint32_t backlog, queued;
	int sfd, ret;

	(void)prev;
	(void)nprev;
	sfd = rst_inet_dump_probe(p, o);
	if (sfd < 0)
		return sfd;
	ret = listen_queue(sfd, &backlog, &queued);
	if (!ret && queued) {
		char name[160];

		rst_inet_name_fd(sfd, name, sizeof(name));
		pr_err("fd %d of pid %d: %s has %u connections the program did not accept while "
		       "haul let it run (up to %d x %d ms); a restored listener's accept queue "
		       "cannot be refilled. The process runs on: try again when it accepts",
		       p->fd, (int)p->pid, name, queued, RST_ACCEPT_DRAIN_TRIES,
		       RST_ACCEPT_DRAIN_MS);
		ret = -EOPNOTSUPP;
	}
	close(sfd);
	if (ret)
		return ret;
	o->inet->has_backlog = true;
	o->inet->backlog = backlog;
	return 0;
}

static int listen_setup(struct rst_target *t, const Haul__Img__FileObject *f,
			const Haul__Img__FdEntry *e)
{
	return rst_fd_set_nonblock(t, f, e);
}

const struct rst_fd_ops rst_fd_tcp_listen = {
	.name = "TCP listener",
	.kind = HAUL__IMG__FD_KIND__FD_TCP_LISTEN,
	.version = 6, /* 6: SO_RCVTIMEO, SO_SNDTIMEO (sock_timeo.c) */
	.match = listen_match,
	.refuse = rst_inet_refuse,
	.validate = rst_inet_validate,
	.dump = listen_dump,
	.restore = rst_inet_restore,
	.setup = listen_setup,
};
