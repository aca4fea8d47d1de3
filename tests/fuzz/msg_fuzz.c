/*
 * msg_fuzz.c - libFuzzer target for the page server after authentication
 * (make fuzz).
 *
 * The real server (src/pageserver/server*.c) runs in a thread of this
 * process on 127.0.0.1, with the page store as its only sink (no restore:
 * a fuzzer cannot fork stubs).  Each input is one connection: the harness
 * authenticates properly, then sends the frames the input describes, with
 * valid headers and sequence numbers so that every message reaches the
 * validators and handlers of the state machine, then half-closes and reads
 * until the server closes.  A crash, a sanitizer report, or a server that
 * stops answering is a bug.
 *
 * Input format, repeated: 1 byte frame kind (index into kinds[]), 2 bytes
 * message length (LE), 2 bytes payload length (LE), then those bytes (cut
 * to what is left).  msg_seeds.c writes valid sessions in this format.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/log.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The frame kinds a client may send after authentication. */
static const uint8_t kinds[] = {
	WIRE_SESSION_OPEN, WIRE_SESSION_JOIN, WIRE_LAYOUT,  WIRE_ROUND_BEGIN, WIRE_PAGES,
	WIRE_ROUND_END,	   WIRE_STATE,	      WIRE_RESTORE, WIRE_COMMIT,      WIRE_PAGE_REQ,
	WIRE_PAGE_REPLY,   WIRE_ERROR,	      WIRE_GHOST,
};

/* Inputs per server: the in-memory store keeps what committed sessions left. */
#define MSG_FUZZ_RESTART 2000

static struct ps_server *srv;
static pthread_t srv_thread;
static uint8_t key[PS_KEY_LEN];
static unsigned runs;

static void *serve(void *arg)
{
	ps_server_run(arg);
	return NULL;
}

static void server_start(void)
{
	struct ps_server_opts o = {.listen = "127.0.0.1:0", .stall_timeout_ms = 2000};

	memcpy(o.key, key, sizeof(key));
	if (ps_server_new(&o, &srv) || pthread_create(&srv_thread, NULL, serve, srv)) {
		fprintf(stderr, "msg_fuzz: cannot start the page server\n");
		abort();
	}
}

static void server_restart(void)
{
	ps_server_stop(srv);
	pthread_join(srv_thread, NULL);
	ps_server_free(srv);
	server_start();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	log_level = getenv("MSG_FUZZ_LOG") ? LOG_DEBUG : -1;
	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (uint8_t)(i * 37 + 11);
	server_start();
	return 0;
}

static int send_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Read one frame's message of @type into @m; -1 on close, timeout or another type. */
static int recv_msg(int fd, unsigned type, ProtobufCMessage **m)
{
	static uint8_t buf[WIRE_HDR_LEN + WIRE_MAX_PREAUTH];
	struct wire_hdr h = {0};
	size_t got = 0, need = WIRE_HDR_LEN;

	while (got < need) {
		struct pollfd p = {fd, POLLIN, 0};
		ssize_t n;

		if (poll(&p, 1, 5000) <= 0)
			return -1;
		n = recv(fd, buf + got, need - got, 0);
		if (n <= 0)
			return -1;
		got += (size_t)n;
		if (need == WIRE_HDR_LEN && got == WIRE_HDR_LEN) {
			if (wire_hdr_decode(buf, WIRE_MAX_PREAUTH, 0, &h))
				return -1;
			need = wire_frame_len(&h);
		}
	}
	if (h.type != type)
		return -1;
	return wire_msg_unpack(h.type, buf + WIRE_HDR_LEN, h.msg_len, m) ? -1 : 0;
}

/* Connect and authenticate (unencrypted); the fd, or -1. */
static int client_auth(uint32_t *seq)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	Haul__Wire__Hello hello = HAUL__WIRE__HELLO__INIT, *sh;
	Haul__Wire__Auth auth = HAUL__WIRE__AUTH__INIT;
	static uint8_t buf[1024];
	uint8_t cn[WIRE_NONCE_LEN], sn[WIRE_NONCE_LEN], mac[WIRE_MAC_LEN];
	ProtobufCMessage *m;
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ssize_t n;

	a.sin_port = htons((uint16_t)ps_server_port(srv));
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)))
		goto fail;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	randombytes_buf(cn, sizeof(cn));
	hello.version = WIRE_VERSION;
	hello.nonce.data = cn;
	hello.nonce.len = sizeof(cn);
	n = wire_frame_build(buf, sizeof(buf), WIRE_HELLO, 0, (*seq)++, &hello.base, NULL, 0);
	if (n < 0 || send_all(fd, buf, (size_t)n) || recv_msg(fd, WIRE_HELLO, &m))
		goto fail;
	sh = (Haul__Wire__Hello *)m;
	if (sh->nonce.len != sizeof(sn)) {
		wire_msg_free(m);
		goto fail;
	}
	memcpy(sn, sh->nonce.data, sizeof(sn));
	wire_msg_free(m);
	wire_auth_mac(key, true, cn, sn, mac);
	auth.mac.data = mac;
	auth.mac.len = sizeof(mac);
	n = wire_frame_build(buf, sizeof(buf), WIRE_AUTH, 0, (*seq)++, &auth.base, NULL, 0);
	if (n < 0 || send_all(fd, buf, (size_t)n) || recv_msg(fd, WIRE_AUTH, &m))
		goto fail;
	wire_msg_free(m);
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Read (and drop) until the server closes; abort if it stops answering. */
static void drain(int fd)
{
	static uint8_t sink[65536];

	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		int r = poll(&p, 1, 10000);

		if (r == 0) {
			fprintf(stderr,
				"msg_fuzz: the server neither answered nor closed in 10 s\n");
			abort();
		}
		if (r < 0 || recv(fd, sink, sizeof(sink), 0) <= 0)
			return;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t frame[WIRE_HDR_LEN + 65536 + 65536];
	uint32_t seq = 0;
	size_t off = 0;
	int fd;

	if (++runs % MSG_FUZZ_RESTART == 0)
		server_restart();
	fd = client_auth(&seq);
	if (fd < 0) {
		fprintf(stderr, "msg_fuzz: the server refused a good client\n");
		abort();
	}
	while (size - off >= 5) {
		unsigned type = kinds[data[off] % sizeof(kinds)];
		size_t mlen = data[off + 1] | (size_t)data[off + 2] << 8;
		size_t plen = data[off + 3] | (size_t)data[off + 4] << 8;
		struct wire_hdr h = {WIRE_MAGIC, WIRE_VERSION, (uint8_t)type, 0, seq++, 0, 0, 0};

		off += 5;
		if (mlen > size - off)
			mlen = size - off;
		if (plen > size - off - mlen)
			plen = size - off - mlen;
		h.msg_len = (uint32_t)mlen;
		h.payload_len = (uint32_t)plen;
		wire_hdr_encode(&h, frame);
		memcpy(frame + WIRE_HDR_LEN, data + off, mlen + plen);
		off += mlen + plen;
		if (send_all(fd, frame, WIRE_HDR_LEN + mlen + plen))
			break;
	}
	shutdown(fd, SHUT_WR);
	drain(fd);
	close(fd);
	return 0;
}
