/*
 * wire.c - the frame codec of haul's page-server protocol.
 *
 * A frame, byte by byte (all integers little-endian, encoded and decoded
 * one byte at a time, never as a host struct):
 *
 *   offset size field
 *        0    4 magic        0x4c554148, the bytes "HAUL"
 *        4    1 version      1
 *        5    1 type         enum wire_type (1 HELLO .. 18 GHOST)
 *        6    2 flags        bit 0 ENCRYPTED; every other bit must be 0
 *        8    4 seq          frame number in this direction, from 0, +1 each
 *       12    4 msg_len      bytes of the protobuf message (<= 1 MiB; 4 KiB
 *                            for the whole frame before authentication)
 *       16    4 payload_len  bytes of raw payload (<= 4 MiB)
 *       20    4 reserved     0
 *       24      message      msg_len bytes: the proto/wire.proto message the
 *                            type names (Hello, Auth, ..., Error)
 *  24+msg_len   payload      payload_len bytes (page data, a state blob, a
 *                            deleted file)
 *          end   tag         16 bytes, only when ENCRYPTED
 *
 * Encrypted frames: message and payload are encrypted together with
 * ChaCha20-Poly1305 (IETF); the 24 header bytes are the associated data;
 * the 12-byte nonce is direction (4 bytes: 0 client to server, 1 server to
 * client), seq (4 bytes), 0 (4 bytes), so a nonce is never reused under one
 * session key (a sender stops before seq wraps).  The receiver checks seq
 * against its own count, which also rejects replayed or reordered frames.
 *
 * A page payload (Pages message, frame types PAGES and PAGE_REPLY) is the
 * bytes of its ranges in order: RAW npages*4096 bytes, LZ4 one block that
 * decodes to exactly npages*4096 bytes, ZERO nothing.
 *
 * Invariant: no length read from the peer is used before it was compared
 * with a hard maximum (policy.h), and every decoder validates a whole
 * structure before delivering any of it where that is possible.
 */
#define LOG_PREFIX "wire: "
#include <errno.h>
#include <lz4.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/wire.h"

static const char *const type_names[] = {
	[WIRE_HELLO] = "HELLO",
	[WIRE_AUTH] = "AUTH",
	[WIRE_SESSION_OPEN] = "SESSION_OPEN",
	[WIRE_SESSION_JOIN] = "SESSION_JOIN",
	[WIRE_SESSION_OK] = "SESSION_OK",
	[WIRE_LAYOUT] = "LAYOUT",
	[WIRE_ROUND_BEGIN] = "ROUND_BEGIN",
	[WIRE_PAGES] = "PAGES",
	[WIRE_ROUND_END] = "ROUND_END",
	[WIRE_ACK] = "ACK",
	[WIRE_STATE] = "STATE",
	[WIRE_RESTORE] = "RESTORE",
	[WIRE_RESTORE_REPLY] = "RESTORE_REPLY",
	[WIRE_COMMIT] = "COMMIT",
	[WIRE_PAGE_REQ] = "PAGE_REQ",
	[WIRE_PAGE_REPLY] = "PAGE_REPLY",
	[WIRE_ERROR] = "ERROR",
	[WIRE_GHOST] = "GHOST",
};

static const ProtobufCMessageDescriptor *const type_desc[] = {
	[WIRE_HELLO] = &haul__wire__hello__descriptor,
	[WIRE_AUTH] = &haul__wire__auth__descriptor,
	[WIRE_SESSION_OPEN] = &haul__wire__session_open__descriptor,
	[WIRE_SESSION_JOIN] = &haul__wire__session_join__descriptor,
	[WIRE_SESSION_OK] = &haul__wire__session_ok__descriptor,
	[WIRE_LAYOUT] = &haul__wire__layout__descriptor,
	[WIRE_ROUND_BEGIN] = &haul__wire__round_begin__descriptor,
	[WIRE_PAGES] = &haul__wire__pages__descriptor,
	[WIRE_ROUND_END] = &haul__wire__round_end__descriptor,
	[WIRE_ACK] = &haul__wire__ack__descriptor,
	[WIRE_STATE] = &haul__wire__state__descriptor,
	[WIRE_RESTORE] = &haul__wire__restore__descriptor,
	[WIRE_RESTORE_REPLY] = &haul__wire__restore_reply__descriptor,
	[WIRE_COMMIT] = &haul__wire__commit__descriptor,
	[WIRE_PAGE_REQ] = &haul__wire__page_req__descriptor,
	[WIRE_PAGE_REPLY] = &haul__wire__pages__descriptor,
	[WIRE_ERROR] = &haul__wire__error__descriptor,
	[WIRE_GHOST] = &haul__wire__ghost__descriptor,
};

const char *wire_type_name(unsigned type)
{
	if (type == 0 || type > WIRE_TYPE_MAX)
		return "unknown";
	return type_names[type];
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) |
	       ((uint32_t)p[3] << 24);
}

void wire_hdr_encode(const struct wire_hdr *h, uint8_t out[WIRE_HDR_LEN])
{
	put32(out + 0, h->magic);
	out[4] = h->version;
	out[5] = h->type;
	put16(out + 6, h->flags);
	put32(out + 8, h->seq);
	put32(out + 12, h->msg_len);
	put32(out + 16, h->payload_len);
	put32(out + 20, h->reserved);
}

int wire_hdr_decode(const uint8_t in[WIRE_HDR_LEN], uint32_t max_msg, uint32_t max_payload,
		    struct wire_hdr *h)
{
	h->magic = get32(in + 0);
	h->version = in[4];
	h->type = in[5];
	h->flags = get16(in + 6);
	h->seq = get32(in + 8);
	h->msg_len = get32(in + 12);
	h->payload_len = get32(in + 16);
	h->reserved = get32(in + 20);

	if (h->magic != WIRE_MAGIC || h->reserved != 0)
		return -EBADMSG;
	if (h->version != WIRE_VERSION)
		return -EPROTONOSUPPORT;
	if (h->type == 0 || h->type > WIRE_TYPE_MAX || (h->flags & ~WIRE_F_KNOWN))
		return -EPROTO;
	if (h->msg_len > max_msg || h->payload_len > max_payload)
		return -EMSGSIZE;
	return 0;
}

const char *wire_strerror(int err)
{
	switch (err) {
	case -EBADMSG:
		return "malformed frame";
	case -EPROTONOSUPPORT:
		return "unsupported protocol version";
	case -EPROTO:
		return "protocol violation";
	case -EMSGSIZE:
		return "frame over the size limit";
	default:
		return strerror(-err);
	}
}

size_t wire_msg_size(const ProtobufCMessage *msg)
{
	return msg ? protobuf_c_message_get_packed_size(msg) : 0;
}

ssize_t wire_frame_build(void *buf, size_t cap, unsigned type, uint16_t flags, uint32_t seq,
			 const ProtobufCMessage *msg, const void *payload, uint32_t payload_len)
{
	uint8_t *p = buf;
	size_t mlen = wire_msg_size(msg);
	struct wire_hdr h = {
		.magic = WIRE_MAGIC,
		.version = WIRE_VERSION,
		.type = (uint8_t)type,
		.flags = flags,
		.seq = seq,
		.msg_len = (uint32_t)mlen,
		.payload_len = payload_len,
	};

	if (mlen > WIRE_MAX_MSG || payload_len > WIRE_MAX_PAYLOAD || wire_frame_len(&h) > cap)
		return -EMSGSIZE;
	wire_hdr_encode(&h, p);
	if (msg)
		protobuf_c_message_pack(msg, p + WIRE_HDR_LEN);
	if (payload && payload_len)
		memmove(p + WIRE_HDR_LEN + mlen, payload, payload_len);
	return (ssize_t)(WIRE_HDR_LEN + mlen + payload_len);
}

int wire_msg_unpack(unsigned type, const void *buf, size_t len, ProtobufCMessage **out)
{
	if (type == 0 || type > WIRE_TYPE_MAX)
		return -EPROTO;
	if (len > WIRE_MAX_MSG)
		return -EMSGSIZE;
	*out = protobuf_c_message_unpack(type_desc[type], NULL, len, buf);
	return *out ? 0 : -EBADMSG;
}

void wire_msg_free(ProtobufCMessage *m)
{
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- encryption -------------------------------------------------------------- */

static void aead_nonce(enum wire_dir dir, uint32_t seq,
		       uint8_t n[crypto_aead_chacha20poly1305_IETF_NPUBBYTES])
{
	memset(n, 0, crypto_aead_chacha20poly1305_IETF_NPUBBYTES);
	put32(n, (uint32_t)dir);
	put32(n + 4, seq);
}

void wire_seal(const uint8_t key[WIRE_KEY_LEN], enum wire_dir dir, uint8_t *frame,
	       const struct wire_hdr *h)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
	size_t blen = (size_t)h->msg_len + h->payload_len;
	unsigned long long tlen;

	aead_nonce(dir, h->seq, nonce);
	crypto_aead_chacha20poly1305_ietf_encrypt_detached(
		frame + WIRE_HDR_LEN, frame + WIRE_HDR_LEN + blen, &tlen, frame + WIRE_HDR_LEN,
		blen, frame, WIRE_HDR_LEN, NULL, nonce, key);
}

int wire_open(const uint8_t key[WIRE_KEY_LEN], enum wire_dir dir, uint8_t *frame,
	      const struct wire_hdr *h)
{
	uint8_t nonce[crypto_aead_chacha20poly1305_IETF_NPUBBYTES];
	size_t blen = (size_t)h->msg_len + h->payload_len;

	aead_nonce(dir, h->seq, nonce);
	if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(
		    frame + WIRE_HDR_LEN, NULL, frame + WIRE_HDR_LEN, blen,
		    frame + WIRE_HDR_LEN + blen, frame, WIRE_HDR_LEN, nonce, key) != 0)
		return -EBADMSG;
	return 0;
}

/* ---- authentication ----------------------------------------------------- */

void wire_auth_mac(const uint8_t key[WIRE_KEY_LEN], bool client,
		   const uint8_t cnonce[WIRE_NONCE_LEN], const uint8_t snonce[WIRE_NONCE_LEN],
		   uint8_t mac[WIRE_MAC_LEN])
{
	static const char cctx[] = "haul-auth-client-v1", sctx[] = "haul-auth-server-v1";
	crypto_auth_hmacsha256_state st;

	crypto_auth_hmacsha256_init(&st, key, WIRE_KEY_LEN);
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)(client ? cctx : sctx),
				      sizeof(cctx) - 1);
	crypto_auth_hmacsha256_update(&st, cnonce, WIRE_NONCE_LEN);
	crypto_auth_hmacsha256_update(&st, snonce, WIRE_NONCE_LEN);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
}

bool wire_auth_verify(const uint8_t key[WIRE_KEY_LEN], bool client,
		      const uint8_t cnonce[WIRE_NONCE_LEN], const uint8_t snonce[WIRE_NONCE_LEN],
		      const uint8_t *mac, size_t len)
{
	uint8_t want[WIRE_MAC_LEN];
	bool ok;

	if (!mac || len != WIRE_MAC_LEN)
		return false;
	wire_auth_mac(key, client, cnonce, snonce, want);
	ok = sodium_memcmp(want, mac, WIRE_MAC_LEN) == 0;
	sodium_memzero(want, sizeof(want));
	return ok;
}

void wire_session_key(const uint8_t key[WIRE_KEY_LEN], const uint8_t cnonce[WIRE_NONCE_LEN],
		      const uint8_t snonce[WIRE_NONCE_LEN], uint8_t out[WIRE_KEY_LEN])
{
	static const char ctx[] = "haul-enc-v1";
	crypto_generichash_state st;

	crypto_generichash_init(&st, key, WIRE_KEY_LEN, WIRE_KEY_LEN);
	crypto_generichash_update(&st, (const uint8_t *)ctx, sizeof(ctx) - 1);
	crypto_generichash_update(&st, cnonce, WIRE_NONCE_LEN);
	crypto_generichash_update(&st, snonce, WIRE_NONCE_LEN);
	crypto_generichash_final(&st, out, WIRE_KEY_LEN);
	sodium_memzero(&st, sizeof(st));
}

/* ---- page batches ------------------------------------------------------------- */

bool wire_page_is_zero(const void *p)
{
	const uint64_t *w = p;

	/* Cheap exit on the first words (most non-zero pages), then memcmp for speed. */
	if (w[0] | w[1] | w[2] | w[3])
		return false;
	return memcmp(w, w + 4, HAUL_PAGE_SIZE - 32) == 0;
}

int wire_pages_check(const Haul__Wire__Pages *m, size_t len, bool *lz4)
{
	size_t off = 0;

	if (lz4)
		*lz4 = false;
	for (size_t i = 0; i < m->n_ranges; i++) {
		const Haul__Wire__PageRange *r = m->ranges[i];
		uint64_t bytes = (uint64_t)r->npages << HAUL_PAGE_SHIFT;

		if (r->npages == 0 || r->npages > WIRE_MAX_PAYLOAD / HAUL_PAGE_SIZE ||
		    (r->addr & (HAUL_PAGE_SIZE - 1)) || r->addr > UINT64_MAX - bytes)
			return -EBADMSG;
		if (r->len > len - off)
			return -EBADMSG;
		switch (r->enc) {
		case HAUL__WIRE__ENCODING__RAW:
			if (r->len != bytes)
				return -EBADMSG;
			break;
		case HAUL__WIRE__ENCODING__ZERO:
			if (r->len != 0)
				return -EBADMSG;
			break;
		case HAUL__WIRE__ENCODING__LZ4:
			if (r->len == 0 || r->len > (uint64_t)LZ4_compressBound((int)bytes))
				return -EBADMSG;
			if (lz4)
				*lz4 = true;
			break;
		default:
			return -EBADMSG;
		}
		off += r->len;
	}
	return off == len ? 0 : -EBADMSG;
}

int64_t wire_pages_decode(const Haul__Wire__Pages *m, const uint8_t *payload, size_t len,
			  void *scratch, wire_pages_fn fn, void *arg)
{
	size_t off = 0;
	int64_t pages = 0;
	int ret;

	/* Pass 1: structure only, so a malformed batch delivers nothing. */
	ret = wire_pages_check(m, len, NULL);
	if (ret)
		return ret;

	off = 0;
	for (size_t i = 0; i < m->n_ranges; i++) {
		const Haul__Wire__PageRange *r = m->ranges[i];
		int bytes = (int)(r->npages << HAUL_PAGE_SHIFT);
		const void *data = NULL;

		if (r->enc == HAUL__WIRE__ENCODING__RAW) {
			data = payload + off;
		} else if (r->enc == HAUL__WIRE__ENCODING__LZ4) {
			ret = LZ4_decompress_safe((const char *)payload + off, scratch, (int)r->len,
						  bytes);
			if (ret != bytes)
				return -EBADMSG;
			data = scratch;
		}
		ret = fn(arg, r->addr, data, r->npages);
		if (ret)
			return ret;
		off += r->len;
		pages += r->npages;
	}
	return pages;
}

int wire_pages_enc_init(struct wire_pages_enc *e, size_t max_ranges, enum wire_compress c)
{
	memset(e, 0, sizeof(*e));
	e->ranges = calloc(max_ranges, sizeof(*e->ranges));
	e->rangep = calloc(max_ranges, sizeof(*e->rangep));
	e->segs = calloc(max_ranges, sizeof(*e->segs));
	e->payload = malloc(WIRE_MAX_PAYLOAD);
	if (!e->ranges || !e->rangep || !e->segs || !e->payload) {
		wire_pages_enc_release(e);
		return -ENOMEM;
	}
	e->max_ranges = max_ranges;
	e->compress = c;
	return 0;
}

void wire_pages_enc_release(struct wire_pages_enc *e)
{
	free(e->ranges);
	free(e->rangep);
	free(e->payload);
	free(e->segs);
	e->segs = NULL;
	e->ranges = NULL;
	e->rangep = NULL;
	e->payload = NULL;
}

void wire_pages_enc_reset(struct wire_pages_enc *e)
{
	e->nranges = 0;
	e->nsegs = 0;
	e->used = 0;
	e->len = 0;
}

/* Append @len payload bytes at @p, extending the last segment when contiguous. */
static void enc_seg(struct wire_pages_enc *e, const uint8_t *p, size_t len)
{
	struct wire_seg *last = e->nsegs ? &e->segs[e->nsegs - 1] : NULL;

	if (last && last->p + last->len == p)
		last->len += len;
	else
		e->segs[e->nsegs++] = (struct wire_seg){p, len};
	e->len += len;
}

/* The last range, if it has encoding @enc and ends right at @addr. */
static Haul__Wire__PageRange *enc_tail(struct wire_pages_enc *e, uint64_t addr,
				       Haul__Wire__Encoding enc)
{
	Haul__Wire__PageRange *r;

	if (!e->nranges)
		return NULL;
	r = &e->ranges[e->nranges - 1];
	if (r->enc != enc || r->addr + ((uint64_t)r->npages << HAUL_PAGE_SHIFT) != addr ||
	    r->npages >= WIRE_MAX_PAYLOAD / HAUL_PAGE_SIZE)
		return NULL;
	return r;
}

static Haul__Wire__PageRange *enc_new(struct wire_pages_enc *e, uint64_t addr,
				      Haul__Wire__Encoding enc)
{
	Haul__Wire__PageRange *r = &e->ranges[e->nranges];

	haul__wire__page_range__init(r);
	r->addr = addr;
	r->enc = enc;
	e->rangep[e->nranges++] = r;
	return r;
}

/* Encode @n non-zero pages at @addr; the caller made sure there is room. */
static void enc_block(struct wire_pages_enc *e, uint64_t addr, const uint8_t *data, uint32_t n)
{
	size_t bytes = (size_t)n << HAUL_PAGE_SHIFT;
	Haul__Wire__PageRange *r;

	if (e->compress == WIRE_COMPRESS_LZ4 ||
	    (e->compress == WIRE_COMPRESS_AUTO && e->lz4_skip == 0)) {
		int c = LZ4_compress_default((const char *)data, (char *)e->payload + e->used,
					     (int)bytes, (int)(WIRE_MAX_PAYLOAD - e->used));

		if (c > 0 && (size_t)c <= bytes - bytes / WIRE_LZ4_MIN_SAVING) {
			r = enc_new(e, addr, HAUL__WIRE__ENCODING__LZ4);
			r->npages = n;
			r->len = (uint32_t)c;
			enc_seg(e, e->payload + e->used, (size_t)c);
			e->used += (size_t)c;
			e->lz4_pages += n;
			return;
		}
		/* Did not pay: AUTO sends the next blocks raw before trying again. */
		if (e->compress == WIRE_COMPRESS_AUTO)
			e->lz4_skip = 8;
	} else if (e->lz4_skip) {
		e->lz4_skip--;
	}
	r = enc_tail(e, addr, HAUL__WIRE__ENCODING__RAW);
	/* By reference, a range may only grow over contiguous source bytes (one segment). */
	if (r && e->ref && e->segs[e->nsegs - 1].p + e->segs[e->nsegs - 1].len != data)
		r = NULL;
	if (!r)
		r = enc_new(e, addr, HAUL__WIRE__ENCODING__RAW);
	if (e->ref) {
		enc_seg(e, data, bytes);
	} else {
		memcpy(e->payload + e->used, data, bytes);
		enc_seg(e, e->payload + e->used, bytes);
		e->used += bytes;
	}
	r->npages += n;
	r->len += (uint32_t)bytes;
	e->raw_pages += n;
}

int wire_pages_enc_add(struct wire_pages_enc *e, uint64_t addr, const void *data, uint32_t npages)
{
	const uint8_t *p = data;
	uint32_t i = 0;

	if (addr & (HAUL_PAGE_SIZE - 1))
		return -EINVAL;
	while (i < npages) {
		uint64_t a = addr + ((uint64_t)i << HAUL_PAGE_SHIFT);
		const uint8_t *pg = p + ((size_t)i << HAUL_PAGE_SHIFT);
		Haul__Wire__PageRange *r;
		uint32_t n = 0;

		/* Each step adds at most one range. */
		if (e->nranges >= e->max_ranges)
			break;
		if (wire_page_is_zero(pg)) {
			r = enc_tail(e, a, HAUL__WIRE__ENCODING__ZERO);
			if (!r)
				r = enc_new(e, a, HAUL__WIRE__ENCODING__ZERO);
			r->npages++;
			e->zero_pages++;
			e->pages++;
			i++;
			continue;
		}
		while (i + n < npages && n < WIRE_LZ4_PAGES &&
		       !wire_page_is_zero(pg + ((size_t)n << HAUL_PAGE_SHIFT)))
			n++;
		if ((size_t)LZ4_compressBound((int)(n << HAUL_PAGE_SHIFT)) >
		    WIRE_MAX_PAYLOAD - e->len) {
			/* Full: take what fits raw, if anything. */
			n = (uint32_t)((WIRE_MAX_PAYLOAD - e->len) >> HAUL_PAGE_SHIFT);
			if (n == 0)
				break;
			enum wire_compress saved = e->compress;
			e->compress = WIRE_COMPRESS_NONE;
			enc_block(e, a, pg, n);
			e->compress = saved;
		} else {
			enc_block(e, a, pg, n);
		}
		e->pages += n;
		i += n;
	}
	return (int)i;
}

int wire_pages_enc_zero(struct wire_pages_enc *e, uint64_t addr, uint32_t npages)
{
	uint32_t i = 0;

	if (addr & (HAUL_PAGE_SIZE - 1))
		return -EINVAL;
	while (i < npages) {
		uint64_t a = addr + ((uint64_t)i << HAUL_PAGE_SHIFT);
		Haul__Wire__PageRange *r = enc_tail(e, a, HAUL__WIRE__ENCODING__ZERO);
		uint32_t room;

		if (!r) {
			if (e->nranges >= e->max_ranges)
				break;
			r = enc_new(e, a, HAUL__WIRE__ENCODING__ZERO);
		}
		room = WIRE_MAX_PAYLOAD / HAUL_PAGE_SIZE - r->npages;
		if (room > npages - i)
			room = npages - i;
		r->npages += room;
		e->zero_pages += room;
		e->pages += room;
		i += room;
	}
	return (int)i;
}

void wire_pages_enc_msg(struct wire_pages_enc *e, Haul__Wire__Pages *m)
{
	haul__wire__pages__init(m);
	m->n_ranges = e->nranges;
	m->ranges = e->rangep;
}

/* ---- layouts ------------------------------------------------------------------ */

void wire_layout_to_msg(const struct haul_layout *l, Haul__Wire__Vma *vmas, Haul__Wire__Vma **vmap,
			Haul__Wire__Layout *m)
{
	haul__wire__layout__init(m);
	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i];
		Haul__Wire__Vma *w = &vmas[i];

		haul__wire__vma__init(w);
		w->start = v->start;
		w->end = v->end;
		w->has_pgoff = w->has_dev = w->has_ino = true;
		w->pgoff = v->pgoff;
		w->dev = v->dev;
		w->ino = v->ino;
		w->prot = v->prot;
		w->flags = v->flags;
		w->path = v->path;
		w->has_shm_size = v->shm_size != 0;
		w->shm_size = v->shm_size;
		w->has_file_size = w->has_file_mtime = v->file_known;
		w->file_size = v->file_size;
		w->file_mtime = v->file_mtime;
		w->has_file_build_id = v->file_known && v->build_id_len;
		w->file_build_id.len = v->build_id_len;
		w->file_build_id.data = (uint8_t *)v->build_id;
		w->has_file_hash = v->file_known && v->file_hashed;
		w->file_hash = v->file_hash;
		vmap[i] = w;
	}
	m->n_vmas = l->n;
	m->vmas = vmap;
}

int wire_layout_from_msg(Haul__Wire__Vma *const *vmas, size_t n, struct haul_layout *out)
{
	out->v = NULL;
	out->n = 0;
	for (size_t i = 0; i < n; i++) {
		const Haul__Wire__Vma *w = vmas[i];

		if ((w->start | w->end) & (HAUL_PAGE_SIZE - 1) || w->start >= w->end)
			return -EBADMSG;
		if (i && w->start < vmas[i - 1]->end)
			return -EBADMSG;
	}
	if (!n)
		return 0;
	out->v = calloc(n, sizeof(*out->v));
	if (!out->v)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const Haul__Wire__Vma *w = vmas[i];
		struct haul_vma *v = &out->v[i];

		v->start = w->start;
		v->end = w->end;
		v->pgoff = w->pgoff;
		v->dev = w->dev;
		v->ino = w->ino;
		v->prot = w->prot;
		v->flags = w->flags;
		v->shm_size = w->shm_size;
		v->file_known = w->has_file_size && w->has_file_mtime;
		v->file_size = w->file_size;
		v->file_mtime = w->file_mtime;
		haul_vma_set_build_id(v, w->has_file_build_id, w->file_build_id.data,
				      w->file_build_id.len);
		v->file_hashed = w->has_file_hash;
		v->file_hash = w->file_hash;
		if (w->path) {
			v->path = strdup(w->path);
			if (!v->path) {
				while (i--)
					free(out->v[i].path);
				free(out->v);
				out->v = NULL;
				return -ENOMEM;
			}
		}
	}
	out->n = n;
	return 0;
}
