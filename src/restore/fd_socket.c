/*
 * fd_socket.c - what a socket fd of a process really is, so that one haul
 * cannot carry is refused by name instead of being taken for a unix pair.
 *
 * The only sockets restored are the two ends of a unix socketpair held by
 * the process itself (fd_restore.c, checked against sock_diag in dump.c).
 * Every other socket is named by its family, type and protocol, read with
 * getsockopt(SO_DOMAIN, SO_TYPE, SO_PROTOCOL) on a copy of the fd taken
 * with pidfd_getfd (the process keeps its own fd; closing the copy drops
 * only a reference, so the socket is not shut down), and by its addresses
 * (getsockname, getpeername) and SO_ACCEPTCONN where the family has them:
 * "TCP 127.0.0.1:6379 listening".
 */
#define LOG_PREFIX "dump: "
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "restore/fd_int.h"
#include "restore/restore.h"
#include "restore/restore_int.h"

/* "127.0.0.1:80" or "[::1]:80"; "" for a family without ports. */
static void sock_addr(const struct sockaddr_storage *a, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	buf[0] = '\0';
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)a;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	}
}

/* "TCP", "UDPv6", "netlink", ... for a socket of @dom, @type, @proto. */
static void sock_name(int dom, int type, int proto, char *buf, size_t len)
{
	const char *v6 = dom == AF_INET6 ? "v6" : "";

	if ((dom == AF_INET || dom == AF_INET6) && type == SOCK_STREAM &&
	    (proto == IPPROTO_TCP || proto == 0))
		snprintf(buf, len, "TCP%s", v6);
	else if ((dom == AF_INET || dom == AF_INET6) && type == SOCK_DGRAM &&
		 (proto == IPPROTO_UDP || proto == 0))
		snprintf(buf, len, "UDP%s", v6);
	else if (dom == AF_INET || dom == AF_INET6)
		snprintf(buf, len, "IP%s socket (type %d, protocol %d)", v6, type, proto);
	else if (dom == AF_UNIX)
		snprintf(buf, len, "unix socket (type %d)", type);
	else if (dom == AF_NETLINK)
		snprintf(buf, len, "netlink socket (protocol %d)", proto);
	else if (dom == AF_PACKET)
		snprintf(buf, len, "packet socket (type %d)", type);
	else
		snprintf(buf, len, "socket of family %d (type %d, protocol %d)", dom, type, proto);
}

/* Family, type and protocol of socket @sfd, and the words that name it, into @desc. */
static int sock_describe_fd(int sfd, int *family, char *desc, size_t len)
{
	struct sockaddr_storage me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer), ol = sizeof(int);
	int dom, type, proto = 0, acc = 0;
	char name[96], local[64], remote[64];

	if (getsockopt(sfd, SOL_SOCKET, SO_DOMAIN, &dom, &ol) < 0)
		return -errno;
	ol = sizeof(int);
	if (getsockopt(sfd, SOL_SOCKET, SO_TYPE, &type, &ol) < 0)
		return -errno;
	ol = sizeof(int);
	getsockopt(sfd, SOL_SOCKET, SO_PROTOCOL, &proto, &ol);
	ol = sizeof(int);
	getsockopt(sfd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &ol);
	*family = dom;
	sock_name(dom, type, proto, name, sizeof(name));
	memset(&me, 0, sizeof(me));
	memset(&peer, 0, sizeof(peer));
	local[0] = remote[0] = '\0';
	if (getsockname(sfd, (struct sockaddr *)&me, &ml) == 0)
		sock_addr(&me, local, sizeof(local));
	if (getpeername(sfd, (struct sockaddr *)&peer, &pl) == 0)
		sock_addr(&peer, remote, sizeof(remote));
	snprintf(desc, len, "%s%s%s%s%s%s", name, local[0] ? " " : "", local,
		 remote[0] ? " connected to " : "", remote, acc ? " listening" : "");
	return 0;
}

int rst_sock_describe(pid_t pid, int fd, int *family, char *desc, size_t len)
{
	int pidfd, sfd, ret;

	pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return -errno;
	sfd = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	ret = sfd < 0 ? -errno : 0;
	close(pidfd);
	/* EBADF: the fd was closed since it was listed. */
	if (ret == -EBADF)
		return -ENOENT;
	if (ret)
		return ret;
	ret = sock_describe_fd(sfd, family, desc, len);
	close(sfd);
	return ret;
}

int rst_sock_refuse_filter(pid_t pid, int fd, char *why, size_t wl)
{
	socklen_t n = 0;
	char desc[256];
	int family, sfd = rst_fd_copy(pid, fd), got;

	if (sfd < 0)
		return 0; /* closed since: the dump sees it again */
	got = getsockopt(sfd, SOL_SOCKET, SO_GET_FILTER, NULL, &n);
	close(sfd);
	if ((got < 0 && errno != EACCES) || (!got && !n))
		return 0;
	if (rst_sock_describe(pid, fd, &family, desc, sizeof(desc)))
		snprintf(desc, sizeof(desc), "unix socket");
	snprintf(why, wl,
		 "fd %d: %s has a socket filter (SO_ATTACH_FILTER or SO_ATTACH_BPF); haul carries "
		 "the filters of TCP and UDP sockets only: detach it (SO_DETACH_FILTER) first",
		 fd, desc);
	return -EOPNOTSUPP;
}
