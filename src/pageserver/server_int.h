/*
 * server_int.h - private to the page server (server*.c): the connection,
 * session and server structs, and the functions its files share.
 *
 * Everything here runs on the loop thread, except what is marked as under
 * ps_server.fmu (post-copy requests of other threads).  Nothing outside
 * src/pageserver includes this file.
 */
#ifndef HAUL_PAGESERVER_SERVER_INT_H
#define HAUL_PAGESERVER_SERVER_INT_H

#include <ev.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "common/cpuweight.h"
#include "common/pstore.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"

#define RING_DEPTH 512
#define OP_RECV	   1u
#define OP_SEND	   2u
#define OP_MASK	   3u
#define RBUF_MIN   (64u << 10)

enum ps_state {
	PS_HELLO,   /* waiting for the peer's Hello */
	PS_AUTH,    /* Hello exchanged, waiting for the peer's Auth */
	PS_AUTHED,  /* authenticated, no session yet */
	PS_READY,   /* in a session, between rounds */
	PS_ROUND,   /* in a round */
	PS_BARRIER, /* ended the round, waiting for the other streams */
	PS_CLOSING, /* flushing an Error, accepts nothing */
	PS_NSTATES
};

struct ps_session;

/*
 * A post-copy page request of another thread (ps_session_fetch).  On the
 * heap: the requester frees it once done; one that timed out is marked
 * abandoned and freed by the loop thread, which may still hold it.  All
 * fields after `next` are under ps_server.fmu.
 */
struct ps_fetch {
	struct ps_session *sess;
	uint64_t id, addr;
	uint32_t npages;
	uint8_t *buf;
	bool urgent; /* a fault waits for it: first in the queue, on the fault stream */
	struct ps_fetch *next;
	int err;
	bool done, abandoned;
	struct timespec dl; /* CLOCK_MONOTONIC deadline; moved on by a detach and a rejoin */
	pthread_cond_t cv;  /* its requester alone waits on it (with fmu) */
};

struct ps_conn {
	struct ps_server *srv;
	int fd;
	char peer[64];
	struct sockaddr_storage addr; /* the peer, for the per-address cap */
	ev_tstamp last_rx;	      /* when bytes last arrived (idle timeout) */
	enum ps_state state;
	struct ps_conn *next;
	/* receive */
	uint8_t *rbuf;
	size_t rcap, rhead, rfill; /* unparsed bytes are rbuf[rhead, rfill) */
	bool recv_busy;
	uint32_t rx_seq;
	/* send: obuf[cur] is in flight (from ooff), obuf[!cur] collects */
	uint8_t *obuf[2];
	size_t ocap[2], olen[2], ooff;
	int ocur;
	bool send_busy;
	uint32_t tx_seq;
	/* auth */
	uint8_t cnonce[WIRE_NONCE_LEN], snonce[WIRE_NONCE_LEN];
	bool encrypt;
	uint8_t skey[WIRE_KEY_LEN];
	/* session */
	struct ps_session *sess;
	uint32_t stream;
	uint64_t round, round_pages, round_bytes;
	/* a RAW page payload received straight into the page store */
	bool direct;
	struct iovec *diov; /* WIRE_MAX_REQ_PAGES entries, allocated on first use */
	unsigned dn, di;    /* iovecs in use; the first not yet filled */
	struct msghdr dmsg;
	struct wire_hdr dh; /* that frame's header */
	uint64_t dpages;
	struct ps_session *sref; /* the session, until this connection is freed */
	bool lane; /* a fault lane whose SessionOk is out: ps_lane_take() once it has left */
	/* deadline */
	ev_timer timer;
	bool timer_on;
	bool dead; /* torn down: waiting for submissions to be reaped */
};

struct ps_session {
	struct ps_server *srv;
	uint64_t id;
	Haul__Wire__SessionKind kind;
	int32_t pid;
	char comm[32];
	char peer[64];
	uint32_t nstreams;
	bool lazy;
	struct ps_conn *streams[PS_MAX_STREAMS];
	/* a State or Ghost coming in parts (total): the bytes so far, and its frame type */
	uint8_t *state_buf;
	uint64_t state_total, state_got;
	unsigned state_type;
	uint32_t nconns;  /* streams currently attached */
	uint32_t nrefs;	  /* connections not yet freed (their receives may write staged pages) */
	uint32_t njoined; /* streams that ever attached */
	bool in_round;
	uint64_t round, last_round;
	uint32_t nended;
	uint64_t round_pages, total_pages, total_bytes;
	uint64_t round_base;	   /* STORE: the store's round when the session opened */
	struct haul_layout layout; /* LIVE with a sink: to check pages against */
	struct pstore_proc *proc;
	void *sink_sess;
	bool committed, failed;
	uint32_t nice; /* RoundBegin.nice of its last round: its process runs (server_weight.c) */
	/* post-copy recovery (loop thread) */
	bool restored;	       /* lazy: the sink resumed the process */
	bool detached;	       /* streams lost, waiting for the source to rejoin */
	bool done_sent;	       /* the "every page arrived" notice went out (again after a rejoin) */
	ev_timer detach_timer; /* stall timeout of a detach */
	struct timespec detach_dl; /* a request waits at least until then while detached */
	uint64_t detach_ns;	   /* when it detached */
	unsigned rejoins;
	/* post-copy, under srv->fmu */
	struct ps_fetch *parked;   /* requests to (re)send once the source rejoined */
	struct ps_fetch *inflight; /* PAGE_REQs sent, waiting for their PAGE_REPLY */
	bool fclosed;		   /* no more requests: the session failed or ended */
	struct ps_lane *lanes;	   /* fault lanes, newest first (server_lane.c); under fmu */
	pthread_mutex_t lane_mu;   /* the newest lane's socket: one request at a time */
	unsigned nlanes;	   /* lanes ever joined (loop thread): at most LANE_MAX */
	bool fdone;		   /* the target has every page: tell the source */
	bool has_frep;		   /* with fdone: send frep with the notice */
	struct ps_lazy_report frep;
	int ffail;	      /* the target cannot go on: fail the session with it (-errno) */
	char ffail_why[200];  /* and this reason */
	unsigned next_stream; /* loop thread: round-robin of requests over streams */
	struct ps_session *next;
};

struct ps_server {
	struct ps_server_opts o;
	char *images_dir;
	struct ev_loop *loop;
	struct io_uring ring;
	bool ring_ok;
	int efd, lfd;
	ev_io eio, lio;
	ev_prepare prep;
	ev_signal sigint, sigterm;
	ev_async stop;
	/* post-copy requests from other threads */
	ev_async fasync;
	pthread_mutex_t fmu;
	pthread_condattr_t fca;	 /* each ps_fetch's cv: CLOCK_MONOTONIC, the deadlines' clock */
	struct ps_fetch *fqueue; /* to send */
	uint64_t next_req_id;
	pthread_t loop_thread;
	bool loop_running;
	struct pstore *store;
	struct ps_conn *conns;
	unsigned nconns;
	struct ps_session *sessions;
	unsigned nsessions_done;
	struct wire_pages_enc enc; /* PAGE_REPLY encoder */
	uint8_t **dptr;		   /* WIRE_MAX_REQ_PAGES page addresses, for direct receives */
	uint8_t *scratch;	   /* LZ4 decode, and PAGE_REQ reads */
	int port;
	int result;
	bool closing;  /* ps_server_free: no session detaches any more */
	ev_timer idle; /* sweeps authenticated connections for idleness */
	/* the nice of every thread: the loop's, io_uring's workers, the sinks' (server_weight.c) */
	struct haul_cpuweight weight;
};

/* server_weight.c: the process's nice, the least any live session asks for (loop thread) */
void ps_server_weigh(struct ps_server *s);

/* server_conn.c */
struct io_uring_sqe *ps_get_sqe(struct ps_server *s);
struct io_uring_sqe *ps_conn_recv_sqe(struct ps_conn *c);
void ps_conn_submit_recv(struct ps_conn *c, size_t max);
int ps_conn_sendv(struct ps_conn *c, unsigned type, const ProtobufCMessage *msg,
		  const struct wire_seg *segs, size_t nsegs, uint32_t plen);
int ps_conn_send(struct ps_conn *c, unsigned type, const ProtobufCMessage *msg, const void *payload,
		 uint32_t plen);
void ps_conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
void ps_conn_timer_start(struct ps_conn *c);
void ps_conn_timer_stop(struct ps_conn *c);
void ps_conn_free(struct ps_conn *c);
void ps_conn_teardown(struct ps_conn *c);
void ps_conn_fail(struct ps_conn *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ps_on_cqe(struct ps_server *s, struct io_uring_cqe *cqe);

/* server_frame.c */
void ps_conn_parse(struct ps_conn *c);

/* server_direct.c */
bool ps_direct_capable(const struct ps_conn *c);
void ps_conn_submit_direct(struct ps_conn *c);
void ps_direct_advance(struct ps_conn *c, size_t n);
void ps_conn_direct_done(struct ps_conn *c);
int ps_conn_direct_start(struct ps_conn *c, const struct wire_hdr *h, const uint8_t *f,
			 size_t avail);

/* server_session.c */
bool ps_session_can_detach(const struct ps_session *x);
void ps_session_detach(struct ps_conn *c);
void ps_server_reap(struct ps_server *s);
void ps_session_fail(struct ps_session *x, int err, const char *reason);
const char *ps_kind_name(Haul__Wire__SessionKind k);
int ps_on_session_open(struct ps_conn *c, ProtobufCMessage *m);
int ps_on_session_join(struct ps_conn *c, ProtobufCMessage *m);

/* server_round.c */
int ps_on_layout(struct ps_conn *c, ProtobufCMessage *m);
int ps_on_round_begin(struct ps_conn *c, ProtobufCMessage *m);
int ps_on_pages(struct ps_conn *c, ProtobufCMessage *m, const uint8_t *payload, size_t len);
int ps_on_round_end(struct ps_conn *c, ProtobufCMessage *m);
int ps_on_state(struct ps_conn *c, const Haul__Wire__State *m, const uint8_t *payload, size_t len);
int ps_on_ghost(struct ps_conn *c, const Haul__Wire__Ghost *m, const uint8_t *payload, size_t len);
int ps_on_restore(struct ps_conn *c, ProtobufCMessage *m);
int ps_on_commit(struct ps_conn *c);
int ps_on_page_req(struct ps_conn *c, ProtobufCMessage *m);

/* server_fetch.c */
void ps_fetch_fail_all(struct ps_session *x, int err);
void ps_session_park(struct ps_session *x);
void ps_detach_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);
void ps_session_resume(struct ps_session *x);
void ps_fasync_cb(struct ev_loop *loop, ev_async *w, int revents);

/* server_lane.c: post-copy's fault lane (SessionJoin.lane). */
int ps_on_lane_join(struct ps_conn *c, struct ps_session *x);
void ps_lane_take(struct ps_conn *c);
/* Retire every lane of @x and wake a thread blocked on one (the session ends).  Not with fmu. */
void ps_lane_shutdown_all(struct ps_session *x);
/* Close and free them: only once no thread can be using one (the sink is closed). */
void ps_lane_free_all(struct ps_session *x);
int ps_on_page_reply(struct ps_conn *c, ProtobufCMessage *m, const uint8_t *payload, size_t len);

/* server_net.c: the network switch's fields (SessionOk.addresses, Restore.lock) */
#define PS_MAX_LOCK_ENDS  65536 /* socket ends one Restore may name: far above any process's */
#define PS_MAX_MOVE_ADDRS 64	/* SessionOpen.move_address entries */
/* Fill @ok's addresses with this host's; free with ps_net_ok_addrs_release(@ok, *@strs). */
int ps_net_ok_addrs(Haul__Wire__SessionOk *ok, char ***strs);
void ps_net_ok_addrs_release(Haul__Wire__SessionOk *ok, char **strs);
/* Restore.lock, checked; *@out malloc'd; -EPROTO with @why for a bad end. */
int ps_net_lock_ends(const Haul__Wire__Restore *r, struct ps_net_end **out, size_t *n, char *why,
		     size_t wl);

#endif
