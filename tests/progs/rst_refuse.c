/*
 * rst_refuse - a process holding one resource haul cannot checkpoint.
 *
 * usage: rst_refuse KIND   with KIND one of: pipe tcp-listen udp raw-ip netlink inotify
 *        unix-pending unix-scm-rights unix-dgram-bound udp-ebpf-filter unix-filter
 *        pty-queued unix-shutdown unix-pending-accepted unix-dgram-queued-unnamed
 *        seccomp memfd sysv traced child timer deleted-map
 *        (inotify, seccomp and timer are carried since: tests/integration/rst_world.c)
 * ("pipe": the test hands it a pipe it shares on stdin; nothing to set up.)
 * After setting it up, it counts forever, every 5 ms writing the count at
 * offset 0 of stdout (a file), so a test can see it still runs after a
 * refused dump.
 */
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/filter.h>
#include <linux/netlink.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <pty.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

static void *sleeper(void *arg)
{
	(void)arg;
	for (;;)
		pause();
	return NULL;
}

static pid_t spawn_child(void)
{
	pid_t parent = getpid(), c = fork();

	if (c == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		return 0;
	}
	return c;
}

/* A UDP socket with an eBPF socket filter (r0 = -1: accept all): no classic form. */
static int udp_ebpf_filter(void)
{
	struct bpf_insn insns[] = {
		{.code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = -1},
		{.code = BPF_JMP | BPF_EXIT},
	};
	union bpf_attr a;
	int prog, s = socket(AF_INET, SOCK_DGRAM, 0);

	memset(&a, 0, sizeof(a));
	a.prog_type = BPF_PROG_TYPE_SOCKET_FILTER;
	a.insns = (uint64_t)(uintptr_t)insns;
	a.insn_cnt = sizeof(insns) / sizeof(insns[0]);
	a.license = (uint64_t)(uintptr_t) "GPL";
	prog = (int)syscall(SYS_bpf, BPF_PROG_LOAD, &a, sizeof(a));
	if (s < 0 || prog < 0 || setsockopt(s, SOL_SOCKET, SO_ATTACH_BPF, &prog, sizeof(prog)))
		return -1;
	return close(prog);
}

static int setup(const char *kind)
{
	if (!strcmp(kind, "pipe"))
		return 0;
	if (!strcmp(kind, "inotify"))
		return inotify_init1(0) < 0 ? -1 : 0;
	if (!strcmp(kind, "unix-scm-rights")) {
		/* a socketpair with an fd of the process in flight towards sv[0] */
		char c = 'x', ctl[CMSG_SPACE(sizeof(int))];
		struct iovec iov = {&c, 1};
		struct msghdr m = {.msg_iov = &iov,
				   .msg_iovlen = 1,
				   .msg_control = ctl,
				   .msg_controllen = sizeof(ctl)};
		struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
		int sv[2], one = 1;

		if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
			return -1;
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &one, sizeof(int));
		return sendmsg(sv[1], &m, 0) == 1 ? 0 : -1;
	}
	if (!strcmp(kind, "unix-dgram-bound")) {
		/* a datagram socket bound to an abstract name of its pid, a socket connected to it */
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		socklen_t al = offsetof(struct sockaddr_un, sun_path) + 1;
		int d = socket(AF_UNIX, SOCK_DGRAM, 0), c = socket(AF_UNIX, SOCK_DGRAM, 0);

		al += snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "rst_refuse.dg.%d",
			       (int)getpid());
		if (d < 0 || c < 0 || bind(d, (struct sockaddr *)&a, al))
			return -1;
		return connect(c, (struct sockaddr *)&a, al);
	}
	if (!strcmp(kind, "unix-pending")) {
		/*
		 * a listener on an abstract name of its pid, one connection not accepted
		 * whose client sent a byte (without one it is carried: rst_unix_tree.c)
		 */
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		socklen_t al = offsetof(struct sockaddr_un, sun_path) + 1;
		int l = socket(AF_UNIX, SOCK_STREAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);

		al += snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "rst_refuse.%d",
			       (int)getpid());
		if (l < 0 || c < 0 || bind(l, (struct sockaddr *)&a, al) || listen(l, 4))
			return -1;
		return connect(c, (struct sockaddr *)&a, al) || send(c, "x", 1, 0) != 1 ? -1 : 0;
	}
	if (!strcmp(kind, "unix-pending-accepted")) {
		/* zdtm's sockets00: one connection accepted, a second one still queued */
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		socklen_t al = offsetof(struct sockaddr_un, sun_path) + 1;
		int l = socket(AF_UNIX, SOCK_STREAM, 0), c1 = socket(AF_UNIX, SOCK_STREAM, 0);
		int c2 = socket(AF_UNIX, SOCK_STREAM, 0);

		al += snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "rst_refuse.%d",
			       (int)getpid());
		if (l < 0 || c1 < 0 || c2 < 0 || bind(l, (struct sockaddr *)&a, al) ||
		    listen(l, 4) || connect(c1, (struct sockaddr *)&a, al) ||
		    accept(l, NULL, NULL) < 0)
			return -1;
		return connect(c2, (struct sockaddr *)&a, al) ? -1 : 0;
	}
	if (!strcmp(kind, "unix-dgram-queued-unnamed")) {
		/* zdtm's socket_close_data: the restore crashed resending to no name */
		int sv[2];

		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) || write(sv[1], "m", 1) != 1)
			return -1;
		return close(sv[1]);
	}
	if (!strcmp(kind, "udp-ebpf-filter"))
		return udp_ebpf_filter();
	if (!strcmp(kind, "pty-queued")) { /* both ends held, 3 bytes waiting on the slave */
		int m, sl;

		return openpty(&m, &sl, NULL, NULL, NULL) || write(m, "abc", 3) != 3 ? -1 : 0;
	}
	if (!strcmp(kind, "unix-shutdown")) { /* a listener shut down: not carried */
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		int s = socket(AF_UNIX, SOCK_STREAM, 0);

		snprintf(a.sun_path + 1, sizeof(a.sun_path) - 1, "haul-refuse-%d", (int)getpid());
		return s < 0 ||
				       bind(s, (struct sockaddr *)&a,
					    offsetof(struct sockaddr_un, sun_path) + 1 +
						    strlen(a.sun_path + 1)) ||
				       listen(s, 4) || shutdown(s, SHUT_RD)
			       ? -1
			       : 0;
	}
	if (!strcmp(kind, "unix-filter")) {
		struct sock_filter f[] = {BPF_STMT(BPF_RET | BPF_K, 0xffff)};
		struct sock_fprog prog = {1, f};
		int sv[2];

		return socketpair(AF_UNIX, SOCK_STREAM, 0, sv) ||
				       setsockopt(sv[0], SOL_SOCKET, SO_ATTACH_FILTER, &prog,
						  sizeof(prog))
			       ? -1
			       : 0;
	}
	if (!strcmp(kind, "raw-ip"))
		return socket(AF_INET, SOCK_RAW, IPPROTO_RAW) < 0 ? -1 : 0;
	if (!strcmp(kind, "netlink"))
		return socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE) < 0 ? -1 : 0;
	if (!strcmp(kind, "tcp-listen") || !strcmp(kind, "udp")) {
		/* On loopback, port chosen by the kernel: nothing else can collide. */
		bool tcp = kind[0] == 't';
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int s = socket(AF_INET, tcp ? SOCK_STREAM : SOCK_DGRAM, 0);

		if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof(a)) < 0)
			return -1;
		return tcp && listen(s, 4) < 0 ? -1 : 0;
	}
	if (!strcmp(kind, "threads")) {
		pthread_t t;

		return pthread_create(&t, NULL, sleeper, NULL);
	}
	if (!strcmp(kind, "seccomp")) {
		struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
		struct sock_fprog prog = {1, &allow};

		if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
			return -1;
		return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
	}
	if (!strcmp(kind, "memfd")) {
		/* held open, not mapped, larger than an image carries (sparse: no memory) */
		int fd = memfd_create("rst_refuse", 0);

		return fd < 0 || ftruncate(fd, 65 << 20) ? -1 : 0;
	}
	if (!strcmp(kind, "sysv")) {
		int id = shmget(IPC_PRIVATE, 1 << 16, IPC_CREAT | 0600);
		void *p = id < 0 ? (void *)-1 : shmat(id, NULL, 0);

		if (id >= 0)
			shmctl(id, IPC_RMID, NULL);
		return p == (void *)-1 ? -1 : 0;
	}
	if (!strcmp(kind, "child")) {
		pid_t c = spawn_child();

		if (c == 0)
			for (;;)
				pause();
		return c < 0 ? -1 : 0;
	}
	if (!strcmp(kind, "traced")) {
		pid_t parent = getpid(), c = spawn_child();

		if (c == 0) {
			if (ptrace(PTRACE_SEIZE, parent, 0, 0))
				_exit(1);
			for (;;)
				pause();
		}
		/* Give the tracer time to attach. */
		usleep(100000);
		return c < 0 ? -1 : 0;
	}
	if (!strcmp(kind, "timer")) {
		timer_t t;

		return timer_create(CLOCK_MONOTONIC, NULL, &t);
	}
	if (!strcmp(kind, "deleted-cwd")) {
		/* a deleted cwd no mkdir makes again: /proc/CHILD of a child since reaped */
		char path[64];
		pid_t c = fork();

		if (c == 0)
			_exit(0);
		snprintf(path, sizeof(path), "/proc/%d", (int)c);
		if (c < 0 || chdir(path) || waitpid(c, NULL, 0) != c)
			return -1;
		return 0;
	}
	if (!strcmp(kind, "unlinked-linked")) {
		/* an fd on a name unlinked while the inode keeps another link */
		char path[64], link2[80];
		int fd;

		snprintf(path, sizeof(path), "/tmp/rst_refuse.%d", (int)getpid());
		snprintf(link2, sizeof(link2), "%s.link", path);
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || link(path, link2) || unlink(path))
			return -1;
		return 0;
	}
	if (!strcmp(kind, "deleted-map")) {
		char path[64];
		int fd;
		void *p;

		snprintf(path, sizeof(path), "/tmp/rst_refuse.%d", (int)getpid());
		fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || ftruncate(fd, 1 << 16))
			return -1;
		/* shared: its writes go to a file without a name (private ones are carried) */
		p = mmap(NULL, 1 << 16, PROT_READ, MAP_SHARED, fd, 0);
		close(fd);
		unlink(path);
		return p == MAP_FAILED ? -1 : 0;
	}
	fprintf(stderr, "rst_refuse: unknown kind %s\n", kind);
	return -1;
}

int main(int argc, char **argv)
{
	unsigned long n = 0;

	if (argc != 2 || setup(argv[1])) {
		perror("rst_refuse");
		return 2;
	}
	for (;;) {
		char buf[32];
		int len = snprintf(buf, sizeof(buf), "%lu\n", ++n);
		struct timespec ts = {0, 5000000};

		if (pwrite(1, buf, len, 0) != len)
			return 3;
		nanosleep(&ts, NULL);
	}
}
