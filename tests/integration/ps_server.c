/*
 * ps_server.c - the real `haul pageserver` daemon on 127.0.0.1 against the
 * real client: sessions of every page checked, keys and encryption, rounds
 * that are not committed, a daemon killed mid-round, bandwidth, and what a
 * client learns of a refusal (th_ps.h).  Hostile peers: ps_hostile.c.
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

TestSuite(ps, .init = tps_setup, .fini = tps_teardown, .timeout = 120);

Test(ps, four_streams_send_1gib_and_every_checksum_matches)
{
	struct tps_daemon d;
	struct ps_client *c, *f;
	struct ps_client_opts o;
	struct ps_client_stats st;
	struct haul_layout l = tps_one_vma(1ull << 30);

	tps_daemon_start(&d, 0, NULL);
	o = tps_copts(d.port, 4, PS_SESSION_STORE);
	o.compress = PS_COMPRESS_AUTO;
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(tps_send_round(c, 1, 1ull << 30, 1), 0);
	ps_client_stats(c, &st);
	cr_assert_eq(st.pages_sent, (1ull << 30) / PG);
	cr_assert_gt(st.zero_pages, 0);
	cr_assert_gt(st.lz4_pages, 0);
	cr_assert_lt(st.bytes_sent, 1ull << 30);

	/* a fetch session on the same server reads the committed round back */
	o = tps_copts(d.port, 1, PS_SESSION_FETCH);
	cr_assert_eq(ps_client_new(&o, &f), 0);
	cr_assert_eq(ps_client_committed_round(f), 1);
	cr_assert_eq(tps_verify(f, 1ull << 30, 1), 0);
	ps_client_free(f);
	ps_client_free(c);
	cr_assert(tps_daemon_alive(&d));
	tps_daemon_kill(&d, SIGTERM);
	unlink(d.log);
}

Test(ps, wrong_key_is_refused)
{
	struct tps_daemon d;
	struct ps_client *c;
	struct ps_client_opts o;

	tps_daemon_start(&d, 0, NULL);
	o = tps_copts(d.port, 1, PS_SESSION_STORE);
	cr_assert_eq(ps_key_load(tps_keyfile2, o.key), 0);
	cr_assert_eq(ps_client_new(&o, &c), -EACCES);
	cr_assert(tps_daemon_alive(&d));
	tps_daemon_kill(&d, SIGTERM);
	cr_assert(tps_log_has(&d, "failed authentication"));
	unlink(d.log);
}

Test(ps, encrypted_stream_roundtrips_and_plain_is_refused_when_required)
{
	struct tps_daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = tps_one_vma(16 << 20);

	tps_daemon_start(&d, 0, "--encrypt", NULL);
	o = tps_copts(d.port, 2, PS_SESSION_STORE);
	cr_assert_neq(ps_client_new(&o, &c), 0);
	o.encrypt = true;
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(tps_send_round(c, 1, 16 << 20, 7), 0);
	cr_assert_eq(tps_verify(c, 16 << 20, 7), 0);
	ps_client_free(c);
	tps_daemon_kill(&d, SIGTERM);
	cr_assert(tps_log_has(&d, "did not ask for encryption"));
	unlink(d.log);
}

/* ---- raw peers ---- */

Test(ps, uncommitted_round_is_never_visible)
{
	struct tps_daemon d;
	struct ps_client *c, *f;
	struct ps_client_opts o;
	struct haul_layout l = tps_one_vma(8 << 20);
	uint8_t *buf = malloc(2048 * PG);
	uint32_t seq = 0;
	int fd;

	tps_daemon_start(&d, 0, NULL);
	o = tps_copts(d.port, 1, PS_SESSION_STORE);
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(tps_send_round(c, 1, 8 << 20, 1), 0);
	/* round 2 starts, sends half, then the client vanishes */
	cr_assert_eq(ps_client_round_begin(c, 2), 0);
	for (uint32_t i = 0; i < 1024; i++)
		tps_gen_page(buf + i * PG, BASE + i * PG, 2);
	cr_assert_eq(ps_client_pages(c, BASE, buf, 1024, NULL), 0);
	ps_client_free(c);
	/* and a raw session of another pid dies mid-round too */
	fd = tps_raw_session(d.port, &seq, 7100);
	close(fd);

	o = tps_copts(d.port, 1, PS_SESSION_FETCH);
	for (int i = 0; i < 50; i++) {
		/* the first session may take a moment to be torn down */
		if (ps_client_new(&o, &f) == 0)
			break;
		usleep(20000);
	}
	cr_assert_eq(ps_client_committed_round(f), 1);
	cr_assert_eq(tps_verify(f, 8 << 20, 1), 0);
	ps_client_free(f);
	free(buf);
	tps_daemon_kill(&d, SIGTERM);
	unlink(d.log);
}

/*
 * Rounds in a loop until the server dies; each round rewrites every page
 * with generation = round.  Writes a byte to @ready after the first commit.
 */
static void store_forever(int port, uint64_t bytes, int ready)
{
	struct ps_client *c;
	struct ps_client_opts o = tps_copts(port, 2, PS_SESSION_STORE);
	struct haul_layout l = tps_one_vma(bytes);
	uint64_t base;

	if (ps_client_new(&o, &c))
		_exit(1);
	base = ps_client_committed_round(c);
	if (ps_client_layout(c, &l))
		_exit(1);
	for (uint64_t r = 1;; r++) {
		if (tps_send_round(c, r, bytes, base + r))
			_exit(0);
		if (r == 1 && write(ready, "r", 1) != 1)
			_exit(1);
	}
}

Test(ps, kill_9_mid_round_then_restart_serves_last_committed_round)
{
	const uint64_t bytes = 32 << 20;
	struct tps_daemon d;
	struct ps_client *f;
	struct ps_client_opts o;
	uint64_t committed;
	pid_t w;
	int ready[2];
	char b;

	srand((unsigned)getpid());
	for (int trial = 0; trial < 4; trial++) {
		tps_daemon_start(&d, 0, "--images", tps_imgdir, NULL);
		cr_assert_eq(pipe(ready), 0);
		w = fork();
		if (w == 0)
			store_forever(d.port, bytes, ready[1]);
		close(ready[1]);
		cr_assert_eq(read(ready[0], &b, 1), 1, "the first round never committed");
		close(ready[0]);
		/* kill at a random moment: mid-round, mid-commit, between rounds */
		usleep((useconds_t)(rand() % 300000));
		tps_daemon_kill(&d, SIGKILL);
		waitpid(w, NULL, 0);

		tps_daemon_start(&d, 0, "--images", tps_imgdir, NULL);
		o = tps_copts(d.port, 1, PS_SESSION_FETCH);
		cr_assert_eq(ps_client_new(&o, &f), 0, "nothing committed after trial %d", trial);
		committed = ps_client_committed_round(f);
		cr_assert_geq(committed, 1);
		/* every page is from the committed generation, none from the one cut short */
		cr_assert_eq(tps_verify(f, bytes, committed), 0, "trial %d round %llu", trial,
			     (unsigned long long)committed);
		ps_client_free(f);
		tps_daemon_kill(&d, SIGTERM);
		unlink(d.log);
	}
}

Test(ps, once_exits_after_the_session_ends)
{
	struct tps_daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	int st = 0;

	tps_daemon_start(&d, 0, "--once", NULL);
	o = tps_copts(d.port, 1, PS_SESSION_STORE);
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
	struct tps_daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct ps_client_stats st;
	struct haul_layout l = tps_one_vma(64 * PG);
	static uint8_t buf[64 * PG], back[64 * PG], want[64 * PG];
	uint64_t zero[1] = {0};

	tps_daemon_start(&d, 0, NULL);
	o = tps_copts(d.port, 2, PS_SESSION_STORE);
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
	tps_daemon_kill(&d, SIGTERM);
}

Test(ps, bandwidth_cap_is_honoured)
{
	struct tps_daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = tps_one_vma(16 << 20);
	struct timespec t0, t1;
	double secs;

	tps_daemon_start(&d, 0, NULL);
	o = tps_copts(d.port, 2, PS_SESSION_STORE);
	o.compress = PS_COMPRESS_NONE;
	o.bandwidth = 20 << 20; /* 20 MiB/s: 16 MiB take at least ~0.7 s after the burst */
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	cr_assert_eq(tps_send_round(c, 1, 16 << 20, 3), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	cr_assert_geq(secs, 0.6, "16 MiB at a 20 MiB/s cap took only %.2f s", secs);
	ps_client_free(c);
	tps_daemon_kill(&d, SIGTERM);
}

Test(ps, a_stream_that_leaves_fails_its_session_at_once)
{
	Haul__Wire__SessionJoin sj = HAUL__WIRE__SESSION_JOIN__INIT;
	struct tps_daemon d;
	uint32_t s0 = 0, s1 = 0;
	unsigned type;
	int fd0, fd1;

	tps_daemon_start(&d, 0, NULL);
	fd0 = tps_raw_auth(d.port, &s0);
	tps_raw_open(fd0, &s0, 7200, 2);
	fd1 = tps_raw_auth(d.port, &s1);
	sj.session_id = 7200ull * 7919;
	sj.stream = 1;
	tps_raw_frame(fd1, &s1, WIRE_SESSION_JOIN, &sj.base, NULL, 0);
	wire_msg_free(tps_raw_recv(fd1, &type));
	cr_assert_eq(type, WIRE_SESSION_OK);
	close(fd1);
	/* whichever the server sees first, the round can never complete: fail now, not at a timeout */
	tps_raw_round_begin(fd0, &s0, 1);
	cr_assert(tps_closed_within(fd0, 3000));
	close(fd0);
	cr_assert(tps_daemon_alive(&d));
	tps_daemon_kill(&d, SIGTERM);
}

Test(ps, client_learns_why_the_server_refused_its_pages)
{
	struct tps_daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = tps_one_vma(1 << 20);
	static uint8_t buf[16 * PG];
	int ret;

	tps_daemon_start(&d, 0, NULL);
	o = tps_copts(d.port, 1, PS_SESSION_STORE);
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(ps_client_round_begin(c, 1), 0);
	memset(buf, 0x5a, sizeof(buf));
	ret = ps_client_pages(c, BASE + (4 << 20), buf, 16, NULL);
	if (!ret)
		ret = ps_client_round_end(c, 1);
	cr_assert_eq(ret, -ERANGE, "got %d", ret);
	ps_client_free(c);
	cr_assert(tps_daemon_alive(&d));
	tps_daemon_kill(&d, SIGTERM);
}

Test(ps, a_flood_of_idle_connections_does_not_lock_out_a_keyed_client)
{
	enum {
		FLOOD = 300
	}; /* more than PS_MAX_CONNS */
	static int fds[FLOOD];
	struct tps_daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = tps_one_vma(1 << 20);

	tps_daemon_start(&d, 0, NULL);
	for (int i = 0; i < FLOOD; i++)
		fds[i] = tps_raw_connect(d.port);
	o = tps_copts(d.port, 2, PS_SESSION_STORE);
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(tps_send_round(c, 1, 1 << 20, 5), 0);
	cr_assert_eq(tps_verify(c, 1 << 20, 5), 0);
	ps_client_free(c);
	for (int i = 0; i < FLOOD; i++)
		close(fds[i]);
	cr_assert(tps_daemon_alive(&d));
	tps_daemon_kill(&d, SIGTERM);
	cr_assert(tps_log_has(&d, "to make room"));
}

/* ---- bad input after authentication, and the cost one key holder may cause ---- */
