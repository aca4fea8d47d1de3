/*
 * net_mig.c - `haul migrate --move-address` of a TCP/UDP server with its
 * clients connected, through the real network lock, and every crash point
 * of the migration with those connections open.
 *
 * The hosts are th_mig_setup_svc's: the server (tests/progs/net_server)
 * listens on the service address on A, the client (net_client) runs on C,
 * bridged to A and B.  Nothing here moves an address or writes an nft rule:
 * haul does both.  Before the migration both ends fill both streams (each
 * side's receive queue unread, its send queue full), five datagrams wait at
 * the server's UDP socket, and A's link to C runs at 200 kbit/s (a tbf
 * qdisc): the server's last segments are in flight, sent but
 * unacknowledged, when the process freezes (checked with ss while haul is
 * parked there).  The link is fast again once haul reaches its fault point.
 *
 * Afterwards the server runs at exactly one place, the service address is
 * there and only there, no nftables table or rule is left on any host, and
 * the client reads and checks every byte of both streams (no reset, no early
 * EOF), opens a new connection (the listener) and gets a datagram back.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "haul/haul_int.h"
#include "th_mig.h"

#define PORT "7000"

static struct th_mig M;
static char srv_out[128], cli_out[128];
static pid_t cli = -1;

static void setup(void)
{
	th_mig_setup_svc(&M);
	snprintf(srv_out, sizeof(srv_out), "%s/server.out", M.dir);
	snprintf(cli_out, sizeof(cli_out), "%s/client.out", M.dir);
}

static void teardown(void)
{
	if (cli > 0)
		th_kill(cli, SIGKILL, 2000);
	cli = -1;
	unsetenv("HAUL_FAULT");
	th_mig_teardown(&M); /* the server wherever it runs (its tag), C, A and B */
}

static void wait_line(const char *path, const char *needle, int ms)
{
	char line[256];

	if (th_wait_file(path, 0, needle, ms, line, sizeof(line))) {
		th_sh("sed 's/^/out: /' %s >&2", path);
		cr_assert_fail("no \"%s\" in %s", needle, path);
	}
}

/* Read haul's lines on @fd until one holds @needle; each goes to stderr. */
static bool haul_says(int fd, const char *needle, int ms)
{
	char line[512];

	for (int waited = 0; waited < ms; waited += 100) {
		int ret = th_wait_line(fd, "", 100, line, sizeof(line));

		if (ret == -EPIPE)
			return false;
		if (ret)
			continue;
		fprintf(stderr, "haul: %s\n", line);
		if (strstr(line, needle))
			return true;
	}
	return false;
}

/*
 * What A sends towards C trickles at 200 kbit/s (or at the link's speed
 * again): the server's segments queue behind it, sent and unacknowledged.
 */
static void slow_link(bool on)
{
	if (on)
		cr_assert_eq(th_sh("ip netns exec %s tc qdisc add dev %s root tbf rate 200kbit "
				   "burst 1600 latency 30s",
				   M.net.a, M.ca),
			     0, "cannot delay %s in %s", M.ca, M.net.a);
	else
		th_sh("ip netns exec %s tc qdisc del dev %s root 2>/dev/null", M.net.a, M.ca);
}

/*
 * The server on A at @addr (net_server mode @mode), the client on C with
 * two connections, both streams full both ways, five datagrams queued.
 */
static void serve(const char *mode, const char *addr)
{
	char srv[256], cl[256];
	char *sargv[] = {srv, (char *)mode, (char *)addr, PORT, "2", M.tag, NULL};
	char *cargv[] = {cl, (char *)addr, PORT, "2", NULL};

	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(cl, sizeof(cl), "%s/net_client", th_progs_dir());
	M.wl_pid = th_spawn(M.net.a, sargv, srv_out);
	cr_assert_gt(M.wl_pid, 0);
	wait_line(srv_out, "listening", 10000);
	cli = th_spawn(M.client, cargv, cli_out);
	cr_assert_gt(cli, 0);
	wait_line(cli_out, "sent", 10000);
	wait_line(srv_out, "accepted 2", 10000);
	slow_link(true);
	kill(M.wl_pid, SIGUSR1);
	wait_line(srv_out, "filled", 10000);
	kill(cli, SIGUSR1);
	wait_line(cli_out, "udp sent", 10000);
}

/*
 * While the process is frozen: both of its connections hold unread
 * received data, sent-but-unacknowledged data and unsent data.
 */
static void assert_queues_both_ways(void)
{
	const char *q = "ss -Htn state established '( sport = :" PORT " )'";

	th_sh("ip netns exec %s %s -i >&2", M.net.a, q);
	cr_assert_eq(th_sh("ip netns exec %s %s -i | grep -c 'unacked:' | grep -qx 2 && "
			   "ip netns exec %s %s -i | grep -c 'notsent:' | grep -qx 2 && "
			   "ip netns exec %s %s | awk '$1 > 0' | wc -l | grep -qx 2",
			   M.net.a, q, M.net.a, q, M.net.a, q),
		     0, "the frozen server's queues are not full both ways");
}

/* The netns inode of the one copy of the server, or 0 (with its count in *@n). */
static unsigned long server_netns(int *n)
{
	char ns[64];
	struct stat st;
	pid_t there = 0;

	*n = th_count_procs(M.tag, &there);
	if (*n != 1)
		return 0;
	snprintf(ns, sizeof(ns), "/proc/%d/ns/net", (int)there);
	if (stat(ns, &st))
		return 0;
	return (unsigned long)st.st_ino;
}

static bool no_nft(struct th_mig *m, const char *unused)
{
	(void)unused;
	return th_mig_no_nft(m);
}

static bool only_at_a(struct th_mig *m, const char *pfx)
{
	return th_mig_addr_only_at(m, pfx, true);
}

/*
 * The server runs at B (@at_b) or A only, @pfx only there, no nft rule on
 * any host; then the client finishes: every byte of both streams, a new
 * connection, a datagram answered.
 */
static void assert_served(bool at_b, const char *pfx)
{
	char line[512];
	int n;

	cr_assert(th_mig_eventually(no_nft, &M, NULL, 5000), "an nftables rule is left");
	cr_assert(th_mig_addr_only_at(&M, pfx, !at_b), "%s is not on %s only", pfx,
		  at_b ? "the target" : "the source");
	if (server_netns(&n) != (at_b ? M.net_b : M.net_a)) {
		if (!at_b && M.wl_pid > 0)
			cr_log_error("the source's status: %d", th_wait_exit(M.wl_pid, 100));
		th_sh("sed 's/^/server: /' %s >&2", srv_out);
		cr_assert_fail("%d copies, not one on %s", n, at_b ? "B" : "A");
	}
	kill(cli, SIGUSR1);
	if (th_wait_file(cli_out, 0, "client ok", 90000, line, sizeof(line))) {
		th_sh("sed 's/^/server: /' %s >&2; sed 's/^/client: /' %s >&2", srv_out, cli_out);
		cr_assert_fail("the client did not finish its exchange");
	}
	wait_line(srv_out, "all done", 10000);
	wait_line(srv_out, "opts same", 100);
	wait_line(srv_out, "udp connected ok", 10000);
	cr_assert_neq(th_wait_file(srv_out, 0, "ERROR", 10, line, sizeof(line)), 0, "server: %s",
		      line);
	cr_assert_neq(th_wait_file(cli_out, 0, "ERROR", 10, line, sizeof(line)), 0, "client: %s",
		      line);
	cr_assert_eq(server_netns(&n), at_b ? M.net_b : M.net_a, "the server moved afterwards");
}

/* haul migrate --move-address @pfx, parked 3 s at the freeze to look at the queues. */
static void migrate_server(const char *pfx)
{
	const char *extra[] = {"--move-address", pfx, NULL};
	int fd, st;
	pid_t haul;

	setenv("HAUL_FAULT", "stall:frozen:3000", 1);
	haul = th_mig_haul(&M, &fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(haul, 0);
	if (!haul_says(fd, "stalled at frozen", 60000))
		cr_assert_fail("the migration did not reach the freeze");
	assert_queues_both_ways();
	slow_link(false);
	st = th_wait_exit(haul, 90000);
	if (st)
		haul_says(fd, "\n", 100);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate failed (%d)", st);
	cr_assert_neq(th_wait_exit(M.wl_pid, 5000), -ETIMEDOUT, "the source did not die");
	M.wl_pid = 0;
}

Test(net_mig, a_server_moves_with_its_connections_listener_and_udp_socket, .init = setup,
     .fini = teardown, .timeout = 240)
{
	serve("v4", TH_SVC_ADDR);
	migrate_server(TH_SVC_PFX);
	assert_served(true, TH_SVC_PFX);
	cr_assert(th_mig_client_neigh_is_b(&M, TH_SVC_ADDR), "the client does not reach B");
}

Test(net_mig, an_ipv6_server_moves_with_its_connections_listener_and_udp_socket, .init = setup,
     .fini = teardown, .timeout = 240)
{
	th_mig_svc_ipv6(&M);
	serve("v6", TH_SVC6_ADDR);
	migrate_server(TH_SVC6_PFX);
	assert_served(true, TH_SVC6_PFX);
	cr_assert(th_mig_client_neigh_is_b(&M, TH_SVC6_ADDR), "the client does not reach B");
}

/* ---- crash points with the connections open ------------------------------------ */

enum blow {
	KILL_HAUL,
	KILL_PAGESERVER,
	CUT_LINK,
	NOTHING
};

/* A failure before the restore: haul, or its fault, ends it; the source runs on. */
struct crash {
	char fault[32]; /* HAUL_FAULT */
	enum blow blow; /* done at the stall ("stall:..."), or nothing */
	int status;	/* haul's exit status */
};

ParameterizedTestParameters(net_mig,
			    a_failed_switchover_leaves_the_server_and_its_clients_at_the_source)
{
	static struct crash c[] = {
		{"stall:frozen", KILL_HAUL, 128 + SIGKILL},
		{"stall:seized", KILL_HAUL, 128 + SIGKILL},
		{"stall:state", KILL_HAUL, 128 + SIGKILL},
		{"kill:inject:seize:2", NOTHING, 128 + SIGKILL},
		{"kill:inject:call:7", NOTHING, 128 + SIGKILL},
		{"kill:inject:unhold:2", NOTHING, 128 + SIGKILL},
		{"stall:frozen:2500", KILL_PAGESERVER, 1},
		{"stall:frozen:2500", CUT_LINK, 1},
		{"corrupt-state", NOTHING, 1},
	};

	return cr_make_param_array(struct crash, c, sizeof(c) / sizeof(c[0]));
}

ParameterizedTest(struct crash *c, net_mig,
		  a_failed_switchover_leaves_the_server_and_its_clients_at_the_source,
		  .init = setup, .fini = teardown, .timeout = 240)
{
	const char *extra[] = {"--move-address", TH_SVC_PFX, "--timeout", "1000", NULL};
	int fd, st;
	pid_t haul;

	cr_log_info("%s, then %s", c->fault,
		    (const char *[]){"haul killed", "page server killed", "link cut",
				     "nothing"}[c->blow]);
	serve("v4", TH_SVC_ADDR);
	setenv("HAUL_FAULT", c->fault, 1);
	haul = th_mig_haul(&M, &fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(haul, 0);
	if (!strncmp(c->fault, "stall:", 6) && !haul_says(fd, "stalled at", 60000))
		cr_assert_fail("haul never reached %s", c->fault);
	/*
	 * The page server or the link go at once: the lock must not outlast the
	 * server's TCP_USER_TIMEOUT (12.3 s) with its retransmissions backed off
	 * (the last one before it at 6.2 s of silence); haul is parked meanwhile.
	 */
	if (c->blow == KILL_PAGESERVER) {
		th_kill(M.ps_pid, SIGKILL, 2000);
		M.ps_pid = 0;
	} else if (c->blow == CUT_LINK)
		cr_assert_eq(th_net_link(&M.net, false), 0);
	if (c->blow != NOTHING) {
		cr_assert_not(th_mig_has_addr(M.net.a, TH_SVC_PFX),
			      "the address is at the source while it is frozen");
		cr_assert_not(th_mig_no_nft(&M), "no network lock while frozen");
	}
	slow_link(false);
	if (c->blow == KILL_HAUL)
		kill(haul, SIGKILL);
	st = th_wait_exit(haul, 60000);
	if (st != c->status)
		haul_says(fd, "\n", 100);
	close(fd);
	cr_assert_eq(st, c->status, "haul ended with %d, not %d", st, c->status);
	/* the survivor or haul's undo: the address back, the lock lifted, the source thawed */
	cr_assert(th_mig_eventually(only_at_a, &M, TH_SVC_PFX, 5000),
		  "the address is not back at the source only");
	assert_served(false, TH_SVC_PFX);
}

/* The migration cgroup of the source is frozen (DESIGN.md "In doubt"). */
static bool source_frozen(void)
{
	struct haul_cg_mounts mnt;

	if (haul_cg_probe(&mnt) || !mnt.v2[0])
		return true; /* v1: the freezer state is not in cgroup.events */
	return th_sh("grep -qx 'frozen 1' %s/haul/mig-%d/cgroup.events", mnt.v2, (int)M.wl_pid) ==
	       0;
}

/* Start the migration with HAUL_FAULT=@fault and kill haul where it stalls. */
static void kill_haul_at(const char *fault)
{
	const char *extra[] = {"--move-address", TH_SVC_PFX, NULL};
	int fd;
	pid_t haul;

	serve("v4", TH_SVC_ADDR);
	setenv("HAUL_FAULT", fault, 1);
	haul = th_mig_haul(&M, &fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(haul, 0);
	if (!haul_says(fd, "stalled at", 60000))
		cr_assert_fail("haul never reached %s", fault);
	slow_link(false);
	th_kill(haul, SIGKILL, 2000);
	close(fd);
}

static bool no_copy_at_b(struct th_mig *m, const char *unused)
{
	int n;

	(void)unused;
	return server_netns(&n) == m->net_a;
}

/*
 * In doubt (DESIGN.md crash points, `stall:restored` with --move-address):
 * the target kills its copy, takes the address off and lifts its lock; the
 * source stays frozen, its lock lifted, the address on neither host.  The
 * operator, seeing no copy at the target, thaws the source and puts the
 * address back (as haul's message says): the server runs there, alone.
 * Its connections do not survive that thaw: their sockets stay in TCP
 * repair mode (in doubt nothing may take them out, in case the target
 * runs), which DESIGN.md "In doubt" says.
 */
Test(net_mig, haul_killed_before_the_commit_leaves_the_server_in_doubt_frozen_at_the_source,
     .init = setup, .fini = teardown, .timeout = 240)
{
	int n;

	kill_haul_at("stall:restored");
	cr_assert(th_mig_eventually(no_nft, &M, NULL, 5000), "an nftables rule is left");
	cr_assert(th_mig_eventually(no_copy_at_b, &M, NULL, 5000),
		  "the target kept its uncommitted copy");
	cr_assert_not(th_mig_has_addr(M.net.b, TH_SVC_PFX), "the target kept the address");
	cr_assert_not(th_mig_has_addr(M.net.a, TH_SVC_PFX), "the in-doubt source got it back");
	cr_assert(source_frozen(), "the in-doubt source is not frozen");

	th_mig_resolve_in_doubt(&M, false);
	cr_assert_eq(th_sh("ip -n %s addr add " TH_SVC_PFX " dev %s", M.net.a, M.ca), 0);
	cr_assert_not(source_frozen(), "the source is still frozen after the thaw");
	cr_assert_eq(server_netns(&n), M.net_a, "%d copies, not one on A", n);
	cr_assert(th_mig_no_nft(&M), "an nftables rule is left");
}

/*
 * After the commit (`stall:committed`): the target runs the server with the
 * address, no lock on either side; the source is frozen and the operator
 * kills it.  The clients carry on at the target.
 */
Test(net_mig, haul_killed_after_the_commit_leaves_the_server_and_its_clients_at_the_target,
     .init = setup, .fini = teardown, .timeout = 240)
{
	kill_haul_at("stall:committed");
	cr_assert(source_frozen(), "the source is not frozen after the commit");
	th_mig_resolve_in_doubt(&M, true);
	M.wl_pid = 0;
	assert_served(true, TH_SVC_PFX);
}

/* ---- what a client waits for ---------------------------------------------------- */

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

/*
 * A request the lock drops (sent while the source is parked frozen for
 * 2.2 s) is answered as soon as the server runs at the target, not at the
 * client's next retransmission (an RTO of 200-300 ms, doubling: the
 * retransmissions come 1.4-2.1 s and 3-4.5 s after the send, none near the
 * resume): haul records the dropped segment and sends it again after the
 * switch.  The bound is generous (the answer within
 * 50 ms of haul's exit, which follows the resume and the commit): it checks
 * the mechanism, not a speed.
 */
Test(net_mig, a_request_sent_during_the_lock_is_answered_at_the_resume, .init = setup,
     .fini = teardown, .timeout = 180)
{
	const char *extra[] = {"--move-address", TH_SVC_PFX, NULL};
	char srv[256], dial[256], dial_out[160], line[512];
	char *sargv[] = {srv, "v4", TH_SVC_ADDR, PORT, "0", M.tag, NULL};
	char *dargv[] = {dial, "echo", TH_SVC_ADDR, PORT, NULL};
	double sent, done, answer_ms;
	const char *in;
	int fd, st;
	pid_t haul;

	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(dial, sizeof(dial), "%s/net_dial", th_progs_dir());
	snprintf(dial_out, sizeof(dial_out), "%s/dial.out", M.dir);
	M.wl_pid = th_spawn(M.net.a, sargv, srv_out);
	cr_assert_gt(M.wl_pid, 0);
	wait_line(srv_out, "listening", 10000);
	cli = th_spawn(M.client, dargv, dial_out);
	cr_assert_gt(cli, 0);
	wait_line(dial_out, "connected", 10000);

	setenv("HAUL_FAULT", "stall:frozen:2200", 1);
	haul = th_mig_haul(&M, &fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(haul, 0);
	if (!haul_says(fd, "stalled at frozen", 60000))
		cr_assert_fail("the migration did not reach the freeze");
	sent = now_ms();
	kill(cli, SIGUSR1); /* "ping", into the lock */
	st = th_wait_exit(haul, 90000);
	done = now_ms();
	if (st)
		haul_says(fd, "\n", 100);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate failed (%d)", st);
	cr_assert_neq(th_wait_exit(M.wl_pid, 5000), -ETIMEDOUT, "the source did not die");
	M.wl_pid = 0;
	if (th_wait_file(dial_out, 0, "echo ok", 30000, line, sizeof(line))) {
		th_sh("sed 's/^/dial: /' %s >&2", dial_out);
		cr_assert_fail("the request sent during the lock was never answered");
	}
	in = strstr(line, " in ");
	cr_assert(in && sscanf(in, " in %lf", &answer_ms) == 1, "no time in \"%s\"", line);
	cr_log_info("answered after %.1f ms; haul exited %.1f ms after the send", answer_ms,
		    done - sent);
	cr_assert_leq(answer_ms, done - sent + 50,
		      "the answer came %.1f ms after the send, haul exited after %.1f ms: the "
		      "client waited for its retransmission timeout",
		      answer_ms, done - sent);
}
