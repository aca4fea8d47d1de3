/*
 * wire_fuzz.c - libFuzzer target for the frame decoder (make fuzz).
 *
 * The input is a byte stream as a peer would send it: frames are decoded
 * one after another exactly as the server does (header against the hard
 * limits, message unpack for its type, page batches decoded including
 * LZ4, layouts validated), until the bytes run out or a frame is refused.
 * Every message also goes through its validator (common/validate.h), as
 * the server does after authentication.  Any crash, leak or sanitizer
 * report is a bug.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/validate.h"
#include "common/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int sink(void *arg, uint64_t addr, const void *p, uint32_t npages)
{
	volatile uint8_t x = 0;

	(void)arg;
	(void)addr;
	/* touch every delivered page so a bad pointer or length shows up */
	if (p)
		for (size_t i = 0; i < (size_t)npages * 4096; i += 512)
			x ^= ((const uint8_t *)p)[i];
	return x == 0xff ? 0 : 0;
}

/* The validator of each message kind, as the server calls them. */
static void validate(unsigned type, const ProtobufCMessage *m, const uint8_t *payload, size_t len,
		     char *why, size_t n)
{
	switch (type) {
	case WIRE_SESSION_OPEN:
		val_session_open((const Haul__Wire__SessionOpen *)m, why, n);
		break;
	case WIRE_SESSION_JOIN:
		val_session_join((const Haul__Wire__SessionJoin *)m, PS_MAX_STREAMS, why, n);
		break;
	case WIRE_PAGES:
	case WIRE_PAGE_REPLY:
		val_pages((const Haul__Wire__Pages *)m, why, n);
		break;
	case WIRE_PAGE_REQ:
		val_page_req((const Haul__Wire__PageReq *)m, why, n);
		break;
	case WIRE_STATE:
		val_stale((const Haul__Wire__State *)m, 4096, why, n);
		val_state_blob(payload, len, why, n);
		break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t *scratch;
	size_t off = 0;

	if (!scratch)
		scratch = malloc(WIRE_MAX_PAYLOAD);
	while (size - off >= WIRE_HDR_LEN) {
		struct wire_hdr h;
		ProtobufCMessage *m;
		size_t len;

		if (wire_hdr_decode(data + off, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h))
			break;
		len = wire_frame_len(&h);
		if (len > size - off)
			break;
		if (wire_msg_unpack(h.type, data + off + WIRE_HDR_LEN, h.msg_len, &m) == 0) {
			const uint8_t *payload = data + off + WIRE_HDR_LEN + h.msg_len;
			char why[160];

			validate(h.type, m, payload, h.payload_len, why, sizeof(why));
			if (h.type == WIRE_PAGES || h.type == WIRE_PAGE_REPLY)
				wire_pages_decode((Haul__Wire__Pages *)m, payload, h.payload_len,
						  scratch, sink, NULL);
			if (h.type == WIRE_LAYOUT) {
				Haul__Wire__Layout *l = (Haul__Wire__Layout *)m;
				struct haul_layout out;

				if (wire_layout_from_msg(l->vmas, l->n_vmas, &out) == 0) {
					val_layout(&out, why, sizeof(why));
					for (size_t i = 0; i < out.n; i++)
						free(out.v[i].path);
					free(out.v);
				}
			}
			wire_msg_free(m);
		}
		off += len;
	}
	return 0;
}
