/*
 * client.c - the page server's client: N authenticated TCP streams from the
 * source.
 *
 * Each stream is a blocking socket with its own sender thread.  The caller's
 * thread hands page batches (up to WIRE_BATCH_PAGES pages) to the streams
 * round-robin; a stream thread encodes its batch (zero pages elided, LZ4
 * when it pays) and sends the frame: LZ4 output from its own buffer, raw
 * pages straight from the caller's buffer (sendmsg with an iovec per run;
 * encrypted streams copy and seal instead).  ps_client_pages() returns once
 * every page it was given has been sent or copied; encoding and sending run
 * in parallel on N threads.
 *
 * Control frames (layout, round begin/end, state, restore, commit, page
 * requests) are sent by the caller's thread after every stream has gone
 * idle, so a socket is only ever used by one thread at a time and the frames
 * on each stream keep their order.  Replies are read by the caller's thread
 * with a timeout (poll).  The server never sends a frame unasked except an
 * Error before it closes, and, inside ps_client_serve() only (post-copy),
 * PAGE_REQs, answered with PAGE_REPLYs on the stream they came on, each
 * stream by its own thread (the caller's serves stream 0, where the target
 * sends its faults' requests, so those never wait behind a push reply
 * blocked in another socket), until the server's Ack(PAGE_REQ) says it has all;
 * that Ack may carry the target's post-copy statistics (Ack.lazy), kept for
 * ps_client_lazy_report().
 *
 * Post-copy recovery: a socket that fails (EOF, reset, a send or receive
 * error or timeout) marks its stream broken; ps_client_serve() then
 * returns that error and ps_client_broken() says so, and
 * ps_client_reconnect() opens every stream again and rejoins the session
 * (SessionJoin.resume), retrying with backoff; the caller serves again.
 * A refusal by the server (an Error frame) is never "broken".
 *
 * A bandwidth cap is a token bucket shared by the streams.
 */
#define LOG_PREFIX "ps-client: "
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"
#include "pageserver/ps_int.h"

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
	uint64_t round_pages, round_bytes;
	uint64_t bytes_sent;
};

struct ps_client {
	struct ps_client_opts o;
	uint64_t session_id, committed_round;
	uint32_t server_caps; /* what stream 0's server offered in Hello */
	int64_t hello_rtt_ns; /* stream 0's Hello round trip (clocks in SessionOpen) */
	struct ps_stream *st;
	unsigned n, next;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* job slots and idleness changed */
	bool in_round;
	uint64_t round;
	struct timespec round_t0;
	uint64_t req_id;
	void *scratch; /* LZ4 decoding of page replies, WIRE_MAX_PAYLOAD bytes, on first use */
	/* post-copy serving (ps_client_serve), under mu */
	bool serve_stop; /* a serving thread finished: the others stop */
	int serve_result;
	bool serve_broken;    /* serve_result is a transport error: ps_client_reconnect may help */
	uint64_t fault_break; /* tests: shut every socket down at this many requests served */
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
	uint64_t serve_replies, serve_bytes;
};

/* ---- raw socket I/O ------------------------------------------------------------------ */

static int send_iov(struct ps_stream *st, struct iovec *iov, int n)
{
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)n};

	while (mh.msg_iovlen) {
		ssize_t w = sendmsg(st->fd, &mh, MSG_NOSIGNAL);

		if (w < 0) {
			if (errno == EINTR)
				continue;
			st->broken = true;
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
		st->bytes_sent += (uint64_t)w;
		while (mh.msg_iovlen && (size_t)w >= mh.msg_iov->iov_len) {
			w -= (ssize_t)mh.msg_iov->iov_len;
			mh.msg_iov++;
			mh.msg_iovlen--;
		}
		if (mh.msg_iovlen) {
			mh.msg_iov->iov_base = (uint8_t *)mh.msg_iov->iov_base + w;
			mh.msg_iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static void bucket_take(struct ps_client *c, size_t bytes)
{
	double rate = (double)c->o.bandwidth, wait = 0;
	struct timespec t;

	if (!c->o.bandwidth)
		return;
	pthread_mutex_lock(&c->mu);
	clock_gettime(CLOCK_MONOTONIC, &t);
	if (c->tb_last.tv_sec) {
		double dt = (double)(t.tv_sec - c->tb_last.tv_sec) +
			    (t.tv_nsec - c->tb_last.tv_nsec) / 1e9;
		double burst = rate / 10 > 1 << 20 ? rate / 10 : 1 << 20;

		c->tokens += dt * rate;
		if (c->tokens > burst)
			c->tokens = burst;
	}
	c->tb_last = t;
	c->tokens -= (double)bytes;
	if (c->tokens < 0)
		wait = -c->tokens / rate;
	pthread_mutex_unlock(&c->mu);
	if (wait > 0) {
		struct timespec ts = {(time_t)wait, (long)((wait - (time_t)wait) * 1e9)};

		nanosleep(&ts, NULL);
	}
}

/*
 * Send one frame: @msg, then the payload: @nsegs pieces, @plen bytes in
 * all.  Unencrypted frames go out with one sendmsg straight from the
 * pieces (no copy of the pages); encrypted ones are assembled in fbuf and
 * sealed.
 */
static int stream_sendv(struct ps_stream *st, unsigned type, const ProtobufCMessage *msg,
			const struct wire_seg *segs, size_t nsegs, uint32_t plen)
{
	size_t mlen = wire_msg_size(msg);
	uint16_t flags = st->encrypt ? WIRE_F_ENCRYPTED : 0;
	struct iovec iov[SEND_IOV_MAX];
	bool gather = st->encrypt || nsegs + 1 > SEND_IOV_MAX;
	struct wire_hdr h;
	ssize_t n;

	if (mlen + WIRE_HDR_LEN + WIRE_TAG_LEN > FRAME_EXTRA)
		return -EMSGSIZE;
	if (st->tx_seq == UINT32_MAX)
		return -EOVERFLOW; /* the AEAD nonce would repeat */
	n = wire_frame_build(st->fbuf, FRAME_EXTRA + WIRE_MAX_PAYLOAD, type, flags, st->tx_seq, msg,
			     NULL, plen);
	if (n < 0)
		return (int)n;
	st->tx_seq++;
	bucket_take(st->cl, (size_t)n);
	if (gather) {
		uint8_t *p = st->fbuf + WIRE_HDR_LEN + mlen;

		for (size_t i = 0; i < nsegs; p += segs[i].len, i++)
			memcpy(p, segs[i].p, segs[i].len);
		if (st->encrypt) {
			wire_hdr_decode(st->fbuf, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h);
			wire_seal(st->skey, WIRE_DIR_C2S, st->fbuf, &h);
			n += WIRE_TAG_LEN;
		}
		iov[0] = (struct iovec){st->fbuf, (size_t)n};
		return send_iov(st, iov, 1);
	}
	iov[0] = (struct iovec){st->fbuf, WIRE_HDR_LEN + mlen};
	for (size_t i = 0; i < nsegs; i++)
		iov[i + 1] = (struct iovec){(void *)segs[i].p, segs[i].len};
	return send_iov(st, iov, (int)nsegs + 1);
}

static int stream_send(struct ps_stream *st, unsigned type, const ProtobufCMessage *msg,
		       const void *payload, uint32_t plen)
{
	struct wire_seg seg = {payload, plen};

	return stream_sendv(st, type, msg, &seg, plen ? 1 : 0, plen);
}

static int recv_full(struct ps_stream *st, void *buf, size_t len, int timeout_ms)
{
	uint8_t *p = buf;

	while (len) {
		struct pollfd pfd = {.fd = st->fd, .events = POLLIN};
		int r = poll(&pfd, 1, timeout_ms);
		ssize_t n;

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) {
			st->broken = true;
			return -ETIMEDOUT;
		}
		n = recv(st->fd, p, len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			st->broken = true;
			return -errno;
		}
		if (n == 0) {
			st->broken = true;
			return -ECONNRESET;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Receive one frame and unpack its message.  An Error frame becomes its
 * errno (logged with the server's reason); another type than @want is
 * -EPROTO.  The payload, if any, is at *@payload (in st->rbuf) until the next
 * receive.
 */
static int stream_recv_t(struct ps_stream *st, unsigned want, int timeout_ms,
			 ProtobufCMessage **out, const uint8_t **payload, size_t *plen,
			 unsigned *got)
{
	uint8_t hdr[WIRE_HDR_LEN];
	struct wire_hdr h;
	size_t body;
	int ret;

	ret = recv_full(st, hdr, sizeof(hdr), timeout_ms);
	if (ret)
		return ret;
	ret = wire_hdr_decode(hdr, WIRE_MAX_MSG, WIRE_MAX_PAYLOAD, &h);
	if (ret) {
		pr_err("server %s (stream %u) sent a bad frame header: %s", st->cl->o.to, st->idx,
		       wire_strerror(ret));
		return ret;
	}
	if (h.seq != st->rx_seq || !!(h.flags & WIRE_F_ENCRYPTED) != st->encrypt) {
		pr_err("server %s (stream %u) sent frame %u out of sequence or protection",
		       st->cl->o.to, st->idx, h.seq);
		return -EPROTO;
	}
	body = wire_frame_len(&h);
	if (body > st->rcap) {
		uint8_t *b = realloc(st->rbuf, body);

		if (!b)
			return -ENOMEM;
		st->rbuf = b;
		st->rcap = body;
	}
	memcpy(st->rbuf, hdr, WIRE_HDR_LEN);
	ret = recv_full(st, st->rbuf + WIRE_HDR_LEN, body - WIRE_HDR_LEN, timeout_ms);
	if (ret)
		return ret;
	if (st->encrypt && wire_open(st->skey, WIRE_DIR_S2C, st->rbuf, &h)) {
		pr_err("server %s (stream %u) sent a frame that does not verify", st->cl->o.to,
		       st->idx);
		return -EBADMSG;
	}
	st->rx_seq++;
	ret = wire_msg_unpack(h.type, st->rbuf + WIRE_HDR_LEN, h.msg_len, out);
	if (ret) {
		pr_err("server %s sent a malformed %s", st->cl->o.to, wire_type_name(h.type));
		return ret;
	}
	if (h.type == WIRE_ERROR) {
		Haul__Wire__Error *e = (Haul__Wire__Error *)*out;

		ret = e->err > 0 ? -e->err : -EPROTO;
		pr_err("server %s refused: %s", st->cl->o.to, e->reason ? e->reason : "no reason");
		wire_msg_free(*out);
		*out = NULL;
		return ret;
	}
	if (got)
		*got = h.type;
	if (want && h.type != want) {
		pr_err("server %s sent %s where %s was due", st->cl->o.to, wire_type_name(h.type),
		       wire_type_name(want));
		wire_msg_free(*out);
		*out = NULL;
		return -EPROTO;
	}
	if (payload) {
		*payload = st->rbuf + WIRE_HDR_LEN + h.msg_len;
		*plen = h.payload_len;
	}
	return 0;
}

static int stream_recv(struct ps_stream *st, unsigned want, int timeout_ms, ProtobufCMessage **out,
		       const uint8_t **payload, size_t *plen)
{
	return stream_recv_t(st, want, timeout_ms, out, payload, plen, NULL);
}

static int reply_timeout(const struct ps_client *c)
{
	return c->o.timeout_ms > 0 ? c->o.timeout_ms : PS_REPLY_TIMEOUT_MS;
}

/* Wait for an Ack of @type on @st. */
static int stream_ack(struct ps_stream *st, unsigned type, Haul__Wire__Ack *copy)
{
	ProtobufCMessage *m;
	int ret = stream_recv(st, WIRE_ACK, reply_timeout(st->cl), &m, NULL, NULL);
	Haul__Wire__Ack *a = (Haul__Wire__Ack *)m;

	if (ret)
		return ret;
	if (a->type != type) {
		pr_err("server %s acknowledged %s where %s was due", st->cl->o.to,
		       wire_type_name(a->type), wire_type_name(type));
		ret = -EPROTO;
	} else if (copy) {
		*copy = *a;
	}
	wire_msg_free(m);
	return ret;
}

/*
 * After a send failed with @err: if the server left an Error frame on the
 * socket, log its reason (stream_recv does) and return its errno.
 */
static int stream_why(struct ps_stream *st, int err)
{
	ProtobufCMessage *m = NULL;
	int ret = stream_recv(st, WIRE_ERROR, 100, &m, NULL, NULL);

	wire_msg_free(m);
	return ret < 0 && ret != -ETIMEDOUT && ret != -ECONNRESET && ret != -EPROTO ? ret : err;
}

/* ---- sender threads ------------------------------------------------------------------- */

static bool zero_bit(const uint64_t *bm, uint64_t i)
{
	return bm && (bm[i / 64] >> (i % 64)) & 1;
}

/* Encode @npages pages at @addr from @data, zero bits from @zbase on, into st->enc. */
static int encode_range(struct ps_stream *st, uint64_t addr, const uint8_t *data, uint64_t zbase,
			uint32_t npages)
{
	uint32_t i = 0;

	while (i < npages) {
		uint32_t n = 1;
		bool z = zero_bit(st->job_zero, zbase + i);
		int r;

		while (i + n < npages && zero_bit(st->job_zero, zbase + i + n) == z)
			n++;
		if (z)
			r = wire_pages_enc_zero(&st->enc, addr + (uint64_t)i * HAUL_PAGE_SIZE, n);
		else
			r = wire_pages_enc_add(&st->enc, addr + (uint64_t)i * HAUL_PAGE_SIZE,
					       data + (size_t)i * HAUL_PAGE_SIZE, n);
		if (r < 0)
			return r;
		if ((uint32_t)r != n)
			return -EMSGSIZE; /* a batch always fits: WIRE_BATCH_PAGES ranges */
		i += n;
	}
	return 0;
}

/* Encode the job's pages into st->enc.  Only reads the caller's data. */
static int encode_job(struct ps_stream *st)
{
	uint64_t off = 0;
	int ret = 0;

	wire_pages_enc_reset(&st->enc);
	if (!st->job_r)
		return encode_range(st, st->job_addr, st->job_data, st->job_zero_base, st->job_n);
	for (size_t k = 0; k < st->job_nr && !ret; k++) {
		ret = encode_range(st, st->job_r[k].addr, st->job_data + off * HAUL_PAGE_SIZE,
				   st->job_zero_base + off, (uint32_t)st->job_r[k].npages);
		off += st->job_r[k].npages;
	}
	return ret;
}

static void *stream_thread(void *arg)
{
	struct ps_stream *st = arg;
	struct ps_client *c = st->cl;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		Haul__Wire__Pages m;
		uint64_t p0, z0, l0;
		uint32_t njob;
		int ret;

		while (!st->has_job && !st->quit)
			pthread_cond_wait(&c->cv, &c->mu);
		if (st->quit)
			break;
		st->busy = true;
		/* Once has_job drops, the caller may queue the next job over job_n. */
		njob = st->job_n;
		pthread_mutex_unlock(&c->mu);

		p0 = st->enc.pages;
		z0 = st->enc.zero_pages;
		l0 = st->enc.lz4_pages;
		ret = encode_job(st);

		pthread_mutex_lock(&c->mu);
		/* Copied: the caller's data is no longer needed.  By reference: after the send. */
		if (!st->enc.ref)
			st->has_job = false;
		c->pages += st->enc.pages - p0;
		c->zero_pages += st->enc.zero_pages - z0;
		c->lz4_pages += st->enc.lz4_pages - l0;
		c->payload_bytes += (uint64_t)njob * HAUL_PAGE_SIZE;
		c->round_payload += (uint64_t)njob * HAUL_PAGE_SIZE;
		pthread_cond_broadcast(&c->cv);
		pthread_mutex_unlock(&c->mu);

		if (!ret) {
			wire_pages_enc_msg(&st->enc, &m);
			ret = stream_sendv(st, WIRE_PAGES, &m.base, st->enc.segs, st->enc.nsegs,
					   (uint32_t)st->enc.len);
			st->round_pages += njob;
			st->round_bytes += st->enc.len;
		}

		/* A server that closes on us says why first: read its Error for the log. */
		if (ret == -EPIPE || ret == -ECONNRESET)
			ret = stream_why(st, ret);

		pthread_mutex_lock(&c->mu);
		if (st->enc.ref)
			st->has_job = false;
		if (ret && !st->err) {
			pr_err_r(ret, "cannot send pages to %s on stream %u", c->o.to, st->idx);
			st->err = ret;
		}
		st->busy = false;
		pthread_cond_broadcast(&c->cv);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* Wait until every stream is idle; the first stream error, if any. */
static int client_flush(struct ps_client *c)
{
	int err = 0;

	pthread_mutex_lock(&c->mu);
	for (unsigned i = 0; i < c->n; i++) {
		struct ps_stream *st = &c->st[i];

		while (st->has_job || st->busy)
			pthread_cond_wait(&c->cv, &c->mu);
		if (st->err && !err)
			err = st->err;
	}
	pthread_mutex_unlock(&c->mu);
	return err;
}

/* ---- connecting -------------------------------------------------------------------------- */

static int stream_connect(struct ps_client *c, struct ps_stream *st,
			  const struct sockaddr_storage *ss, socklen_t len)
{
	int tmo = reply_timeout(c), one = 1;
	struct timeval tv = {tmo / 1000, (tmo % 1000) * 1000};
	int buf = 4 << 20;

	st->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (st->fd < 0)
		return -errno;
	setsockopt(st->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(st->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(st->fd, SOL_SOCKET, SO_SNDBUF, &buf, sizeof(buf));
	if (connect(st->fd, (const struct sockaddr *)ss, len)) {
		int ret = errno == EINPROGRESS ? -ETIMEDOUT : -errno;

		pr_err_r(ret, "cannot connect to page server %s", c->o.to);
		return ret;
	}
	return 0;
}

static int64_t clock_ns(clockid_t id)
{
	struct timespec t;

	clock_gettime(id, &t);
	return t.tv_sec * 1000000000LL + t.tv_nsec;
}

/*
 * The process's clocks for SessionOpen: ours plus its time-namespace
 * offsets, as they will read when the open arrives (half the Hello round
 * trip from now: the one-way time, taken as symmetric), and our boot_id.
 */
static void session_clocks(const struct ps_client *c, Haul__Wire__SessionOpen *so,
			   uint8_t boot_id[16])
{
	char text[64];
	unsigned b[16];
	FILE *f;

	so->has_clock_monotonic_ns = so->has_clock_boottime_ns = true;
	so->clock_monotonic_ns =
		clock_ns(CLOCK_MONOTONIC) + c->o.timens_monotonic_ns + c->hello_rtt_ns / 2;
	so->clock_boottime_ns =
		clock_ns(CLOCK_BOOTTIME) + c->o.timens_boottime_ns + c->hello_rtt_ns / 2;
	so->has_timens_monotonic_ns = so->has_timens_boottime_ns = true;
	so->timens_monotonic_ns = c->o.timens_monotonic_ns;
	so->timens_boottime_ns = c->o.timens_boottime_ns;
	f = fopen("/proc/sys/kernel/random/boot_id", "re");
	if (!f)
		return;
	/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" */
	if (fgets(text, sizeof(text), f) &&
	    sscanf(text, "%2x%2x%2x%2x-%2x%2x-%2x%2x-%2x%2x-%2x%2x%2x%2x%2x%2x", &b[0], &b[1],
		   &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8], &b[9], &b[10], &b[11], &b[12],
		   &b[13], &b[14], &b[15]) == 16) {
		for (int i = 0; i < 16; i++)
			boot_id[i] = (uint8_t)b[i];
		so->has_boot_id = true;
		so->boot_id.data = boot_id;
		so->boot_id.len = 16;
	}
	fclose(f);
}

/* Hello and the mutual challenge-response. */
static int stream_auth(struct ps_client *c, struct ps_stream *st)
{
	Haul__Wire__Hello hello = HAUL__WIRE__HELLO__INIT, *sh;
	Haul__Wire__Auth auth = HAUL__WIRE__AUTH__INIT, *sa;
	uint8_t cnonce[WIRE_NONCE_LEN], snonce[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
	ProtobufCMessage *m;
	int ret;

	randombytes_buf(cnonce, sizeof(cnonce));
	hello.version = WIRE_VERSION;
	hello.caps = PS_CAPS;
	hello.nonce.data = cnonce;
	hello.nonce.len = sizeof(cnonce);
	hello.name = "haul client";
	{
		int64_t t0 = clock_ns(CLOCK_MONOTONIC);

		ret = stream_send(st, WIRE_HELLO, &hello.base, NULL, 0);
		if (!ret)
			ret = stream_recv(st, WIRE_HELLO, reply_timeout(c), &m, NULL, NULL);
		if (!ret && st->idx == 0)
			c->hello_rtt_ns = clock_ns(CLOCK_MONOTONIC) - t0;
	}
	if (ret) {
		pr_err_r(ret, "no hello from page server %s", c->o.to);
		return ret;
	}
	sh = (Haul__Wire__Hello *)m;
	if (sh->version != WIRE_VERSION || sh->nonce.len != WIRE_NONCE_LEN) {
		pr_err("page server %s speaks protocol version %u; this client speaks %u", c->o.to,
		       sh->version, WIRE_VERSION);
		wire_msg_free(m);
		return -EPROTONOSUPPORT;
	}
	memcpy(snonce, sh->nonce.data, WIRE_NONCE_LEN);
	if (st == &c->st[0])
		c->server_caps = sh->caps;
	wire_msg_free(m);

	wire_auth_mac(c->o.key, true, cnonce, snonce, mac);
	auth.mac.data = mac;
	auth.mac.len = sizeof(mac);
	auth.has_encrypt = true;
	auth.encrypt = c->o.encrypt;
	ret = stream_send(st, WIRE_AUTH, &auth.base, NULL, 0);
	if (!ret)
		ret = stream_recv(st, WIRE_AUTH, reply_timeout(c), &m, NULL, NULL);
	if (ret) {
		if (ret == -ECONNRESET)
			pr_err("page server %s refused authentication: are both sides using the "
			       "same key file?",
			       c->o.to);
		return ret == -ECONNRESET ? -EACCES : ret;
	}
	sa = (Haul__Wire__Auth *)m;
	if (!wire_auth_verify(c->o.key, false, cnonce, snonce, sa->mac.data, sa->mac.len)) {
		pr_err("page server %s failed to prove it holds the key; not trusting it", c->o.to);
		wire_msg_free(m);
		return -EACCES;
	}
	if ((sa->has_encrypt && sa->encrypt) != c->o.encrypt) {
		pr_err("page server %s did not agree to encryption", c->o.to);
		wire_msg_free(m);
		return -EPROTO;
	}
	wire_msg_free(m);
	if (c->o.encrypt) {
		wire_session_key(c->o.key, cnonce, snonce, st->skey);
		st->encrypt = true;
	}
	return 0;
}

/* Open the session (stream 0) or join it; @resume: rejoin a detached one, stream 0 too. */
static int stream_session(struct ps_client *c, struct ps_stream *st, bool resume)
{
	Haul__Wire__SessionOpen so = HAUL__WIRE__SESSION_OPEN__INIT;
	Haul__Wire__SessionJoin sj = HAUL__WIRE__SESSION_JOIN__INIT;
	Haul__Wire__SessionOk *ok;
	uint8_t boot_id[16];
	ProtobufCMessage *m;
	int ret;

	if (st->idx == 0 && !resume) {
		if (c->o.clocks)
			session_clocks(c, &so, boot_id);
		so.session_id = c->session_id;
		so.kind = (Haul__Wire__SessionKind)c->o.kind;
		so.pid = c->o.pid;
		so.comm = (char *)(c->o.comm ? c->o.comm : "");
		so.nstreams = c->n;
		so.has_lazy = true;
		so.lazy = c->o.lazy;
		ret = stream_send(st, WIRE_SESSION_OPEN, &so.base, NULL, 0);
	} else {
		sj.session_id = c->session_id;
		sj.stream = st->idx;
		sj.has_resume = resume;
		sj.resume = resume;
		ret = stream_send(st, WIRE_SESSION_JOIN, &sj.base, NULL, 0);
	}
	if (!ret)
		ret = stream_recv(st, WIRE_SESSION_OK, reply_timeout(c), &m, NULL, NULL);
	if (ret)
		return ret;
	ok = (Haul__Wire__SessionOk *)m;
	if (ok->session_id != c->session_id)
		ret = -EPROTO;
	if (st->idx == 0 && !resume)
		c->committed_round = ok->committed_round;
	wire_msg_free(m);
	return ret;
}

int ps_client_new(const struct ps_client_opts *o, struct ps_client **out)
{
	struct sockaddr_storage ss;
	socklen_t len;
	struct ps_client *c;
	int ret;

	if (o->nstreams < 1 || o->nstreams > PS_MAX_STREAMS || o->pid <= 0)
		return -EINVAL;
	if (sodium_init() < 0)
		return -EIO;
	ret = ps_addr_parse(o->to, false, &ss, &len);
	if (ret) {
		pr_err("cannot resolve page server address '%s'; use HOST:PORT", o->to);
		return ret;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->o = *o;
	c->n = o->kind == PS_SESSION_FETCH ? 1 : o->nstreams;
	c->session_id = o->session_id;
	while (!c->session_id)
		randombytes_buf(&c->session_id, sizeof(c->session_id));
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->st = calloc(c->n, sizeof(*c->st));
	if (!c->st) {
		ret = -ENOMEM;
		goto fail;
	}
	for (unsigned i = 0; i < c->n; i++) {
		struct ps_stream *st = &c->st[i];

		st->cl = c;
		st->idx = i;
		st->fd = -1;
	}
	for (unsigned i = 0; i < c->n; i++) {
		struct ps_stream *st = &c->st[i];

		st->fbuf = malloc(FRAME_EXTRA + WIRE_MAX_PAYLOAD);
		if (!st->fbuf) {
			ret = -ENOMEM;
			goto fail;
		}
		ret = wire_pages_enc_init(&st->enc, WIRE_BATCH_PAGES + 1,
					  (enum wire_compress)o->compress);
		/* Unencrypted raw pages go from the caller's buffer to the socket. */
		st->enc.ref = !o->encrypt;
		if (!ret)
			ret = stream_connect(c, st, &ss, len);
		if (!ret)
			ret = stream_auth(c, st);
		if (!ret)
			ret = stream_session(c, st, false);
		if (ret)
			goto fail;
		ret = -pthread_create(&st->thr, NULL, stream_thread, st);
		if (ret)
			goto fail;
		st->thr_started = true;
	}
	*out = c;
	return 0;
fail:
	ps_client_free(c);
	return ret;
}

void ps_client_free(struct ps_client *c)
{
	if (!c)
		return;
	pthread_mutex_lock(&c->mu);
	for (unsigned i = 0; c->st && i < c->n; i++)
		c->st[i].quit = true;
	pthread_cond_broadcast(&c->cv);
	pthread_mutex_unlock(&c->mu);
	for (unsigned i = 0; c->st && i < c->n; i++) {
		struct ps_stream *st = &c->st[i];

		if (st->thr_started)
			pthread_join(st->thr, NULL);
		if (st->fd >= 0)
			close(st->fd);
		wire_pages_enc_release(&st->enc);
		free(st->fbuf);
		free(st->rbuf);
		sodium_memzero(st->skey, sizeof(st->skey));
	}
	free(c->st);
	free(c->scratch);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	sodium_memzero(c->o.key, sizeof(c->o.key));
	free(c);
}

/* ---- the session ---------------------------------------------------------------------- */

int ps_client_layout(struct ps_client *c, const struct haul_layout *l)
{
	Haul__Wire__Vma *vmas = calloc(l->n ? l->n : 1, sizeof(*vmas));
	Haul__Wire__Vma **vmap = calloc(l->n ? l->n : 1, sizeof(*vmap));
	Haul__Wire__Layout m;
	int ret = client_flush(c);

	if (!vmas || !vmap)
		ret = -ENOMEM;
	if (!ret) {
		wire_layout_to_msg(l, vmas, vmap, &m);
		if (wire_msg_size(&m.base) > WIRE_MAX_MSG) {
			pr_err("layout of pid %d has %zu VMAs: over the %u-byte message limit",
			       c->o.pid, l->n, WIRE_MAX_MSG);
			ret = -EMSGSIZE;
		}
	}
	if (!ret)
		ret = stream_send(&c->st[0], WIRE_LAYOUT, &m.base, NULL, 0);
	if (!ret)
		ret = stream_ack(&c->st[0], WIRE_LAYOUT, NULL);
	free(vmas);
	free(vmap);
	return ret;
}

int ps_client_round_begin(struct ps_client *c, uint64_t round)
{
	Haul__Wire__RoundBegin rb = HAUL__WIRE__ROUND_BEGIN__INIT;
	int ret = client_flush(c);

	if (ret)
		return ret;
	if (c->in_round) {
		pr_err("round %llu begun inside round %llu", (unsigned long long)round,
		       (unsigned long long)c->round);
		return -EINVAL;
	}
	rb.round = round;
	for (unsigned i = 0; i < c->n && !ret; i++) {
		c->st[i].round_pages = c->st[i].round_bytes = 0;
		ret = stream_send(&c->st[i], WIRE_ROUND_BEGIN, &rb.base, NULL, 0);
	}
	if (ret)
		return ret;
	c->in_round = true;
	c->round = round;
	c->round_payload = 0;
	clock_gettime(CLOCK_MONOTONIC, &c->round_t0);
	return 0;
}

int ps_client_pages(struct ps_client *c, uint64_t addr, const void *data, uint32_t npages,
		    const uint64_t *zero)
{
	const uint8_t *p = data;
	int err = 0;

	if (!c->in_round)
		return -EINVAL;
	if (addr & (HAUL_PAGE_SIZE - 1))
		return -EINVAL;
	pthread_mutex_lock(&c->mu);
	for (uint32_t off = 0; off < npages && !err;) {
		uint32_t n = npages - off < WIRE_BATCH_PAGES ? npages - off : WIRE_BATCH_PAGES;
		struct ps_stream *st = &c->st[c->next];

		while (st->has_job && !st->err)
			pthread_cond_wait(&c->cv, &c->mu);
		if (st->err) {
			err = st->err;
			break;
		}
		st->job_addr = addr + (uint64_t)off * HAUL_PAGE_SIZE;
		st->job_data = p + (size_t)off * HAUL_PAGE_SIZE;
		st->job_zero = zero;
		st->job_zero_base = off;
		st->job_n = n;
		st->job_r = NULL;
		st->has_job = true;
		pthread_cond_broadcast(&c->cv);
		c->next = (c->next + 1) % c->n;
		off += n;
	}
	/* Return only once every stream has copied what it took from @data. */
	for (unsigned i = 0; i < c->n; i++)
		while (c->st[i].has_job)
			pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
	return err;
}

int ps_client_pages_v(struct ps_client *c, const struct ps_range *r, size_t n, const void *data,
		      const uint64_t *zero)
{
	struct ps_range *piece;
	size_t np = 0, k = 0;
	uint64_t off = 0;
	int err = 0;

	if (!c->in_round)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		if ((r[i].addr & (HAUL_PAGE_SIZE - 1)) || !r[i].npages)
			return -EINVAL;
		np += (r[i].npages + WIRE_BATCH_PAGES - 1) / WIRE_BATCH_PAGES;
	}
	piece = malloc((np ? np : 1) * sizeof(*piece));
	if (!piece)
		return -ENOMEM;
	/* Cut ranges to fit a batch; a job is a run of whole pieces of <= WIRE_BATCH_PAGES pages. */
	np = 0;
	for (size_t i = 0; i < n; i++)
		for (uint64_t o = 0; o < r[i].npages; o += WIRE_BATCH_PAGES) {
			uint64_t left = r[i].npages - o;

			piece[np].addr = r[i].addr + o * HAUL_PAGE_SIZE;
			piece[np++].npages = left < WIRE_BATCH_PAGES ? left : WIRE_BATCH_PAGES;
		}
	pthread_mutex_lock(&c->mu);
	while (k < np && !err) {
		struct ps_stream *st = &c->st[c->next];
		size_t first = k;
		uint64_t pages = 0;

		while (k < np && pages + piece[k].npages <= WIRE_BATCH_PAGES)
			pages += piece[k++].npages;
		while (st->has_job && !st->err)
			pthread_cond_wait(&c->cv, &c->mu);
		if (st->err) {
			err = st->err;
			break;
		}
		st->job_addr = piece[first].addr;
		st->job_data = (const uint8_t *)data + off * HAUL_PAGE_SIZE;
		st->job_zero = zero;
		st->job_zero_base = off;
		st->job_n = (uint32_t)pages;
		st->job_r = &piece[first];
		st->job_nr = k - first;
		st->has_job = true;
		pthread_cond_broadcast(&c->cv);
		c->next = (c->next + 1) % c->n;
		off += pages;
	}
	/* Return only once every stream has copied what it took (and the pieces). */
	for (unsigned i = 0; i < c->n; i++)
		while (c->st[i].has_job)
			pthread_cond_wait(&c->cv, &c->mu);
	pthread_mutex_unlock(&c->mu);
	free(piece);
	return err;
}

int ps_client_round_end(struct ps_client *c, uint64_t round)
{
	Haul__Wire__RoundEnd re = HAUL__WIRE__ROUND_END__INIT;
	int ret = client_flush(c);
	double dt;

	if (ret)
		return ret;
	if (!c->in_round || round != c->round)
		return -EINVAL;
	re.round = round;
	re.has_pages = re.has_bytes = true;
	for (unsigned i = 0; i < c->n && !ret; i++) {
		re.pages = c->st[i].round_pages;
		re.bytes = c->st[i].round_bytes;
		ret = stream_send(&c->st[i], WIRE_ROUND_END, &re.base, NULL, 0);
	}
	for (unsigned i = 0; i < c->n && !ret; i++) {
		Haul__Wire__Ack a;

		ret = stream_ack(&c->st[i], WIRE_ROUND_END, &a);
		if (!ret && a.value != round) {
			pr_err("page server %s acknowledged round %llu, not %llu", c->o.to,
			       (unsigned long long)a.value, (unsigned long long)round);
			ret = -EPROTO;
		}
	}
	if (ret)
		return ret;
	c->in_round = false;
	{
		struct timespec t;

		clock_gettime(CLOCK_MONOTONIC, &t);
		dt = (double)(t.tv_sec - c->round_t0.tv_sec) +
		     (t.tv_nsec - c->round_t0.tv_nsec) / 1e9;
	}
	c->last_round_mbps = dt > 0 ? c->round_payload / dt / 1e6 : 0;
	return 0;
}

/* Send the State message @s with @blob on stream 0 and wait for its ACK. */
static int state_send(struct ps_client *c, Haul__Wire__State *s, const void *blob, size_t len)
{
	int ret = client_flush(c);

	if (ret)
		return ret;
	if (len > WIRE_MAX_PAYLOAD) {
		pr_err("state of pid %d is %zu bytes: over the %u-byte frame limit", c->o.pid, len,
		       WIRE_MAX_PAYLOAD);
		return -EMSGSIZE;
	}
	s->has_len = true;
	s->len = len;
	ret = stream_send(&c->st[0], WIRE_STATE, &s->base, blob, (uint32_t)len);
	if (!ret)
		ret = stream_ack(&c->st[0], WIRE_STATE, NULL);
	return ret;
}

int ps_client_state(struct ps_client *c, const void *blob, size_t len)
{
	return ps_client_state_stale(c, blob, len, NULL, 0);
}

int ps_client_state_stale(struct ps_client *c, const void *blob, size_t len,
			  const struct ps_range *stale, size_t n)
{
	Haul__Wire__State s = HAUL__WIRE__STATE__INIT;
	uint64_t *pairs = NULL;
	int ret;

	if (n > PS_MAX_STALE_RANGES)
		return -E2BIG;
	if (n && !(c->server_caps & HAUL__WIRE__CAP__CAP_STALE)) {
		pr_err("page server %s cannot take stale pages (an older haul): use --postcopy "
		       "or pre-copy with it",
		       c->o.to);
		return -EOPNOTSUPP;
	}
	if (n) {
		pairs = malloc(2 * n * sizeof(*pairs));
		if (!pairs)
			return -ENOMEM;
		for (size_t i = 0; i < n; i++) {
			pairs[2 * i] = stale[i].addr;
			pairs[2 * i + 1] = stale[i].npages;
		}
		s.n_stale = 2 * n;
		s.stale = pairs;
	}
	ret = state_send(c, &s, blob, len);
	free(pairs);
	return ret;
}

int ps_client_restore(struct ps_client *c, struct ps_restore_result *res)
{
	Haul__Wire__Restore r = HAUL__WIRE__RESTORE__INIT;
	Haul__Wire__RestoreReply *rr;
	ProtobufCMessage *m;
	int ret = client_flush(c);

	memset(res, 0, sizeof(*res));
	if (!ret)
		ret = stream_send(&c->st[0], WIRE_RESTORE, &r.base, NULL, 0);
	if (!ret)
		ret = stream_recv(&c->st[0], WIRE_RESTORE_REPLY, reply_timeout(c), &m, NULL, NULL);
	if (ret)
		return ret;
	rr = (Haul__Wire__RestoreReply *)m;
	res->pid = rr->pid;
	res->err = rr->err;
	snprintf(res->msg, sizeof(res->msg), "%s", rr->msg ? rr->msg : "");
	wire_msg_free(m);
	return 0;
}

int ps_client_commit(struct ps_client *c)
{
	Haul__Wire__Commit cm = HAUL__WIRE__COMMIT__INIT;
	int ret = client_flush(c);

	if (!ret)
		ret = stream_send(&c->st[0], WIRE_COMMIT, &cm.base, NULL, 0);
	if (!ret)
		ret = stream_ack(&c->st[0], WIRE_COMMIT, NULL);
	return ret;
}

struct fetch_ctx {
	uint64_t addr;
	uint32_t npages;
	uint8_t *buf;
	uint32_t got;
};

static int fetch_put(void *arg, uint64_t addr, const void *data, uint32_t n)
{
	struct fetch_ctx *f = arg;
	uint64_t end = f->addr + (uint64_t)f->npages * HAUL_PAGE_SIZE;

	if (addr < f->addr || addr + (uint64_t)n * HAUL_PAGE_SIZE > end)
		return -ERANGE;
	if (data)
		memcpy(f->buf + (addr - f->addr), data, (size_t)n * HAUL_PAGE_SIZE);
	else
		memset(f->buf + (addr - f->addr), 0, (size_t)n * HAUL_PAGE_SIZE);
	f->got += n;
	return 0;
}

int ps_client_fetch(struct ps_client *c, uint64_t addr, uint32_t npages, void *buf)
{
	Haul__Wire__PageReq q = HAUL__WIRE__PAGE_REQ__INIT;
	struct fetch_ctx f = {addr, npages, buf, 0};
	struct ps_stream *st = &c->st[0];
	const uint8_t *payload;
	ProtobufCMessage *m;
	size_t plen;
	void *scratch;
	int64_t n;
	int ret;

	if (npages == 0 || npages > WIRE_MAX_REQ_PAGES || (addr & (HAUL_PAGE_SIZE - 1)))
		return -EINVAL;
	ret = client_flush(c);
	if (ret)
		return ret;
	q.req_id = ++c->req_id;
	q.addr = addr;
	q.npages = npages;
	ret = stream_send(st, WIRE_PAGE_REQ, &q.base, NULL, 0);
	if (!ret)
		ret = stream_recv(st, WIRE_PAGE_REPLY, reply_timeout(c), &m, &payload, &plen);
	if (ret)
		return ret;
	if (!c->scratch)
		c->scratch = malloc(WIRE_MAX_PAYLOAD);
	scratch = c->scratch;
	if (!scratch) {
		wire_msg_free(m);
		return -ENOMEM;
	}
	Haul__Wire__Pages *pm = (Haul__Wire__Pages *)m;
	if (pm->req_id != q.req_id) {
		n = -EPROTO;
	} else {
		memset(buf, 0, (size_t)npages * HAUL_PAGE_SIZE);
		n = wire_pages_decode(pm, payload, plen, scratch, fetch_put, &f);
	}
	wire_msg_free(m);
	if (n < 0 || f.got != npages) {
		pr_err("page server %s answered %#llx+%u pages with a bad reply", c->o.to,
		       (unsigned long long)addr, npages);
		return n < 0 ? (int)n : -EPROTO;
	}
	return 0;
}

uint64_t ps_client_committed_round(const struct ps_client *c)
{
	return c->committed_round;
}

void ps_client_stats(const struct ps_client *c, struct ps_client_stats *st)
{
	struct ps_client *m = (struct ps_client *)c;

	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&m->mu);
	for (unsigned i = 0; i < c->n; i++)
		st->bytes_sent += c->st[i].bytes_sent;
	st->pages_sent = c->pages;
	st->zero_pages = c->zero_pages;
	st->lz4_pages = c->lz4_pages;
	st->payload_bytes = c->payload_bytes;
	st->last_round_mbps = c->last_round_mbps;
	st->serve_replies = c->serve_replies;
	st->serve_bytes = c->serve_bytes;
	st->reconnects = c->reconnects;
	pthread_mutex_unlock(&m->mu);
}

/* ---- post-copy: serving the target's page requests ------------------------------------- */

/* One serving thread: its stream, its read buffer and encoder. */
struct serve_ctx {
	struct ps_client *c;
	struct ps_stream *st;
	ps_serve_fn fn;
	void *arg;
	int idle_ms;
	uint8_t *buf;
	struct wire_pages_enc enc;
	bool enc_ok;
	pthread_t thr;
};

static int serve_one(struct serve_ctx *x, const Haul__Wire__PageReq *q)
{
	struct ps_client *c = x->c;
	struct ps_stream *st = x->st;
	Haul__Wire__Pages rep;
	uint64_t sent0 = st->bytes_sent;
	int ret = 0;

	if (!x->buf) {
		x->buf = malloc(WIRE_MAX_PAYLOAD);
		if (!x->buf)
			return -ENOMEM;
		ret = wire_pages_enc_init(&x->enc, WIRE_MAX_REQ_PAGES + 1,
					  (enum wire_compress)c->o.compress);
		if (ret)
			return ret;
		x->enc_ok = true;
		x->enc.ref = !c->o.encrypt;
	}
	wire_pages_enc_reset(&x->enc);
	if (q->npages == 0 || q->npages > WIRE_MAX_REQ_PAGES || (q->addr & (HAUL_PAGE_SIZE - 1))) {
		pr_err("page server %s asked for %u pages at %#llx", c->o.to, q->npages,
		       (unsigned long long)q->addr);
		ret = -EPROTO;
	} else {
		ret = x->fn(x->arg, q->addr, q->npages, x->buf);
		if (ret)
			pr_warn_r(ret, "cannot read %u pages at %#llx for the target; it gets none",
				  q->npages, (unsigned long long)q->addr);
		else if (wire_pages_enc_add(&x->enc, q->addr, x->buf, q->npages) != (int)q->npages)
			ret = -EMSGSIZE;
	}
	if (ret == -EPROTO)
		return ret;
	/* On failure an empty reply: the target's request fails with -EIO, the session goes on. */
	if (ret)
		wire_pages_enc_reset(&x->enc);
	wire_pages_enc_msg(&x->enc, &rep);
	rep.has_req_id = true;
	rep.req_id = q->req_id;
	ret = stream_sendv(st, WIRE_PAGE_REPLY, &rep.base, x->enc.segs, x->enc.nsegs,
			   (uint32_t)x->enc.len);
	/* the stream threads are idle while serving: only serving threads add to bytes_sent */
	pthread_mutex_lock(&c->mu);
	c->serve_replies += !ret;
	c->serve_bytes += st->bytes_sent - sent0;
	c->serve_reqs++;
	c->serve_last_ns = (uint64_t)clock_ns(CLOCK_MONOTONIC);
	if (c->fault_break && c->serve_reqs >= c->fault_break) {
		/* fault injection: break every connection as a reset would */
		c->fault_break = 0;
		pr_warn("fault injection: shutting down every connection to %s after %llu requests",
			c->o.to, (unsigned long long)c->serve_reqs);
		for (unsigned i = 0; i < c->n; i++)
			shutdown(c->st[i].fd, SHUT_RDWR);
	}
	pthread_mutex_unlock(&c->mu);
	return ret;
}

/*
 * The first thread to finish sets the result and stops the others; @st:
 * the stream that failed, if one did (its socket broke, or not).
 */
static void serve_finish(struct ps_client *c, const struct ps_stream *st, int ret)
{
	uint64_t one = 1;

	pthread_mutex_lock(&c->mu);
	if (!c->serve_stop) {
		c->serve_stop = true;
		c->serve_result = ret;
		c->serve_broken = ret && st && st->broken;
		if (write(c->serve_efd, &one, sizeof(one)) < 0)
			pr_debug("cannot wake the serving threads: %s", strerror(errno));
	}
	pthread_mutex_unlock(&c->mu);
}

static bool serve_stopped(struct ps_client *c)
{
	bool stop;

	pthread_mutex_lock(&c->mu);
	stop = c->serve_stop;
	pthread_mutex_unlock(&c->mu);
	return stop;
}

/* Serve one stream until the target has all, any thread failed, or nothing was asked. */
static void *serve_stream(void *arg)
{
	struct serve_ctx *x = arg;
	struct ps_client *c = x->c;
	int slice = x->idle_ms > 0 && x->idle_ms < 100 ? x->idle_ms : 100;

	for (;;) {
		struct pollfd pfd[2] = {{.fd = x->st->fd, .events = POLLIN},
					{.fd = c->serve_efd, .events = POLLIN}};
		ProtobufCMessage *m;
		unsigned type = 0;
		uint64_t last;
		int r, ret;

		r = poll(pfd, 2, slice);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			serve_finish(c, NULL, -errno);
			break;
		}
		if (serve_stopped(c))
			break;
		if (!(pfd[0].revents & (POLLIN | POLLHUP | POLLERR))) {
			pthread_mutex_lock(&c->mu);
			last = c->serve_last_ns;
			pthread_mutex_unlock(&c->mu);
			if (x->idle_ms > 0 && (uint64_t)clock_ns(CLOCK_MONOTONIC) - last >
						      (uint64_t)x->idle_ms * 1000000ull) {
				pr_err("page server %s asked for no page in %d ms; giving up serving",
				       c->o.to, x->idle_ms);
				serve_finish(c, NULL, -ETIMEDOUT);
				break;
			}
			continue;
		}
		ret = stream_recv_t(x->st, 0, reply_timeout(c), &m, NULL, NULL, &type);
		if (ret) {
			serve_finish(c, x->st, ret);
			break;
		}
		if (type == WIRE_PAGE_REQ) {
			ret = serve_one(x, (Haul__Wire__PageReq *)m);
		} else if (type == WIRE_ACK && ((Haul__Wire__Ack *)m)->type == WIRE_PAGE_REQ) {
			const Haul__Wire__Ack *a = (Haul__Wire__Ack *)m;

			pthread_mutex_lock(&c->mu);
			pr_info("target has every page of pid %d (%llu requests served)", c->o.pid,
				(unsigned long long)c->serve_reqs);
			/* an older target sends no report: ps_client_lazy_report says so */
			c->has_lazy_report = a->lazy != NULL;
			if (a->lazy)
				ps_lazy_report_from_msg(a->lazy, &c->lazy_report);
			pthread_mutex_unlock(&c->mu);
			wire_msg_free(m);
			serve_finish(c, NULL, 0);
			break;
		} else {
			pr_err("page server %s sent %s while pages were being served", c->o.to,
			       wire_type_name(type));
			ret = -EPROTO;
		}
		wire_msg_free(m);
		if (ret) {
			serve_finish(c, x->st, ret);
			break;
		}
	}
	return NULL;
}

int ps_client_serve(struct ps_client *c, ps_serve_fn fn, void *arg, int idle_ms)
{
	struct serve_ctx x[PS_MAX_STREAMS];
	unsigned started = 1;
	int ret = client_flush(c);

	if (ret)
		return ret;
	c->serve_efd = eventfd(0, EFD_CLOEXEC);
	if (c->serve_efd < 0)
		return -errno;
	pthread_mutex_lock(&c->mu);
	c->has_lazy_report = false;
	c->serve_stop = false;
	c->serve_result = 0;
	c->serve_broken = false;
	c->serve_reqs = 0;
	c->serve_last_ns = (uint64_t)clock_ns(CLOCK_MONOTONIC);
	pthread_mutex_unlock(&c->mu);
	memset(x, 0, sizeof(x));
	for (unsigned i = 0; i < c->n; i++)
		x[i] = (struct serve_ctx){
			.c = c, .st = &c->st[i], .fn = fn, .arg = arg, .idle_ms = idle_ms};
	/* stream 0 (faults) on this thread, every other stream on its own */
	for (; started < c->n; started++) {
		ret = -pthread_create(&x[started].thr, NULL, serve_stream, &x[started]);
		if (ret) {
			serve_finish(c, NULL, ret);
			break;
		}
	}
	serve_stream(&x[0]);
	for (unsigned i = 1; i < started; i++)
		pthread_join(x[i].thr, NULL);
	for (unsigned i = 0; i < c->n; i++) {
		free(x[i].buf);
		if (x[i].enc_ok)
			wire_pages_enc_release(&x[i].enc);
	}
	close(c->serve_efd);
	c->serve_efd = -1;
	return c->serve_result;
}

int ps_client_lazy_report(const struct ps_client *c, struct ps_lazy_report *out)
{
	if (!c->has_lazy_report)
		return -ENODATA;
	*out = c->lazy_report;
	return 0;
}

bool ps_client_broken(const struct ps_client *c)
{
	return c->serve_broken;
}

const char *ps_client_server(const struct ps_client *c)
{
	return c->o.to;
}

void ps_client_fault_break(struct ps_client *c, uint64_t nreq)
{
	pthread_mutex_lock(&c->mu);
	c->fault_break = nreq;
	pthread_mutex_unlock(&c->mu);
}

/* Errors after which another try may succeed: the network, or a server not done detaching. */
static bool reconnect_retryable(int err)
{
	switch (-err) {
	case ETIMEDOUT:
	case ECONNRESET:
	case ECONNABORTED:
	case EPIPE:
	case EBUSY: /* the server has not seen the old connections break yet */
	case ENETUNREACH:
	case ENETDOWN:
	case EHOSTUNREACH:
	case EAGAIN:
	case EINTR:
		return true;
	default:
		return false;
	}
}

static void set_sndtimeo(int fd, int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* One try: every stream closed, connected, authenticated and rejoined; waits of @tmo ms each. */
static int reconnect_once(struct ps_client *c, const struct sockaddr_storage *ss, socklen_t len,
			  int tmo)
{
	int saved = c->o.timeout_ms, ret = 0;

	c->o.timeout_ms = tmo; /* connect, Hello, Auth and SessionOk each wait at most this */
	for (unsigned i = 0; i < c->n && !ret; i++) {
		struct ps_stream *st = &c->st[i];

		if (st->fd >= 0)
			close(st->fd);
		st->fd = -1;
		st->tx_seq = st->rx_seq = 0;
		st->encrypt = false;
		sodium_memzero(st->skey, sizeof(st->skey));
		st->broken = false;
		ret = stream_connect(c, st, ss, len);
		if (!ret)
			ret = stream_auth(c, st);
		if (!ret)
			ret = stream_session(c, st, true);
	}
	c->o.timeout_ms = saved;
	for (unsigned i = 0; !ret && i < c->n; i++)
		set_sndtimeo(c->st[i].fd, reply_timeout(c));
	return ret;
}

int ps_client_reconnect(struct ps_client *c, int timeout_ms)
{
	uint64_t end = (uint64_t)clock_ns(CLOCK_MONOTONIC) +
		       (uint64_t)(timeout_ms > 0 ? timeout_ms : reply_timeout(c)) * 1000000ull;
	struct sockaddr_storage ss;
	int backoff_ms = 10, ret;
	socklen_t len;

	/* the sender threads must be idle; their errors were the old sockets' */
	(void)client_flush(c);
	ret = ps_addr_parse(c->o.to, false, &ss, &len);
	if (ret) {
		pr_err("cannot resolve page server address '%s'", c->o.to);
		return ret;
	}
	for (;;) {
		uint64_t now = (uint64_t)clock_ns(CLOCK_MONOTONIC);
		int left = now < end ? (int)((end - now) / 1000000ull) : 0;

		ret = reconnect_once(c, &ss, len, left > 0 ? left : 1);
		if (!ret) {
			pthread_mutex_lock(&c->mu);
			c->reconnects++;
			for (unsigned i = 0; i < c->n; i++)
				c->st[i].err = 0;
			pthread_mutex_unlock(&c->mu);
			return 0;
		}
		now = (uint64_t)clock_ns(CLOCK_MONOTONIC);
		if (!reconnect_retryable(ret) || now + (uint64_t)backoff_ms * 1000000ull >= end)
			break;
		usleep((useconds_t)backoff_ms * 1000);
		backoff_ms = backoff_ms * 2 > 1000 ? 1000 : backoff_ms * 2;
	}
	for (unsigned i = 0; i < c->n; i++)
		c->st[i].broken = true; /* nothing usable: a later try starts over */
	pr_err_r(ret, "cannot rejoin session %016llx on %s", (unsigned long long)c->session_id,
		 c->o.to);
	return ret;
}
