/*
 * fd_unix_dgram.c - unix datagram sockets that are not one end of a pair:
 * a named socket others send to (a syslog-like /dev/log), the senders
 * connected to it one way or sending by sendto, and plain unbound ones.
 *
 * Classification: a unix datagram socket whose peer, if any, is not
 * connected back to it (a mutual pair is FD_UNIX_PAIR).  Refused by name:
 * a relative path name, a peer neither the process nor its tree holds (an
 * unnamed one connected outside is an external endpoint: fd_external.c),
 * fds in flight (SCM_RIGHTS) or a datagram too large for the stub's
 * scratch area in its queue.
 * Dump (pidfd_getfd copy): its name, its peer's inode and name, and every
 * queued datagram with its sender's name, peeked one after the other
 * (SO_PEEK_OFF set for the time of the dump and put back, as for pairs).
 * Restore (injected in the stub): socket(), bind() to the name (a stale
 * socket inode at a path goes first).  A socket connected to one whose
 * name is bound already in this restore connects at once; else haul keeps
 * a copy of it and connects it as soon as that socket is bound: in the
 * stub of the process that binds it (the copy passed over SCM_RIGHTS),
 * whichever process of the tree that is.  The queued datagrams are sent
 * again right after the bind, in order, each from a socket with its
 * sender's name: the sender itself when this restore made it already
 * (this process's fd, or a copy of another process's), else a temporary
 * socket bound to that name and closed again (a path unlinked, so the
 * sender binds it later); unnamed senders share one unnamed socket.
 * SO_PASSCRED is carried (fd_unix_opts.c), the queued datagrams'
 * credentials are not: sent again, they carry the restored process's.
 */
#define LOG_PREFIX "unix: "
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

#define ADDR_ROOM  128 /* the address, then the datagram, in the scratch area */
#define DGRAM_MAX  (TRAMP_SCRATCH - ADDR_ROOM) /* a larger queued datagram is refused */
#define DGRAMS_MAX 65536		       /* more queued datagrams are refused */
#define NAME_MAX_  (sizeof(((struct sockaddr_un *)0)->sun_path))

/* ---- classification and dump --------------------------------------------------- */

static bool dgram_match(const struct rst_fd_probe *p)
{
	struct rst_unix_info u, pu;

	if (!S_ISSOCK(p->st->st_mode) || strncmp(p->target, "socket:[", 8))
		return false;
	if (rst_unix_diag(p->st->st_ino, &u) || u.type != SOCK_DGRAM)
		return false;
	/* a mutual pair is FD_UNIX_PAIR's */
	return !u.peer || rst_unix_diag(u.peer, &pu) || pu.peer != p->st->st_ino;
}

static int dup_bytes(ProtobufCBinaryData *d, const void *src, size_t len)
{
	d->data = malloc(len ? len : 1);
	if (!d->data)
		return -ENOMEM;
	memcpy(d->data, src, len);
	d->len = len;
	return 0;
}

/* The sun_path bytes of @sun (@sl long): a path without its NUL; 0 when unnamed. */
static size_t sun_len(const struct sockaddr_un *sun, socklen_t sl)
{
	size_t len;

	if (sl <= offsetof(struct sockaddr_un, sun_path))
		return 0;
	len = sl - offsetof(struct sockaddr_un, sun_path);
	return sun->sun_path[0] != '\0' ? strnlen(sun->sun_path, len) : len;
}

/* Peek the next datagram of @sfd into @o; 1 when none is left. */
static int peek_one(int sfd, Haul__Img__UnixDgramFile *o, char *buf, char *why, size_t wl)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * RST_UNIX_FDS_MAX)];
		struct cmsghdr align;
	} ctl;
	struct sockaddr_un from;
	struct iovec iov = {buf, DGRAM_MAX};
	struct msghdr m = {.msg_name = &from,
			   .msg_namelen = sizeof(from),
			   .msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl.b,
			   .msg_controllen = sizeof(ctl.b)};
	Haul__Img__UnixDgramMsg **nm, *d;
	size_t nfds;
	int ret;
	ssize_t n;

	n = recvmsg(sfd, &m, MSG_PEEK | MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN ? 1 : -errno;
	nfds = rst_unix_drop_fds(&m);
	if (nfds || (m.msg_flags & MSG_CTRUNC)) {
		snprintf(why, wl,
			 "unix datagram socket socket:[%llu] has file descriptors in flight "
			 "(SCM_RIGHTS) in its queue, which haul does not carry: retry once the "
			 "process has read them",
			 (unsigned long long)o->ino);
		return -EOPNOTSUPP;
	}
	if (n > (ssize_t)DGRAM_MAX || o->n_msgs >= DGRAMS_MAX) {
		snprintf(
			why, wl,
			"unix datagram socket socket:[%llu] has a datagram of %zd bytes queued (at "
			"most %lu are carried) or more than %d datagrams: retry once the process "
			"has read them",
			(unsigned long long)o->ino, n, (unsigned long)DGRAM_MAX, DGRAMS_MAX);
		return -EOPNOTSUPP;
	}
	nm = realloc(o->msgs, (o->n_msgs + 1) * sizeof(*nm));
	if (!nm)
		return -ENOMEM;
	o->msgs = nm;
	d = malloc(sizeof(*d));
	if (!d)
		return -ENOMEM;
	haul__img__unix_dgram_msg__init(d);
	nm[o->n_msgs++] = d;
	ret = dup_bytes(&d->data, buf, (size_t)n);
	if (!ret && sun_len(&from, m.msg_namelen)) {
		d->has_sender = true;
		ret = dup_bytes(&d->sender, from.sun_path, sun_len(&from, m.msg_namelen));
	}
	return ret;
}

/* Every queued datagram of @sfd, in order, not consumed. */
static int peek_all(int sfd, Haul__Img__UnixDgramFile *o, char *why, size_t wl)
{
	int old = -1, ret;
	char *buf = malloc(DGRAM_MAX);

	if (!buf)
		return -ENOMEM;
	ret = rst_unix_peek_start(sfd, &old);
	if (ret) {
		snprintf(why, wl, "cannot peek the queue of unix datagram socket socket:[%llu]: %s",
			 (unsigned long long)o->ino, strerror(-ret));
		free(buf);
		return ret;
	}
	while (!ret)
		ret = peek_one(sfd, o, buf, why, wl);
	rst_unix_peek_end(sfd, o->ino, old);
	free(buf);
	return ret == 1 ? 0 : ret;
}

/* Name, peer and queue of fd @p into @o; @why says what is refused. */
static int dump_dgram(const struct rst_fd_probe *p, Haul__Img__UnixDgramFile *o, char *why,
		      size_t wl)
{
	char path[NAME_MAX_];
	struct rst_unix_info u;
	struct sockaddr_un sun;
	socklen_t sl = sizeof(sun);
	size_t len = 0;
	int sfd, ret;

	o->ino = p->st->st_ino;
	ret = rst_unix_diag(p->st->st_ino, &u);
	if (!ret)
		ret = rst_unix_passcred(p->pid, p->fd);
	if (ret < 0)
		return ret;
	o->has_passcred = o->passcred = ret;
	o->has_shutdown = u.shutdown != 0;
	o->shutdown = u.shutdown & 3;
	ret = rst_unix_opts_dump(p->pid, p->fd, SOCK_DGRAM, &o->opts, &o->n_opts);
	if (ret)
		return ret;
	sfd = rst_fd_copy(p->pid, p->fd);
	if (sfd < 0)
		return sfd;
	ret = rst_unix_get_name(sfd, path, &len);
	if (!ret && len) {
		o->has_name = true;
		ret = dup_bytes(&o->name, path, len);
	}
	if (!ret && u.peer) {
		o->has_peer = true;
		o->peer = u.peer;
		if (getpeername(sfd, (struct sockaddr *)&sun, &sl) == 0 && sun_len(&sun, sl)) {
			o->has_peer_name = true;
			ret = dup_bytes(&o->peer_name, sun.sun_path, sun_len(&sun, sl));
		}
	}
	if (!ret && u.rqlen)
		ret = peek_all(sfd, o, why, wl);
	close(sfd);
	return ret;
}

static int dgram_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	Haul__Img__UnixDgramFile *op, o;
	int ret = rst_sock_refuse_filter(p->pid, p->fd, why, wl);

	if (ret)
		return ret;
	op = malloc(sizeof(*op));
	if (!op)
		return -ENOMEM;
	haul__img__unix_dgram_file__init(op);
	ret = dump_dgram(p, op, why, wl);
	o = *op;
	if (ret == -EOPNOTSUPP) { /* its reason names no fd */
		char tmp[512];

		snprintf(tmp, sizeof(tmp), "fd %d: %s", p->fd, why);
		snprintf(why, wl, "%s", tmp);
	}

	if (!ret && o.has_name && o.name.data[0] != '/' && o.name.data[0] != '\0') {
		snprintf(why, wl,
			 "fd %d: unix datagram socket bound to the relative path %.*s: the "
			 "directory it was bound in is not known (bind it to an absolute path)",
			 p->fd, (int)o.name.len, o.name.data);
		ret = -EOPNOTSUPP;
	}
	if (!ret && o.has_name)
		ret = rst_unix_refuse_name_taken(p, (const char *)o.name.data, o.name.len, why, wl);
	if (!ret && !o.has_name && o.n_msgs) {
		/* queued datagrams are sent again to the socket's name: it has none */
		snprintf(why, wl,
			 "fd %d: unnamed unix datagram socket (socket:[%llu]) with %zu datagrams "
			 "waiting to be read; haul sends them again to the socket's name, and it "
			 "has none: retry once the process has read them",
			 p->fd, (unsigned long long)o.ino, o.n_msgs);
		ret = -EOPNOTSUPP;
	} else if (!ret && o.has_peer && (!o.has_peer_name || !rst_unix_peer_held(p->pid, o.ino))) {
		snprintf(why, wl,
			 "fd %d: unix datagram socket connected to %s%.*s (socket:[%llu]) outside "
			 "the process and its tree: only sockets that move can be its peer",
			 p->fd, o.has_peer_name ? "" : "an unnamed socket",
			 o.has_peer_name ? (int)o.peer_name.len : 0,
			 o.has_peer_name ? (const char *)o.peer_name.data : "",
			 (unsigned long long)o.peer);
		ret = -EOPNOTSUPP;
	}
	haul__img__unix_dgram_file__free_unpacked(op, NULL);
	return ret;
}

static int dgram_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		      Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__UnixDgramFile *d = malloc(sizeof(*d));
	char why[512] = "";
	int ret;

	(void)prev;
	(void)nprev;
	if (!d)
		return -ENOMEM;
	haul__img__unix_dgram_file__init(d);
	o->unix_dgram = d;
	ret = dump_dgram(p, d, why, sizeof(why));
	if (ret == -EOPNOTSUPP)
		pr_err("fd %d of pid %d: %s", p->fd, (int)p->pid, why);
	return ret;
}

static bool name_ok(const ProtobufCBinaryData *n)
{
	if (!n->len || n->len >= NAME_MAX_)
		return false;
	return n->data[0] == '\0' || (n->data[0] == '/' && !memchr(n->data, '\0', n->len));
}

static int dgram_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	const Haul__Img__UnixDgramFile *d = f->unix_dgram;

	if (!d || rst_unix_opts_valid(f, why, wl)) {
		if (!d)
			snprintf(why, wl,
				 "file %u is a unix datagram socket without its unix_dgram part",
				 f->id);
		return -EBADMSG;
	}
	if ((d->has_name && !name_ok(&d->name)) || (d->has_peer_name && !name_ok(&d->peer_name)) ||
	    (d->has_peer && !d->has_peer_name)) {
		snprintf(why, wl, "file %u (unix_dgram): a name or peer that cannot be bound again",
			 f->id);
		return -EBADMSG;
	}
	if (d->has_shutdown && d->shutdown > 3) {
		snprintf(why, wl, "file %u (unix_dgram).shutdown: %u (1, 2 or 3)", f->id,
			 d->shutdown);
		return -EBADMSG;
	}
	if (d->n_msgs && (!d->has_name || !d->name.len)) {
		snprintf(why, wl,
			 "file %u (unix_dgram): datagrams queued on a socket without a name",
			 f->id);
		return -EBADMSG;
	}
	for (size_t i = 0; i < d->n_msgs; i++)
		if (d->msgs[i]->data.len > DGRAM_MAX ||
		    (d->msgs[i]->has_sender && !name_ok(&d->msgs[i]->sender))) {
			snprintf(why, wl,
				 "file %u (unix_dgram).msgs[%zu]: over %lu bytes or a bad sender",
				 f->id, i, (unsigned long)DGRAM_MAX);
			return -EBADMSG;
		}
	return 0;
}

/* ---- restore --------------------------------------------------------------------- */

/* Sockets bound in this restore (by inode), and sockets waiting to connect to one. */
struct dg_wait {
	uint64_t peer;
	int fd; /* haul's copy */
};

static __thread struct {
	uint64_t *bound;
	size_t nbound;
	struct dg_wait *wait;
	size_t nwait;
} dg;

void rst_unix_dgram_reset(void)
{
	for (size_t i = 0; i < dg.nwait; i++) {
		pr_warn("unix datagram socket connected to socket %llu: no process bound it, so "
			"it stays unconnected",
			(unsigned long long)dg.wait[i].peer);
		close(dg.wait[i].fd);
	}
	free(dg.bound);
	free(dg.wait);
	memset(&dg, 0, sizeof(dg));
}

static bool bound_here(uint64_t ino)
{
	for (size_t i = 0; i < dg.nbound; i++)
		if (dg.bound[i] == ino)
			return true;
	return false;
}

/* @name as a sockaddr_un at the scratch area; its length in *@sl. */
static int put_addr(struct rst_target *t, const ProtobufCBinaryData *name, socklen_t *sl)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	memcpy(sun.sun_path, name->data, name->len);
	*sl = offsetof(struct sockaddr_un, sun_path) + name->len + (name->data[0] != '\0');
	return rst_poke(t, rst_scratch(t), &sun, *sl);
}

static void close_remote(struct rst_target *t, int fd)
{
	if (fd >= 0)
		rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
}

/* A new unix datagram socket in the stub, bound to @name if it has one. */
static int new_sock(struct rst_target *t, const ProtobufCBinaryData *name, int *fd)
{
	char path[NAME_MAX_ + 1];
	socklen_t sl;
	long res;
	int ret;

	ret = rst_rcall(t, SYS_socket, AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, 0, 0, 0, &res);
	if (ret)
		return ret;
	*fd = (int)res;
	if (!name || !name->len)
		return 0;
	if (name->data[0] != '\0') {
		memcpy(path, name->data, name->len);
		path[name->len] = '\0';
		ret = rst_unix_clear_path(path);
	}
	if (!ret)
		ret = put_addr(t, name, &sl);
	if (!ret)
		ret = rst_rcall(t, SYS_bind, *fd, rst_scratch(t), sl, 0, 0, 0, NULL);
	if (ret)
		close_remote(t, *fd);
	return ret;
}

/* Unlink the path a temporary socket was bound to, so that its owner binds it later. */
static void drop_name(const ProtobufCBinaryData *name)
{
	char path[NAME_MAX_ + 1];

	if (!name->len || name->data[0] == '\0')
		return;
	memcpy(path, name->data, name->len);
	path[name->len] = '\0';
	unlink(path);
}

static bool same_name(const Haul__Img__UnixDgramFile *d, const ProtobufCBinaryData *n)
{
	return d && d->has_name && d->name.len == n->len && !memcmp(d->name.data, n->data, n->len);
}

static bool named_dgram(const Haul__Img__FileObject *f, const void *arg)
{
	return same_name(f->unix_dgram, arg);
}

/*
 * The socket to send a datagram of sender @name from: the sender itself
 * if this restore made it (*@own: this process's fd; else a copy to
 * close), else a temporary one bound to @name (*@temp).
 */
static int sender_sock(struct rst_target *t, struct rst_fd_rctx *x, const ProtobufCBinaryData *name,
		       int *fd, bool *own, bool *temp)
{
	*own = *temp = false;
	for (size_t i = 0; i < x->cur; i++) {
		const Haul__Img__FileObject *f = rst_fd_file(x->ps, x->ps->fds[i]->file_id);

		if (f && same_name(f->unix_dgram, name)) {
			*fd = x->ps->fds[i]->fd;
			*own = true;
			return 0;
		}
	}
	if (rst_share_borrow(t, x->park, named_dgram, name, fd) == 0)
		return 0;
	*temp = true;
	return new_sock(t, name, fd);
}

/* Send datagram @m to @d's name (remote fd @self) from its sender's name. */
static int send_one(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__UnixDgramFile *d,
		    int self, const Haul__Img__UnixDgramMsg *m, int *anon)
{
	int fd = -1, ret = 0;
	bool own = false, temp = false;
	socklen_t sl;
	long res;

	if (!m->has_sender) {
		if (*anon < 0)
			ret = new_sock(t, NULL, anon);
		fd = *anon;
		own = true;
	} else if (same_name(d, &m->sender)) {
		fd = self; /* it sent to itself */
		own = true;
	} else {
		ret = sender_sock(t, x, &m->sender, &fd, &own, &temp);
	}
	if (!ret)
		ret = put_addr(t, &d->name, &sl);
	if (!ret)
		ret = rst_poke(t, rst_scratch(t) + ADDR_ROOM, m->data.data, m->data.len);
	if (!ret)
		ret = rst_rcall(t, SYS_sendto, fd, rst_scratch(t) + ADDR_ROOM, m->data.len,
				MSG_DONTWAIT, rst_scratch(t), sl, &res);
	if (!ret && res != (long)m->data.len)
		ret = -EMSGSIZE;
	if (!own && fd >= 0)
		close_remote(t, fd);
	if (temp && fd >= 0)
		drop_name(&m->sender);
	return ret;
}

/* Connect every socket waiting for @d (remote fd @fd, bound now) to it, in this stub. */
static int connect_waiting(struct rst_target *t, const Haul__Img__UnixDgramFile *d)
{
	int ret = 0;

	for (size_t i = 0; i < dg.nwait && !ret;) {
		socklen_t sl;
		int rfd = -1;

		if (dg.wait[i].peer != d->ino) {
			i++;
			continue;
		}
		ret = rst_ext_push_fd(t, dg.wait[i].fd, &rfd);
		if (!ret)
			ret = put_addr(t, &d->name, &sl);
		if (!ret)
			ret = rst_rcall(t, SYS_connect, rfd, rst_scratch(t), sl, 0, 0, 0, NULL);
		close_remote(t, rfd);
		close(dg.wait[i].fd);
		dg.wait[i] = dg.wait[--dg.nwait];
	}
	return ret;
}

static int note_bound(uint64_t ino)
{
	uint64_t *b = realloc(dg.bound, (dg.nbound + 1) * sizeof(*b));

	if (!b)
		return -ENOMEM;
	dg.bound = b;
	dg.bound[dg.nbound++] = ino;
	return 0;
}

/* @d's connection to its peer: now if the peer is bound, else once it is. */
static int connect_peer(struct rst_target *t, const Haul__Img__UnixDgramFile *d, int fd)
{
	struct dg_wait *w;
	socklen_t sl;
	int ret;

	if (bound_here(d->peer)) {
		ret = put_addr(t, &d->peer_name, &sl);
		return ret ? ret : rst_rcall(t, SYS_connect, fd, rst_scratch(t), sl, 0, 0, 0, NULL);
	}
	w = realloc(dg.wait, (dg.nwait + 1) * sizeof(*w));
	if (!w)
		return -ENOMEM;
	dg.wait = w;
	w[dg.nwait].peer = d->peer;
	w[dg.nwait].fd = (int)syscall(SYS_pidfd_getfd, t->pidfd, fd, 0);
	if (w[dg.nwait].fd < 0)
		return -errno;
	dg.nwait++;
	return 0;
}

static int dgram_restore(struct rst_target *t, struct rst_fd_rctx *x,
			 const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			 const char *path, int *tmp, bool *shared)
{
	const Haul__Img__UnixDgramFile *d = f->unix_dgram;
	int fd = -1, anon = -1, ret;

	(void)e;
	(void)path;
	*shared = false;
	ret = new_sock(t, d->has_name ? &d->name : NULL, &fd);
	if (ret) {
		pr_err("cannot make unix datagram socket %llu%s%.*s again: %s",
		       (unsigned long long)d->ino, d->has_name ? " on " : "",
		       d->has_name && d->name.data[0] ? (int)d->name.len : 0,
		       d->has_name ? (const char *)d->name.data : "", strerror(-ret));
		return ret;
	}
	*tmp = fd;
	if (d->has_name) {
		ret = note_bound(d->ino);
		if (!ret)
			ret = connect_waiting(t, d);
	}
	if (!ret && d->has_peer)
		ret = connect_peer(t, d, fd);
	for (size_t i = 0; i < d->n_msgs && !ret; i++)
		ret = send_one(t, x, d, fd, d->msgs[i], &anon);
	close_remote(t, anon);
	if (ret)
		pr_err("cannot restore unix datagram socket %llu (its peer or its %zu queued "
		       "datagrams): %s",
		       (unsigned long long)d->ino, d->n_msgs, strerror(-ret));
	return ret;
}

/* One process restored alone: whatever still waits for a peer is an error. */
static int dgram_finish(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl)
{
	int ret = 0;

	(void)t;
	(void)x;
	if (rst_unix_tree_on())
		return 0;
	if (dg.nwait) {
		snprintf(why, wl,
			 "unix datagram socket connected to socket %llu, which no fd of the image "
			 "binds: the image is damaged, dump it again",
			 (unsigned long long)dg.wait[0].peer);
		ret = -EBADMSG;
	}
	rst_unix_dgram_reset();
	return ret;
}

const struct rst_fd_ops rst_fd_unix_dgram = {
	.name = "unix datagram socket",
	.kind = HAUL__IMG__FD_KIND__FD_UNIX_DGRAM,
	.version = 6, /* 6: SO_RCVTIMEO, SO_SNDTIMEO (sock_timeo.c) */
	.match = dgram_match,
	.refuse = dgram_refuse,
	.dump = dgram_dump,
	.validate = dgram_validate,
	.restore = dgram_restore,
	.setup = rst_unix_setup,
	.finish = dgram_finish,
};
