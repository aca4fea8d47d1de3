/*
 * fd_tcp_closed.c - a TCP socket in TCP_CLOSE: never connected (created,
 * maybe bound, maybe shut down), or a connection that ended while the
 * program still holds the socket (both FINs exchanged, or reset).
 *
 * Which one: TCP_INFO's segment counters (linux/tcp.h's tcp_info; glibc's
 * lacks them) are zero on a socket that never sent or received a segment,
 * and connect(AF_UNSPEC) clears them with the rest.
 * An ended connection: the kernel shut it down both ways (tcp_done sets
 * SHUTDOWN_MASK) and released its port unless the program had bound it or
 * it was accepted from a bound listener; getsockname() still shows the
 * port, which the peer's TIME_WAIT may hold, or the restored listener
 * itself (an accepted socket shares its port).  So it comes back shut down
 * both ways and not bound: it reads EOF and refuses writes with EPIPE as
 * the program saw it (zdtm's socket-tcp-close2; bound again, EADDRINUSE
 * failed the restore).  Only a connect() of it again would tell the port.
 * A never connected one: bound as getsockname() says, as before, and shut
 * down as inet_diag says (it lists a bound one as TCP_BOUND_INACTIVE,
 * Linux 6.7 on); an unbound one shows only a read shutdown (POLLRDHUP: a
 * write shutdown shows nowhere, tcp_poll sets POLLOUT either way), taken
 * as both (it refuses a write with EPIPE either way).
 * Restore: socket, options, bind (when bound), shutdown() (ENOTCONN on a
 * closed socket, which the kernel marks all the same).
 */
#define LOG_PREFIX "sock: "
#include <errno.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <sys/socket.h>

#include "common/log.h"
#include "restore/fd_inet.h"

#ifndef TCP_BOUND_INACTIVE
#define TCP_BOUND_INACTIVE 13 /* include/net/tcp_states.h */
#endif

/* Whether @sfd ever sent or received a segment (0 after connect(AF_UNSPEC)). */
static bool had_segments(int sfd)
{
	struct tcp_info ti;
	socklen_t l = sizeof(ti);

	if (getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &l) < 0 ||
	    l < offsetof(struct tcp_info, tcpi_segs_in) + sizeof(ti.tcpi_segs_in))
		return false;
	return ti.tcpi_segs_out || ti.tcpi_segs_in;
}

int rst_tcp_closed_dump(int sfd, Haul__Img__InetSocket *s)
{
	struct pollfd pf = {sfd, POLLRDHUP, 0};
	int how = 0, ret = 0;

	if (poll(&pf, 1, 0) < 0)
		return -errno;
	if ((pf.revents & POLLRDHUP) && had_segments(sfd)) {
		/* an ended connection: shut down both ways, its port not its own */
		s->has_shutdown = true;
		s->shutdown = 3;
		s->has_local_addr = s->has_local_port = s->has_local_scope = false;
		s->local_port = 0;
		return 0;
	}
	if (s->has_local_addr)
		ret = rst_inet_diag_find(sfd, (int)s->family, IPPROTO_TCP, 1U << TCP_BOUND_INACTIVE,
					 &how);
	if (ret < 0)
		return ret;
	if (!ret)
		how = pf.revents & POLLRDHUP ? 3 : 0;
	if (how) {
		s->has_shutdown = true;
		s->shutdown = (uint32_t)how & 3;
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
