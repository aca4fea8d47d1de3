/*
 * ps_lane_recv.c - the source's read of a fault lane's requests
 * (ps_lane_recv_req): whole frames through its buffer, whatever size the
 * handshake's receives left that buffer, and a frame that is not a PageReq
 * in sequence is refused.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/wire.h"
#include "pageserver/client_int.h"

/* A PageReq frame of @seq whose message carries @pad bytes of an unknown field (readers skip it). */
static size_t page_req_frame(uint8_t *buf, size_t cap, uint32_t seq, uint64_t id, size_t pad)
{
	Haul__Wire__PageReq q = HAUL__WIRE__PAGE_REQ__INIT;
	uint8_t msg[2048];
	size_t n;
	struct wire_hdr h = {
		.magic = WIRE_MAGIC, .version = WIRE_VERSION, .type = WIRE_PAGE_REQ, .seq = seq};

	q.req_id = id;
	q.addr = 0x7f0000001000ull;
	q.npages = 3;
	n = protobuf_c_message_pack(&q.base, msg);
	/* field 15, length-delimited: tag 0x7a, a two-byte length, then zeros */
	msg[n++] = 0x7a;
	msg[n++] = (uint8_t)(0x80 | (pad & 0x7f));
	msg[n++] = (uint8_t)(pad >> 7);
	memset(msg + n, 0, pad);
	n += pad;
	h.msg_len = (uint32_t)n;
	cr_assert_leq(WIRE_HDR_LEN + n, cap);
	wire_hdr_encode(&h, buf);
	memcpy(buf + WIRE_HDR_LEN, msg, n);
	return WIRE_HDR_LEN + n;
}

/* A stream on one end of a socketpair, its buffer as small as the handshake may leave it. */
static void small_stream(struct ps_stream *st, int *peer)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	memset(st, 0, sizeof(*st));
	st->fd = sv[0];
	st->rx_seq = 3; /* Hello, Auth and SessionJoin came before */
	st->rcap = 79;
	st->rbuf = malloc(st->rcap);
	*peer = sv[1];
}

Test(ps_lane_recv, a_request_larger_than_the_handshake_buffer_is_read_whole)
{
	uint8_t f[4096];
	struct ps_stream st;
	Haul__Wire__PageReq *q;
	int peer;
	size_t n;

	small_stream(&st, &peer);
	n = page_req_frame(f, sizeof(f), 3, 41, 1000);
	n += page_req_frame(f + n, sizeof(f) - n, 4, 42, 200);
	cr_assert_eq(write(peer, f, n), (ssize_t)n);
	cr_assert_eq(ps_lane_recv_req(&st, &q), 0);
	cr_assert_eq(q->req_id, 41);
	cr_assert_eq(q->npages, 3);
	wire_msg_free(&q->base);
	cr_assert_eq(ps_lane_recv_req(&st, &q), 0, "the second frame, already buffered");
	cr_assert_eq(q->req_id, 42);
	wire_msg_free(&q->base);
	cr_assert_geq(st.rcap, (size_t)1000);
	close(peer);
	cr_assert_eq(ps_lane_recv_req(&st, &q), -ECONNRESET);
	close(st.fd);
	free(st.rbuf);
}

Test(ps_lane_recv, a_frame_out_of_sequence_or_not_a_request_is_refused)
{
	uint8_t f[256];
	struct ps_stream st;
	Haul__Wire__PageReq *q;
	int peer;
	size_t n;

	small_stream(&st, &peer);
	n = page_req_frame(f, sizeof(f), 9, 1, 10); /* frame 9 where 3 is due */
	cr_assert_eq(write(peer, f, n), (ssize_t)n);
	cr_assert_eq(ps_lane_recv_req(&st, &q), -EPROTO);
	close(peer);
	close(st.fd);
	free(st.rbuf);
}
