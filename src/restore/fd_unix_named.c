/*
 * fd_unix_named.c - a connected unix stream or seqpacket pair of the
 * process whose ends carry names: one end accept()ed from a listener (it
 * has the listener's name), the other maybe bound before it connected.
 *
 * socketpair() makes ends without names, and a connected socket cannot
 * be bound.  The accepted end gets its name from the listener it came
 * from, so the pair is made the way it was: in the stub, a listener of
 * that name (the process's own if its fd is already restored, or a copy
 * of the one another process of the tree restored already, else a
 * temporary one, closed and its path unlinked afterwards, so that the
 * process's listener binds the name later), a new socket bound to the
 * other end's name if it had one, connect(), accept().  Everything is
 * injected: the names are the stub's (its mount and network namespace).
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"
#include "restore/tree_int.h"

bool rst_unix_peer_held(pid_t pid, uint64_t ino)
{
	struct rst_unix_info u;
	char dir[64], link[320], want[48];
	struct dirent *d;
	bool held = false;
	DIR *fds;

	/* a client its listener has not accepted: its peer has no inode yet */
	if (rst_unix_is_pending(pid, (uint32_t)ino))
		return true;
	if (rst_unix_diag(ino, &u) || !u.peer)
		return false;
	snprintf(want, sizeof(want), "socket:[%u]", u.peer);
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	fds = opendir(dir);
	if (!fds)
		return false;
	while (!held && (d = readdir(fds))) {
		char target[48];
		ssize_t n;

		if (d->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%s", dir, d->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			held = !strcmp(target, want);
		}
	}
	closedir(fds);
	/* a process that moves with this one (a tree) holds it: the pair moves whole */
	return held || rst_unix_moving_holds(u.peer);
}

/* @name (sun_path bytes) as a sockaddr_un at the scratch area; its length in *@sl. */
static int put_addr(struct rst_target *t, const ProtobufCBinaryData *name, socklen_t *sl)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};

	if (!name->len || name->len >= sizeof(sun.sun_path))
		return -EINVAL;
	memcpy(sun.sun_path, name->data, name->len);
	*sl = offsetof(struct sockaddr_un, sun_path) + name->len + (name->data[0] != '\0');
	return rst_poke(t, rst_scratch(t), &sun, *sl);
}

/* A path name is made free to bind (a stale socket inode goes); an abstract one is. */
static int clear_name(const ProtobufCBinaryData *name)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];

	if (!name->len || name->data[0] == '\0' || name->len >= sizeof(path))
		return 0;
	memcpy(path, name->data, name->len);
	path[name->len] = '\0';
	return rst_unix_clear_path(path);
}

/* The fd (already at its number) of the process's listener on @name of @type, or -1. */
static int own_listener(const struct rst_fd_rctx *x, const ProtobufCBinaryData *name, uint32_t type)
{
	for (size_t i = 0; i < x->cur; i++) {
		const Haul__Img__FdEntry *e = x->ps->fds[i];
		const Haul__Img__FileObject *f = rst_fd_file(x->ps, e->file_id);
		const Haul__Img__UnixListenFile *l = f ? f->unix_listen : NULL;

		if (l && l->type == type && l->name.len == name->len &&
		    !memcmp(l->name.data, name->data, name->len))
			return e->fd;
	}
	return -1;
}

/* Whether the process has a listener of @type on @name (restored yet or not). */
static bool listened(const struct rst_fd_rctx *x, const ProtobufCBinaryData *name, uint32_t type)
{
	for (size_t i = 0; i < x->ps->n_files; i++) {
		const Haul__Img__UnixListenFile *l = x->ps->files[i]->unix_listen;

		if (l && l->type == type && l->name.len == name->len &&
		    !memcmp(l->name.data, name->data, name->len))
			return true;
	}
	return false;
}

/* A new socket of @type in the stub, bound to @name when it has one: its fd in *@fd. */
static int new_sock(struct rst_target *t, uint32_t type, const ProtobufCBinaryData *name, int *fd)
{
	socklen_t sl;
	long res;
	int ret;

	ret = rst_rcall(t, SYS_socket, AF_UNIX, type | SOCK_CLOEXEC, 0, 0, 0, 0, &res);
	if (ret)
		return ret;
	*fd = (int)res;
	if (!name->len)
		return 0;
	ret = clear_name(name);
	if (!ret)
		ret = put_addr(t, name, &sl);
	if (!ret)
		ret = rst_rcall(t, SYS_bind, *fd, rst_scratch(t), sl, 0, 0, 0, NULL);
	return ret;
}

struct lsn_key {
	const ProtobufCBinaryData *name;
	uint32_t type;
};

static bool is_listener(const Haul__Img__FileObject *f, const void *arg)
{
	const struct lsn_key *k = arg;
	const Haul__Img__UnixListenFile *l = f->unix_listen;

	return l && l->type == k->type && l->name.len == k->name->len &&
	       !memcmp(l->name.data, k->name->data, k->name->len);
}

static void close_remote(struct rst_target *t, int fd)
{
	if (fd >= 0)
		rst_rcall(t, SYS_close, fd, 0, 0, 0, 0, 0, NULL);
}

int rst_unix_named_pair(struct rst_target *t, struct rst_fd_rctx *x,
			const Haul__Img__UnixPairFile *u, const Haul__Img__UnixPairFile *peer,
			int32_t fds[2])
{
	/*
	 * The server end: the accepted one has a name, the client's may not.
	 * When both have one, the end named like a listener of the process (a
	 * bound client's name is never a listener's).
	 */
	bool un = u->has_name && u->name.len, pn = peer->has_name && peer->name.len;
	const Haul__Img__UnixPairFile *s = un && (!pn || listened(x, &u->name, u->type)) ? u : peer;
	const Haul__Img__UnixPairFile *c = s == u ? peer : u;
	int lfd = own_listener(x, &s->name, u->type), cfd = -1, afd = -1, ret;
	struct lsn_key key = {&s->name, u->type};
	bool temp = lfd < 0, lent = false;
	socklen_t sl;
	long res;

	/*
	 * Another process of the tree restored the listener already: accept on
	 * a copy of it (a temporary listener would take its name away).
	 */
	if (temp && rst_share_borrow(t, x->park, is_listener, &key, &lfd) == 0) {
		temp = false;
		lent = true;
	}
	if (temp) {
		ret = new_sock(t, u->type, &s->name, &lfd);
		if (!ret)
			ret = rst_rcall(t, SYS_listen, lfd, 1, 0, 0, 0, 0, NULL);
		if (ret) {
			close_remote(t, lfd);
			pr_err("cannot listen on the name of unix socket %llu again: %s",
			       (unsigned long long)s->ino, strerror(-ret));
			return ret;
		}
	}
	ret = new_sock(t, u->type, c->has_name ? &c->name : &(ProtobufCBinaryData){0}, &cfd);
	if (!ret)
		ret = put_addr(t, &s->name, &sl);
	if (!ret)
		ret = rst_rcall(t, SYS_connect, cfd, rst_scratch(t), sl, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_rcall(t, SYS_accept4, lfd, 0, 0, SOCK_CLOEXEC, 0, 0, &res);
	if (!ret)
		afd = (int)res;
	if (lent)
		close_remote(t, lfd);
	if (temp) {
		close_remote(t, lfd);
		/* the temporary listener's path: the process's listener, if any, binds it later */
		if (s->name.data[0] != '\0')
			clear_name(&s->name);
	}
	if (ret) {
		close_remote(t, cfd);
		pr_err("cannot connect unix socket %llu to %llu again: %s",
		       (unsigned long long)c->ino, (unsigned long long)s->ino, strerror(-ret));
		return ret;
	}
	fds[0] = s->ino < c->ino ? afd : cfd;
	fds[1] = s->ino < c->ino ? cfd : afd;
	return 0;
}
