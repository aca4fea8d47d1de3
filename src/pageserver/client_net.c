/*
 * client_net.c - the source's part of the network switch on the wire:
 * the target's addresses from SessionOk.addresses (the source checks
 * before the freeze that every socket's local address will exist there),
 * and the socket ends of the network lock in Restore.lock (the target
 * drops their packets until the restored process runs), and the address
 * the session runs from (a moving address must not be it).  The moving
 * addresses themselves go out with SessionOpen (client.c).
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "pageserver/client_int.h"

int ps_client_net_keep_addrs(struct ps_client *c, const Haul__Wire__SessionOk *ok)
{
	if (!ok->n_addresses)
		return 0;
	c->taddrs = calloc(ok->n_addresses, sizeof(*c->taddrs));
	if (!c->taddrs)
		return -ENOMEM;
	for (size_t i = 0; i < ok->n_addresses; i++) {
		c->taddrs[i] = strdup(ok->addresses[i]);
		if (!c->taddrs[i])
			return -ENOMEM;
		c->ntaddrs++;
	}
	return 0;
}

int ps_client_local_addr(const struct ps_client *c, struct sockaddr_storage *ss)
{
	socklen_t len = sizeof(*ss);

	memset(ss, 0, sizeof(*ss));
	if (!c->st || c->st[0].fd < 0)
		return -ENOTCONN;
	if (getsockname(c->st[0].fd, (struct sockaddr *)ss, &len))
		return -errno;
	return 0;
}

size_t ps_client_target_addrs(const struct ps_client *c, const char *const **out)
{
	*out = (const char *const *)c->taddrs;
	return c->ntaddrs;
}

int ps_client_set_lock(struct ps_client *c, const struct ps_net_end *e, size_t n)
{
	struct ps_net_end *copy = NULL;

	if (n) {
		copy = calloc(n, sizeof(*copy));
		if (!copy)
			return -ENOMEM;
		memcpy(copy, e, n * sizeof(*e));
	}
	free(c->lock);
	c->lock = copy;
	c->nlock = n;
	return 0;
}

struct lock_msg {
	Haul__Wire__NetEnd *v;
	Haul__Wire__NetEnd **p;
};

int ps_client_net_lock_msg(struct ps_client *c, Haul__Wire__Restore *r, void **ends)
{
	struct lock_msg *m;

	*ends = NULL;
	if (!c->nlock)
		return 0;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->v = calloc(c->nlock, sizeof(*m->v));
	m->p = calloc(c->nlock, sizeof(*m->p));
	if (!m->v || !m->p) {
		ps_client_net_lock_release(m);
		return -ENOMEM;
	}
	for (size_t i = 0; i < c->nlock; i++) {
		const struct ps_net_end *e = &c->lock[i];
		size_t len = e->family == AF_INET ? 4 : 16;

		haul__wire__net_end__init(&m->v[i]);
		m->v[i].family = e->family == AF_INET ? 4 : 6;
		m->v[i].proto = e->proto;
		m->v[i].laddr = (ProtobufCBinaryData){len, (uint8_t *)e->laddr};
		m->v[i].lport = e->lport;
		if (e->rport) {
			m->v[i].has_raddr = true;
			m->v[i].raddr = (ProtobufCBinaryData){len, (uint8_t *)e->raddr};
			m->v[i].has_rport = true;
			m->v[i].rport = e->rport;
		}
		m->p[i] = &m->v[i];
	}
	r->n_lock = c->nlock;
	r->lock = m->p;
	*ends = m;
	return 0;
}

void ps_client_net_lock_release(void *ends)
{
	struct lock_msg *m = ends;

	if (!m)
		return;
	free(m->v);
	free(m->p);
	free(m);
}

void ps_client_net_free(struct ps_client *c)
{
	for (size_t i = 0; i < c->ntaddrs; i++)
		free(c->taddrs[i]);
	free(c->taddrs);
	c->taddrs = NULL;
	c->ntaddrs = 0;
	free(c->lock);
	c->lock = NULL;
	c->nlock = 0;
}
