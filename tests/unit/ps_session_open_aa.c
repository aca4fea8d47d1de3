/*
 * ps_session_open_aa.c - SessionOpen.apparmor_profiles (field 19, haul
 * migrate of a confined process): its bytes are the ones DESIGN.md
 * documents, and an open without it (an older client) decodes with no
 * profiles, so the target checks nothing at the open, as before.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common/wire.h"

Test(ps_session_open_aa, apparmor_profiles_bytes_are_as_documented)
{
	/* session_id 0x102, kind LIVE, pid 42, nstreams 1, then field 19 "haultest" */
	static const uint8_t want[] = {0x08, 0x82, 0x02, 0x10, 0x00, 0x18, 0x2a, 0x28, 0x01, 0x9a,
				       0x01, 0x08, 'h',	 'a',  'u',  'l',  't',	 'e',  's',  't'};
	Haul__Wire__SessionOpen o = HAUL__WIRE__SESSION_OPEN__INIT, *d;
	char *names[] = {"haultest"};
	uint8_t buf[128];
	ProtobufCMessage *m;
	struct wire_hdr h;
	ssize_t n;

	o.session_id = 0x102;
	o.kind = HAUL__WIRE__SESSION_KIND__LIVE;
	o.pid = 42;
	o.nstreams = 1;
	o.n_apparmor_profiles = 1;
	o.apparmor_profiles = names;
	n = wire_frame_build(buf, sizeof(buf), WIRE_SESSION_OPEN, 0, 1, &o.base, NULL, 0);
	cr_assert_eq(n, WIRE_HDR_LEN + (ssize_t)sizeof(want));
	cr_assert_arr_eq(buf + WIRE_HDR_LEN, want, sizeof(want));
	cr_assert_eq(wire_hdr_decode(buf, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h), 0);
	cr_assert_eq(wire_msg_unpack(h.type, buf + WIRE_HDR_LEN, h.msg_len, &m), 0);
	d = (Haul__Wire__SessionOpen *)m;
	cr_assert_eq(d->n_apparmor_profiles, 1);
	cr_assert_str_eq(d->apparmor_profiles[0], "haultest");
	wire_msg_free(m);
}

Test(ps_session_open_aa, an_open_without_profiles_names_none)
{
	/* an older client's SessionOpen(0x102, LIVE, pid 42, 1 stream) */
	static const uint8_t old[] = {0x08, 0x82, 0x02, 0x10, 0x00, 0x18, 0x2a, 0x28, 0x01};
	Haul__Wire__SessionOpen *d;
	ProtobufCMessage *m;

	cr_assert_eq(wire_msg_unpack(WIRE_SESSION_OPEN, old, sizeof(old), &m), 0);
	d = (Haul__Wire__SessionOpen *)m;
	cr_assert_eq(d->pid, 42);
	cr_assert_eq(d->n_apparmor_profiles, 0);
	wire_msg_free(m);
}
