/*
 * wire.h - the frame codec of haul's page-server protocol.
 *
 * A frame is a fixed WIRE_HDR_LEN-byte little-endian header, a protobuf-c
 * message of msg_len bytes (proto/wire.proto, the type in the header says
 * which), a raw payload of payload_len bytes and, when the frame is
 * encrypted, a WIRE_TAG_LEN-byte AEAD tag.  The byte-by-byte layout is
 * documented at the top of wire.c and in DESIGN.md "Wire format".
 *
 * Everything here is pure computation on caller buffers (no I/O, no
 * globals), safe from any thread.  Every decoder checks lengths against
 * hard maxima (policy.h) before it allocates or touches the body.
 */
#ifndef HAUL_COMMON_WIRE_H
#define HAUL_COMMON_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/policy.h"
#include "common/vma.h"
#include "wire.pb-c.h"

#define WIRE_MAGIC     0x4c554148u /* bytes 'H' 'A' 'U' 'L' */
#define WIRE_VERSION   1
#define WIRE_HDR_LEN   24
#define WIRE_TAG_LEN   16 /* chacha20-poly1305 tag */
#define WIRE_NONCE_LEN 32 /* Hello.nonce */
#define WIRE_MAC_LEN   32 /* HMAC-SHA256 */
#define WIRE_KEY_LEN   32

/* The frame types (header byte 5). */
enum wire_type {
	WIRE_HELLO = 1,
	WIRE_AUTH = 2,
	WIRE_SESSION_OPEN = 3,
	WIRE_SESSION_JOIN = 4,
	WIRE_SESSION_OK = 5,
	WIRE_LAYOUT = 6,
	WIRE_ROUND_BEGIN = 7,
	WIRE_PAGES = 8,
	WIRE_ROUND_END = 9,
	WIRE_ACK = 10,
	WIRE_STATE = 11,
	WIRE_RESTORE = 12,
	WIRE_RESTORE_REPLY = 13,
	WIRE_COMMIT = 14,
	WIRE_PAGE_REQ = 15,
	WIRE_PAGE_REPLY = 16,
	WIRE_ERROR = 17,
	WIRE_GHOST = 18,
	WIRE_TYPE_MAX = 18,
};

/* Header flags (bytes 6-7). */
#define WIRE_F_ENCRYPTED 0x0001u /* body is AEAD-encrypted, a tag follows it */
#define WIRE_F_KNOWN	 WIRE_F_ENCRYPTED

struct wire_hdr {
	uint32_t magic;
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t seq; /* per direction, from 0, +1 per frame; the AEAD nonce counter */
	uint32_t msg_len;
	uint32_t payload_len;
	uint32_t reserved; /* 0 */
};

/* Name of a frame type for logs ("PAGES"); "unknown" when out of range. */
const char *wire_type_name(unsigned type);

void wire_hdr_encode(const struct wire_hdr *h, uint8_t out[WIRE_HDR_LEN]);

/*
 * Decode and validate a header.  @max_msg and @max_payload are the limits
 * the receiver applies now (tighter before authentication).  Returns 0, or
 * -EBADMSG bad magic or reserved bits, -EPROTONOSUPPORT other version,
 * -EPROTO unknown type or flags, -EMSGSIZE a length over its limit.
 */
int wire_hdr_decode(const uint8_t in[WIRE_HDR_LEN], uint32_t max_msg, uint32_t max_payload,
		    struct wire_hdr *h);

/* Bytes of the whole frame: header, message, payload and tag (when encrypted). */
static inline size_t wire_frame_len(const struct wire_hdr *h)
{
	return WIRE_HDR_LEN + (size_t)h->msg_len + h->payload_len +
	       ((h->flags & WIRE_F_ENCRYPTED) ? WIRE_TAG_LEN : 0);
}

/* A short reason for a -errno of wire_hdr_decode() and the page decoders, for logs. */
const char *wire_strerror(int err);

/*
 * Build a whole frame in @buf (capacity @cap): header with @type, @flags and @seq,
 * the packed @msg (NULL: none), then @payload_len bytes of @payload (NULL:
 * the caller has already put them at buf + WIRE_HDR_LEN + packed size, see
 * wire_msg_size()).  Returns the frame length, or -EMSGSIZE when it does
 * not fit or exceeds the maxima.  With WIRE_F_ENCRYPTED, @cap must also
 * hold the tag, and the caller seals the frame with wire_seal().
 */
ssize_t wire_frame_build(void *buf, size_t cap, unsigned type, uint16_t flags, uint32_t seq,
			 const ProtobufCMessage *msg, const void *payload, uint32_t payload_len);

/* Packed size of @msg (0 for NULL). */
size_t wire_msg_size(const ProtobufCMessage *msg);

/*
 * Unpack the message of a frame of @type from @buf/@len.  *@out is freed
 * with wire_msg_free().  Returns 0, -EPROTO for a type with no message
 * descriptor, -EBADMSG when protobuf-c rejects it.
 */
int wire_msg_unpack(unsigned type, const void *buf, size_t len, ProtobufCMessage **out);
void wire_msg_free(ProtobufCMessage *m);

/* ---- encryption (after authentication, --encrypt) ----------------------- */

/* Directions, mixed into the AEAD nonce so the two never share one. */
enum wire_dir {
	WIRE_DIR_C2S = 0,
	WIRE_DIR_S2C = 1
};

/*
 * Encrypt in place the body (msg + payload) of the frame at @frame whose
 * header is already encoded with WIRE_F_ENCRYPTED set, and write the tag
 * after the body.  The header is authenticated as associated data.  The
 * nonce is (@dir, header seq).  The buffer must have room for the tag.
 */
void wire_seal(const uint8_t key[WIRE_KEY_LEN], enum wire_dir dir, uint8_t *frame,
	       const struct wire_hdr *h);

/* Decrypt in place; -EBADMSG when the tag does not verify. */
int wire_open(const uint8_t key[WIRE_KEY_LEN], enum wire_dir dir, uint8_t *frame,
	      const struct wire_hdr *h);

/* ---- authentication --------------------------------------------------- */

/*
 * The MAC one side sends: HMAC-SHA256(@key, context || @cnonce || @snonce),
 * context "haul-auth-client-v1" when @client, else "haul-auth-server-v1".
 */
void wire_auth_mac(const uint8_t key[WIRE_KEY_LEN], bool client,
		   const uint8_t cnonce[WIRE_NONCE_LEN], const uint8_t snonce[WIRE_NONCE_LEN],
		   uint8_t mac[WIRE_MAC_LEN]);

/* Constant-time check of a received MAC of @len bytes; false on any mismatch. */
bool wire_auth_verify(const uint8_t key[WIRE_KEY_LEN], bool client,
		      const uint8_t cnonce[WIRE_NONCE_LEN], const uint8_t snonce[WIRE_NONCE_LEN],
		      const uint8_t *mac, size_t len);

/* The session encryption key: BLAKE2b keyed by @key over "haul-enc-v1" || nonces. */
void wire_session_key(const uint8_t key[WIRE_KEY_LEN], const uint8_t cnonce[WIRE_NONCE_LEN],
		      const uint8_t snonce[WIRE_NONCE_LEN], uint8_t out[WIRE_KEY_LEN]);

/* ---- page batches (PAGES and PAGE_REPLY) --------------------------------- */

/*
 * Called for each range of a batch, in order, with @data pointing at
 * @npages decoded pages, or NULL when they are all zero.  Returns 0 or a
 * -errno that stops decoding and is returned by wire_pages_decode().
 */
typedef int (*wire_pages_fn)(void *arg, uint64_t addr, const void *data, uint32_t npages);

/*
 * Check the structure of a batch whose payload is @len bytes (the first
 * pass of wire_pages_decode()): 0 or -EBADMSG.  *@lz4 (if not NULL) says
 * whether any range is LZ4-encoded.
 */
int wire_pages_check(const Haul__Wire__Pages *m, size_t len, bool *lz4);

/*
 * Walk the ranges of @m against @payload (@len bytes), decoding LZ4 ranges
 * into @scratch (at least WIRE_MAX_PAYLOAD bytes).  Checks before using a
 * range: page-aligned address without overflow, npages in 1..1024, lengths
 * that sum to exactly @len, RAW len == npages * 4096, ZERO len == 0, LZ4
 * that decodes to exactly npages * 4096.  Returns the number of pages, or
 * -EBADMSG (malformed; nothing after the bad range was delivered) or the
 * callback's -errno.
 */
int64_t wire_pages_decode(const Haul__Wire__Pages *m, const uint8_t *payload, size_t len,
			  void *scratch, wire_pages_fn fn, void *arg);

/*
 * The encoder of one page batch: ranges into a caller array, payload into
 * a caller buffer of at least WIRE_MAX_PAYLOAD bytes.
 */
enum wire_compress {
	WIRE_COMPRESS_AUTO = 0,
	WIRE_COMPRESS_LZ4,
	WIRE_COMPRESS_NONE
};

/* A piece of a batch's payload: in the encoder's buffer, or (ref mode) in the caller's pages. */
struct wire_seg {
	const uint8_t *p;
	size_t len;
};

struct wire_pages_enc {
	Haul__Wire__PageRange *ranges;	/* storage for up to max_ranges ranges */
	Haul__Wire__PageRange **rangep; /* pointers into ranges, for the message */
	size_t max_ranges;
	size_t nranges;
	uint8_t *payload; /* WIRE_MAX_PAYLOAD bytes */
	size_t used;	  /* bytes of payload[] used */
	size_t len;	  /* the batch's payload length: sum of segs[].len */
	/*
	 * The payload is segs[0..nsegs) in order (at most one per range).
	 * Without ref it is also exactly payload[0..len).  With ref, RAW
	 * pages are not copied: their segments point at the caller's data,
	 * which must stay valid and unchanged until the batch is sent.
	 */
	struct wire_seg *segs;
	size_t nsegs;
	bool ref;
	uint64_t pages, zero_pages, lz4_pages, raw_pages;
	enum wire_compress compress;
	unsigned lz4_skip; /* AUTO: blocks left to send raw after LZ4 did not pay */
};

/* Allocate range storage for @max_ranges ranges and a payload buffer. 0 or -ENOMEM. */
int wire_pages_enc_init(struct wire_pages_enc *e, size_t max_ranges, enum wire_compress c);
void wire_pages_enc_release(struct wire_pages_enc *e);
/* Start a new batch (keeps the buffers and the AUTO history). */
void wire_pages_enc_reset(struct wire_pages_enc *e);
/*
 * Append @npages pages at @addr from @data.  Zero pages become ZERO ranges,
 * the rest RAW or LZ4 per the compression mode.  Returns the number of
 * pages taken (fewer when the batch filled up: flush and call again), or
 * -EINVAL for an unaligned address.
 */
int wire_pages_enc_add(struct wire_pages_enc *e, uint64_t addr, const void *data, uint32_t npages);
/*
 * Append @npages zero pages at @addr (the caller knows they are zero).
 * Returns the number taken (0 when the batch has no room for a range), or -EINVAL.
 */
int wire_pages_enc_zero(struct wire_pages_enc *e, uint64_t addr, uint32_t npages);
/* Fill @m (a Pages message) to describe the batch; @m points into @e. */
void wire_pages_enc_msg(struct wire_pages_enc *e, Haul__Wire__Pages *m);

/* True when the 4096 bytes at @p are all zero. */
bool wire_page_is_zero(const void *p);

/* ---- layouts --------------------------------------------------------------- */

/*
 * Convert between struct haul_layout and a Layout message.  The message
 * made by wire_layout_to_msg() points into @l and into @vmas/@vmap (caller
 * arrays of l->n entries).  wire_layout_from_msg() validates (aligned,
 * start < end, sorted, non-overlapping) and copies: -EBADMSG or -ENOMEM.
 */
void wire_layout_to_msg(const struct haul_layout *l, Haul__Wire__Vma *vmas, Haul__Wire__Vma **vmap,
			Haul__Wire__Layout *m);
int wire_layout_from_msg(Haul__Wire__Vma *const *vmas, size_t n, struct haul_layout *out);

#endif
