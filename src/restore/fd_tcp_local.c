/*
 * fd_tcp_local.c - TCP connections whose peer is on this host: repair mode
 * is left only once every socket of the restore exists.
 *
 * Leaving TCP_REPAIR sends a window probe.  When the peer is another
 * socket being restored (a parent and child talking over loopback, a
 * process connected to its own listener), it may not exist yet: the probe
 * meets a closed port, the kernel answers with a RST, and the restored
 * connection is reset.  So such a connection (peer on loopback, or on the
 * socket's own address) stays in repair mode at its restore: haul keeps a
 * copy of the socket and of its image, and rst_tcp_deferred_finish takes
 * them all out of repair mode (first pass), then writes their never-sent
 * bytes and FINs (second pass: by then every peer left repair mode too),
 * just before the first process of the restore runs.  A connection to
 * another host is finished at once, as before (a live migration's network
 * lock holds its peer's segments meanwhile), except in the restore of an
 * image whose checkpoint left a network lock (ckpt_lock.c): then every
 * connection waits, and the finish lifts the lock before the first leaves
 * repair mode, so that its window probe reaches the peer and the peer's
 * answer meets a socket.
 *
 * Socket options that must wait the same way go through here too
 * (rst_sock_defer_opt): SO_REUSEPORT turned off after a second socket
 * joined the first one's port is set back to 0 only once both are bound;
 * a unix socket's shutdown only once every queue is refilled
 * (rst_sock_defer_shutdown, fd_unix_opts.c).
 */
#define LOG_PREFIX "sock: "
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/grow.h"
#include "common/log.h"
#include "restore/fd_inet.h"
#include "restore/imgdir_int.h"
#include "restore/restore.h"

struct deferred {
	int sfd;
	Haul__Img__InetSocket *s; /* unpacked copy: the image's is freed before the run */
};

static __thread struct deferred *dl;
static __thread size_t ndl, capdl;

struct deferred_opt {
	int sfd, level, name; /* level -1: shutdown(sfd, v.i) */
	union {
		int i;
		uint8_t raw[16];
	} v;
	socklen_t len;
};

static __thread struct deferred_opt *dop;
static __thread size_t ndop, capdop;

/* the checkpoint's network lock this restore lifts at the finish; "": none */
static __thread char lock_name[RST_NETLOCK_NAME];

void rst_tcp_defer_all(const char *lock)
{
	snprintf(lock_name, sizeof(lock_name), "%s", lock ? lock : "");
}

int rst_sock_defer_shutdown(int sfd, int how)
{
	return rst_sock_defer_opt(sfd, -1, 0, how);
}

int rst_sock_defer_optval(int sfd, int level, int name, const void *v, socklen_t len)
{
	if (len > sizeof(dop->v.raw))
		return -EINVAL;
	if (haul_grow(&dop, &capdop, ndop, sizeof(*dop), 8))
		return -ENOMEM;
	dop[ndop].sfd = dup(sfd);
	if (dop[ndop].sfd < 0)
		return -errno;
	dop[ndop].level = level;
	dop[ndop].name = name;
	memset(&dop[ndop].v, 0, sizeof(dop[ndop].v));
	memcpy(&dop[ndop].v, v, len);
	dop[ndop++].len = len;
	return 0;
}

int rst_sock_defer_opt(int sfd, int level, int name, int value)
{
	return rst_sock_defer_optval(sfd, level, name, &value, sizeof(value));
}

/* Whether @a (@s's family) is loopback. */
static bool loopback(const Haul__Img__InetSocket *s, const uint8_t *a)
{
	static const uint8_t v6_lo[16] = {[15] = 1};
	static const uint8_t v4_mapped[12] = {[10] = 0xff, [11] = 0xff};

	if (s->family == AF_INET)
		return a[0] == 127;
	return !memcmp(a, v6_lo, 16) || (!memcmp(a, v4_mapped, 12) && a[12] == 127);
}

/* Whether @s's peer is on this host: loopback, or its own address. */
static bool peer_here(const Haul__Img__InetSocket *s)
{
	size_t alen = s->family == AF_INET ? 4 : 16;

	if (!s->has_peer_addr || s->peer_addr.len != alen)
		return false;
	if (loopback(s, s->peer_addr.data))
		return true;
	return s->has_local_addr && s->local_addr.len == alen &&
	       !memcmp(s->local_addr.data, s->peer_addr.data, alen);
}

int rst_tcp_defer(int sfd, const Haul__Img__InetSocket *s)
{
	size_t len = haul__img__inet_socket__get_packed_size(s);
	uint8_t *buf;
	struct deferred d;

	if (!lock_name[0] && !peer_here(s))
		return 0;
	if (haul_grow(&dl, &capdl, ndl, sizeof(*dl), 8))
		return -ENOMEM;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	haul__img__inet_socket__pack(s, buf);
	d.s = haul__img__inet_socket__unpack(NULL, len, buf);
	free(buf);
	if (!d.s)
		return -ENOMEM;
	d.sfd = dup(sfd);
	if (d.sfd < 0) {
		haul__img__inet_socket__free_unpacked(d.s, NULL);
		return -errno;
	}
	dl[ndl++] = d;
	return 1;
}

void rst_tcp_deferred_drop(void)
{
	for (size_t i = 0; i < ndl; i++) {
		close(dl[i].sfd); /* still in repair mode: it goes without a word */
		haul__img__inet_socket__free_unpacked(dl[i].s, NULL);
	}
	ndl = 0;
	for (size_t i = 0; i < ndop; i++)
		close(dop[i].sfd);
	ndop = 0;
	lock_name[0] = '\0'; /* a failed restore: the lock stays, the image's */
}

int rst_tcp_deferred_finish(char *why, size_t wl)
{
	const struct deferred *bad = NULL;
	const char *step = "";
	int ret = 0;

	/* the peers' segments get through from here: every socket of the restore exists */
	if (lock_name[0] && (ret = rst_restore_lock_lift(lock_name))) {
		snprintf(why, wl, "cannot lift the checkpoint's network lock %s (above)",
			 lock_name);
		rst_tcp_deferred_drop();
		return ret;
	}
	for (size_t i = 0; i < ndl && !bad; i++)
		if ((ret = rst_tcp_leave_repair(dl[i].sfd, dl[i].s, &step)))
			bad = &dl[i];
	for (size_t i = 0; i < ndl && !bad; i++)
		if ((ret = rst_tcp_after_repair(dl[i].sfd, dl[i].s, &step)))
			bad = &dl[i];
	for (size_t i = 0; i < ndop && !ret; i++)
		if (dop[i].level == -1 ? shutdown(dop[i].sfd, dop[i].v.i) < 0 && errno != ENOTCONN
				       : setsockopt(dop[i].sfd, dop[i].level, dop[i].name,
						    dop[i].v.raw, dop[i].len) < 0) {
			ret = -errno;
			if (dop[i].level == -1)
				snprintf(why, wl, "cannot shut a socket down (how %d): %s",
					 dop[i].v.i, strerror(errno));
			else
				snprintf(why, wl,
					 "cannot set socket option %d/%d (first word %d): %s",
					 dop[i].level, dop[i].name, dop[i].v.i, strerror(errno));
		}
	if (bad) {
		char name[160];

		rst_inet_name(bad->s, name, sizeof(name));
		snprintf(why, wl, "cannot restore %s: %s: %s", name, step, strerror(-ret));
	}
	rst_tcp_deferred_drop();
	return ret;
}
