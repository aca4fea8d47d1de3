/*
 * fd_inet_diag.c - what inet_diag says of a socket that only it tells: a
 * UDP socket's shutdown (fd_udp.c), whether a closed TCP socket is still
 * bound to its port (fd_tcp_closed.c).
 *
 * inet_diag answers in the socket's own network namespace (entered with
 * rst_inet_in_netns), for every socket of a family, protocol and set of
 * states at once.  One such dump is kept, sorted by inode, for the rest
 * of one process's fds (rst_inet_diag_forget at the start and end of each
 * rst_dump_fds): the sockets asked about are the frozen process's, and
 * nothing else changes them meanwhile.  So a process with many sockets
 * costs one dump per namespace, family, protocol and states, not one per
 * socket (each dump walks every socket of its kind on the host).
 */
#define LOG_PREFIX "sock: "
#include <errno.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/log.h"
#include "restore/fd_inet.h"

#ifndef SIOCGSKNS
#define SIOCGSKNS 0x894C
#endif

struct diag_ent {
	unsigned long ino;
	int how; /* INET_DIAG_SHUTDOWN, 0 when absent */
};

/* One dump: its key and what it listed. */
struct diag_dump {
	unsigned long long netns;
	int family, proto;
	uint32_t states;
	struct diag_ent *e;
	size_t n, cap;
};

static __thread struct diag_dump *dumps;
static __thread size_t ndumps, capdumps;

void rst_inet_diag_forget(void)
{
	for (size_t i = 0; i < ndumps; i++)
		free(dumps[i].e);
	ndumps = 0;
	rst_mcast_forget(); /* the multicast groups of the namespace too (sock_mcast.c) */
}

/* The inode and INET_DIAG_SHUTDOWN of @h's socket into @d. */
static int note(const struct nlmsghdr *h, struct diag_dump *d)
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

/* In the socket's namespace: every socket @arg asks for, into it. */
static int ask(void *arg)
{
	static char buf[32768] __attribute__((aligned(8)));
	struct diag_dump *d = arg;
	struct {
		struct nlmsghdr h;
		struct inet_diag_req_v2 r;
	} req = {
		.h = {.nlmsg_len = sizeof(req),
		      .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		      .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
		.r = {.sdiag_family = (uint8_t)d->family,
		      .sdiag_protocol = (uint8_t)d->proto,
		      .idiag_states = d->states},
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
			ret = note(h, d);
		}
	}
out:
	close(nl);
	return ret;
}

static int ent_cmp(const void *a, const void *b)
{
	unsigned long x = ((const struct diag_ent *)a)->ino, y = ((const struct diag_ent *)b)->ino;

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

/* The dump @sfd's namespace and the rest of the key need: this process's earlier one, or a new one. */
static int dump_of(int sfd, int family, int proto, uint32_t states, const struct diag_dump **out)
{
	unsigned long long netns = 0;
	struct diag_dump *d;
	int ret = sock_netns(sfd, &netns);

	if (ret)
		return ret;
	for (size_t i = 0; i < ndumps; i++)
		if (dumps[i].netns == netns && dumps[i].family == family &&
		    dumps[i].proto == proto && dumps[i].states == states) {
			*out = &dumps[i];
			return 0;
		}
	if (haul_grow(&dumps, &capdumps, ndumps, sizeof(*dumps), 4))
		return -ENOMEM;
	d = &dumps[ndumps];
	*d = (struct diag_dump){.netns = netns, .family = family, .proto = proto, .states = states};
	ret = rst_inet_in_netns(sfd, ask, d);
	if (ret) {
		free(d->e);
		return ret;
	}
	qsort(d->e, d->n, sizeof(*d->e), ent_cmp);
	ndumps++;
	*out = d;
	return 0;
}

int rst_inet_diag_find(int sfd, int family, int proto, uint32_t states, int *how)
{
	const struct diag_dump *d;
	const struct diag_ent *e;
	struct diag_ent key;
	struct stat st;
	int ret;

	if (fstat(sfd, &st) < 0)
		return -errno;
	key.ino = (unsigned long)st.st_ino;
	ret = dump_of(sfd, family, proto, states, &d);
	if (ret)
		return ret;
	e = d->n ? bsearch(&key, d->e, d->n, sizeof(*d->e), ent_cmp) : NULL;
	if (!e)
		return 0;
	*how = e->how;
	return 1;
}
