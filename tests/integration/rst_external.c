/*
 * rst_external.c - fds whose other end stays behind (fd_external.c): a
 * pipe to a process that does not move (`prog | cat`, here the test
 * itself holds the read end) and a service's stdout on a unix stream
 * socket (the test stands in for journald, on a path in its directory).
 * Each is checkpointed and restored, or migrated to a page server on
 * loopback, with each SPEC, and the lines the restored copy writes are
 * looked for where the SPEC sends them.  The refusal without a rule names
 * the fd, its other end and the option, and leaves the process running.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th_net.h"

static char dir[64], key[96], tag[32];
static pid_t prog = -1, restored = -1, server = -1;
static int rd = -1, lsock = -1, server_fd = -1, conn = -1;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/haul-rstext-%d", getpid());
	snprintf(key, sizeof(key), "%s/key", dir);
	snprintf(tag, sizeof(tag), "rstexttag%d", getpid());
	mkdir(dir, 0755);
	cr_assert_eq(th_make_key(key), 0);
	setenv("HAUL_LOCK_DIR", dir, 1);
	if (access(th_haul_bin(), X_OK))
		cr_skip_test("no haul binary at %s", th_haul_bin());
}

static void kill_pidfd(pid_t pid)
{
	int fd = (int)syscall(SYS_pidfd_open, pid, 0);

	if (fd >= 0) {
		syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
		close(fd);
	}
}

static void teardown(void)
{
	pid_t left;

	if (restored > 0)
		kill_pidfd(restored);
	/* copies restored by a page server outlive it: found by the tag on their line */
	for (int i = 0; i < 16 && th_count_procs(tag, &left) > 0; i++) {
		kill_pidfd(left);
		usleep(20000);
	}
	th_kill(prog, SIGKILL, 2000);
	th_kill(server, SIGKILL, 2000);
	if (rd >= 0)
		close(rd);
	if (lsock >= 0)
		close(lsock);
	if (server_fd >= 0)
		close(server_fd);
	if (conn >= 0)
		close(conn);
	prog = restored = server = -1;
	rd = lsock = server_fd = conn = -1;
	unsetenv("HAUL_LOCK_DIR");
	th_sh("rm -rf %s", dir);
}

TestSuite(rst_external, .init = setup, .fini = teardown, .timeout = 90);

/* rst_ext with @mode (@arg) and stdout on @out, stdin and stderr /dev/null, no other fd. */
static pid_t spawn_ext(const char *mode, const char *arg, int out)
{
	char path[512];
	pid_t pid;

	snprintf(path, sizeof(path), "%s/rst_ext", th_progs_dir());
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(null, 0);
		dup2(out, 1);
		dup2(null, 2);
		syscall(SYS_close_range, 3, ~0U, 0);
		/* the tag last, ignored by rst_ext: teardown finds every copy by it */
		execl(path, "rst_ext", mode, arg ? arg : tag, arg ? tag : NULL, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* `rst_ext lines | (the test)`: the test holds the read end in rd. */
static void start_piped(void)
{
	int p[2];
	char line[128];

	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	prog = spawn_ext("lines", NULL, p[1]);
	close(p[1]);
	rd = p[0];
	cr_assert_eq(th_wait_line(rd, "line ", 5000, line, sizeof(line)), 0, "rst_ext never wrote");
}

/* The PID haul restore --detach printed (a line of digits in @out). */
static pid_t printed_pid(const char *out)
{
	for (const char *l = out; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		size_t n = strspn(l, "0123456789");

		if (n && (l[n] == '\n' || !l[n]))
			return atoi(l);
	}
	cr_assert_fail("no PID in: %s", out);
	return -1;
}

/* Checkpoint prog with @ckpt_opts, restore it detached with @rst_opts (shell text). */
static void checkpoint_restore(const char *ckpt_opts, const char *rst_opts)
{
	char out[8192];

	cr_assert_eq(th_run(out, sizeof(out), "%s checkpoint %d --images %s/img %s", th_haul_bin(),
			    (int)prog, dir, ckpt_opts),
		     0, "checkpoint failed: %s", out);
	cr_assert(strstr(out, "stays behind"), "the dump did not say what the fd becomes: %s", out);
	th_kill(prog, SIGKILL, 2000); /* reaped: it was killed by the checkpoint */
	prog = -1;
	cr_assert_eq(th_run(out, sizeof(out), "%s restore --images %s/img --detach %s </dev/null",
			    th_haul_bin(), dir, rst_opts),
		     0, "restore failed: %s", out);
	cr_assert(strstr(out, "stayed behind"), "the restore did not say what the fd became: %s",
		  out);
	restored = printed_pid(out);
}

/* The link of fd @fd of @pid. */
static void fd_link(pid_t pid, int fd, char *buf, size_t len)
{
	char p[64];
	ssize_t n;

	snprintf(p, sizeof(p), "/proc/%d/fd/%d", (int)pid, fd);
	n = readlink(p, buf, len - 1);
	buf[n > 0 ? n : 0] = '\0';
}

Test(rst_external, a_pipe_to_a_process_that_stays_is_refused_naming_the_fd_its_other_end_and_option)
{
	char out[4096], want[64], line[128];

	start_piped();
	cr_expect_eq(th_run(out, sizeof(out), "%s checkpoint %d --images %s/img", th_haul_bin(),
			    (int)prog, dir),
		     1);
	snprintf(want, sizeof(want), "fd 1 is a pipe to pid %d", (int)getpid());
	cr_expect(strstr(out, want), "said: %s", out);
	cr_expect(strstr(out, "--external-fd 1="), "said: %s", out);
	/* untouched: it goes on writing into the pipe */
	cr_expect_eq(th_wait_line(rd, "line ", 5000, line, sizeof(line)), 0);
	cr_expect_eq(kill(prog, 0), 0);
}

Test(rst_external, a_pipe_becomes_a_file_and_the_restored_lines_are_appended_to_it)
{
	char opt[160], line[128];

	start_piped();
	snprintf(opt, sizeof(opt), "--external-fd 1=file:%s/out", dir);
	checkpoint_restore(opt, "");
	cr_expect_eq(th_wait_file(strchr(opt, '/'), 0, "line ", 5000, line, sizeof(line)), 0,
		     "no line in %s", strchr(opt, '/'));
}

Test(rst_external, a_pipe_becomes_dev_null_by_kind)
{
	char link[256];

	start_piped();
	checkpoint_restore("--external pipe=null", "");
	fd_link(restored, 1, link, sizeof(link));
	cr_expect_str_eq(link, "/dev/null");
	cr_expect_eq(kill(restored, 0), 0, "the restored copy died");
}

Test(rst_external, a_rule_of_the_restoring_haul_hands_it_an_inherited_fd_over_the_source_choice)
{
	char opt[64], line[128];
	int p[2];

	start_piped();
	/* the source says /dev/null; the restoring haul's fd 5 (a pipe to us) wins */
	cr_assert_eq(pipe(p), 0);
	snprintf(opt, sizeof(opt), "--external-fd 1=fd:%d", p[1]);
	checkpoint_restore("--external-fd 1=null", opt);
	close(p[1]);
	cr_expect_eq(th_wait_line(p[0], "line ", 5000, line, sizeof(line)), 0,
		     "no line came through the inherited fd");
	close(p[0]);
}

/* A unix stream socket listening on @path: the journald stand-in. */
static int listen_unix(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	cr_assert_geq(s, 0);
	cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(s, 8), 0);
	return s;
}

/* The next connection to @s within 5 s, or -1. */
static int accept_within(int s)
{
	struct pollfd p = {.fd = s, .events = POLLIN};

	if (poll(&p, 1, 5000) != 1)
		return -1;
	return accept4(s, NULL, NULL, SOCK_CLOEXEC);
}

/* The first @len bytes (or less, at EOF or after 5 s) of stream @c into @buf, NUL-terminated. */
static size_t read_some(int c, char *buf, size_t len)
{
	size_t n = 0;

	while (n + 1 < len) {
		struct pollfd p = {.fd = c, .events = POLLIN};
		ssize_t k;

		if (poll(&p, 1, 5000) != 1)
			break;
		k = read(c, buf + n, len - 1 - n);
		if (k <= 0)
			break;
		n += k;
	}
	buf[n] = '\0';
	return n;
}

/* A service on the stand-in socket: its first connection is accepted and read once. */
static void start_service(char *path, size_t plen)
{
	char buf[64];
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);

	snprintf(path, plen, "%s/journal.sock", dir);
	lsock = listen_unix(path);
	prog = spawn_ext("service", path, null);
	close(null);
	/* kept open: a closed stream would kill it with SIGPIPE */
	conn = accept_within(lsock);
	cr_assert_geq(conn, 0, "the service never connected");
	read_some(conn, buf, sizeof(buf));
	cr_assert(strstr(buf, "line "), "the service wrote: %s", buf);
}

Test(rst_external, a_service_on_a_unix_stream_socket_reconnects_by_default_and_its_lines_arrive)
{
	char path[128], buf[256];
	int c;

	start_service(path, sizeof(path));
	checkpoint_restore("", "");
	c = accept_within(lsock);
	cr_assert_geq(c, 0, "the restored service did not connect again");
	read_some(c, buf, sizeof(buf));
	close(c);
	cr_expect_eq(strncmp(buf, "line ", 5), 0, "the new stream began with: %s", buf);
}

Test(rst_external, journal_spec_writes_the_journald_stream_header_before_the_lines)
{
	char path[128], buf[256];
	int c;

	start_service(path, sizeof(path));
	checkpoint_restore("--external unix=journal", "");
	c = accept_within(lsock);
	cr_assert_geq(c, 0, "the restored service did not connect again");
	read_some(c, buf, sizeof(buf));
	close(c);
	cr_expect_eq(strncmp(buf, "rst_ext\n\n6\n1\n0\n0\n0\nline ", 24), 0,
		     "the new stream began with: %s", buf);
}

/* ---- the same across haul migrate, to a page server on loopback --------- */

/* A page server on 127.0.0.1 (its fd 5 appends to DIR/ps5.out); its port. */
static int start_pageserver(void)
{
	char cmd[512], line[256], *p;
	char *argv[] = {"/bin/sh", "-c", cmd, NULL};

	snprintf(cmd, sizeof(cmd), "exec %s pageserver --listen 127.0.0.1:0 --key %s 5>>%s/ps5.out",
		 th_haul_bin(), key, dir);
	server = th_spawn_pipe(NULL, argv, &server_fd);
	cr_assert_gt(server, 0);
	cr_assert_eq(th_wait_line(server_fd, "listening on", 5000, line, sizeof(line)), 0,
		     "the page server did not start");
	p = strrchr(line, ':');
	cr_assert_not_null(p);
	return atoi(p + 1);
}

/* haul migrate prog to the page server with @opts; the PID it runs as there. */
static void migrate(const char *opts)
{
	char out[8192];
	int port = start_pageserver();

	cr_assert_eq(th_run(out, sizeof(out), "%s migrate %d --to 127.0.0.1:%d --key %s %s",
			    th_haul_bin(), (int)prog, port, key, opts),
		     0, "migrate failed: %s", out);
	cr_assert(strstr(out, "stays behind"), "migrate did not say what the fd becomes: %s", out);
	th_kill(prog, SIGKILL, 2000);
	prog = -1;
}

Test(rst_external, migrate_sends_a_pipe_into_a_file_on_the_target)
{
	char opt[160], line[128];

	start_piped();
	snprintf(opt, sizeof(opt), "--external-fd 1=file:%s/out", dir);
	migrate(opt);
	cr_expect_eq(th_wait_file(strchr(opt, '/'), 0, "line ", 10000, line, sizeof(line)), 0,
		     "no line in %s", strchr(opt, '/'));
}

Test(rst_external, migrate_hands_a_pipe_an_inherited_fd_of_the_page_server)
{
	char path[128], line[128];

	start_piped();
	migrate("--external-fd 1=fd:5");
	snprintf(path, sizeof(path), "%s/ps5.out", dir);
	cr_expect_eq(th_wait_file(path, 0, "line ", 10000, line, sizeof(line)), 0,
		     "no line in the page server's fd 5");
}

Test(rst_external, migrate_makes_a_pipe_dev_null_and_the_copy_runs_on)
{
	char link[256];
	pid_t moved = -1;

	start_piped();
	migrate("--external-fd 1=null");
	/* the copy is the page server's: found by the tag on its command line */
	cr_assert_eq(th_count_procs(tag, &moved), 1);
	fd_link(moved, 1, link, sizeof(link));
	cr_expect_str_eq(link, "/dev/null");
}

Test(rst_external, migrate_reconnects_a_service_to_its_socket_path)
{
	char path[128], buf[256];
	int c;

	start_service(path, sizeof(path));
	migrate("");
	c = accept_within(lsock);
	cr_assert_geq(c, 0, "the migrated service did not connect again");
	read_some(c, buf, sizeof(buf));
	close(c);
	cr_expect_eq(strncmp(buf, "line ", 5), 0, "the new stream began with: %s", buf);
}

Test(rst_external, a_named_fifo_is_refused_without_a_rule_and_becomes_a_file_with_one)
{
	char fifo[128], out[4096], line[128], opt[160];
	int w;

	snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
	cr_assert_eq(mkfifo(fifo, 0600), 0);
	rd = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	cr_assert_geq(rd, 0);
	w = open(fifo, O_WRONLY | O_CLOEXEC);
	cr_assert_geq(w, 0);
	prog = spawn_ext("lines", NULL, w);
	close(w);
	cr_assert_eq(th_wait_line(rd, "line ", 5000, line, sizeof(line)), 0, "rst_ext never wrote");
	cr_expect_eq(th_run(out, sizeof(out), "%s checkpoint %d --images %s/img", th_haul_bin(),
			    (int)prog, dir),
		     1);
	cr_expect(strstr(out, "fd 1 is a named fifo ") && strstr(out, "--external-fd 1="),
		  "said: %s", out);
	snprintf(opt, sizeof(opt), "--external fifo=file:%s/out", dir);
	checkpoint_restore(opt, "");
	cr_expect_eq(th_wait_file(strchr(opt, '/'), 0, "line ", 5000, line, sizeof(line)), 0,
		     "no line in %s", strchr(opt, '/'));
}
