/* wire_codec.c - the frame codec accepts what it should and rejects every malformed case. */
#include <criterion/criterion.h>
#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "common/wire.h"

static struct wire_hdr good_hdr(void)
{
	struct wire_hdr h = {
		.magic = WIRE_MAGIC,
		.version = WIRE_VERSION,
		.type = WIRE_PAGES,
		.flags = 0,
		.seq = 7,
		.msg_len = 100,
		.payload_len = 4096,
	};
	return h;
}

static int decode_modified(void (*mod)(uint8_t *b))
{
	struct wire_hdr h = good_hdr(), out;
	uint8_t b[WIRE_HDR_LEN];

	wire_hdr_encode(&h, b);
	mod(b);
	return wire_hdr_decode(b, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &out);
}

Test(wire, header_is_little_endian_byte_by_byte)
{
	struct wire_hdr h = good_hdr(), out;
	uint8_t b[WIRE_HDR_LEN];
	const uint8_t want[WIRE_HDR_LEN] = {'H', 'A', 'U', 'L', 1, WIRE_PAGES, 0, 0, 7, 0, 0, 0,
					    100, 0,   0,   0,	0, 0x10,       0, 0, 0, 0, 0, 0};

	wire_hdr_encode(&h, b);
	cr_assert_arr_eq(b, want, WIRE_HDR_LEN);
	cr_assert_eq(wire_hdr_decode(b, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &out), 0);
	cr_assert_eq(out.seq, 7);
	cr_assert_eq(out.msg_len, 100);
	cr_assert_eq(out.payload_len, 4096);
	cr_assert_eq(wire_frame_len(&out), WIRE_HDR_LEN + 100 + 4096);
}

static void bad_magic(uint8_t *b)
{
	b[0] = 'X';
}
static void bad_version(uint8_t *b)
{
	b[4] = 2;
}
static void unknown_type(uint8_t *b)
{
	b[5] = WIRE_TYPE_MAX + 1;
}
static void zero_type(uint8_t *b)
{
	b[5] = 0;
}
static void unknown_flag(uint8_t *b)
{
	b[6] = 0x80;
}
static void reserved_set(uint8_t *b)
{
	b[23] = 1;
}
static void huge_msg(uint8_t *b)
{
	b[15] = 0xff;
}
static void huge_payload(uint8_t *b)
{
	b[18] = 0x41; /* 0x410000 + 0x1000 > 4 MiB */
}

Test(wire, rejects_bad_magic)
{
	cr_assert_eq(decode_modified(bad_magic), -EBADMSG);
}

Test(wire, rejects_unknown_version)
{
	cr_assert_eq(decode_modified(bad_version), -EPROTONOSUPPORT);
}

Test(wire, rejects_unknown_type)
{
	cr_assert_eq(decode_modified(unknown_type), -EPROTO);
	cr_assert_eq(decode_modified(zero_type), -EPROTO);
	cr_assert_str_eq(wire_type_name(WIRE_TYPE_MAX + 1), "unknown");
}

Test(wire, rejects_unknown_flags_and_reserved_bits)
{
	cr_assert_eq(decode_modified(unknown_flag), -EPROTO);
	cr_assert_eq(decode_modified(reserved_set), -EBADMSG);
}

Test(wire, rejects_oversized_frame)
{
	cr_assert_eq(decode_modified(huge_msg), -EMSGSIZE);
	cr_assert_eq(decode_modified(huge_payload), -EMSGSIZE);
}

Test(wire, preauth_limit_is_the_callers)
{
	struct wire_hdr h = good_hdr(), out;
	uint8_t b[WIRE_HDR_LEN];

	wire_hdr_encode(&h, b);
	cr_assert_eq(wire_hdr_decode(b, WIRE_MAX_PREAUTH, 0, &out), -EMSGSIZE);
}

Test(wire, frame_roundtrip_and_truncated_message_is_rejected)
{
	Haul__Wire__RoundEnd re = HAUL__WIRE__ROUND_END__INIT, *got;
	uint8_t buf[256], payload[3] = {1, 2, 3};
	ProtobufCMessage *m;
	struct wire_hdr h;
	ssize_t n;

	re.round = 42;
	re.has_pages = true;
	re.pages = 1000;
	n = wire_frame_build(buf, sizeof(buf), WIRE_ROUND_END, 0, 3, &re.base, payload, 3);
	cr_assert_gt(n, WIRE_HDR_LEN);
	cr_assert_eq(wire_hdr_decode(buf, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h), 0);
	cr_assert_eq((size_t)n, wire_frame_len(&h));
	cr_assert_eq(wire_msg_unpack(h.type, buf + WIRE_HDR_LEN, h.msg_len, &m), 0);
	got = (Haul__Wire__RoundEnd *)m;
	cr_assert_eq(got->round, 42);
	cr_assert_eq(got->pages, 1000);
	wire_msg_free(m);
	cr_assert_arr_eq(buf + WIRE_HDR_LEN + h.msg_len, payload, 3);

	/* The same message cut short: protobuf-c refuses it. */
	cr_assert_eq(wire_msg_unpack(h.type, buf + WIRE_HDR_LEN, 1, &m), -EBADMSG);
	cr_assert_eq(wire_frame_build(buf, 20, WIRE_ROUND_END, 0, 0, &re.base, NULL, 0), -EMSGSIZE);
}

Test(wire, missing_required_field_is_rejected)
{
	uint8_t empty[1] = {0};

	ProtobufCMessage *m;
	cr_assert_eq(wire_msg_unpack(WIRE_ROUND_BEGIN, empty, 0, &m), -EBADMSG);
}

/* ---- pages ---- */

struct got {
	uint64_t addr[64];
	uint32_t n[64];
	bool zero[64];
	uint8_t data[64][4096];
	int count;
};

static int collect(void *arg, uint64_t addr, const void *data, uint32_t npages)
{
	struct got *g = arg;

	g->addr[g->count] = addr;
	g->n[g->count] = npages;
	g->zero[g->count] = !data;
	if (data)
		memcpy(g->data[g->count], data, 4096);
	g->count++;
	return 0;
}

static Haul__Wire__PageRange mkrange(uint64_t addr, uint32_t n, int enc, uint32_t len)
{
	Haul__Wire__PageRange r = HAUL__WIRE__PAGE_RANGE__INIT;

	r.addr = addr;
	r.npages = n;
	r.enc = enc;
	r.len = len;
	return r;
}

static int64_t decode1(Haul__Wire__PageRange r, const void *payload, size_t len)
{
	Haul__Wire__PageRange *rp = &r;
	Haul__Wire__Pages m = HAUL__WIRE__PAGES__INIT;
	static uint8_t scratch[WIRE_MAX_PAYLOAD];
	static struct got g;

	g.count = 0;
	m.n_ranges = 1;
	m.ranges = &rp;
	return wire_pages_decode(&m, payload, len, scratch, collect, &g);
}

Test(wire, pages_reject_malformed_ranges)
{
	static uint8_t page[8192];

	cr_assert_eq(decode1(mkrange(0x1000, 1, HAUL__WIRE__ENCODING__RAW, 4096), page, 4096), 1);
	/* unaligned address */
	cr_assert_eq(decode1(mkrange(0x1001, 1, HAUL__WIRE__ENCODING__RAW, 4096), page, 4096),
		     -EBADMSG);
	/* no pages */
	cr_assert_eq(decode1(mkrange(0x1000, 0, HAUL__WIRE__ENCODING__ZERO, 0), page, 0), -EBADMSG);
	/* too many pages */
	cr_assert_eq(decode1(mkrange(0x1000, 1025, HAUL__WIRE__ENCODING__ZERO, 0), page, 0),
		     -EBADMSG);
	/* address range wraps */
	cr_assert_eq(
		decode1(mkrange(UINT64_MAX & ~0xfffull, 2, HAUL__WIRE__ENCODING__ZERO, 0), page, 0),
		-EBADMSG);
	/* RAW length not npages * 4096 */
	cr_assert_eq(decode1(mkrange(0x1000, 2, HAUL__WIRE__ENCODING__RAW, 4096), page, 4096),
		     -EBADMSG);
	/* ZERO with bytes */
	cr_assert_eq(decode1(mkrange(0x1000, 1, HAUL__WIRE__ENCODING__ZERO, 4096), page, 4096),
		     -EBADMSG);
	/* range longer than the payload (truncated payload) */
	cr_assert_eq(decode1(mkrange(0x1000, 2, HAUL__WIRE__ENCODING__RAW, 8192), page, 4096),
		     -EBADMSG);
	/* payload longer than the ranges */
	cr_assert_eq(decode1(mkrange(0x1000, 1, HAUL__WIRE__ENCODING__RAW, 4096), page, 8192),
		     -EBADMSG);
	/* unknown encoding */
	cr_assert_eq(decode1(mkrange(0x1000, 1, 9, 0), page, 0), -EBADMSG);
}

Test(wire, pages_reject_corrupt_lz4)
{
	static uint8_t src[4096], comp[8192], bad[8192];
	int n;

	memset(src, 'a', sizeof(src));
	n = LZ4_compress_default((char *)src, (char *)comp, 4096, sizeof(comp));
	cr_assert_gt(n, 0);
	cr_assert_eq(decode1(mkrange(0, 1, HAUL__WIRE__ENCODING__LZ4, n), comp, n), 1);
	/* garbage */
	memset(bad, 0xff, sizeof(bad));
	cr_assert_eq(decode1(mkrange(0, 1, HAUL__WIRE__ENCODING__LZ4, 64), bad, 64), -EBADMSG);
	/* valid block, but decodes to the wrong size */
	cr_assert_eq(decode1(mkrange(0, 2, HAUL__WIRE__ENCODING__LZ4, n), comp, n), -EBADMSG);
	/* truncated block */
	cr_assert_eq(decode1(mkrange(0, 1, HAUL__WIRE__ENCODING__LZ4, n - 3), comp, n - 3),
		     -EBADMSG);
}

struct put_ctx {
	uint64_t base;
	uint8_t *out;
};

static int put(void *arg, uint64_t addr, const void *d, uint32_t n)
{
	struct put_ctx *x = arg;
	uint8_t *dst = x->out + (addr - x->base);

	if (d)
		memcpy(dst, d, (size_t)n * 4096);
	else
		memset(dst, 0, (size_t)n * 4096);
	return 0;
}

Test(wire, encoder_elides_zero_pages_and_roundtrips)
{
	enum {
		N = 48
	};
	static uint8_t data[N * 4096], scratch[WIRE_MAX_PAYLOAD], out[N * 4096];
	struct wire_pages_enc e;
	Haul__Wire__Pages m;
	uint64_t base = 0x7f0000000000ull;

	srand(1);
	for (int i = 0; i < N; i++) {
		uint8_t *p = data + i * 4096;
		if (i % 3 == 0)
			continue; /* zero */
		if (i % 3 == 1)
			memset(p, i, 4096); /* compressible */
		else
			for (int j = 0; j < 4096; j++)
				p[j] = (uint8_t)rand(); /* random */
	}
	for (int mode = WIRE_COMPRESS_AUTO; mode <= WIRE_COMPRESS_NONE; mode++) {
		cr_assert_eq(wire_pages_enc_init(&e, 128, mode), 0);
		cr_assert_eq(wire_pages_enc_add(&e, base, data, N), N);
		cr_assert_eq(e.zero_pages, N / 3);
		if (mode == WIRE_COMPRESS_NONE)
			cr_assert_eq(e.lz4_pages, 0);
		else
			cr_assert_gt(e.lz4_pages, 0);
		wire_pages_enc_msg(&e, &m);

		memset(out, 0x55, sizeof(out));
		struct put_ctx c = {base, out};
		cr_assert_eq(wire_pages_decode(&m, e.payload, e.len, scratch, put, &c), N);
		cr_assert_arr_eq(out, data, sizeof(data));
		wire_pages_enc_release(&e);
	}
}

Test(wire, encoder_stops_when_batch_is_full)
{
	static uint8_t data[2048 * 4096];
	struct wire_pages_enc e;
	int n;

	memset(data, 0x11, sizeof(data));
	cr_assert_eq(wire_pages_enc_init(&e, 4096, WIRE_COMPRESS_NONE), 0);
	n = wire_pages_enc_add(&e, 0, data, 2048);
	cr_assert_eq(n, WIRE_MAX_PAYLOAD / 4096);
	cr_assert_eq(e.len, WIRE_MAX_PAYLOAD);
	wire_pages_enc_reset(&e);
	cr_assert_eq(wire_pages_enc_add(&e, 0x1001, data, 1), -EINVAL);
	wire_pages_enc_release(&e);
}

/* ---- crypto ---- */

Test(wire, sealed_frame_opens_and_tampering_is_detected)
{
	uint8_t key[32], other[32], frame[WIRE_HDR_LEN + 10 + WIRE_TAG_LEN];
	struct wire_hdr h = {
		.magic = WIRE_MAGIC,
		.version = 1,
		.type = WIRE_STATE,
		.flags = WIRE_F_ENCRYPTED,
		.seq = 5,
		.payload_len = 10,
	};

	memset(key, 1, sizeof(key));
	memset(other, 2, sizeof(other));
	wire_hdr_encode(&h, frame);
	memcpy(frame + WIRE_HDR_LEN, "0123456789", 10);
	wire_seal(key, WIRE_DIR_C2S, frame, &h);
	cr_assert_neq(memcmp(frame + WIRE_HDR_LEN, "0123456789", 10), 0);

	uint8_t copy[sizeof(frame)];
	memcpy(copy, frame, sizeof(frame));
	cr_assert_eq(wire_open(other, WIRE_DIR_C2S, copy, &h), -EBADMSG);
	memcpy(copy, frame, sizeof(frame));
	cr_assert_eq(wire_open(key, WIRE_DIR_S2C, copy, &h), -EBADMSG);
	memcpy(copy, frame, sizeof(frame));
	copy[WIRE_HDR_LEN + 3] ^= 1;
	cr_assert_eq(wire_open(key, WIRE_DIR_C2S, copy, &h), -EBADMSG);
	memcpy(copy, frame, sizeof(frame));
	cr_assert_eq(wire_open(key, WIRE_DIR_C2S, copy, &h), 0);
	cr_assert_arr_eq(copy + WIRE_HDR_LEN, "0123456789", 10);
}

Test(wire, auth_mac_binds_key_side_and_nonces)
{
	uint8_t key[32], other[32], cn[32], sn[32], mac[32];

	memset(key, 1, 32);
	memset(other, 2, 32);
	memset(cn, 3, 32);
	memset(sn, 4, 32);
	wire_auth_mac(key, true, cn, sn, mac);
	cr_assert(wire_auth_verify(key, true, cn, sn, mac, 32));
	cr_assert_not(wire_auth_verify(other, true, cn, sn, mac, 32));
	cr_assert_not(wire_auth_verify(key, false, cn, sn, mac, 32));
	cr_assert_not(wire_auth_verify(key, true, sn, cn, mac, 32));
	cr_assert_not(wire_auth_verify(key, true, cn, sn, mac, 31));
	cr_assert_not(wire_auth_verify(key, true, cn, sn, NULL, 0));
}

/* ---- layout ---- */

Test(wire, layout_roundtrips_and_overlaps_are_rejected)
{
	struct haul_vma v[2] = {
		{.start = 0x1000, .end = 0x3000, .prot = 3, .flags = 2},
		{.start = 0x5000,
		 .end = 0x6000,
		 .prot = 5,
		 .flags = 4,
		 .path = "/bin/x",
		 .file_size = 12345,
		 .file_mtime = -7,
		 .file_known = true,
		 .build_id_len = 3,
		 .build_id = {1, 2, 3}},
	};
	struct haul_layout l = {v, 2}, out;
	Haul__Wire__Vma wv[2], *wp[2];
	Haul__Wire__Layout m;

	wire_layout_to_msg(&l, wv, wp, &m);
	cr_assert_eq(wire_layout_from_msg(m.vmas, m.n_vmas, &out), 0);
	cr_assert_eq(out.n, 2);
	cr_assert_eq(out.v[1].start, 0x5000);
	cr_assert_str_eq(out.v[1].path, "/bin/x");
	cr_assert(!out.v[0].file_known && out.v[1].file_known);
	cr_assert_eq(out.v[1].file_size, 12345);
	cr_assert_eq(out.v[1].file_mtime, -7);
	cr_assert_eq(out.v[1].build_id_len, 3);
	cr_assert_eq(out.v[1].build_id[2], 3);
	free(out.v[1].path);
	free(out.v);

	wv[1].start = 0x2000;
	cr_assert_eq(wire_layout_from_msg(m.vmas, m.n_vmas, &out), -EBADMSG);
	wv[1].start = 0x5001;
	cr_assert_eq(wire_layout_from_msg(m.vmas, m.n_vmas, &out), -EBADMSG);
}

Test(wire, encoder_by_reference_sends_raw_pages_from_the_source)
{
	enum {
		N = 8
	};
	static uint8_t data[N * 4096], flat[WIRE_MAX_PAYLOAD], scratch[WIRE_MAX_PAYLOAD],
		out[N * 4096];
	struct wire_pages_enc e;
	Haul__Wire__Pages m;
	size_t off = 0;

	srand(2);
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)rand();
	memset(data + 2 * 4096, 0, 4096); /* one zero page splits the raw run */
	cr_assert_eq(wire_pages_enc_init(&e, 16, WIRE_COMPRESS_NONE), 0);
	e.ref = true;
	cr_assert_eq(wire_pages_enc_add(&e, 0x10000, data, N), N);
	cr_assert_eq(e.used, 0, "raw pages were copied");
	cr_assert_eq(e.nsegs, 2);
	cr_assert_eq(e.segs[0].p, data);
	cr_assert_eq(e.segs[1].p, data + 3 * 4096);
	for (size_t i = 0; i < e.nsegs; i++) {
		memcpy(flat + off, e.segs[i].p, e.segs[i].len);
		off += e.segs[i].len;
	}
	cr_assert_eq(off, e.len);
	wire_pages_enc_msg(&e, &m);
	struct put_ctx c = {0x10000, out};
	cr_assert_eq(wire_pages_decode(&m, flat, off, scratch, put, &c), N);
	cr_assert_arr_eq(out, data, sizeof(data));
	wire_pages_enc_release(&e);
}
