/*
 * ps_server.c - the real `haul pageserver` daemon on 127.0.0.1 against the
 * real client and against hostile raw sockets.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/log.h"
#include "common/wire.h"
#include "pageserver/pageserver.h"

#define PG   4096ull
#define BASE 0x7f1200000000ull

struct daemon {
	pid_t pid;
	int port;
	char log[128];
};

static char keyfile[96], keyfile2[96], imgdir[96];
static int32_t test_pid; /* the pid sessions declare: the test's, also in forked helpers */

static const char *haul_bin(void)
{
	const char *b = getenv("HAUL_BIN");

	return b ? b : "build/haul";
}

static void write_key(const char *path, uint8_t byte)
{
	uint8_t k[48];
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	/* distinct per @byte, and varied: a repeated byte is refused as no secret */
	for (size_t i = 0; i < sizeof(k); i++)
		k[i] = (uint8_t)(byte ^ (i * 151 + 7));
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, k, sizeof(k)), (ssize_t)sizeof(k));
	close(fd);
}

static void setup(void)
{
	snprintf(keyfile, sizeof(keyfile), "/tmp/ps-itest-%d.key", getpid());
	snprintf(keyfile2, sizeof(keyfile2), "/tmp/ps-itest-%d.key2", getpid());
	snprintf(imgdir, sizeof(imgdir), "/tmp/ps-itest-%d-images", getpid());
	test_pid = 4000 + getpid() % 1000;
	write_key(keyfile, 0x11);
	write_key(keyfile2, 0x22);
	log_init("test");
}

static void teardown(void)
{
	char cmd[160];

	unlink(keyfile);
	unlink(keyfile2);
	snprintf(cmd, sizeof(cmd), "rm -rf %s /tmp/ps-itest-%d-*.log", imgdir, getpid());
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", imgdir);
}

/* Start the daemon with extra args (NULL-terminated); wait for "listening on". */
static void daemon_start(struct daemon *d, int port, ...)
{
	char listen[64], line[256] = {0};
	const char *argv[24];
	int out[2], n = 0, logfd;
	va_list ap;
	size_t got = 0;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	snprintf(d->log, sizeof(d->log), "/tmp/ps-itest-%d-%d.log", getpid(), port);
	argv[n++] = haul_bin();
	argv[n++] = "pageserver";
	argv[n++] = "--listen";
	argv[n++] = listen;
	argv[n++] = "--key";
	argv[n++] = keyfile;
	va_start(ap, port);
	for (const char *a; (a = va_arg(ap, const char *)) && n < 22;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;

	cr_assert_eq(pipe(out), 0);
	logfd = open(d->log, O_WRONLY | O_CREAT | O_APPEND, 0600);
	d->pid = fork();
	cr_assert_geq(d->pid, 0);
	if (d->pid == 0) {
		dup2(out[1], 1);
		dup2(logfd, 2);
		execv(argv[0], (char **)argv);
		_exit(127);
	}
	close(out[1]);
	close(logfd);
	for (;;) {
		struct pollfd p = {out[0], POLLIN, 0};
		ssize_t r;

		cr_assert_gt(poll(&p, 1, 10000), 0, "pageserver did not start (see %s)", d->log);
		r = read(out[0], line + got, sizeof(line) - 1 - got);
		cr_assert_gt(r, 0, "pageserver exited before listening (see %s)", d->log);
		got += (size_t)r;
		if (strchr(line, '\n'))
			break;
	}
	close(out[0]);
	cr_assert_eq(sscanf(line, "listening on 127.0.0.1:%d", &d->port), 1, "got '%s'", line);
}

static void daemon_kill(struct daemon *d, int sig)
{
	int st;

	if (d->pid <= 0)
		return;
	kill(d->pid, sig);
	waitpid(d->pid, &st, 0);
	d->pid = 0;
}

static bool daemon_alive(struct daemon *d)
{
	return d->pid > 0 && waitpid(d->pid, NULL, WNOHANG) == 0;
}

static bool log_has(struct daemon *d, const char *s)
{
	char buf[65536];
	int fd = open(d->log, O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return false;
	buf[n] = 0;
	return strstr(buf, s) != NULL;
}

/* Page contents: a function of (address, generation); 1 in 8 pages zero, 1 in 4 compressible. */
static void gen_page(uint8_t *p, uint64_t addr, uint64_t gen)
{
	uint64_t pg = addr / PG, x = pg * 0x9e3779b97f4a7c15ull ^ (gen << 40) ^ 0x5555;

	if (pg % 8 == 3) {
		memset(p, 0, PG);
		return;
	}
	if (pg % 4 == 1) {
		memset(p, (int)(pg + gen), PG);
		memcpy(p, &pg, 8);
		return;
	}
	for (size_t i = 0; i < PG; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + i, &x, 8);
	}
}

static struct ps_client_opts copts(int port, unsigned nstreams, enum ps_session_kind kind)
{
	static char to[64];
	struct ps_client_opts o = {0};

	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	o.to = to;
	cr_assert_eq(ps_key_load(keyfile, o.key), 0);
	o.nstreams = nstreams;
	o.pid = test_pid;
	o.comm = "itest";
	o.kind = kind;
	o.timeout_ms = 20000;
	return o;
}

static struct haul_layout one_vma(uint64_t bytes)
{
	static struct haul_vma v;
	struct haul_layout l = {&v, 1};

	v.start = BASE;
	v.end = BASE + bytes;
	v.prot = 3;
	v.flags = 2;
	return l;
}

/* Send [BASE, BASE+bytes) of generation @gen as one round, in 64 MiB chunks. */
static int send_round(struct ps_client *c, uint64_t round, uint64_t bytes, uint64_t gen)
{
	const uint64_t chunk = 64ull << 20;
	uint8_t *buf = malloc(chunk);
	int ret = ps_client_round_begin(c, round);

	cr_assert_not_null(buf);
	for (uint64_t off = 0; !ret && off < bytes; off += chunk) {
		uint64_t n = bytes - off < chunk ? bytes - off : chunk;

		for (uint64_t i = 0; i < n; i += PG)
			gen_page(buf + i, BASE + off + i, gen);
		ret = ps_client_pages(c, BASE + off, buf, (uint32_t)(n / PG), NULL);
	}
	free(buf);
	return ret ? ret : ps_client_round_end(c, round);
}

/* Fetch everything back and compare page hashes with the generator. */
static uint64_t verify(struct ps_client *c, uint64_t bytes, uint64_t gen)
{
	const uint32_t batch = 1024;
	uint8_t *buf = malloc(batch * PG), want[PG];
	uint64_t bad = 0;

	cr_assert_not_null(buf);
	for (uint64_t off = 0; off < bytes; off += batch * PG) {
		uint32_t n = bytes - off < batch * PG ? (uint32_t)((bytes - off) / PG) : batch;

		cr_assert_eq(ps_client_fetch(c, BASE + off, n, buf), 0);
		for (uint32_t i = 0; i < n; i++) {
			gen_page(want, BASE + off + i * PG, gen);
			if (XXH64(want, PG, 0) != XXH64(buf + i * PG, PG, 0))
				bad++;
		}
	}
	free(buf);
	return bad;
}

TestSuite(ps, .init = setup, .fini = teardown, .timeout = 120);

Test(ps, four_streams_send_1gib_and_every_checksum_matches)
{
	struct daemon d;
	struct ps_client *c, *f;
	struct ps_client_opts o;
	struct ps_client_stats st;
	struct haul_layout l = one_vma(1ull << 30);

	daemon_start(&d, 0, NULL);
	o = copts(d.port, 4, PS_SESSION_STORE);
	o.compress = PS_COMPRESS_AUTO;
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(send_round(c, 1, 1ull << 30, 1), 0);
	ps_client_stats(c, &st);
	cr_assert_eq(st.pages_sent, (1ull << 30) / PG);
	cr_assert_gt(st.zero_pages, 0);
	cr_assert_gt(st.lz4_pages, 0);
	cr_assert_lt(st.bytes_sent, 1ull << 30);

	/* a fetch session on the same server reads the committed round back */
	o = copts(d.port, 1, PS_SESSION_FETCH);
	cr_assert_eq(ps_client_new(&o, &f), 0);
	cr_assert_eq(ps_client_committed_round(f), 1);
	cr_assert_eq(verify(f, 1ull << 30, 1), 0);
	ps_client_free(f);
	ps_client_free(c);
	cr_assert(daemon_alive(&d));
	daemon_kill(&d, SIGTERM);
	unlink(d.log);
}

Test(ps, wrong_key_is_refused)
{
	struct daemon d;
	struct ps_client *c;
	struct ps_client_opts o;

	daemon_start(&d, 0, NULL);
	o = copts(d.port, 1, PS_SESSION_STORE);
	cr_assert_eq(ps_key_load(keyfile2, o.key), 0);
	cr_assert_eq(ps_client_new(&o, &c), -EACCES);
	cr_assert(daemon_alive(&d));
	daemon_kill(&d, SIGTERM);
	cr_assert(log_has(&d, "failed authentication"));
	unlink(d.log);
}

Test(ps, encrypted_stream_roundtrips_and_plain_is_refused_when_required)
{
	struct daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = one_vma(16 << 20);

	daemon_start(&d, 0, "--encrypt", NULL);
	o = copts(d.port, 2, PS_SESSION_STORE);
	cr_assert_neq(ps_client_new(&o, &c), 0);
	o.encrypt = true;
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(send_round(c, 1, 16 << 20, 7), 0);
	cr_assert_eq(verify(c, 16 << 20, 7), 0);
	ps_client_free(c);
	daemon_kill(&d, SIGTERM);
	cr_assert(log_has(&d, "did not ask for encryption"));
	unlink(d.log);
}

/* ---- raw peers ---- */

/* Connect from 127.0.0.@from (0: let the kernel choose). */
static int raw_connect_from(int port, uint8_t from)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in src = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	src.sin_addr.s_addr = htonl(0x7f000000u | from);
	cr_assert(!from || bind(fd, (struct sockaddr *)&src, sizeof(src)) == 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	return fd;
}

static int raw_connect(int port)
{
	return raw_connect_from(port, 0);
}

/* Whether the server closed @fd within @ms (reads and discards what it sent). */
static bool closed_within(int fd, int ms)
{
	char buf[4096];

	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};

		if (poll(&p, 1, ms) <= 0)
			return false;
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			return true;
	}
}

static void raw_frame(int fd, uint32_t *seq, unsigned type, const ProtobufCMessage *m,
		      const void *payload, uint32_t plen)
{
	static uint8_t buf[WIRE_HDR_LEN + 65536 + WIRE_MAX_PAYLOAD];
	ssize_t n = wire_frame_build(buf, sizeof(buf), type, 0, (*seq)++, m, payload, plen);

	cr_assert_gt(n, 0);
	cr_assert_eq(send(fd, buf, (size_t)n, MSG_NOSIGNAL), n);
}

static ProtobufCMessage *raw_recv(int fd, unsigned *type)
{
	static uint8_t buf[1 << 16];
	struct wire_hdr h = {0};
	ProtobufCMessage *m;
	size_t got = 0, need = WIRE_HDR_LEN;

	while (got < need) {
		ssize_t n = recv(fd, buf + got, need - got, 0);

		cr_assert_gt(n, 0, "server closed while a reply was due");
		got += (size_t)n;
		if (got == WIRE_HDR_LEN && need == WIRE_HDR_LEN) {
			cr_assert_eq(wire_hdr_decode(buf, WIRE_MAX_MSG, 1 << 15, &h), 0);
			need = wire_frame_len(&h);
		}
	}
	cr_assert_eq(wire_msg_unpack(h.type, buf + WIRE_HDR_LEN, h.msg_len, &m), 0);
	*type = h.type;
	return m;
}

/*
 * A raw peer from 127.0.0.@from that authenticates properly; *@reply (if
 * not NULL) gets the type of the server's answer to Auth, else it must be Auth.
 */
static int raw_auth_from(int port, uint8_t from, uint32_t *seq, unsigned *reply)
{
	Haul__Wire__Hello hello = HAUL__WIRE__HELLO__INIT, *sh;
	Haul__Wire__Auth auth = HAUL__WIRE__AUTH__INIT;
	uint8_t cn[32], sn[32], mac[32], key[32];
	ProtobufCMessage *m;
	unsigned type;
	int fd = raw_connect_from(port, from);

	cr_assert_eq(ps_key_load(keyfile, key), 0);
	randombytes_buf(cn, 32);
	hello.version = 1;
	hello.nonce.data = cn;
	hello.nonce.len = 32;
	raw_frame(fd, seq, WIRE_HELLO, &hello.base, NULL, 0);
	m = raw_recv(fd, &type);
	cr_assert_eq(type, WIRE_HELLO);
	sh = (Haul__Wire__Hello *)m;
	memcpy(sn, sh->nonce.data, 32);
	wire_msg_free(m);
	wire_auth_mac(key, true, cn, sn, mac);
	auth.mac.data = mac;
	auth.mac.len = 32;
	raw_frame(fd, seq, WIRE_AUTH, &auth.base, NULL, 0);
	wire_msg_free(raw_recv(fd, &type));
	if (reply)
		*reply = type;
	else
		cr_assert_eq(type, WIRE_AUTH);
	return fd;
}

static int raw_auth(int port, uint32_t *seq)
{
	return raw_auth_from(port, 0, seq, NULL);
}

/* Open a STORE session of @nstreams streams for @pid on an authenticated @fd, with one VMA. */
static void raw_open(int fd, uint32_t *seq, int32_t pid, uint32_t nstreams)
{
	Haul__Wire__SessionOpen so = HAUL__WIRE__SESSION_OPEN__INIT;
	struct haul_layout l = one_vma(1 << 20);
	Haul__Wire__Vma wv[1], *wp[1];
	Haul__Wire__Layout lm;
	unsigned type;

	so.session_id = (uint64_t)pid * 7919;
	so.kind = HAUL__WIRE__SESSION_KIND__STORE;
	so.pid = pid;
	so.nstreams = nstreams;
	raw_frame(fd, seq, WIRE_SESSION_OPEN, &so.base, NULL, 0);
	wire_msg_free(raw_recv(fd, &type));
	cr_assert_eq(type, WIRE_SESSION_OK);
	wire_layout_to_msg(&l, wv, wp, &lm);
	raw_frame(fd, seq, WIRE_LAYOUT, &lm.base, NULL, 0);
	wire_msg_free(raw_recv(fd, &type));
	cr_assert_eq(type, WIRE_ACK);
}

static void raw_round_begin(int fd, uint32_t *seq, uint64_t round)
{
	Haul__Wire__RoundBegin rb = HAUL__WIRE__ROUND_BEGIN__INIT;

	rb.round = round;
	raw_frame(fd, seq, WIRE_ROUND_BEGIN, &rb.base, NULL, 0);
}

/* A raw peer with a one-stream STORE session of @pid, in round 1. */
static int raw_session(int port, uint32_t *seq, int32_t pid)
{
	int fd = raw_auth(port, seq);

	raw_open(fd, seq, pid, 1);
	raw_round_begin(fd, seq, 1);
	return fd;
}

static void raw_pages(int fd, uint32_t *seq, uint64_t addr, int enc, const void *p, uint32_t len)
{
	Haul__Wire__PageRange r = HAUL__WIRE__PAGE_RANGE__INIT, *rp = &r;
	Haul__Wire__Pages m = HAUL__WIRE__PAGES__INIT;

	r.addr = addr;
	r.npages = 1;
	r.enc = enc;
	r.len = len;
	m.n_ranges = 1;
	m.ranges = &rp;
	raw_frame(fd, seq, WIRE_PAGES, &m.base, p, len);
}

struct good {
	int port;
	int result;
};

static void *good_client(void *arg)
{
	struct good *g = arg;
	struct ps_client *c;
	struct ps_client_opts o = copts(g->port, 2, PS_SESSION_STORE);
	struct haul_layout l = one_vma(64 << 20);

	o.pid = test_pid + 5000;
	g->result = ps_client_new(&o, &c);
	if (g->result)
		return NULL;
	g->result = ps_client_layout(c, &l);
	for (uint64_t r = 1; r <= 3 && !g->result; r++)
		g->result = send_round(c, r, 64 << 20, r);
	if (!g->result)
		g->result = verify(c, 64 << 20, 3) ? -EIO : 0;
	ps_client_free(c);
	return NULL;
}

Test(ps, hostile_peers_are_dropped_while_a_good_client_carries_on)
{
	struct daemon d;
	struct good g;
	pthread_t t;
	uint8_t junk[8192], page[PG];
	uint32_t seq;
	int fd_rand, fd_loris, fd_unauth, fd;

	daemon_start(&d, 0, "--timeout", "1500", NULL);
	g.port = d.port;
	cr_assert_eq(pthread_create(&t, NULL, good_client, &g), 0);

	/* random bytes */
	fd_rand = raw_connect(d.port);
	randombytes_buf(junk, sizeof(junk));
	send(fd_rand, junk, sizeof(junk), MSG_NOSIGNAL);
	/* slow loris: the first bytes of a header, then nothing */
	fd_loris = raw_connect(d.port);
	send(fd_loris, "HAU", 3, MSG_NOSIGNAL);
	/* unauthenticated: a PAGES frame straight away */
	fd_unauth = raw_connect(d.port);
	seq = 0;
	memset(page, 0xab, sizeof(page));
	raw_pages(fd_unauth, &seq, BASE, HAUL__WIRE__ENCODING__RAW, page, PG);

	/* unauthenticated: a page request after a proper hello (no auth) */
	{
		Haul__Wire__Hello hello = HAUL__WIRE__HELLO__INIT;
		Haul__Wire__PageReq q = HAUL__WIRE__PAGE_REQ__INIT;
		uint8_t cn[32] = {1};
		unsigned type;
		int fq = raw_connect(d.port);

		seq = 0;
		hello.version = 1;
		hello.nonce.data = cn;
		hello.nonce.len = 32;
		raw_frame(fq, &seq, WIRE_HELLO, &hello.base, NULL, 0);
		wire_msg_free(raw_recv(fq, &type));
		q.req_id = 1;
		q.addr = BASE;
		q.npages = 1;
		raw_frame(fq, &seq, WIRE_PAGE_REQ, &q.base, NULL, 0);
		cr_assert(closed_within(fq, 3000),
			  "an unauthenticated page request was not refused");
		close(fq);
	}
	/* truncated: half a header, then the peer closes */
	{
		int ft = raw_connect(d.port);

		send(ft, "HAUL\x01", 5, MSG_NOSIGNAL);
		close(ft);
	}
	cr_assert(closed_within(fd_rand, 3000));
	cr_assert(closed_within(fd_unauth, 3000));
	cr_assert(closed_within(fd_loris, 5000), "slow-loris peer was not dropped");

	/* authenticated, but pages outside the announced VMA */
	seq = 0;
	fd = raw_session(d.port, &seq, 7001);
	raw_pages(fd, &seq, BASE + (2 << 20), HAUL__WIRE__ENCODING__RAW, page, PG);
	cr_assert(closed_within(fd, 3000));
	close(fd);
	/* authenticated, corrupt LZ4 */
	seq = 0;
	fd = raw_session(d.port, &seq, 7002);
	raw_pages(fd, &seq, BASE, HAUL__WIRE__ENCODING__LZ4, junk, 100);
	cr_assert(closed_within(fd, 3000));
	close(fd);
	/* authenticated, then a frame with the wrong sequence number */
	seq = 0;
	fd = raw_session(d.port, &seq, 7003);
	seq += 5;
	raw_pages(fd, &seq, BASE, HAUL__WIRE__ENCODING__RAW, page, PG);
	cr_assert(closed_within(fd, 3000));
	close(fd);
	/* a frame over the size limit */
	seq = 0;
	fd = raw_session(d.port, &seq, 7004);
	{
		struct wire_hdr h = {WIRE_MAGIC, 1,  WIRE_PAGES,	   0,
				     seq,	 16, WIRE_MAX_PAYLOAD + 1, 0};
		uint8_t b[WIRE_HDR_LEN];

		wire_hdr_encode(&h, b);
		send(fd, b, sizeof(b), MSG_NOSIGNAL);
	}
	cr_assert(closed_within(fd, 3000));
	close(fd);

	pthread_join(t, NULL);
	cr_assert_eq(g.result, 0, "the good client failed: %d", g.result);
	close(fd_rand);
	close(fd_loris);
	close(fd_unauth);
	cr_assert(daemon_alive(&d));
	daemon_kill(&d, SIGTERM);
	cr_assert(log_has(&d, "bad frame header"));
	cr_assert(log_has(&d, "sent PAGES in state hello"));
	cr_assert(log_has(&d, "sent PAGE_REQ in state auth"));
	cr_assert(log_has(&d, "sent a truncated frame"));
	cr_assert(log_has(&d, "did not authenticate within"));
	cr_assert(log_has(&d, "outside any announced VMA"));
	cr_assert(log_has(&d, "corrupt LZ4"));
	cr_assert(log_has(&d, "was due"));
	cr_assert(log_has(&d, "over the size limit"));
	unlink(d.log);
}

Test(ps, uncommitted_round_is_never_visible)
{
	struct daemon d;
	struct ps_client *c, *f;
	struct ps_client_opts o;
	struct haul_layout l = one_vma(8 << 20);
	uint8_t *buf = malloc(2048 * PG);
	uint32_t seq = 0;
	int fd;

	daemon_start(&d, 0, NULL);
	o = copts(d.port, 1, PS_SESSION_STORE);
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(send_round(c, 1, 8 << 20, 1), 0);
	/* round 2 starts, sends half, then the client vanishes */
	cr_assert_eq(ps_client_round_begin(c, 2), 0);
	for (uint32_t i = 0; i < 1024; i++)
		gen_page(buf + i * PG, BASE + i * PG, 2);
	cr_assert_eq(ps_client_pages(c, BASE, buf, 1024, NULL), 0);
	ps_client_free(c);
	/* and a raw session of another pid dies mid-round too */
	fd = raw_session(d.port, &seq, 7100);
	close(fd);

	o = copts(d.port, 1, PS_SESSION_FETCH);
	for (int i = 0; i < 50; i++) {
		/* the first session may take a moment to be torn down */
		if (ps_client_new(&o, &f) == 0)
			break;
		usleep(20000);
	}
	cr_assert_eq(ps_client_committed_round(f), 1);
	cr_assert_eq(verify(f, 8 << 20, 1), 0);
	ps_client_free(f);
	free(buf);
	daemon_kill(&d, SIGTERM);
	unlink(d.log);
}

/*
 * Rounds in a loop until the server dies; each round rewrites every page
 * with generation = round.  Writes a byte to @ready after the first commit.
 */
static void store_forever(int port, uint64_t bytes, int ready)
{
	struct ps_client *c;
	struct ps_client_opts o = copts(port, 2, PS_SESSION_STORE);
	struct haul_layout l = one_vma(bytes);
	uint64_t base;

	if (ps_client_new(&o, &c))
		_exit(1);
	base = ps_client_committed_round(c);
	if (ps_client_layout(c, &l))
		_exit(1);
	for (uint64_t r = 1;; r++) {
		if (send_round(c, r, bytes, base + r))
			_exit(0);
		if (r == 1 && write(ready, "r", 1) != 1)
			_exit(1);
	}
}

Test(ps, kill_9_mid_round_then_restart_serves_last_committed_round)
{
	const uint64_t bytes = 32 << 20;
	struct daemon d;
	struct ps_client *f;
	struct ps_client_opts o;
	uint64_t committed;
	pid_t w;
	int ready[2];
	char b;

	srand((unsigned)getpid());
	for (int trial = 0; trial < 4; trial++) {
		daemon_start(&d, 0, "--images", imgdir, NULL);
		cr_assert_eq(pipe(ready), 0);
		w = fork();
		if (w == 0)
			store_forever(d.port, bytes, ready[1]);
		close(ready[1]);
		cr_assert_eq(read(ready[0], &b, 1), 1, "the first round never committed");
		close(ready[0]);
		/* kill at a random moment: mid-round, mid-commit, between rounds */
		usleep((useconds_t)(rand() % 300000));
		daemon_kill(&d, SIGKILL);
		waitpid(w, NULL, 0);

		daemon_start(&d, 0, "--images", imgdir, NULL);
		o = copts(d.port, 1, PS_SESSION_FETCH);
		cr_assert_eq(ps_client_new(&o, &f), 0, "nothing committed after trial %d", trial);
		committed = ps_client_committed_round(f);
		cr_assert_geq(committed, 1);
		/* every page is from the committed generation, none from the one cut short */
		cr_assert_eq(verify(f, bytes, committed), 0, "trial %d round %llu", trial,
			     (unsigned long long)committed);
		ps_client_free(f);
		daemon_kill(&d, SIGTERM);
		unlink(d.log);
	}
}

Test(ps, once_exits_after_the_session_ends)
{
	struct daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	int st = 0;

	daemon_start(&d, 0, "--once", NULL);
	o = copts(d.port, 1, PS_SESSION_STORE);
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_state(c, "blob", 4), 0);
	cr_assert_eq(ps_client_commit(c), 0);
	ps_client_free(c);
	for (int i = 0; i < 100 && waitpid(d.pid, &st, WNOHANG) == 0; i++)
		usleep(50000);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "pageserver --once did not exit");
	d.pid = 0;
	unlink(d.log);
}

Test(ps, zero_bitmap_pages_are_elided_without_being_read)
{
	struct daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct ps_client_stats st;
	struct haul_layout l = one_vma(64 * PG);
	static uint8_t buf[64 * PG], back[64 * PG], want[64 * PG];
	uint64_t zero[1] = {0};

	daemon_start(&d, 0, NULL);
	o = copts(d.port, 2, PS_SESSION_STORE);
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	memset(buf, 0x77, sizeof(buf));
	memcpy(want, buf, sizeof(want));
	for (int i = 0; i < 64; i += 3) {
		zero[0] |= 1ull << i; /* the caller says: zero; the bytes say otherwise */
		memset(want + i * PG, 0, PG);
	}
	cr_assert_eq(ps_client_round_begin(c, 1), 0);
	cr_assert_eq(ps_client_pages(c, BASE, buf, 64, zero), 0);
	cr_assert_eq(ps_client_round_end(c, 1), 0);
	ps_client_stats(c, &st);
	cr_assert_eq(st.zero_pages, 22);
	cr_assert_eq(ps_client_fetch(c, BASE, 64, back), 0);
	cr_assert_arr_eq(back, want, sizeof(want));
	ps_client_free(c);
	daemon_kill(&d, SIGTERM);
}

Test(ps, bandwidth_cap_is_honoured)
{
	struct daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = one_vma(16 << 20);
	struct timespec t0, t1;
	double secs;

	daemon_start(&d, 0, NULL);
	o = copts(d.port, 2, PS_SESSION_STORE);
	o.compress = PS_COMPRESS_NONE;
	o.bandwidth = 20 << 20; /* 20 MiB/s: 16 MiB take at least ~0.7 s after the burst */
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(send_round(c, 1, 16 << 20, 3), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_geq(secs, 0.6, "16 MiB at a 20 MiB/s cap took only %.2f s", secs);
	ps_client_free(c);
	daemon_kill(&d, SIGTERM);
}

Test(ps, a_stream_that_leaves_fails_its_session_at_once)
{
	Haul__Wire__SessionJoin sj = HAUL__WIRE__SESSION_JOIN__INIT;
	struct daemon d;
	uint32_t s0 = 0, s1 = 0;
	unsigned type;
	int fd0, fd1;

	daemon_start(&d, 0, NULL);
	fd0 = raw_auth(d.port, &s0);
	raw_open(fd0, &s0, 7200, 2);
	fd1 = raw_auth(d.port, &s1);
	sj.session_id = 7200ull * 7919;
	sj.stream = 1;
	raw_frame(fd1, &s1, WIRE_SESSION_JOIN, &sj.base, NULL, 0);
	wire_msg_free(raw_recv(fd1, &type));
	cr_assert_eq(type, WIRE_SESSION_OK);
	close(fd1);
	/* whichever the server sees first, the round can never complete: fail now, not at a timeout */
	raw_round_begin(fd0, &s0, 1);
	cr_assert(closed_within(fd0, 3000));
	close(fd0);
	cr_assert(daemon_alive(&d));
	daemon_kill(&d, SIGTERM);
}

Test(ps, client_learns_why_the_server_refused_its_pages)
{
	struct daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = one_vma(1 << 20);
	static uint8_t buf[16 * PG];
	int ret;

	daemon_start(&d, 0, NULL);
	o = copts(d.port, 1, PS_SESSION_STORE);
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(ps_client_round_begin(c, 1), 0);
	memset(buf, 0x5a, sizeof(buf));
	ret = ps_client_pages(c, BASE + (4 << 20), buf, 16, NULL);
	if (!ret)
		ret = ps_client_round_end(c, 1);
	cr_assert_eq(ret, -ERANGE, "got %d", ret);
	ps_client_free(c);
	cr_assert(daemon_alive(&d));
	daemon_kill(&d, SIGTERM);
}

Test(ps, a_flood_of_idle_connections_does_not_lock_out_a_keyed_client)
{
	enum {
		FLOOD = 300
	}; /* more than PS_MAX_CONNS */
	static int fds[FLOOD];
	struct daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = one_vma(1 << 20);

	daemon_start(&d, 0, NULL);
	for (int i = 0; i < FLOOD; i++)
		fds[i] = raw_connect(d.port);
	o = copts(d.port, 2, PS_SESSION_STORE);
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(send_round(c, 1, 1 << 20, 5), 0);
	cr_assert_eq(verify(c, 1 << 20, 5), 0);
	ps_client_free(c);
	for (int i = 0; i < FLOOD; i++)
		close(fds[i]);
	cr_assert(daemon_alive(&d));
	daemon_kill(&d, SIGTERM);
	cr_assert(log_has(&d, "to make room"));
}

/* ---- bad input after authentication, and the cost one key holder may cause ---- */

/*
 * A LIVE session of @pid (restored by the daemon's sink) on an authenticated
 * @fd.  False when the sink cannot start a restore here (then the caller skips).
 */
static bool raw_open_live(int fd, uint32_t *seq, int32_t pid)
{
	Haul__Wire__SessionOpen so = HAUL__WIRE__SESSION_OPEN__INIT;
	ProtobufCMessage *m;
	unsigned type;

	so.session_id = (uint64_t)pid * 7919;
	so.kind = HAUL__WIRE__SESSION_KIND__LIVE;
	so.pid = pid;
	so.nstreams = 1;
	raw_frame(fd, seq, WIRE_SESSION_OPEN, &so.base, NULL, 0);
	m = raw_recv(fd, &type);
	wire_msg_free(m);
	return type == WIRE_SESSION_OK;
}

/* A one-VMA layout on @fd; the type of the server's answer (ACK or ERROR). */
static unsigned raw_layout(int fd, uint32_t *seq, const struct haul_vma *v)
{
	struct haul_layout l = {(struct haul_vma *)v, 1};
	Haul__Wire__Vma wv[1], *wp[1];
	Haul__Wire__Layout lm;
	unsigned type;

	wire_layout_to_msg(&l, wv, wp, &lm);
	raw_frame(fd, seq, WIRE_LAYOUT, &lm.base, NULL, 0);
	wire_msg_free(raw_recv(fd, &type));
	return type;
}

/* The daemon's resident memory high-water mark, KiB. */
static long daemon_hwm_kb(const struct daemon *d)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)d->pid);
	f = fopen(path, "re");
	cr_assert_not_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

Test(ps, file_vma_without_a_path_is_refused_and_the_server_serves_on)
{
	struct haul_vma v = {
		.start = BASE, .end = BASE + (1 << 20), .prot = 1, .flags = HAUL_VMA_FILE};
	struct daemon d;
	struct good g;
	pthread_t t;
	uint32_t seq = 0;
	int fd;

	daemon_start(&d, 0, NULL);
	fd = raw_auth(d.port, &seq);
	if (!raw_open_live(fd, &seq, test_pid + 300))
		cr_skip_test("the page server cannot start a restore here (see %s)", d.log);
	cr_assert_eq(raw_layout(fd, &seq, &v), WIRE_ERROR);
	cr_assert(closed_within(fd, 3000));
	close(fd);
	/* the daemon lives, and another session goes through from start to end */
	g.port = d.port;
	cr_assert_eq(pthread_create(&t, NULL, good_client, &g), 0);
	pthread_join(t, NULL);
	cr_assert_eq(g.result, 0, "the good client failed: %d", g.result);
	cr_assert(daemon_alive(&d));
	daemon_kill(&d, SIGTERM);
	cr_assert(log_has(&d, "vmas[0]: file mapping"), "no reason naming the field (see %s)",
		  d.log);
	unlink(d.log);
}

/* A good client runs a whole session on @d's port; the daemon lives on. */
static void serves_on(struct daemon *d)
{
	struct good g = {.port = d->port};
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, good_client, &g), 0);
	pthread_join(t, NULL);
	cr_assert_eq(g.result, 0, "the good client failed: %d", g.result);
	cr_assert(daemon_alive(d));
}

/* A daemon, and an authenticated LIVE session of pid @pid on it with a one-VMA layout. */
static int live_with_layout(struct daemon *d, uint32_t *seq, int32_t pid)
{
	struct haul_vma v = {
		.start = BASE, .end = BASE + (1 << 20), .prot = 3, .flags = HAUL_VMA_ANON};
	int fd;

	daemon_start(d, 0, NULL);
	fd = raw_auth(d->port, seq);
	if (!raw_open_live(fd, seq, pid))
		cr_skip_test("the page server cannot start a restore here (see %s)", d->log);
	cr_assert_eq(raw_layout(fd, seq, &v), WIRE_ACK);
	return fd;
}

/* @fd's last frame got an ERROR and was closed; the daemon serves on and logged @reason. */
static void refused_and_serves_on(struct daemon *d, int fd, unsigned type, const char *reason)
{
	cr_assert_eq(type, WIRE_ERROR, "got frame type %u", type);
	cr_assert(closed_within(fd, 3000));
	close(fd);
	serves_on(d);
	daemon_kill(d, SIGTERM);
	cr_assert(log_has(d, reason), "no reason (see %s)", d->log);
	unlink(d->log);
}

/* A deleted file sent before the freeze (GHOST) that does not decode fails its session only. */
Test(ps, a_malformed_deleted_file_fails_its_session_and_the_server_serves_on)
{
	Haul__Wire__Ghost gm = HAUL__WIRE__GHOST__INIT;
	static uint8_t junk[4096];
	struct daemon d;
	uint32_t seq = 0;
	unsigned type;
	int fd = live_with_layout(&d, &seq, test_pid + 500);

	memset(junk, 0xff, sizeof(junk));
	gm.has_len = true;
	gm.len = sizeof(junk);
	raw_frame(fd, &seq, WIRE_GHOST, &gm.base, junk, sizeof(junk));
	wire_msg_free(raw_recv(fd, &type));
	refused_and_serves_on(&d, fd, type, "malformed deleted file");
}

/* The parts of a deleted file and of a state never mix: EPROTO, the server serves on. */
Test(ps, a_state_part_inside_a_deleted_file_in_parts_is_refused)
{
	Haul__Wire__Ghost gm = HAUL__WIRE__GHOST__INIT;
	Haul__Wire__State sm = HAUL__WIRE__STATE__INIT;
	static uint8_t part[4096];
	struct daemon d;
	uint32_t seq = 0;
	unsigned type;
	int fd = live_with_layout(&d, &seq, test_pid + 600);

	gm.has_len = gm.has_total = true;
	gm.len = sizeof(part);
	gm.total = 2 * sizeof(part);
	raw_frame(fd, &seq, WIRE_GHOST, &gm.base, part, sizeof(part));
	wire_msg_free(raw_recv(fd, &type));
	cr_assert_eq(type, WIRE_ACK, "the first part: frame type %u", type);
	sm.has_len = sm.has_total = true;
	sm.len = sizeof(part);
	sm.total = 2 * sizeof(part);
	raw_frame(fd, &seq, WIRE_STATE, &sm.base, part, sizeof(part));
	wire_msg_free(raw_recv(fd, &type));
	refused_and_serves_on(&d, fd, type, "bad part of a STATE");
}

Test(ps, a_16_tib_vma_costs_the_server_no_big_allocation)
{
	struct haul_vma v = {.start = 0x100000000000ull,
			     .end = 0x200000000000ull,
			     .prot = 1,
			     .flags = HAUL_VMA_FILE,
			     .path = "/etc/hostname"};
	struct daemon d;
	uint32_t seq = 0;
	long before, after;
	unsigned type;
	int fd;

	daemon_start(&d, 0, NULL);
	fd = raw_auth(d.port, &seq);
	if (!raw_open_live(fd, &seq, test_pid + 400))
		cr_skip_test("the page server cannot start a restore here (see %s)", d.log);
	before = daemon_hwm_kb(&d);
	/* mapped or refused by the kernel: either way no 512 MiB page bitmap */
	type = raw_layout(fd, &seq, &v);
	cr_assert(type == WIRE_ACK || type == WIRE_ERROR, "got frame type %u", type);
	after = daemon_hwm_kb(&d);
	cr_assert_lt(after - before, 64 << 10, "the daemon grew by %ld KiB for one layout",
		     after - before);
	close(fd);
	cr_assert(daemon_alive(&d));
	daemon_kill(&d, SIGTERM);
	unlink(d.log);
}

Test(ps, idle_authenticated_connections_time_out_and_let_a_new_client_in, .timeout = 60)
{
	enum {
		PER = 128, /* PS_MAX_CONNS_PER_PEER */
		ALL = 256  /* PS_MAX_CONNS */
	};
	static int fds[ALL];
	struct daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = one_vma(1 << 20);
	uint32_t seq;
	unsigned reply;
	int fd;

	daemon_start(&d, 0, "--idle-timeout", "1500", NULL);
	/* one address holds at most PER authenticated connections; more are told why */
	for (int i = 0; i < PER; i++) {
		seq = 0;
		fds[i] = raw_auth_from(d.port, 3, &seq, NULL);
	}
	seq = 0;
	fd = raw_auth_from(d.port, 3, &seq, &reply);
	cr_assert_eq(reply, WIRE_ERROR);
	cr_assert(closed_within(fd, 3000));
	close(fd);
	/* a second address fills the table with connections that say nothing */
	for (int i = PER; i < ALL; i++) {
		seq = 0;
		fds[i] = raw_auth_from(d.port, 4, &seq, NULL);
	}
	/* the table is full: a third address gets no hello until the idle ones go */
	o = copts(d.port, 1, PS_SESSION_STORE);
	o.timeout_ms = 500;
	cr_assert_neq(ps_client_new(&o, &c), 0, "a client got in past a full table");
	for (int i = 0; i < ALL; i++) {
		cr_assert(closed_within(fds[i], 5000), "idle connection %d was kept", i);
		close(fds[i]);
	}
	o.timeout_ms = 20000;
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(send_round(c, 1, 1 << 20, 6), 0);
	cr_assert_eq(verify(c, 1 << 20, 6), 0);
	ps_client_free(c);
	cr_assert(daemon_alive(&d));
	daemon_kill(&d, SIGTERM);
	cr_assert(log_has(&d, "idle for 1500 ms"));
	cr_assert(log_has(&d, "authenticated connections from its address"));
	unlink(d.log);
}
