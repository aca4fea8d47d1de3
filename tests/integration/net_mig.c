/*
 * net_mig.c - `haul migrate` of a TCP/UDP server between the two hosts of
 * th_mig, its clients connected throughout.
 *
 * The service address 198.18.1.100 (th_net's hosts are 198.18.0.1 and .2)
 * starts on host A's link; host B routes it to A.  The client runs on B.
 * The migration is parked after the state is sent (HAUL_FAULT=stall:state)
 * and the test moves the address by hand, as --move-address will: off A,
 * onto B's loopback (the client on B then reaches it locally).  From the
 * stop until the restore, nft tables (test pid in their names) drop the
 * client's segments on both hosts, as the network lock will: no peer may
 * meet a closed port.  Afterwards every byte of both streams arrives, in
 * order, once, and the restored listener and UDP socket answer on B.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "th_mig.h"

#define SVC "198.18.1.100"

static struct th_mig M;
static char srv_out[128], cli_out[128];
static pid_t cli = -1;

static void setup(void)
{
	if (system("command -v nft >/dev/null"))
		cr_skip_test("nft is not installed");
	th_mig_setup(&M, 0);
	snprintf(srv_out, sizeof(srv_out), "%s/server.out", M.dir);
	snprintf(cli_out, sizeof(cli_out), "%s/client.out", M.dir);
}

static void teardown(void)
{
	if (cli > 0)
		th_kill(cli, SIGKILL, 2000);
	unsetenv("HAUL_FAULT");
	th_mig_teardown(
		&M); /* kills the server wherever it runs (its tag), tables go with the netns */
}

static void wait_line(const char *path, const char *needle, int ms)
{
	char line[256];

	if (th_wait_file(path, 0, needle, ms, line, sizeof(line))) {
		th_sh("sed 's/^/out: /' %s >&2", path);
		cr_assert_fail("no \"%s\" in %s", needle, path);
	}
}

/* Drop TCP segments to port 7000 arriving in namespace @ns (or stop). */
static void drop_in(const char *ns, bool on)
{
	int p = (int)getpid();

	if (on)
		cr_assert_eq(
			th_sh("ip netns exec %s nft 'add table inet hsk%d; add chain inet hsk%d "
			      "in { type filter hook input priority 0; }; add rule inet hsk%d "
			      "in tcp dport 7000 drop'",
			      ns, p, p, p),
			0);
	else
		cr_assert_eq(th_sh("ip netns exec %s nft delete table inet hsk%d", ns, p), 0);
}

Test(net_mig, a_server_moves_with_its_connections_listener_and_udp_socket, .init = setup,
     .fini = teardown, .timeout = 180)
{
	char srv[256], cl[256], line[512];
	char *sargv[] = {srv, "v4", SVC, "7000", "2", M.tag, NULL};
	char *cargv[] = {cl, SVC, "7000", "2", NULL};
	int fd, st;
	pid_t haul;

	cr_assert_eq(th_sh("ip -n %s addr add " SVC "/32 dev %s && ip -n %s route add " SVC
			   "/32 via " TH_IP_A,
			   M.net.a, M.net.va, M.net.b),
		     0);
	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(cl, sizeof(cl), "%s/net_client", th_progs_dir());
	M.wl_pid = th_spawn(M.net.a, sargv, srv_out);
	wait_line(srv_out, "listening", 10000);
	cli = th_spawn(M.net.b, cargv, cli_out);
	wait_line(cli_out, "sent", 10000);
	wait_line(srv_out, "accepted 2", 10000);
	drop_in(M.net.a, true); /* the client's ACKs: the server's last segments stay unacked */
	kill(M.wl_pid, SIGUSR1);
	wait_line(srv_out, "filled", 10000);
	kill(cli, SIGUSR1);
	wait_line(cli_out, "udp sent", 10000);
	drop_in(M.net.b, true); /* once the address is local on B, before the restore */

	setenv("HAUL_FAULT", "stall:state:3000", 1);
	haul = th_mig_haul(&M, &fd, NULL);
	cr_assert_gt(haul, 0);
	if (th_wait_line(fd, "stalled at state", 60000, line, sizeof(line))) {
		th_mig_dump_output(fd);
		cr_assert_fail("the migration did not reach the switchover");
	}
	/* what --move-address does: off the source, onto the target */
	cr_assert_eq(th_sh("ip -n %s addr del " SVC "/32 dev %s && ip -n %s route del " SVC
			   "/32 && ip -n %s addr add " SVC "/32 dev lo",
			   M.net.a, M.net.va, M.net.b, M.net.b),
		     0);
	st = th_wait_exit(haul, 90000);
	if (st) {
		th_mig_dump_output(fd);
		cr_assert_fail("haul migrate failed (%d)", st);
	}
	close(fd);
	cr_assert_neq(th_wait_exit(M.wl_pid, 5000), -ETIMEDOUT, "the source did not die");
	M.wl_pid = 0;
	drop_in(M.net.b, false);
	drop_in(M.net.a, false);

	kill(cli, SIGUSR1);
	if (th_wait_file(cli_out, 0, "client ok", 60000, line, sizeof(line))) {
		th_sh("sed 's/^/server: /' %s >&2; sed 's/^/client: /' %s >&2", srv_out, cli_out);
		cr_assert_fail("the client did not finish after the migration");
	}
	wait_line(srv_out, "all done", 10000);
	wait_line(srv_out, "opts same", 100);
	wait_line(srv_out, "udp connected ok", 10000);
	cr_assert_neq(th_wait_file(srv_out, 0, "ERROR", 10, line, sizeof(line)), 0, "%s", line);
	{
		char ns[64];
		struct stat nst;
		pid_t there = 0;

		cr_assert_eq(th_count_procs(M.tag, &there), 1, "not exactly one server");
		snprintf(ns, sizeof(ns), "/proc/%d/ns/net", (int)there);
		cr_assert_eq(stat(ns, &nst), 0);
		cr_expect_eq((unsigned long)nst.st_ino, M.net_b, "the server does not run on B");
	}
}

/*
 * The target refuses the state after the dump (HAUL_FAULT=corrupt-state): the
 * migration rolls back and the source runs on, its connections out of repair
 * mode (a socket left in it would never send again), every byte still
 * delivered.
 */
Test(net_mig, a_rolled_back_migration_leaves_the_connections_working_at_the_source, .init = setup,
     .fini = teardown, .timeout = 180)
{
	char srv[256], cl[256], line[512];
	char *sargv[] = {srv, "v4", TH_IP_A, "7000", "2", M.tag, NULL};
	char *cargv[] = {cl, TH_IP_A, "7000", "2", NULL};
	int fd, st;
	pid_t haul;

	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(cl, sizeof(cl), "%s/net_client", th_progs_dir());
	M.wl_pid = th_spawn(M.net.a, sargv, srv_out);
	wait_line(srv_out, "listening", 10000);
	cli = th_spawn(M.net.b, cargv, cli_out);
	wait_line(cli_out, "sent", 10000);
	wait_line(srv_out, "accepted 2", 10000);
	drop_in(M.net.a, true);
	kill(M.wl_pid, SIGUSR1);
	wait_line(srv_out, "filled", 10000);

	/* the state sent is garbled: the target refuses it, after the dump */
	setenv("HAUL_FAULT", "corrupt-state", 1);
	haul = th_mig_haul(&M, &fd, NULL);
	cr_assert_gt(haul, 0);
	st = th_wait_exit(haul, 90000);
	th_mig_dump_output(fd);
	close(fd);
	cr_assert_neq(st, 0, "the migration succeeded without a target");
	cr_assert_eq(kill(M.wl_pid, 0), 0, "the source did not run on");
	drop_in(M.net.a, false);

	kill(cli, SIGUSR1);
	wait_line(cli_out, "udp sent", 10000);
	kill(cli, SIGUSR1);
	if (th_wait_file(cli_out, 0, "client ok", 60000, line, sizeof(line))) {
		th_sh("sed 's/^/server: /' %s >&2; sed 's/^/client: /' %s >&2", srv_out, cli_out);
		cr_assert_fail("the connections do not work at the source after the rollback");
	}
	wait_line(srv_out, "all done", 10000);
}
