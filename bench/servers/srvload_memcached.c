/*
 * srvload_memcached.c - memcached load client (text protocol): N
 * connections doing checked set/get (kv.h), or --fill SIZE with pipelined
 * sets and --check reading every one back (memcached has no digest: the
 * checked scan is the dataset comparison; an evicted key reads as missing).
 * Replies parsed: STORED, VALUE key flags bytes ... END, END, DELETED,
 * NOT_FOUND; ERROR / CLIENT_ERROR / SERVER_ERROR are protocol errors and are
 * printed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

static int mc_encode(struct load_conn *c, enum kv_op op, const char *key, size_t klen,
		     const char *val, size_t vlen)
{
	int ret;

	switch (op) {
	case KV_SET:
		ret = load_outf(c, "set %.*s 0 0 %zu\r\n", (int)klen, key, vlen);
		if (!ret)
			ret = load_out(c, val, vlen);
		return ret ? ret : load_out(c, "\r\n", 2);
	case KV_GET:
		return load_outf(c, "get %.*s\r\n", (int)klen, key);
	case KV_DEL:
		return load_outf(c, "delete %.*s\r\n", (int)klen, key);
	}
	return -EINVAL;
}

static bool is_line(const char *buf, size_t line, const char *want)
{
	size_t n = strlen(want);

	return line == n + 2 && !memcmp(buf, want, n);
}

static long mc_parse(const char *buf, size_t len, enum kv_op op, const char **val, size_t *vlen)
{
	const char *eol = memmem(buf, len, "\r\n", 2);
	size_t line = eol ? (size_t)(eol - buf) + 2 : 0;
	unsigned long n;
	char *end;
	const char *p;

	if (!eol)
		return len > 65536 ? -EPROTO : 0;
	if (memmem(buf, line - 2, "ERROR", 5)) {
		fprintf(stderr, "load: memcached error reply: %.*s\n", (int)(line - 2), buf);
		return -EPROTO;
	}
	switch (op) {
	case KV_SET:
		return is_line(buf, line, "STORED") ? (long)line : -EPROTO;
	case KV_DEL:
		return is_line(buf, line, "DELETED") || is_line(buf, line, "NOT_FOUND") ? (long)line
											: -EPROTO;
	case KV_GET:
		if (is_line(buf, line, "END")) {
			*val = NULL;
			return (long)line;
		}
		if (line < 8 || memcmp(buf, "VALUE ", 6))
			return -EPROTO;
		/* VALUE <key> <flags> <bytes>: the last field is the length */
		for (p = eol; p > buf && p[-1] != ' '; p--)
			;
		n = strtoul(p, &end, 10);
		if (end != eol || n > LOAD_MAX_VALUE)
			return -EPROTO;
		if (len < line + n + 7)
			return 0;
		if (memcmp(buf + line + n, "\r\nEND\r\n", 7))
			return -EPROTO;
		*val = buf + line;
		*vlen = n;
		return (long)(line + n + 7);
	}
	return -EPROTO;
}

static const struct kv_codec mc_codec = {.encode = mc_encode, .parse = mc_parse};
const struct kv_codec *kv_codec = &mc_codec;

static const struct load_proto mc_proto = {
	.name = "memcached",
	.default_port = 11211,
	.conn_init = kv_conn_init,
	.conn_reset = kv_conn_reset,
	.conn_free = kv_conn_free,
	.request = kv_request,
	.response = kv_response,
	.fill = kv_fill,
};

int main(int argc, char **argv)
{
	return load_main(&mc_proto, argc, argv);
}
