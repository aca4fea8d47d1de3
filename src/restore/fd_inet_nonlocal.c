/*
 * fd_inet_nonlocal.c - a socket bound to an address its network namespace
 * does not have: IP_FREEBIND (or IP_TRANSPARENT) allowed that bind, and
 * the program may have turned it off since, so the restore's bind of the
 * same address would fail (EADDRNOTAVAIL) after the checkpoint killed the
 * source.
 *
 * Dump: for a bound socket that is not a TCP connection (a connection binds
 * in repair mode beside its own address) and has neither option on now,
 * the kernel itself is asked: in the socket's network namespace
 * (SIOCGSKNS, setns of this thread and back) a datagram socket of the
 * family binds the address, port 0; EADDRNOTAVAIL marks it bound_nonlocal.
 * Restore: such a socket binds with IP_FREEBIND on (the flag IPV6_FREEBIND
 * sets too), which goes off right after the bind.  rst_inet_in_netns, the
 * setns round trip, serves what else only the socket's own namespace
 * tells (a UDP socket's shutdown, fd_udp.c).
 */
#define LOG_PREFIX "sock: "
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_inet.h"

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif

static bool option_on(int sfd, int level, int name)
{
	int v = 0;
	socklen_t l = sizeof(v);

	return getsockopt(sfd, level, name, &v, &l) == 0 && v;
}

int rst_inet_in_netns(int sfd, int (*fn)(void *arg), void *arg)
{
	int ns = ioctl(sfd, SIOCGSKNS), ret;

	if (ns < 0)
		return -errno;
	ret = rst_netns_run(ns, fn, arg);
	close(ns);
	return ret;
}

int rst_netns_run(int ns, int (*fn)(void *arg), void *arg)
{
	int self, ret;

	self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	if (self < 0 || setns(ns, CLONE_NEWNET) < 0) {
		ret = -errno;
		if (self >= 0)
			close(self);
		return ret;
	}
	ret = fn(arg);
	if (setns(self, CLONE_NEWNET) < 0) {
		/* this thread would dump the next socket in the wrong namespace */
		pr_err("cannot go back to haul's network namespace: %s", strerror(errno));
		ret = -errno;
	}
	close(self);
	return ret;
}

/* In the socket's namespace: 1 when @arg's local address does not bind there, else 0. */
static int lacks_address(void *arg)
{
	const Haul__Img__InetSocket *s = arg;
	struct sockaddr_storage a;
	socklen_t l = rst_inet_sockaddr(s->family, &s->local_addr, 0, s->local_scope, &a);
	int t = socket(s->family, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (t >= 0 && bind(t, (struct sockaddr *)&a, l) < 0 && errno == EADDRNOTAVAIL)
		ret = 1;
	if (t >= 0)
		close(t);
	return ret;
}

int rst_inet_dump_nonlocal(int sfd, Haul__Img__InetSocket *s)
{
	static const uint8_t any[16];
	size_t alen = s->family == AF_INET ? 4 : 16;
	int ret;

	if (!s->has_local_addr || s->local_addr.len != alen ||
	    !memcmp(s->local_addr.data, any, alen) || (s->type == SOCK_STREAM && s->has_peer_addr))
		return 0;
	if (option_on(sfd, SOL_IP, IP_FREEBIND) || option_on(sfd, SOL_IP, IP_TRANSPARENT) ||
	    (s->family == AF_INET6 && option_on(sfd, SOL_IPV6, IPV6_TRANSPARENT)))
		return 0;
	ret = rst_inet_in_netns(sfd, lacks_address, s);
	if (ret < 0)
		return ret;
	s->has_bound_nonlocal = s->bound_nonlocal = ret == 1;
	return 0;
}

int rst_inet_bind_nonlocal(int sfd, const Haul__Img__InetSocket *s, bool on)
{
	int v = on;

	if (!s->has_bound_nonlocal || !s->bound_nonlocal)
		return 0;
	return setsockopt(sfd, SOL_IP, IP_FREEBIND, &v, sizeof(v)) < 0 ? -errno : 0;
}
