/*
 * rst_refuse.c - a dump refuses, naming the resource, everything haul cannot
 * restore; the process runs on untouched afterwards.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "restore/restore.h"

static void msleep(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static unsigned long count_of(const char *path)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY);

	if (fd >= 0) {
		if (read(fd, buf, sizeof(buf) - 1) < 0)
			buf[0] = '\0';
		close(fd);
	}
	return strtoul(buf, NULL, 10);
}

static void refuses(const char *kind, const char *reason)
{
	const char *progs = getenv("HAUL_PROGS") ? getenv("HAUL_PROGS") : "build/progs";
	char bin[512], out[128], why[512] = "";
	struct rst_seized *s = NULL;
	unsigned long before;
	uint8_t *blob = NULL;
	size_t len;
	int status, ret, shared[2];
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/rst_refuse", progs);
	snprintf(out, sizeof(out), "/tmp/haul-rst-refuse-%s-%d", kind, (int)getpid());
	/* "pipe": stdin is a pipe this test keeps the other end of. */
	cr_assert_eq(pipe(shared), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDWR);
		int in = strcmp(kind, "pipe") ? nul : shared[0];

		if (fd < 0 || nul < 0 || dup2(in, 0) < 0 || dup2(fd, 1) < 0 || dup2(nul, 2) < 0)
			_exit(126);
		closefrom(3);
		execl(bin, bin, kind, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 200 && count_of(out) < 2; i++)
		msleep(10);
	cr_assert_geq(count_of(out), 2, "rst_refuse %s did not start", kind);

	ret = rst_dump_precheck(pid, why, sizeof(why));
	cr_expect_eq(ret, -EOPNOTSUPP, "precheck of %s returned %d (%s)", kind, ret, why);
	cr_expect(strstr(why, reason), "reason for %s is '%s', want '%s'", kind, why, reason);

	/* The dump itself refuses as well (or cannot even seize a traced process). */
	if (rst_seize(pid, &s) == 0) {
		ret = rst_dump_state(s, &blob, &len);
		cr_expect_neq(ret, 0, "dump of %s succeeded", kind);
		free(blob);
		rst_release(s);
	}
	/* it counts on: wait for the next count, 5 s at most */
	before = count_of(out);
	for (int i = 0; i < 500 && count_of(out) <= before; i++)
		msleep(10);
	cr_expect_gt(count_of(out), before, "the process with %s stopped counting", kind);
	cr_expect_eq(waitpid(pid, &status, WNOHANG), 0, "the process with %s died", kind);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	close(shared[0]);
	close(shared[1]);
	unlink(out);
}

Test(rst_refuse, pipe_shared_with_another_process, .timeout = 20)
{
	refuses("pipe", "is a pipe shared with pid");
}
/* An unconnected unix stream socket is carried now (tests/integration/rst_unix.c, gone-). */
/* TCP listeners and UDP sockets are carried now (tests/integration/net_tcp.c). */
/* Unix listeners are carried (tests/integration/rst_unix.c), not their pending connections. */
Test(rst_refuse, unix_listener_with_a_connection_not_accepted_yet, .timeout = 20)
{
	refuses("unix-pending", "connection not accepted yet (socket:[");
	refuses("unix-pending", "whose client sent bytes");
}
/* Bound unix datagram sockets and their senders are carried (tests/integration/rst_unix_tree.c). */
Test(rst_refuse, unix_socket_with_fds_in_flight, .timeout = 20)
{
	refuses("unix-scm-rights", "has file descriptors in flight (SCM_RIGHTS)");
}
Test(rst_refuse, raw_ip_socket_named_by_protocol, .timeout = 20)
{
	refuses("raw-ip", "IP socket (type 3, protocol 255)");
	refuses("raw-ip", "this kind of socket is not supported");
}
Test(rst_refuse, an_ebpf_socket_filter_is_refused_by_name, .timeout = 20)
{
	refuses("udp-ebpf-filter", "has an eBPF socket filter (SO_ATTACH_BPF)");
}
Test(rst_refuse, a_unix_socket_with_a_filter_is_refused_by_name, .timeout = 20)
{
	refuses("unix-filter", "has a socket filter (SO_ATTACH_FILTER or SO_ATTACH_BPF)");
}
/* zdtm's pty00: the bytes were lost and the restored process waited for them forever */
Test(rst_refuse, a_pty_with_bytes_waiting_is_refused_by_name, .timeout = 20)
{
	refuses("pty-queued", "bytes wait to be read, and a pty's queue cannot be carried");
}
/* a unix listener shut down: restored open, it would accept again (pairs are carried) */
Test(rst_refuse, a_unix_listener_shut_down_is_refused_by_name, .timeout = 20)
{
	refuses("unix-shutdown", "is shut down for reading; haul does not carry a listener's");
}
/* zdtm's sockets00: the accepted end was remade with the queued client as its peer */
Test(rst_refuse, a_unix_listener_with_a_queued_and_an_accepted_connection_is_refused, .timeout = 20)
{
	refuses("unix-pending-accepted", "beside an accepted one");
}
Test(rst_refuse, an_unnamed_unix_datagram_socket_with_datagrams_queued_is_refused, .timeout = 20)
{
	refuses("unix-dgram-queued-unnamed", "unnamed unix datagram socket");
}
Test(rst_refuse, netlink_socket_named_by_protocol, .timeout = 20)
{
	refuses("netlink", "fd 3: netlink socket (protocol 0)");
}
Test(rst_refuse, unlinked_file_whose_inode_has_another_link, .timeout = 20)
{
	refuses("unlinked-linked", "still has 1 other link");
	/* the link the workload left (named by its pid, which refuses() keeps) */
	cr_expect_eq(system("rm -f /tmp/rst_refuse.*.link"), 0);
}
/* a deleted cwd is carried (cwd_ghost.c), except one on /proc: no mkdir makes it again */
Test(rst_refuse, deleted_working_directory_on_proc, .timeout = 20)
{
	refuses("deleted-cwd", "was deleted, and it is on a filesystem the kernel fills");
}
Test(rst_refuse, memfd_held_open_beyond_the_image_limit, .timeout = 20)
{
	refuses("memfd", "carries a memfd held open only up to 64 MiB");
}
Test(rst_refuse, child_process, .timeout = 20)
{
	refuses("child", "has child process");
}
Test(rst_refuse, being_traced, .timeout = 20)
{
	refuses("traced", "is being traced");
}

Test(rst_refuse, shared_mapping_of_a_deleted_file, .timeout = 20)
{
	refuses("deleted-map", "MAP_SHARED: its writes go to a file that no longer has a name");
}
