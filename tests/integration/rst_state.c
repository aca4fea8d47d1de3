/*
 * rst_state.c - one kind of kernel state per test (tests/progs/state_subject),
 * through `haul checkpoint` + `haul restore --detach`, compared with
 * th_verify: the kinds CRIU's zdtm static suite found haul losing silently
 * (bench/RESULTS.md, "Conformance").  Either haul refuses the checkpoint,
 * with a message, and the source runs on untouched; or the restored process
 * has the same observable state.  Losing the state silently fails, by name.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/filter.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "th_net.h"
#include "th_verify.h"

/* Run `haul ARGS` (checkpoint or restore), its last output line in @line; its exit status. */
static int haul(char *line, size_t len, const char *a1, const char *a2, const char *a3,
		const char *a4, const char *a5)
{
	char bin[512];
	char *argv[] = {bin, (char *)a1, (char *)a2, (char *)a3, (char *)a4, (char *)a5, NULL};
	char buf[512];
	int fd, st;
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	pid = th_spawn_pipe(NULL, argv, &fd);
	cr_assert_gt(pid, 0);
	line[0] = '\0';
	while (th_wait_line(fd, "", 30000, buf, sizeof(buf)) == 0) {
		cr_log_info("haul %s: %s", a1, buf);
		snprintf(line, len, "%s", buf);
	}
	close(fd);
	st = th_wait_exit(pid, 30000);
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	return st;
}

/* A check of the restored process @here beyond th_verify's (per thread, say). */
typedef void (*roundtrip_check_fn)(pid_t here);

static void roundtrip_check(const char *kind, roundtrip_check_fn check);

static void roundtrip(const char *kind)
{
	roundtrip_check(kind, NULL);
}

static void roundtrip_run(const char *kind, roundtrip_check_fn check, bool carried);

static void roundtrip_check(const char *kind, roundtrip_check_fn check)
{
	roundtrip_run(kind, check, false);
}

/* The same, where a refusal is a failure: the state must be carried. */
static void roundtrip_carried(const char *kind, roundtrip_check_fn check)
{
	roundtrip_run(kind, check, true);
}

static void roundtrip_run(const char *kind, roundtrip_check_fn check, bool carried)
{
	char dir[128], out[160], img[160], line[512], spid[16];
	char *argv[] = {NULL, (char *)kind, dir, NULL};
	char prog[512];
	struct th_state *before;
	pid_t pid, here;
	int st;

	snprintf(dir, sizeof(dir), "/tmp/haul-state-%s-%d", kind, (int)getpid());
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(prog, sizeof(prog), "%s/state_subject", th_progs_dir());
	argv[0] = prog;
	th_sh("rm -rf %s", dir);
	cr_assert_eq(mkdir(dir, 0755), 0);
	pid = th_spawn(NULL, argv, out);
	cr_assert_gt(pid, 0);
	if (th_wait_file(out, 0, "ready", 10000, NULL, 0)) {
		/* it says "skip: why" where this kernel or these privileges refuse the state */
		st = th_wait_file(out, 0, "skip:", 0, line, sizeof(line));
		th_kill(pid, SIGKILL, 2000);
		th_sh("rm -rf %s", dir);
		if (!st)
			cr_skip_test("%s: %s", kind, line);
		cr_assert_fail("%s never got ready", kind);
	}
	cr_assert_eq(th_state_take(pid, 0, &before), 0);

	snprintf(spid, sizeof(spid), "%d", (int)pid);
	st = haul(line, sizeof(line), "checkpoint", spid, "--images", img, NULL);
	if (st) {
		/* refused: it must say why, and leave the source as it was */
		cr_expect(line[0], "haul checkpoint of %s exited %d with no message", kind, st);
		cr_expect_not(carried, "%s must be carried, and was refused: %s", kind, line);
		cr_log_info("%s: refused: %s", kind, line);
		th_verify_same(before, pid, 0, "the source after a refused checkpoint");
		th_kill(pid, SIGKILL, 2000);
	} else {
		th_wait_exit(pid, 5000); /* the checkpoint killed it: reap our child */
		st = haul(line, sizeof(line), "restore", "--images", img, "--detach", NULL);
		cr_assert_eq(st, 0, "%s: checkpointed, then restore failed: %s", kind, line);
		here = (pid_t)atoi(line);
		cr_assert_gt(here, 0, "restore printed no pid: %s", line);
		th_verify_same(before, here, 0, kind);
		if (check)
			check(here);
		kill(here, SIGKILL);
	}
	th_state_free(before);
	th_sh("rm -rf %s", dir);
}

Test(rst_state, oom_score_adj, .timeout = 60)
{
	roundtrip("oom_score_adj");
}

Test(rst_state, loginuid, .timeout = 60)
{
	roundtrip("loginuid");
}

Test(rst_state, child_subreaper, .timeout = 60)
{
	roundtrip("subreaper");
}

Test(rst_state, prctl_timerslack_thp_disable_pdeathsig, .timeout = 60)
{
	roundtrip("prctls");
}

/* zdtm's pdeath_sig: a process of another uid kept neither across the ids' restore */
Test(rst_state, pdeathsig_and_dumpable_of_another_uid, .timeout = 60)
{
	roundtrip("prctls_uid");
}

Test(rst_state, personality, .timeout = 60)
{
	roundtrip("personality");
}

Test(rst_state, rlimits, .timeout = 60)
{
	roundtrip("rlimits");
}

Test(rst_state, blocked_pending_ignored_and_caught_signals, .timeout = 60)
{
	roundtrip("signals");
}

Test(rst_state, cwd_and_umask, .timeout = 60)
{
	roundtrip("cwd_umask");
}

Test(rst_state, flock, .timeout = 60)
{
	roundtrip("flock");
}

Test(rst_state, posix_lock, .timeout = 60)
{
	roundtrip("posix_lock");
}

Test(rst_state, ofd_lock, .timeout = 60)
{
	roundtrip("ofd_lock");
}

Test(rst_state, read_lease, .timeout = 60)
{
	roundtrip("lease");
}

Test(rst_state, madvise_flags, .timeout = 60)
{
	roundtrip("madvise");
}

Test(rst_state, mlock, .timeout = 60)
{
	roundtrip("mlock");
}

Test(rst_state, pipe_end_flags, .timeout = 60)
{
	roundtrip("pipe_flags");
}

Test(rst_state, cloexec_on_eventfd_timerfd_epoll_and_file, .timeout = 60)
{
	roundtrip("cloexec_fds");
}

Test(rst_state, append_and_plain_file_positions, .timeout = 60)
{
	roundtrip("append_pos");
}

/*
 * Every thread of the restored process runs SCHED_OTHER with the nice it
 * had (and th_verify: the main thread's timer slack), although part of the
 * resume ran SCHED_FIFO (restore/target_boost.c).  /proc/PID/task/TID/stat:
 * w[16] is nice, w[38] policy (counted from the state after the comm).
 */
static void every_thread_other_nice_5(pid_t here)
{
	char path[320], buf[1024];
	struct dirent *de;
	int threads = 0;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)here);
	d = opendir(path);
	cr_assert_not_null(d);
	while ((de = readdir(d))) {
		char *p, *save = NULL, *w[64];
		int n = 0;
		FILE *f;
		size_t len;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%s/stat", (int)here, de->d_name);
		f = fopen(path, "r");
		cr_assert_not_null(f, "%s", path);
		len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		p = strrchr(buf, ')');
		cr_assert_not_null(p);
		for (char *t = strtok_r(p + 1, " \n", &save); t && n < 64;
		     t = strtok_r(NULL, " \n", &save))
			w[n++] = t;
		cr_assert_gt(n, 38);
		cr_expect_str_eq(w[16], "5", "thread %s: nice %s, not 5", de->d_name, w[16]);
		cr_expect_str_eq(w[38], "0", "thread %s: policy %s, not SCHED_OTHER", de->d_name,
				 w[38]);
		threads++;
	}
	closedir(d);
	cr_assert_eq(threads, 4);
}

Test(rst_state, every_thread_keeps_its_nice_and_policy_after_a_boosted_resume, .timeout = 60)
{
	roundtrip_check("nice_threads", every_thread_other_nice_5);
}

/*
 * The sockets state_subject "sockopts" holds: TCP at fd 10 bound to lo with
 * SNDBUF locked, UDP at fd 11 with a locked classic filter.
 */
static void socket_on_lo_with_sndbuf_lock(pid_t here)
{
	struct sock_filter f[8];
	int pfd = (int)syscall(SYS_pidfd_open, here, 0), sfd, lock = -1;
	char dev[32] = "";
	socklen_t l = sizeof(dev), il = sizeof(lock);

	cr_assert_geq(pfd, 0, "pidfd_open: %s", strerror(errno));
	sfd = (int)syscall(SYS_pidfd_getfd, pfd, 10, 0);
	close(pfd);
	cr_assert_geq(sfd, 0, "pidfd_getfd of fd 10: %s", strerror(errno));
	cr_expect_eq(getsockopt(sfd, SOL_SOCKET, SO_BINDTODEVICE, dev, &l), 0);
	cr_expect_str_eq(dev, "lo", "SO_BINDTODEVICE %s, not lo", dev);
	cr_expect_eq(getsockopt(sfd, SOL_SOCKET, 72 /* SO_BUF_LOCK */, &lock, &il), 0);
	cr_expect_eq(lock, 1, "SO_BUF_LOCK %d, not 1 (SOCK_SNDBUF_LOCK)", lock);
	close(sfd);
	/* fd 11: the classic filter, whole, and still locked */
	pfd = (int)syscall(SYS_pidfd_open, here, 0);
	sfd = (int)syscall(SYS_pidfd_getfd, pfd, 11, 0);
	close(pfd);
	cr_assert_geq(sfd, 0, "pidfd_getfd of fd 11: %s", strerror(errno));
	l = sizeof(f);
	cr_expect_eq(getsockopt(sfd, SOL_SOCKET, SO_GET_FILTER, f, &l), 0, "%s", strerror(errno));
	cr_expect_eq(l, 4, "the filter has %u instructions, not 4", (unsigned)l);
	cr_expect_eq(f[1].k, 1234, "the filter's compare is %u, not 1234", f[1].k);
	il = sizeof(lock);
	cr_expect_eq(getsockopt(sfd, SOL_SOCKET, SO_LOCK_FILTER, &lock, &il), 0);
	cr_expect_eq(lock, 1, "SO_LOCK_FILTER %d, not 1", lock);
	close(sfd);
}

/* The listeners of state_subject "reuseport": one port, SO_REUSEPORT off on fd 10 only. */
static void listeners_sharing_a_port(pid_t here)
{
	struct sockaddr_in a[2];
	int pfd = (int)syscall(SYS_pidfd_open, here, 0), v[2] = {-1, -1};

	cr_assert_geq(pfd, 0, "pidfd_open: %s", strerror(errno));
	for (int i = 0; i < 2; i++) {
		int sfd = (int)syscall(SYS_pidfd_getfd, pfd, 10 + i, 0);
		socklen_t l = sizeof(a[i]), vl = sizeof(v[i]);

		cr_assert_geq(sfd, 0, "pidfd_getfd of fd %d: %s", 10 + i, strerror(errno));
		cr_expect_eq(getsockname(sfd, (struct sockaddr *)&a[i], &l), 0);
		cr_expect_eq(getsockopt(sfd, SOL_SOCKET, SO_REUSEPORT, &v[i], &vl), 0);
		close(sfd);
	}
	close(pfd);
	cr_expect_eq(a[0].sin_port, a[1].sin_port, "the listeners are on ports %d and %d",
		     ntohs(a[0].sin_port), ntohs(a[1].sin_port));
	cr_expect(v[0] == 0 && v[1] == 1, "SO_REUSEPORT %d and %d, not 0 and 1", v[0], v[1]);
}

/* Whether a send on @s fails with EPIPE (shut for writes). */
static bool send_refused(int s)
{
	char c = 'x';

	errno = 0;
	return send(s, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT) == -1 && errno == EPIPE;
}

/* poll's answer on @s, what a blocking read would see (RCV_SHUTDOWN: POLLRDHUP). */
static short poll_now(int s)
{
	struct pollfd p = {s, POLLIN | POLLRDHUP, 0};

	return poll(&p, 1, 0) == 1 ? p.revents : 0;
}

/*
 * state_subject "udpshut": fd 10 shut for writes (EPIPE), fd 11 (never
 * bound) for reads (POLLRDHUP), fd 12 not shut, fd 13 both ways.
 */
static void udp_sockets_shut_down(pid_t here)
{
	int pfd = (int)syscall(SYS_pidfd_open, here, 0), s[4];

	cr_assert_geq(pfd, 0, "pidfd_open: %s", strerror(errno));
	for (int i = 0; i < 4; i++) {
		s[i] = (int)syscall(SYS_pidfd_getfd, pfd, 10 + i, 0);
		cr_assert_geq(s[i], 0, "pidfd_getfd %d: %s", 10 + i, strerror(errno));
	}
	close(pfd);
	cr_expect(send_refused(s[0]), "fd 10: a send on the socket shut for writes went through");
	cr_expect(poll_now(s[1]) & POLLRDHUP, "fd 11: the socket shut for reads polls as open");
	cr_expect_not(send_refused(s[2]), "fd 12 was not shut down, and refuses a send");
	cr_expect_not(poll_now(s[2]) & POLLRDHUP, "fd 12 was not shut down, and polls shut");
	cr_expect(send_refused(s[3]), "fd 13: a send on the socket shut both ways went through");
	cr_expect(poll_now(s[3]) & POLLRDHUP, "fd 13: the socket shut both ways polls as open");
	for (int i = 0; i < 4; i++)
		close(s[i]);
}

/* zdtm's socket_udp_shutdown: both came back open */
Test(rst_state, udp_sockets_come_back_shut_down, .timeout = 60)
{
	roundtrip_carried("udpshut", udp_sockets_shut_down);
}

/* What recv on @s gives now: the bytes into @buf, 0 at EOF, -errno (EAGAIN: nothing yet). */
static ssize_t recv_now(int s, char *buf, size_t len)
{
	ssize_t n = recv(s, buf, len, MSG_DONTWAIT);

	return n < 0 ? -errno : n;
}

/* state_subject "unixshut": each pair's shutdown and queue, as the subject made them. */
static void unix_pairs_shut_down(pid_t here)
{
	int pfd = (int)syscall(SYS_pidfd_open, here, 0), s[12];
	char buf[16] = "";

	cr_assert_geq(pfd, 0, "pidfd_open: %s", strerror(errno));
	for (int i = 0; i < 12; i++) {
		s[i] = (int)syscall(SYS_pidfd_getfd, pfd, 10 + i, 0);
		cr_assert_geq(s[i], 0, "pidfd_getfd %d: %s", 10 + i, strerror(errno));
	}
	close(pfd);
	/* stream, 10 shut for reads: 10 still sends, 11 cannot */
	cr_expect_not(send_refused(s[0]), "fd 10 (stream, shut for reads) cannot send");
	cr_expect_eq(recv_now(s[1], buf, sizeof(buf)), 1, "fd 11 did not get fd 10's byte");
	cr_expect(send_refused(s[1]), "fd 11 sends to fd 10, which was shut for reads");
	/* stream, 12 both ways: neither sends */
	cr_expect(send_refused(s[2]) && send_refused(s[3]), "fds 12/13 (both ways) send");
	/* datagram, 14 for reads: 14 sends, 15 cannot */
	cr_expect_not(send_refused(s[4]), "fd 14 (datagram, shut for reads) cannot send");
	cr_expect(send_refused(s[5]), "fd 15 sends to fd 14, which was shut for reads");
	/* datagram and seqpacket, queued then shut for writes: the message is there, no more */
	cr_expect_eq(recv_now(s[7], buf, sizeof(buf)), 1, "fd 17 lost its queued datagram");
	cr_expect(send_refused(s[6]), "fd 16 (datagram, shut for writes) sends");
	cr_expect_eq(recv_now(s[9], buf, sizeof(buf)), 1, "fd 19 lost its queued message");
	cr_expect(send_refused(s[8]), "fd 18 (seqpacket, shut for writes) sends");
	/* stream, "abc" then shut for writes: 21 reads it, then EOF */
	cr_expect_eq(recv_now(s[11], buf, sizeof(buf)), 3, "fd 21 lost its queued bytes");
	cr_expect_eq(memcmp(buf, "abc", 3), 0, "fd 21 read %.3s", buf);
	cr_expect_eq(recv_now(s[11], buf, sizeof(buf)), 0, "fd 21 sees no EOF after them");
	cr_expect(send_refused(s[10]), "fd 20 (stream, shut for writes) sends");
	for (int i = 0; i < 12; i++)
		close(s[i]);
}

/* state_subject "tcpclosed": ended connections read EOF and refuse writes; 12, 13 keep their ports. */
static void tcp_sockets_closed(pid_t here)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons(7432),
				.sin_addr.s_addr = htonl(0x7f000001)};
	int pfd = (int)syscall(SYS_pidfd_open, here, 0), s[4], other, on = 0;
	socklen_t ol = sizeof(on);
	char buf[4];

	cr_assert_geq(pfd, 0, "pidfd_open: %s", strerror(errno));
	for (int i = 0; i < 4; i++) {
		s[i] = (int)syscall(SYS_pidfd_getfd, pfd, 10 + i, 0);
		cr_assert_geq(s[i], 0, "pidfd_getfd %d: %s", 10 + i, strerror(errno));
	}
	close(pfd);
	cr_expect_eq(recv_now(s[0], buf, sizeof(buf)), 0, "fd 10 (ended) reads no EOF");
	cr_expect_eq(recv_now(s[1], buf, sizeof(buf)), 0, "fd 11 (ended) reads no EOF");
	cr_expect(send_refused(s[0]) && send_refused(s[1]), "a closed connection took a write");
	cr_expect_eq(recv_now(s[2], buf, sizeof(buf)), 0, "fd 12 (shut for reads) reads no EOF");
	/* fd 12 holds 127.0.0.1:7432 again: another bind of it fails */
	other = socket(AF_INET, SOCK_STREAM, 0);
	cr_expect_neq(bind(other, (struct sockaddr *)&a, sizeof(a)), 0,
		      "127.0.0.1:7432 is free: fd 12 was not bound again");
	close(other);
	/* fd 13 listens on the port fd 10 was accepted on */
	cr_expect(!getsockopt(s[3], SOL_SOCKET, SO_ACCEPTCONN, &on, &ol) && on,
		  "fd 13 does not listen any more");
	for (int i = 0; i < 4; i++)
		close(s[i]);
}

/*
 * zdtm's socket-tcp-close2: the restore bound the ended client's released
 * port again, which TIME_WAIT holds: EADDRINUSE, the workload lost.
 */
Test(rst_state, closed_tcp_connections_come_back_closed_without_their_released_ports, .timeout = 60)
{
	roundtrip_carried("tcpclosed", tcp_sockets_closed);
}

/* state_subject "cwd_deleted": in a deleted DIR/gone of mode 0751 again, nothing left at the path. */
static void cwd_deleted_again(pid_t here)
{
	char link[64], text[4096] = "", gone[4096];
	struct stat st;
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/%d/cwd", (int)here);
	n = readlink(link, text, sizeof(text) - 1);
	cr_assert_gt(n, 0, "readlink %s: %s", link, strerror(errno));
	text[n] = '\0';
	cr_expect(n > 10 && !strcmp(text + n - 10, " (deleted)"), "its cwd is %s", text);
	cr_expect_eq(stat(link, &st), 0, "stat %s: %s", link, strerror(errno));
	cr_expect_eq(st.st_mode & 07777, 0751, "its cwd has mode %#o, not 0751",
		     st.st_mode & 07777);
	snprintf(gone, sizeof(gone), "%.*s", (int)(n - 10), text);
	cr_expect_neq(access(gone, F_OK), 0, "%s was left behind", gone);
}

/* zdtm's cwd01: a deleted working directory was refused */
Test(rst_state, a_deleted_working_directory_comes_back_deleted_with_its_name_and_mode,
     .timeout = 60)
{
	roundtrip_carried("cwd_deleted", cwd_deleted_again);
}

/*
 * zdtm's unhashed_proc: the cwd is /proc/PID of a process gone, which no
 * mkdir makes again: checkpointed, then the restore failed (lost).  Refused
 * now, or carried; never lost (roundtrip_check fails a failed restore).
 */
Test(rst_state, a_deleted_working_directory_on_proc_is_never_lost, .timeout = 60)
{
	roundtrip_check("cwd_proc_gone", NULL);
}

/* zdtm's sockets01-03: each came back open, and took what the program was told would fail */
Test(rst_state, unix_pairs_come_back_shut_down_with_their_queues, .timeout = 60)
{
	roundtrip_carried("unixshut", unix_pairs_shut_down);
}

/* state_subject "nonlocal": fd 10 on 198.18.254.254:7419, IP_FREEBIND off. */
static void udp_on_an_address_the_host_lacks(pid_t here)
{
	struct sockaddr_in a;
	int pfd = (int)syscall(SYS_pidfd_open, here, 0), sfd, v = -1;
	socklen_t l = sizeof(a), vl = sizeof(v);

	cr_assert_geq(pfd, 0, "pidfd_open: %s", strerror(errno));
	sfd = (int)syscall(SYS_pidfd_getfd, pfd, 10, 0);
	close(pfd);
	cr_assert_geq(sfd, 0, "pidfd_getfd of fd 10: %s", strerror(errno));
	cr_expect_eq(getsockname(sfd, (struct sockaddr *)&a, &l), 0);
	cr_expect(a.sin_addr.s_addr == htonl(0xc612fefe) && ntohs(a.sin_port) == 7419,
		  "bound to %#x:%d", ntohl(a.sin_addr.s_addr), ntohs(a.sin_port));
	cr_expect_eq(getsockopt(sfd, SOL_IP, IP_FREEBIND, &v, &vl), 0);
	cr_expect_eq(v, 0, "IP_FREEBIND %d after the restore, not 0", v);
	close(sfd);
}

/* zdtm's sk-freebind-false: checkpointed, then the bind failed (EADDRNOTAVAIL) */
Test(rst_state, a_socket_bound_with_freebind_since_turned_off_is_bound_again, .timeout = 60)
{
	roundtrip_check("nonlocal", udp_on_an_address_the_host_lacks);
}

/* zdtm's socket-tcp-reuseport: the second bind failed after the image was made */
Test(rst_state, listeners_that_shared_a_port_before_one_turned_reuseport_off, .timeout = 60)
{
	roundtrip_check("reuseport", listeners_sharing_a_port);
}

/* zdtm's sock_opts01, sock_opts02 and sock_filter01: all were dropped silently */
Test(rst_state, sockets_keep_bound_device_buffer_lock_and_filter, .timeout = 60)
{
	roundtrip_check("sockopts", socket_on_lo_with_sndbuf_lock);
}
