/*
 * fd_unix_opts.c - the options of a unix socket: SO_PASSCRED (every
 * message comes with SCM_CREDENTIALS), its shutdown (reads end, writes
 * fail with EPIPE), and the generic SOL_SOCKET options a program may set
 * on it (buffer sizes, SO_RCVLOWAT, SO_PEEK_OFF, priority, mark, ...).
 *
 * The generic ones: the value of each option of unix_opts that differs
 * from a new socket's of the same type (asked of one made here, kept a
 * second) goes into the kind's `opts`; the restore sets them on a
 * pidfd_getfd copy once every queue is refilled, just before the first
 * process runs (rst_sock_defer_opt: a small buffer set earlier could make
 * the refill block); the buffer sizes with the FORCE variants and half the
 * value getsockopt gave (the kernel doubles what it is told).  Beside them
 * SO_RCVTIMEO and SO_SNDTIMEO (sock_timeo.c) and SO_LINGER when on (a unix
 * socket's close does not wait, but the program reads it back).  Not
 * carried: filters attached to the socket.
 *
 * Dump: getsockopt on a pidfd_getfd copy.  Restore: the kinds' setup hook
 * (after the fd is at its number) sets it again by an injected
 * setsockopt, after O_NONBLOCK.  Credentials of messages queued at the
 * dump are not carried: a message sent again carries the credentials of
 * whoever sends it at the restore (the restored process itself for
 * datagram sockets others send to, haul for the pairs' queues, which the
 * program sees as pid 0 when haul is outside its PID namespace), and
 * only when SO_PASSCRED was already on at that send.
 *
 * A shutdown (UNIX_DIAG_SHUTDOWN at the dump) is made again with
 * shutdown() on a pidfd_getfd copy, but only once every queue of the
 * restore is refilled (fd_tcp_local.c's deferred list, just before the
 * first process runs): the bytes an end has to read are written through
 * its peer, which may be the end shut for writes, possibly in a later
 * process of a tree.  A stream or seqpacket shutdown also marks the peer
 * (the kernel mirrors it), so each end's own answer, given again, makes
 * both; a datagram socket's marks only itself, as at the dump.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "restore/fd_inet.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

int rst_unix_passcred(pid_t pid, int fd)
{
	int sfd = rst_fd_copy(pid, fd), on = 0, ret;
	socklen_t ol = sizeof(on);

	if (sfd < 0)
		return sfd;
	ret = getsockopt(sfd, SOL_SOCKET, SO_PASSCRED, &on, &ol) < 0 ? -errno : on != 0;
	close(sfd);
	return ret;
}

/* The SOL_SOCKET options carried (int-valued). */
static const int unix_opts[] = {SO_SNDBUF, SO_RCVBUF,  SO_RCVLOWAT,  SO_PEEK_OFF, SO_PRIORITY,
				SO_MARK,   SO_PASSSEC, SO_DONTROUTE, SO_NO_CHECK, SO_OOBINLINE};
#define NOPTS (sizeof(unix_opts) / sizeof(unix_opts[0]))
/* Beside them: SO_RCVTIMEO, SO_SNDTIMEO (sock_timeo.c) and SO_LINGER. */
#define NEXTRA 3

/* A new unix socket's values of unix_opts, per type, read again after a second. */
static bool defaults_of(int type, int v[NOPTS], bool ok[NOPTS])
{
	static __thread struct {
		int type;
		uint64_t at_ns;
		int v[NOPTS];
		bool ok[NOPTS];
	} cache[3];
	struct timespec ts;
	uint64_t now;
	size_t slot = type == SOCK_STREAM ? 0 : type == SOCK_DGRAM ? 1 : 2;
	int ref;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	if (cache[slot].at_ns && cache[slot].type == type &&
	    now - cache[slot].at_ns < 1000000000ull)
		goto out;
	ref = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
	if (ref < 0)
		return false;
	for (size_t i = 0; i < NOPTS; i++) {
		socklen_t l = sizeof(int);

		cache[slot].ok[i] =
			!getsockopt(ref, SOL_SOCKET, unix_opts[i], &cache[slot].v[i], &l);
	}
	close(ref);
	cache[slot].type = type;
	cache[slot].at_ns = now;
out:
	memcpy(v, cache[slot].v, sizeof(cache[slot].v));
	memcpy(ok, cache[slot].ok, sizeof(cache[slot].ok));
	return true;
}

/* The timeouts and SO_LINGER when on, appended to @o[*@n...] (room for NEXTRA). */
static int dump_extra(int sfd, Haul__Img__SockOpt **o, size_t *n)
{
	struct linger lg = {0};
	socklen_t l = sizeof(lg);
	int ret = rst_sock_timeo_dump(sfd, o, n);

	if (ret || getsockopt(sfd, SOL_SOCKET, SO_LINGER, &lg, &l) < 0 || !lg.l_onoff)
		return ret;
	o[*n] = malloc(sizeof(*o[*n]));
	if (!o[*n])
		return -ENOMEM;
	haul__img__sock_opt__init(o[*n]);
	o[*n]->level = SOL_SOCKET;
	o[*n]->name = SO_LINGER;
	o[(*n)++]->value = lg.l_linger;
	return 0;
}

int rst_unix_opts_dump(pid_t pid, int fd, int type, Haul__Img__SockOpt ***opts, size_t *n)
{
	int sfd, v[NOPTS], def[NOPTS], ret;
	bool ok[NOPTS];

	*n = 0;
	if (!defaults_of(type, def, ok))
		return -errno;
	sfd = rst_fd_copy(pid, fd);
	if (sfd < 0)
		return sfd;
	*opts = calloc(NOPTS + NEXTRA, sizeof(**opts));
	for (size_t i = 0; *opts && i < NOPTS; i++) {
		socklen_t l = sizeof(int);
		Haul__Img__SockOpt *o;

		if (!ok[i] || getsockopt(sfd, SOL_SOCKET, unix_opts[i], &v[i], &l) ||
		    v[i] == def[i])
			continue;
		o = malloc(sizeof(*o));
		if (!o)
			break;
		haul__img__sock_opt__init(o);
		o->level = SOL_SOCKET;
		o->name = unix_opts[i];
		o->value = v[i];
		(*opts)[(*n)++] = o;
	}
	ret = *opts ? dump_extra(sfd, *opts, n) : -ENOMEM;
	close(sfd);
	return ret;
}

static void opts_of(const Haul__Img__FileObject *f, Haul__Img__SockOpt *const **o, size_t *n);

int rst_unix_opts_valid(const Haul__Img__FileObject *f, char *why, size_t wl)
{
	Haul__Img__SockOpt *const *o;
	size_t n;

	opts_of(f, &o, &n);
	for (size_t i = 0; i < n; i++) {
		bool known = rst_sock_timeo_is(o[i]) ||
			     (o[i]->level == SOL_SOCKET && o[i]->name == SO_LINGER);

		if (rst_sock_timeo_valid(o[i], f->id, why, wl))
			return -EBADMSG;
		for (size_t k = 0; k < NOPTS; k++)
			known |= o[i]->level == SOL_SOCKET && o[i]->name == unix_opts[k];
		if (!known || n > NOPTS + NEXTRA) {
			snprintf(
				why, wl,
				"file %u: unix socket option %d/%d is not one haul carries, or too "
				"many options",
				f->id, o[i]->level, o[i]->name);
			return -EBADMSG;
		}
	}
	return 0;
}

/* @f's carried options (fd_unix_opts.c), whichever unix kind it is. */
static void opts_of(const Haul__Img__FileObject *f, Haul__Img__SockOpt *const **o, size_t *n)
{
	*o = f->unix_pair     ? f->unix_pair->opts
	     : f->unix_dgram  ? f->unix_dgram->opts
	     : f->unix_listen ? f->unix_listen->opts
			      : NULL;
	*n = f->unix_pair     ? f->unix_pair->n_opts
	     : f->unix_dgram  ? f->unix_dgram->n_opts
	     : f->unix_listen ? f->unix_listen->n_opts
			      : 0;
}

/* @f's options set again on fd @fd of the target just before it runs (rst_sock_defer_opt). */
static int opts_later(struct rst_target *t, const Haul__Img__FileObject *f, int fd)
{
	Haul__Img__SockOpt *const *o;
	size_t n;
	int sfd, ret = 0;

	opts_of(f, &o, &n);
	if (!n)
		return 0;
	sfd = (int)syscall(SYS_pidfd_getfd, rst_target_pidfd(t), fd, 0);
	if (sfd < 0)
		return -errno;
	for (size_t i = 0; i < n && !ret; i++) {
		int name = o[i]->name, v = o[i]->value;
		struct linger lg = {1, v};
		struct timeval tv;

		if (!rst_sock_timeo_timeval(o[i], &tv)) {
			ret = rst_sock_defer_optval(sfd, SOL_SOCKET, name, &tv, sizeof(tv));
			continue;
		}
		if (name == SO_LINGER) {
			ret = rst_sock_defer_optval(sfd, SOL_SOCKET, name, &lg, sizeof(lg));
			continue;
		}
		/* getsockopt gave the kernel's doubled size; FORCE: not capped by [rw]mem_max */
		if (name == SO_SNDBUF || name == SO_RCVBUF) {
			name = name == SO_SNDBUF ? SO_SNDBUFFORCE : SO_RCVBUFFORCE;
			v /= 2;
		}
		ret = rst_sock_defer_opt(sfd, SOL_SOCKET, name, v);
	}
	close(sfd);
	return ret;
}

/* fd @fd of the target shut down again (@shut: 1 reads, 2 writes, 3 both) just before it runs. */
static int shut_later(struct rst_target *t, int fd, uint32_t shut)
{
	static const int how[] = {0, SHUT_RD, SHUT_WR, SHUT_RDWR};
	int sfd = (int)syscall(SYS_pidfd_getfd, rst_target_pidfd(t), fd, 0), ret;

	if (sfd < 0)
		return -errno;
	ret = rst_sock_defer_shutdown(sfd, how[shut & 3]);
	close(sfd);
	return ret;
}

int rst_unix_setup(struct rst_target *t, const Haul__Img__FileObject *f,
		   const Haul__Img__FdEntry *e)
{
	bool on = (f->unix_pair && f->unix_pair->passcred) ||
		  (f->unix_dgram && f->unix_dgram->passcred) ||
		  (f->unix_listen && f->unix_listen->passcred);
	uint32_t shut = f->unix_pair	? f->unix_pair->shutdown
			: f->unix_dgram ? f->unix_dgram->shutdown
					: 0;
	int one = 1, ret = rst_fd_set_nonblock(t, f, e);

	if (!ret)
		ret = opts_later(t, f, e->fd);
	if (!ret && shut)
		ret = shut_later(t, e->fd, shut);
	if (ret || !on)
		return ret;
	ret = rst_poke(t, rst_scratch(t), &one, sizeof(one));
	return ret ? ret
		   : rst_rcall(t, SYS_setsockopt, e->fd, SOL_SOCKET, SO_PASSCRED, rst_scratch(t),
			       sizeof(one), 0, NULL);
}
