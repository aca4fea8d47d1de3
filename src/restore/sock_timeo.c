/*
 * sock_timeo.c - a socket's SO_RCVTIMEO and SO_SNDTIMEO, whatever its kind:
 * a blocking recv() or send() that gives up after them with EAGAIN.
 *
 * A new socket has none (0: wait for ever), so a timeout is carried only
 * when set, as a SockOpt of the kind's options with value 0 and `usec` the
 * timeout in microseconds.  The kernel keeps it in jiffies, rounded up; the
 * value getsockopt gives back is a whole number of jiffies, which setsockopt
 * turns into the same number again, so the restored socket waits exactly
 * as long.  A listener's timeouts are its accepted sockets' too (the kernel
 * copies them at accept), so they go with the listener.  Without them a
 * restored server or client blocks for ever where it gave up before.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/time.h>

#include "restore/fd_inet.h"

/* Longer than any timeout the kernel keeps (LONG_MAX jiffies at HZ 100 is ~2.9e9 years). */
#define TIMEO_MAX_USEC (UINT64_C(1) << 62)

bool rst_sock_timeo_is(const Haul__Img__SockOpt *o)
{
	return o->level == SOL_SOCKET && (o->name == SO_RCVTIMEO || o->name == SO_SNDTIMEO);
}

int rst_sock_timeo_dump(int sfd, Haul__Img__SockOpt **out, size_t *n)
{
	static const int names[] = {SO_RCVTIMEO, SO_SNDTIMEO};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		struct timeval tv = {0};
		socklen_t l = sizeof(tv);
		Haul__Img__SockOpt *o;

		if (getsockopt(sfd, SOL_SOCKET, names[i], &tv, &l) < 0 || l != sizeof(tv) ||
		    (!tv.tv_sec && !tv.tv_usec) || tv.tv_sec < 0 || tv.tv_usec < 0)
			continue;
		o = malloc(sizeof(*o));
		if (!o)
			return -ENOMEM;
		haul__img__sock_opt__init(o);
		o->level = SOL_SOCKET;
		o->name = names[i];
		o->value = 0;
		o->has_usec = true;
		o->usec = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
		out[(*n)++] = o;
	}
	return 0;
}

int rst_sock_timeo_timeval(const Haul__Img__SockOpt *o, struct timeval *tv)
{
	if (!rst_sock_timeo_is(o) || !o->has_usec || o->usec > TIMEO_MAX_USEC)
		return -EINVAL;
	tv->tv_sec = (time_t)(o->usec / 1000000u);
	tv->tv_usec = (suseconds_t)(o->usec % 1000000u);
	return 0;
}

int rst_sock_timeo_set(int sfd, const Haul__Img__SockOpt *o)
{
	struct timeval tv;
	int ret = rst_sock_timeo_timeval(o, &tv);

	if (ret)
		return ret;
	return setsockopt(sfd, SOL_SOCKET, o->name, &tv, sizeof(tv)) < 0 ? -errno : 0;
}

int rst_sock_timeo_valid(const Haul__Img__SockOpt *o, uint32_t file, char *why, size_t wl)
{
	struct timeval tv;

	if (!o->has_usec && !rst_sock_timeo_is(o))
		return 0;
	if (!rst_sock_timeo_is(o) || rst_sock_timeo_timeval(o, &tv) || o->value) {
		snprintf(why, wl,
			 "file %u: socket option %d/%d: a timeout on an option that is not "
			 "SO_RCVTIMEO or SO_SNDTIMEO, none on one, or one beyond 2^62 us",
			 file, o->level, o->name);
		return -EBADMSG;
	}
	return 0;
}
