/*
 * ps_session_join.c - SessionJoin.resume (post-copy recovery): its bytes are
 * the ones DESIGN.md documents, and a join without it (an older client)
 * decodes as a plain join, so old peers keep working.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/validate.h"
#include "common/wire.h"

Test(ps_session_join, resume_bytes_are_as_documented)
{
	static const uint8_t want[] = {0x08, 0x82, 0x02, 0x10, 0x00, 0x18, 0x01};
	Haul__Wire__SessionJoin j = HAUL__WIRE__SESSION_JOIN__INIT, *d;
	uint8_t buf[64];
	ProtobufCMessage *m;
	struct wire_hdr h;
	ssize_t n;

	j.session_id = 0x102;
	j.stream = 0;
	j.has_resume = true;
	j.resume = true;
	n = wire_frame_build(buf, sizeof(buf), WIRE_SESSION_JOIN, 0, 2, &j.base, NULL, 0);
	cr_assert_eq(n, WIRE_HDR_LEN + (ssize_t)sizeof(want));
	cr_assert_arr_eq(buf + WIRE_HDR_LEN, want, sizeof(want));
	cr_assert_eq(wire_hdr_decode(buf, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h), 0);
	cr_assert_eq(wire_msg_unpack(h.type, buf + WIRE_HDR_LEN, h.msg_len, &m), 0);
	d = (Haul__Wire__SessionJoin *)m;
	cr_assert_eq(d->session_id, 0x102);
	cr_assert_eq(d->stream, 0);
	cr_assert(d->has_resume && d->resume);
	wire_msg_free(m);
}

Test(ps_session_join, a_join_without_resume_is_a_plain_join)
{
	/* an older client's SessionJoin(0x102, stream 1) */
	static const uint8_t old[] = {0x08, 0x82, 0x02, 0x10, 0x01};
	Haul__Wire__SessionJoin *d;
	ProtobufCMessage *m;

	cr_assert_eq(wire_msg_unpack(WIRE_SESSION_JOIN, old, sizeof(old), &m), 0);
	d = (Haul__Wire__SessionJoin *)m;
	cr_assert_eq(d->stream, 1);
	cr_assert_not(d->has_resume);
	cr_assert_not(d->resume);
	wire_msg_free(m);
}

/* SessionJoin.lane (post-copy's fault lane): field 4, on stream 0 without resume. */
Test(ps_session_join, lane_bytes_are_as_documented)
{
	static const uint8_t want[] = {0x08, 0x82, 0x02, 0x10, 0x00, 0x20, 0x01};
	Haul__Wire__SessionJoin j = HAUL__WIRE__SESSION_JOIN__INIT;
	uint8_t buf[64];
	char why[160];
	ssize_t n;

	j.session_id = 0x102;
	j.stream = 0;
	j.has_lane = true;
	j.lane = true;
	n = wire_frame_build(buf, sizeof(buf), WIRE_SESSION_JOIN, 0, 2, &j.base, NULL, 0);
	cr_assert_eq(n, WIRE_HDR_LEN + (ssize_t)sizeof(want));
	cr_assert_arr_eq(buf + WIRE_HDR_LEN, want, sizeof(want));
	/* valid whatever the session's stream count: the lane is not one of its streams */
	cr_assert_eq(val_session_join(&j, 1, why, sizeof(why)), 0);
}

Test(ps_session_join, a_lane_on_another_stream_or_with_resume_is_refused)
{
	Haul__Wire__SessionJoin j = HAUL__WIRE__SESSION_JOIN__INIT;
	char why[160];

	j.session_id = 0x102;
	j.has_lane = true;
	j.lane = true;
	j.stream = 1;
	cr_assert_neq(val_session_join(&j, 4, why, sizeof(why)), 0);
	cr_assert(strstr(why, "lane"), "%s", why);
	j.stream = 0;
	j.has_resume = true;
	j.resume = true;
	cr_assert_neq(val_session_join(&j, 4, why, sizeof(why)), 0);
	/* and a plain join of stream 0 stays refused */
	j.has_lane = j.lane = false;
	j.has_resume = j.resume = false;
	cr_assert_neq(val_session_join(&j, 4, why, sizeof(why)), 0);
}
