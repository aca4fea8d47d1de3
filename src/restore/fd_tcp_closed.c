/*
 * fd_tcp_closed.c - a TCP socket in TCP_CLOSE: never connected (created,
 * maybe bound), or a connection that ended while the program still holds
 * the socket (both FINs exchanged, or reset).
 *
 * Dump.  Its port: getsockname() still shows the port of a connection
 * that ended, but the kernel released it (unless the program had bound it,
 * or it was accepted from a bound listener), and the peer may still hold
 * the pair in TIME_WAIT: binding it again at the restore would fail
 * (EADDRINUSE) or take a port the program does not hold.  So a closed
 * socket is bound again when inet_diag lists it among the bound, inactive
 * sockets of its namespace (TCP_BOUND_INACTIVE, Linux 6.7 and later; with
 * its exact shutdown), or when it shows no shutdown at all (never
 * connected: bound as getsockname says, as before).  Its shutdown, when
 * it is not bound: poll() answers POLLRDHUP exactly when it is shut for
 * reads, but a shutdown for writes shows nowhere (tcp_poll sets POLLOUT
 * either way), so it is taken as both: a connection that ended has both
 * (tcp_done sets SHUTDOWN_MASK), and a never connected socket refuses a
 * write with EPIPE either way (only a connect() after a lone SHUT_RD would
 * tell).  The restored socket reads EOF and refuses writes as the program
 * saw it.
 * Restore: socket, options, bind (if bound), shutdown() (ENOTCONN on a
 * closed socket, which the kernel marks all the same).
 */
#define LOG_PREFIX "sock: "
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include "common/log.h"
#include "restore/fd_inet.h"

#ifndef TCP_BOUND_INACTIVE
#define TCP_BOUND_INACTIVE 13 /* include/net/tcp_states.h */
#endif

int rst_tcp_closed_dump(int sfd, Haul__Img__InetSocket *s)
{
	struct pollfd pf = {sfd, POLLRDHUP, 0};
	int how = 0, ret = 0;

	if (poll(&pf, 1, 0) < 0)
		return -errno;
	/* bound: inet_diag has it, with its shutdown (and a port the program holds) */
	if (s->has_local_addr)
		ret = rst_inet_diag_find(sfd, (int)s->family, IPPROTO_TCP, 1U << TCP_BOUND_INACTIVE,
					 &how);
	if (ret < 0)
		return ret;
	if (!ret)
		how = pf.revents & POLLRDHUP ? 3 : 0;
	if (!how)
		return 0; /* never connected nor shut down: bound as getsockname says */
	s->has_shutdown = true;
	s->shutdown = (uint32_t)how & 3;
	if (!ret && s->has_local_addr) {
		/* a connection that ended: its port was released when it closed */
		s->has_local_addr = s->has_local_port = s->has_local_scope = false;
		s->local_port = 0;
	}
	return 0;
}

int rst_inet_shutdown(int sfd, const Haul__Img__InetSocket *s)
{
	static const int how[] = {0, SHUT_RD, SHUT_WR, SHUT_RDWR};

	if (!s->has_shutdown || !s->shutdown || s->shutdown > 3)
		return 0;
	/* unconnected: ENOTCONN, but the kernel has marked it shut down all the same */
	if (shutdown(sfd, how[s->shutdown]) < 0 && errno != ENOTCONN)
		return -errno;
	return 0;
}
