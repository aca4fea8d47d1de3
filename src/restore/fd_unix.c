/*
 * fd_unix.c - sockets: the two ends of a connected AF_UNIX pair that are
 * both fds of the process (a socketpair it talks to itself through, or a
 * connection to its own listener: fd_unix_named.c) are carried; any other
 * socket is refused by name.
 *
 * Classification: a socket:[ino] fd is this kind; its refuse hook names
 * every socket that is not AF_UNIX by protocol and address (fd_socket.c);
 * rst_unix_check_pairs, over all the process's sockets, refuses a unix
 * socket that is not connected, or whose peer is neither an fd of the
 * process nor of another process of its tree (fd_unix_tree.c) nor closed
 * (a stream or seqpacket end whose peer closed: peer_gone), and a
 * named datagram socket (sock_diag gives the peer inode, the state and
 * the queue); the refuse hook, a name that is a relative path and fds in
 * flight (SCM_RIGHTS) that cannot be carried.
 * Dump: type, peer inode, name, the peer's name and the stream bytes
 * waiting to be read, peeked (MSG_PEEK on a pidfd_getfd copy, not
 * consumed); with files in flight, in pieces cut where they ride
 * (fd_unix_stream.c).  Restore: one
 * socketpair per pair (named by its lower inode; with a name, connect and
 * accept: fd_unix_named.c), both ends parked; each
 * fd gets a dup of its end; once every fd exists, what an end had to read
 * is written into the other end.  A pair whose other end is a later
 * process's of the tree is made the same way, the other end handed over
 * to that process (fd_unix_tree.c).  An end whose peer closed is one end of
 * a new pair (named again if it was an accepted end) whose other end is
 * no fd: it writes the queue into this end and is closed with the parked
 * ends, so the process reads the bytes, then the end of the stream.  Not
 * carried: an ECONNRESET such an end would report once (the peer closed
 * with bytes unread; sk_err cannot be read without clearing it): it reads
 * the end of the stream instead.  A stream or seqpacket socket never
 * connected (unconnected) is a new socket of its type, bound to its name
 * again if it had one.
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

static bool unix_match(const struct rst_fd_probe *p)
{
	return S_ISSOCK(p->st->st_mode) && !strncmp(p->target, "socket:[", 8);
}

/* A name that is a relative path cannot be bound again: the directory it was bound in is gone. */
static int unix_refuse_relative(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	size_t len = 0;
	int sfd = rst_fd_copy(p->pid, p->fd), ret;

	if (sfd < 0)
		return sfd;
	ret = rst_unix_get_name(sfd, path, &len);
	close(sfd);
	if (ret || !len || path[0] == '\0' || path[0] == '/')
		return ret;
	snprintf(why, whylen,
		 "fd %d: unix socket bound to the relative path %.*s: the directory it was bound "
		 "in is not known (bind it to an absolute path)",
		 p->fd, (int)len, path);
	return -EOPNOTSUPP;
}

/*
 * Fds in flight (SCM_RIGHTS) in the queue of @p: what the dump's own peek
 * (fd_unix_msgs.c for datagram and seqpacket ends, fd_unix_stream.c for
 * stream ends) carries, on a copy, nothing consumed, its result dropped.
 * A queue that changes under a running process (-EIO) is left to the dump.
 */
static int unix_refuse_scm(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	Haul__Img__UnixPairFile *o;
	struct rst_unix_info u;
	int sfd, ret;

	if (rst_unix_diag(p->st->st_ino, &u) || !u.rqlen)
		return 0;
	o = malloc(sizeof(*o));
	if (!o)
		return -ENOMEM;
	haul__img__unix_pair_file__init(o);
	o->ino = p->st->st_ino;
	o->type = u.type;
	o->shutdown = u.shutdown & 3; /* shut for reads: the peek ends at the end of the queue */
	sfd = rst_fd_copy(p->pid, p->fd);
	if (sfd < 0)
		ret = sfd;
	else if (u.type == SOCK_STREAM)
		ret = rst_unix_peek_stream(p->pid, sfd, o, u.rqlen);
	else
		ret = rst_unix_peek_msgs(p->pid, sfd, o);
	if (sfd >= 0)
		close(sfd);
	haul__img__unix_pair_file__free_unpacked(o, NULL);
	if (ret == -EOPNOTSUPP)
		snprintf(why, whylen,
			 "fd %d: unix socket (socket:[%llu]) has file descriptors in flight "
			 "(SCM_RIGHTS) or messages in its queue that haul does not carry (see the "
			 "message above)",
			 p->fd, (unsigned long long)p->st->st_ino);
	return ret == -EOPNOTSUPP || ret == -ENOMEM ? ret : 0;
}

/* Only a unix socket can be a pair; any other is named by its family and addresses. */
static int unix_refuse(const struct rst_fd_probe *p, char *why, size_t whylen)
{
	char desc[256];
	int family, ret;

	ret = rst_sock_describe(p->pid, p->fd, &family, desc, sizeof(desc));
	if (ret)
		return ret;
	if (family != AF_UNIX) {
		snprintf(
			why, whylen,
			"fd %d: %s: this kind of socket is not supported (TCP, UDP and unix socketpairs are)",
			p->fd, desc);
		return -EOPNOTSUPP;
	}
	ret = rst_sock_refuse_filter(p->pid, p->fd, why, whylen);
	if (!ret)
		ret = unix_refuse_relative(p, why, whylen);
	return ret ? ret : unix_refuse_scm(p, why, whylen);
}

/* Ask sock_diag about unix socket @ino. -ENOENT: not a unix socket. */
int rst_unix_diag(uint32_t ino, struct rst_unix_info *u)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req r;
	} req;
	union {
		char buf[8192];
		struct nlmsghdr align;
	} rsp;
	struct nlmsghdr *nlh = &rsp.align;
	struct unix_diag_msg *m;
	struct rtattr *a;
	ssize_t n;
	int fd, len;

	memset(&req, 0, sizeof(req));
	memset(u, 0, sizeof(*u));
	req.nlh.nlmsg_len = sizeof(req);
	req.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	req.nlh.nlmsg_flags = NLM_F_REQUEST;
	req.r.sdiag_family = AF_UNIX;
	req.r.udiag_states = ~0u;
	req.r.udiag_ino = ino;
	req.r.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_NAME;
	req.r.udiag_cookie[0] = req.r.udiag_cookie[1] = ~0u;
	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return -errno;
	if (send(fd, &req, sizeof(req), 0) != sizeof(req)) {
		close(fd);
		return -errno;
	}
	n = recv(fd, rsp.buf, sizeof(rsp.buf), 0);
	close(fd);
	if (n < (ssize_t)NLMSG_LENGTH(sizeof(*m)) || !NLMSG_OK(nlh, (size_t)n))
		return -ENOENT;
	if (nlh->nlmsg_type == NLMSG_ERROR)
		return -ENOENT;
	m = NLMSG_DATA(nlh);
	u->type = m->udiag_type;
	u->state = m->udiag_state;
	len = nlh->nlmsg_len - NLMSG_LENGTH(sizeof(*m));
	for (a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
		if (a->rta_type == UNIX_DIAG_PEER && RTA_PAYLOAD(a) >= 4)
			memcpy(&u->peer, RTA_DATA(a), 4);
		else if (a->rta_type == UNIX_DIAG_RQLEN && RTA_PAYLOAD(a) >= 8) {
			memcpy(&u->rqlen, RTA_DATA(a), 4);
			memcpy(&u->wqlen, (const char *)RTA_DATA(a) + 4, 4);
		} else if (a->rta_type == UNIX_DIAG_NAME) {
			u->named = true;
		} else if (a->rta_type == UNIX_DIAG_SHUTDOWN && RTA_PAYLOAD(a) >= 1) {
			u->shutdown = *(const uint8_t *)RTA_DATA(a);
		}
	}
	return 0;
}

int rst_unix_refuse_shutdown(const struct rst_fd_probe *p, char *why, size_t wl)
{
	struct rst_unix_info u;

	if (rst_unix_diag((uint32_t)p->st->st_ino, &u) || !u.shutdown)
		return 0;
	snprintf(why, wl,
		 "fd %d: unix listener (socket:[%llu]) is shut down for %s; haul does not carry "
		 "a listener's shutdown yet, and restored open it would accept what the process "
		 "was told it would not",
		 p->fd, (unsigned long long)p->st->st_ino,
		 u.shutdown == 3  ? "reading and writing"
		 : u.shutdown & 1 ? "reading"
				  : "writing");
	return -EOPNOTSUPP;
}

int rst_unix_refuse_name_taken(const struct rst_fd_probe *p, const char *path, size_t len,
			       char *why, size_t wl)
{
	char at[64 + sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;

	if (!len || path[0] != '/' ||
	    (size_t)snprintf(at, sizeof(at), "/proc/%d/root%.*s", (int)p->pid, (int)len, path) >=
		    sizeof(at) ||
	    lstat(at, &st) || S_ISSOCK(st.st_mode))
		return 0;
	snprintf(why, wl,
		 "fd %d: unix socket bound to %.*s, whose name was unlinked since and now names "
		 "another file (mode %#o): haul binds a socket to its name again, which would "
		 "take that file's place; not supported (bind the socket to a name that stays)",
		 p->fd, (int)len, path, (unsigned)st.st_mode);
	return -EOPNOTSUPP;
}

/*
 * A socket is carried only as one end of a connected, unnamed AF_UNIX pair
 * whose other end is an fd of this process too (a socketpair it talks to
 * itself through); datagrams still queued are not carried.
 */
int rst_unix_check_pairs(pid_t pid, const struct rst_held_pipe *p, size_t n, char *why,
			 size_t whylen)
{
	for (size_t i = 0; i < n; i++) {
		struct rst_unix_info u;
		bool peer_here = false;

		if (!p[i].sock || p[i].inet)
			continue;
		if (rst_unix_diag(p[i].ino, &u)) {
			snprintf(why, whylen, "fd %d is a socket (socket:[%llu]), not AF_UNIX",
				 p[i].fd, (unsigned long long)p[i].ino);
			return -EOPNOTSUPP;
		}
		/* a client a listener that moves has not accepted yet (fd_unix_pending.c) */
		if (u.state == 1 && !u.peer && rst_unix_is_pending(pid, (uint32_t)p[i].ino))
			continue;
		if (rst_unix_peer_gone(&u))
			continue; /* its peer closed: made as a pair whose other end closes */
		if (u.state == 7 && !u.peer && u.type != SOCK_DGRAM)
			continue; /* never connected: a new socket (unconnected), bound if it was */
		for (size_t k = 0; k < n; k++)
			peer_here |= p[k].sock && u.peer && p[k].ino == u.peer;
		/* in a tree, the peer may be another process's (fd_unix_tree.c) */
		if (!peer_here && u.peer)
			peer_here = rst_unix_moving_holds(u.peer);
		if (u.state == 7 || !u.peer) { /* TCP_CLOSE, or a datagram socket others send to */
			snprintf(
				why, whylen,
				"fd %d is a socket (socket:[%llu]): a unix %s socket without a peer "
				"of its own (unconnected): not supported (unix listeners, datagram "
				"sockets and connections whose both ends move are)",
				p[i].fd, (unsigned long long)p[i].ino,
				u.type == SOCK_DGRAM	? "datagram"
				: u.type == SOCK_STREAM ? "stream"
							: "seqpacket");
			return -EOPNOTSUPP;
		}
		if (u.state != 1 || !peer_here) {
			snprintf(
				why, whylen,
				"fd %d is a socket (socket:[%llu]) connected to socket:[%u] outside "
				"the process and its tree (only pairs whose both ends move are "
				"supported; see --external for a peer that stays)",
				p[i].fd, (unsigned long long)p[i].ino, u.peer);
			return -EOPNOTSUPP;
		}
		if (u.named && u.type == SOCK_DGRAM) {
			snprintf(why, whylen,
				 "fd %d is a named datagram socket (socket:[%llu]) connected to a "
				 "socket of the process: not supported (only stream and seqpacket "
				 "connections between named sockets are)",
				 p[i].fd, (unsigned long long)p[i].ino);
			return -EOPNOTSUPP;
		}
	}
	return 0;
}

/* The name of the pair's end @sfd (an accepted or a bound end). */
static int dump_name(int sfd, Haul__Img__UnixPairFile *o)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	size_t len = 0;
	int ret = rst_unix_get_name(sfd, path, &len);

	if (ret || !len)
		return ret;
	o->name.data = malloc(len);
	if (!o->name.data)
		return -ENOMEM;
	memcpy(o->name.data, path, len);
	o->name.len = len;
	o->has_name = true;
	return 0;
}

/* The name of the peer of @sfd (getpeername), when it has one. */
static int dump_peer_name(int sfd, Haul__Img__UnixPairFile *o)
{
	struct sockaddr_un sun;
	socklen_t sl = sizeof(sun);
	size_t len;

	if (getpeername(sfd, (struct sockaddr *)&sun, &sl) < 0)
		return -errno;
	if (sl <= offsetof(struct sockaddr_un, sun_path))
		return 0;
	len = sl - offsetof(struct sockaddr_un, sun_path);
	if (sun.sun_path[0] != '\0')
		len = strnlen(sun.sun_path, len);
	o->peer_name.data = malloc(len);
	if (!o->peer_name.data)
		return -ENOMEM;
	memcpy(o->peer_name.data, sun.sun_path, len);
	o->peer_name.len = len;
	o->has_peer_name = true;
	return 0;
}

/* Type, peer, names and the bytes waiting in one end of a pair (peeked, not consumed). */
static int dump_unix(pid_t pid, int fd, Haul__Img__UnixPairFile *o)
{
	struct rst_unix_info u, pu;
	int pidfd, sfd, ret = 0;
	bool peer_named;
	ssize_t n;

	ret = rst_unix_diag(o->ino, &u);
	if (ret)
		return ret;
	o->type = u.type;
	o->peer = u.peer;
	o->has_shutdown = u.shutdown != 0;
	o->shutdown = u.shutdown & 3;
	peer_named = u.peer && !rst_unix_diag(u.peer, &pu) && pu.named;
	/* not accepted yet: its peer has no inode, but the listener's name */
	if (!u.peer && u.type != SOCK_DGRAM && rst_unix_is_pending(pid, (uint32_t)o->ino))
		o->has_pending = o->pending = peer_named = true;
	else if (rst_unix_peer_gone(&u)) /* getpeername: its name, if any */
		o->has_peer_gone = o->peer_gone = peer_named = true;
	else if (u.state == 7 && !u.peer && u.type != SOCK_DGRAM)
		o->has_unconnected = o->unconnected = true;
	if (!u.rqlen && !u.named && !peer_named)
		return 0;
	pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return -errno;
	sfd = syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	close(pidfd);
	if (sfd < 0)
		return -errno;
	if (u.named)
		ret = dump_name(sfd, o);
	if (!ret && peer_named)
		ret = dump_peer_name(sfd, o);
	if (ret || !u.rqlen) {
		close(sfd);
		return ret;
	}
	if (u.type != SOCK_STREAM) {
		ret = rst_unix_peek_msgs(pid, sfd, o);
		close(sfd);
		return ret;
	}
	ret = rst_unix_peek_stream(pid, sfd, o, u.rqlen);
	if (ret != 1) {
		close(sfd);
		return ret;
	}
	ret = 0; /* no files in flight: the bytes are peeked whole */
	o->data.data = malloc(u.rqlen);
	if (!o->data.data) {
		close(sfd);
		return -ENOMEM;
	}
	n = recv(sfd, o->data.data, u.rqlen, MSG_PEEK | MSG_DONTWAIT);
	close(sfd);
	if (n != (ssize_t)u.rqlen) {
		pr_err("cannot peek the %u bytes queued on socket fd %d of pid %d", u.rqlen, fd,
		       (int)pid);
		return -EIO;
	}
	o->has_data = true;
	o->data.len = n;
	return ret;
}

static int unix_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		     Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__UnixPairFile *u = malloc(sizeof(*u));
	int ret;

	(void)prev;
	(void)nprev;
	if (!u)
		return -ENOMEM;
	haul__img__unix_pair_file__init(u);
	o->unix_pair = u;
	u->ino = p->st->st_ino;
	ret = rst_unix_passcred(p->pid, p->fd);
	if (ret < 0)
		return ret;
	u->has_passcred = u->passcred = ret;
	ret = dump_unix(p->pid, p->fd, u);
	return ret ? ret : rst_unix_opts_dump(p->pid, p->fd, (int)u->type, &u->opts, &u->n_opts);
}

/* A name bound again at the restore: an absolute path or an abstract name. */
static bool name_ok(const ProtobufCBinaryData *n)
{
	if (!n->len || n->len >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return false;
	return n->data[0] == '\0' || (n->data[0] == '/' && !memchr(n->data, '\0', n->len));
}

/* A pair of stream, datagram or seqpacket sockets. */
static int unix_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	if (!f->unix_pair) {
		snprintf(why, wl, "file %u is a unix socketpair end without its unix_pair part",
			 f->id);
		return -EBADMSG;
	}
	if (rst_unix_opts_valid(f, why, wl))
		return -EBADMSG;
	if (f->unix_pair->type != SOCK_STREAM && f->unix_pair->type != SOCK_DGRAM &&
	    f->unix_pair->type != SOCK_SEQPACKET) {
		snprintf(why, wl, "file %u (unix_pair).type: %u (stream, dgram or seqpacket)",
			 f->id, f->unix_pair->type);
		return -EBADMSG;
	}
	for (size_t i = 0; i < f->unix_pair->n_inflight; i++) {
		const Haul__Img__UnixInflight *fl = f->unix_pair->inflight[i];
		/* a file a process holds is borrowed, any other opened by its path */
		bool held = fl->has_holder_pid && fl->has_holder_fd && fl->holder_pid > 0 &&
			    fl->holder_fd >= 0;

		/* a pipe end or an eventfd no process holds: made again (fd_unix_carry.c) */
		bool made = fl->has_kind && fl->kind >= 1 && fl->kind <= 5;

		if (fl->msg >= f->unix_pair->n_msgs || (!held && !made && fl->path[0] != '/') ||
		    (fl->has_kind && !made)) {
			snprintf(why, wl,
				 "file %u (unix_pair).inflight[%zu]: no such message, not an "
				 "absolute path, or an unknown kind",
				 f->id, i);
			return -EBADMSG;
		}
	}
	/* a stream's queue is cut into pieces where files ride (fd_unix_stream.c) */
	if (f->unix_pair->n_msgs && f->unix_pair->type == SOCK_STREAM &&
	    (f->unix_pair->has_data || !f->unix_pair->n_inflight)) {
		snprintf(why, wl,
			 "file %u (unix_pair).msgs: pieces of a stream queue with its data too, or "
			 "without files in flight",
			 f->id);
		return -EBADMSG;
	}
	if (f->unix_pair->has_name && !name_ok(&f->unix_pair->name)) {
		snprintf(why, wl,
			 "file %u (unix_pair).name: %zu bytes, not an absolute path or an "
			 "abstract name",
			 f->id, f->unix_pair->name.len);
		return -EBADMSG;
	}
	if (f->unix_pair->has_pending && f->unix_pair->pending &&
	    (!f->unix_pair->has_peer_name || f->unix_pair->has_data || f->unix_pair->n_msgs)) {
		snprintf(why, wl,
			 "file %u (unix_pair): a connection not accepted yet without its "
			 "listener's name, or with data",
			 f->id);
		return -EBADMSG;
	}
	if (f->unix_pair->peer_gone &&
	    (f->unix_pair->peer || f->unix_pair->type == SOCK_DGRAM || f->unix_pair->pending)) {
		snprintf(why, wl,
			 "file %u (unix_pair): an end whose peer closed with a peer inode, as a "
			 "datagram socket, or not accepted yet",
			 f->id);
		return -EBADMSG;
	}
	if (f->unix_pair->unconnected &&
	    (f->unix_pair->peer || f->unix_pair->type == SOCK_DGRAM || f->unix_pair->has_data ||
	     f->unix_pair->n_msgs || f->unix_pair->pending || f->unix_pair->peer_gone)) {
		snprintf(why, wl,
			 "file %u (unix_pair): an unconnected socket with a peer, a queue, or as "
			 "a datagram socket",
			 f->id);
		return -EBADMSG;
	}
	if (f->unix_pair->has_shutdown && f->unix_pair->shutdown > 3) {
		snprintf(why, wl, "file %u (unix_pair).shutdown: %u (1, 2 or 3)", f->id,
			 f->unix_pair->shutdown);
		return -EBADMSG;
	}
	if (f->unix_pair->has_peer_name && !name_ok(&f->unix_pair->peer_name)) {
		snprintf(why, wl,
			 "file %u (unix_pair).peer_name: %zu bytes, not an absolute path or an "
			 "abstract name",
			 f->id, f->unix_pair->peer_name.len);
		return -EBADMSG;
	}
	return 0;
}

/* The other end of pair end @u in the image of the process, or NULL. */
static const Haul__Img__UnixPairFile *peer_of(const struct rst_fd_rctx *x,
					      const Haul__Img__UnixPairFile *u)
{
	for (size_t i = 0; i < x->ps->n_files; i++) {
		const Haul__Img__UnixPairFile *p = x->ps->files[i]->unix_pair;

		if (p && p->ino == u->peer)
			return p;
	}
	return NULL;
}

/* The parked pair @id of a connection with a name: the one made for an earlier fd, else made now. */
static int named_parked_pair(struct rst_target *t, struct rst_fd_rctx *x, uint64_t id,
			     const Haul__Img__UnixPairFile *u, const Haul__Img__UnixPairFile *peer,
			     struct rst_tpipe **out)
{
	struct rst_tpipe *p;
	int32_t fds[2];
	int ret;

	for (size_t i = 0; i < x->npipes; i++)
		if (x->pipes[i].id == id && x->pipes[i].sock) {
			*out = &x->pipes[i];
			return 0;
		}
	if (!peer) {
		pr_err("unix socket %llu is named but its peer %llu is not in the image of the "
		       "process: the image is damaged, dump it again",
		       (unsigned long long)u->ino, (unsigned long long)u->peer);
		return -EBADMSG;
	}
	ret = rst_unix_named_pair(t, x, u, peer, fds);
	if (ret)
		return ret;
	p = &x->pipes[x->npipes];
	memset(p, 0, sizeof(*p));
	p->id = id;
	p->sock = true;
	ret = rst_fd_park(t, x, fds[0], &p->r);
	if (!ret)
		ret = rst_fd_park(t, x, fds[1], &p->w);
	if (ret)
		return ret;
	x->npipes++;
	*out = p;
	return 0;
}

/* A socket never connected: a new one of its type, bound to its name if it had one. */
static int lone_restore(struct rst_target *t, const Haul__Img__UnixPairFile *u, int *src)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	socklen_t sl = offsetof(struct sockaddr_un, sun_path) + u->name.len;
	long res;
	int ret;

	ret = rst_rcall(t, SYS_socket, AF_UNIX, u->type | SOCK_CLOEXEC, 0, 0, 0, 0, &res);
	if (ret)
		return ret;
	*src = (int)res;
	if (!u->has_name || !u->name.len)
		return 0;
	memcpy(sun.sun_path, u->name.data, u->name.len);
	if (sun.sun_path[0] != '\0') {
		ret = rst_unix_clear_path(sun.sun_path); /* its own socket file, left stale */
		sl++;
	}
	if (!ret)
		ret = rst_poke(t, rst_scratch(t), &sun, sl);
	if (!ret)
		ret = rst_rcall(t, SYS_bind, *src, rst_scratch(t), sl, 0, 0, 0, NULL);
	if (ret)
		pr_err("cannot bind unconnected unix socket %llu to its name again: %s",
		       (unsigned long long)u->ino, strerror(-ret));
	return ret;
}

/*
 * An end whose peer closed: one end of a new pair (named again through a
 * listener if it had a name, fd_unix_named.c), the other end, a virtual
 * peer no fd names, parked: it writes the queue in and is closed at the
 * finish.  The pair is named by this end's inode, the peer's above any.
 */
static int gone_restore(struct rst_target *t, struct rst_fd_rctx *x,
			const Haul__Img__UnixPairFile *u, int *src, bool *shared)
{
	Haul__Img__UnixPairFile vpeer = HAUL__IMG__UNIX_PAIR_FILE__INIT;
	struct rst_tpipe *p;
	bool made;
	int ret;

	vpeer.ino = u->ino | (1ULL << 63);
	vpeer.peer = u->ino;
	vpeer.type = u->type;
	vpeer.has_name = u->has_peer_name;
	vpeer.name = u->peer_name;
	if (u->has_name)
		ret = named_parked_pair(t, x, u->ino, u, &vpeer, &p);
	else
		ret = rst_fd_parked_pair(t, x, u->ino, true, (int)u->type, &p, &made);
	if (ret)
		return ret;
	if (u->has_data)
		p->data = &u->data;
	*shared = true;
	*src = p->r;
	return 0;
}

/* The end of the pair that @f names; the pair is made on its first fd (named: fd_unix_named.c). */
static int unix_restore(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
			const Haul__Img__FdEntry *e, const char *path, int *src, bool *shared)
{
	const Haul__Img__UnixPairFile *u = f->unix_pair;
	/* A pair is named by its lower inode; its end with that inode is fds[0]. */
	uint64_t id = u->ino < u->peer ? u->ino : u->peer;
	Haul__Img__UnixPairFile vpeer = HAUL__IMG__UNIX_PAIR_FILE__INIT;
	const Haul__Img__UnixPairFile *peer;
	struct rst_tpipe *p;
	bool made, far = false;
	int ret;

	(void)e;
	(void)path;
	*shared = false;
	/* a connection its listener had not accepted: connected again (fd_unix_pending.c) */
	if (u->has_pending && u->pending)
		return rst_unix_pending_client(t, u, src);
	if (u->peer_gone)
		return gone_restore(t, x, u, src, shared);
	if (u->unconnected)
		return lone_restore(t, u, src);
	/* an end an earlier process of the tree made (fd_unix_tree.c) */
	ret = rst_unix_tree_import(t, x->park, u, src);
	if (ret != -ENOENT)
		return ret;
	*shared = true;
	peer = peer_of(x, u);
	if (!peer && rst_unix_tree_on()) {
		/* the peer is a later process's: remade from what this end knows of it */
		vpeer.ino = u->peer;
		vpeer.peer = u->ino;
		vpeer.type = u->type;
		vpeer.has_name = u->has_peer_name;
		vpeer.name = u->peer_name;
		peer = &vpeer;
		far = true;
	}
	if (u->has_name || (peer && peer->has_name))
		ret = named_parked_pair(t, x, id, u, peer, &p);
	else
		ret = rst_fd_parked_pair(t, x, id, true, (int)u->type, &p, &made);
	if (!ret && far)
		ret = u->ino == id ? rst_unix_tree_export(t, u->peer, p->w, p->r)
				   : rst_unix_tree_export(t, u->peer, p->r, p->w);
	if (ret)
		return ret;
	if (u->has_data) {
		if (u->ino == id)
			p->data = &u->data;
		else
			p->data1 = &u->data;
	}
	*src = u->ino == id ? p->r : p->w;
	return 0;
}

/* Every fd exists: what each end had to read goes in through the other end. */
static int unix_finish(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl)
{
	int ret = rst_unix_refill_msgs(t, x);

	/* one process restored alone: its pending clients and listeners are all done */
	if (!rst_unix_tree_on())
		rst_unix_pending_reset();

	if (ret) {
		snprintf(why, wl, "cannot queue the messages of a unix pair again: %s",
			 strerror(-ret));
		return ret;
	}
	return rst_fd_refill_parked(t, x, true, why, wl);
}

const struct rst_fd_ops rst_fd_unix_pair = {
	.name = "unix socketpair",
	.kind = HAUL__IMG__FD_KIND__FD_UNIX_PAIR,
	.version = 6, /* 6: SO_RCVTIMEO, SO_SNDTIMEO (sock_timeo.c) */
	.match = unix_match,
	.refuse = unix_refuse,
	.dump = unix_dump,
	.validate = unix_validate,
	.restore = unix_restore,
	.setup = rst_unix_setup,
	.finish = unix_finish,
};
