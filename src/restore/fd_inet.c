/*
 * fd_inet.c - what the AF_INET/AF_INET6 socket kinds share: telling them
 * apart, naming them, their addresses and options, and creating one in the
 * stub.
 *
 * A socket is read on a pidfd_getfd copy of the process's fd: it is the same
 * socket, so getsockopt tells the process's values and closing the copy only
 * drops a reference.  Options are carried as a list of (level, name, int):
 * only those whose value differs from a socket created here with the same
 * family, type and protocol (its values kept for a second, for dumps of
 * many connections), so that a value the program never set follows the
 * target's defaults (sysctls) as a new socket there would.
 * Restore creates the socket by one injected socket() in the stub (it so
 * lives in the stub's network namespace, the one the process gets) and does
 * everything else on haul's own pidfd_getfd copy with plain calls: no
 * scratch-page marshalling for the dozens of setsockopt calls a connection
 * needs.  The options that decide what bind() may do (reuse, v6only,
 * freebind, transparent) are set before it; a listener or UDP socket that
 * shared its port with another of the process but has SO_REUSEPORT off now
 * binds with it on and turns it off once every socket is bound.
 */
#define LOG_PREFIX "sock: "
#include <arpa/inet.h>
#include <linux/filter.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_inet.h"
#include "restore/target_int.h"

#ifndef IPV6_FREEBIND
#define IPV6_FREEBIND 78 /* uapi linux/in6.h, Linux 4.15 */
#endif
#ifndef IPV6_TRANSPARENT
#define IPV6_TRANSPARENT 75
#endif
#ifndef SO_BUF_LOCK
#define SO_BUF_LOCK 72 /* uapi asm-generic/socket.h, Linux 5.14 */
#endif

/* The largest queue carried (a socket's buffers cannot hold more with default limits). */
#define INET_MAX_QUEUE (64u << 20)
#define INET_MAX_OPTS  64

enum {
	K_LISTEN = 1,
	K_TCP = 2,
	K_UDP = 4,
	K_ALL = 7
};

/* Each option carried, the kinds it applies to, and whether it must precede bind(). */
static const struct inet_opt {
	int level, name;
	unsigned kinds;
	bool early;
} inet_opts[] = {
	{SOL_SOCKET, SO_REUSEADDR, K_ALL, true},
	{SOL_SOCKET, SO_REUSEPORT, K_ALL, true},
	{SOL_SOCKET, SO_KEEPALIVE, K_LISTEN | K_TCP, false},
	{SOL_SOCKET, SO_BROADCAST, K_UDP, false},
	{SOL_SOCKET, SO_PRIORITY, K_ALL, false},
	{SOL_SOCKET, SO_MARK, K_ALL, false},
	{SOL_SOCKET, SO_OOBINLINE, K_LISTEN | K_TCP, false},
	{SOL_SOCKET, SO_RCVLOWAT, K_ALL, false},
	{SOL_SOCKET, SO_DONTROUTE, K_ALL, false},
	{SOL_SOCKET, SO_NO_CHECK, K_ALL, false},
	{SOL_SOCKET, SO_BUF_LOCK, K_ALL, false}, /* set last: a buffer size sets its bit */
	{IPPROTO_TCP, TCP_NODELAY, K_LISTEN | K_TCP, false},
	{IPPROTO_TCP, TCP_KEEPIDLE, K_LISTEN | K_TCP, false},
	{IPPROTO_TCP, TCP_KEEPINTVL, K_LISTEN | K_TCP, false},
	{IPPROTO_TCP, TCP_KEEPCNT, K_LISTEN | K_TCP, false},
	{IPPROTO_TCP, TCP_USER_TIMEOUT, K_LISTEN | K_TCP, false},
	{IPPROTO_TCP, TCP_DEFER_ACCEPT, K_LISTEN, false},
	{IPPROTO_TCP, TCP_FASTOPEN, K_LISTEN, false},
	{IPPROTO_TCP, TCP_NOTSENT_LOWAT, K_LISTEN | K_TCP, false},
	{IPPROTO_TCP, TCP_LINGER2, K_LISTEN | K_TCP, false},
	{IPPROTO_TCP, TCP_WINDOW_CLAMP, K_LISTEN | K_TCP, false},
	{IPPROTO_TCP, TCP_CORK, K_TCP, false},
	{IPPROTO_IP, IP_TOS, K_ALL, false},
	{IPPROTO_IP, IP_TTL, K_ALL, false},
	{IPPROTO_IP, IP_FREEBIND, K_ALL, true},
	{IPPROTO_IP, IP_TRANSPARENT, K_ALL, true},
	{IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, K_ALL, true},
	{IPPROTO_IP, IP_RECVERR, K_ALL, false},
	{IPPROTO_IP, IP_PKTINFO, K_UDP, false},
	{IPPROTO_IP, IP_RECVTOS, K_UDP, false},
	{IPPROTO_IP, IP_MTU_DISCOVER, K_ALL, false},
	{IPPROTO_IPV6, IPV6_V6ONLY, K_ALL, true},
	{IPPROTO_IPV6, IPV6_FREEBIND, K_ALL, true},
	{IPPROTO_IPV6, IPV6_TRANSPARENT, K_ALL, true},
	{IPPROTO_IPV6, IPV6_TCLASS, K_ALL, false},
	{IPPROTO_IPV6, IPV6_UNICAST_HOPS, K_ALL, false},
	{IPPROTO_IPV6, IPV6_RECVPKTINFO, K_UDP, false},
	{IPPROTO_IPV6, IPV6_RECVERR, K_ALL, false},
	{IPPROTO_IPV6, IPV6_MTU_DISCOVER, K_ALL, false},
};

int rst_inet_getfd(pid_t pid, int fd)
{
	int sfd = rst_fd_copy(pid, fd);

	return sfd == -EBADF ? -ENOENT : sfd;
}

static int get_int(int sfd, int level, int name, int *v)
{
	socklen_t l = sizeof(*v);

	*v = 0;
	return getsockopt(sfd, level, name, v, &l) < 0 ? -errno : 0;
}

static int ident_fd(int sfd, struct rst_inet_id *id)
{
	int acc = 0;

	memset(id, 0, sizeof(*id));
	if (get_int(sfd, SOL_SOCKET, SO_DOMAIN, &id->family) ||
	    get_int(sfd, SOL_SOCKET, SO_TYPE, &id->type) ||
	    get_int(sfd, SOL_SOCKET, SO_PROTOCOL, &id->protocol))
		return -errno;
	get_int(sfd, SOL_SOCKET, SO_ACCEPTCONN, &acc);
	id->listening = acc;
	if ((id->family == AF_INET || id->family == AF_INET6) && id->type == SOCK_STREAM) {
		struct tcp_info ti;
		socklen_t l = sizeof(ti);

		memset(&ti, 0, sizeof(ti));
		if (getsockopt(sfd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0)
			id->state = ti.tcpi_state;
	}
	return 0;
}

bool rst_inet_probe(const struct rst_fd_probe *p, struct rst_inet_id *id)
{
	int sfd, ret;

	/* No cache: between the precheck and the dump a socket may listen or connect. */
	memset(id, 0, sizeof(*id));
	if (!S_ISSOCK(p->st->st_mode))
		return false;
	sfd = rst_inet_getfd(p->pid, p->fd);
	if (sfd < 0)
		return false;
	ret = ident_fd(sfd, id);
	close(sfd);
	return !ret && (id->family == AF_INET || id->family == AF_INET6);
}

const char *rst_tcp_state_name(int state)
{
	static const char *const n[] = {"?",	       "ESTABLISHED", "SYN_SENT",  "SYN_RECV",
					"FIN_WAIT1",   "FIN_WAIT2",   "TIME_WAIT", "CLOSE",
					"CLOSE_WAIT",  "LAST_ACK",    "LISTEN",	   "CLOSING",
					"NEW_SYN_RECV"};

	return state >= 0 && state < (int)(sizeof(n) / sizeof(n[0])) ? n[state] : "?";
}

/* "1.2.3.4:80" / "[::1]:80" from raw address bytes. */
static void addr_str(int family, const uint8_t *a, size_t alen, unsigned port, char *buf,
		     size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if ((family == AF_INET && alen == 4) || (family == AF_INET6 && alen == 16))
		inet_ntop(family, a, ip, sizeof(ip));
	snprintf(buf, len, family == AF_INET6 ? "[%s]:%u" : "%s:%u", ip, port);
}

static const char *proto_word(unsigned family, unsigned type)
{
	if (type == SOCK_STREAM)
		return family == AF_INET6 ? "TCPv6" : "TCP";
	return family == AF_INET6 ? "UDPv6" : "UDP";
}

void rst_inet_name(const Haul__Img__InetSocket *s, char *buf, size_t len)
{
	char l[64] = "unbound", r[64] = "";

	if (s->has_local_addr)
		addr_str(s->family, s->local_addr.data, s->local_addr.len, s->local_port, l,
			 sizeof(l));
	if (s->has_peer_addr)
		addr_str(s->family, s->peer_addr.data, s->peer_addr.len, s->peer_port, r,
			 sizeof(r));
	snprintf(buf, len, "%s %s%s%s%s", proto_word(s->family, s->type), l, r[0] ? " <- " : "", r,
		 s->has_backlog ? " listening" : "");
}

/* Address bytes and port of @a into @addr (malloc'd) and @port. */
static int take_addr(const struct sockaddr_storage *a, ProtobufCBinaryData *addr, uint32_t *port,
		     protobuf_c_boolean *has_scope, uint32_t *scope)
{
	const void *src;
	size_t n;

	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)a;

		src = &in->sin_addr;
		n = 4;
		*port = ntohs(in->sin_port);
	} else if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;

		src = &in6->sin6_addr;
		n = 16;
		*port = ntohs(in6->sin6_port);
		*has_scope = in6->sin6_scope_id != 0;
		*scope = in6->sin6_scope_id;
	} else {
		return -EAFNOSUPPORT;
	}
	addr->data = malloc(n);
	if (!addr->data)
		return -ENOMEM;
	memcpy(addr->data, src, n);
	addr->len = n;
	return 0;
}

/* Whether an address is there at all (getsockname of an unbound socket gives 0.0.0.0:0). */
static bool addr_set(const struct sockaddr_storage *a)
{
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_port != 0;
	if (a->ss_family == AF_INET6)
		return ((const struct sockaddr_in6 *)a)->sin6_port != 0;
	return false;
}

static unsigned kind_bits(const Haul__Img__InetSocket *s, bool listening)
{
	if (s->type == SOCK_DGRAM)
		return K_UDP;
	return listening ? K_LISTEN : K_TCP;
}

#define INET_NOPTS (sizeof(inet_opts) / sizeof(inet_opts[0]))

/*
 * What a new socket of one family, type and protocol has: each option of
 * the table (ok: getsockopt succeeded) and the buffer sizes.  Asked of a
 * socket made here once, then kept for a second: a dump of thousands of
 * connections would otherwise make a socket and ~40 getsockopt calls per
 * fd in the downtime; the sysctls behind the defaults change rarely.
 */
struct inet_defaults {
	int family, type, protocol;
	uint64_t at_ns; /* CLOCK_MONOTONIC when read; 0: empty slot */
	int v[INET_NOPTS];
	bool ok[INET_NOPTS];
	int sndbuf, rcvbuf;
	char cong[16]; /* TCP_CONGESTION; "": none (not TCP) */
};

/* TCP socket @sfd's congestion control into @name[16]; "" when it has none. */
static void congestion_of(int sfd, char name[16])
{
	socklen_t l = 15;

	memset(name, 0, 16);
	if (getsockopt(sfd, IPPROTO_TCP, TCP_CONGESTION, name, &l) < 0)
		name[0] = '\0';
}

static const struct inet_defaults *defaults_of(int family, int type, int protocol)
{
	static struct inet_defaults cache[4];
	struct inet_defaults *d = NULL;
	struct timespec ts;
	uint64_t now;
	int ref;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	for (size_t i = 0; i < sizeof(cache) / sizeof(cache[0]); i++) {
		struct inet_defaults *c = &cache[i];

		if (c->at_ns && c->family == family && c->type == type && c->protocol == protocol) {
			if (now - c->at_ns < 1000000000ull)
				return c;
			d = c;
		}
		if (!d && (!c->at_ns || i == sizeof(cache) / sizeof(cache[0]) - 1))
			d = c;
	}
	ref = socket(family, type | SOCK_CLOEXEC, protocol);
	if (ref < 0)
		return NULL;
	memset(d, 0, sizeof(*d));
	d->family = family;
	d->type = type;
	d->protocol = protocol;
	for (size_t i = 0; i < INET_NOPTS; i++)
		d->ok[i] = !get_int(ref, inet_opts[i].level, inet_opts[i].name, &d->v[i]);
	get_int(ref, SOL_SOCKET, SO_SNDBUF, &d->sndbuf);
	get_int(ref, SOL_SOCKET, SO_RCVBUF, &d->rcvbuf);
	congestion_of(ref, d->cong);
	close(ref);
	d->at_ns = now;
	return d;
}

/* The options of @sfd that differ from those of a new socket alike (@ref). */
static int dump_opts(int sfd, const struct inet_defaults *ref, Haul__Img__InetSocket *s,
		     unsigned kinds)
{
	size_t n = 0;
	int ret;

	s->opts = calloc(INET_NOPTS + 2, sizeof(*s->opts)); /* + the timeouts (sock_timeo.c) */
	if (!s->opts)
		return -ENOMEM;
	for (size_t i = 0; i < INET_NOPTS; i++) {
		const struct inet_opt *o = &inet_opts[i];
		int v;

		if (!(o->kinds & kinds) || (o->level == IPPROTO_IPV6 && s->family != AF_INET6))
			continue;
		/* An option this socket does not have (EOPNOTSUPP, ENOPROTOOPT) is not carried. */
		if (get_int(sfd, o->level, o->name, &v) || !ref->ok[i] || v == ref->v[i])
			continue;
		s->opts[n] = malloc(sizeof(*s->opts[n]));
		if (!s->opts[n])
			return -ENOMEM;
		haul__img__sock_opt__init(s->opts[n]);
		s->opts[n]->level = o->level;
		s->opts[n]->name = o->name;
		s->opts[n++]->value = v;
		s->n_opts = n;
	}
	ret = rst_sock_timeo_dump(sfd, s->opts, &n);
	s->n_opts = n;
	return ret;
}

/* Its congestion control, when the program chose another than a new socket's. */
static int dump_congestion(int sfd, const struct inet_defaults *ref, Haul__Img__InetSocket *s)
{
	char name[16];

	congestion_of(sfd, name);
	if (!name[0] || !strcmp(name, ref->cong))
		return 0;
	s->congestion = strdup(name);
	return s->congestion ? 0 : -ENOMEM;
}

/* SO_LINGER when on; the buffer sizes when they differ from @ref's. */
static void dump_linger_bufs(int sfd, const struct inet_defaults *ref, Haul__Img__InetSocket *s)
{
	struct linger lg = {0};
	socklen_t l = sizeof(lg);
	int v;

	if (getsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, &l) == 0 && lg.l_onoff) {
		s->has_linger_onoff = s->has_linger_sec = true;
		s->linger_onoff = lg.l_onoff;
		s->linger_sec = lg.l_linger;
	}
	if (!get_int(sfd, SOL_SOCKET, SO_SNDBUF, &v) && v != ref->sndbuf) {
		s->has_sndbuf = true;
		s->sndbuf = v;
	}
	if (!get_int(sfd, SOL_SOCKET, SO_RCVBUF, &v) && v != ref->rcvbuf) {
		s->has_rcvbuf = true;
		s->rcvbuf = v;
	}
}

/*
 * The classic BPF filter attached with SO_ATTACH_FILTER, and its lock.
 * SO_GET_FILTER with no room gives the count of instructions; an eBPF
 * program (SO_ATTACH_BPF) has no classic form and gives EACCES: the
 * precheck refused it (rst_inet_refuse).
 */
static int dump_filter(int sfd, Haul__Img__InetSocket *s)
{
	socklen_t n = 0, got;
	struct sock_filter *f;
	int locked = 0;

	if (getsockopt(sfd, SOL_SOCKET, SO_GET_FILTER, NULL, &n) < 0)
		return errno == EACCES ? -EOPNOTSUPP : 0;
	if (!n || n > BPF_MAXINSNS)
		return n ? -EOPNOTSUPP : 0;
	f = calloc(n, sizeof(*f));
	if (!f)
		return -ENOMEM;
	got = n;
	if (getsockopt(sfd, SOL_SOCKET, SO_GET_FILTER, f, &got) < 0 || got != n) {
		free(f);
		return -EAGAIN; /* changed in between: the process runs */
	}
	s->has_filter = true;
	s->filter.data = (uint8_t *)f;
	s->filter.len = n * sizeof(*f);
	if (!get_int(sfd, SOL_SOCKET, SO_LOCK_FILTER, &locked) && locked)
		s->has_filter_locked = s->filter_locked = true;
	return 0;
}

/* SO_BINDTODEVICE's interface name, when the socket is bound to one. */
static int dump_bind_dev(int sfd, Haul__Img__InetSocket *s)
{
	char name[IFNAMSIZ + 1] = "";
	socklen_t l = IFNAMSIZ;

	if (getsockopt(sfd, SOL_SOCKET, SO_BINDTODEVICE, name, &l) < 0 || !l || !name[0])
		return 0;
	name[l < IFNAMSIZ ? l : IFNAMSIZ] = '\0';
	s->bind_dev = strdup(name);
	return s->bind_dev ? 0 : -ENOMEM;
}

int rst_inet_dump(int sfd, Haul__Img__InetSocket **out)
{
	struct sockaddr_storage a;
	socklen_t al;
	const struct inet_defaults *ref;
	struct rst_inet_id id;
	Haul__Img__InetSocket *s;
	int ret;

	*out = NULL;
	ret = ident_fd(sfd, &id);
	if (ret)
		return ret;
	s = malloc(sizeof(*s));
	if (!s)
		return -ENOMEM;
	haul__img__inet_socket__init(s);
	*out = s;
	s->family = id.family;
	s->type = id.type;
	s->protocol = id.protocol;
	memset(&a, 0, sizeof(a));
	al = sizeof(a);
	if (getsockname(sfd, (struct sockaddr *)&a, &al) == 0 && addr_set(&a)) {
		ret = take_addr(&a, &s->local_addr, &s->local_port, &s->has_local_scope,
				&s->local_scope);
		if (ret)
			return ret;
		s->has_local_addr = s->has_local_port = true;
	}
	memset(&a, 0, sizeof(a));
	al = sizeof(a);
	if (getpeername(sfd, (struct sockaddr *)&a, &al) == 0 && addr_set(&a)) {
		ret = take_addr(&a, &s->peer_addr, &s->peer_port, &s->has_peer_scope,
				&s->peer_scope);
		if (ret)
			return ret;
		s->has_peer_addr = s->has_peer_port = true;
	}
	ref = defaults_of(id.family, id.type, id.protocol);
	if (!ref)
		return -errno;
	ret = dump_opts(sfd, ref, s, kind_bits(s, id.listening));
	if (!ret)
		dump_linger_bufs(sfd, ref, s);
	if (!ret)
		ret = dump_bind_dev(sfd, s);
	if (!ret)
		ret = dump_filter(sfd, s);
	if (!ret && s->type == SOCK_STREAM)
		ret = dump_congestion(sfd, ref, s);
	return ret ? ret : rst_inet_dump_nonlocal(sfd, s);
}

void rst_inet_free(Haul__Img__InetSocket *s)
{
	/* Every part was malloc'd on its own: protobuf-c frees it as an unpacked message. */
	if (s)
		protobuf_c_message_free_unpacked(&s->base, NULL);
}

int rst_inet_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	socklen_t n = 0;
	char name[160];
	int sfd = rst_inet_getfd(p->pid, p->fd), ret = 0;

	if (sfd < 0)
		return sfd == -ENOENT ? 0 : sfd;
	if (getsockopt(sfd, SOL_SOCKET, SO_GET_FILTER, NULL, &n) < 0 && errno == EACCES) {
		rst_inet_name_fd(sfd, name, sizeof(name));
		snprintf(
			why, wl,
			"fd %d: %s has an eBPF socket filter (SO_ATTACH_BPF); haul carries classic "
			"filters only: detach it (SO_DETACH_BPF) before migrating",
			p->fd, name);
		ret = -EOPNOTSUPP;
	}
	close(sfd);
	return ret;
}

void rst_inet_name_fd(int sfd, char *buf, size_t len)
{
	Haul__Img__InetSocket *s = NULL;
	int acc = 0, ret = rst_inet_dump(sfd, &s);

	/* -EOPNOTSUPP: what it cannot carry came after its addresses (an eBPF filter) */
	if (s && (!ret || ret == -EOPNOTSUPP)) {
		/* "listening" is said where a listener has its backlog */
		s->has_backlog = !get_int(sfd, SOL_SOCKET, SO_ACCEPTCONN, &acc) && acc;
		rst_inet_name(s, buf, len);
	} else {
		snprintf(buf, len, "socket");
	}
	rst_inet_free(s);
}

int rst_inet_create(struct rst_target *t, const Haul__Img__InetSocket *s, int *remote, int *local)
{
	long res;
	int ret;

	ret = rst_rcall(t, SYS_socket, s->family, s->type | SOCK_CLOEXEC, s->protocol, 0, 0, 0,
			&res);
	if (ret)
		return ret;
	*remote = (int)res;
	*local = (int)syscall(SYS_pidfd_getfd, t->pidfd, *remote, 0);
	if (*local < 0) {
		ret = -errno;
		rst_rcall(t, SYS_close, *remote, 0, 0, 0, 0, 0, NULL);
		*remote = -1;
		return ret;
	}
	return 0;
}

static bool opt_early(int level, int name)
{
	for (size_t i = 0; i < sizeof(inet_opts) / sizeof(inet_opts[0]); i++)
		if (inet_opts[i].level == level && inet_opts[i].name == name)
			return inet_opts[i].early;
	return false;
}

/* The classic filter and its lock, last: a locked filter cannot be attached. */
static int set_filter(int sfd, const Haul__Img__InetSocket *s)
{
	struct sock_fprog prog = {(unsigned short)(s->filter.len / sizeof(struct sock_filter)),
				  (struct sock_filter *)s->filter.data};
	int one = 1;

	if (!s->has_filter)
		return 0;
	if (setsockopt(sfd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) < 0)
		return -errno;
	if (s->filter_locked && setsockopt(sfd, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}

bool rst_inet_carried_opt(const Haul__Img__InetSocket *s, int level, int name, int *value)
{
	for (size_t i = 0; i < s->n_opts; i++)
		if (s->opts[i]->level == level && s->opts[i]->name == name) {
			*value = s->opts[i]->value;
			return true;
		}
	return false;
}

/* SO_BUF_LOCK as the source had it, after the buffer sizes (each sets its bit). */
static int set_buf_lock(int sfd, const Haul__Img__InetSocket *s)
{
	int v;

	if (rst_inet_carried_opt(s, SOL_SOCKET, SO_BUF_LOCK, &v) &&
	    setsockopt(sfd, SOL_SOCKET, SO_BUF_LOCK, &v, sizeof(v)) < 0)
		return -errno;
	return 0;
}

int rst_inet_set_opts(int sfd, const Haul__Img__InetSocket *s, bool early, bool bufs)
{
	int ret;

	for (size_t i = 0; i < s->n_opts; i++) {
		const Haul__Img__SockOpt *o = s->opts[i];
		int v = o->value;

		if (rst_sock_timeo_is(o)) {
			if (!early && (ret = rst_sock_timeo_set(sfd, o)))
				return ret;
			continue;
		}
		if (opt_early(o->level, o->name) != early ||
		    (o->level == SOL_SOCKET && o->name == SO_BUF_LOCK))
			continue;
		/* the caller names the socket; the debug log names the option */
		if (setsockopt(sfd, o->level, o->name, &v, sizeof(v)) < 0) {
			int err = -errno;

			pr_debug("setsockopt level %d name %d to %d: %s", o->level, o->name, v,
				 strerror(-err));
			return err;
		}
	}
	/* bind() and connect() heed the device: before them */
	if (early && s->bind_dev &&
	    setsockopt(sfd, SOL_SOCKET, SO_BINDTODEVICE, s->bind_dev, strlen(s->bind_dev) + 1) < 0)
		return -errno;
	if (early)
		return 0;
	if (s->has_linger_onoff) {
		struct linger lg = {.l_onoff = (int)s->linger_onoff,
				    .l_linger = (int)s->linger_sec};

		if (setsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
			return -errno;
	}
	if (s->n_mc) {
		char why[256] = "";

		ret = rst_mcast_restore(sfd, s, why, sizeof(why));
		if (ret) {
			pr_err("%s", why);
			return ret;
		}
	}
	/* a module the target has not loaded yet is loaded by the kernel for root */
	if (s->congestion && setsockopt(sfd, IPPROTO_TCP, TCP_CONGESTION, s->congestion,
					(socklen_t)strlen(s->congestion)) < 0) {
		int err = -errno;

		pr_err("cannot set TCP congestion control '%s' (is its module available here?): %s",
		       s->congestion, strerror(-err));
		return err;
	}
	/* getsockopt gave the kernel's doubled value; FORCE: root is not capped by rmem_max. */
	if (bufs && s->has_sndbuf) {
		int v = (int)(s->sndbuf / 2);

		if (setsockopt(sfd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof(v)) < 0)
			return -errno;
	}
	if (bufs && s->has_rcvbuf) {
		int v = (int)(s->rcvbuf / 2);

		if (setsockopt(sfd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) < 0)
			return -errno;
	}
	ret = set_buf_lock(sfd, s);
	return ret ? ret : set_filter(sfd, s);
}

/* @addr/@port as a sockaddr of @family into @a; its length. */
socklen_t rst_inet_sockaddr(int family, const ProtobufCBinaryData *addr, uint32_t port,
			    uint32_t scope, struct sockaddr_storage *a)
{
	memset(a, 0, sizeof(*a));
	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)a;

		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		memcpy(&in->sin_addr, addr->data, 4);
		return sizeof(*in);
	}
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)a;

	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons((uint16_t)port);
	in6->sin6_scope_id = scope;
	memcpy(&in6->sin6_addr, addr->data, 16);
	return sizeof(*in6);
}

int rst_inet_bind(int sfd, const Haul__Img__InetSocket *s)
{
	struct sockaddr_storage a;
	socklen_t l;

	if (!s->has_local_addr)
		return 0;
	l = rst_inet_sockaddr(s->family, &s->local_addr, s->local_port, s->local_scope, &a);
	return bind(sfd, (struct sockaddr *)&a, l) < 0 ? -errno : 0;
}

int rst_inet_connect(int sfd, const Haul__Img__InetSocket *s)
{
	struct sockaddr_storage a;
	socklen_t l;

	if (!s->has_peer_addr)
		return 0;
	l = rst_inet_sockaddr(s->family, &s->peer_addr, s->peer_port, s->peer_scope, &a);
	return connect(sfd, (struct sockaddr *)&a, l) < 0 ? -errno : 0;
}

static int bad(char *why, size_t wl, const Haul__Img__FileObject *f, const char *what)
{
	snprintf(why, wl, "file %u (%s): %s", f->id, rst_fd_ops_of(f->kind)->name, what);
	return -EBADMSG;
}

/*
 * Whether another listener or UDP socket of @ps is bound to @f's port and
 * address (or a wildcard): on the source they shared it through
 * SO_REUSEPORT, which either may have turned off since.
 */
static bool port_shared(const Haul__Img__ProcessState *ps, const Haul__Img__FileObject *f)
{
	const Haul__Img__InetSocket *s = f->inet;
	size_t alen = s->family == AF_INET ? 4 : 16;
	static const uint8_t any[16];

	if (f->kind == HAUL__IMG__FD_KIND__FD_TCP || !s->has_local_addr || !s->local_port || !ps)
		return false;
	for (size_t i = 0; i < ps->n_files; i++) {
		const Haul__Img__FileObject *g = ps->files[i];
		const Haul__Img__InetSocket *o = g->inet;

		if (g == f || g->kind != f->kind || !o || o->family != s->family ||
		    !o->has_local_addr || o->local_port != s->local_port ||
		    o->local_addr.len != alen || s->local_addr.len != alen)
			continue;
		if (!memcmp(o->local_addr.data, s->local_addr.data, alen) ||
		    !memcmp(o->local_addr.data, any, alen) ||
		    !memcmp(s->local_addr.data, any, alen))
			return true;
	}
	return false;
}

/*
 * A socket that shared its port but has SO_REUSEPORT off now binds with it
 * on, as it must have on the source; it goes off once every socket of the
 * restore is bound (rst_sock_defer_opt), as the program turned it off
 * after the others joined.
 */
static int reuseport_for_bind(int sfd, const Haul__Img__FileObject *f,
			      const Haul__Img__ProcessState *ps)
{
	int on = 1, now = 0;

	if ((rst_inet_carried_opt(f->inet, SOL_SOCKET, SO_REUSEPORT, &now) && now) ||
	    !port_shared(ps, f))
		return 0;
	if (setsockopt(sfd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) < 0)
		return -errno;
	return rst_sock_defer_opt(sfd, SOL_SOCKET, SO_REUSEPORT, 0);
}

/* The kind's own steps between the early options and the others; *step names a failed one. */
static int inet_steps(int sfd, const Haul__Img__FileObject *f, const char **step)
{
	const Haul__Img__InetSocket *s = f->inet;
	int ret;

	if (f->kind == HAUL__IMG__FD_KIND__FD_TCP)
		return rst_tcp_steps(sfd, s, step);
	*step = "bind (is the address on this host, and the port free?)";
	ret = rst_inet_bind(sfd, s);
	if (ret)
		return ret;
	if (f->kind == HAUL__IMG__FD_KIND__FD_UDP) {
		*step = "connect";
		ret = rst_inet_connect(sfd, s);
		if (ret)
			return ret;
		*step = "shutdown";
		return rst_inet_shutdown(sfd, s);
	}
	*step = "listen";
	if (listen(sfd, (int)s->backlog) < 0)
		return -errno;
	return 0;
}

int rst_inet_restore(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e, const char *path, int *tmp, bool *shared)
{
	const Haul__Img__InetSocket *s = f->inet;
	const char *step = "options";
	char name[160];
	int sfd = -1, ret;

	(void)path;
	(void)shared;
	if (rst_fd_presock_take(t, e->fd)) {
		/* made at its number already (fd_presock.c) */
		*tmp = e->fd;
		sfd = (int)syscall(SYS_pidfd_getfd, t->pidfd, e->fd, 0);
		ret = sfd < 0 ? -errno : 0;
	} else {
		ret = rst_inet_create(t, s, tmp, &sfd);
	}
	if (ret)
		return ret;
	ret = rst_inet_set_opts(sfd, s, true, false);
	if (!ret)
		ret = reuseport_for_bind(sfd, f, x ? x->ps : NULL);
	if (!ret)
		ret = rst_inet_bind_nonlocal(sfd, s, true);
	if (!ret)
		ret = inet_steps(sfd, f, &step);
	if (!ret)
		ret = rst_inet_bind_nonlocal(sfd, s, false);
	if (!ret) {
		step = "options";
		ret = rst_inet_set_opts(sfd, s, false,
					f->kind != HAUL__IMG__FD_KIND__FD_TCP || !s->tcp);
	}
	if (ret) {
		rst_inet_name(s, name, sizeof(name));
		pr_err("fd %d: cannot restore %s: %s: %s", e->fd, name, step, strerror(-ret));
	}
	close(sfd);
	return ret;
}

int rst_inet_dump_probe(const struct rst_fd_probe *p, Haul__Img__FileObject *o)
{
	int sfd = rst_inet_getfd(p->pid, p->fd), ret;

	if (sfd < 0)
		return sfd;
	ret = rst_inet_dump(sfd, &o->inet);
	if (!ret && o->inet->type == SOCK_DGRAM)
		ret = rst_mcast_dump(p->pid, sfd, o->inet);
	if (ret) {
		close(sfd);
		return ret;
	}
	return sfd;
}

int rst_inet_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	const Haul__Img__InetSocket *s = f->inet;
	size_t alen;
	const Haul__Img__TcpRepair *t;

	if (!s)
		return bad(why, wl, f, "no inet part");
	alen = s->family == AF_INET ? 4 : 16;
	t = s->tcp;
	if (t && f->kind != HAUL__IMG__FD_KIND__FD_TCP)
		return bad(why, wl, f, "a TCP connection on a socket of another kind");
	if (s->has_backlog != (f->kind == HAUL__IMG__FD_KIND__FD_TCP_LISTEN))
		return bad(why, wl, f, "a backlog on a socket that is not a listener, or none");
	if ((s->type == SOCK_STREAM) != (f->kind != HAUL__IMG__FD_KIND__FD_UDP))
		return bad(why, wl, f, "a socket type that is not its kind's");

	if (s->family != AF_INET && s->family != AF_INET6)
		return bad(why, wl, f, "family is not AF_INET or AF_INET6");
	if ((s->type != SOCK_STREAM || (s->protocol != IPPROTO_TCP && s->protocol != 0)) &&
	    (s->type != SOCK_DGRAM || (s->protocol != IPPROTO_UDP && s->protocol != 0)))
		return bad(why, wl, f, "not TCP or UDP");
	if ((s->has_local_addr && s->local_addr.len != alen) ||
	    (s->has_peer_addr && s->peer_addr.len != alen))
		return bad(why, wl, f, "an address of the wrong length for its family");
	if (s->has_filter && (!s->filter.len || s->filter.len % sizeof(struct sock_filter) ||
			      s->filter.len > BPF_MAXINSNS * sizeof(struct sock_filter)))
		return bad(why, wl, f,
			   "a socket filter that is not whole instructions, or too long");
	if (s->local_port > 65535 || s->peer_port > 65535)
		return bad(why, wl, f, "a port above 65535");
	if (s->has_shutdown &&
	    (s->shutdown > 3 || (f->kind != HAUL__IMG__FD_KIND__FD_UDP &&
				 (f->kind != HAUL__IMG__FD_KIND__FD_TCP || s->tcp))))
		return bad(why, wl, f,
			   "a shutdown other than 1-3, or not on a UDP or closed TCP socket");
	if (s->n_opts > INET_MAX_OPTS)
		return bad(why, wl, f, "too many options");
	if (s->congestion &&
	    (s->type != SOCK_STREAM || !s->congestion[0] || strlen(s->congestion) > 15 ||
	     strspn(s->congestion, "abcdefghijklmnopqrstuvwxyz0123456789_-") !=
		     strlen(s->congestion)))
		return bad(why, wl, f, "a TCP congestion control name that is not one");
	if (rst_mcast_valid(s))
		return bad(why, wl, f,
			   "multicast groups on a socket that is not UDP, too many, or malformed");
	for (size_t i = 0; i < s->n_opts; i++)
		if (rst_sock_timeo_valid(s->opts[i], f->id, why, wl))
			return -EBADMSG;
	if ((s->has_sndbuf && s->sndbuf > INT32_MAX) || (s->has_rcvbuf && s->rcvbuf > INT32_MAX))
		return bad(why, wl, f, "a buffer size above INT_MAX");
	if (!t)
		return 0;
	if (!s->has_peer_addr || !s->has_local_addr)
		return bad(why, wl, f, "a TCP connection without both addresses");
	if (t->recv_queue.len > INET_MAX_QUEUE || t->send_queue.len > INET_MAX_QUEUE ||
	    t->unsent > t->send_queue.len)
		return bad(why, wl, f, "TCP queues beyond 64 MiB or more unsent than queued");
	if (t->snd_wscale > 14 || t->rcv_wscale > 14 || t->mss > 65535)
		return bad(why, wl, f, "TCP window scale above 14 or MSS above 65535");
	return 0;
}
