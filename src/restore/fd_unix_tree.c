/*
 * fd_unix_tree.c - a connected unix pair whose two ends are fds of
 * different processes of a tree: a socketpair made before a fork, each
 * process closing the end it does not use (nginx's master-worker
 * channels), or a client connected to a listener of another process.
 *
 * Checkpoint: the precheck accepts a pair end whose peer another process
 * of the tree holds (rst_unix_moving_holds: a scan of the members' fds,
 * rst_ext_moving); each end is dumped by the process that holds it, with
 * what it had to read and the peer's name (getpeername), so the process
 * that restores first can remake the connection without the other image.
 *
 * Restore, in tree order: the first process that holds either end makes
 * the pair as it makes its own (socketpair(), or connect() and accept()
 * on the name: fd_unix_named.c), keeps its end and queues what that end
 * had to read through the other one.  The other end is exported: haul
 * keeps a copy of both ends (pidfd_getfd) before the process's parked
 * ends are closed.  When a later process restores the exported end, haul
 * queues what that end had to read by sending it through its copy of the
 * first end (stream bytes, or the messages one by one: boundaries kept),
 * hands the end to the stub over SCM_RIGHTS (rst_ext_push_fd: the stub
 * may be in a PID namespace of its own) and closes its copies.  Haul holds
 * copies only while the tree is made ready: rst_unix_tree_begin closes
 * whatever no process took.
 */
#define LOG_PREFIX "restore: "
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

/* An end made by an earlier process of the tree, for the process that holds it. */
struct xend {
	uint64_t ino; /* the exported end */
	int fd;	      /* haul's copy of it */
	int peer;     /* haul's copy of the end the earlier process kept */
};

static __thread struct {
	struct xend *v;
	size_t n, cap;
	bool on;
} xt;

void rst_unix_tree_begin(bool on)
{
	for (size_t i = 0; i < xt.n; i++) {
		pr_warn("unix socket %llu was made for the tree but no process took it",
			(unsigned long long)xt.v[i].ino);
		close(xt.v[i].fd);
		close(xt.v[i].peer);
	}
	free(xt.v);
	memset(&xt, 0, sizeof(xt));
	xt.on = on;
	rst_unix_dgram_reset();	  /* datagram sockets bound, and those waiting to connect */
	rst_unix_pending_reset(); /* listeners restored, and clients waiting for them */
}

bool rst_unix_tree_on(void)
{
	return xt.on;
}

int rst_unix_tree_export(struct rst_target *t, uint64_t ino, int end, int kept)
{
	struct xend e = {.ino = ino, .fd = -1, .peer = -1};

	if (xt.n == xt.cap) {
		size_t cap = xt.cap ? xt.cap * 2 : 16;
		struct xend *v = realloc(xt.v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		xt.v = v;
		xt.cap = cap;
	}
	e.fd = (int)syscall(SYS_pidfd_getfd, t->pidfd, end, 0);
	if (e.fd >= 0)
		e.peer = (int)syscall(SYS_pidfd_getfd, t->pidfd, kept, 0);
	if (e.fd < 0 || e.peer < 0) {
		int ret = -errno;

		if (e.fd >= 0)
			close(e.fd);
		pr_err("cannot keep unix socket %llu for the process of the tree that holds it: %s",
		       (unsigned long long)ino, strerror(-ret));
		return ret;
	}
	xt.v[xt.n++] = e;
	return 0;
}

/* Send all of @d through @fd (the stream bytes the other end has to read). */
static int send_all(int fd, const void *d, size_t len)
{
	for (size_t off = 0; off < len;) {
		ssize_t n = send(fd, (const char *)d + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0)
			return -errno;
		off += (size_t)n;
	}
	return 0;
}

int rst_unix_tree_import(struct rst_target *t, int park, const Haul__Img__UnixPairFile *u, int *src)
{
	struct xend *e = NULL;
	int ret = 0;

	for (size_t i = 0; i < xt.n && !e; i++)
		if (xt.v[i].ino == u->ino)
			e = &xt.v[i];
	if (!e)
		return -ENOENT;
	if (u->has_data)
		ret = send_all(e->peer, u->data.data, u->data.len);
	for (size_t i = 0; i < u->n_msgs && !ret; i++)
		ret = rst_unix_send_msg(t, park, e->peer, u, i);
	if (ret)
		pr_err("cannot queue again what unix socket %llu of pid %d had to read: %s",
		       (unsigned long long)u->ino, (int)t->o.pid, strerror(-ret));
	if (!ret)
		ret = rst_ext_push_fd(t, e->fd, src);
	close(e->fd);
	close(e->peer);
	*e = xt.v[--xt.n];
	return ret;
}

/* Whether @pid has an fd on socket:[@ino]. */
static bool holds(pid_t pid, uint64_t ino)
{
	char dir[64], link[96], want[48], target[48];
	struct dirent *d;
	bool held = false;
	DIR *fds;

	snprintf(want, sizeof(want), "socket:[%llu]", (unsigned long long)ino);
	snprintf(dir, sizeof(dir), "/proc/%d/fd", (int)pid);
	fds = opendir(dir);
	if (!fds)
		return false;
	while (!held && (d = readdir(fds))) {
		ssize_t n;

		if (d->d_name[0] == '.')
			continue;
		snprintf(link, sizeof(link), "%s/%.16s", dir, d->d_name);
		n = readlink(link, target, sizeof(target) - 1);
		if (n > 0) {
			target[n] = '\0';
			held = !strcmp(target, want);
		}
	}
	closedir(fds);
	return held;
}

bool rst_unix_moving_holds(uint64_t ino)
{
	const pid_t *m;
	size_t n = rst_ext_moving_pids(&m);

	for (size_t i = 0; i < n; i++)
		if (holds(m[i], ino))
			return true;
	return false;
}
