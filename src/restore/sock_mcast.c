/*
 * sock_mcast.c - the multicast groups a UDP socket joined (IP_ADD_MEMBERSHIP,
 * MCAST_JOIN_GROUP, with their source filters).  A socket restored without
 * them receives nothing of its groups: a service-discovery daemon or a
 * market-data feed goes deaf, silently.
 *
 * No call lists a socket's groups, so the dump takes every group some
 * socket of the process's network namespace joined (/proc/PID/net/igmp,
 * igmp6: interface and group) and asks the socket about each with
 * getsockopt(MCAST_MSFILTER): EADDRNOTAVAIL says it did not join it, an
 * answer gives its filter mode and sources (at most MC_MAX_SOURCES).  The
 * restore joins each again (MCAST_JOIN_GROUP, the interface's index looked
 * up by name with SIOCGIFINDEX on the socket itself, so in its namespace)
 * and sets the filter when it is not "any source".  An interface the target
 * lacks by name is the one that holds the socket's IPv4 address there (the
 * address moved with the process); without one either, the restore fails
 * naming interface and group.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "common/log.h"
#include "restore/fd_inet.h"

#define MC_MAX_SOURCES 64
#define MC_MAX_GROUPS  256

/* A group some socket of the namespace joined: interface and group address. */
struct mc_seen {
	int ifindex;
	char ifname[IFNAMSIZ];
	uint8_t group[16];
};

/* Parse /proc/PID/net/igmp (@v6 false) or igmp6 into @out (at most @cap); the count, or -errno. */
static int seen_groups(pid_t pid, bool v6, struct mc_seen *out, size_t cap)
{
	char path[64], line[256], name[IFNAMSIZ] = "";
	int idx = 0;
	size_t n = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/net/%s", (int)pid, v6 ? "igmp6" : "igmp");
	f = fopen(path, "r");
	if (!f)
		return errno == ENOENT ? 0 : -errno; /* no IPv6, or no multicast at all */
	while (fgets(line, sizeof(line), f) && n < cap) {
		char hex[40];
		unsigned v4;

		if (v6) {
			if (sscanf(line, "%d %15s %32s", &idx, name, hex) != 3 || strlen(hex) != 32)
				continue;
			out[n].ifindex = idx;
			snprintf(out[n].ifname, IFNAMSIZ, "%s", name);
			for (int i = 0; i < 16; i++)
				sscanf(hex + 2 * i, "%2hhx", &out[n].group[i]);
			n++;
		} else if (line[0] >= '0' && line[0] <= '9') {
			if (sscanf(line, "%d %15[^ :\t]", &idx, name) != 2)
				idx = 0;
		} else if (idx && sscanf(line, " %8x", &v4) == 1) {
			out[n].ifindex = idx;
			snprintf(out[n].ifname, IFNAMSIZ, "%s", name);
			memcpy(out[n].group, &v4, 4); /* printed as the __be32 it is in memory */
			n++;
		}
	}
	fclose(f);
	return (int)n;
}

static void group_addr(int family, const uint8_t *a, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	ss->ss_family = (sa_family_t)family;
	if (family == AF_INET)
		memcpy(&((struct sockaddr_in *)ss)->sin_addr, a, 4);
	else
		memcpy(&((struct sockaddr_in6 *)ss)->sin6_addr, a, 16);
}

static const uint8_t *addr_of(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET
		       ? (const uint8_t *)&((const struct sockaddr_in *)ss)->sin_addr
		       : (const uint8_t *)&((const struct sockaddr_in6 *)ss)->sin6_addr;
}

/* Group @g as socket @sfd joined it, into a new McGroup; NULL when it did not (or no memory). */
static Haul__Img__McGroup *probe(int sfd, int family, const struct mc_seen *g, int *err)
{
	size_t alen = family == AF_INET ? 4 : 16;
	socklen_t len = GROUP_FILTER_SIZE(MC_MAX_SOURCES);
	struct group_filter *gf = calloc(1, len);
	Haul__Img__McGroup *m = NULL;

	*err = gf ? 0 : -ENOMEM;
	if (!gf)
		return NULL;
	gf->gf_interface = (uint32_t)g->ifindex;
	group_addr(family, g->group, &gf->gf_group);
	gf->gf_numsrc = MC_MAX_SOURCES;
	if (getsockopt(sfd, family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6, MCAST_MSFILTER, gf,
		       &len) < 0) {
		*err = errno == EADDRNOTAVAIL || errno == EINVAL || errno == ENODEV ? 0 : -errno;
		free(gf);
		return NULL;
	}
	if (gf->gf_numsrc > MC_MAX_SOURCES) {
		pr_err("multicast group on %s has %u sources in its filter; haul carries %d",
		       g->ifname, gf->gf_numsrc, MC_MAX_SOURCES);
		*err = -E2BIG;
		free(gf);
		return NULL;
	}
	m = calloc(1, sizeof(*m));
	if (m) {
		haul__img__mc_group__init(m);
		m->ifname = strdup(g->ifname);
		m->group.data = malloc(alen);
		m->group.len = alen;
		m->has_fmode = true;
		m->fmode = gf->gf_fmode;
		m->n_sources = gf->gf_numsrc < MC_MAX_SOURCES ? gf->gf_numsrc : MC_MAX_SOURCES;
		m->sources = calloc(m->n_sources + 1, sizeof(*m->sources));
	}
	if (!m || !m->ifname || !m->group.data || !m->sources) {
		if (m)
			haul__img__mc_group__free_unpacked(m, NULL);
		*err = -ENOMEM;
		free(gf);
		return NULL;
	}
	memcpy(m->group.data, g->group, alen);
	for (size_t i = 0; i < m->n_sources; i++) {
		m->sources[i].data = malloc(alen);
		m->sources[i].len = m->sources[i].data ? alen : 0;
		if (m->sources[i].data)
			memcpy(m->sources[i].data, addr_of(&gf->gf_slist[i]), alen);
	}
	free(gf);
	return m;
}

/* The groups of the process being dumped, per family (v6 1), until rst_mcast_forget. */
static __thread struct {
	pid_t pid; /* 0: not read */
	int n;
	struct mc_seen g[MC_MAX_GROUPS];
} seen_of[2];

void rst_mcast_forget(void)
{
	seen_of[0].pid = seen_of[1].pid = 0;
}

/* The groups of @pid's namespace, read once per process dump and family (its UDP sockets ask). */
static int seen_cached(pid_t pid, bool v6, const struct mc_seen **out)
{
	int k = v6;

	if (seen_of[k].pid != pid) {
		seen_of[k].n = seen_groups(pid, v6, seen_of[k].g, MC_MAX_GROUPS);
		seen_of[k].pid = seen_of[k].n < 0 ? 0 : pid;
	}
	*out = seen_of[k].g;
	return seen_of[k].n;
}

int rst_mcast_dump(pid_t pid, int sfd, Haul__Img__InetSocket *s)
{
	const struct mc_seen *seen;
	int n, err = 0;

	n = seen_cached(pid, s->family == AF_INET6, &seen);
	if (n > 0)
		s->mc = calloc((size_t)n, sizeof(*s->mc));
	for (int i = 0; n > 0 && s->mc && i < n && !err; i++) {
		Haul__Img__McGroup *m = probe(sfd, s->family, &seen[i], &err);

		if (m)
			s->mc[s->n_mc++] = m;
	}
	if (n < 0)
		return n;
	return n > 0 && !s->mc ? -ENOMEM : err;
}

/*
 * The index of the interface that holds @s's local IPv4 address in @sfd's
 * namespace (its name may differ on another host: the address moved with
 * the process), into @ifr; -ENODEV when none does.
 */
static int iface_of_addr(int sfd, const Haul__Img__InetSocket *s, struct ifreq *ifr)
{
	struct ifreq r[64];
	struct ifconf ic = {.ifc_len = sizeof(r), .ifc_req = r};

	if (s->family != AF_INET || !s->has_local_addr || s->local_addr.len != 4 ||
	    ioctl(sfd, SIOCGIFCONF, &ic) < 0)
		return -ENODEV;
	for (size_t i = 0; i < ic.ifc_len / sizeof(r[0]); i++) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)&r[i].ifr_addr;

		if (a->sin_family != AF_INET || memcmp(&a->sin_addr, s->local_addr.data, 4) ||
		    !a->sin_addr.s_addr)
			continue;
		snprintf(ifr->ifr_name, IFNAMSIZ, "%.*s", IFNAMSIZ - 1, r[i].ifr_name);
		return ioctl(sfd, SIOCGIFINDEX, ifr) < 0 ? -errno : 0;
	}
	return -ENODEV;
}

int rst_mcast_restore(int sfd, const Haul__Img__InetSocket *s, char *why, size_t wl)
{
	int level = s->family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;

	for (size_t i = 0; i < s->n_mc; i++) {
		const Haul__Img__McGroup *m = s->mc[i];
		struct ifreq ifr = {0};
		struct group_req gr = {0};
		char g[INET6_ADDRSTRLEN] = "?";

		inet_ntop(s->family, m->group.data, g, sizeof(g));
		snprintf(ifr.ifr_name, IFNAMSIZ, "%s", m->ifname);
		if (ioctl(sfd, SIOCGIFINDEX, &ifr) < 0 && iface_of_addr(sfd, s, &ifr) < 0) {
			snprintf(why, wl,
				 "multicast group %s: no interface %s here, nor one with the "
				 "socket's address",
				 g, m->ifname);
			return -ENODEV;
		}
		if (strcmp(ifr.ifr_name, m->ifname))
			pr_info("multicast group %s joined on %s, which has the socket's address "
				"here (%s on the source)",
				g, ifr.ifr_name, m->ifname);
		gr.gr_interface = (uint32_t)ifr.ifr_ifindex;
		group_addr(s->family, m->group.data, &gr.gr_group);
		if (setsockopt(sfd, level, MCAST_JOIN_GROUP, &gr, sizeof(gr)) < 0) {
			snprintf(why, wl, "cannot join multicast group %s on %s: %s", g, m->ifname,
				 strerror(errno));
			return -errno;
		}
		if (m->fmode == MCAST_EXCLUDE && !m->n_sources)
			continue; /* any source: what the join made */
		{
			socklen_t len = GROUP_FILTER_SIZE(m->n_sources);
			struct group_filter *gf = calloc(1, len);
			int ret = 0;

			if (!gf)
				return -ENOMEM;
			gf->gf_interface = gr.gr_interface;
			gf->gf_group = gr.gr_group;
			gf->gf_fmode = m->fmode;
			gf->gf_numsrc = (uint32_t)m->n_sources;
			for (size_t k = 0; k < m->n_sources; k++)
				group_addr(s->family, m->sources[k].data, &gf->gf_slist[k]);
			if (setsockopt(sfd, level, MCAST_MSFILTER, gf, len) < 0) {
				ret = -errno;
				snprintf(why, wl,
					 "cannot set the source filter of group %s on %s: %s", g,
					 m->ifname, strerror(errno));
			}
			free(gf);
			if (ret)
				return ret;
		}
	}
	return 0;
}

int rst_mcast_valid(const Haul__Img__InetSocket *s)
{
	size_t alen = s->family == AF_INET ? 4 : 16;

	if (s->n_mc && (s->type != SOCK_DGRAM || s->n_mc > MC_MAX_GROUPS))
		return -EBADMSG;
	for (size_t i = 0; i < s->n_mc; i++) {
		const Haul__Img__McGroup *m = s->mc[i];

		if (!m->ifname[0] || strlen(m->ifname) >= IFNAMSIZ || m->group.len != alen ||
		    m->fmode > 1 || m->n_sources > MC_MAX_SOURCES)
			return -EBADMSG;
		for (size_t k = 0; k < m->n_sources; k++)
			if (m->sources[k].len != alen)
				return -EBADMSG;
	}
	return 0;
}
