/*
 * server_net.c - the target's part of the network switch on the wire: its
 * own addresses in SessionOk.addresses (getifaddrs, ADDR/PREFIX each), so
 * that the source can refuse before the freeze a socket whose local
 * address would be missing here; and Restore.lock read into ps_net_end
 * for the sink, each end checked (family, address length, ports) since it
 * comes from the peer.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pageserver/server_int.h"

static int prefix_len(const struct sockaddr *mask)
{
	const uint8_t *b;
	size_t len;
	int n = 0;

	if (!mask)
		return 0;
	b = mask->sa_family == AF_INET ? (const uint8_t *)&((struct sockaddr_in *)mask)->sin_addr
				       : (const uint8_t *)&((struct sockaddr_in6 *)mask)->sin6_addr;
	len = mask->sa_family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < len; i++)
		n += __builtin_popcount(b[i]);
	return n;
}

int ps_net_ok_addrs(Haul__Wire__SessionOk *ok, char ***strs)
{
	struct ifaddrs *ifa, *i;
	size_t n = 0, cap = 0;
	char **v = NULL;

	*strs = NULL;
	if (getifaddrs(&ifa))
		return -errno;
	for (i = ifa; i; i = i->ifa_next) {
		char a[INET6_ADDRSTRLEN], s[INET6_ADDRSTRLEN + 16];
		const void *p;
		int fam;

		if (!i->ifa_addr)
			continue;
		fam = i->ifa_addr->sa_family;
		if (fam != AF_INET && fam != AF_INET6)
			continue;
		p = fam == AF_INET ? (const void *)&((struct sockaddr_in *)i->ifa_addr)->sin_addr
				   : (const void *)&((struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
		inet_ntop(fam, p, a, sizeof(a));
		snprintf(s, sizeof(s), "%s/%d", a, prefix_len(i->ifa_netmask));
		if (n == cap) {
			char **nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv)
				break;
			v = nv;
		}
		v[n] = strdup(s);
		if (v[n])
			n++;
	}
	freeifaddrs(ifa);
	ok->n_addresses = n;
	ok->addresses = v;
	*strs = v;
	return 0;
}

void ps_net_ok_addrs_release(Haul__Wire__SessionOk *ok, char **strs)
{
	for (size_t i = 0; strs && i < ok->n_addresses; i++)
		free(strs[i]);
	free(strs);
	ok->n_addresses = 0;
	ok->addresses = NULL;
}

int ps_net_lock_ends(const Haul__Wire__Restore *r, struct ps_net_end **out, size_t *n, char *why,
		     size_t wl)
{
	struct ps_net_end *v;

	*out = NULL;
	*n = 0;
	if (!r->n_lock)
		return 0;
	if (r->n_lock > PS_MAX_LOCK_ENDS) {
		snprintf(why, wl, "Restore.lock names %zu ends (at most %d)", r->n_lock,
			 PS_MAX_LOCK_ENDS);
		return -EPROTO;
	}
	v = calloc(r->n_lock, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < r->n_lock; i++) {
		const Haul__Wire__NetEnd *e = r->lock[i];
		size_t len = e->family == 4 ? 4 : 16;

		if ((e->family != 4 && e->family != 6) || (e->proto != 6 && e->proto != 17) ||
		    e->laddr.len != len || (e->has_raddr && e->raddr.len != len) ||
		    e->lport > 65535 || (e->has_rport && e->rport > 65535) ||
		    (e->has_rport && e->rport && !e->has_raddr)) {
			snprintf(why, wl, "Restore.lock[%zu] is not a TCP/UDP socket end", i);
			free(v);
			return -EPROTO;
		}
		v[i].family = e->family == 4 ? AF_INET : AF_INET6;
		v[i].proto = e->proto == 6 ? IPPROTO_TCP : IPPROTO_UDP;
		memcpy(v[i].laddr, e->laddr.data, len);
		if (e->has_raddr)
			memcpy(v[i].raddr, e->raddr.data, len);
		v[i].lport = e->lport;
		v[i].rport = e->has_rport ? e->rport : 0;
	}
	*out = v;
	*n = r->n_lock;
	return 0;
}
