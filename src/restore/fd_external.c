/*
 * fd_external.c - fds whose other end stays behind: a pipe another process
 * holds (`prog | cat`: cat does not move), a named FIFO, a unix socket
 * connected to a named socket outside the process (a service's stdout on
 * the journald stream socket, /dev/log), a terminal (fd_tty.c).
 *
 * Nothing of the other end can move with the process, so the fd is not
 * restored but replaced: on the target it becomes what the spec says
 * (fd_extrules.c: a rule of the user's, or the kind's default), and the
 * dump says so, per fd ("fd 1: pipe to pid 123 (cat) stays behind ->
 * file /tmp/log (appended) on the target").  An fd without a rule and
 * without a safe default (pipes, FIFOs) is refused at the precheck, naming
 * the fd, its other end and the option to use: it is never dropped.
 *
 * What is lost, by design: bytes the process had not read yet from a pipe
 * or socket stay with the source's end; what it wrote is already the
 * other end's.  A reconnected stream socket is a new connection: the peer
 * sees the old one closed and a new one open.  For journald, the new
 * stream's header (identifier, unit, priority, level prefix, forwarding)
 * is written again with the process's comm as identifier and the defaults
 * systemd gives a service (priority 6, level prefix on, no forwarding):
 * the original header went by at connect time and cannot be read back.
 *
 * Restore: the new file is opened, connected or handed in by injected
 * calls in the stub.  fd:N is passed over a unix socket with SCM_RIGHTS
 * (the stub may live in a new PID namespace, where haul's /proc/PID/fd is
 * not visible), so any file haul holds can be given, a socket too.
 */
#define LOG_PREFIX "external: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/ctr.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

/*
 * The pipes held by processes other than one: each pipe inode with one
 * holder.  Classifying the fds of a process asks for every pipe fd, three
 * times (match, refuse, dump), and a scan of every /proc/PID/fd costs
 * milliseconds, in the dump's downtime too: one scan serves the whole
 * pass, for the same process, for HOLDERS_TTL_NS (haul migrate scans just
 * before the freeze, rst_ext_prescan, and the stop and dump ask that).  Used from the thread
 * that checks or dumps (not thread-safe).  A scan for one process of a tree
 * (rst_ext_moving) leaves out every process that moves, so it serves every
 * other process of the tree too: one scan per tree, not one per process
 * (PostgreSQL: 13 scans of 8-35 ms each were in the downtime, one per child
 * holding the postmaster's pipe).
 */
#define HOLDERS_TTL_NS (1000ULL * 1000 * 1000) /* a loaded host's downtime: several 100 ms */

struct pipe_hold {
	uint64_t ino;
	pid_t pid;
};

static struct {
	pid_t self;
	uint64_t stamp_ns;
	struct pipe_hold *v;
	size_t n, cap;
	const pid_t *moving; /* rst_ext_moving: the other processes that move too */
	size_t nmoving;
} holders;

void rst_ext_moving(const pid_t *pids, size_t n)
{
	holders.moving = pids;
	holders.nmoving = n;
	holders.stamp_ns = 0; /* the next question scans again */
}

static bool moves(pid_t pid)
{
	for (size_t i = 0; i < holders.nmoving; i++)
		if (holders.moving[i] == pid)
			return true;
	return false;
}

bool rst_ext_is_moving(pid_t pid)
{
	return moves(pid);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int holders_add(uint64_t ino, pid_t pid)
{
	if (holders.n == holders.cap) {
		size_t nc = holders.cap ? holders.cap * 2 : 256;
		struct pipe_hold *v = realloc(holders.v, nc * sizeof(*v));

		if (!v)
			return -ENOMEM;
		holders.v = v;
		holders.cap = nc;
	}
	holders.v[holders.n].ino = ino;
	holders.v[holders.n++].pid = pid;
	return 0;
}

/* One scan of every /proc/PID/fd but @self's: the pipes and who holds them. */
static int holders_scan(pid_t self)
{
	struct dirent *pe;
	DIR *proc = opendir("/proc");
	int ret = 0;

	if (!proc)
		return -errno;
	holders.n = 0;
	while (!ret && (pe = readdir(proc))) {
		pid_t pid = atoi(pe->d_name);
		char path[64], target[64];
		struct dirent *de;
		DIR *d;

		if (pid <= 0 || pid == self || moves(pid))
			continue;
		snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
		d = opendir(path);
		if (!d)
			continue;
		while (!ret && (de = readdir(d))) {
			char fdl[96];

			if (de->d_name[0] == '.')
				continue;
			snprintf(fdl, sizeof(fdl), "%s/%.16s", path, de->d_name);
			if (!rst_read_link(fdl, target, sizeof(target)) &&
			    !strncmp(target, "pipe:[", 6))
				ret = holders_add(strtoull(target + 6, NULL, 10), pid);
		}
		closedir(d);
	}
	closedir(proc);
	holders.self = self;
	holders.stamp_ns = ret ? 0 : now_ns();
	return ret;
}

int rst_ext_prescan(pid_t pid)
{
	char path[64], link[96], target[64];
	struct dirent *de;
	bool pipes = false;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	d = opendir(path);
	if (!d)
		return -errno;
	while (!pipes && (de = readdir(d))) {
		snprintf(link, sizeof(link), "%s/%.16s", path, de->d_name);
		pipes = de->d_name[0] != '.' && !rst_read_link(link, target, sizeof(target)) &&
			!strncmp(target, "pipe:[", 6);
	}
	closedir(d);
	return pipes ? holders_scan(pid) : 0;
}

/* Whether the last scan's answer holds for @self: the same process, or both in the moving tree. */
static bool scanned_for(pid_t self)
{
	return holders.self == self || (moves(self) && moves(holders.self));
}

/*
 * Another process holding pipe @link ("pipe:[ino]") besides @self and the
 * processes that move with it (rst_ext_moving): *@other and its comm.
 * 0: found, -ENOENT: none.
 */
static int pipe_holder(pid_t self, const char *link, pid_t *other, char *comm, size_t clen)
{
	uint64_t ino = strtoull(link + 6, NULL, 10);
	char *text = NULL;
	int ret = 0;

	if (!scanned_for(self) || !holders.stamp_ns || now_ns() - holders.stamp_ns > HOLDERS_TTL_NS)
		ret = holders_scan(self);
	if (ret)
		return ret;
	for (size_t i = 0; i < holders.n; i++) {
		if (holders.v[i].ino != ino)
			continue;
		*other = holders.v[i].pid;
		snprintf(comm, clen, "?");
		if (!rst_read_proc(*other, "comm", &text, NULL)) {
			text[strcspn(text, "\n")] = '\0';
			snprintf(comm, clen, "%s", text);
			free(text);
		}
		return 0;
	}
	return -ENOENT;
}

/*
 * Whether socket fd @p is a unix socket, unnamed itself, connected to a
 * named one: its peer's path in @path ("@name" for an abstract name), its
 * type in *@type.  0, -ENOENT: not such a socket.
 */
static int unix_peer_path(const struct rst_fd_probe *p, char *path, size_t plen, int *type)
{
	struct sockaddr_un me, peer;
	socklen_t ml = sizeof(me), pl = sizeof(peer), ol = sizeof(int);
	int sfd, dom = 0, ret = -ENOENT;

	sfd = rst_fd_copy(p->pid, p->fd);
	if (sfd < 0)
		return sfd;
	memset(&me, 0, sizeof(me));
	memset(&peer, 0, sizeof(peer));
	if (getsockopt(sfd, SOL_SOCKET, SO_DOMAIN, &dom, &ol) == 0 && dom == AF_UNIX &&
	    getsockname(sfd, (struct sockaddr *)&me, &ml) == 0 && ml <= sizeof(sa_family_t) &&
	    getpeername(sfd, (struct sockaddr *)&peer, &pl) == 0 && pl > sizeof(sa_family_t)) {
		size_t n = pl - sizeof(sa_family_t);

		ol = sizeof(int);
		if (getsockopt(sfd, SOL_SOCKET, SO_TYPE, type, &ol) == 0) {
			if (peer.sun_path[0])
				snprintf(path, plen, "%.*s", (int)strnlen(peer.sun_path, n),
					 peer.sun_path);
			else
				snprintf(path, plen, "@%.*s", (int)(n - 1), peer.sun_path + 1);
			ret = 0;
		}
	}
	close(sfd);
	return ret;
}

/* What fd @p is, as an external endpoint: its kind, other end and (unix) path. */
struct ext_what {
	Haul__Img__ExternalKind kind;
	char peer[320];
	char path[sizeof(((struct sockaddr_un *)0)->sun_path) + 2];
	int type;
};

static bool ext_probe(const struct rst_fd_probe *p, struct ext_what *w)
{
	const struct stat *st = p->st;
	bool wr = (p->flags & O_ACCMODE) == O_WRONLY;
	char comm[64];
	pid_t other = 0;

	memset(w, 0, sizeof(*w));
	if (S_ISFIFO(st->st_mode) && !strncmp(p->target, "pipe:[", 6)) {
		if (pipe_holder(p->pid, p->target, &other, comm, sizeof(comm)))
			return false;
		w->kind = HAUL__IMG__EXTERNAL_KIND__EXT_PIPE;
		snprintf(w->peer, sizeof(w->peer), "pipe %s pid %d (%s)", wr ? "to" : "shared with",
			 (int)other, comm);
		return true;
	}
	if (S_ISFIFO(st->st_mode) && p->target[0] == '/') {
		w->kind = HAUL__IMG__EXTERNAL_KIND__EXT_FIFO;
		snprintf(w->peer, sizeof(w->peer), "named fifo %.256s", p->target);
		return true;
	}
	/* a peer the process holds is a connection it moves whole (fd_unix_named.c) */
	if (S_ISSOCK(st->st_mode) && !unix_peer_path(p, w->path, sizeof(w->path), &w->type) &&
	    !rst_unix_peer_held(p->pid, st->st_ino)) {
		w->kind = HAUL__IMG__EXTERNAL_KIND__EXT_UNIX;
		snprintf(w->peer, sizeof(w->peer), "unix socket connected to %s", w->path);
		return true;
	}
	if (rst_tty_match(st)) {
		w->kind = HAUL__IMG__EXTERNAL_KIND__EXT_TTY;
		snprintf(w->peer, sizeof(w->peer), "terminal %.256s", p->target);
		/* a device every host has: its path (the default is that device again) */
		if (rst_tty_host_device(st) && p->target[0] == '/' &&
		    strlen(p->target) < sizeof(w->path))
			snprintf(w->path, sizeof(w->path), "%s", p->target);
		return true;
	}
	return false;
}

static bool ext_match(const struct rst_fd_probe *p)
{
	struct ext_what w;

	return ext_probe(p, &w);
}

/* The spec fd @p gets on the source: the user's rule, else the kind's default; NULL: none. */
static const char *ext_spec_of(const struct rst_fd_probe *p, const struct ext_what *w)
{
	const char *s = rst_ext_rule_for(p->fd, w->kind);

	return s ? s : rst_ext_default(w->kind, w->path);
}

static int ext_refuse(const struct rst_fd_probe *p, char *why, size_t wl)
{
	struct rst_ext_spec s;
	struct ext_what w;
	const char *spec;
	int ret;

	if (!ext_probe(p, &w))
		return -ENOENT; /* gone meanwhile */
	if (w.kind == HAUL__IMG__EXTERNAL_KIND__EXT_TTY && (ret = rst_tty_refuse(p, why, wl)))
		return ret;
	spec = ext_spec_of(p, &w);
	if (!spec) {
		snprintf(why, wl,
			 "fd %d is a %s, which stays behind; say what it becomes on the target: "
			 "--external-fd %d=null|file:/PATH|fd:N (or --external %s=...)",
			 p->fd, w.peer, p->fd, rst_ext_kind_name(w.kind));
		return -EOPNOTSUPP;
	}
	if (rst_ext_spec_parse(spec, &s) || !rst_ext_spec_fits(&s, w.kind)) {
		snprintf(why, wl,
			 "fd %d is a %s: --external-fd %d=%s does not apply to it (reconnect and "
			 "journal are for unix sockets, tty and device for terminals)",
			 p->fd, w.peer, p->fd, spec);
		return -EOPNOTSUPP;
	}
	return 0;
}

static int ext_dump(const struct rst_fd_probe *p, Haul__Img__FileObject *o,
		    Haul__Img__FileObject *const *prev, size_t nprev)
{
	Haul__Img__External *e;
	struct ext_what w;
	const char *spec;
	char desc[320], *comm = NULL;
	int ret = 0;

	(void)prev;
	(void)nprev;
	if (!ext_probe(p, &w) || !(spec = ext_spec_of(p, &w)))
		return -ESTALE; /* it changed since ext_refuse */
	e = malloc(sizeof(*e));
	if (!e)
		return -ENOMEM;
	haul__img__external__init(e);
	o->external = e;
	e->kind = w.kind;
	e->peer = strdup(w.peer);
	e->spec = strdup(spec);
	if (!e->peer || !e->spec)
		return -ENOMEM;
	if (w.kind == HAUL__IMG__EXTERNAL_KIND__EXT_UNIX) {
		e->path = strdup(w.path);
		e->has_sock_type = true;
		e->sock_type = (uint32_t)w.type;
		if (!e->path)
			return -ENOMEM;
		if (!rst_read_proc(p->pid, "comm", &comm, NULL)) {
			comm[strcspn(comm, "\n")] = '\0';
			e->ident = comm;
		}
	}
	if (w.kind == HAUL__IMG__EXTERNAL_KIND__EXT_TTY) {
		e->has_rdev = true;
		e->rdev = p->st->st_rdev;
		ret = rst_tty_dump(p, e);
	}
	rst_ext_spec_describe(spec, desc, sizeof(desc));
	if (!ret)
		pr_info("fd %d of pid %d: %s stays behind -> %s on the target", p->fd, (int)p->pid,
			w.peer, desc);
	return ret;
}

/* ---- restore ------------------------------------------------------------ */

/* openat(@path, @flags) in the stub; the new fd in *@fd. */
static int open_remote(struct rst_target *t, const char *path, int flags, int *fd)
{
	uint64_t rpath;
	long res = -1;
	int ret = rst_put_str(t, 0, path, &rpath);

	if (!ret)
		ret = rst_rcall(t, SYS_openat, AT_FDCWD, rpath, flags | O_CLOEXEC, 0600, 0, 0,
				&res);
	*fd = (int)res;
	return ret;
}

/*
 * Terminal @f again by its path (spec "device"), in the stub's root, into
 * *@fd: only when that path names the same device there (-ENODEV).
 */
static int reopen_device(struct rst_target *t, const Haul__Img__FileObject *f, int fl,
			 const Haul__Img__FdEntry *fe, int *fd)
{
	char link[64];
	struct stat st;
	int ret;

	if (!f->external->has_rdev || !f->path || f->path[0] != '/') {
		pr_err("pid %d: fd %d (%s): the image records no device to open again; give "
		       "--external-fd %d=tty|null|file:/PATH",
		       (int)t->o.pid, fe->fd, f->external->peer, fe->fd);
		return -EINVAL;
	}
	ret = open_remote(t, f->path, fl | O_NOCTTY, fd);
	if (ret)
		return ret;
	snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)t->stub, *fd);
	if (!stat(link, &st) && S_ISCHR(st.st_mode) && st.st_rdev == f->external->rdev)
		return 0;
	pr_err("pid %d: fd %d: %s here is not the terminal device it was (%u:%u); give "
	       "--external-fd %d=tty|null|file:/PATH",
	       (int)t->o.pid, fe->fd, f->path, major(f->external->rdev), minor(f->external->rdev),
	       fe->fd);
	rst_rcall(t, SYS_close, (uint64_t)*fd, 0, 0, 0, 0, 0, NULL);
	*fd = -1;
	return -ENODEV;
}

/* @path ("@name": abstract) as a sockaddr_un; its length. */
static socklen_t unix_addr(const char *path, struct sockaddr_un *a)
{
	size_t n = strlen(path);

	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (n >= sizeof(a->sun_path))
		n = sizeof(a->sun_path) - 1;
	memcpy(a->sun_path, path, n);
	if (path[0] == '@')
		a->sun_path[0] = '\0'; /* abstract: no trailing NUL in the length */
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] != '@'));
}

/* A new socket in the stub, connected to @e's path; for journald, the stream header. */
static int reconnect(struct rst_target *t, const Haul__Img__External *e, bool journal, int *fd)
{
	struct sockaddr_un a;
	socklen_t al = unix_addr(e->path, &a);
	char hdr[256];
	long res = -1;
	int ret;

	ret = rst_rcall(t, SYS_socket, AF_UNIX, e->sock_type | SOCK_CLOEXEC, 0, 0, 0, 0, &res);
	if (ret)
		return ret;
	*fd = (int)res;
	ret = rst_poke(t, rst_scratch(t), &a, al);
	if (!ret)
		ret = rst_rcall(t, SYS_connect, *fd, rst_scratch(t), al, 0, 0, 0, NULL);
	/* journald's stdout protocol is a stream; a datagram socket gets no header */
	if (ret || !journal || e->sock_type != SOCK_STREAM)
		return ret;
	/* identifier, unit id, priority, level prefix, to syslog, to kmsg, to console */
	snprintf(hdr, sizeof(hdr), "%s\n\n6\n1\n0\n0\n0\n", e->ident ? e->ident : "haul");
	ret = rst_poke(t, rst_scratch(t), hdr, strlen(hdr));
	if (!ret)
		ret = rst_rcall(t, SYS_write, *fd, rst_scratch(t), strlen(hdr), 0, 0, 0, &res);
	if (!ret && res != (long)strlen(hdr))
		ret = -EIO;
	return ret;
}

/*
 * Our fd @local into the stub (*@fd): over an abstract unix socket named
 * for our pid, SCM_RIGHTS (the stub may be in a PID namespace of its own,
 * where our /proc/PID/fd is not to be seen).
 */
static int push_fd(struct rst_target *t, int local, int *fd)
{
	struct {
		struct msghdr mh;
		struct iovec iov;
		char byte;
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} c;
	} m;
	uint64_t base = rst_scratch(t);
	struct sockaddr_un a;
	socklen_t al;
	char name[64], one = 1;
	int l, c = -1, ret;
	long rs = -1;

	snprintf(name, sizeof(name), "@haul-fdpass-%d-%d", (int)getpid(), (int)t->o.pid);
	al = unix_addr(name, &a);
	/* an abstract name lives in a network namespace: the stub's (a container's own) */
	l = rst_ctr_socket_in(t->stub, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (l < 0)
		return l;
	if (bind(l, (struct sockaddr *)&a, al) < 0 || listen(l, 1) < 0) {
		ret = -errno;
		goto out;
	}
	ret = rst_rcall(t, SYS_socket, AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, 0, 0, 0, &rs);
	if (!ret)
		ret = rst_poke(t, base, &a, al);
	if (!ret)
		ret = rst_rcall(t, SYS_connect, rs, base, al, 0, 0, 0, NULL);
	if (ret)
		goto out;
	c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	memset(&m, 0, sizeof(m));
	m.iov.iov_base = &one;
	m.iov.iov_len = 1;
	m.mh.msg_iov = &m.iov;
	m.mh.msg_iovlen = 1;
	m.mh.msg_control = m.c.buf;
	m.mh.msg_controllen = sizeof(m.c.buf);
	CMSG_FIRSTHDR(&m.mh)->cmsg_level = SOL_SOCKET;
	CMSG_FIRSTHDR(&m.mh)->cmsg_type = SCM_RIGHTS;
	CMSG_FIRSTHDR(&m.mh)->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m.mh)), &local, sizeof(int));
	if (c < 0 || sendmsg(c, &m.mh, 0) != 1) {
		ret = -errno;
		goto out;
	}
	/* The same message header for the stub, its pointers into the scratch area. */
	memset(&m, 0, sizeof(m));
	m.mh.msg_iov = (struct iovec *)(uintptr_t)(base + offsetof(typeof(m), iov));
	m.mh.msg_iovlen = 1;
	m.mh.msg_control = (void *)(uintptr_t)(base + offsetof(typeof(m), c));
	m.mh.msg_controllen = sizeof(m.c.buf);
	m.iov.iov_base = (void *)(uintptr_t)(base + offsetof(typeof(m), byte));
	m.iov.iov_len = 1;
	ret = rst_poke(t, base, &m, sizeof(m));
	if (!ret)
		ret = rst_rcall(t, SYS_recvmsg, rs, base, MSG_CMSG_CLOEXEC, 0, 0, 0, NULL);
	if (!ret)
		ret = rst_peek(t, base, &m, sizeof(m));
	if (!ret && m.c.align.cmsg_type == SCM_RIGHTS && m.c.align.cmsg_level == SOL_SOCKET)
		memcpy(fd, CMSG_DATA(&m.c.align), sizeof(int));
	else if (!ret)
		ret = -EPROTO;
out:
	if (rs >= 0)
		rst_rcall(t, SYS_close, rs, 0, 0, 0, 0, 0, NULL);
	if (c >= 0)
		close(c);
	close(l);
	return ret;
}

static int ext_validate(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	const Haul__Img__External *e = f->external;
	const Haul__Img__Termios *tm = e ? e->termios : NULL;

	if (!e || !e->peer || !e->spec ||
	    (e->kind == HAUL__IMG__EXTERNAL_KIND__EXT_UNIX && (!e->path || !e->has_sock_type))) {
		snprintf(why, wl, "file %u is an external endpoint without its external part",
			 f->id);
		return -EBADMSG;
	}
	if ((unsigned)e->kind > HAUL__IMG__EXTERNAL_KIND__EXT_TTY ||
	    (e->path && strnlen(e->path, 256) >= 256) || (tm && tm->cc.len > 64)) {
		snprintf(why, wl, "file %u (external %s): kind, path or termios out of range",
			 f->id, e->peer);
		return -EBADMSG;
	}
	return 0;
}

/* The spec fd @fd gets here: a rule of the restoring haul, else the one the source chose. */
static const char *ext_spec_here(const Haul__Img__FileObject *f, int fd)
{
	const char *s = rst_ext_rule_for(fd, f->external->kind);

	return s ? s : f->external->spec;
}

static int ext_restore(struct rst_target *t, struct rst_fd_rctx *x, const Haul__Img__FileObject *f,
		       const Haul__Img__FdEntry *fe, const char *path, int *tmp, bool *shared)
{
	const Haul__Img__External *e = f->external;
	const char *spec = ext_spec_here(f, fe->fd);
	int acc = (int)f->flags & O_ACCMODE, fl = acc | ((int)f->flags & O_NONBLOCK);
	struct rst_ext_spec s;
	char tty[256], desc[320];
	int ret;

	(void)x;
	(void)path;
	*shared = false;
	if (rst_ext_spec_parse(spec, &s) || !rst_ext_spec_fits(&s, e->kind)) {
		pr_err("pid %d: fd %d (%s): spec '%s' does not apply to a %s; give --external-fd "
		       "%d=null|file:/PATH|fd:N",
		       (int)t->o.pid, fe->fd, e->peer, spec, rst_ext_kind_name(e->kind), fe->fd);
		return -EINVAL;
	}
	if (s.how == RST_EXT_TTY && rst_tty_own(tty, sizeof(tty))) {
		pr_warn("pid %d: fd %d (%s): this haul has no terminal (its fds 0-2 are not ttys): "
			"/dev/null instead; run haul restore on a terminal, or give --external-fd "
			"%d=SPEC",
			(int)t->o.pid, fe->fd, e->peer, fe->fd);
		s.how = RST_EXT_NULL;
	}
	switch (s.how) {
	case RST_EXT_NULL:
		ret = open_remote(t, "/dev/null", fl, tmp);
		break;
	case RST_EXT_FILE:
		ret = open_remote(t, s.path, fl | (acc != O_RDONLY ? O_CREAT | O_APPEND : 0), tmp);
		break;
	case RST_EXT_FD:
		if (fcntl(s.fd, F_GETFD) < 0) {
			pr_err("pid %d: fd %d (%s) should become fd %d of this haul, which is not "
			       "open; start haul with it open (e.g. %d>FILE)",
			       (int)t->o.pid, fe->fd, e->peer, s.fd, s.fd);
			return -EBADF;
		}
		ret = push_fd(t, s.fd, tmp);
		break;
	case RST_EXT_RECONNECT:
	case RST_EXT_JOURNAL:
		ret = reconnect(t, e, s.how == RST_EXT_JOURNAL, tmp);
		break;
	case RST_EXT_DEVICE:
		ret = reopen_device(t, f, fl, fe, tmp);
		break;
	case RST_EXT_TTY:
	default:
		ret = open_remote(t, tty, fl | O_NOCTTY, tmp);
		break;
	}
	if (ret) {
		pr_err("pid %d: fd %d (%s): cannot make it %s: %s", (int)t->o.pid, fe->fd, e->peer,
		       spec, strerror(-ret));
		return ret;
	}
	if (s.how == RST_EXT_TTY)
		snprintf(desc, sizeof(desc), "this haul's terminal %s", tty);
	else
		rst_ext_spec_describe(s.how == RST_EXT_NULL ? "null" : spec, desc, sizeof(desc));
	pr_info("pid %d: fd %d: %s stayed behind -> %s", (int)t->o.pid, fe->fd, e->peer, desc);
	return 0;
}

/* At its own number: O_NONBLOCK as it had it; a terminal gets its settings back. */
static int ext_setup(struct rst_target *t, const Haul__Img__FileObject *f,
		     const Haul__Img__FdEntry *e)
{
	struct rst_ext_spec s;
	int ret = rst_fd_set_nonblock(t, f, e);

	if (ret || !f->external->termios)
		return ret;
	/* Whatever it became: if that is a terminal too (tty, fd:N of one), it gets them. */
	if (rst_rcall(t, SYS_ioctl, e->fd, TCGETS, rst_scratch(t), 0, 0, 0, NULL))
		return 0; /* ENOTTY: /dev/null, a file, a pipe */
	/* a console or VT of this host keeps its own settings (another speed, another size) */
	return rst_tty_apply(t, e->fd, f->external,
			     rst_ext_spec_parse(ext_spec_here(f, e->fd), &s) ||
				     s.how != RST_EXT_DEVICE);
}

const struct rst_fd_ops rst_fd_external = {
	.name = "external endpoint",
	.kind = HAUL__IMG__FD_KIND__FD_EXTERNAL,
	.version = 4,
	.match = ext_match,
	.refuse = ext_refuse,
	.dump = ext_dump,
	.validate = ext_validate,
	.restore = ext_restore,
	.setup = ext_setup,
};

size_t rst_ext_moving_pids(const pid_t **pids)
{
	*pids = holders.moving;
	return holders.nmoving;
}

int rst_ext_push_fd(struct rst_target *t, int local, int *fd)
{
	return push_fd(t, local, fd);
}
