/*
 * rst_tree_fds.c - what the processes of a tree share besides plain files
 * and pipes, across `haul checkpoint` + `haul restore` of the tree: a TCP
 * listener every worker accepts on, established connections held by
 * parent and children with data unread both ways, a UDP socket, an epoll
 * set inherited over fork (with a watch one child added on a file only it
 * holds), an epoll watching the shared listener, a disarmed EPOLLONESHOT
 * watch; and the refusals by name.
 *
 * Host A (th_net) runs tests/progs/tree_net (3 processes), host B
 * net_client.  As in net_tcp.c, the client's segments to the server are
 * dropped by an nft table of A (named with the test's pid) from before the
 * server fills its connections until after the restore.
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
#include "th_rst.h"

#define NCONN "6"
#define PORT  "7100"

struct tfx {
	struct th_net net;
	char dir[96], srv[128], cli[128], img[128], log[160], pidf[128], dial[128];
	pid_t srv_pid, cli_pid, restored, dial_pid;
};

static struct tfx F;

static void tfx_setup(void)
{
	int ret;

	memset(&F, 0, sizeof(F));
	if (geteuid())
		cr_skip_test("needs root (network namespaces, TCP_REPAIR)");
	if (system("command -v nft >/dev/null && command -v nsenter >/dev/null"))
		cr_skip_test("nft or nsenter is not installed");
	ret = th_net_create(&F.net, "tf", 0);
	if (ret == -EOPNOTSUPP)
		cr_skip_test("network namespaces are not available");
	cr_assert_eq(ret, 0, "cannot create the namespaces");
	snprintf(F.dir, sizeof(F.dir), "/tmp/haul-treefds-%d", (int)getpid());
	mkdir(F.dir, 0700);
	snprintf(F.srv, sizeof(F.srv), "%s/server.out", F.dir);
	snprintf(F.cli, sizeof(F.cli), "%s/client.out", F.dir);
	snprintf(F.img, sizeof(F.img), "%s/img", F.dir);
	snprintf(F.log, sizeof(F.log), "%s/haul.log", F.dir);
	snprintf(F.pidf, sizeof(F.pidf), "%s/restored.pid", F.dir);
	snprintf(F.dial, sizeof(F.dial), "%s/dial.out", F.dir);
	mkdir(F.img, 0700);
}

static void tfx_teardown(void)
{
	if (F.dir[0])
		th_sh("touch %s/stop", F.dir); /* every process of the tree ends */
	if (F.restored > 0) {
		/* not ours (no waitpid): a pause for it, then its group goes if it did not end */
		for (int i = 0; i < 40 && kill(F.restored, 0) == 0; i++)
			usleep(5000);
		if (kill(F.restored, 0) == 0) {
			kill(-F.restored, SIGKILL);
			kill(F.restored, SIGKILL);
		}
	}
	if (F.srv_pid > 0) {
		kill(-F.srv_pid, SIGKILL);
		th_kill(F.srv_pid, SIGKILL, 2000);
	}
	if (F.cli_pid > 0)
		th_kill(F.cli_pid, SIGKILL, 2000);
	if (F.dial_pid > 0)
		th_kill(F.dial_pid, SIGKILL, 2000);
	th_net_destroy(&F.net); /* the nft table goes with the namespace */
	if (F.dir[0])
		th_sh("rm -rf %s", F.dir);
}

/* Drop (or stop dropping) TCP segments to PORT arriving in A. */
static void lock(bool on)
{
	int pid = (int)getpid();

	if (on)
		cr_assert_eq(
			th_sh("ip netns exec %s nft 'add table inet htf%d; add chain inet htf%d in "
			      "{ type filter hook input priority 0; }; add rule inet htf%d in "
			      "meta l4proto tcp th dport " PORT " drop'",
			      F.net.a, pid, pid, pid),
			0, "cannot add the nft table");
	else
		cr_assert_eq(th_sh("ip netns exec %s nft delete table inet htf%d", F.net.a, pid),
			     0);
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

/* tree_net in A with its clients connected, every process ready (@mode: its 5th argument). */
static void spawn_tree(const char *mode)
{
	char srv[256], cli[256];
	char *sargv[] = {srv, F.dir, TH_IP_A, PORT, NCONN, (char *)mode, NULL};
	char *cargv[] = {cli, TH_IP_A, PORT, NCONN, NULL};

	snprintf(srv, sizeof(srv), "%s/tree_net", th_progs_dir());
	snprintf(cli, sizeof(cli), "%s/net_client", th_progs_dir());
	F.srv_pid = th_spawn(F.net.a, sargv, F.srv);
	cr_assert_gt(F.srv_pid, 0);
	th_expect_line(F.srv, "listening", 10000);
	F.cli_pid = th_spawn(F.net.b, cargv, F.cli);
	cr_assert_gt(F.cli_pid, 0);
	th_expect_line(F.cli, "sent", 10000);
	th_expect_line(F.srv, "accepted " NCONN, 10000);
	for (int k = 0; k < 3; k++) {
		char want[32];

		snprintf(want, sizeof(want), "p%d ready", k);
		th_expect_line(F.srv, want, 10000);
	}
}

/*
 * The first and the last line of the server's output that start with
 * @tag: an epoll set's watches before the checkpoint and after the
 * restore, the same (events with EPOLLEXCLUSIVE, EPOLLET and a disarmed
 * EPOLLONESHOT, data).
 */
static void same_watches(const char *tag)
{
	char first[256] = "", last[256] = "";
	const char *s = th_slurp(F.srv);
	int n = 0;

	for (const char *l = s; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		size_t len = strcspn(l, "\n");

		if (strncmp(l, tag, strlen(tag)) || len >= sizeof(last))
			continue;
		snprintf(n++ ? last : first, sizeof(last), "%.*s", (int)len, l);
	}
	cr_assert_eq(n, 2, "%d lines '%s' in the server's output, not 2", n, tag);
	cr_log_info("%s", last);
	cr_expect_str_eq(last, first, "the watches changed across the restore: %s", first);
}

/*
 * nginx's shape and Redis's BGSAVE child at once: one listener every
 * worker accepts on, every client connection held by the parent and both
 * children with bytes unread both ways; each socket is dumped once,
 * restored once and shared again, and every byte arrives once, in order.
 * The epoll set inherited over fork comes back shared, with the watch the
 * child added on its own eventfd (at a number that is /dev/null in the
 * parent) restored in that child; a disarmed EPOLLONESHOT watch stays
 * disarmed until re-armed.
 */
Test(rst_tree_fds, a_server_tree_sharing_listener_connections_and_epoll_keeps_every_byte,
     .init = tfx_setup, .fini = tfx_teardown, .timeout = 120)
{
	char args[512], line[256];

	spawn_tree(NULL);
	lock(true);
	kill(-F.srv_pid, SIGUSR1);
	for (int k = 0; k < 3; k++) {
		char want[32];

		snprintf(want, sizeof(want), "p%d filled", k);
		th_expect_line(F.srv, want, 10000);
	}
	kill(F.cli_pid, SIGUSR1);
	th_expect_line(F.cli, "udp sent", 10000);

	snprintf(args, sizeof(args), "checkpoint %d --images %s", (int)F.srv_pid, F.img);
	cr_assert_eq(haul_in_a(args), 0, "haul checkpoint of the tree failed");
	cr_assert_neq(th_wait_exit(F.srv_pid, 5000), -ETIMEDOUT, "the source did not die");
	F.srv_pid = 0;
	cr_assert_neq(th_wait_file(F.srv, 0, "running", 10, line, sizeof(line)), 0,
		      "the source served its clients again before the checkpoint: %s", line);
	snprintf(args, sizeof(args), "restore --images %s --detach >%s", F.img, F.pidf);
	cr_assert_eq(haul_in_a(args), 0, "haul restore of the tree failed");
	F.restored = th_read_pid_file(F.pidf);
	cr_assert_gt(F.restored, 0);
	lock(false);

	kill(F.cli_pid, SIGUSR1);
	if (th_wait_file(F.cli, 0, "client ok", 60000, line, sizeof(line))) {
		th_show_file("server", F.srv);
		th_show_file("client", F.cli);
		cr_assert_fail("the client did not finish");
	}
	for (int i = 0; i < 6; i++) {
		char want[32];

		snprintf(want, sizeof(want), "p%d conn %d done", i % 3, i);
		th_expect_line(F.srv, want, 10000);
	}
	th_expect_line(F.srv, "echoed", 10000);
	th_expect_line(F.srv, "p2 saw x", 10000);
	th_expect_line(F.srv, "p1 oneshot ok", 10000);
	same_watches("p0 e0");
	same_watches("p1 e1");
	if (!th_wait_file(F.srv, 0, "ERROR", 10, line, sizeof(line))) {
		th_show_file("server", F.srv);
		cr_assert_fail("%s", line);
	}
	if (th_wait_file(F.cli, 0, "udp replies 1", 100, line, sizeof(line))) {
		th_show_file("client", F.cli);
		th_show_file("server", F.srv);
	}
	cr_assert_eq(th_wait_file(F.cli, 0, "udp replies 1", 100, line, sizeof(line)), 0,
		     "the restored UDP socket, shared by the tree, did not answer once");
}

/* haul checkpoint of the tree is refused, the log naming @want, and every process runs on. */
static void refused_and_running(const char *want)
{
	char args[512], line[512];
	int procs;

	snprintf(args, sizeof(args), "checkpoint %d --images %s", (int)F.srv_pid, F.img);
	cr_assert_neq(haul_in_a(args), 0, "the tree was checkpointed");
	if (th_wait_file(F.log, 0, want, 100, line, sizeof(line))) {
		th_show_file("haul", F.log);
		cr_assert_fail("the refusal does not say \"%s\"", want);
	}
	cr_log_info("refused: %s", line);
	cr_assert_eq(kill(F.srv_pid, 0), 0, "the root did not run on");
	procs = th_count_procs("tree_net", NULL);
	cr_assert_geq(procs, 3, "%d processes of the tree run on, not 3", procs);
}

/*
 * The tree's listener held by a process outside it too (here the test,
 * by pidfd_getfd): moving it would leave two listeners.  Refused at the
 * precheck, naming the fd, the socket and the holder.
 */
Test(rst_tree_fds, a_tree_socket_a_process_outside_the_tree_holds_is_refused_by_name,
     .init = tfx_setup, .fini = tfx_teardown, .timeout = 60)
{
	char want[96];
	int pidfd, copy;

	spawn_tree(NULL);
	pidfd = (int)syscall(SYS_pidfd_open, F.srv_pid, 0);
	cr_assert_geq(pidfd, 0);
	copy = (int)syscall(SYS_pidfd_getfd, pidfd, 3, 0); /* the listener: its first socket */
	cr_assert_geq(copy, 0, "cannot copy the listener: %s", strerror(errno));
	snprintf(want, sizeof(want), "pid %d: fd 3 is a socket shared with pid %d", (int)F.srv_pid,
		 (int)getpid());
	refused_and_running(want);
	close(copy);
	close(pidfd);
}

/*
 * A watch of the inherited epoll set whose file moved to another fd
 * number (dup, close): the kernel keeps it under the old number, which no
 * process of the tree holds it at; haul adds watches back by number, so
 * the checkpoint is refused by name and the tree runs on.
 */
Test(rst_tree_fds, an_epoll_watch_on_a_number_no_process_holds_is_refused_by_name,
     .init = tfx_setup, .fini = tfx_teardown, .timeout = 60)
{
	spawn_tree("gone");
	refused_and_running("no process of the tree holds it at that number");
}

/*
 * nginx under load: a connection the kernel completed on the listener the
 * workers share, not accepted by any at the stop.  The checkpoint lets
 * the whole tree run until a worker accepts it (here once DIR/accept
 * exists, made when haul says it waits), stops it again and carries the
 * connection as an established one of that worker: after the restore it
 * answers.
 */
Test(rst_tree_fds, a_connection_queued_on_the_shared_listener_at_the_stop_is_accepted_and_carried,
     .init = tfx_setup, .fini = tfx_teardown, .timeout = 120)
{
	char dial[256], pid[16], args[512];
	char *dargv[] = {dial, "echo", TH_IP_A, PORT, NULL};
	char *cargv[] = {(char *)th_haul_bin(), "checkpoint", pid, "--images", F.img, NULL};
	pid_t ck;

	spawn_tree(NULL);
	snprintf(dial, sizeof(dial), "%s/net_dial", th_progs_dir());
	F.dial_pid = th_spawn(F.net.b, dargv, F.dial);
	cr_assert_gt(F.dial_pid, 0);
	th_expect_line(F.dial, "connected", 10000);
	lock(true);
	snprintf(pid, sizeof(pid), "%d", (int)F.srv_pid);
	ck = th_spawn(F.net.a, cargv, F.log);
	cr_assert_gt(ck, 0);
	th_expect_line(F.log, "not yet accepted", 20000);
	cr_assert_eq(th_sh("touch %s/accept", F.dir), 0);
	if (th_wait_exit(ck, 60000) != 0) {
		th_show_file("haul", F.log);
		cr_assert_fail("haul checkpoint of the tree failed");
	}
	th_expect_line(F.srv, "p1 accepted echo", 100);
	cr_assert_neq(th_wait_exit(F.srv_pid, 5000), -ETIMEDOUT, "the source did not die");
	F.srv_pid = 0;
	snprintf(args, sizeof(args), "restore --images %s --detach >%s", F.img, F.pidf);
	cr_assert_eq(haul_in_a(args), 0, "haul restore of the tree failed");
	F.restored = th_read_pid_file(F.pidf);
	lock(false);
	kill(F.dial_pid, SIGUSR1);
	th_expect_line(F.dial, "echo ok", 30000);
	th_expect_line(F.srv, "p1 echoed", 10000);
}
