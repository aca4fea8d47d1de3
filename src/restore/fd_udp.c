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
 * only in inet_diag's INET_DIAG_SHUTDOWN: the socket's namespace is asked
 * once per process dump for its UDP sockets of the family, and each
 * socket's is looked up there by inode; a socket never bound is in no
 * table it walks, and for it poll() tells a read shutdown (POLLRDHUP;
 * POLLHUP: both), not a write-only one.
 * Restore: socket, the options bind depends on, bind, connect (a
 * UDP connect only sets the default peer and filters what arrives), the
 * shutdown, the other options and buffer sizes.
 */
#define LOG_PREFIX "sock: "
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/sockios.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/log.h"
#include "restore/fd_inet.h"
#include "restore/target_int.h"

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif

static bool udp_match(const struct rst_fd_probe *p)
{
	struct rst_inet_id id;

	return rst_inet_probe(p, &id) && id.type == SOCK_DGRAM &&
	       (id.protocol == IPPROTO_UDP || id.protocol == 0);
}

/*
 * What one inet_diag dump of a namespace's UDP sockets of one family said:
 * each socket's shutdown, by inode, sorted.  Kept for the rest of one
 * process's fds (rst_udp_shut_forget at the start and end of each
 * rst_dump_fds): its sockets are the frozen process's, and nothing else
 * shuts them down meanwhile.  One dump per namespace and family, not one
 * per socket.
 */
struct shut_ent {
	unsigned long ino;
	int how;
};

struct shut_dump {
	unsigned long long netns;
	int family;
	struct shut_ent *e;
	size_t n, cap;
};

static __thread struct shut_dump *dumps;
static __thread size_t ndumps, capdumps;

void rst_udp_shut_forget(void)
{
	for (size_t i = 0; i < ndumps; i++)
		free(dumps[i].e);
	ndumps = 0;
}

/* INET_DIAG_SHUTDOWN of @h's socket into @d. */
static int shut_of(const struct nlmsghdr *h, struct shut_dump *d)
{
	const struct inet_diag_msg *m = NLMSG_DATA(h);
	const struct rtattr *a = (const struct rtattr *)(m + 1);
	int left = (int)h->nlmsg_len - (int)NLMSG_LENGTH(sizeof(*m)), how = 0;

	if (left < 0)
		return 0;
	for (; RTA_OK(a, left); a = RTA_NEXT(a, left))
		if (a->rta_type == INET_DIAG_SHUTDOWN && RTA_PAYLOAD(a) >= 1)
			how = *(const uint8_t *)RTA_DATA(a);
	if (haul_grow(&d->e, &d->cap, d->n, sizeof(*d->e), 16))
		return -ENOMEM;
	d->e[d->n].ino = m->idiag_inode;
	d->e[d->n++].how = how;
	return 0;
}

/* In the socket's namespace: every UDP socket of @arg's family, into it. */
static int ask_shutdown(void *arg)
{
	static char buf[32768] __attribute__((aligned(8)));
	struct shut_dump *d = arg;
	struct {
		struct nlmsghdr h;
		struct inet_diag_req_v2 r;
	} req = {
		.h = {.nlmsg_len = sizeof(req),
		      .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		      .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
		.r = {.sdiag_family = (uint8_t)d->family,
		      .sdiag_protocol = IPPROTO_UDP,
		      .idiag_states = ~0U},
	};
	int nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG), ret = 0;

	if (nl < 0)
		return -errno;
	if (send(nl, &req, sizeof(req), 0) != sizeof(req))
		ret = -errno;
	while (!ret) {
		ssize_t len = recv(nl, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (len < 0) {
			ret = -errno;
			break;
		}
		for (; !ret && NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
			if (h->nlmsg_type == NLMSG_DONE)
				goto out;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				ret = e->error ? e->error : -EPROTO;
				break;
			}
			ret = shut_of(h, d);
		}
	}
out:
	close(nl);
	return ret;
}

static int ent_cmp(const void *a, const void *b)
{
	unsigned long x = ((const struct shut_ent *)a)->ino, y = ((const struct shut_ent *)b)->ino;

	return x < y ? -1 : x > y;
}

/* The inode of @sfd's network namespace. */
static int sock_netns(int sfd, unsigned long long *ino)
{
	struct stat st;
	int ns = ioctl(sfd, SIOCGSKNS), ret = 0;

	if (ns < 0)
		return -errno;
	if (fstat(ns, &st) < 0)
		ret = -errno;
	else
		*ino = (unsigned long long)st.st_ino;
	close(ns);
	return ret;
}

/* The dump of @sfd's namespace and @family: this process's earlier one, or a new one. */
static int shut_dump_of(int sfd, int family, const struct shut_dump **out)
{
	unsigned long long netns = 0;
	struct shut_dump *d;
	int ret = sock_netns(sfd, &netns);

	if (ret)
		return ret;
	for (size_t i = 0; i < ndumps; i++)
		if (dumps[i].netns == netns && dumps[i].family == family) {
			*out = &dumps[i];
			return 0;
		}
	if (haul_grow(&dumps, &capdumps, ndumps, sizeof(*dumps), 4))
		return -ENOMEM;
	d = &dumps[ndumps];
	*d = (struct shut_dump){.netns = netns, .family = family};
	ret = rst_inet_in_netns(sfd, ask_shutdown, d);
	if (ret) {
		free(d->e);
		return ret;
	}
	qsort(d->e, d->n, sizeof(*d->e), ent_cmp);
	ndumps++;
	*out = d;
	return 0;
}

static int udp_dump_shutdown(int sfd, Haul__Img__InetSocket *s)
{
	const struct shut_dump *d;
	const struct shut_ent *e;
	struct shut_ent key;
	struct stat st;
	int ret, how = -1;

	if (fstat(sfd, &st) < 0)
		return -errno;
	key.ino = (unsigned long)st.st_ino;
	ret = shut_dump_of(sfd, (int)s->family, &d);
	if (ret)
		return ret;
	e = d->n ? bsearch(&key, d->e, d->n, sizeof(*d->e), ent_cmp) : NULL;
	if (e)
		how = e->how;
	else {
		/* never bound: in no table inet_diag walks; poll shows a read shutdown */
		struct pollfd pf = {sfd, POLLRDHUP, 0};

		if (poll(&pf, 1, 0) == 1)
			how = (pf.revents & POLLHUP) ? 3 : (pf.revents & POLLRDHUP) ? 1 : 0;
	}
	if (how > 0) {
		s->has_shutdown = true;
		s->shutdown = (uint32_t)how & 3;
	}
	return 0;
}

int rst_udp_shutdown(int sfd, const Haul__Img__InetSocket *s)
{
	static const int how[] = {0, SHUT_RD, SHUT_WR, SHUT_RDWR};

	if (!s->has_shutdown || !s->shutdown || s->shutdown > 3)
		return 0;
	/* unconnected: ENOTCONN, but the kernel has marked it shut down all the same */
	if (shutdown(sfd, how[s->shutdown]) < 0 && errno != ENOTCONN)
		return -errno;
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
	.version = 5,
	.match = udp_match,
	.refuse = rst_inet_refuse,
	.validate = rst_inet_validate,
	.dump = udp_dump,
	.restore = rst_inet_restore,
	.setup = rst_fd_set_nonblock,
};
