/*
 * srvload_redis.c - Redis load client (RESP2): N connections doing checked
 * SET/GET (kv.h), or --fill SIZE with pipelined SETs of big values and
 * --check reading them back.  The dataset comparison before and after a
 * migration is DEBUG DIGEST (redis-cli), which holds because the load's own
 * keys are deleted by its final pass.  Replies parsed: +OK, $N bulk, $-1,
 * :N; an error reply (-ERR, -OOM, -LOADING) is a protocol error and is
 * printed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

static int resp_bulk(struct load_conn *c, const char *s, size_t n)
{
	int ret = load_outf(c, "$%zu\r\n", n);

	if (!ret)
		ret = load_out(c, s, n);
	if (!ret)
		ret = load_out(c, "\r\n", 2);
	return ret;
}

static int redis_encode(struct load_conn *c, enum kv_op op, const char *key, size_t klen,
			const char *val, size_t vlen)
{
	static const char *const cmd[] = {[KV_SET] = "SET", [KV_GET] = "GET", [KV_DEL] = "DEL"};
	int ret = load_outf(c, "*%d\r\n", op == KV_SET ? 3 : 2);

	if (!ret)
		ret = resp_bulk(c, cmd[op], 3);
	if (!ret)
		ret = resp_bulk(c, key, klen);
	if (!ret && op == KV_SET)
		ret = resp_bulk(c, val, vlen);
	return ret;
}

static long redis_parse(const char *buf, size_t len, enum kv_op op, const char **val, size_t *vlen)
{
	const char *eol = memmem(buf, len, "\r\n", 2);
	size_t line = eol ? (size_t)(eol - buf) + 2 : 0;
	char *end;
	long n;

	if (!eol)
		return len > 65536 ? -EPROTO : 0;
	if (buf[0] == '-') {
		fprintf(stderr, "load: redis error reply: %.*s\n", (int)(line - 2), buf);
		return -EPROTO;
	}
	switch (op) {
	case KV_SET:
		return line == 5 && !memcmp(buf, "+OK", 3) ? (long)line : -EPROTO;
	case KV_DEL:
		return buf[0] == ':' ? (long)line : -EPROTO;
	case KV_GET:
		if (buf[0] != '$')
			return -EPROTO;
		n = strtol(buf + 1, &end, 10);
		if (end != eol || n < -1 || n > LOAD_MAX_VALUE)
			return -EPROTO;
		if (n == -1) {
			*val = NULL;
			return (long)line;
		}
		if (len < line + (size_t)n + 2)
			return 0;
		if (memcmp(buf + line + n, "\r\n", 2))
			return -EPROTO;
		*val = buf + line;
		*vlen = (size_t)n;
		return (long)(line + (size_t)n + 2);
	}
	return -EPROTO;
}

static const struct kv_codec redis_codec = {.encode = redis_encode, .parse = redis_parse};
const struct kv_codec *kv_codec = &redis_codec;

static const struct load_proto redis_proto = {
	.name = "redis",
	.default_port = 6379,
	.conn_init = kv_conn_init,
	.conn_reset = kv_conn_reset,
	.conn_free = kv_conn_free,
	.request = kv_request,
	.response = kv_response,
	.fill = kv_fill,
};

int main(int argc, char **argv)
{
	return load_main(&redis_proto, argc, argv);
}
