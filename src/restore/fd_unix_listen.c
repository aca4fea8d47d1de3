/*
 * fd_unix_listen.c - a unix stream or seqpacket socket listening on a
 * path or an abstract name, held by the process.
 *
 * Classification: a socket:[ino] fd that sock_diag says is a unix socket
 * in TCP_LISTEN state.  Refused by name when a connection waits to be
 * accepted (its client end would be lost) or when it is bound to a
 * relative path (the directory it was bound in is not known).
 * Dump: type, the name as getsockname gives it (pidfd_getfd copy) and the
 * backlog (sock_diag's wqlen of a listener).
 * Restore: socket() and bind() and listen() injected into the stub; a
 * path first loses a stale socket inode (the dumped listener's), and a
 * path that exists but is not a socket fails the restore by name.
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

#define UNIX_LISTEN_STATE 10 /* TCP_LISTEN as sock_diag reports it */

static bool listen_match(const struct rst_fd_probe *p)
{
	struct rst_unix_info u;

	if (!S_ISSOCK(p->st->st_mode) || strncmp(p->target, "socket:[", 8))
		return false;
	return !rst_unix_diag(p->st->st_ino, &u) && u.state == UNIX_LISTEN_STATE;
}

/* The name of @sun (@len bytes) as words: the path, or "@name" for an abstract one. */
static void name_of(const char *path, size_t len, char *buf, size_t blen)
{
	if (len && path[0] == '\0')
		snprintf(buf, blen, "abstract name @%.*s", (int)(len - 1), path + 1);
	else
		snprintf(buf, blen, "path %.*s", (int)len, path);
}

int rst_unix_get_name(int sfd, char *path, size_t *len)
{
	struct sockaddr_un sun;
	socklen_t sl = sizeof(sun);

	if (getsockname(sfd, (struct sockaddr *)&sun, &sl) < 0)
		return -errno;
	*len = sl > offsetof(struct sockaddr_un, sun_path)
		       ? sl - offsetof(struct sockaddr_un, sun_path)
		       : 0;
	memcpy(path, sun.sun_path, *len);
	/* a path's length counts its terminating NUL */
	while (*len && path[0] != '\0' && path[*len - 1] == '\0')
		(*len)--;
	return 0;
}

/* sock_diag's view of the listener fd @p into @u, its name (sun_path) into @path, @len bytes. */
static int listen_read(const struct rst_fd_probe *p, struct rst_unix_info *u, char *path,
		       size_t *len)
{
	int sfd, ret;

	ret = rst_unix_diag(p->st->st_ino, u);
	if (ret)
		return ret;
	sfd = rst_fd_copy(p->pid, p->fd);
	if (sfd < 0)
		return sfd;
	ret = rst_unix_get_name(sfd, path, len);
	close(sfd);
	return ret;
}

static int listen_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)], name[160];
	struct rst_unix_info u;
	size_t len = 0;
	int ret;

	ret = rst_sock_refuse_filter(p->pid, p->fd, why, wl);
	if (!ret)
		ret = rst_unix_refuse_shutdown(p, why, wl);
	if (!ret)
		ret = listen_read(p, &u, path, &len);
	if (ret)
		return ret;
	name_of(path, len, name, sizeof(name));
	if (!len) {
		snprintf(why, wl, "fd %d: a unix socket listening without a name is not supported",
			 p->fd);
		return -EOPNOTSUPP;
	}
	if (path[0] != '\0' && path[0] != '/') {
		snprintf(
			why, wl,
			"fd %d: unix listener on relative %s: the directory it was bound in is not "
			"known (bind it to an absolute path)",
			p->fd, name);
		return -EOPNOTSUPP;
	}
	ret = rst_unix_refuse_name_taken(p, path, len, why, wl);
	if (ret)
		return ret;
	/* connections not accepted yet: carried if their clients move and sent nothing */
	return u.rqlen ? rst_unix_pending_check(p, name, why, wl) : 0;
}

/*
 * The socket file's mode and owner of a listener bound to path @path (@len
 * bytes, no NUL) in @pid's mount namespace, when it is still there: bind()
 * made it by the umask, and a chmod since (zdtm's sockets00: 0640) is the
 * file's, not the socket's.
 */
static void file_attrs(pid_t pid, const char *path, size_t len, Haul__Img__UnixListenFile *l)
{
	char at[64 + sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct stat st;

	if (!len || path[0] != '/')
		return;
	snprintf(at, sizeof(at), "/proc/%d/root%.*s", (int)pid, (int)len, path);
	if (stat(at, &st) < 0 || !S_ISSOCK(st.st_mode))
		return;
	l->has_mode = l->has_uid = l->has_gid = true;
	l->mode = st.st_mode & 07777;
	l->uid = st.st_uid;
	l->gid = st.st_gid;
}

/* Set them again on the stub's new socket file (from here, through /proc, as root). */
static int set_file_attrs(struct rst_target *t, const Haul__Img__UnixListenFile *l,
			  const char *path)
{
	char at[64 + sizeof(((struct sockaddr_un *)0)->sun_path)];

	if (!l->has_mode || !l->has_uid || !l->has_gid || path[0] != '/')
		return 0;
	snprintf(at, sizeof(at), "/proc/%d/root%s", (int)t->stub, path);
	if (chown(at, l->uid, l->gid) < 0 || chmod(at, l->mode) < 0)
		return -errno;
	return 0;
}

static int listen_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		       Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__UnixListenFile *l = malloc(sizeof(*l));
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct rst_unix_info u;
	size_t len = 0;
	int ret;

	(void)prev;
	(void)nprev;
	if (!l)
		return -ENOMEM;
	haul__img__unix_listen_file__init(l);
	o->unix_listen = l;
	ret = listen_read(p, &u, path, &len);
	if (ret)
		return ret;
	l->type = u.type;
	l->backlog = u.wqlen;
	ret = rst_unix_passcred(p->pid, p->fd);
	if (ret < 0)
		return ret;
	l->has_passcred = l->passcred = ret;
	ret = rst_unix_opts_dump(p->pid, p->fd, (int)l->type, &l->opts, &l->n_opts);
	if (ret)
		return ret;
	if (u.rqlen) {
		uint32_t *ic;
		size_t n;

		ret = rst_unix_icons(p->st->st_ino, &ic, &n);
		if (ret)
			return ret;
		l->pending = malloc((n ? n : 1) * sizeof(*l->pending));
		if (!l->pending) {
			free(ic);
			return -ENOMEM;
		}
		for (size_t i = 0; i < n; i++)
			l->pending[i] = ic[i];
		l->n_pending = n;
		free(ic);
	}
	l->name.data = malloc(len ? len : 1);
	if (!l->name.data)
		return -ENOMEM;
	memcpy(l->name.data, path, len);
	l->name.len = len;
	file_attrs(p->pid, path, len, l);
	return 0;
}

static int listen_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	const Haul__Img__UnixListenFile *l = f->unix_listen;

	if (!l) {
		snprintf(why, wl, "file %u is a unix listener without its unix_listen part", f->id);
		return -EBADMSG;
	}
	if (rst_unix_opts_valid(f, why, wl))
		return -EBADMSG;
	if (l->type != SOCK_STREAM && l->type != SOCK_SEQPACKET) {
		snprintf(why, wl, "file %u (unix_listen).type: %u (stream or seqpacket)", f->id,
			 l->type);
		return -EBADMSG;
	}
	if (!l->name.len || l->name.len > sizeof(((struct sockaddr_un *)0)->sun_path) ||
	    (l->name.data[0] != '\0' &&
	     (l->name.data[0] != '/' || memchr(l->name.data, '\0', l->name.len)))) {
		snprintf(why, wl,
			 "file %u (unix_listen).name: %zu bytes, not an absolute path or an "
			 "abstract name",
			 f->id, l->name.len);
		return -EBADMSG;
	}
	return 0;
}

int rst_unix_clear_path(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		pr_err("cannot bind the unix listener to %s: it exists and is not a socket; move it "
		       "away and restore again",
		       path);
		return -EEXIST;
	}
	if (unlink(path) < 0 && errno != ENOENT) {
		int err = -errno;

		pr_err("cannot remove the stale socket %s: %s", path, strerror(-err));
		return err;
	}
	return 0;
}

static int listen_restore(struct rst_target *t, struct rst_fd_rctx *x,
			  const Haul__Img__FileObject *f, const Haul__Img__FdEntry *e,
			  const char *path, int *tmp, bool *shared)
{
	const Haul__Img__UnixListenFile *l = f->unix_listen;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	socklen_t sl = offsetof(struct sockaddr_un, sun_path) + l->name.len;
	char name[160];
	long res;
	int ret;

	(void)x;
	(void)e;
	(void)path;
	*shared = false;
	*tmp = -1;
	memcpy(sun.sun_path, l->name.data, l->name.len);
	name_of(sun.sun_path, l->name.len, name, sizeof(name));
	if (sun.sun_path[0] != '\0') {
		ret = rst_unix_clear_path(sun.sun_path);
		if (ret)
			return ret;
		sl++; /* the path's NUL */
	}
	ret = rst_rcall(t, SYS_socket, AF_UNIX, l->type | SOCK_CLOEXEC, 0, 0, 0, 0, &res);
	if (ret)
		return ret;
	*tmp = (int)res;
	ret = rst_poke(t, rst_scratch(t), &sun, sl);
	if (!ret)
		ret = rst_rcall(t, SYS_bind, *tmp, rst_scratch(t), sl, 0, 0, 0, NULL);
	if (ret)
		pr_err("cannot bind the unix listener of file %u to %s: %s (another socket holds "
		       "it: stop its owner)",
		       f->id, name, strerror(-ret));
	if (!ret && sun.sun_path[0]) {
		ret = set_file_attrs(t, l, sun.sun_path);
		if (ret)
			pr_err("cannot give unix %s its mode and owner back: %s", name,
			       strerror(-ret));
	}
	if (!ret) {
		ret = rst_rcall(t, SYS_listen, *tmp, l->backlog, 0, 0, 0, 0, NULL);
		if (ret)
			pr_err("cannot listen on unix %s: %s", name, strerror(-ret));
	}
	if (!ret) /* its queue: the clients restored before it connect again */
		ret = rst_unix_pending_listener(t, l);
	if (ret) {
		rst_rcall(t, SYS_close, *tmp, 0, 0, 0, 0, 0, NULL);
		*tmp = -1;
	}
	return ret;
}

const struct rst_fd_ops rst_fd_unix_lsn = {
	.name = "unix listener",
	.kind = HAUL__IMG__FD_KIND__FD_UNIX_LISTEN,
	.version = 6, /* 6: SO_RCVTIMEO, SO_SNDTIMEO (sock_timeo.c) */
	.match = listen_match,
	.refuse = listen_refuse,
	.dump = listen_dump,
	.validate = listen_validate,
	.restore = listen_restore,
	.setup = rst_unix_setup,
};
