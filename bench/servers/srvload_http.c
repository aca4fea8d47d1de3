/*
 * srvload_http.c - HTTP/1.1 keep-alive load client for the asyncio server of
 * tests/extra/srv_asyncio_server.py: each connection sends GET /k/C/N and
 * the server answers "path=/k/C/N n=M h=H\n", where M counts the requests the
 * server has answered on this connection (so a server that lost its
 * per-connection state, or a connection that was silently replaced, answers
 * wrong) and H is the FNV-1a 32 hash of the path in hex.  Every body is
 * compared with the one expected; a reply without Content-Length, or other
 * than 200, is a protocol error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "load.h"

struct http_conn {
	uint64_t sent; /* requests sent on this connection */
	char want[160];
	size_t want_len;
};

static uint32_t fnv1a(const char *s, size_t n)
{
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static int http_init(struct load_conn *c, const struct load_opts *o)
{
	(void)o;
	c->priv = calloc(1, sizeof(struct http_conn));
	return c->priv ? 0 : -ENOMEM;
}

static void http_reset(struct load_conn *c)
{
	struct http_conn *h = c->priv;

	h->sent = 0;
}

static void http_free(struct load_conn *c)
{
	free(c->priv);
	c->priv = NULL;
}

static int http_request(struct load_conn *c, const struct load_opts *o)
{
	struct http_conn *h = c->priv;
	char path[64];
	int n;

	(void)o;
	if (c->finishing)
		return 1;
	h->sent++;
	n = snprintf(path, sizeof(path), "/k/%d/%llu", c->id, (unsigned long long)h->sent);
	h->want_len = (size_t)snprintf(h->want, sizeof(h->want), "path=%s n=%llu h=%08x\n", path,
				       (unsigned long long)h->sent, fnv1a(path, (size_t)n));
	return load_outf(c, "GET %s HTTP/1.1\r\nHost: srv\r\nConnection: keep-alive\r\n\r\n", path);
}

static long http_response(struct load_conn *c, const struct load_opts *o, bool *wrong)
{
	struct http_conn *h = c->priv;
	const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
	size_t hdr, body = 0;
	const char *p;
	bool have_len = false;

	(void)o;
	if (!end)
		return c->in_len > 65536 ? -EPROTO : 0;
	hdr = (size_t)(end - c->in) + 4;
	if (hdr < 12 || memcmp(c->in, "HTTP/1.1 200", 12)) {
		fprintf(stderr, "load: connection %d: HTTP reply %.*s\n", c->id,
			(int)(memchr(c->in, '\r', hdr) ? (char *)memchr(c->in, '\r', hdr) - c->in
						       : 12),
			c->in);
		return -EPROTO;
	}
	for (p = c->in; p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
		if (*p == '\n')
			p++;
		if (!strncasecmp(p, "content-length:", 15)) {
			body = strtoul(p + 15, NULL, 10);
			have_len = true;
		}
	}
	if (!have_len || body > 65536)
		return -EPROTO;
	if (c->in_len < hdr + body)
		return 0;
	if (body != h->want_len || memcmp(c->in + hdr, h->want, body)) {
		*wrong = true;
		fprintf(stderr, "load: connection %d: body %.*s, want %.*s", c->id, (int)body,
			c->in + hdr, (int)h->want_len, h->want);
	}
	return (long)(hdr + body);
}

static const struct load_proto http_proto = {
	.name = "http",
	.default_port = 8080,
	.conn_init = http_init,
	.conn_reset = http_reset,
	.conn_free = http_free,
	.request = http_request,
	.response = http_response,
};

int main(int argc, char **argv)
{
	return load_main(&http_proto, argc, argv);
}
