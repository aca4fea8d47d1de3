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
 *
 * Files: this one connects, authenticates and opens or joins the session
 * (ps_client_new, ps_client_free); client_io.c is a stream's socket I/O;
 * client_stream.c the sender threads and page batches; client_session.c
 * the control requests; client_serve.c post-copy serving;
 * client_reconnect.c the rejoin after a break.  client_int.h holds what
 * they share.
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
#include "pageserver/client_int.h"

/* ---- connecting -------------------------------------------------------------------------- */

int ps_stream_connect(struct ps_client *c, struct ps_stream *st, const struct sockaddr_storage *ss,
		      socklen_t len)
{
	int tmo = ps_reply_timeout(c), one = 1;
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

int64_t ps_clock_ns(clockid_t id)
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
		ps_clock_ns(CLOCK_MONOTONIC) + c->o.timens_monotonic_ns + c->hello_rtt_ns / 2;
	so->clock_boottime_ns =
		ps_clock_ns(CLOCK_BOOTTIME) + c->o.timens_boottime_ns + c->hello_rtt_ns / 2;
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
int ps_stream_auth(struct ps_client *c, struct ps_stream *st)
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
		int64_t t0 = ps_clock_ns(CLOCK_MONOTONIC);

		ret = ps_stream_send(st, WIRE_HELLO, &hello.base, NULL, 0);
		if (!ret)
			ret = ps_stream_recv(st, WIRE_HELLO, ps_reply_timeout(c), &m, NULL, NULL);
		if (!ret && st->idx == 0)
			c->hello_rtt_ns = ps_clock_ns(CLOCK_MONOTONIC) - t0;
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
	ret = ps_stream_send(st, WIRE_AUTH, &auth.base, NULL, 0);
	if (!ret)
		ret = ps_stream_recv(st, WIRE_AUTH, ps_reply_timeout(c), &m, NULL, NULL);
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

/* The resource kinds the target announced in @ok (none from an older target). */
static int keep_caps(struct ps_client *c, const Haul__Wire__SessionOk *ok)
{
	if (!ok->n_resources)
		return 0;
	c->caps = calloc(ok->n_resources, sizeof(*c->caps));
	if (!c->caps)
		return -ENOMEM;
	for (size_t i = 0; i < ok->n_resources; i++) {
		c->caps[i].kind = strdup(ok->resources[i]->kind);
		if (!c->caps[i].kind)
			return -ENOMEM;
		c->caps[i].version = ok->resources[i]->version;
		c->ncaps++;
	}
	return 0;
}

/* Open the session (stream 0) or join it; @resume: rejoin a detached one, stream 0 too. */
int ps_stream_session(struct ps_client *c, struct ps_stream *st, bool resume)
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
		so.n_move_address = c->o.nmove_addrs;
		so.move_address = (char **)c->o.move_addrs;
		so.n_cgroups = c->o.ncgroups;
		so.cgroups = (char **)c->o.cgroups;
		so.has_tree = c->o.tree_len > 0;
		so.tree.data = (uint8_t *)c->o.tree;
		so.tree.len = c->o.tree_len;
		so.has_tree_session = c->o.tree_session != 0;
		so.tree_session = c->o.tree_session;
		so.n_apparmor_profiles = c->o.napparmor_profiles;
		so.apparmor_profiles = (char **)c->o.apparmor_profiles;
		ret = ps_stream_send(st, WIRE_SESSION_OPEN, &so.base, NULL, 0);
	} else {
		sj.session_id = c->session_id;
		sj.stream = st->idx;
		sj.has_resume = resume;
		sj.resume = resume;
		ret = ps_stream_send(st, WIRE_SESSION_JOIN, &sj.base, NULL, 0);
	}
	if (!ret)
		ret = ps_stream_recv(st, WIRE_SESSION_OK, ps_reply_timeout(c), &m, NULL, NULL);
	if (ret)
		return ret;
	ok = (Haul__Wire__SessionOk *)m;
	if (ok->session_id != c->session_id)
		ret = -EPROTO;
	if (st->idx == 0 && !resume)
		c->committed_round = ok->committed_round;
	if (!ret && st->idx == 0 && !resume)
		ret = keep_caps(c, ok);
	if (!ret && st->idx == 0 && !resume)
		ret = ps_client_net_keep_addrs(c, ok);
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
			ret = ps_stream_connect(c, st, &ss, len);
		if (!ret)
			ret = ps_stream_auth(c, st);
		if (!ret)
			ret = ps_stream_session(c, st, false);
		if (ret && o->refusal && st->refused[0])
			snprintf(o->refusal, o->refusal_len, "%s", st->refused);
		if (ret)
			goto fail;
		ret = -pthread_create(&st->thr, NULL, ps_stream_thread, st);
		if (ret)
			goto fail;
		st->thr_started = true;
	}
	/* read or written during the open only: the caller's storage may go */
	c->o.apparmor_profiles = NULL;
	c->o.napparmor_profiles = 0;
	c->o.refusal = NULL;
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
	for (size_t i = 0; i < c->ncaps; i++)
		free((char *)c->caps[i].kind);
	free(c->caps);
	ps_client_net_free(c);
	pthread_mutex_destroy(&c->mu);
	pthread_cond_destroy(&c->cv);
	sodium_memzero(c->o.key, sizeof(c->o.key));
	free(c);
}

uint64_t ps_client_committed_round(const struct ps_client *c)
{
	return c->committed_round;
}

size_t ps_client_caps(const struct ps_client *c, const struct ps_resource_cap **caps)
{
	*caps = c->caps;
	return c->ncaps;
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
	st->serve_lane_replies = c->serve_lane_replies;
	st->reconnects = c->reconnects;
	pthread_mutex_unlock(&m->mu);
}

const char *ps_client_server(const struct ps_client *c)
{
	return c->o.to;
}
