/*
 * fd_presock.c - the AF_INET/AF_INET6 sockets of a restore, created in the
 * stub in batches before the fd loop, each already at its own number.
 *
 * Why: a socket is made by one injected socket() (it so lives in the stub's
 * network namespace), and everything else is done on haul's pidfd_getfd
 * copy (fd_inet.c).  A server with many connections paid one round trip
 * per socket while the process was down; here up to PRESOCK_GROUP sockets
 * cost one (target_batch.c).
 *
 * A batch cannot pass one call's result to the next, so the numbers are
 * known in advance: right after close_range every fd of the stub is free
 * and socket() returns the lowest free number, F_DUPFD the lowest free
 * number from the parking area up.  Per group of m sockets:
 *   socket() x m        -> a_0..a_m-1, the m lowest numbers no placed socket holds
 *   F_DUPFD_CLOEXEC(a_j, park) -> park + j
 *   close(a_j) x m
 *   dup3(park + j, fd_j) -> fd_j, its number in the image
 *   close(park + j) x m
 * and every result is checked against the expected number afterwards: a
 * mismatch fails the restore (the stub is discarded), it is never used.
 * rst_inet_restore then takes the socket at its number instead of making
 * one (rst_fd_presock_take).  Only the first fd of each socket is made
 * here; later fds of it are dup3s of the first, as for every kind.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "common/log.h"
#include "restore/fd_inet.h"
#include "restore/fd_int.h"
#include "restore/target_int.h"

/* Sockets per batch: 5 calls each, within one table (RST_BATCH_MAX). */
#define PRESOCK_GROUP 25

/* Whether fd @e makes its socket here: the first fd of an inet socket. */
static bool wanted(const Haul__Img__ProcessState *ps, const Haul__Img__FdEntry *e)
{
	const Haul__Img__FileObject *f = rst_fd_file(ps, e->file_id);
	const struct rst_fd_ops *k = f ? rst_fd_ops_of(f->kind) : NULL;

	return k && k->restore == rst_inet_restore && f->inet && rst_fd_first(ps, f->id) == e;
}

static bool taken(const int *v, size_t n, int fd)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == fd)
			return true;
	return false;
}

/* One group: @es[0..m) made and placed; t->presock grows by them. */
static int make_group(struct rst_target *t, struct rst_fd_rctx *x, struct rst_batch *b,
		      const Haul__Img__FdEntry **es, size_t m, char *why, size_t wl)
{
	const Haul__Img__ProcessState *ps = x->ps;
	int low[PRESOCK_GROUP], next = 0;
	int ret;

	rst_batch_init(b);
	for (size_t j = 0; j < m; j++) {
		const Haul__Img__InetSocket *s = rst_fd_file(ps, es[j]->file_id)->inet;

		while (taken(t->presock, t->npresock, next))
			next++;
		low[j] = next++;
		rst_bcall(t, b, 0, "socket", SYS_socket, s->family, s->type | SOCK_CLOEXEC,
			  s->protocol, 0, 0, 0);
	}
	for (size_t j = 0; j < m; j++)
		rst_bcall(t, b, 0, "fcntl(F_DUPFD_CLOEXEC)", SYS_fcntl, low[j], F_DUPFD_CLOEXEC,
			  x->park, 0, 0, 0);
	for (size_t j = 0; j < m; j++)
		rst_bcall(t, b, 0, "close", SYS_close, low[j], 0, 0, 0, 0, 0);
	for (size_t j = 0; j < m; j++)
		rst_bcall(t, b, 0, "dup3", SYS_dup3, x->park + j, es[j]->fd, 0, 0, 0, 0);
	for (size_t j = 0; j < m; j++)
		rst_bcall(t, b, 0, "close", SYS_close, x->park + j, 0, 0, 0, 0, 0);
	ret = rst_batch_run(t, b);
	if (ret) {
		int fd = es[b->failed % m]->fd;

		snprintf(why, wl, "cannot create the socket of fd %d: %s: %s", fd, b->what,
			 strerror(-ret));
		return ret;
	}
	for (size_t j = 0; j < m; j++)
		if (b->c[j].ret != low[j] || b->c[m + j].ret != x->park + (long)j) {
			snprintf(why, wl,
				 "the socket of fd %d came at fd %ld (parked at %ld), not %d (%d): "
				 "the stub held an fd it should not",
				 es[j]->fd, b->c[j].ret, b->c[m + j].ret, low[j], x->park + (int)j);
			return -EIO;
		}
	for (size_t j = 0; j < m; j++)
		t->presock[t->npresock++] = es[j]->fd;
	return 0;
}

int rst_fd_presock(struct rst_target *t, struct rst_fd_rctx *x, char *why, size_t wl)
{
	const Haul__Img__ProcessState *ps = x->ps;
	const Haul__Img__FdEntry *es[PRESOCK_GROUP];
	struct rst_batch *b;
	size_t n = 0, m = 0;
	int ret = 0;

	for (size_t i = 0; i < ps->n_fds; i++)
		n += wanted(ps, ps->fds[i]);
	if (!n)
		return 0;
	b = malloc(sizeof(*b));
	free(t->presock);
	t->presock = calloc(n, sizeof(*t->presock));
	t->npresock = 0;
	if (!b || !t->presock) {
		free(b);
		return -ENOMEM;
	}
	for (size_t i = 0; i < ps->n_fds && !ret; i++) {
		if (!wanted(ps, ps->fds[i]))
			continue;
		es[m++] = ps->fds[i];
		if (m == PRESOCK_GROUP) {
			ret = make_group(t, x, b, es, m, why, wl);
			m = 0;
		}
	}
	if (!ret && m)
		ret = make_group(t, x, b, es, m, why, wl);
	free(b);
	return ret;
}

bool rst_fd_presock_take(struct rst_target *t, int fd)
{
	for (size_t i = 0; i < t->npresock; i++)
		if (t->presock[i] == fd) {
			t->presock[i] = -1;
			return true;
		}
	return false;
}
