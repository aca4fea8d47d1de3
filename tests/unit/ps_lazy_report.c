/*
 * ps_lazy_report.c - the target's post-copy report (Ack.lazy) goes through
 * the frame codec intact, its bytes are the ones DESIGN.md documents, and an
 * Ack without it (an older target) decodes to "no report".
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"

/* Pack @a into a frame, decode the frame as the client does; returns the Ack (wire_msg_free). */
static Haul__Wire__Ack *roundtrip(const Haul__Wire__Ack *a)
{
	uint8_t buf[512];
	ProtobufCMessage *m;
	struct wire_hdr h;
	ssize_t n;

	n = wire_frame_build(buf, sizeof(buf), WIRE_ACK, 0, 5, &a->base, NULL, 0);
	cr_assert_gt(n, WIRE_HDR_LEN);
	cr_assert_eq(wire_hdr_decode(buf, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h), 0);
	cr_assert_eq((size_t)n, wire_frame_len(&h));
	cr_assert_eq(wire_msg_unpack(h.type, buf + WIRE_HDR_LEN, h.msg_len, &m), 0);
	return (Haul__Wire__Ack *)m;
}

Test(ps_lazy_report, every_field_survives_the_frame_codec)
{
	struct ps_lazy_report
		r =
			{
				.faults = 1234,
				.fault_pages = 19744,
				.pushed_pages = 242000,
				.zero_filled = 7,
				.present_pages = 1057,
				.total_pages = 262801,
				.eexist_pages = 3,
				.fetched_bytes = 1076031488ull,
				.fault_p50_ns = 48000,
				.fault_p99_ns = 2500000,
				.fault_max_ns = 9000000000ull, /* > 2^32: 64-bit all the way */
				.complete_ns = 1500000000ull,
			},
		got;
	Haul__Wire__Ack a = HAUL__WIRE__ACK__INIT, *d;
	Haul__Wire__LazyReport lm;

	a.type = WIRE_PAGE_REQ;
	ps_lazy_report_to_msg(&r, &lm);
	a.lazy = &lm;
	d = roundtrip(&a);
	cr_assert_eq(d->type, WIRE_PAGE_REQ);
	cr_assert_not_null(d->lazy);
	ps_lazy_report_from_msg(d->lazy, &got);
	cr_assert_arr_eq(&got, &r, sizeof(r));
	wire_msg_free(&d->base);
}

Test(ps_lazy_report, ack_without_report_is_no_report)
{
	/* what an older target sends: Ack(PAGE_REQ) with type, value and pages only */
	Haul__Wire__Ack a = HAUL__WIRE__ACK__INIT, *d;

	a.type = WIRE_PAGE_REQ;
	a.has_value = true;
	a.has_pages = true;
	d = roundtrip(&a);
	cr_assert_eq(d->type, WIRE_PAGE_REQ);
	cr_assert_null(d->lazy);
	wire_msg_free(&d->base);
}

Test(ps_lazy_report, bytes_are_the_documented_ones)
{
	/* DESIGN.md "Wire format": Ack field 4 (key 0x22), LazyReport field n is key n << 3 */
	const uint8_t old_ack[] = {0x08, 0x0f, 0x10, 0x00, 0x18, 0x00};
	const uint8_t packed[] = {0x08, 0x0f, 0x10, 0x00, 0x18, 0x00, 0x22, 0x07,
				  0x08, 0x03, 0x50, 0x64, 0x60, 0xe8, 0x07};
	/* the same fields in another order, as another encoder may write them */
	const uint8_t new_ack[] = {0x08, 0x0f, 0x10, 0x00, 0x18, 0x00, 0x22, 0x07,
				   0x08, 0x03, 0x60, 0xe8, 0x07, 0x50, 0x64};
	Haul__Wire__Ack a = HAUL__WIRE__ACK__INIT, *d;
	Haul__Wire__LazyReport lm = HAUL__WIRE__LAZY_REPORT__INIT;
	struct ps_lazy_report got;
	ProtobufCMessage *m;
	uint8_t buf[64];

	a.type = WIRE_PAGE_REQ;
	a.has_value = true;
	a.has_pages = true;
	cr_assert_eq(protobuf_c_message_pack(&a.base, buf), sizeof(old_ack));
	cr_assert_arr_eq(buf, old_ack, sizeof(old_ack));

	lm.has_faults = true;
	lm.faults = 3;
	lm.has_complete_ns = true;
	lm.complete_ns = 1000;
	lm.has_fault_p99_ns = true;
	lm.fault_p99_ns = 100;
	a.lazy = &lm;
	/* protobuf-c packs in field-number order: 1 (08 03), 10 (50 64), 12 (60 e8 07) */
	cr_assert_eq(protobuf_c_message_pack(&a.base, buf), sizeof(packed));
	cr_assert_arr_eq(buf, packed, sizeof(packed));

	/* a reader takes the fields in any order (here 12 before 10); absent ones read 0 */
	cr_assert_eq(wire_msg_unpack(WIRE_ACK, new_ack, sizeof(new_ack), &m), 0);
	d = (Haul__Wire__Ack *)m;
	cr_assert_not_null(d->lazy);
	ps_lazy_report_from_msg(d->lazy, &got);
	cr_assert_eq(got.faults, 3);
	cr_assert_eq(got.complete_ns, 1000);
	cr_assert_eq(got.fault_p99_ns, 100);
	cr_assert_eq(got.fault_pages, 0);
	cr_assert_eq(got.fault_max_ns, 0);
	wire_msg_free(m);

	/* and an old Ack is still an Ack, with no report */
	cr_assert_eq(wire_msg_unpack(WIRE_ACK, old_ack, sizeof(old_ack), &m), 0);
	cr_assert_null(((Haul__Wire__Ack *)m)->lazy);
	wire_msg_free(m);
}
