/*
 * mig_netlock.c - the network around a migration (src/haul/netlock.c,
 * netsock.c, addrmove.c, onswitch.c, mig_net.c, switch_sink.c).
 *
 * The lock is driven directly with a real TCP connection between two
 * namespaces: while it holds, nothing crosses in either direction and the
 * peer sees no reset; once lifted, TCP retransmits and the connection
 * carries on; no table is left.  A table whose owner died is reaped.  Then
 * `haul migrate --move-address` of the lone workload, with a third
 * "client" namespace bridged to both hosts: the address leaves the source,
 * reaches the target, and the client finds it there; --on-switch runs on
 * both sides with its variables; and at each crash point of the switch no
 * table is left and the address ends where the crash-point table of
 * DESIGN.md says.  Every name carries the test's pid; namespaces (and with
 * them their tables) are deleted even when a test fails.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "haul/netlock.h"
#include "th_mig.h"
#include "th_net.h"

#define LOCK_PORT 7533
#define SVC_ADDR  TH_SVC_ADDR
#define SVC_PFX	  TH_SVC_PFX

static struct th_net N;
static struct th_mig M;
static char lockdir[64];

/* ---- the lock, driven directly ------------------------------------------------ */

static void enter(const char *ns)
{
	char p[96];
	int fd;

	snprintf(p, sizeof(p), "/run/netns/%s", ns);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "no namespace %s", ns);
	cr_assert_eq(setns(fd, CLONE_NEWNET), 0, "cannot enter %s", ns);
	close(fd);
}

static void lock_teardown(void);

/* Criterion skips .fini when .init fails or skips: each setup cleans up itself first. */
static void lock_setup(void)
{
	int ret;

	snprintf(lockdir, sizeof(lockdir), "/tmp/haul-netlock-%d", getpid());
	setenv("HAUL_LOCK_DIR", lockdir, 1);
	ret = th_net_create(&N, "nl", 0);
	if (ret) {
		lock_teardown();
		if (ret == -EOPNOTSUPP)
			cr_skip_test("network namespaces or iproute2 are not available");
		cr_assert_fail("cannot create the two-host network");
	}
	if (th_sh("ip netns exec %s nft list tables >/dev/null 2>&1", N.a)) {
		lock_teardown();
		cr_skip_test("nftables does not work here (nf_tables module?)");
	}
}

static void lock_teardown(void)
{
	th_net_destroy(&N);
	th_sh("rm -rf %s", lockdir);
	unsetenv("HAUL_LOCK_DIR");
}

/*
 * The peer on host B: connects to A, then relays.  A byte on @ctl is sent
 * on the connection; what arrives on it is written to @res; a reset or an
 * error is written as "E<errno>".
 */
static void __attribute__((noreturn)) peer_main(int ctl, int res)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(LOCK_PORT)};
	char buf[64];
	int s;

	enter(N.b);
	s = socket(AF_INET, SOCK_STREAM, 0);
	inet_pton(AF_INET, TH_IP_A, &sa.sin_addr);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		_exit(2);
	for (;;) {
		struct pollfd p[2] = {{s, POLLIN, 0}, {ctl, POLLIN, 0}};
		ssize_t n;

		if (poll(p, 2, -1) < 0)
			_exit(3);
		if (p[1].revents) {
			n = read(ctl, buf, sizeof(buf));
			if (n <= 0)
				_exit(0);
			if (write(s, buf, n) != n)
				_exit(4);
		}
		if (p[0].revents) {
			n = read(s, buf, sizeof(buf));
			if (n <= 0) {
				n = snprintf(buf, sizeof(buf), "E%d", n ? errno : 0);
				if (write(res, buf, n) < 0)
					_exit(5);
				_exit(0);
			}
			if (write(res, buf, n) != n)
				_exit(5);
		}
	}
}

/* What arrives on @fd within @ms (0 bytes: nothing). */
static ssize_t read_within(int fd, char *buf, size_t len, int ms)
{
	struct pollfd p = {fd, POLLIN, 0};
	ssize_t n;

	if (poll(&p, 1, ms) <= 0)
		return 0;
	n = read(fd, buf, len - 1);
	if (n >= 0)
		buf[n] = '\0';
	return n;
}

static int haul_tables_in(const char *ns)
{
	return th_sh("ip netns exec %s nft list tables 2>/dev/null | grep -q haul-lock-", ns) == 0;
}

/* A listener and an accepted connection in A (this process), the peer in B. */
struct conn {
	int l, s, ctl, res;
	pid_t peer;
};

static void connect_pair(struct conn *c)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(LOCK_PORT)};
	int one = 1, ctl[2], res[2];

	enter(N.a);
	c->l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(c->l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	inet_pton(AF_INET, TH_IP_A, &sa.sin_addr);
	cr_assert_eq(bind(c->l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(c->l, 4), 0);
	cr_assert_eq(pipe(ctl), 0);
	cr_assert_eq(pipe(res), 0);
	c->peer = fork();
	cr_assert_geq(c->peer, 0);
	if (c->peer == 0) {
		close(ctl[1]);
		close(res[0]);
		peer_main(ctl[0], res[1]);
	}
	close(ctl[0]);
	close(res[1]);
	c->ctl = ctl[1];
	c->res = res[0];
	c->s = accept(c->l, NULL, NULL);
	cr_assert_geq(c->s, 0);
}

/* @to_peer written by the process, @to_proc by the peer (7 bytes each). */
static void send_both(struct conn *c, const char *to_peer, const char *to_proc)
{
	cr_assert_eq(write(c->s, to_peer, 7), 7);
	cr_assert_eq(write(c->ctl, to_proc, 7), 7);
}

/* Both arrive within @ms each: @to_peer at the peer, @to_proc at the process. */
static void expect_both(struct conn *c, const char *to_peer, const char *to_proc, int ms)
{
	char buf[64];

	cr_assert_eq(read_within(c->res, buf, sizeof(buf), ms), 7, "the peer got nothing");
	cr_assert_str_eq(buf, to_peer);
	cr_assert_eq(read_within(c->s, buf, sizeof(buf), ms), 7, "the process got nothing");
	cr_assert_str_eq(buf, to_proc);
}

/*
 * With the lock @name on @c: both directions dropped (nothing arrives, no
 * reset); lifted, TCP retransmits and both arrive, and nothing is left.
 */
static void assert_dropped_then_lifted(struct conn *c, const char *name)
{
	char buf[64];

	send_both(c, "to-peer", "to-proc");
	cr_assert_eq(read_within(c->res, buf, sizeof(buf), 1500), 0, "the peer got '%s'", buf);
	cr_assert_eq(read_within(c->s, buf, sizeof(buf), 200), 0, "the process got '%s'", buf);
	/* the counters saw the retransmissions in both directions */
	cr_assert_eq(th_sh("ip netns exec %s nft list table inet %s | grep -c 'packets [1-9]' | "
			   "grep -q '^[2-9]'",
			   N.a, name),
		     0, "no rule counted a dropped packet in each direction");

	cr_assert_eq(haul_netlock_lift(name), 0);
	cr_assert_not(haul_netlock_exists(name));
	expect_both(c, "to-peer", "to-proc", 10000);
	cr_assert_eq(th_sh("ls %s/netlock | grep -q haul-lock", lockdir), 1,
		     "a registry entry is left");
	close(c->ctl);
	th_wait_exit(c->peer, 5000);
}

Test(netlock, drops_both_directions_without_a_reset_and_leaves_no_table, .init = lock_setup,
     .fini = lock_teardown, .timeout = 60)
{
	struct haul_net_tuple *t;
	struct conn c;
	char name[64], p[160];
	size_t n, conn = 0;

	connect_pair(&c);
	/* the lock finds both sockets by itself: the listener and the connection */
	cr_assert_eq(haul_net_sockets(getpid(), &t, &n), 0);
	cr_assert_eq(n, 2, "expected the listener and the connection, got %zu", n);
	for (size_t i = 0; i < n; i++) {
		haul_net_tuple_str(&t[i], p, sizeof(p));
		if (t[i].fd == c.s) {
			conn++;
			cr_assert_eq(t[i].state, TCP_ESTABLISHED, "%s", p);
			cr_assert(strstr(p, "TCP " TH_IP_A ":7533 <- " TH_IP_B ":"), "%s", p);
		} else {
			cr_assert_eq(t[i].fd, c.l);
			cr_assert_str_eq(p, "TCP " TH_IP_A ":7533 (listening)");
		}
	}
	cr_assert_eq(conn, 1);
	snprintf(name, sizeof(name), "haul-lock-%d-1", getpid());
	cr_assert_eq(haul_netlock_take(name, t, n, NULL, 0, true), 0);
	cr_assert(haul_netlock_exists(name));
	cr_assert_eq(haul_netlock_take(name, t, n, NULL, 0, true), -EEXIST, "one table per name");

	assert_dropped_then_lifted(&c, name);
	free(t);
}

/*
 * The source's lock in two steps: prepared before the freeze it drops
 * nothing (its sets are empty), filled at the freeze it drops both ways.
 */
Test(netlock, a_prepared_lock_drops_nothing_until_its_sets_are_filled, .init = lock_setup,
     .fini = lock_teardown, .timeout = 60)
{
	struct haul_net_tuple *t;
	struct conn c;
	char name[64];
	size_t n;

	connect_pair(&c);
	cr_assert_eq(haul_net_sockets(getpid(), &t, &n), 0);
	snprintf(name, sizeof(name), "haul-lock-%d-2", getpid());
	cr_assert_eq(haul_netlock_prepare(name, true), 0);
	cr_assert(haul_netlock_exists(name));
	cr_assert_eq(haul_netlock_prepare(name, true), -EEXIST, "one table per name");
	send_both(&c, "early-1", "early-2");
	expect_both(&c, "early-1", "early-2", 5000); /* the prepared lock dropped nothing */
	cr_assert_eq(haul_netlock_fill(name, t, n, NULL, 0), 0);
	assert_dropped_then_lifted(&c, name);
	free(t);
}

/*
 * A tree's sockets: a child inherits the listener and the connection (one
 * socket each, however many processes hold it) and has a UDP socket of its
 * own.  The set lists each socket once, with the fd and pid of the first
 * process that holds it.
 */
Test(netlock, a_socket_several_processes_of_a_set_hold_is_listed_once, .init = lock_setup,
     .fini = lock_teardown, .timeout = 60)
{
	struct haul_net_tuple *t;
	struct conn c;
	int ready[2], udp = -1;
	pid_t set[2];
	size_t n, mine = 0, childs = 0;
	char b;

	connect_pair(&c);
	cr_assert_eq(pipe(ready), 0);
	set[0] = getpid();
	set[1] = fork();
	cr_assert_geq(set[1], 0);
	if (set[1] == 0) {
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(LOCK_PORT + 1)};

		/* bound: inet_diag lists hashed sockets only */
		udp = socket(AF_INET, SOCK_DGRAM, 0);
		if (udp < 0 || bind(udp, (struct sockaddr *)&a, sizeof(a)) ||
		    write(ready[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	cr_assert_eq(read(ready[0], &b, 1), 1, "the child did not start");
	cr_assert_eq(haul_net_sockets_of(set, 2, &t, &n), 0);
	for (size_t i = 0; i < n; i++) {
		char p[160];

		haul_net_tuple_str(&t[i], p, sizeof(p));
		if (t[i].pid == set[0])
			mine++;
		else if (t[i].pid == set[1] && t[i].proto == IPPROTO_UDP)
			childs++;
		else
			cr_assert_fail("%s of pid %d fd %d: not the set's", p, (int)t[i].pid,
				       t[i].fd);
		cr_assert(t[i].pid != set[0] || t[i].fd == c.l || t[i].fd == c.s, "%s", p);
	}
	cr_expect_eq(mine, 2, "the listener and the connection, once each: %zu", mine);
	cr_expect_eq(childs, 1, "the child's own UDP socket: %zu", childs);
	free(t);
	kill(set[1], SIGKILL);
	th_wait_exit(set[1], 5000);
	close(c.ctl);
	th_wait_exit(c.peer, 5000);
}

Test(netlock, owner_killed_with_a_connection_open_the_survivor_lifts_the_lock, .init = lock_setup,
     .fini = lock_teardown, .timeout = 60)
{
	struct haul_net_tuple *t;
	struct conn c;
	char name[64], buf[64];
	int ready[2];
	size_t n;
	pid_t owner;

	connect_pair(&c);
	cr_assert_eq(haul_net_sockets(getpid(), &t, &n), 0);
	snprintf(name, sizeof(name), "haul-lock-%d-4", getpid());
	cr_assert_eq(pipe(ready), 0);
	owner = fork();
	cr_assert_geq(owner, 0);
	if (owner == 0) {
		struct haul_netguard g;

		/* as haul does: the survivor first, then the lock; then it is killed */
		if (haul_netguard_start(&g, name, NULL, 0, true) ||
		    haul_netlock_take(name, t, n, NULL, 0, true))
			_exit(1);
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(ready[1]);
	cr_assert_eq(read(ready[0], buf, 1), 1, "the owner did not take the lock");
	cr_assert(haul_netlock_exists(name));
	cr_assert_eq(write(c.s, "to-peer", 7), 7);
	cr_assert_eq(read_within(c.res, buf, sizeof(buf), 1000), 0, "the lock let '%s' through",
		     buf);
	th_kill(owner, SIGKILL, 2000);
	for (int i = 0; i < 100 && haul_netlock_exists(name); i++)
		usleep(50000);
	cr_assert_not(haul_netlock_exists(name), "the survivor did not lift the lock");
	/* the connection lives: the retransmission arrives, and it answers */
	cr_assert_eq(read_within(c.res, buf, sizeof(buf), 10000), 7, "the peer got nothing");
	cr_assert_str_eq(buf, "to-peer");
	cr_assert_eq(write(c.ctl, "to-proc", 7), 7);
	cr_assert_eq(read_within(c.s, buf, sizeof(buf), 10000), 7, "the process got nothing");
	close(c.ctl);
	th_wait_exit(c.peer, 5000);
	free(t);
}

Test(netlock, a_table_whose_owner_died_is_removed_by_the_next_haul, .init = lock_setup,
     .fini = lock_teardown, .timeout = 60)
{
	struct haul_net_addr a;
	char name[64];
	pid_t owner;

	enter(N.a);
	cr_assert_eq(haul_net_addr_parse(TH_IP_A "/30", &a), 0);
	snprintf(name, sizeof(name), "haul-lock-%d-2", getpid());
	owner = fork();
	cr_assert_geq(owner, 0);
	if (owner == 0)
		_exit(haul_netlock_take(name, NULL, 0, &a, 1, true) ? 1 : 0); /* dies holding it */
	cr_assert_eq(th_wait_exit(owner, 10000), 0);
	cr_assert(haul_netlock_exists(name), "the owner did not take the lock");
	/* `haul ps` (as haul migrate and haul pageserver) reaps at start */
	cr_assert_eq(th_sh("ip netns exec %s env HAUL_RUN_DIR=%s/run %s ps >/dev/null", N.a,
			   lockdir, th_haul_bin()),
		     0);
	cr_assert_not(haul_netlock_exists(name), "the stale table is still there");
}

/*
 * The registry entry of a lock in a namespace that is gone (a test host's,
 * a container's) whose owner is dead: its table went with the namespace,
 * and no reaper ran there to remove the entry; the next haul does.  One of
 * a namespace that lives (host A) is left to A's own reaper.
 */
Test(netlock, the_entry_of_a_lock_whose_namespace_is_gone_is_removed, .init = lock_setup,
     .fini = lock_teardown, .timeout = 60)
{
	char gone[PATH_MAX], alive[PATH_MAX], link[PATH_MAX];
	struct stat st;
	pid_t dead = fork();

	cr_assert_geq(dead, 0);
	if (dead == 0)
		_exit(0);
	cr_assert_eq(th_wait_exit(dead, 5000), 0);
	snprintf(link, sizeof(link), "/run/netns/%s", N.a);
	cr_assert_eq(stat(link, &st), 0);
	cr_assert_eq(th_sh("mkdir -p %s/netlock", lockdir), 0);
	snprintf(gone, sizeof(gone), "%s/netlock/4000000001-haul-lock-%d-5", lockdir, (int)dead);
	snprintf(alive, sizeof(alive), "%s/netlock/%llu-haul-lock-%d-6", lockdir,
		 (unsigned long long)st.st_ino, (int)dead);
	cr_assert_eq(th_sh("echo '%d 1' >%s && echo '%d 1' >%s", (int)dead, gone, (int)dead, alive),
		     0);
	cr_assert_eq(th_sh("env HAUL_RUN_DIR=%s/run %s ps >/dev/null", lockdir, th_haul_bin()), 0);
	cr_assert_neq(access(gone, F_OK), 0, "the entry of a gone namespace stayed");
	cr_assert_eq(access(alive, F_OK), 0, "the entry of a live namespace was removed");
}

Test(netlock, a_table_whose_owner_lives_is_kept, .init = lock_setup, .fini = lock_teardown,
     .timeout = 60)
{
	struct haul_net_addr a;
	char name[64];

	enter(N.a);
	cr_assert_eq(haul_net_addr_parse(TH_IP_A "/30", &a), 0);
	snprintf(name, sizeof(name), "haul-lock-%d-3", getpid());
	cr_assert_eq(haul_netlock_take(name, NULL, 0, &a, 1, true), 0);
	cr_assert_eq(haul_netlock_reap(), 0);
	cr_assert(haul_netlock_exists(name));
	/* a namespace's reaper leaves another namespace's entries alone */
	cr_assert_eq(th_sh("ip netns exec %s env HAUL_RUN_DIR=%s/run %s ps >/dev/null", N.b,
			   lockdir, th_haul_bin()),
		     0);
	cr_assert(haul_netlock_exists(name));
	cr_assert_eq(haul_netlock_lift(name), 0);
	cr_assert_not(haul_netlock_exists(name));
}

/* ---- haul migrate --move-address ---------------------------------------------- */

static bool client_reaches_service(void)
{
	return th_mig_client_reaches(&M, SVC_ADDR);
}

/* The three hosts of th_mig_setup_svc: C, the client, bridged to A and B. */
static void svc_setup(void)
{
	th_mig_setup_svc(&M);
}

static void svc_teardown(void)
{
	th_mig_teardown(&M); /* C too */
}

static bool client_neigh_is_b(const char *addr)
{
	return th_mig_client_neigh_is_b(&M, addr);
}

static bool has_addr(const char *ns)
{
	return th_mig_has_addr(ns, SVC_PFX);
}

/* Poll @what (1: true) for up to @ms. */
static bool eventually(bool (*what)(void), int ms)
{
	for (int i = 0; i < ms / 50; i++) {
		if (what())
			return true;
		usleep(50000);
	}
	return what();
}

static bool addr_back_at_a_only(void)
{
	return th_mig_addr_only_at(&M, SVC_PFX, true);
}

static bool no_tables(void)
{
	return !haul_tables_in(M.net.a) && !haul_tables_in(M.net.b);
}

/* Restart B's page server with --on-switch @cmd. */
static void pageserver_with_hook(const char *cmd)
{
	char line[256];
	char *argv[] = {(char *)th_haul_bin(),	 "pageserver", "--listen",
			TH_IP_B ":" TH_MIG_PORT, "--key",      M.key,
			"--on-switch",		 (char *)cmd,  NULL};

	th_kill(M.ps_pid, SIGKILL, 2000);
	close(M.ps_fd);
	M.ps_pid = th_spawn_pipe(M.net.b, argv, &M.ps_fd);
	cr_assert_gt(M.ps_pid, 0);
	cr_assert_eq(th_wait_line(M.ps_fd, "listening on", 5000, line, sizeof(line)), 0,
		     "the page server did not start");
}

Test(mig_netlock, move_address_moves_the_service_address_to_the_target, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	char hook[256], log[160];
	long seq;

	snprintf(log, sizeof(log), "%s/hooks", M.dir);
	snprintf(hook, sizeof(hook),
		 "echo \"$HAUL_SIDE $HAUL_SWITCH_PHASE $HAUL_PID $HAUL_MIGRATION_ID "
		 "$HAUL_ADDRESSES\" >> %s",
		 log);
	pageserver_with_hook(hook);
	{
		const char *extra[] = {"--move-address", SVC_PFX, "--on-switch", hook, NULL};

		cr_assert_not(client_neigh_is_b(SVC_ADDR));
		th_mig_workload(&M, 16, 8, 0);
		th_mig_ticks(&M, 3, 10000);
		seq = th_mig_seq(&M);
		cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	}
	th_mig_assert_moved(&M, seq);
	cr_assert(has_addr(M.net.b), "the target does not have " SVC_ADDR);
	cr_assert_not(has_addr(M.net.a), "the source still has " SVC_ADDR);
	cr_assert(eventually(no_tables, 3000), "a lock table is left");
	/* the announcement overrode the client's entry, before any new probe; it reaches B */
	cr_assert(client_neigh_is_b(SVC_ADDR), "the client's neighbour entry does not name B");
	cr_assert(client_reaches_service(), "the client cannot reach " SVC_ADDR " at the target");
	/* the hooks ran on both sides, in order, with one migration id */
	cr_assert_eq(
		th_sh("grep -q '^source source-down [0-9]* [0-9a-f]* " SVC_PFX "$' %s && "
		      "grep -q '^target target-prepare [0-9]* [0-9a-f]* " SVC_PFX "$' %s && "
		      "grep -q '^target target-up ' %s && grep -q '^source source-done ' %s && "
		      "test $(awk '{print $4}' %s | sort -u | wc -l) = 1 && "
		      "test \"$(awk '{print $2}' %s | tr '\\n' ' ')\" = "
		      "'source-down target-prepare target-up source-done '",
		      log, log, log, log, log, log),
		0, "hooks wrong");
}

Test(mig_netlock, refuses_a_move_address_that_is_not_here_before_touching_anything,
     .init = svc_setup, .fini = svc_teardown, .timeout = 120)
{
	const char *extra[] = {"--move-address", "198.18.1.200/24", NULL};
	const char *bad[] = {"--move-address", "198.18.1.200", NULL};
	char line[512];
	int fd;
	pid_t haul;

	th_mig_workload(&M, 16, 8, 0);
	th_mig_ticks(&M, 2, 10000);
	haul = th_mig_haul(&M, &fd, extra);
	cr_assert_eq(th_wait_line(fd, "is not an address of this host", 30000, line, sizeof(line)),
		     0, "haul did not refuse an address it does not have");
	cr_assert(strstr(line, "198.18.1.200/24"), "%s", line);
	cr_assert_eq(th_wait_exit(haul, 30000), 1);
	close(fd);
	haul = th_mig_haul(&M, &fd, bad);
	cr_assert_eq(th_wait_line(fd, "is not ADDR/PREFIX", 30000, line, sizeof(line)), 0,
		     "haul took an address without a prefix");
	cr_assert_eq(th_wait_exit(haul, 30000), 2, "a bad --move-address is a usage error");
	close(fd);
	cr_assert(has_addr(M.net.a));
	cr_assert(no_tables());
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the source does not run");
}

Test(mig_netlock, refuses_to_move_the_address_the_migration_runs_from, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	const char *extra[] = {"--move-address", TH_IP_A "/30", NULL};
	char line[512];
	int fd;
	pid_t haul;

	th_mig_workload(&M, 16, 8, 0);
	th_mig_ticks(&M, 2, 10000);
	haul = th_mig_haul(&M, &fd, extra);
	cr_assert_eq(th_wait_line(fd, "is the address haul reaches", 30000, line, sizeof(line)), 0,
		     "haul would have cut its own connection");
	cr_assert_eq(th_wait_exit(haul, 30000), 1);
	close(fd);
	cr_assert_eq(th_sh("ip -n %s -o addr show | grep -q ' " TH_IP_A "/30'", M.net.a), 0,
		     "the refusal touched the address");
	cr_assert(no_tables());
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the source does not run");
}

Test(mig_netlock, refuses_a_move_address_the_target_has_no_subnet_for, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	const char *extra[] = {"--move-address", SVC_PFX, NULL};
	char line[512];
	int fd, found;
	pid_t haul;

	/* B leaves the client's subnet */
	cr_assert_eq(th_sh("ip -n %s addr flush dev %s", M.net.b, M.cb), 0);
	th_mig_workload(&M, 16, 8, 0);
	th_mig_ticks(&M, 2, 10000);
	haul = th_mig_haul(&M, &fd, extra);
	found = th_wait_line(fd, "has no interface on that subnet", 30000, line, sizeof(line));
	cr_assert_eq(found, 0, "haul did not refuse for the subnet");
	cr_assert(strstr(line, SVC_PFX), "%s", line);
	cr_assert_eq(th_wait_exit(haul, 30000), 1);
	close(fd);
	cr_assert(has_addr(M.net.a), "the refusal touched the address");
	cr_assert(no_tables());
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the source does not run");
}

/* Start haul migrate --move-address with HAUL_FAULT=@fault; wait for the stall. */
static pid_t stalled(const char *fault, int *fd)
{
	const char *extra[] = {"--move-address", SVC_PFX, NULL};
	pid_t pid;

	th_mig_workload(&M, 16, 8, 0);
	th_mig_ticks(&M, 2, 10000);
	setenv("HAUL_FAULT", fault, 1);
	pid = th_mig_haul(&M, fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(pid, 0);
	cr_assert_eq(th_wait_line(*fd, "stalled at", 30000, NULL, 0), 0, "no stall at %s", fault);
	return pid;
}

static void killed_before_the_restore(const char *fault)
{
	int fd;
	pid_t haul = stalled(fault, &fd);

	cr_assert_not(has_addr(M.net.a), "the address is still at the source while frozen");
	cr_assert(haul_tables_in(M.net.a), "no lock while frozen");
	th_kill(haul, SIGKILL, 2000);
	close(fd);
	/* the survivor puts the address back and lifts the lock; the guardian thaws */
	cr_assert(eventually(addr_back_at_a_only, 5000), "the address is not back at the source");
	cr_assert(eventually(no_tables, 5000), "a lock table is left");
	cr_assert(th_mig_ticking(&M, M.net_a, 5000), "the source does not run");
	cr_assert_eq(th_mig_copies(&M), 1);
}

Test(mig_netlock, haul_killed_while_frozen_puts_the_address_back, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	killed_before_the_restore("stall:frozen");
}

Test(mig_netlock, haul_killed_while_seized_puts_the_address_back, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	killed_before_the_restore("stall:seized");
}

Test(mig_netlock, haul_killed_with_the_state_sent_puts_the_address_back, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	killed_before_the_restore("stall:state");
}

Test(mig_netlock, page_server_killed_mid_switch_rolls_the_address_back, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	int fd, st;
	pid_t haul = stalled("stall:frozen:1500", &fd);

	th_kill(M.ps_pid, SIGKILL, 2000);
	M.ps_pid = 0;
	st = th_wait_exit(haul, 30000);
	if (st != 1)
		th_mig_dump_output(fd);
	cr_assert_eq(st, 1, "haul did not fail cleanly (%d)", st);
	close(fd);
	cr_assert(addr_back_at_a_only(), "the address is not back at the source");
	cr_assert(no_tables(), "a lock table is left");
	cr_assert(th_mig_ticking(&M, M.net_a, 5000), "the source does not run");
	cr_assert(client_reaches_service(),
		  "the client cannot reach " SVC_ADDR " back at the source");
}

Test(mig_netlock, haul_killed_between_resume_and_commit_leaves_no_table, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	int fd;
	pid_t haul = stalled("stall:restored", &fd);

	cr_assert(has_addr(M.net.b), "the target does not have the address after the resume");
	th_kill(haul, SIGKILL, 2000);
	close(fd);
	/* in doubt: the target killed its uncommitted copy and took the address off again */
	cr_assert(eventually(no_tables, 5000), "a lock table is left");
	cr_assert_not(has_addr(M.net.b), "the target kept the address of a copy it killed");
	cr_assert_not(has_addr(M.net.a), "the in-doubt source got its address back");
}

Test(mig_netlock, haul_killed_after_the_commit_leaves_the_address_at_the_target, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	int fd;
	pid_t haul = stalled("stall:committed", &fd);

	th_kill(haul, SIGKILL, 2000);
	close(fd);
	cr_assert(eventually(no_tables, 5000), "a lock table is left");
	cr_assert(has_addr(M.net.b), "the target lost the address");
	cr_assert_not(has_addr(M.net.a), "the source has the address too");
	cr_assert(th_mig_ticking(&M, M.net_b, 5000), "the target copy does not run");
}

/* The hooks' log: one line per run, "SIDE PHASE". */
static void hook_logging(char *hook, size_t len, char *log, size_t ll, const char *fail_phase)
{
	snprintf(log, ll, "%s/hooks", M.dir);
	snprintf(hook, len,
		 "echo \"$HAUL_SIDE $HAUL_SWITCH_PHASE\" >> %s; test \"$HAUL_SWITCH_PHASE\" != %s",
		 log, fail_phase);
}

static void assert_rolled_back(const char *const extra[], const char *log, const char *phases)
{
	int st;

	th_mig_workload(&M, 16, 8, 0);
	th_mig_ticks(&M, 2, 10000);
	st = th_mig_migrate(&M, extra, 60000);
	cr_assert_eq(st, 1, "haul migrate did not roll back (%d)", st);
	cr_assert(addr_back_at_a_only(), "the address is not back at the source");
	cr_assert(eventually(no_tables, 3000), "a lock table is left");
	cr_assert(th_mig_ticking(&M, M.net_a, 5000), "the source does not run");
	cr_assert_eq(th_mig_copies(&M), 1);
	cr_assert(client_reaches_service(), "the client cannot reach the source again");
	cr_assert_eq(th_sh("test \"$(awk '{print $2}' %s | tr '\\n' ' ')\" = '%s'", log, phases), 0,
		     "the hooks did not run as %s", phases);
}

Test(mig_netlock, a_failing_source_down_hook_rolls_back, .init = svc_setup, .fini = svc_teardown,
     .timeout = 120)
{
	char hook[256], log[160];

	hook_logging(hook, sizeof(hook), log, sizeof(log), "source-down");
	{
		const char *extra[] = {"--move-address", SVC_PFX, "--on-switch", hook, NULL};

		assert_rolled_back(extra, log, "source-down source-up ");
	}
}

Test(mig_netlock, a_failing_target_prepare_hook_rolls_back, .init = svc_setup, .fini = svc_teardown,
     .timeout = 120)
{
	const char *extra[] = {"--move-address", SVC_PFX, NULL};
	char hook[256], log[160];

	hook_logging(hook, sizeof(hook), log, sizeof(log), "target-prepare");
	pageserver_with_hook(hook);
	assert_rolled_back(extra, log, "target-prepare target-abort ");
}

#define SVC6_ADDR TH_SVC6_ADDR

static bool has_addr6(const char *ns)
{
	return th_mig_has_addr(ns, TH_SVC6_PFX);
}

Test(mig_netlock, move_address_moves_an_ipv6_address_and_announces_it, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	const char *extra[] = {"--move-address", TH_SVC6_PFX, NULL};
	long seq;

	th_mig_svc_ipv6(&M);
	cr_assert_not(client_neigh_is_b(SVC6_ADDR));
	th_mig_workload(&M, 16, 8, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	cr_assert(has_addr6(M.net.b), "the target does not have " SVC6_ADDR);
	cr_assert_not(has_addr6(M.net.a), "the source still has " SVC6_ADDR);
	cr_assert(eventually(no_tables, 3000), "a lock table is left");
	/* the unsolicited advertisement overrode the client's entry, before any new probe */
	cr_assert(client_neigh_is_b(SVC6_ADDR), "the client's neighbour entry does not name B");
	cr_assert(th_mig_client_reaches(&M, SVC6_ADDR),
		  "the client cannot reach " SVC6_ADDR " at the target");
}

/* haul killed in the middle of an injected call of the dump (HAUL_FAULT=kill:inject:STEP:N). */
struct inject_at {
	char step[16];
	int n;
};

ParameterizedTestParameters(mig_netlock, haul_killed_mid_injection_puts_the_address_back)
{
	/* the dump's, after the freeze and the lock (crash_inject.c numbers them) */
	static struct inject_at k[] = {{"seize", 2}, {"call", 7}, {"unhold", 2}};

	return cr_make_param_array(struct inject_at, k, sizeof(k) / sizeof(k[0]));
}

ParameterizedTest(struct inject_at *k, mig_netlock, haul_killed_mid_injection_puts_the_address_back,
		  .init = svc_setup, .fini = svc_teardown, .timeout = 120)
{
	const char *extra[] = {"--move-address", SVC_PFX, NULL};
	char fault[64];
	int fd, st;
	pid_t haul;

	th_mig_workload(&M, 16, 8, 0);
	th_mig_ticks(&M, 2, 10000);
	snprintf(fault, sizeof(fault), "kill:inject:%s:%d", k->step, k->n);
	setenv("HAUL_FAULT", fault, 1);
	haul = th_mig_haul(&M, &fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(haul, 0);
	st = th_wait_exit(haul, 30000);
	close(fd);
	cr_assert_eq(st, 128 + SIGKILL, "haul did not reach %s (%d)", fault, st);
	cr_assert(eventually(addr_back_at_a_only, 5000), "the address is not back at the source");
	cr_assert(eventually(no_tables, 5000), "a lock table is left");
	cr_assert(th_mig_ticking(&M, M.net_a, 5000), "the source does not run");
	cr_assert(th_mig_verify(&M), "the source's memory is not intact");
	cr_assert_eq(th_mig_copies(&M), 1);
	cr_assert(client_reaches_service(), "the client cannot reach the source again");
}

Test(mig_netlock, move_address_with_postcopy_moves_it_at_the_resume, .init = svc_setup,
     .fini = svc_teardown, .timeout = 120)
{
	const char *extra[] = {"--postcopy", "--move-address", SVC_PFX, NULL};
	long seq;

	th_mig_workload(&M, 32, 8, 0);
	th_mig_ticks(&M, 3, 10000);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate --postcopy failed");
	th_mig_assert_moved(&M, seq);
	cr_assert(has_addr(M.net.b), "the target does not have " SVC_ADDR);
	cr_assert_not(has_addr(M.net.a), "the source still has " SVC_ADDR);
	cr_assert(eventually(no_tables, 3000), "a lock table is left");
	cr_assert(client_neigh_is_b(SVC_ADDR), "the client's neighbour entry does not name B");
	cr_assert(client_reaches_service(), "the client cannot reach " SVC_ADDR " at the target");
}
