/*
 * srvload_udp.c - UDP echo load client: each "connection" is a connected UDP
 * socket with one datagram in flight, "u<C>:<SEQ>:" and filler up to
 * --value-size bytes; the echo must return it byte for byte.  A datagram with
 * no echo within --timeout (default 200 ms) is counted "lost" (not an error:
 * UDP may lose datagrams, and one sent while the server is frozen behind the
 * network lock is dropped) and the next one goes out; an echo that arrives
 * after its timeout is counted "late" (the server answered a datagram that
 * waited in its queue: queued datagrams survived).  ICMP port unreachable
 * (ECONNREFUSED: nobody listens) is an error, like a wrong echo.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "load.h"

struct udp_conn {
	uint64_t seq;
	char *want;
	size_t want_len;
};

static uint64_t late;

static int udp_init(struct load_conn *c, const struct load_opts *o)
{
	struct udp_conn *u = calloc(1, sizeof(*u));

	c->priv = u;
	if (!u)
		return -ENOMEM;
	u->want_len = o->value_size < 32 ? 32 : (size_t)o->value_size;
	u->want = malloc(u->want_len);
	return u->want ? 0 : -ENOMEM;
}

static void udp_free(struct load_conn *c)
{
	struct udp_conn *u = c->priv;

	if (u)
		free(u->want);
	free(u);
	c->priv = NULL;
}

static int udp_request(struct load_conn *c, const struct load_opts *o)
{
	struct udp_conn *u = c->priv;
	int n;

	(void)o;
	if (c->finishing)
		return 1;
	u->seq++;
	n = snprintf(u->want, u->want_len, "u%d:%llu:", c->id, (unsigned long long)u->seq);
	load_fill_bytes(load_seed((uint64_t)c->id, u->seq, 0x0d9), u->want + n,
			u->want_len - (size_t)n);
	return load_out(c, u->want, u->want_len);
}

static long udp_response(struct load_conn *c, const struct load_opts *o, bool *wrong)
{
	struct udp_conn *u = c->priv;
	unsigned long long seq;
	int conn, n = 0;

	(void)o;
	if (sscanf(c->in, "u%d:%llu:%n", &conn, &seq, &n) != 2 || !n || conn != c->id ||
	    seq > u->seq)
		return -EPROTO;
	if (seq < u->seq) {
		late++;
		return 0;
	}
	if (c->in_len != u->want_len || memcmp(c->in, u->want, u->want_len))
		*wrong = true;
	return (long)c->in_len;
}

static void udp_report(char *buf, size_t len)
{
	snprintf(buf, len, "\"late\": %llu", (unsigned long long)late);
}

static const struct load_proto udp_proto = {
	.name = "udp",
	.default_port = 7777,
	.dgram = true,
	.default_timeout_ms = 200,
	.conn_init = udp_init,
	.conn_free = udp_free,
	.request = udp_request,
	.response = udp_response,
	.report = udp_report,
};

int main(int argc, char **argv)
{
	return load_main(&udp_proto, argc, argv);
}
