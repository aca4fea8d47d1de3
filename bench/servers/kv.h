/*
 * kv.h - the checked SET/GET load and the fill of a key-value server, shared
 * by the Redis and memcached clients; each supplies a codec (its request
 * encoding and reply parser).
 *
 * Load: connection C owns the keys "load:C:S" for S < --keys and cycles
 * through them: SET to version V+1 (a value derived from C, S and V+1), then
 * GET, which must return exactly that value.  No two connections share a
 * key, so every GET has one right answer.  When the run ends each connection
 * reads back every key it wrote (checked) and deletes it, so the server holds
 * exactly its filled dataset again (Redis: DEBUG DIGEST compares equal).
 *
 * Fill: keys "fill:I", I < SIZE / --fill-value, each a value derived from I,
 * SET in pipelined batches; --check GETs them back in batches and compares.
 */
#ifndef HAUL_BENCH_SERVERS_KV_H
#define HAUL_BENCH_SERVERS_KV_H

#include "load.h"

enum kv_op {
	KV_SET,
	KV_GET,
	KV_DEL,
};

struct kv_codec {
	/* append the request for @op to c->out (val only for KV_SET) */
	int (*encode)(struct load_conn *c, enum kv_op op, const char *key, size_t klen,
		      const char *val, size_t vlen);
	/*
	 * Parse a reply to @op at buf[0..len): bytes used, 0 when incomplete,
	 * -EPROTO when malformed or an error reply.  For KV_GET, *val and *vlen
	 * point into buf (NULL: no such key).
	 */
	long (*parse)(const char *buf, size_t len, enum kv_op op, const char **val, size_t *vlen);
};

extern const struct kv_codec *kv_codec;

int kv_conn_init(struct load_conn *c, const struct load_opts *o);
void kv_conn_reset(struct load_conn *c);
void kv_conn_free(struct load_conn *c);
int kv_request(struct load_conn *c, const struct load_opts *o);
long kv_response(struct load_conn *c, const struct load_opts *o, bool *wrong);
int kv_fill(const struct load_opts *o, bool check, uint64_t *keys, uint64_t *wrong);

#endif
