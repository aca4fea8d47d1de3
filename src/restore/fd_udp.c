/*
 * fd_udp.c - a UDP socket, IPv4 or IPv6, bound and/or connected, with its
 * options.
 *
 * Dump: the common part (fd_inet.c).  Datagrams queued for the program at
 * the freeze are not carried: UDP promises no delivery, and the network
 * drops datagrams the same way (a full socket buffer, a lost packet).  Their
 * memory (SO_MEMINFO's receive allocation) is recorded in `dropped` and
 * logged by fd; tests/integration/net_udp.c measures how many a freeze
 * drops.  Restore: socket, the options bind depends on, bind, connect (a
 * UDP connect only sets the default peer and filters what arrives), the
 * other options and buffer sizes.
 */
#define LOG_PREFIX "sock: "
#include <errno.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
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

static int udp_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		    Haul__Img__FileObject *const *prev, size_t nprev)
{
	uint32_t mem[SK_MEMINFO_VARS];
	socklen_t l = sizeof(mem);
	int sfd;

	(void)prev;
	(void)nprev;
	sfd = rst_inet_dump_probe(p, o);
	if (sfd < 0)
		return sfd;
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
	.version = 4,
	.match = udp_match,
	.refuse = rst_inet_refuse,
	.validate = rst_inet_validate,
	.dump = udp_dump,
	.restore = rst_inet_restore,
	.setup = rst_fd_set_nonblock,
};
