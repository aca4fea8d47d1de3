/*
 * fd_udp.c - a UDP socket, IPv4 or IPv6, bound and/or connected, with its
 * options.
 *
 * Dump: the common part (fd_inet.c).  Datagrams queued for the program at
 * the freeze are not carried: UDP promises no delivery, and the network
 * drops datagrams the same way (a full socket buffer, a lost packet).  Their
 * memory (SO_MEMINFO's receive allocation) is recorded in `dropped` and
 * logged by fd; tests/integration/net_udp.c measures how many a freeze
 * drops.  A shutdown (a write refused with EPIPE, reads that end) shows
 * only in inet_diag's INET_DIAG_SHUTDOWN (fd_inet_diag.c: one dump of the
 * namespace's UDP sockets of the family per process dump); a socket never
 * bound is in no table it walks, and for it poll() tells a read shutdown
 * (POLLRDHUP; POLLHUP: both), not a write-only one.
 * Restore: socket, the options bind depends on, bind, connect (a
 * UDP connect only sets the default peer and filters what arrives), the
 * shutdown, the other options and buffer sizes.
 */
#define LOG_PREFIX "sock: "
#include <errno.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_inet.h"
#include "restore/target_int.h"

static bool udp_match(const struct rst_fd_probe *p)
{
	struct rst_inet_id id;

	return rst_inet_probe(p, &id) && id.type == SOCK_DGRAM &&
	       (id.protocol == IPPROTO_UDP || id.protocol == 0);
}

static int udp_dump_shutdown(int sfd, Haul__Img__InetSocket *s)
{
	int how = 0, ret = rst_inet_diag_find(sfd, (int)s->family, IPPROTO_UDP, ~0U, &how);

	if (ret < 0)
		return ret;
	if (!ret) {
		/* never bound: in no table inet_diag walks; poll shows a read shutdown */
		struct pollfd pf = {sfd, POLLRDHUP, 0};

		how = 0;
		if (poll(&pf, 1, 0) == 1)
			how = (pf.revents & POLLHUP) ? 3 : (pf.revents & POLLRDHUP) ? 1 : 0;
	}
	if (how > 0) {
		s->has_shutdown = true;
		s->shutdown = (uint32_t)how & 3;
	}
	return 0;
}

static int udp_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		    Haul__Img__FileObject *const *prev, size_t nprev)
{
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t l = sizeof(mem);
	int sfd, ret;

	(void)prev;
	(void)nprev;
	sfd = rst_inet_dump_probe(p, o);
	if (sfd < 0)
		return sfd;
	ret = udp_dump_shutdown(sfd, o->inet);
	if (ret) {
		close(sfd);
		return ret;
	}
	memset(mem, 0, sizeof(mem));
	if (getsockopt(sfd, SOL_SOCKET, SO_MEMINFO, mem, &l) == 0 && mem[SK_MEMINFO_RMEM_ALLOC]) {
		char name[160];

		o->inet->has_dropped = true;
		o->inet->dropped = mem[SK_MEMINFO_RMEM_ALLOC];
		rst_inet_name(o->inet, name, sizeof(name));
		pr_info("fd %d of pid %d: %s has datagrams queued (%u bytes of buffer); they are "
			"not carried, as a network may drop datagrams",
			p->fd, (int)p->pid, name, o->inet->dropped);
	}
	close(sfd);
	return 0;
}

const struct rst_fd_ops rst_fd_udp = {
	.name = "UDP socket",
	.kind = HAUL__IMG__FD_KIND__FD_UDP,
	.version = 6, /* 6: SO_RCVTIMEO, SO_SNDTIMEO (sock_timeo.c) */
	.match = udp_match,
	.refuse = rst_inet_refuse,
	.validate = rst_inet_validate,
	.dump = udp_dump,
	.restore = rst_inet_restore,
	.setup = rst_fd_set_nonblock,
};
