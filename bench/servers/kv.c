/*
 * kv.c - checked SET/GET load and pipelined fill for key-value servers (see
 * kv.h for the key and value scheme).  Per connection: the version each key
 * holds (0: not known to hold one of ours) and whether it was ever written,
 * so the final pass checks what is known and deletes everything it touched.
 * After a reconnect (--reconnect) a SET in flight may or may not have landed:
 * every version is forgotten and only rewritten keys are checked again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kv.h"

struct kv_conn {
	uint64_t *ver;
	unsigned char *touched;
	char *val; /* scratch: the value of the request in flight */
	size_t val_len;
	enum kv_op op;	/* of the request in flight */
	int slot;	/* its key */
	bool get_next;	/* the load's next op is the GET of slot */
	int final_slot; /* final pass: next key to check and delete */
	bool final_del; /* final pass: the key's GET is done, DEL it next */
	uint64_t pairs;
	int nkeys;
};

static size_t key_of(char *buf, size_t len, int conn, int slot)
{
	return (size_t)snprintf(buf, len, "load:%d:%d", conn, slot);
}

static size_t value_of(char *buf, size_t len, int conn, int slot, uint64_t ver)
{
	int n = snprintf(buf, len, "c%ds%dv%llu:", conn, slot, (unsigned long long)ver);

	if ((size_t)n < len)
		load_fill_bytes(load_seed((uint64_t)conn, (uint64_t)slot, ver), buf + n,
				len - (size_t)n);
	return len;
}

int kv_conn_init(struct load_conn *c, const struct load_opts *o)
{
	struct kv_conn *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	k->val_len = (size_t)o->value_size < 48 ? 48 : (size_t)o->value_size;
	k->nkeys = o->keys;
	k->ver = calloc((size_t)o->keys, sizeof(*k->ver));
	k->touched = calloc((size_t)o->keys, 1);
	k->val = malloc(k->val_len);
	c->priv = k;
	if (!k->ver || !k->touched || !k->val)
		return -ENOMEM;
	return 0;
}

void kv_conn_reset(struct load_conn *c)
{
	struct kv_conn *k = c->priv;

	memset(k->ver, 0, sizeof(*k->ver) * (size_t)k->nkeys);
	k->get_next = false;
}

void kv_conn_free(struct load_conn *c)
{
	struct kv_conn *k = c->priv;

	if (!k)
		return;
	free(k->ver);
	free(k->touched);
	free(k->val);
	free(k);
	c->priv = NULL;
}

static int send_op(struct load_conn *c, struct kv_conn *k, enum kv_op op, int slot)
{
	char key[64];
	size_t klen = key_of(key, sizeof(key), c->id, slot);

	k->op = op;
	k->slot = slot;
	if (op == KV_SET) {
		value_of(k->val, k->val_len, c->id, slot, k->ver[slot] + 1);
		k->touched[slot] = 1;
		return kv_codec->encode(c, op, key, klen, k->val, k->val_len);
	}
	return kv_codec->encode(c, op, key, klen, NULL, 0);
}

/* The final pass: GET every key with a known version, then DEL every key touched. */
static int final_request(struct load_conn *c, const struct load_opts *o, struct kv_conn *k)
{
	while (k->final_slot < o->keys && !k->touched[k->final_slot])
		k->final_slot++;
	if (k->final_slot >= o->keys)
		return 1;
	if (!k->final_del && k->ver[k->final_slot]) {
		k->final_del = true;
		return send_op(c, k, KV_GET, k->final_slot);
	}
	k->final_del = false;
	return send_op(c, k, KV_DEL, k->final_slot++);
}

int kv_request(struct load_conn *c, const struct load_opts *o)
{
	struct kv_conn *k = c->priv;

	if (c->finishing && !k->get_next)
		return final_request(c, o, k);
	if (k->get_next)
		return send_op(c, k, KV_GET, k->slot);
	return send_op(c, k, KV_SET, (int)(k->pairs++ % (uint64_t)o->keys));
}

long kv_response(struct load_conn *c, const struct load_opts *o, bool *wrong)
{
	struct kv_conn *k = c->priv;
	const char *val = NULL;
	size_t vlen = 0;
	long used = kv_codec->parse(c->in, c->in_len, k->op, &val, &vlen);

	(void)o;
	if (used <= 0)
		return used;
	switch (k->op) {
	case KV_SET:
		k->ver[k->slot]++;
		k->get_next = true;
		break;
	case KV_GET:
		value_of(k->val, k->val_len, c->id, k->slot, k->ver[k->slot]);
		if (!val || vlen != k->val_len || memcmp(val, k->val, vlen)) {
			*wrong = true;
			fprintf(stderr,
				"load: connection %d: key load:%d:%d: %s (want version %llu)\n",
				c->id, c->id, k->slot, val ? "wrong value" : "missing",
				(unsigned long long)k->ver[k->slot]);
		}
		k->get_next = false;
		break;
	case KV_DEL:
		k->ver[k->slot] = 0;
		break;
	}
	return used;
}

static void fill_value(uint64_t i, char *buf, size_t len)
{
	int n = snprintf(buf, len, "fill%llu:", (unsigned long long)i);

	if ((size_t)n < len)
		load_fill_bytes(load_seed(i, len, 0xf111), buf + n, len - (size_t)n);
}

/* One batch: @n requests from @first, then their @n replies. */
static int fill_batch(struct load_conn *b, struct load_rd *r, bool check, uint64_t first, int n,
		      char *val, size_t vlen, uint64_t *wrong)
{
	char key[64];
	int ret;

	b->out_len = 0;
	for (int j = 0; j < n; j++) {
		size_t klen = (size_t)snprintf(key, sizeof(key), "fill:%llu",
					       (unsigned long long)(first + (uint64_t)j));

		if (!check)
			fill_value(first + (uint64_t)j, val, vlen);
		ret = kv_codec->encode(b, check ? KV_GET : KV_SET, key, klen, val, vlen);
		if (ret)
			return ret;
	}
	ret = load_write_all(r->fd, b->out, b->out_len);
	if (ret)
		return ret;
	for (int j = 0; j < n; j++) {
		const char *got = NULL;
		size_t glen = 0;
		long used;

		while (!(used = kv_codec->parse(r->buf + r->off, r->len - r->off,
						check ? KV_GET : KV_SET, &got, &glen))) {
			ret = load_rd_more(r);
			if (ret)
				return ret;
		}
		if (used < 0)
			return (int)used;
		if (check) {
			fill_value(first + (uint64_t)j, val, vlen);
			if (!got || glen != vlen || memcmp(got, val, vlen)) {
				if (!*wrong)
					fprintf(stderr, "load: key fill:%llu: %s\n",
						(unsigned long long)(first + (uint64_t)j),
						got ? "wrong value" : "missing");
				(*wrong)++;
			}
		}
		r->off += (size_t)used;
	}
	return 0;
}

int kv_fill(const struct load_opts *o, bool check, uint64_t *keys, uint64_t *wrong)
{
	uint64_t total = (o->fill + (uint64_t)o->fill_value - 1) / (uint64_t)o->fill_value;
	struct load_conn b = {.fd = -1};
	struct load_rd r;
	size_t vlen = (size_t)o->fill_value;
	char *val = malloc(vlen);
	int fd, ret;

	if (!val)
		return -ENOMEM;
	fd = load_dial(o);
	if (fd < 0) {
		free(val);
		return fd;
	}
	ret = load_rd_init(&r, fd, vlen * 2 + 65536);
	for (uint64_t i = 0; !ret && i < total; i += (uint64_t)o->pipeline) {
		int n = total - i < (uint64_t)o->pipeline ? (int)(total - i) : o->pipeline;

		ret = fill_batch(&b, &r, check, i, n, val, vlen, wrong);
		if (!ret)
			*keys = i + (uint64_t)n;
	}
	load_rd_release(&r);
	free(b.out);
	free(val);
	close(fd);
	return ret;
}
