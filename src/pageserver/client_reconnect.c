/*
 * client_reconnect.c - post-copy recovery on the source: after a stream
 * broke, open every stream again and rejoin the session (SessionJoin
 * with resume), retrying with backoff while the error is one another try
 * may cure.
 */
#define LOG_PREFIX "ps-client: "
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"
#include "pageserver/client_int.h"

bool ps_client_broken(const struct ps_client *c)
{
	return c->serve_broken;
}

/* Errors after which another try may succeed: the network, or a server not done detaching. */
static bool reconnect_retryable(int err)
{
	switch (-err) {
	case ETIMEDOUT:
	case ECONNRESET:
	case ECONNABORTED:
	case EPIPE:
	case EBUSY: /* the server has not seen the old connections break yet */
	case ENETUNREACH:
	case ENETDOWN:
	case EHOSTUNREACH:
	case EAGAIN:
	case EINTR:
		return true;
	default:
		return false;
	}
}

static void set_sndtimeo(int fd, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* One try: every stream closed, connected, authenticated and rejoined; waits of @tmo ms each. */
static int reconnect_once(struct ps_client *c, const struct sockaddr_storage *ss, socklen_t len,
			  int tmo)
{
	int saved = c->o.timeout_ms, ret = 0;

	c->o.timeout_ms = tmo; /* connect, Hello, Auth and SessionOk each wait at most this */
	for (unsigned i = 0; i < c->n && !ret; i++) {
		struct ps_stream *st = &c->st[i];

		if (st->fd >= 0)
			close(st->fd);
		st->fd = -1;
		st->tx_seq = st->rx_seq = 0;
		st->encrypt = false;
		sodium_memzero(st->skey, sizeof(st->skey));
		st->broken = false;
		ret = ps_stream_connect(c, st, ss, len);
		if (!ret)
			ret = ps_stream_auth(c, st);
		if (!ret)
			ret = ps_stream_session(c, st, true);
	}
	c->o.timeout_ms = saved;
	for (unsigned i = 0; !ret && i < c->n; i++)
		set_sndtimeo(c->st[i].fd, ps_reply_timeout(c));
	return ret;
}

int ps_client_reconnect(struct ps_client *c, int timeout_ms)
{
	uint64_t end = (uint64_t)ps_clock_ns(CLOCK_MONOTONIC) +
		       (uint64_t)(timeout_ms > 0 ? timeout_ms : ps_reply_timeout(c)) * 1000000ull;
	struct sockaddr_storage ss;
	int backoff_ms = 10, ret;
	socklen_t len;

	/* the sender threads must be idle; their errors were the old sockets' */
	(void)ps_client_flush(c);
	ret = ps_addr_parse(c->o.to, false, &ss, &len);
	if (ret) {
		pr_err("cannot resolve page server address '%s'", c->o.to);
		return ret;
	}
	for (;;) {
		uint64_t now = (uint64_t)ps_clock_ns(CLOCK_MONOTONIC);
		int left = now < end ? (int)((end - now) / 1000000ull) : 0;

		ret = reconnect_once(c, &ss, len, left > 0 ? left : 1);
		if (!ret) {
			pthread_mutex_lock(&c->mu);
			c->reconnects++;
			for (unsigned i = 0; i < c->n; i++)
				c->st[i].err = 0;
			pthread_mutex_unlock(&c->mu);
			return 0;
		}
		now = (uint64_t)ps_clock_ns(CLOCK_MONOTONIC);
		if (!reconnect_retryable(ret) || now + (uint64_t)backoff_ms * 1000000ull >= end)
			break;
		usleep((useconds_t)backoff_ms * 1000);
		backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
	}
	for (unsigned i = 0; i < c->n; i++)
		c->st[i].broken = true; /* nothing usable: a later try starts over */
	pr_err_r(ret, "cannot rejoin session %016llx on %s", (unsigned long long)c->session_id,
		 c->o.to);
	return ret;
}
