/*
 * ps_hostile.c - the real `haul pageserver` daemon on 127.0.0.1 against
 * hostile raw sockets (malformed frames, bad auth, floods, sizes that would
 * cost it memory) and bad input after authentication, while a good client
 * carries on (th_ps.h).  The suite is ps_server.c's.
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

Test(ps, hostile_peers_are_dropped_while_a_good_client_carries_on)
{
	struct tps_daemon d;
	struct tps_good g;
	pthread_t t;
	uint8_t junk[8192], page[PG];
	uint32_t seq;
	int fd_rand, fd_loris, fd_unauth, fd;

	tps_daemon_start(&d, 0, "--timeout", "1500", NULL);
	g.port = d.port;
	cr_assert_eq(pthread_create(&t, NULL, tps_good_client, &g), 0);

	/* random bytes */
	fd_rand = tps_raw_connect(d.port);
	randombytes_buf(junk, sizeof(junk));
	send(fd_rand, junk, sizeof(junk), MSG_NOSIGNAL);
	/* slow loris: the first bytes of a header, then nothing */
	fd_loris = tps_raw_connect(d.port);
	send(fd_loris, "HAU", 3, MSG_NOSIGNAL);
	/* unauthenticated: a PAGES frame straight away */
	fd_unauth = tps_raw_connect(d.port);
	seq = 0;
	memset(page, 0xab, sizeof(page));
	tps_raw_pages(fd_unauth, &seq, BASE, HAUL__WIRE__ENCODING__RAW, page, PG);

	/* unauthenticated: a page request after a proper hello (no auth) */
	{
		Haul__Wire__Hello hello = HAUL__WIRE__HELLO__INIT;
		Haul__Wire__PageReq q = HAUL__WIRE__PAGE_REQ__INIT;
		uint8_t cn[32] = {1};
		unsigned type;
		int fq = tps_raw_connect(d.port);

		seq = 0;
		hello.version = 1;
		hello.nonce.data = cn;
		hello.nonce.len = 32;
		tps_raw_frame(fq, &seq, WIRE_HELLO, &hello.base, NULL, 0);
		wire_msg_free(tps_raw_recv(fq, &type));
		q.req_id = 1;
		q.addr = BASE;
		q.npages = 1;
		tps_raw_frame(fq, &seq, WIRE_PAGE_REQ, &q.base, NULL, 0);
		cr_assert(tps_closed_within(fq, 3000),
			  "an unauthenticated page request was not refused");
		close(fq);
	}
	/* truncated: half a header, then the peer closes */
	{
		int ft = tps_raw_connect(d.port);

		send(ft, "HAUL\x01", 5, MSG_NOSIGNAL);
		close(ft);
	}
	cr_assert(tps_closed_within(fd_rand, 3000));
	cr_assert(tps_closed_within(fd_unauth, 3000));
	cr_assert(tps_closed_within(fd_loris, 5000), "slow-loris peer was not dropped");

	/* authenticated, but pages outside the announced VMA */
	seq = 0;
	fd = tps_raw_session(d.port, &seq, 7001);
	tps_raw_pages(fd, &seq, BASE + (2 << 20), HAUL__WIRE__ENCODING__RAW, page, PG);
	cr_assert(tps_closed_within(fd, 3000));
	close(fd);
	/* authenticated, corrupt LZ4 */
	seq = 0;
	fd = tps_raw_session(d.port, &seq, 7002);
	tps_raw_pages(fd, &seq, BASE, HAUL__WIRE__ENCODING__LZ4, junk, 100);
	cr_assert(tps_closed_within(fd, 3000));
	close(fd);
	/* authenticated, then a frame with the wrong sequence number */
	seq = 0;
	fd = tps_raw_session(d.port, &seq, 7003);
	seq += 5;
	tps_raw_pages(fd, &seq, BASE, HAUL__WIRE__ENCODING__RAW, page, PG);
	cr_assert(tps_closed_within(fd, 3000));
	close(fd);
	/* a frame over the size limit */
	seq = 0;
	fd = tps_raw_session(d.port, &seq, 7004);
	{
		struct wire_hdr h = {WIRE_MAGIC, 1,  WIRE_PAGES,	   0,
				     seq,	 16, WIRE_MAX_PAYLOAD + 1, 0};
		uint8_t b[WIRE_HDR_LEN];

		wire_hdr_encode(&h, b);
		send(fd, b, sizeof(b), MSG_NOSIGNAL);
	}
	cr_assert(tps_closed_within(fd, 3000));
	close(fd);

	pthread_join(t, NULL);
	cr_assert_eq(g.result, 0, "the good client failed: %d", g.result);
	close(fd_rand);
	close(fd_loris);
	close(fd_unauth);
	cr_assert(tps_daemon_alive(&d));
	tps_daemon_kill(&d, SIGTERM);
	cr_assert(tps_log_has(&d, "bad frame header"));
	cr_assert(tps_log_has(&d, "sent PAGES in state hello"));
	cr_assert(tps_log_has(&d, "sent PAGE_REQ in state auth"));
	cr_assert(tps_log_has(&d, "sent a truncated frame"));
	cr_assert(tps_log_has(&d, "did not authenticate within"));
	cr_assert(tps_log_has(&d, "outside any announced VMA"));
	cr_assert(tps_log_has(&d, "corrupt LZ4"));
	cr_assert(tps_log_has(&d, "was due"));
	cr_assert(tps_log_has(&d, "over the size limit"));
	unlink(d.log);
}

Test(ps, file_vma_without_a_path_is_refused_and_the_server_serves_on)
{
	struct haul_vma v = {
		.start = BASE, .end = BASE + (1 << 20), .prot = 1, .flags = HAUL_VMA_FILE};
	struct tps_daemon d;
	struct tps_good g;
	pthread_t t;
	uint32_t seq = 0;
	int fd;

	tps_daemon_start(&d, 0, NULL);
	fd = tps_raw_auth(d.port, &seq);
	if (!tps_raw_open_live(fd, &seq, tps_test_pid + 300))
		cr_skip_test("the page server cannot start a restore here (see %s)", d.log);
	cr_assert_eq(tps_raw_layout(fd, &seq, &v), WIRE_ERROR);
	cr_assert(tps_closed_within(fd, 3000));
	close(fd);
	/* the daemon lives, and another session goes through from start to end */
	g.port = d.port;
	cr_assert_eq(pthread_create(&t, NULL, tps_good_client, &g), 0);
	pthread_join(t, NULL);
	cr_assert_eq(g.result, 0, "the good client failed: %d", g.result);
	cr_assert(tps_daemon_alive(&d));
	tps_daemon_kill(&d, SIGTERM);
	cr_assert(tps_log_has(&d, "vmas[0]: file mapping"), "no reason naming the field (see %s)",
		  d.log);
	unlink(d.log);
}

/* A deleted file sent before the freeze (GHOST) that does not decode fails its session only. */
Test(ps, a_malformed_deleted_file_fails_its_session_and_the_server_serves_on)
{
	Haul__Wire__Ghost gm = HAUL__WIRE__GHOST__INIT;
	static uint8_t junk[4096];
	struct tps_daemon d;
	uint32_t seq = 0;
	unsigned type;
	int fd = tps_live_with_layout(&d, &seq, tps_test_pid + 500);

	memset(junk, 0xff, sizeof(junk));
	gm.has_len = true;
	gm.len = sizeof(junk);
	tps_raw_frame(fd, &seq, WIRE_GHOST, &gm.base, junk, sizeof(junk));
	wire_msg_free(tps_raw_recv(fd, &type));
	tps_refused_and_serves_on(&d, fd, type, "malformed deleted file");
}

/* The parts of a deleted file and of a state never mix: EPROTO, the server serves on. */
Test(ps, a_state_part_inside_a_deleted_file_in_parts_is_refused)
{
	Haul__Wire__Ghost gm = HAUL__WIRE__GHOST__INIT;
	Haul__Wire__State sm = HAUL__WIRE__STATE__INIT;
	static uint8_t part[4096];
	struct tps_daemon d;
	uint32_t seq = 0;
	unsigned type;
	int fd = tps_live_with_layout(&d, &seq, tps_test_pid + 600);

	gm.has_len = gm.has_total = true;
	gm.len = sizeof(part);
	gm.total = 2 * sizeof(part);
	tps_raw_frame(fd, &seq, WIRE_GHOST, &gm.base, part, sizeof(part));
	wire_msg_free(tps_raw_recv(fd, &type));
	cr_assert_eq(type, WIRE_ACK, "the first part: frame type %u", type);
	sm.has_len = sm.has_total = true;
	sm.len = sizeof(part);
	sm.total = 2 * sizeof(part);
	tps_raw_frame(fd, &seq, WIRE_STATE, &sm.base, part, sizeof(part));
	wire_msg_free(tps_raw_recv(fd, &type));
	tps_refused_and_serves_on(&d, fd, type, "bad part of a STATE");
}

Test(ps, a_16_tib_vma_costs_the_server_no_big_allocation)
{
	struct haul_vma v = {.start = 0x100000000000ull,
			     .end = 0x200000000000ull,
			     .prot = 1,
			     .flags = HAUL_VMA_FILE,
			     .path = "/etc/hostname"};
	struct tps_daemon d;
	uint32_t seq = 0;
	long before, after;
	unsigned type;
	int fd;

	tps_daemon_start(&d, 0, NULL);
	fd = tps_raw_auth(d.port, &seq);
	if (!tps_raw_open_live(fd, &seq, tps_test_pid + 400))
		cr_skip_test("the page server cannot start a restore here (see %s)", d.log);
	before = tps_daemon_hwm_kb(&d);
	/* mapped or refused by the kernel: either way no 512 MiB page bitmap */
	type = tps_raw_layout(fd, &seq, &v);
	cr_assert(type == WIRE_ACK || type == WIRE_ERROR, "got frame type %u", type);
	after = tps_daemon_hwm_kb(&d);
	cr_assert_lt(after - before, 64 << 10, "the daemon grew by %ld KiB for one layout",
		     after - before);
	close(fd);
	cr_assert(tps_daemon_alive(&d));
	tps_daemon_kill(&d, SIGTERM);
	unlink(d.log);
}

Test(ps, idle_authenticated_connections_time_out_and_let_a_new_client_in, .timeout = 60)
{
	enum {
		PER = 128, /* PS_MAX_CONNS_PER_PEER */
		ALL = 256  /* PS_MAX_CONNS */
	};
	static int fds[ALL];
	struct tps_daemon d;
	struct ps_client *c;
	struct ps_client_opts o;
	struct haul_layout l = tps_one_vma(1 << 20);
	uint32_t seq;
	unsigned reply;
	int fd;

	tps_daemon_start(&d, 0, "--idle-timeout", "1500", NULL);
	/* one address holds at most PER authenticated connections; more are told why */
	for (int i = 0; i < PER; i++) {
		seq = 0;
		fds[i] = tps_raw_auth_from(d.port, 3, &seq, NULL);
	}
	seq = 0;
	fd = tps_raw_auth_from(d.port, 3, &seq, &reply);
	cr_assert_eq(reply, WIRE_ERROR);
	cr_assert(tps_closed_within(fd, 3000));
	close(fd);
	/* a second address fills the table with connections that say nothing */
	for (int i = PER; i < ALL; i++) {
		seq = 0;
		fds[i] = tps_raw_auth_from(d.port, 4, &seq, NULL);
	}
	/* the table is full: a third address gets no hello until the idle ones go */
	o = tps_copts(d.port, 1, PS_SESSION_STORE);
	o.timeout_ms = 500;
	cr_assert_neq(ps_client_new(&o, &c), 0, "a client got in past a full table");
	for (int i = 0; i < ALL; i++) {
		cr_assert(tps_closed_within(fds[i], 5000), "idle connection %d was kept", i);
		close(fds[i]);
	}
	o.timeout_ms = 20000;
	cr_assert_eq(ps_client_new(&o, &c), 0);
	cr_assert_eq(ps_client_layout(c, &l), 0);
	cr_assert_eq(tps_send_round(c, 1, 1 << 20, 6), 0);
	cr_assert_eq(tps_verify(c, 1 << 20, 6), 0);
	ps_client_free(c);
	cr_assert(tps_daemon_alive(&d));
	tps_daemon_kill(&d, SIGTERM);
	cr_assert(tps_log_has(&d, "idle for 1500 ms"));
	cr_assert(tps_log_has(&d, "authenticated connections from its address"));
	unlink(d.log);
}
