/*
 * netsock.c - the inet sockets of a process, as the network lock and the
 * address check need them, and the check itself.
 *
 * The socket inodes come from /proc/PID/fd ("socket:[N]") of each process
 * of the set (a tree: one socket inherited by several processes is one
 * inode, listed once, with the fd of the first process that holds it);
 * their addresses and ports from inet_diag (NETLINK_SOCK_DIAG, one dump per
 * family and protocol: TCP and UDP over IPv4 and IPv6), matched by inode.
 * inet_diag answers for the network namespace of the asking socket, so the
 * dump runs in the process's namespace (setns of this thread and back).
 * An IPv6 end on a v4-mapped address (a dual-stack socket talking IPv4)
 * is reported as the IPv4 end it is on the wire.
 */
#define LOG_PREFIX "netlock: "
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/netlock.h"
#include "restore/restore.h"

struct inode_fd {
	unsigned long ino;
	int fd;
	pid_t pid;
};

static bool have_inode(const struct inode_fd *v, size_t n, unsigned long ino)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].ino == ino)
			return true;
	return false;
}

/* The socket inodes of @pid's fds added to *@out (@n, @cap), each inode once. */
static int socket_inodes(pid_t pid, struct inode_fd **out, size_t *n, size_t *cap)
{
	char dir[64], path[384], link[64];
	struct inode_fd *v = *out;
	struct dirent *e;
	DIR *d;

	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	d = opendir(dir);
	if (!d)
		return -errno;
	while ((e = readdir(d))) {
		unsigned long ino;
		ssize_t l;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
		l = readlink(path, link, sizeof(link) - 1);
		if (l <= 0)
			continue;
		link[l] = '\0';
		if (sscanf(link, "socket:[%lu]", &ino) != 1 || have_inode(v, *n, ino))
			continue;
		if (*n == *cap) {
			struct inode_fd *nv =
				realloc(v, (*cap = *cap ? *cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				closedir(d);
				return -ENOMEM;
			}
			v = *out = nv;
		}
		v[(*n)++] = (struct inode_fd){ino, atoi(e->d_name), pid};
	}
	closedir(d);
	return 0;
}

static bool mapped_v4(const uint8_t *a)
{
	static const uint8_t pfx[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	return !memcmp(a, pfx, 12);
}

static bool is_zero(const uint8_t *a, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (a[i])
			return false;
	return true;
}

/* One inet_diag message into @t; the family folded to IPv4 for v4-mapped ends. */
static void diag_tuple(const struct inet_diag_msg *m, int proto, int fd, struct haul_net_tuple *t)
{
	_Static_assert(sizeof(m->id) == sizeof(t->diag_id), "inet_diag_sockid is 48 bytes");
	memset(t, 0, sizeof(*t));
	t->ino = m->idiag_inode;
	t->diag_family = m->idiag_family;
	memcpy(t->diag_id, &m->id, sizeof(t->diag_id));
	t->family = m->idiag_family;
	t->proto = proto;
	t->fd = fd;
	t->state = m->idiag_state;
	t->lport = ntohs(m->id.idiag_sport);
	t->rport = ntohs(m->id.idiag_dport);
	memcpy(t->laddr, m->id.idiag_src, 16);
	memcpy(t->raddr, m->id.idiag_dst, 16);
	if (t->family == AF_INET6 && mapped_v4(t->laddr) &&
	    (mapped_v4(t->raddr) || is_zero(t->raddr, 16))) {
		t->family = AF_INET;
		memmove(t->laddr, t->laddr + 12, 4);
		memset(t->laddr + 4, 0, 12);
		memmove(t->raddr, t->raddr + 12, 4);
		memset(t->raddr + 4, 0, 12);
	}
	if (t->family == AF_INET) {
		memset(t->laddr + 4, 0, 12);
		memset(t->raddr + 4, 0, 12);
	}
}

/* Ask inet_diag about @family/@proto: every socket (@id NULL, a dump) or the one of @id. */
static int diag_ask(int nl, int family, int proto, const struct inet_diag_sockid *id)
{
	struct {
		struct nlmsghdr h;
		struct inet_diag_req_v2 r;
	} req = {
		.h = {.nlmsg_len = sizeof(req),
		      .nlmsg_type = SOCK_DIAG_BY_FAMILY,
		      .nlmsg_flags = NLM_F_REQUEST | (id ? 0 : NLM_F_DUMP)},
		.r = {.sdiag_family = (uint8_t)family,
		      .sdiag_protocol = (uint8_t)proto,
		      .idiag_states = ~0U},
	};

	if (id)
		req.r.id = *id;
	return send(nl, &req, sizeof(req), 0) == sizeof(req) ? 0 : -errno;
}

/* Dump @family/@proto and add the sockets among @ino to *@out. */
static int diag_dump(int nl, int family, int proto, const struct inode_fd *ino, size_t nino,
		     struct haul_net_tuple **out, size_t *n, size_t *cap)
{
	static char buf[32768] __attribute__((aligned(8)));
	int ret = diag_ask(nl, family, proto, NULL);

	if (ret)
		return ret;
	for (;;) {
		ssize_t len = recv(nl, buf, sizeof(buf), 0);
		struct nlmsghdr *h = (struct nlmsghdr *)buf;

		if (len < 0)
			return -errno;
		for (; NLMSG_OK(h, (size_t)len); h = NLMSG_NEXT(h, len)) {
			const struct inet_diag_msg *m = NLMSG_DATA(h);

			if (h->nlmsg_type == NLMSG_DONE)
				return 0;
			if (h->nlmsg_type == NLMSG_ERROR) {
				const struct nlmsgerr *e = NLMSG_DATA(h);

				return e->error ? e->error : -EPROTO;
			}
			if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)))
				continue;
			for (size_t i = 0; i < nino; i++) {
				if (ino[i].ino != m->idiag_inode)
					continue;
				if (*n == *cap) {
					struct haul_net_tuple *nv = realloc(
						*out, (*cap = *cap ? *cap * 2 : 8) * sizeof(**out));

					if (!nv)
						return -ENOMEM;
					*out = nv;
				}
				diag_tuple(m, proto, ino[i].fd, &(*out)[*n]);
				(*out)[(*n)++].pid = ino[i].pid;
				break;
			}
		}
	}
}

/* Whether @a and @b are in one network namespace (0: yes, -EXDEV: no). */
static int same_netns(pid_t a, pid_t b)
{
	struct stat sa, sb;
	char pa[64], pb[64];

	snprintf(pa, sizeof(pa), "/proc/%d/ns/net", (int)a);
	snprintf(pb, sizeof(pb), "/proc/%d/ns/net", (int)b);
	if (stat(pa, &sa) || stat(pb, &sb))
		return -errno;
	return sa.st_ino == sb.st_ino && sa.st_dev == sb.st_dev ? 0 : -EXDEV;
}

/* The socket inodes of every process of @pids (in one network namespace), each once. */
static int set_inodes(const pid_t *pids, size_t npids, struct inode_fd **ino, size_t *nino)
{
	size_t cap = 0;
	int ret = 0;

	*ino = NULL;
	*nino = 0;
	for (size_t i = 0; i < npids && !ret; i++) {
		ret = i ? same_netns(pids[0], pids[i]) : 0;
		if (ret == -EXDEV) {
			pr_err("pid %d is in another network namespace than pid %d; the sockets of "
			       "a set are read in one namespace: move them separately",
			       (int)pids[i], (int)pids[0]);
			break;
		}
		if (!ret)
			ret = socket_inodes(pids[i], ino, nino, &cap);
		if (ret)
			pr_err_r(ret, "cannot list the fds of pid %d", (int)pids[i]);
	}
	if (ret) {
		free(*ino);
		*ino = NULL;
		*nino = 0;
	}
	return ret;
}

int haul_net_sockets(pid_t pid, struct haul_net_tuple **out, size_t *n)
{
	return haul_net_sockets_of(&pid, 1, out, n);
}

/* The dumps of @mask (bit 2 * family index + protocol index, of fam[] and proto[]). */
static const int fam[] = {AF_INET, AF_INET6}, proto[] = {IPPROTO_TCP, IPPROTO_UDP};
#define DUMP_ALL 0xfU
#define DUMP_UDP 0xaU

/* A NETLINK_SOCK_DIAG socket of @pid's network namespace (-errno, logged). */
static int diag_open(pid_t pid)
{
	int nl, back, ret;

	ret = haul_netns_enter_pid(pid, &back);
	if (ret) {
		pr_err_r(ret, "cannot enter the network namespace of pid %d", (int)pid);
		return ret;
	}
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	ret = nl < 0 ? -errno : nl;
	if (back >= 0 && setns(back, CLONE_NEWNET))
		pr_err("cannot return to haul's network namespace after reading pid %d's sockets",
		       (int)pid);
	if (back >= 0)
		close(back);
	if (ret < 0)
		pr_err_r(ret, "cannot open NETLINK_SOCK_DIAG for the sockets of pid %d", (int)pid);
	return ret;
}

/* The sockets among @ino that the dumps of @mask list, added to *@out (@n). */
static int dump_set(pid_t pid, const struct inode_fd *ino, size_t nino, unsigned mask,
		    struct haul_net_tuple **out, size_t *n)
{
	size_t cap = *n;
	int nl = diag_open(pid), ret = 0;

	if (nl < 0)
		return nl;
	for (size_t i = 0; i < 4 && !ret; i++)
		if (mask & (1U << i))
			ret = diag_dump(nl, fam[i / 2], proto[i % 2], ino, nino, out, n, &cap);
	close(nl);
	if (ret)
		pr_err_r(ret, "cannot read the inet sockets of pid %d (inet_diag)", (int)pid);
	return ret;
}

int haul_net_sockets_of(const pid_t *pids, size_t npids, struct haul_net_tuple **out, size_t *n)
{
	struct inode_fd *ino;
	size_t nino;
	int ret;

	*out = NULL;
	*n = 0;
	if (!npids)
		return 0;
	ret = set_inodes(pids, npids, &ino, &nino);
	if (ret)
		return ret;
	if (nino)
		ret = dump_set(pids[0], ino, nino, DUMP_ALL, out, n);
	free(ino);
	if (ret) {
		free(*out);
		*out = NULL;
		*n = 0;
	}
	return ret;
}

/* ---- read while it runs, verified at the freeze ---------------------------- */

static int ulong_cmp(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

/* Every socket inode of @pids, sorted, into *@out (the inode_fd list too, in *@ino). */
static int snap_inodes(const pid_t *pids, size_t npids, struct inode_fd **ino, size_t *nino,
		       unsigned long **out)
{
	int ret = set_inodes(pids, npids, ino, nino);

	if (ret)
		return ret;
	*out = calloc(*nino ? *nino : 1, sizeof(**out));
	if (!*out) {
		free(*ino);
		*ino = NULL;
		return -ENOMEM;
	}
	for (size_t i = 0; i < *nino; i++)
		(*out)[i] = (*ino)[i].ino;
	qsort(*out, *nino, sizeof(**out), ulong_cmp);
	return 0;
}

/* Is @v's socket an inet one?  Asked through a copy of its fd; true when that fails. */
static bool inet_fd(const struct inode_fd *v)
{
	char desc[160];
	int dom;

	if (rst_sock_describe(v->pid, v->fd, &dom, desc, sizeof(desc)))
		return true;
	return dom != AF_UNIX && dom != AF_NETLINK && dom != AF_PACKET;
}

/*
 * Whether every socket's ends are fixed for as long as its inode lives: a
 * TCP socket that listens or has connected keeps them; an unconnected one
 * (CLOSE), a UDP one (dumped again anyway) or an inet socket that the dumps
 * did not list (not bound yet) may change them unseen.
 */
static bool snap_settled(const struct haul_net_snap *s, const struct inode_fd *ino, size_t nino)
{
	size_t tcp = 0;

	for (size_t i = 0; i < s->n; i++) {
		if (s->t[i].proto == IPPROTO_TCP && s->t[i].state == TCP_CLOSE)
			return false;
		tcp += s->t[i].proto == IPPROTO_TCP;
	}
	/* one lookup each (~20 us): past this many, two dumps are cheaper */
	if (tcp > HAUL_NET_LOOKUP_MAX)
		return false;
	for (size_t i = 0; i < nino; i++) {
		bool listed = false;

		for (size_t j = 0; j < s->n && !listed; j++)
			listed = s->t[j].ino == ino[i].ino;
		if (!listed && inet_fd(&ino[i]))
			return false;
	}
	return true;
}

int haul_net_snap_take(const pid_t *pids, size_t npids, struct haul_net_snap *s)
{
	struct inode_fd *ino = NULL;
	size_t nino = 0;
	int ret;

	memset(s, 0, sizeof(*s));
	if (!npids)
		return 0;
	ret = snap_inodes(pids, npids, &ino, &nino, &s->ino);
	if (ret)
		return ret;
	s->nino = nino;
	if (nino)
		ret = dump_set(pids[0], ino, nino, DUMP_ALL, &s->t, &s->n);
	if (!ret)
		s->settled = snap_settled(s, ino, nino);
	free(ino);
	if (ret)
		haul_net_snap_free(s);
	return ret;
}

/* Ask inet_diag for @t alone, by its ends and cookie: 0 when it still has them. */
static int diag_one(int nl, const struct haul_net_tuple *t)
{
	char buf[1024] __attribute__((aligned(8)));
	const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
	const struct inet_diag_msg *m = NLMSG_DATA(h);
	struct inet_diag_sockid id;
	ssize_t len;
	int ret;

	memcpy(&id, t->diag_id, sizeof(id));
	ret = diag_ask(nl, t->diag_family, t->proto, &id);
	if (ret)
		return ret;
	len = recv(nl, buf, sizeof(buf), 0);
	if (len < 0)
		return -errno;
	if (!NLMSG_OK(h, (size_t)len))
		return -EPROTO;
	if (h->nlmsg_type == NLMSG_ERROR) {
		const struct nlmsgerr *e = NLMSG_DATA(h);

		return e->error ? e->error : -EPROTO;
	}
	if (h->nlmsg_len < NLMSG_LENGTH(sizeof(*m)) || m->idiag_inode != t->ino ||
	    memcmp(&m->id, t->diag_id, sizeof(m->id)))
		return -ESTALE;
	return 0;
}

/* The TCP sockets of @s looked up one by one, then UDP dumped again: 0, or why not. */
static int snap_verify(pid_t pid, struct haul_net_snap *s, const struct inode_fd *ino, size_t nino)
{
	size_t k = 0;
	bool udp = false;
	int nl = diag_open(pid), ret = 0;

	if (nl < 0)
		return nl;
	for (size_t i = 0; i < s->n && !ret; i++) {
		if (s->t[i].proto == IPPROTO_TCP) {
			ret = diag_one(nl, &s->t[i]);
			s->t[k++] = s->t[i];
		} else {
			udp = true;
		}
	}
	close(nl);
	if (!ret && udp) {
		s->n = k;
		ret = dump_set(pid, ino, nino, DUMP_UDP, &s->t, &s->n);
	}
	return ret;
}

int haul_net_snap_again(const pid_t *pids, size_t npids, struct haul_net_snap *s, bool *reused)
{
	struct inode_fd *ino = NULL;
	unsigned long *now = NULL;
	size_t nino = 0;
	int ret;

	*reused = false;
	if (!npids)
		return 0;
	if (s->settled && !snap_inodes(pids, npids, &ino, &nino, &now)) {
		*reused = nino == s->nino && !memcmp(now, s->ino, nino * sizeof(*now)) &&
			  !snap_verify(pids[0], s, ino, nino);
		free(now);
		free(ino);
	}
	if (*reused)
		return 0;
	haul_net_snap_free(s);
	ret = haul_net_sockets_of(pids, npids, &s->t, &s->n);
	return ret;
}

void haul_net_snap_free(struct haul_net_snap *s)
{
	free(s->t);
	free(s->ino);
	memset(s, 0, sizeof(*s));
}

/* ---- text ------------------------------------------------------------------ */

static void end_str(int family, const uint8_t *a, uint16_t port, char *buf, size_t len)
{
	char s[INET6_ADDRSTRLEN];

	inet_ntop(family, a, s, sizeof(s));
	snprintf(buf, len, family == AF_INET6 ? "[%s]:%u" : "%s:%u", s, port);
}

void haul_net_tuple_str(const struct haul_net_tuple *t, char *buf, size_t len)
{
	char l[64], r[64];

	end_str(t->family, t->laddr, t->lport, l, sizeof(l));
	if (!t->rport) {
		snprintf(buf, len, "%s %s%s", t->proto == IPPROTO_TCP ? "TCP" : "UDP", l,
			 t->state == TCP_LISTEN ? " (listening)" : "");
		return;
	}
	end_str(t->family, t->raddr, t->rport, r, sizeof(r));
	snprintf(buf, len, "%s %s <- %s", t->proto == IPPROTO_TCP ? "TCP" : "UDP", l, r);
}

void haul_net_addr_str(int family, const uint8_t *addr, int prefix, char *buf, size_t len)
{
	char s[INET6_ADDRSTRLEN];

	inet_ntop(family, addr, s, sizeof(s));
	if (prefix >= 0)
		snprintf(buf, len, "%s/%d", s, prefix);
	else
		snprintf(buf, len, "%s", s);
}

int haul_net_addr_parse(const char *s, struct haul_net_addr *a)
{
	char host[INET6_ADDRSTRLEN + 8], *slash, *end;
	long prefix;

	memset(a, 0, sizeof(*a));
	if (strlen(s) >= sizeof(host))
		return -EINVAL;
	strcpy(host, s);
	slash = strchr(host, '/');
	if (!slash)
		return -EINVAL;
	*slash = '\0';
	errno = 0;
	prefix = strtol(slash + 1, &end, 10);
	if (errno || end == slash + 1 || *end)
		return -EINVAL;
	if (inet_pton(AF_INET, host, a->addr) == 1)
		a->family = AF_INET;
	else if (inet_pton(AF_INET6, host, a->addr) == 1)
		a->family = AF_INET6;
	else
		return -EINVAL;
	if (prefix < 1 || prefix > (a->family == AF_INET ? 32 : 128))
		return -EINVAL;
	a->prefix = (int)prefix;
	return 0;
}

bool haul_net_covers(int family, const uint8_t *net, int prefix, const uint8_t *addr)
{
	int bytes = prefix / 8, bits = prefix % 8;

	if (prefix < 0 || prefix > (family == AF_INET ? 32 : 128))
		return false;
	if (memcmp(net, addr, bytes))
		return false;
	if (!bits)
		return true;
	return ((net[bytes] ^ addr[bytes]) & (0xff << (8 - bits))) == 0;
}

/* ---- the local-address check ------------------------------------------------- */

static bool is_loopback_addr(int family, const uint8_t *a)
{
	static const uint8_t lo6[16] = {[15] = 1};

	return family == AF_INET ? a[0] == 127 : !memcmp(a, lo6, 16);
}

static bool is_loopback(const struct haul_net_tuple *t)
{
	return is_loopback_addr(t->family, t->laddr);
}

static bool addr_in(const struct haul_net_tuple *t, const struct haul_net_addr *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (v[i].family == t->family &&
		    !memcmp(v[i].addr, t->laddr, t->family == AF_INET ? 4 : 16))
			return true;
	return false;
}

/* Whether the other end of connection @c is one of @t's sockets. */
static bool peer_in(const struct haul_net_tuple *c, const struct haul_net_tuple *t, size_t n)
{
	size_t alen = c->family == AF_INET ? 4 : 16;

	for (size_t i = 0; i < n; i++)
		if (t[i].family == c->family && t[i].proto == c->proto && t[i].lport == c->rport &&
		    t[i].rport == c->lport && !memcmp(t[i].laddr, c->raddr, alen) &&
		    !memcmp(t[i].raddr, c->laddr, alen))
			return true;
	return false;
}

/* A connection on loopback to a process that stays here: @why names it. */
static int check_loopback_peer(const struct haul_net_tuple *t, size_t n, char *why, size_t wl)
{
	for (size_t i = 0; i < n; i++) {
		char ts[HAUL_NET_TEXT];

		if (!t[i].rport || !is_loopback_addr(t[i].family, t[i].raddr) ||
		    peer_in(&t[i], t, n))
			continue;
		haul_net_tuple_str(&t[i], ts, sizeof(ts));
		snprintf(why, wl,
			 "fd %d of pid %d: %s: its peer is a process on this host's loopback that "
			 "does not move (loopback does not reach another host); migrate that "
			 "process along (a common parent, or --cgroup), or have it connect over "
			 "a moved address",
			 t[i].fd, (int)t[i].pid, ts);
		return -EADDRNOTAVAIL;
	}
	return 0;
}

int haul_net_check_local(const struct haul_net_tuple *t, size_t n,
			 const struct haul_net_addr *moved, size_t nmoved,
			 const struct haul_net_addr *target, size_t ntarget, char *why, size_t wl)
{
	for (size_t i = 0; i < n; i++) {
		char ts[HAUL_NET_TEXT], as[64];
		int prefix = t[i].family == AF_INET ? 24 : 64;

		if (is_zero(t[i].laddr, t[i].family == AF_INET ? 4 : 16) || is_loopback(&t[i]))
			continue;
		if (addr_in(&t[i], moved, nmoved) || addr_in(&t[i], target, ntarget))
			continue;
		haul_net_tuple_str(&t[i], ts, sizeof(ts));
		haul_net_addr_str(t[i].family, t[i].laddr, -1, as, sizeof(as));
		snprintf(why, wl,
			 "fd %d: %s: local address %s is not on the target; add --move-address "
			 "%s/PREFIX (e.g. %s/%d) to move it, or give the target that address first",
			 t[i].fd, ts, as, as, as, prefix);
		return -EADDRNOTAVAIL;
	}
	return check_loopback_peer(t, n, why, wl);
}
