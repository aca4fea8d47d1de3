/*
 * net_tcp.c - TCP and UDP sockets across `haul checkpoint` + `haul restore`
 * in the same network namespace, the process killed in between.
 *
 * Host A (th_net) runs tests/progs/net_server, host B net_client.  The
 * client fills every connection both ways while the server neither reads
 * nor writes; then the client's TCP packets to the server are dropped by an
 * nft table of A (named with the test's pid): the server's last segments
 * stay unacknowledged and the rest of its writes unsent, and the peer's
 * retransmissions cannot meet a closed port (and its RST) while no server
 * exists.  After the restore the table goes and the client reads and
 * checks every byte of both streams, opens a new connection (echo) and
 * sends a datagram: the restored listener and UDP socket work.  The server
 * compares its socket options before and after ("opts same").  Five
 * datagrams queued for the server at the freeze show what becomes of UDP
 * data in flight: they are dropped (DESIGN.md), and the test logs the count.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "th_net.h"

struct nfx {
	struct th_net net;
	char dir[96], srv[128], cli[128], img[128], log[160], pidf[128];
	pid_t srv_pid, cli_pid, restored;
};

static struct nfx F;

static void nfx_setup(void)
{
	int ret;

	memset(&F, 0, sizeof(F));
	if (geteuid())
		cr_skip_test("needs root (network namespaces, TCP_REPAIR)");
	if (system("command -v nft >/dev/null && command -v nsenter >/dev/null"))
		cr_skip_test("nft or nsenter is not installed");
	ret = th_net_create(&F.net, "sk", 0);
	if (ret == -EOPNOTSUPP)
		cr_skip_test("network namespaces are not available");
	cr_assert_eq(ret, 0, "cannot create the namespaces");
	snprintf(F.dir, sizeof(F.dir), "/tmp/haul-net-%d", (int)getpid());
	mkdir(F.dir, 0700);
	snprintf(F.srv, sizeof(F.srv), "%s/server.out", F.dir);
	snprintf(F.cli, sizeof(F.cli), "%s/client.out", F.dir);
	snprintf(F.img, sizeof(F.img), "%s/img", F.dir);
	snprintf(F.log, sizeof(F.log), "%s/haul.log", F.dir);
	snprintf(F.pidf, sizeof(F.pidf), "%s/restored.pid", F.dir);
	mkdir(F.img, 0700);
}

static void nfx_teardown(void)
{
	if (F.restored > 0)
		kill(F.restored, SIGKILL);
	if (F.srv_pid > 0) {
		th_sh("pkill -9 -P %d", (int)F.srv_pid); /* a tree's children too */
		th_kill(F.srv_pid, SIGKILL, 2000);
	}
	if (F.cli_pid > 0)
		th_kill(F.cli_pid, SIGKILL, 2000);
	th_net_destroy(&F.net); /* the nft table goes with the namespace */
	if (F.dir[0])
		th_sh("rm -rf %s", F.dir);
}

/* Drop (or stop dropping) TCP segments to port @port arriving in A. */
static void lock(const char *port, bool on)
{
	int pid = (int)getpid();

	if (on)
		cr_assert_eq(
			th_sh("ip netns exec %s nft 'add table inet hsk%d; add chain inet hsk%d in "
			      "{ type filter hook input priority 0; }; add rule inet hsk%d in "
			      "meta l4proto tcp th dport %s drop'",
			      F.net.a, pid, pid, pid, port),
			0, "cannot add the nft table");
	else
		cr_assert_eq(th_sh("ip netns exec %s nft delete table inet hsk%d", F.net.a, pid),
			     0);
}

/* Whether a network lock of haul (an nftables table haul-lock-*) is in A. */
static bool haul_lock_in_a(void)
{
	return th_sh("ip netns exec %s nft list tables | grep -q 'inet haul-lock-'", F.net.a) == 0;
}

/* Wait (up to 20 s) until haul's lock in A has dropped a packet; 0 once it has. */
static int haul_lock_dropped(void)
{
	return th_sh("for i in $(seq 400); do ip netns exec %s nft list ruleset | sed -n "
		     "'/table inet haul-lock-/,/^}/p' | grep -q 'counter packets [1-9]' && exit 0; "
		     "sleep 0.05; done; exit 1",
		     F.net.a);
}

/* haul @args in A's network namespace, output in F.log; its exit status. */
static int haul_in_a(const char *args)
{
	int st = th_sh("nsenter --net=/run/netns/%s %s %s 2>>%s", F.net.a, th_haul_bin(), args,
		       F.log);

	if (st)
		th_show_file("haul", F.log);
	return st;
}

static void spawn_pair(const char *mode, const char *bind, const char *addr, const char *nconn)
{
	char srv[256], cli[256], acc[32];
	char *sargv[] = {srv, (char *)mode, (char *)bind, "7000", (char *)nconn, NULL};
	char *cargv[] = {cli, (char *)addr, "7000", (char *)nconn, NULL};

	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(cli, sizeof(cli), "%s/net_client", th_progs_dir());
	F.srv_pid = th_spawn(F.net.a, sargv, F.srv);
	cr_assert_gt(F.srv_pid, 0);
	th_expect_line(F.srv, "listening", 10000);
	F.cli_pid = th_spawn(F.net.b, cargv, F.cli);
	cr_assert_gt(F.cli_pid, 0);
	th_expect_line(F.cli, "sent", 10000);
	snprintf(acc, sizeof(acc), "accepted %s", nconn);
	th_expect_line(F.srv, acc, 10000);
}

/*
 * The whole round trip: fill, lock (the test's table: the server's last
 * segments stay unacknowledged), checkpoint (the server dies), unlock, the
 * client's segments dropped by haul's own lock until the restore lifts it,
 * and every byte checked by both ends.
 */
static void roundtrip(const char *mode, const char *bind, const char *addr, const char *nconn)
{
	char args[512], line[256];
	int replies = 0;

	spawn_pair(mode, bind, addr, nconn);
	lock("7000", true);
	kill(F.srv_pid, SIGUSR1);
	th_expect_line(F.srv, "filled", 10000);
	kill(F.cli_pid, SIGUSR1);
	th_expect_line(F.cli, "udp sent", 10000);

	snprintf(args, sizeof(args), "checkpoint %d --images %s", (int)F.srv_pid, F.img);
	cr_assert_eq(haul_in_a(args), 0, "haul checkpoint failed");
	cr_assert_neq(th_wait_exit(F.srv_pid, 5000), -ETIMEDOUT, "the source did not die");
	F.srv_pid = 0;
	/*
	 * From here only haul's lock holds the client's segments (its probes
	 * and retransmissions): without it they would meet a closed port and
	 * draw a RST.  The image keeps the lock: a reaper (haul ps) leaves it.
	 */
	lock("7000", false);
	cr_assert(haul_lock_in_a(), "haul checkpoint left no network lock");
	cr_assert_eq(haul_in_a("ps >/dev/null"), 0);
	cr_assert(haul_lock_in_a(), "haul ps removed the lock the image keeps");
	cr_assert_eq(haul_lock_dropped(), 0, "no segment of the client met haul's lock");
	snprintf(args, sizeof(args), "restore --images %s --detach >%s", F.img, F.pidf);
	cr_assert_eq(haul_in_a(args), 0, "haul restore failed");
	F.restored = th_read_pid_file(F.pidf);
	cr_assert_gt(F.restored, 0);
	cr_assert_not(haul_lock_in_a(), "the restore did not lift the checkpoint's lock");

	kill(F.cli_pid, SIGUSR1);
	if (th_wait_file(F.cli, 0, "client ok", 60000, line, sizeof(line))) {
		th_show_file("server", F.srv);
		th_show_file("client", F.cli);
		cr_assert_fail("the client did not finish");
	}
	th_expect_line(F.srv, "all done", 10000);
	if (th_wait_file(F.srv, 0, "opts same", 100, line, sizeof(line))) {
		th_show_file("server", F.srv);
		cr_assert_fail("socket options changed across the restore");
	}
	cr_assert_neq(th_wait_file(F.srv, 0, "ERROR", 10, line, sizeof(line)), 0, "%s", line);
	th_expect_line(F.srv, "udp connected ok", 10000);
	cr_assert_eq(th_wait_file(F.cli, 0, "udp replies", 100, line, sizeof(line)), 0);
	replies = atoi(line + strlen("udp replies "));
	cr_log_info("UDP: %d of the 5 datagrams queued at the freeze came back after the restore "
		    "(%d dropped)",
		    replies - 1, 6 - replies);
	cr_expect_eq(replies, 1, "queued datagrams are documented as dropped, %d came back",
		     replies - 1);
}

Test(net_tcp, ipv4_connections_keep_every_byte_in_order_and_their_options_across_restore,
     .init = nfx_setup, .fini = nfx_teardown, .timeout = 120)
{
	roundtrip("v4", TH_IP_A, TH_IP_A, "3");
}

Test(net_tcp, ipv6_connections_and_listener_survive_checkpoint_and_restore, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 120)
{
	cr_assert_eq(th_sh("ip -n %s addr add 2001:2::1/64 dev %s nodad && ip -n %s addr add "
			   "2001:2::2/64 dev %s nodad",
			   F.net.a, F.net.va, F.net.b, F.net.vb),
		     0);
	roundtrip("v6", "2001:2::1", "2001:2::1", "2");
}

Test(net_tcp, dual_stack_listener_and_its_v4_mapped_connections_survive_restore, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 120)
{
	roundtrip("dual", "::", TH_IP_A, "2");
}

Test(net_tcp, a_connection_in_syn_sent_is_refused_by_name_and_the_process_runs_on,
     .init = nfx_setup, .fini = nfx_teardown, .timeout = 60)
{
	char prog[256], args[256], line[512];
	char *argv[] = {prog, "synsent", TH_IP_B, "7001", NULL};

	snprintf(prog, sizeof(prog), "%s/net_dial", th_progs_dir());
	/* B drops the SYNs: the connect stays in SYN_SENT */
	cr_assert_eq(th_sh("ip netns exec %s nft 'add table inet hsk%d; add chain inet hsk%d in "
			   "{ type filter hook input priority 0; }; add rule inet hsk%d in "
			   "tcp dport 7001 drop'",
			   F.net.b, (int)getpid(), (int)getpid(), (int)getpid()),
		     0);
	F.srv_pid = th_spawn(F.net.a, argv, F.srv);
	th_expect_line(F.srv, "connecting", 10000);
	snprintf(args, sizeof(args), "checkpoint %d --images %s", (int)F.srv_pid, F.img);
	cr_assert_neq(haul_in_a(args), 0, "a SYN_SENT socket was checkpointed");
	cr_assert_eq(th_wait_file(F.log, 0, "SYN_SENT", 100, line, sizeof(line)), 0,
		     "the refusal does not name the state");
	cr_expect(strstr(line, "fd 3: TCP 198.18.0.1:") && strstr(line, "<- 198.18.0.2:7001"),
		  "the refusal does not name the socket: %s", line);
	cr_assert_eq(kill(F.srv_pid, 0), 0, "the process did not run on");
}

/*
 * A connection the kernel completed while the program was not accepting
 * sits in the listener's accept queue at the stop: haul lets the program run
 * until it has accepted it, stops it again, and the connection is carried as
 * an established one; it answers after the restore.
 */
Test(net_tcp, a_connection_not_yet_accepted_at_the_stop_is_accepted_and_carried, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 120)
{
	char srv[256], dial[256], pid[16], img[160], ns[96], line[512], args[512];
	char *sargv[] = {srv, "v4", TH_IP_A, "7000", "0", NULL};
	char *nargv[] = {dial, "nap", TH_IP_A, "7000", NULL};
	char *eargv[] = {dial, "echo", TH_IP_A, "7000", NULL};
	char *hargv[] = {"/usr/bin/nsenter",
			 ns,
			 (char *)th_haul_bin(),
			 "checkpoint",
			 pid,
			 "--images",
			 img,
			 NULL};
	char nap_out[160], echo_out[160];
	pid_t napper, haul;

	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(dial, sizeof(dial), "%s/net_dial", th_progs_dir());
	snprintf(nap_out, sizeof(nap_out), "%s/nap.out", F.dir);
	snprintf(echo_out, sizeof(echo_out), "%s/echo.out", F.dir);
	snprintf(ns, sizeof(ns), "--net=/run/netns/%s", F.net.a);
	snprintf(img, sizeof(img), "%s", F.img);
	F.srv_pid = th_spawn(F.net.a, sargv, F.srv);
	th_expect_line(F.srv, "listening", 10000);
	napper = th_spawn(F.net.b, nargv, nap_out);
	th_expect_line(F.srv, "napping", 10000);
	F.cli_pid = th_spawn(F.net.b, eargv, echo_out);
	th_expect_line(echo_out, "connected", 10000);
	/* the kernel has queued it: the listener's Recv-Q is the accept queue */
	cr_assert_eq(th_sh("for i in $(seq 200); do ip netns exec %s ss -Hltn 'sport = :7000' | "
			   "grep -q '^LISTEN *1 ' && exit 0; sleep 0.05; done; exit 1",
			   F.net.a),
		     0, "the connection is not in the accept queue");
	lock("7000", true);
	snprintf(pid, sizeof(pid), "%d", (int)F.srv_pid);
	haul = th_spawn(NULL, hargv, F.log);
	cr_assert_gt(haul, 0);
	if (th_wait_file(F.log, 0, "not yet accepted", 30000, line, sizeof(line))) {
		th_show_file("haul", F.log);
		cr_assert_fail("haul did not wait for the program to accept");
	}
	kill(F.srv_pid, SIGUSR2); /* it accepts again */
	cr_assert_eq(th_wait_exit(haul, 60000), 0, "haul checkpoint failed");
	th_expect_line(F.srv, "awake", 1000);
	cr_assert_neq(th_wait_exit(F.srv_pid, 5000), -ETIMEDOUT, "the source did not die");
	F.srv_pid = 0;
	snprintf(args, sizeof(args), "restore --images %s --detach >%s", F.img, F.pidf);
	cr_assert_eq(haul_in_a(args), 0, "haul restore failed");
	F.restored = th_read_pid_file(F.pidf);
	lock("7000", false);
	kill(F.cli_pid, SIGUSR1);
	if (th_wait_file(echo_out, 0, "echo ok", 30000, line, sizeof(line))) {
		th_show_file("server", F.srv);
		th_show_file("echo", echo_out);
		cr_assert_fail(
			"the connection queued at the stop does not answer after the restore");
	}
	th_kill(napper, SIGKILL, 2000);
}

/*
 * Half-closed connections: the peer shut down its side while the server
 * was not reading (CLOSE_WAIT, its "hello" unread).  After the restore the
 * server reads "hello", then EOF, echoes and closes: the peer gets both.
 */
Test(net_tcp, a_connection_the_peer_half_closed_keeps_its_data_and_its_eof, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 120)
{
	char srv[256], dial[256], line[512], args[512], nap_out[160], hc_out[160];
	char *sargv[] = {srv, "v4", TH_IP_A, "7000", "0", NULL};
	char *nargv[] = {dial, "nap", TH_IP_A, "7000", NULL};
	char *hargv[] = {dial, "halfclose", TH_IP_A, "7000", NULL};
	pid_t napper;

	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(dial, sizeof(dial), "%s/net_dial", th_progs_dir());
	snprintf(nap_out, sizeof(nap_out), "%s/nap.out", F.dir);
	snprintf(hc_out, sizeof(hc_out), "%s/halfclose.out", F.dir);
	F.srv_pid = th_spawn(F.net.a, sargv, F.srv);
	th_expect_line(F.srv, "listening", 10000);
	F.cli_pid = th_spawn(F.net.b, hargv, hc_out);
	th_expect_line(hc_out, "connected", 10000);
	napper = th_spawn(F.net.b, nargv, nap_out);
	th_expect_line(F.srv, "napping", 10000);
	kill(F.cli_pid, SIGUSR1);
	th_expect_line(hc_out, "shut", 10000);
	cr_assert_eq(th_sh("for i in $(seq 200); do ip netns exec %s ss -Htn state close-wait | "
			   "grep -q . && exit 0; sleep 0.05; done; exit 1",
			   F.net.a),
		     0, "the server's connection is not in CLOSE_WAIT");
	lock("7000", true);
	snprintf(args, sizeof(args), "checkpoint %d --images %s", (int)F.srv_pid, F.img);
	cr_assert_eq(haul_in_a(args), 0, "haul checkpoint failed");
	cr_assert_neq(th_wait_exit(F.srv_pid, 5000), -ETIMEDOUT, "the source did not die");
	F.srv_pid = 0;
	snprintf(args, sizeof(args), "restore --images %s --detach >%s", F.img, F.pidf);
	cr_assert_eq(haul_in_a(args), 0, "haul restore failed");
	F.restored = th_read_pid_file(F.pidf);
	cr_assert_gt(F.restored, 0);
	lock("7000", false);
	kill(F.restored, SIGUSR2); /* it reads again */
	if (th_wait_file(hc_out, 0, "halfclose ok", 30000, line, sizeof(line))) {
		th_show_file("server", F.srv);
		th_show_file("dialer", hc_out);
		cr_assert_fail("the half-closed connection lost its data or its EOF");
	}
	th_kill(napper, SIGKILL, 2000);
}

/*
 * The program shut down its side (FIN sent and acknowledged: FIN_WAIT2)
 * and the peer goes on sending: after the restore the server receives what
 * the peer sends, and the peer sees the server's EOF only once.
 */
Test(net_tcp, a_connection_the_program_half_closed_still_receives_after_restore, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 120)
{
	char srv[256], dial[256], line[512], args[512], pc_out[160];
	char *sargv[] = {srv, "v4", TH_IP_A, "7000", "0", NULL};
	char *pargv[] = {dial, "peerclose", TH_IP_A, "7000", NULL};

	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(dial, sizeof(dial), "%s/net_dial", th_progs_dir());
	snprintf(pc_out, sizeof(pc_out), "%s/peerclose.out", F.dir);
	F.srv_pid = th_spawn(F.net.a, sargv, F.srv);
	th_expect_line(F.srv, "listening", 10000);
	F.cli_pid = th_spawn(F.net.b, pargv, pc_out);
	th_expect_line(pc_out, "connected", 10000);
	kill(F.cli_pid, SIGUSR1);
	th_expect_line(pc_out, "eof", 10000);
	cr_assert_eq(th_sh("for i in $(seq 200); do ip netns exec %s ss -Htn state fin-wait-2 | "
			   "grep -q . && exit 0; sleep 0.05; done; exit 1",
			   F.net.a),
		     0, "the server's connection is not in FIN_WAIT2");
	lock("7000", true);
	snprintf(args, sizeof(args), "checkpoint %d --images %s", (int)F.srv_pid, F.img);
	cr_assert_eq(haul_in_a(args), 0, "haul checkpoint failed");
	cr_assert_neq(th_wait_exit(F.srv_pid, 5000), -ETIMEDOUT, "the source did not die");
	F.srv_pid = 0;
	snprintf(args, sizeof(args), "restore --images %s --detach >%s", F.img, F.pidf);
	cr_assert_eq(haul_in_a(args), 0, "haul restore failed");
	F.restored = th_read_pid_file(F.pidf);
	cr_assert_gt(F.restored, 0);
	lock("7000", false);
	kill(F.cli_pid, SIGUSR1);
	if (th_wait_file(pc_out, 0, "peerclose ok", 30000, line, sizeof(line)) ||
	    th_wait_file(F.srv, 0, "late more", 10000, line, sizeof(line))) {
		th_show_file("server", F.srv);
		th_show_file("dialer", pc_out);
		cr_assert_fail("the half-closed connection did not carry the peer's data or end");
	}
}

/*
 * A listener another process holds too (systemd's socket activation, a
 * parent): moving it would leave two listeners.  Here the test itself takes
 * a copy (pidfd_getfd); the precheck refuses, naming the fd and the holder.
 */
Test(net_tcp, a_listener_another_process_holds_is_refused_by_name, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 60)
{
	char srv[256], args[256], line[512], want[64];
	char *sargv[] = {srv, "v4", TH_IP_A, "7000", "0", NULL};
	int pidfd, copy;

	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	F.srv_pid = th_spawn(F.net.a, sargv, F.srv);
	th_expect_line(F.srv, "listening", 10000);
	pidfd = (int)syscall(SYS_pidfd_open, F.srv_pid, 0);
	cr_assert_geq(pidfd, 0);
	copy = (int)syscall(SYS_pidfd_getfd, pidfd, 3, 0); /* the listener: its first socket */
	cr_assert_geq(copy, 0, "cannot copy the listener: %s", strerror(errno));
	snprintf(args, sizeof(args), "checkpoint %d --images %s", (int)F.srv_pid, F.img);
	cr_assert_neq(haul_in_a(args), 0, "a shared listener was checkpointed");
	snprintf(want, sizeof(want), "shared with pid %d", (int)getpid());
	cr_assert_eq(th_wait_file(F.log, 0, want, 100, line, sizeof(line)), 0,
		     "the refusal does not name the holder");
	cr_expect(strstr(line, "fd 3 is a socket"), "%s", line);
	cr_assert_eq(kill(F.srv_pid, 0), 0, "the process did not run on");
	close(copy);
	close(pidfd);
}

/*
 * checkpoint --leave-running: the dump puts the connections in repair mode;
 * they must leave it before the process runs on, or they never send again.
 */
Test(net_tcp, connections_work_on_after_checkpoint_leave_running, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 120)
{
	char args[512], line[256];

	spawn_pair("v4", TH_IP_A, TH_IP_A, "2");
	lock("7000", true);
	kill(F.srv_pid, SIGUSR1);
	th_expect_line(F.srv, "filled", 10000);
	snprintf(args, sizeof(args), "checkpoint %d --images %s --leave-running", (int)F.srv_pid,
		 F.img);
	cr_assert_eq(haul_in_a(args), 0, "haul checkpoint --leave-running failed");
	cr_assert_eq(kill(F.srv_pid, 0), 0, "the process did not run on");
	lock("7000", false);
	kill(F.cli_pid, SIGUSR1);
	th_expect_line(F.cli, "udp sent", 10000);
	kill(F.cli_pid, SIGUSR1);
	if (th_wait_file(F.cli, 0, "client ok", 60000, line, sizeof(line))) {
		th_show_file("server", F.srv);
		th_show_file("client", F.cli);
		cr_assert_fail("the connections do not work after checkpoint --leave-running");
	}
	th_expect_line(F.srv, "all done", 10000);
	th_expect_line(F.srv, "opts same", 100); /* SO_REUSEADDR back after repair mode */
}

/* A server (nothing queued) and one echo connection from B to it: "connected". */
static void spawn_echo(char *echo_out, size_t len)
{
	static char srv[256], dial[256];
	char *sargv[] = {srv, "v4", TH_IP_A, "7000", "0", NULL};
	char *eargv[] = {dial, "echo", TH_IP_A, "7000", NULL};

	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(dial, sizeof(dial), "%s/net_dial", th_progs_dir());
	snprintf(echo_out, len, "%s/echo.out", F.dir);
	F.srv_pid = th_spawn(F.net.a, sargv, F.srv);
	th_expect_line(F.srv, "listening", 10000);
	F.cli_pid = th_spawn(F.net.b, eargv, echo_out);
	th_expect_line(echo_out, "connected", 10000);
}

/* The echo connection answers (30 s). */
static void expect_echo(const char *echo_out)
{
	char line[256];

	kill(F.cli_pid, SIGUSR1);
	if (th_wait_file(echo_out, 0, "echo ok", 30000, line, sizeof(line))) {
		th_show_file("server", F.srv);
		th_show_file("echo", echo_out);
		th_show_file("haul", F.log);
		cr_assert_fail("the echo connection does not answer");
	}
}

/* haul checkpoint of the server (@extra: more options), and the server gone. */
static void checkpoint_server(const char *extra)
{
	char args[512];

	snprintf(args, sizeof(args), "checkpoint %d --images %s %s", (int)F.srv_pid, F.img, extra);
	cr_assert_eq(haul_in_a(args), 0, "haul checkpoint failed");
	cr_assert_neq(th_wait_exit(F.srv_pid, 5000), -ETIMEDOUT, "the source did not die");
	F.srv_pid = 0;
}

/* haul restore of the server; its pid in F.restored. */
static void restore_server(void)
{
	char args[512];

	snprintf(args, sizeof(args), "restore --images %s --detach >%s", F.img, F.pidf);
	cr_assert_eq(haul_in_a(args), 0, "haul restore failed");
	F.restored = th_read_pid_file(F.pidf);
	cr_assert_gt(F.restored, 0);
}

/* A lock whose image is gone holds nothing worth keeping: the next haul removes it. */
Test(net_tcp, the_lock_of_a_removed_image_is_lifted_by_the_next_haul, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 60)
{
	char echo_out[160];

	spawn_echo(echo_out, sizeof(echo_out));
	checkpoint_server("");
	cr_assert(haul_lock_in_a(), "haul checkpoint left no network lock");
	cr_assert_eq(th_sh("rm -rf %s/*", F.img), 0);
	cr_assert_eq(haul_in_a("ps >/dev/null"), 0);
	cr_assert_not(haul_lock_in_a(), "the lock of a removed image outlived the next haul");
}

/* --leave-running: the process runs on, so no lock outlives the checkpoint. */
Test(net_tcp, a_checkpoint_that_leaves_the_process_running_leaves_no_lock, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 60)
{
	char echo_out[160], args[256];

	spawn_echo(echo_out, sizeof(echo_out));
	snprintf(args, sizeof(args), "checkpoint %d --images %s --leave-running", (int)F.srv_pid,
		 F.img);
	cr_assert_eq(haul_in_a(args), 0, "haul checkpoint failed");
	cr_assert_not(haul_lock_in_a(), "a lock outlived a checkpoint that left the process "
					"running");
	expect_echo(echo_out);
}

/*
 * haul killed after the lock and before the commit (HAUL_FAULT): the image
 * is not made, the process runs on, and the survivor lifts the lock, so
 * the connection answers.
 */
Test(net_tcp, a_haul_killed_in_its_checkpoint_leaves_no_lock_and_the_process_runs_on,
     .init = nfx_setup, .fini = nfx_teardown, .timeout = 60)
{
	char echo_out[160];
	int st;

	spawn_echo(echo_out, sizeof(echo_out));
	st = th_sh("HAUL_FAULT=ckpt-kill:staged nsenter --net=/run/netns/%s %s checkpoint %d "
		   "--images %s 2>>%s",
		   F.net.a, th_haul_bin(), (int)F.srv_pid, F.img, F.log);
	cr_assert_eq(st, 128 + SIGKILL, "haul did not reach ckpt-kill:staged (%d)", st);
	cr_assert_eq(th_sh("for i in $(seq 200); do ip netns exec %s nft list tables | grep -q "
			   "'inet haul-lock-' || exit 0; sleep 0.05; done; exit 1",
			   F.net.a),
		     0, "the lock outlived the haul that took it");
	cr_assert_eq(kill(F.srv_pid, 0), 0, "the process did not run on");
	expect_echo(echo_out);
}

/*
 * A restore that fails (the server's port taken meanwhile) leaves the
 * checkpoint's lock, so the peer is still not reset; the next restore
 * lifts it, and the connection answers.
 */
Test(net_tcp, a_failed_restore_keeps_the_lock_and_the_next_restore_lifts_it, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 90)
{
	char echo_out[160], blk_out[160], srv[256], args[512];
	char *bargv[] = {srv, "v4", TH_IP_A, "7000", "0", NULL};
	pid_t blocker;

	spawn_echo(echo_out, sizeof(echo_out));
	checkpoint_server("");
	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(blk_out, sizeof(blk_out), "%s/blocker.out", F.dir);
	blocker = th_spawn(F.net.a, bargv, blk_out);
	th_expect_line(blk_out, "listening", 10000);
	snprintf(args, sizeof(args), "restore --images %s --detach >%s", F.img, F.pidf);
	cr_assert_neq(th_sh("nsenter --net=/run/netns/%s %s %s 2>>%s", F.net.a, th_haul_bin(), args,
			    F.log),
		      0, "the restore succeeded with its port taken");
	cr_assert(haul_lock_in_a(), "a failed restore lifted the checkpoint's lock");
	th_kill(blocker, SIGKILL, 2000);
	restore_server();
	cr_assert_not(haul_lock_in_a(), "the restore did not lift the checkpoint's lock");
	expect_echo(echo_out);
}

/* --no-network-lock: none is taken, and an idle connection still comes back. */
Test(net_tcp, no_network_lock_takes_none_and_an_idle_connection_comes_back, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 60)
{
	char echo_out[160];

	spawn_echo(echo_out, sizeof(echo_out));
	checkpoint_server("--no-network-lock");
	cr_assert_not(haul_lock_in_a(), "--no-network-lock took a lock");
	restore_server();
	expect_echo(echo_out);
}

/*
 * A process in a network namespace it made itself (unshare -n): the
 * namespace dies with it and haul does not rebuild one, so the restore
 * would put it on another network: refused by name, and it runs on.
 */
Test(net_tcp, a_process_in_a_network_namespace_of_its_own_is_refused_and_runs_on, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 60)
{
	char out[160], line[512], args[512];
	char *argv[] = {"/usr/bin/unshare", "-n", "/bin/sleep", "60", NULL};

	snprintf(out, sizeof(out), "%s/own.out", F.dir);
	F.srv_pid = th_spawn(NULL, argv, out);
	cr_assert_gt(F.srv_pid, 0);
	cr_assert_eq(
		th_sh("for i in $(seq 100); do [ \"$(readlink /proc/%d/ns/net)\" != "
		      "\"$(readlink /proc/self/ns/net)\" ] && exit 0; sleep 0.05; done; exit 1",
		      (int)F.srv_pid),
		0, "unshare -n did not give it a namespace");
	snprintf(args, sizeof(args), "%s checkpoint %d --images %s 2>>%s", th_haul_bin(),
		 (int)F.srv_pid, F.img, F.log);
	cr_assert_neq(th_sh("%s", args), 0, "a process in a namespace of its own was checkpointed");
	cr_assert_eq(
		th_wait_file(F.log, 0, "network namespace of its own", 100, line, sizeof(line)), 0,
		"the refusal does not say why");
	cr_assert_eq(kill(F.srv_pid, 0), 0, "the process did not run on");
}

/* A tree with a child in another network namespace: a tree comes back in one, so refused. */
Test(net_tcp, a_tree_across_network_namespaces_is_refused_and_runs_on, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 60)
{
	char out[160], line[512], script[256], args[512];
	char *argv[] = {"/bin/sh", "-c", script, NULL};

	snprintf(script, sizeof(script), "nsenter --net=/run/netns/%s /bin/sleep 60 & wait",
		 F.net.a);
	snprintf(out, sizeof(out), "%s/tree.out", F.dir);
	F.srv_pid = th_spawn(NULL, argv, out);
	cr_assert_gt(F.srv_pid, 0);
	cr_assert_eq(th_sh("for i in $(seq 100); do pgrep -P %d -x sleep >/dev/null && exit 0; "
			   "sleep 0.05; done; exit 1",
			   (int)F.srv_pid),
		     0, "the child did not start");
	snprintf(args, sizeof(args), "%s checkpoint %d --images %s 2>>%s", th_haul_bin(),
		 (int)F.srv_pid, F.img, F.log);
	cr_assert_neq(th_sh("%s", args), 0, "a tree across namespaces was checkpointed");
	cr_assert_eq(th_wait_file(F.log, 0, "another network namespace", 100, line, sizeof(line)),
		     0, "the refusal does not say why");
	cr_assert_eq(kill(F.srv_pid, 0), 0, "the root did not run on");
	cr_assert_eq(th_sh("pgrep -P %d -x sleep >/dev/null", (int)F.srv_pid), 0,
		     "the child did not run on");
	th_sh("pkill -P %d -x sleep", (int)F.srv_pid);
}

/*
 * haul outside the processes' network namespace (haul checkpoint from the
 * host, the tree in A): --leave-running locks the tree's loopback pair in
 * A, and lifts it there too (a lift from haul's own namespace finds no
 * table and the pair's traffic stays dropped), so the pair carries on.
 */
Test(net_tcp, a_lock_taken_in_the_processes_namespace_is_lifted_there, .init = nfx_setup,
     .fini = nfx_teardown, .timeout = 90)
{
	char prog[256], dir[160], out[192], c1[192], line[256];
	char *argv[] = {prog, dir, "loopback", NULL};
	int before;

	snprintf(prog, sizeof(prog), "%s/rst_tree", th_progs_dir());
	snprintf(dir, sizeof(dir), "%s/tree", F.dir);
	snprintf(out, sizeof(out), "%s/tree.out", F.dir);
	snprintf(c1, sizeof(c1), "%s/c1.out", dir);
	cr_assert_eq(mkdir(dir, 0755), 0);
	F.srv_pid = th_spawn(F.net.a, argv, out);
	cr_assert_gt(F.srv_pid, 0);
	cr_assert_eq(th_wait_file(c1, 0, "tick", 10000, line, sizeof(line)), 0, "no tick");
	cr_assert_eq(th_sh("%s checkpoint %d --images %s --leave-running 2>>%s", th_haul_bin(),
			   (int)F.srv_pid, F.img, F.log),
		     0, "haul checkpoint failed");
	cr_assert_eq(th_wait_file(F.log, 0, "network lock haul-lock-", 100, line, sizeof(line)), 0,
		     "no lock was taken for the loopback pair");
	cr_assert_not(haul_lock_in_a(), "the lock stayed in the processes' namespace");
	before = th_sh("exit $(grep -c tick %s)", c1);
	cr_assert_eq(th_sh("for i in $(seq 200); do [ $(grep -c tick %s) -gt %d ] && exit 0; "
			   "sleep 0.05; done; exit 1",
			   c1, before + 5),
		     0, "the pair stopped ticking after the checkpoint");
	cr_expect_neq(th_sh("grep -q BAD %s/*.out", dir), 0, "a connection failed");
	th_sh("touch %s/stop", dir);
}
