/*
 * mig_tree_net.c - the network around a migrating tree: a TCP/UDP server
 * (tests/progs/net_server) that is a child of the migrated process (a shell
 * that started it and waits), with its clients connected, moved with
 * `haul migrate --move-address` of the shell.  The network lock and the
 * address move must cover the sockets of every process of the tree: the
 * client's connections and datagrams carry on with the server on the
 * target, and no nftables rule is left anywhere.  And a tree whose
 * children are real writers (tests/progs/mig_workload): their memory
 * verifies page by page after the move, and the stop stays short.
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
#include "th_rst.h"

#define PORT "7000"

static struct th_mig M;
static char srv_out[128], cli_out[128];
static pid_t cli = -1;

static void teardown(void)
{
	if (cli > 0)
		th_kill(cli, SIGKILL, 2000);
	cli = -1;
	th_mig_teardown(&M); /* the shell and the server wherever they run (the tag) */
}

static void wait_line(const char *path, const char *needle, int ms)
{
	char line[256];

	if (th_wait_file(path, 0, needle, ms, line, sizeof(line))) {
		th_sh("sed 's/^/out: /' %s >&2", path);
		cr_assert_fail("no \"%s\" in %s", needle, path);
	}
}

/* The one live child of @parent (0: none, or several). */
static pid_t child_of(pid_t parent)
{
	char cmd[64];
	pid_t c = 0, extra = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "pgrep -P %d", (int)parent);
	p = popen(cmd, "r");
	if (!p)
		return 0;
	if (fscanf(p, "%d", &c) != 1 || fscanf(p, "%d", &extra) == 1)
		c = 0;
	pclose(p);
	return c;
}

/* The network namespace inode of every live net_server of this test (0: none or not one). */
static unsigned long server_netns(void)
{
	char cmd[96], ns[64];
	unsigned long ino = 0;
	struct stat st;
	int n = 0;
	FILE *p;

	snprintf(cmd, sizeof(cmd), "pgrep -x net_server");
	p = popen(cmd, "r");
	if (!p)
		return 0;
	for (int pid; fscanf(p, "%d", &pid) == 1;) {
		char path[64];

		snprintf(path, sizeof(path), "/proc/%d/cmdline", pid);
		if (!th_slurp(path) || th_sh("tr '\\0' ' ' < %s | grep -q %s", path, M.tag))
			continue;
		snprintf(ns, sizeof(ns), "/proc/%d/ns/net", pid);
		if (!stat(ns, &st)) {
			ino = (unsigned long)st.st_ino;
			n++;
		}
	}
	pclose(p);
	return n == 1 ? ino : 0;
}

static bool no_nft(struct th_mig *m, const char *unused)
{
	(void)unused;
	return th_mig_no_nft(m);
}

Test(mig_tree_net, a_server_child_moves_with_its_connections_and_address, .fini = teardown,
     .timeout = 240)
{
	char srv[256], cl[256], line[512];
	char *sargv[] = {"/bin/sh", "-c", "\"$0\" \"$@\" & wait", srv, "v4", TH_SVC_ADDR, PORT, "2",
			 M.tag,	    NULL};
	char *cargv[] = {cl, TH_SVC_ADDR, PORT, "2", NULL};
	const char *extra[] = {"--move-address", TH_SVC_PFX, NULL};
	pid_t server = 0;
	int st;

	th_mig_setup_svc(&M);
	snprintf(srv_out, sizeof(srv_out), "%s/server.out", M.dir);
	snprintf(cli_out, sizeof(cli_out), "%s/client.out", M.dir);
	snprintf(srv, sizeof(srv), "%s/net_server", th_progs_dir());
	snprintf(cl, sizeof(cl), "%s/net_client", th_progs_dir());
	/* the shell is the migrated process; the server its child */
	M.wl_pid = th_spawn(M.net.a, sargv, srv_out);
	cr_assert_gt(M.wl_pid, 0);
	wait_line(srv_out, "listening", 10000);
	for (int i = 0; i < 200 && !(server = child_of(M.wl_pid)); i++)
		usleep(10000);
	cr_assert_gt(server, 0, "the shell has no server child");
	cli = th_spawn(M.client, cargv, cli_out);
	cr_assert_gt(cli, 0);
	wait_line(cli_out, "sent", 10000);
	wait_line(srv_out, "accepted 2", 10000);
	kill(server, SIGUSR1);
	wait_line(srv_out, "filled", 10000);
	kill(cli, SIGUSR1);
	wait_line(cli_out, "udp sent", 10000);

	st = th_mig_run(&M, extra, 90000);
	cr_assert_eq(st, 0, "haul migrate of the shell and its server failed (%d)", st);
	M.wl_pid = 0;

	cr_assert(th_mig_eventually(no_nft, &M, NULL, 5000), "an nftables rule is left");
	cr_assert(th_mig_addr_only_at(&M, TH_SVC_PFX, false), "the address is not on B only");
	cr_assert_eq(server_netns(), M.net_b, "the server does not run on B only");
	kill(cli, SIGUSR1);
	if (th_wait_file(cli_out, 0, "client ok", 90000, line, sizeof(line))) {
		th_sh("sed 's/^/server: /' %s >&2; sed 's/^/client: /' %s >&2", srv_out, cli_out);
		cr_assert_fail("the client did not finish its exchange");
	}
	wait_line(srv_out, "all done", 10000);
	wait_line(srv_out, "udp connected ok", 10000);
	cr_assert_neq(th_wait_file(srv_out, 0, "ERROR", 10, line, sizeof(line)), 0, "server: %s",
		      line);
	cr_assert_neq(th_wait_file(cli_out, 0, "ERROR", 10, line, sizeof(line)), 0, "client: %s",
		      line);
}

/*
 * Memory: a shell with two writers of 64 MiB each (tests/progs/mig_workload,
 * 16 MiB/s each) moves with pre-copy; each verifies every page after the
 * move, and the stop copies only what the last rounds left: the frozen
 * round's pages are a small part of what was sent.  Counted in pages, not
 * in milliseconds (downtime against total time): on a busy machine one
 * descheduled stop can take longer than the rounds before it, which says
 * nothing about what the stop copied.
 */
Test(mig_tree_net, two_writing_children_move_with_their_memory_and_a_short_stop, .fini = teardown,
     .timeout = 180)
{
	char wl[256], ctl1[128], ctl2[128], out[128], script[1280];
	char *argv[] = {"/bin/sh", "-c", script, NULL};
	const char *extra[] = {"--downtime", "100", NULL};
	double down, total, pages;
	long frozen;

	th_mig_setup(&M, 0);
	snprintf(wl, sizeof(wl), "%s/mig_workload", th_progs_dir());
	snprintf(ctl1, sizeof(ctl1), "%s/ctl1", M.dir);
	snprintf(ctl2, sizeof(ctl2), "%s/ctl2", M.dir);
	snprintf(out, sizeof(out), "%s/out", M.dir);
	snprintf(script, sizeof(script),
		 "%s --mem 64 --rate 16 --control %s --tag %s & "
		 "%s --mem 64 --rate 16 --control %s --tag %s & wait",
		 wl, ctl1, M.tag, wl, ctl2, M.tag);
	M.wl_pid = th_spawn(M.net.a, argv, out);
	cr_assert_gt(M.wl_pid, 0);
	for (int i = 0; i < 1000 && th_sh("test $(grep -c tick %s) -ge 6", out); i++)
		usleep(10000);
	cr_assert_eq(th_mig_run(&M, extra, 120000), 0, "haul migrate of the writers' tree failed");
	M.wl_pid = 0;
	cr_assert_eq(th_mig_json(&M, "processes"), 3);
	cr_assert_geq(th_mig_json(&M, "rounds"), 2);
	down = th_mig_json(&M, "downtime_ms");
	total = th_mig_json(&M, "total_ms");
	pages = th_mig_json(&M, "pages_sent");
	frozen = th_mig_final_round_pages(&M);
	cr_log_info("tree of 2 x 64 MiB writers: downtime %.1f ms, total %.0f ms, %.0f pages, "
		    "%ld of them frozen",
		    down, total, pages, frozen);
	cr_assert_geq(pages, 2 * 64 * 256, "not every page was sent");
	cr_assert_gt(down, 0, "no downtime in the report");
	cr_assert(frozen >= 0 && frozen * 4 < pages, "the frozen round sent %ld of %.0f pages",
		  frozen, pages);
	th_sh("echo verify > %s; echo verify > %s", ctl1, ctl2);
	for (int i = 0; i < 500 && th_sh("test $(grep -c 'verify ok' %s) -ge 2", out); i++)
		usleep(10000);
	cr_assert_eq(th_sh("test $(grep -c 'verify ok' %s) -ge 2", out), 0,
		     "the writers' memory does not verify after the move");
	cr_assert_neq(th_sh("grep -q 'verify FAIL' %s", out), 0, "a page was lost");
}

/* The first and the last line of the server's output starting with @tag: the same. */
static void same_watches(const char *tag)
{
	char first[256] = "", last[256] = "";
	const char *s = th_slurp(srv_out);
	int n = 0;

	for (const char *l = s; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		size_t len = strcspn(l, "\n");

		if (strncmp(l, tag, strlen(tag)) || len >= sizeof(last))
			continue;
		snprintf(n++ ? last : first, sizeof(last), "%.*s", (int)len, l);
	}
	cr_assert_eq(n, 2, "%d lines '%s' in the server's output, not 2", n, tag);
	cr_expect_str_eq(last, first, "the watches changed across the move: %s", first);
}

/*
 * nginx's and Redis's shapes at once (tests/progs/tree_net, 3 processes):
 * one listener every worker accepts on, client connections held by the
 * parent and both children with bytes unread both ways, a shared UDP
 * socket and epoll sets inherited over fork, moved live with the service
 * address: every byte arrives once, in order, the epoll watches come back
 * as they were, and the UDP socket answers once.
 */
Test(mig_tree_net, a_server_tree_sharing_its_sockets_and_epoll_moves_every_byte, .fini = teardown,
     .timeout = 240)
{
	char srv[256], cl[256], sdir[128], line[512];
	char *sargv[] = {srv, sdir, TH_SVC_ADDR, PORT, "6", NULL};
	char *cargv[] = {cl, TH_SVC_ADDR, PORT, "6", NULL};
	const char *extra[] = {"--move-address", TH_SVC_PFX, NULL};
	int fd, st;
	pid_t haul;

	th_mig_setup_svc(&M);
	snprintf(sdir, sizeof(sdir), "%s/%s", M.dir, M.tag);
	mkdir(sdir, 0700);
	snprintf(srv_out, sizeof(srv_out), "%s/server.out", M.dir);
	snprintf(cli_out, sizeof(cli_out), "%s/client.out", M.dir);
	snprintf(srv, sizeof(srv), "%s/tree_net", th_progs_dir());
	snprintf(cl, sizeof(cl), "%s/net_client", th_progs_dir());
	M.wl_pid = th_spawn(M.net.a, sargv, srv_out);
	cr_assert_gt(M.wl_pid, 0);
	wait_line(srv_out, "listening", 10000);
	cli = th_spawn(M.client, cargv, cli_out);
	cr_assert_gt(cli, 0);
	wait_line(cli_out, "sent", 10000);
	wait_line(srv_out, "accepted 6", 10000);
	for (int k = 0; k < 3; k++) {
		char want[32];

		snprintf(want, sizeof(want), "p%d ready", k);
		wait_line(srv_out, want, 10000);
	}
	kill(-M.wl_pid, SIGUSR1);
	for (int k = 0; k < 3; k++) {
		char want[32];

		snprintf(want, sizeof(want), "p%d filled", k);
		wait_line(srv_out, want, 10000);
	}
	kill(cli, SIGUSR1);
	wait_line(cli_out, "udp sent", 10000);

	haul = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(haul, 0);
	st = th_wait_exit(haul, 90000);
	if (st)
		th_mig_dump_output(fd);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate of the server tree failed (%d)", st);
	M.wl_pid = 0;
	cr_assert_eq(th_mig_json(&M, "processes"), 3);
	cr_assert(th_mig_eventually(no_nft, &M, NULL, 5000), "an nftables rule is left");
	cr_assert(th_mig_addr_only_at(&M, TH_SVC_PFX, false), "the address is not on B only");

	kill(cli, SIGUSR1);
	if (th_wait_file(cli_out, 0, "client ok", 60000, line, sizeof(line))) {
		th_sh("sed 's/^/server: /' %s >&2; sed 's/^/client: /' %s >&2", srv_out, cli_out);
		cr_assert_fail("the client did not finish");
	}
	for (int i = 0; i < 6; i++) {
		char want[32];

		snprintf(want, sizeof(want), "p%d conn %d done", i % 3, i);
		wait_line(srv_out, want, 10000);
	}
	wait_line(srv_out, "p2 saw x", 10000);
	wait_line(srv_out, "p1 oneshot ok", 10000);
	same_watches("p0 e0");
	same_watches("p1 e1");
	cr_assert_neq(th_wait_file(srv_out, 0, "ERROR", 10, line, sizeof(line)), 0, "server: %s",
		      line);
	/*
	 * The migrated UDP socket answers (the client says "client ok" only then);
	 * W2 may have echoed one of the 5 queued datagrams before the freeze (its
	 * watch is edge-triggered: one per wakeup), the rest were dropped at it.
	 */
	cr_assert_eq(th_wait_file(cli_out, 0, "udp replies", 100, line, sizeof(line)), 0);
	cr_assert(strstr(line, "udp replies 1") || strstr(line, "udp replies 2"),
		  "the UDP socket answered other than once after the move: %s", line);
}
