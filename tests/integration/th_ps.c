/*
 * th_ps.c - the page server tests' shared harness (th_ps.h): the daemon,
 * sessions of known pages through the real client, and raw peers.
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
#include "th_ps.h"

char tps_keyfile[96], tps_keyfile2[96], tps_imgdir[96];
int32_t tps_test_pid; /* the pid sessions declare: the test's, also in forked helpers */

const char *tps_haul_bin(void)
{
	const char *b = getenv("HAUL_BIN");

	return b ? b : "build/haul";
}

void tps_write_key(const char *path, uint8_t byte)
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

void tps_setup(void)
{
	snprintf(tps_keyfile, sizeof(tps_keyfile), "/tmp/ps-itest-%d.key", getpid());
	snprintf(tps_keyfile2, sizeof(tps_keyfile2), "/tmp/ps-itest-%d.key2", getpid());
	snprintf(tps_imgdir, sizeof(tps_imgdir), "/tmp/ps-itest-%d-images", getpid());
	tps_test_pid = 4000 + getpid() % 1000;
	tps_write_key(tps_keyfile, 0x11);
	tps_write_key(tps_keyfile2, 0x22);
	log_init("test");
}

void tps_teardown(void)
{
	char cmd[160];

	unlink(tps_keyfile);
	unlink(tps_keyfile2);
	snprintf(cmd, sizeof(cmd), "rm -rf %s /tmp/ps-itest-%d-*.log", tps_imgdir, getpid());
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", tps_imgdir);
}

/* Start the daemon with extra args (NULL-terminated); wait for "listening on". */
void tps_daemon_start(struct tps_daemon *d, int port, ...)
{
	char listen[64], line[256] = {0};
	const char *argv[24];
	int out[2], n = 0, logfd;
	va_list ap;
	size_t got = 0;

	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	snprintf(d->log, sizeof(d->log), "/tmp/ps-itest-%d-%d.log", getpid(), port);
	argv[n++] = tps_haul_bin();
	argv[n++] = "pageserver";
	argv[n++] = "--listen";
	argv[n++] = listen;
	argv[n++] = "--key";
	argv[n++] = tps_keyfile;
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

void tps_daemon_kill(struct tps_daemon *d, int sig)
{
	int st;

	if (d->pid <= 0)
		return;
	kill(d->pid, sig);
	waitpid(d->pid, &st, 0);
	d->pid = 0;
}

bool tps_daemon_alive(struct tps_daemon *d)
{
	return d->pid > 0 && waitpid(d->pid, NULL, WNOHANG) == 0;
}

bool tps_log_has(struct tps_daemon *d, const char *s)
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
void tps_gen_page(uint8_t *p, uint64_t addr, uint64_t gen)
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

struct ps_client_opts tps_copts(int port, unsigned nstreams, enum ps_session_kind kind)
{
	static char to[64];
	struct ps_client_opts o = {0};

	snprintf(to, sizeof(to), "127.0.0.1:%d", port);
	o.to = to;
	cr_assert_eq(ps_key_load(tps_keyfile, o.key), 0);
	o.nstreams = nstreams;
	o.pid = tps_test_pid;
	o.comm = "itest";
	o.kind = kind;
	o.timeout_ms = 20000;
	return o;
}

struct haul_layout tps_one_vma(uint64_t bytes)
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
int tps_send_round(struct ps_client *c, uint64_t round, uint64_t bytes, uint64_t gen)
{
	const uint64_t chunk = 64ull << 20;
	uint8_t *buf = malloc(chunk);
	int ret = ps_client_round_begin(c, round);

	cr_assert_not_null(buf);
	for (uint64_t off = 0; !ret && off < bytes; off += chunk) {
		uint64_t n = bytes - off < chunk ? bytes - off : chunk;

		for (uint64_t i = 0; i < n; i += PG)
			tps_gen_page(buf + i, BASE + off + i, gen);
		ret = ps_client_pages(c, BASE + off, buf, (uint32_t)(n / PG), NULL);
	}
	free(buf);
	return ret ? ret : ps_client_round_end(c, round);
}

/* Fetch everything back and compare page hashes with the generator. */
uint64_t tps_verify(struct ps_client *c, uint64_t bytes, uint64_t gen)
{
	const uint32_t batch = 1024;
	uint8_t *buf = malloc(batch * PG), want[PG];
	uint64_t bad = 0;

	cr_assert_not_null(buf);
	for (uint64_t off = 0; off < bytes; off += batch * PG) {
		uint32_t n = bytes - off < batch * PG ? (uint32_t)((bytes - off) / PG) : batch;

		cr_assert_eq(ps_client_fetch(c, BASE + off, n, buf), 0);
		for (uint32_t i = 0; i < n; i++) {
			tps_gen_page(want, BASE + off + i * PG, gen);
			if (XXH64(want, PG, 0) != XXH64(buf + i * PG, PG, 0))
				bad++;
		}
	}
	free(buf);
	return bad;
}

/* Connect from 127.0.0.@from (0: let the kernel choose). */
int tps_raw_connect_from(int port, uint8_t from)
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

int tps_raw_connect(int port)
{
	return tps_raw_connect_from(port, 0);
}

/* Whether the server closed @fd within @ms (reads and discards what it sent). */
bool tps_closed_within(int fd, int ms)
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

void tps_raw_frame(int fd, uint32_t *seq, unsigned type, const ProtobufCMessage *m,
		   const void *payload, uint32_t plen)
{
	static uint8_t buf[WIRE_HDR_LEN + 65536 + WIRE_MAX_PAYLOAD];
	ssize_t n = wire_frame_build(buf, sizeof(buf), type, 0, (*seq)++, m, payload, plen);

	cr_assert_gt(n, 0);
	cr_assert_eq(send(fd, buf, (size_t)n, MSG_NOSIGNAL), n);
}

ProtobufCMessage *tps_raw_recv(int fd, unsigned *type)
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
int tps_raw_auth_from(int port, uint8_t from, uint32_t *seq, unsigned *reply)
{
	Haul__Wire__Hello hello = HAUL__WIRE__HELLO__INIT, *sh;
	Haul__Wire__Auth auth = HAUL__WIRE__AUTH__INIT;
	uint8_t cn[32], sn[32], mac[32], key[32];
	ProtobufCMessage *m;
	unsigned type;
	int fd = tps_raw_connect_from(port, from);

	cr_assert_eq(ps_key_load(tps_keyfile, key), 0);
	randombytes_buf(cn, 32);
	hello.version = 1;
	hello.nonce.data = cn;
	hello.nonce.len = 32;
	tps_raw_frame(fd, seq, WIRE_HELLO, &hello.base, NULL, 0);
	m = tps_raw_recv(fd, &type);
	cr_assert_eq(type, WIRE_HELLO);
	sh = (Haul__Wire__Hello *)m;
	memcpy(sn, sh->nonce.data, 32);
	wire_msg_free(m);
	wire_auth_mac(key, true, cn, sn, mac);
	auth.mac.data = mac;
	auth.mac.len = 32;
	tps_raw_frame(fd, seq, WIRE_AUTH, &auth.base, NULL, 0);
	wire_msg_free(tps_raw_recv(fd, &type));
	if (reply)
		*reply = type;
	else
		cr_assert_eq(type, WIRE_AUTH);
	return fd;
}

int tps_raw_auth(int port, uint32_t *seq)
{
	return tps_raw_auth_from(port, 0, seq, NULL);
}

/* Open a STORE session of @nstreams streams for @pid on an authenticated @fd, with one VMA. */
void tps_raw_open(int fd, uint32_t *seq, int32_t pid, uint32_t nstreams)
{
	Haul__Wire__SessionOpen so = HAUL__WIRE__SESSION_OPEN__INIT;
	struct haul_layout l = tps_one_vma(1 << 20);
	Haul__Wire__Vma wv[1], *wp[1];
	Haul__Wire__Layout lm;
	unsigned type;

	so.session_id = (uint64_t)pid * 7919;
	so.kind = HAUL__WIRE__SESSION_KIND__STORE;
	so.pid = pid;
	so.nstreams = nstreams;
	tps_raw_frame(fd, seq, WIRE_SESSION_OPEN, &so.base, NULL, 0);
	wire_msg_free(tps_raw_recv(fd, &type));
	cr_assert_eq(type, WIRE_SESSION_OK);
	wire_layout_to_msg(&l, wv, wp, &lm);
	tps_raw_frame(fd, seq, WIRE_LAYOUT, &lm.base, NULL, 0);
	wire_msg_free(tps_raw_recv(fd, &type));
	cr_assert_eq(type, WIRE_ACK);
}

void tps_raw_round_begin(int fd, uint32_t *seq, uint64_t round)
{
	Haul__Wire__RoundBegin rb = HAUL__WIRE__ROUND_BEGIN__INIT;

	rb.round = round;
	tps_raw_frame(fd, seq, WIRE_ROUND_BEGIN, &rb.base, NULL, 0);
}

/* A raw peer with a one-stream STORE session of @pid, in round 1. */
int tps_raw_session(int port, uint32_t *seq, int32_t pid)
{
	int fd = tps_raw_auth(port, seq);

	tps_raw_open(fd, seq, pid, 1);
	tps_raw_round_begin(fd, seq, 1);
	return fd;
}

void tps_raw_pages(int fd, uint32_t *seq, uint64_t addr, int enc, const void *p, uint32_t len)
{
	Haul__Wire__PageRange r = HAUL__WIRE__PAGE_RANGE__INIT, *rp = &r;
	Haul__Wire__Pages m = HAUL__WIRE__PAGES__INIT;

	r.addr = addr;
	r.npages = 1;
	r.enc = enc;
	r.len = len;
	m.n_ranges = 1;
	m.ranges = &rp;
	tps_raw_frame(fd, seq, WIRE_PAGES, &m.base, p, len);
}
/*
 * A LIVE session of @pid (restored by the daemon's sink) on an authenticated
 * @fd.  False when the sink cannot start a restore here (then the caller skips).
 */
bool tps_raw_open_live(int fd, uint32_t *seq, int32_t pid)
{
	Haul__Wire__SessionOpen so = HAUL__WIRE__SESSION_OPEN__INIT;
	ProtobufCMessage *m;
	unsigned type;

	so.session_id = (uint64_t)pid * 7919;
	so.kind = HAUL__WIRE__SESSION_KIND__LIVE;
	so.pid = pid;
	so.nstreams = 1;
	tps_raw_frame(fd, seq, WIRE_SESSION_OPEN, &so.base, NULL, 0);
	m = tps_raw_recv(fd, &type);
	wire_msg_free(m);
	return type == WIRE_SESSION_OK;
}

/* A one-VMA layout on @fd; the type of the server's answer (ACK or ERROR). */
unsigned tps_raw_layout(int fd, uint32_t *seq, const struct haul_vma *v)
{
	struct haul_layout l = {(struct haul_vma *)v, 1};
	Haul__Wire__Vma wv[1], *wp[1];
	Haul__Wire__Layout lm;
	unsigned type;

	wire_layout_to_msg(&l, wv, wp, &lm);
	tps_raw_frame(fd, seq, WIRE_LAYOUT, &lm.base, NULL, 0);
	wire_msg_free(tps_raw_recv(fd, &type));
	return type;
}

/* The daemon's resident memory high-water mark, KiB. */
long tps_daemon_hwm_kb(const struct tps_daemon *d)
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

/* A session of 64 MiB in 3 rounds, every page checked, on @arg's port: its result there. */
void *tps_good_client(void *arg)
{
	struct tps_good *g = arg;
	struct ps_client *c;
	struct ps_client_opts o = tps_copts(g->port, 2, PS_SESSION_STORE);
	struct haul_layout l = tps_one_vma(64 << 20);

	o.pid = tps_test_pid + 5000;
	g->result = ps_client_new(&o, &c);
	if (g->result)
		return NULL;
	g->result = ps_client_layout(c, &l);
	for (uint64_t r = 1; r <= 3 && !g->result; r++)
		g->result = tps_send_round(c, r, 64 << 20, r);
	if (!g->result)
		g->result = tps_verify(c, 64 << 20, 3) ? -EIO : 0;
	ps_client_free(c);
	return NULL;
}

/* A good client runs a whole session on @d's port; the daemon lives on. */
void tps_serves_on(struct tps_daemon *d)
{
	struct tps_good g = {.port = d->port};
	pthread_t t;

	cr_assert_eq(pthread_create(&t, NULL, tps_good_client, &g), 0);
	pthread_join(t, NULL);
	cr_assert_eq(g.result, 0, "the good client failed: %d", g.result);
	cr_assert(tps_daemon_alive(d));
}

/* A daemon, and an authenticated LIVE session of pid @pid on it with a one-VMA layout. */
int tps_live_with_layout(struct tps_daemon *d, uint32_t *seq, int32_t pid)
{
	struct haul_vma v = {
		.start = BASE, .end = BASE + (1 << 20), .prot = 3, .flags = HAUL_VMA_ANON};
	int fd;

	tps_daemon_start(d, 0, NULL);
	fd = tps_raw_auth(d->port, seq);
	if (!tps_raw_open_live(fd, seq, pid))
		cr_skip_test("the page server cannot start a restore here (see %s)", d->log);
	cr_assert_eq(tps_raw_layout(fd, seq, &v), WIRE_ACK);
	return fd;
}

/* @fd's last frame got an ERROR and was closed; the daemon serves on and logged @reason. */
void tps_refused_and_serves_on(struct tps_daemon *d, int fd, unsigned type, const char *reason)
{
	cr_assert_eq(type, WIRE_ERROR, "got frame type %u", type);
	cr_assert(tps_closed_within(fd, 3000));
	close(fd);
	tps_serves_on(d);
	tps_daemon_kill(d, SIGTERM);
	cr_assert(tps_log_has(d, reason), "no reason (see %s)", d->log);
	unlink(d->log);
}
