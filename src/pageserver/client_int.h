/*
 * client_int.h - private to the page server's client (client*.c): the
 * client and stream structs, and the functions its files share.
 *
 * A stream's socket is used by one thread at a time: its sender thread
 * while it has a job, else the caller's (or, in ps_client_serve(), that
 * stream's serving thread).  Fields marked "under mu" are under
 * ps_client.mu.  Nothing outside src/pageserver includes this file.
 */
#ifndef HAUL_PAGESERVER_CLIENT_INT_H
#define HAUL_PAGESERVER_CLIENT_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "common/wire.h"
#include "pageserver/pageserver.h"

/* Room for a frame's header and message besides its payload. */
#define FRAME_EXTRA (WIRE_HDR_LEN + 65536 + WIRE_TAG_LEN)
/* Most iovecs one sendmsg takes (IOV_MAX); more pieces are gathered into one buffer. */
#define SEND_IOV_MAX 1024
/* Default wait for a reply: rounds end with fsync or a sink writing pages. */
#define PS_REPLY_TIMEOUT_MS 60000

struct ps_stream {
	struct ps_client *cl;
	unsigned idx;
	int fd;
	uint32_t tx_seq, rx_seq;
	bool encrypt;
	uint8_t skey[WIRE_KEY_LEN];
	pthread_t thr;
	bool thr_started;
	/* the job slot, under cl->mu */
	bool has_job, busy, quit;
	uint64_t job_addr;
	const uint8_t *job_data;
	const uint64_t *job_zero; /* bitmap of the caller's whole call */
	uint64_t job_zero_base;	  /* bit index of job page 0 in job_zero */
	uint32_t job_n;		  /* pages */
	/* ps_client_pages_v: the job's ranges (their data follows on in job_data), else NULL */
	const struct ps_range *job_r;
	size_t job_nr;
	int err;
	bool broken; /* the socket failed (transport error); cleared by a reconnect */
	/* owned by whichever thread uses the socket */
	struct wire_pages_enc enc;
	uint8_t *fbuf; /* frame under construction */
	uint8_t *rbuf; /* reply */
	size_t rcap;
	size_t rhead, rfill; /* the fault lane's buffered receive: unparsed bytes (client_lane.c) */
	uint64_t round_pages, round_bytes;
	uint64_t bytes_sent;
	char refused[256]; /* the reason of the last ERROR received ("" none) */
};

struct ps_client {
	struct ps_client_opts o;
	uint64_t session_id, committed_round;
	struct ps_resource_cap *caps; /* SessionOk.resources (kinds strdup'd) */
	size_t ncaps;
	uint32_t server_caps; /* what stream 0's server offered in Hello */
	/* client_net.c: SessionOk.addresses (strdup'd), the ends for Restore.lock */
	char **taddrs;
	size_t ntaddrs;
	struct ps_net_end *lock;
	size_t nlock;
	int64_t hello_rtt_ns; /* stream 0's Hello round trip (clocks in SessionOpen) */
	struct ps_stream *st;
	unsigned n, next;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* job slots and idleness changed */
	bool in_round;
	uint64_t round;
	uint32_t round_nice; /* RoundBegin.nice (ps_client_set_nice) */
	struct timespec round_t0;
	uint64_t req_id;
	void *scratch; /* LZ4 decoding of page replies, WIRE_MAX_PAYLOAD bytes, on first use */
	/* post-copy serving (ps_client_serve), under mu */
	bool serve_stop; /* a serving thread finished: the others stop */
	int serve_result;
	bool serve_broken;    /* serve_result is a transport error: ps_client_reconnect may help */
	uint64_t fault_break; /* tests: shut every socket down at this many requests served */
	uint64_t fault_break_lane; /* tests: shut the lane down at this many lane replies */
	unsigned reconnects;
	int serve_efd; /* written when serve_stop is set: wakes the others' poll */
	uint64_t serve_last_ns, serve_reqs;
	bool has_lazy_report; /* the target's report came with its "every page arrived" */
	struct ps_lazy_report lazy_report;
	/* token bucket, under mu */
	double tokens;
	struct timespec tb_last;
	/* stats, under mu */
	uint64_t pages, zero_pages, lz4_pages, payload_bytes, round_payload;
	double last_round_mbps;
	uint64_t serve_replies, serve_bytes, serve_lane_replies;
};

/* client.c */
int ps_stream_connect(struct ps_client *c, struct ps_stream *st, const struct sockaddr_storage *ss,
		      socklen_t len);
int64_t ps_clock_ns(clockid_t id);
int ps_stream_auth(struct ps_client *c, struct ps_stream *st);
/* client_lane.c: whether the server takes a fault lane for this session; open one (connect,
 * authenticate, SessionJoin.lane) into *@out, 0 or -errno; close and free it. */
bool ps_lane_offered(const struct ps_client *c);
int ps_lane_open(struct ps_client *c, struct ps_stream **out);
/* The lane's next PageReq into *@out (wire_msg_free); blocks until one, an error, or shutdown. */
int ps_lane_recv_req(struct ps_stream *st, Haul__Wire__PageReq **out);
void ps_lane_close(struct ps_stream *st);
int ps_stream_session(struct ps_client *c, struct ps_stream *st, bool resume);

/* client_io.c */
int ps_stream_sendv(struct ps_stream *st, unsigned type, const ProtobufCMessage *msg,
		    const struct wire_seg *segs, size_t nsegs, uint32_t plen);
int ps_stream_send(struct ps_stream *st, unsigned type, const ProtobufCMessage *msg,
		   const void *payload, uint32_t plen);
int ps_stream_recv_t(struct ps_stream *st, unsigned want, int timeout_ms, ProtobufCMessage **out,
		     const uint8_t **payload, size_t *plen, unsigned *got);
int ps_stream_recv(struct ps_stream *st, unsigned want, int timeout_ms, ProtobufCMessage **out,
		   const uint8_t **payload, size_t *plen);
int ps_reply_timeout(const struct ps_client *c);
int ps_stream_ack(struct ps_stream *st, unsigned type, Haul__Wire__Ack *copy);
int ps_stream_why(struct ps_stream *st, int err);

/* client_stream.c */
void *ps_stream_thread(void *arg);
int ps_client_flush(struct ps_client *c);

/* client_net.c: the network lock's and the address move's part of the session */
int ps_client_net_keep_addrs(struct ps_client *c, const Haul__Wire__SessionOk *ok);
/* Restore.lock from the ends set; *@ends: what to free with ps_client_net_lock_release(). */
int ps_client_net_lock_msg(struct ps_client *c, Haul__Wire__Restore *r, void **ends);
void ps_client_net_lock_release(void *ends);
void ps_client_net_free(struct ps_client *c);

#endif
