/*
 * addrmove.c - the service address that moves with the process
 * (--move-address ADDR/PREFIX): found, removed, added and announced with
 * rtnetlink and raw packets, no tool run.
 *
 * The source finds the interface that holds ADDR/PREFIX before anything
 * is touched (and remembers it: a rollback puts the address back there),
 * removes it after the freeze; the target picks the interface whose own
 * address covers the prefix, adds ADDR there before the sockets are
 * restored (IPv6 with IFA_F_NODAD: duplicate address detection would keep
 * it unusable for a second or more), and announces it: a gratuitous ARP
 * request and reply (IPv4), or an unsolicited neighbour advertisement with
 * the override flag to ff02::1 (IPv6), so that the neighbours' caches
 * point at the target's link-layer address at once.
 */
#define LOG_PREFIX "address: "
#include <arpa/inet.h>
#include <errno.h>
#include <net/if_arp.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/netlock.h"

/* ---- rtnetlink ------------------------------------------------------------- */

struct nl_req {
	struct nlmsghdr h;
	struct ifaddrmsg ifa;
	char attrs[128];
};

static void nl_attr(struct nl_req *r, int type, const void *data, size_t len)
{
	struct rtattr *a = (struct rtattr *)((char *)r + NLMSG_ALIGN(r->h.nlmsg_len));

	a->rta_type = type;
	a->rta_len = RTA_LENGTH(len);
	memcpy(RTA_DATA(a), data, len);
	r->h.nlmsg_len = NLMSG_ALIGN(r->h.nlmsg_len) + RTA_ALIGN(a->rta_len);
}

/* Send one request and read its ack: 0 or the kernel's -errno. */
static int nl_talk(struct nl_req *r)
{
	char buf[4096] __attribute__((aligned(8)));
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), ret;
	ssize_t len;

	if (fd < 0)
		return -errno;
	if (send(fd, r, r->h.nlmsg_len, 0) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	len = recv(fd, buf, sizeof(buf), 0);
	ret = len < 0 ? -errno : -EPROTO;
	for (struct nlmsghdr *h = (struct nlmsghdr *)buf; len > 0 && NLMSG_OK(h, (size_t)len);
	     h = NLMSG_NEXT(h, len))
		if (h->nlmsg_type == NLMSG_ERROR) {
			ret = ((struct nlmsgerr *)NLMSG_DATA(h))->error;
			break;
		}
	close(fd);
	return ret;
}

static int addr_change(const struct haul_net_addr *a, int type, int flags)
{
	struct nl_req r = {
		.h = {.nlmsg_len = NLMSG_LENGTH(sizeof(struct ifaddrmsg)),
		      .nlmsg_type = type,
		      .nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | flags},
		.ifa = {.ifa_family = a->family,
			.ifa_prefixlen = a->prefix,
			.ifa_scope = RT_SCOPE_UNIVERSE,
			.ifa_index = a->ifindex},
	};
	size_t alen = a->family == AF_INET ? 4 : 16;

	if (a->family == AF_INET)
		nl_attr(&r, IFA_LOCAL, a->addr, alen);
	nl_attr(&r, IFA_ADDRESS, a->addr, alen);
	if (a->family == AF_INET6 && type == RTM_NEWADDR) {
		uint32_t f = IFA_F_NODAD;

		r.ifa.ifa_flags = IFA_F_NODAD;
		nl_attr(&r, IFA_FLAGS, &f, sizeof(f));
	}
	return nl_talk(&r);
}

int haul_addr_add(const struct haul_net_addr *a)
{
	char s[64];
	int ret = addr_change(a, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);

	if (ret == -EEXIST)
		return 0;
	if (ret) {
		haul_net_addr_str(a->family, a->addr, a->prefix, s, sizeof(s));
		pr_err_r(ret, "cannot add %s to %s", s, a->ifname);
	}
	return ret;
}

int haul_addr_del(const struct haul_net_addr *a)
{
	char s[64];
	int ret = addr_change(a, RTM_DELADDR, 0);

	if (ret == -EADDRNOTAVAIL || ret == -ENODEV)
		return 0;
	if (ret) {
		haul_net_addr_str(a->family, a->addr, a->prefix, s, sizeof(s));
		pr_err_r(ret, "cannot remove %s from %s", s, a->ifname);
	}
	return ret;
}

/* Every address (RTM_GETADDR dump), with its interface. */
int haul_addr_list(struct haul_net_addr **out, size_t *n)
{
	struct {
		struct nlmsghdr h;
		struct ifaddrmsg ifa;
	} req = {.h = {.nlmsg_len = sizeof(req),
		       .nlmsg_type = RTM_GETADDR,
		       .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP}};
	static char buf[32768] __attribute__((aligned(8)));
	int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE), ret = 0;
	size_t cap = 0;
	bool done = false;

	*out = NULL;
	*n = 0;
	if (fd < 0)
		return -errno;
	if (send(fd, &req, sizeof(req), 0) < 0)
		ret = -errno;
	while (!ret && !done) {
		ssize_t len = recv(fd, buf, sizeof(buf), 0);

		if (len < 0) {
			ret = -errno;
			break;
		}
		for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)len);
		     h = NLMSG_NEXT(h, len)) {
			struct ifaddrmsg *ifa = NLMSG_DATA(h);
			struct rtattr *rta = IFA_RTA(ifa);
			int rl = IFA_PAYLOAD(h);
			const void *addr = NULL, *local = NULL;
			struct haul_net_addr *a;

			if (h->nlmsg_type == NLMSG_DONE) {
				done = true;
				break;
			}
			if (h->nlmsg_type == NLMSG_ERROR) {
				ret = ((struct nlmsgerr *)NLMSG_DATA(h))->error ?: -EPROTO;
				break;
			}
			if (h->nlmsg_type != RTM_NEWADDR ||
			    (ifa->ifa_family != AF_INET && ifa->ifa_family != AF_INET6))
				continue;
			for (; RTA_OK(rta, rl); rta = RTA_NEXT(rta, rl))
				if (rta->rta_type == IFA_ADDRESS)
					addr = RTA_DATA(rta);
				else if (rta->rta_type == IFA_LOCAL)
					local = RTA_DATA(rta);
			if (local) /* IPv4 point-to-point: IFA_ADDRESS is the peer */
				addr = local;
			if (!addr)
				continue;
			if (*n == cap) {
				struct haul_net_addr *nv =
					realloc(*out, (cap = cap ? cap * 2 : 16) * sizeof(*nv));

				if (!nv) {
					ret = -ENOMEM;
					break;
				}
				*out = nv;
			}
			a = &(*out)[(*n)++];
			memset(a, 0, sizeof(*a));
			a->family = ifa->ifa_family;
			a->prefix = ifa->ifa_prefixlen;
			a->ifindex = ifa->ifa_index;
			memcpy(a->addr, addr, a->family == AF_INET ? 4 : 16);
			if (!if_indextoname(a->ifindex, a->ifname))
				snprintf(a->ifname, sizeof(a->ifname), "if%d", a->ifindex);
		}
	}
	close(fd);
	if (ret) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return ret;
}

static int find(struct haul_net_addr *a, bool subnet)
{
	struct haul_net_addr *v;
	size_t n, len = a->family == AF_INET ? 4 : 16;
	int ret = haul_addr_list(&v, &n);

	if (ret)
		return ret;
	ret = subnet ? -ENETUNREACH : -EADDRNOTAVAIL;
	for (size_t i = 0; i < n; i++) {
		if (v[i].family != a->family)
			continue;
		if (subnet ? v[i].prefix <= a->prefix &&
				     haul_net_covers(a->family, v[i].addr, v[i].prefix, a->addr)
			   : !memcmp(v[i].addr, a->addr, len) && v[i].prefix == a->prefix) {
			a->ifindex = v[i].ifindex;
			memcpy(a->ifname, v[i].ifname, sizeof(a->ifname));
			ret = 0;
			break;
		}
	}
	free(v);
	return ret;
}

int haul_addr_find(struct haul_net_addr *a)
{
	return find(a, false);
}

int haul_addr_find_subnet(struct haul_net_addr *a)
{
	return find(a, true);
}

/* ---- the announcement -------------------------------------------------------- */

/* @a's interface's MAC; -ENODATA when it has none (loopback, a tunnel): nothing to announce. */
static int if_mac(const struct haul_net_addr *a, uint8_t mac[ETH_ALEN])
{
	struct ifreq ifr = {0};
	int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (fd < 0)
		return -errno;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", a->ifname);
	if (ioctl(fd, SIOCGIFFLAGS, &ifr))
		ret = -errno;
	else if (ifr.ifr_flags & (IFF_NOARP | IFF_LOOPBACK))
		ret = -ENODATA;
	else if (ioctl(fd, SIOCGIFHWADDR, &ifr))
		ret = -errno;
	else if (ifr.ifr_hwaddr.sa_family != ARPHRD_ETHER)
		ret = -ENODATA;
	else
		memcpy(mac, ifr.ifr_hwaddr.sa_data, ETH_ALEN);
	close(fd);
	return ret;
}

struct arp_pkt {
	struct arphdr h;
	uint8_t sha[ETH_ALEN], spa[4], tha[ETH_ALEN], tpa[4];
} __attribute__((packed));

static int garp(const struct haul_net_addr *a, const uint8_t mac[ETH_ALEN])
{
	struct sockaddr_ll to = {.sll_family = AF_PACKET,
				 .sll_protocol = htons(ETH_P_ARP),
				 .sll_ifindex = a->ifindex,
				 .sll_halen = ETH_ALEN};
	struct arp_pkt p = {.h = {.ar_hrd = htons(ARPHRD_ETHER),
				  .ar_pro = htons(ETH_P_IP),
				  .ar_hln = ETH_ALEN,
				  .ar_pln = 4}};
	int fd = socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP)), ret = 0;

	if (fd < 0)
		return -errno;
	memset(to.sll_addr, 0xff, ETH_ALEN);
	memcpy(p.sha, mac, ETH_ALEN);
	memcpy(p.spa, a->addr, 4);
	memcpy(p.tpa, a->addr, 4);
	/* a request (who-has ADDR, tell ADDR), then a reply: hosts heed one or the other */
	p.h.ar_op = htons(ARPOP_REQUEST);
	if (sendto(fd, &p, sizeof(p), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		ret = -errno;
	p.h.ar_op = htons(ARPOP_REPLY);
	memset(p.tha, 0xff, ETH_ALEN);
	if (!ret && sendto(fd, &p, sizeof(p), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		ret = -errno;
	haul_close_later(fd); /* a packet socket's close waits for a grace period */
	return ret;
}

static int unsolicited_na(const struct haul_net_addr *a, const uint8_t mac[ETH_ALEN])
{
	struct {
		struct nd_neighbor_advert na;
		struct nd_opt_hdr opt;
		uint8_t mac[ETH_ALEN];
	} __attribute__((packed)) p = {0};
	struct sockaddr_in6 to = {.sin6_family = AF_INET6, .sin6_scope_id = a->ifindex};
	int fd = socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6), ret = 0, hops = 255;
	unsigned ifindex = a->ifindex;

	if (fd < 0)
		return -errno;
	inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
	p.na.nd_na_type = ND_NEIGHBOR_ADVERT;
	p.na.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
	memcpy(&p.na.nd_na_target, a->addr, 16);
	p.opt.nd_opt_type = ND_OPT_TARGET_LINKADDR;
	p.opt.nd_opt_len = 1; /* units of 8 bytes: the header and the MAC */
	memcpy(p.mac, mac, ETH_ALEN);
	/* receivers drop neighbour discovery whose hop limit is not 255 (RFC 4861) */
	if (setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) ||
	    setsockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, &ifindex, sizeof(ifindex)) ||
	    sendto(fd, &p, sizeof(p), 0, (struct sockaddr *)&to, sizeof(to)) < 0)
		ret = -errno; /* the kernel fills in the ICMPv6 checksum */
	close(fd);
	return ret;
}

int haul_addr_announce(const struct haul_net_addr *a)
{
	uint8_t mac[ETH_ALEN];
	char s[64];
	int ret = if_mac(a, mac);

	if (ret == -ENODATA)
		return 0; /* no link layer, no neighbours' caches to update */
	if (!ret)
		ret = a->family == AF_INET ? garp(a, mac) : unsolicited_na(a, mac);
	if (ret) {
		haul_net_addr_str(a->family, a->addr, -1, s, sizeof(s));
		pr_warn_r(ret,
			  "cannot announce %s on %s (neighbours learn it when their cache entry "
			  "expires)",
			  s, a->ifname);
	}
	return ret;
}
