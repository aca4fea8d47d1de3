/*
 * rst_unix.c - unix listeners across checkpoint and restore: on a path
 * and on an abstract name, stream and seqpacket; the copy accepts new
 * connections and answers on them.  A path taken by something that is not
 * a socket fails the restore by name; the path case also goes through
 * `haul migrate` between two network namespaces (th_mig.h).  The workload
 * is tests/progs/rst_unix (an echo server); a listener with a connection
 * not accepted yet is refused in rst_refuse.c.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "restore/fd_int.h"
#include "restore/restore.h"
#include "th_mig.h"
#include "th_rst.h"

struct ucase {
	char dir[128], out[160], stop[160];
	const char *mode;
	pid_t pid;
};

/* Wait up to @ms until @path exists (the workload's ready signal). */
static bool wait_exists(const char *path, int ms)
{
	struct timespec ts = {0, 5000000};

	for (int i = 0; i < ms / 5; i++) {
		if (!access(path, F_OK))
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

/* Connect to the listener of mode @mode in @dir, send @msg; its answer must be "echo:@msg". */
static void ask(const char *mode, const char *dir, const char *msg)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char want[160], got[160] = "";
	socklen_t sl;
	ssize_t n;
	int s;

	if (strstr(mode, "path-")) {
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/sock", dir);
		sl = offsetof(struct sockaddr_un, sun_path) + strlen(sun.sun_path) + 1;
	} else {
		memcpy(sun.sun_path + 1, dir, strlen(dir));
		sl = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(dir);
	}
	s = socket(AF_UNIX, strstr(mode, "seqpacket") ? SOCK_SEQPACKET : SOCK_STREAM, 0);
	cr_assert_geq(s, 0);
	cr_assert_eq(connect(s, (struct sockaddr *)&sun, sl), 0, "connect to the %s listener: %s",
		     mode, strerror(errno));
	cr_assert_eq(write(s, msg, strlen(msg)), (ssize_t)strlen(msg));
	n = read(s, got, sizeof(got) - 1);
	cr_assert_gt(n, 0, "no answer from the %s listener", mode);
	got[n] = '\0';
	/* its end of the connection is closed once it is done: no fd of it is left to dump */
	cr_expect_eq(read(s, want, sizeof(want)), 0, "the %s listener kept the connection", mode);
	close(s);
	snprintf(want, sizeof(want), "echo:%s", msg);
	cr_expect_str_eq(got, want, "the %s listener answered '%s'", mode, got);
}

/*
 * After every test, passed or failed: its workload and a restored copy of it
 * (argv names the test's directory, which holds the test's pid) are killed,
 * and the directories go; a failed assertion skips the test's own cleanup.
 */
static void suite_fini(void)
{
	/* [x]: the pattern must not match the shell that runs pkill */
	th_sh("pkill -9 -f '/tmp/haul-uni[x]-.*-%d$'", (int)getpid());
	th_sh("rm -rf /tmp/haul-unix-*-%d", (int)getpid());
}

TestSuite(rst_unix, .fini = suite_fini);

/* Start `rst_unix @mode DIR` and wait until it listens. */
static void start(struct ucase *c, const char *mode)
{
	const char *const args[] = {mode, c->dir, NULL};
	char ready[160];

	c->mode = mode;
	snprintf(c->dir, sizeof(c->dir), "/tmp/haul-unix-%s-%d", mode, (int)getpid());
	snprintf(c->out, sizeof(c->out), "%s/out", c->dir);
	snprintf(c->stop, sizeof(c->stop), "%s/stop", c->dir);
	snprintf(ready, sizeof(ready), "%s/ready", c->dir);
	mkdir(c->dir, 0755);
	c->pid = th_spawn_prog(c->out, "rst_unix", args);
	cr_assert(wait_exists(ready, 10000), "rst_unix %s never got ready: %s", mode,
		  th_slurp(c->out));
}

static void cleanup(const struct ucase *c)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", c->dir);
}

/* Checkpoint and kill it; restore it: 0 with the copy in *@t, or the restorer's error. */
static int checkpoint_restore(struct ucase *c, struct rst_target **t, char *why, size_t wl)
{
	struct th_snap s;
	int ret;

	ret = th_snap_take_kill(c->pid, &s);
	cr_assert_eq(ret, 0, "dump of %s failed: %s", c->mode, strerror(-ret));
	ret = th_snap_restore(&s, c->pid, RST_PIDNS_AUTO, t, why, wl);
	th_snap_free(&s);
	return ret;
}

/* The listener at fd @fd of @pid has backlog @want (sock_diag, as the dump reads it). */
static void expect_backlog(pid_t pid, int fd, uint32_t want)
{
	struct rst_unix_info u;
	char link[64];
	struct stat st;

	snprintf(link, sizeof(link), "/proc/%d/fd/%d", (int)pid, fd);
	cr_assert_eq(stat(link, &st), 0, "no fd %d in the copy", fd);
	cr_assert_eq(rst_unix_diag(st.st_ino, &u), 0);
	cr_expect_eq(u.state, 10, "fd %d of the copy is not listening", fd);
	cr_expect_eq(u.wqlen, want, "the copy's listener has backlog %u, want %u", u.wqlen, want);
}

/* Serve, move, serve twice from the copy, stop it: it must end with "final ok served 3". */
static void listener_case(const char *mode)
{
	struct rst_target *t;
	char why[512] = "";
	struct ucase c;
	int ret, fd;

	start(&c, mode);
	ask(mode, c.dir, "before");
	ret = checkpoint_restore(&c, &t, why, sizeof(why));
	cr_assert_eq(ret, 0, "restore of %s failed: %s (%s)", mode, strerror(-ret), why);
	ask(mode, c.dir, "after-1");
	ask(mode, c.dir, "after-2");
	if (strstr(mode, "path-")) {
		char sock[256];
		struct stat st;

		snprintf(sock, sizeof(sock), "%s/sock", c.dir);
		cr_assert_eq(stat(sock, &st), 0, "%s: %s", sock, strerror(errno));
		cr_expect_eq(st.st_mode & 07777, 0640, "%s is %o, not 0640", sock,
			     st.st_mode & 07777);
	}
	expect_backlog(c.pid, strncmp(mode, "connlate-", 9) ? 3 : 20, 7);
	fd = open(c.stop, O_WRONLY | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	ret = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(ret, 0, "restored rst_unix %s exited with %d: %s", mode, ret, th_slurp(c.out));
	cr_expect(strstr(th_slurp(c.out), "final ok served 3"), "%s", th_slurp(c.out));
	if (!strncmp(mode, "conn", 4))
		cr_expect(strstr(th_slurp(c.out), "pair ok") &&
				  strstr(th_slurp(c.out), "options ok"),
			  "%s", th_slurp(c.out));
	if (!strncmp(mode, "gone-", 5))
		cr_expect(strstr(th_slurp(c.out), "gone ok"), "%s", th_slurp(c.out));
	cleanup(&c);
}

Test(rst_unix, stream_listener_on_a_path_accepts_after_restore, .timeout = 60)
{
	listener_case("path-stream");
}

Test(rst_unix, seqpacket_listener_on_a_path_accepts_after_restore, .timeout = 60)
{
	listener_case("path-seqpacket");
}

Test(rst_unix, stream_listener_on_an_abstract_name_accepts_after_restore, .timeout = 60)
{
	listener_case("abstract-stream");
}

Test(rst_unix, seqpacket_listener_on_an_abstract_name_accepts_after_restore, .timeout = 60)
{
	listener_case("abstract-seqpacket");
}

/*
 * A connection of the process to its own listener: each end keeps its
 * queued bytes, the accepted end the listener's name; the stop checks
 * them and talks both ways (tests/progs/rst_unix.c), the listener
 * serves the test before and after.
 */
static void pair_case(const char *mode)
{
	listener_case(mode);
}

/*
 * zdtm sockets02: a connection whose other end closed (a client gone, the
 * other end of a socketpair closed) was refused as unconnected; a server
 * could not move while one of its clients was going away.  Its bytes come
 * back, then the end of the stream, and the accepted end keeps its name.
 */
Test(rst_unix, stream_ends_whose_peers_closed_keep_their_bytes_then_eof, .timeout = 60)
{
	listener_case("gone-path-stream");
}

Test(rst_unix, seqpacket_ends_whose_peers_closed_keep_their_messages_then_eof, .timeout = 60)
{
	listener_case("gone-abstract-seqpacket");
}

Test(rst_unix, accepted_stream_connection_keeps_its_bytes_and_names_on_a_path, .timeout = 60)
{
	pair_case("conn-path-stream");
}

Test(rst_unix, accepted_seqpacket_connection_keeps_boundaries_on_an_abstract_name, .timeout = 60)
{
	pair_case("conn-abstract-seqpacket");
}

Test(rst_unix, client_end_bound_before_it_connected_keeps_its_name, .timeout = 60)
{
	pair_case("connbound-path-stream");
	pair_case("connbound-abstract-seqpacket");
}

Test(rst_unix, accepted_connection_restored_before_its_listener_fd, .timeout = 60)
{
	pair_case("connlate-path-stream");
	pair_case("connlate-abstract-stream");
}

Test(rst_unix, listener_path_taken_by_a_regular_file_fails_the_restore, .timeout = 60)
{
	struct rst_target *t = NULL;
	char why[512] = "", sock[200];
	struct ucase c;
	struct stat st;
	int ret, fd;

	start(&c, "path-stream");
	snprintf(sock, sizeof(sock), "%s/sock", c.dir);
	/* the dump kills the source: its stale socket inode is what a restore unlinks */
	struct th_snap s;

	ret = th_snap_take_kill(c.pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	cr_assert_eq(unlink(sock), 0);
	fd = open(sock, O_WRONLY | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	ret = th_snap_restore(&s, c.pid, RST_PIDNS_AUTO, &t, why, sizeof(why));
	th_snap_free(&s);
	cr_expect_eq(ret, -EEXIST, "restore over a regular file returned %d (%s)", ret, why);
	cr_expect(strstr(why, "socket:["), "the failure does not name the socket: %s", why);
	cr_expect(!stat(sock, &st) && S_ISREG(st.st_mode), "the regular file %s was touched", sock);
	if (!ret) {
		rst_target_wait(t);
		rst_target_free(t);
	}
	cleanup(&c);
}

/*
 * zdtm fifo_upon_unix_socket00: the listener's name unlinked while it runs
 * and taken by a FIFO.  A restore's bind would take the FIFO's place: the
 * precheck refuses naming the path, and the process runs on.
 */
Test(rst_unix, listener_whose_name_now_names_a_fifo_is_refused_at_the_precheck, .timeout = 60)
{
	char why[512] = "", sock[200];
	struct ucase c;
	int ret, fd;

	start(&c, "path-stream");
	snprintf(sock, sizeof(sock), "%s/sock", c.dir);
	cr_assert_eq(unlink(sock), 0);
	cr_assert_eq(mkfifo(sock, 0600), 0);
	ret = rst_dump_precheck(c.pid, why, sizeof(why));
	cr_expect_eq(ret, -EOPNOTSUPP, "precheck returned %d (%s)", ret, why);
	cr_expect(strstr(why, "fd 3: unix socket bound to") &&
			  strstr(why, "now names another file"),
		  "%s", why);
	fd = open(c.stop, O_WRONLY | O_CREAT, 0644);
	close(fd);
	cr_expect_eq(th_wait_exit(c.pid, 20000), 0, "it did not finish: %s", th_slurp(c.out));
	cleanup(&c);
}

/*
 * A listener another process holds too (a parent, systemd's socket
 * activation): the restore would unlink the path under it.  The test takes
 * a copy (pidfd_getfd); the precheck refuses naming the holder, and the
 * process runs on.
 */
Test(rst_unix, listener_another_process_holds_is_refused_by_name, .timeout = 60)
{
	char why[512] = "", want[64];
	struct ucase c;
	int pidfd, copy, ret, fd;

	start(&c, "path-stream");
	pidfd = (int)syscall(SYS_pidfd_open, c.pid, 0);
	cr_assert_geq(pidfd, 0);
	copy = (int)syscall(SYS_pidfd_getfd, pidfd, 3, 0); /* the listener: its first fd */
	cr_assert_geq(copy, 0, "cannot copy the listener: %s", strerror(errno));
	ret = rst_dump_precheck(c.pid, why, sizeof(why));
	cr_expect_eq(ret, -EOPNOTSUPP, "precheck returned %d (%s)", ret, why);
	snprintf(want, sizeof(want), "shared with pid %d", (int)getpid());
	cr_expect(strstr(why, "fd 3 is a socket") && strstr(why, want), "%s", why);
	close(copy);
	close(pidfd);
	ask("path-stream", c.dir, "still-there");
	fd = open(c.stop, O_WRONLY | O_CREAT, 0644);
	close(fd);
	cr_expect_eq(th_wait_exit(c.pid, 20000), 0, "it did not finish: %s", th_slurp(c.out));
	cleanup(&c);
}

/* ---- through haul migrate --------------------------------------------------------------- */

static struct th_mig M;

static void mig_teardown(void)
{
	th_mig_teardown(&M);
}

/* `rst_unix @mode` (a path mode) in host A, migrated to B, serves there and stops cleanly. */
static void migrate_case(const char *mode)
{
	const char *extra[] = {"--downtime", "200", NULL};
	char bin[512], dir[160], out[200], path[200], line[512];
	char *argv[] = {bin, (char *)mode, dir, NULL};
	int fd, st;
	pid_t h;

	th_mig_setup(&M, 0);
	snprintf(dir, sizeof(dir), "%s/%s", M.dir, M.tag);
	cr_assert_eq(mkdir(dir, 0755), 0);
	snprintf(bin, sizeof(bin), "%s/rst_unix", th_progs_dir());
	snprintf(out, sizeof(out), "%s/out", dir);
	M.wl_pid = th_spawn(M.net.a, argv, out);
	cr_assert_gt(M.wl_pid, 0);
	snprintf(path, sizeof(path), "%s/ready", dir);
	cr_assert(wait_exists(path, 10000), "rst_unix never got ready: %s", th_slurp(out));
	ask(mode, dir, "before");
	h = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(h, 0);
	st = th_wait_exit(h, 60000);
	if (st != 0)
		while (th_read_line(fd, line, sizeof(line)) == 0)
			cr_log_error("%s", line);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate failed");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy after the move");
	ask(mode, dir, "after-1");
	ask(mode, dir, "after-2");
	snprintf(path, sizeof(path), "%s/stop", dir);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	close(fd);
	cr_assert_eq(th_wait_file(out, 0, "final ok served 3", 20000, NULL, 0), 0,
		     "the migrated copy did not finish cleanly: %s", th_slurp(out));
	if (!strncmp(mode, "conn", 4))
		cr_expect(strstr(th_slurp(out), "pair ok"), "%s", th_slurp(out));
	if (!strncmp(mode, "gone-", 5))
		cr_expect(strstr(th_slurp(out), "gone ok"), "%s", th_slurp(out));
}

Test(rst_unix, stream_listener_on_a_path_accepts_after_haul_migrate, .fini = mig_teardown,
     .timeout = 120)
{
	migrate_case("path-stream");
}

Test(rst_unix, a_server_whose_client_went_away_moves_with_haul_migrate, .fini = mig_teardown,
     .timeout = 120)
{
	migrate_case("gone-path-seqpacket");
}

Test(rst_unix, accepted_connection_keeps_its_bytes_and_names_across_haul_migrate,
     .fini = mig_teardown, .timeout = 120)
{
	migrate_case("conn-path-stream");
}
