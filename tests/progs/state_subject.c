/*
 * state_subject.c - a process that holds one kind of kernel state that
 * CRIU's zdtm static suite found haul losing or keeping (oom_score_adj, a
 * child subreaper, locks, a lease, fd flags, madvise flags, limits, signal
 * dispositions...), for tests/integration/rst_state.c: it sets the state
 * named by argv[1] (files under the directory argv[2]), prints "ready" and
 * waits ("nice_threads": nice 5 and three threads).  The test reads its state with th_verify, checkpoints and restores
 * it with haul, and compares.  It prints "skip: why" and exits 77 where the
 * kernel or the privileges refuse to set the state.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <grp.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <unistd.h>

static char path[512];

static int skip(const char *why)
{
	printf("skip: %s: %s\n", why, strerror(errno));
	fflush(stdout);
	return 77;
}

static int file_fd(const char *dir, const char *name, int flags)
{
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return open(path, flags | O_CREAT, 0644);
}

static void on_usr1(int sig)
{
	(void)sig;
}

static void *waiter(void *arg)
{
	for (;;)
		pause();
	return arg;
}

static int set_proc_file(const char *name, const char *val)
{
	int fd = open(name, O_WRONLY);
	ssize_t n = fd < 0 ? -1 : write(fd, val, strlen(val));

	if (fd >= 0)
		close(fd);
	return n < 0 ? -1 : 0;
}

static int set_locks(const char *kind, const char *dir)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 10};
	int fd = file_fd(dir, kind, O_RDWR);

	if (fd < 0)
		return skip("open");
	if (!strcmp(kind, "flock"))
		return flock(fd, LOCK_EX) ? skip("flock") : 0;
	if (!strcmp(kind, "posix_lock"))
		return fcntl(fd, F_SETLK, &fl) ? skip("F_SETLK") : 0;
	if (!strcmp(kind, "ofd_lock"))
		return fcntl(fd, F_OFD_SETLK, &fl) ? skip("F_OFD_SETLK") : 0;
	close(fd);
	fd = file_fd(dir, kind, O_RDONLY);
	return fd < 0 || fcntl(fd, F_SETLEASE, F_RDLCK) ? skip("F_SETLEASE") : 0;
}

static int set_memory(const char *kind)
{
	char *m = mmap(NULL, 64 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (m == MAP_FAILED)
		return skip("mmap");
	memset(m, 1, 64 * 4096);
	if (!strcmp(kind, "mlock"))
		return mlock(m, 4 * 4096) ? skip("mlock") : 0;
	/* each in its own VMA (maps02's list): dontfork, dontdump, wipeonfork, ... */
	if (madvise(m, 4096, MADV_DONTFORK) || madvise(m + 8 * 4096, 4096, MADV_DONTDUMP) ||
	    madvise(m + 16 * 4096, 4096, MADV_WIPEONFORK) ||
	    madvise(m + 24 * 4096, 4096, MADV_NOHUGEPAGE) ||
	    madvise(m + 32 * 4096, 4096, MADV_SEQUENTIAL) ||
	    madvise(m + 40 * 4096, 4096, MADV_RANDOM) ||
	    madvise(m + 48 * 4096, 4096, MADV_HUGEPAGE))
		return skip("madvise");
	/* KSM may be compiled out: then there is no "mg" to keep */
	madvise(m + 56 * 4096, 4096, MADV_MERGEABLE);
	m = mmap(NULL, 4 * 4096, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return m == MAP_FAILED ? skip("MAP_NORESERVE") : 0;
}

static int set_fds(const char *kind, const char *dir)
{
	int p[2];

	if (!strcmp(kind, "pipe_flags")) {
		/* only the read end non-blocking; the write end O_CLOEXEC */
		if (pipe2(p, 0) || fcntl(p[0], F_SETFL, O_NONBLOCK) ||
		    fcntl(p[1], F_SETFD, FD_CLOEXEC) || write(p[1], "x", 1) != 1)
			return skip("pipe");
		return 0;
	}
	if (!strcmp(kind, "cloexec_fds")) {
		if (eventfd(3, EFD_CLOEXEC) < 0 ||
		    timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC) < 0 ||
		    epoll_create1(EPOLL_CLOEXEC) < 0 ||
		    file_fd(dir, "cloexec", O_RDWR | O_CLOEXEC) < 0)
			return skip("cloexec fds");
		return 0;
	}
	/* append_pos: an O_APPEND file and a plain one, both at a position */
	p[0] = file_fd(dir, "append", O_RDWR | O_APPEND);
	p[1] = file_fd(dir, "plain", O_RDWR);
	if (p[0] < 0 || p[1] < 0 || write(p[0], "0123456789", 10) != 10 ||
	    write(p[1], "0123456789", 10) != 10 || lseek(p[1], 3, SEEK_SET) != 3)
		return skip("files");
	return 0;
}

static int set_task(const char *kind, const char *dir)
{
	struct rlimit rl;
	sigset_t set;

	if (!strcmp(kind, "oom_score_adj"))
		return set_proc_file("/proc/self/oom_score_adj", "400") ? skip("oom_score_adj") : 0;
	if (!strcmp(kind, "loginuid"))
		return set_proc_file("/proc/self/loginuid", "3") ? skip("loginuid") : 0;
	if (!strcmp(kind, "subreaper"))
		return prctl(PR_SET_CHILD_SUBREAPER, 1) ? skip("PR_SET_CHILD_SUBREAPER") : 0;
	if (!strcmp(kind, "prctls"))
		return prctl(PR_SET_TIMERSLACK, 123456) || prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) ||
				       prctl(PR_SET_PDEATHSIG, SIGUSR1)
			       ? skip("prctl")
			       : 0;
	if (!strcmp(kind, "prctls_uid"))
		/* ids first: changing them resets both (commit_creds) */
		return setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
				       setresuid(65534, 65534, 65534) ||
				       prctl(PR_SET_PDEATHSIG, SIGUSR1) || prctl(PR_SET_DUMPABLE, 1)
			       ? skip("ids or prctl")
			       : 0;
	if (!strcmp(kind, "sockopts")) {
		/* a classic filter on fd 11, locked: accept datagrams of 1234 bytes only */
		struct sock_filter f[] = {
			BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
			BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 1234, 0, 1),
			BPF_STMT(BPF_RET | BPF_K, 0xffff),
			BPF_STMT(BPF_RET | BPF_K, 0),
		};
		struct sock_fprog prog = {4, f};
		int s = socket(AF_INET, SOCK_STREAM, IPPROTO_TCP), one = 1;
		int u = socket(AF_INET, SOCK_DGRAM, 0);

		if (u < 0 || dup2(u, 11) != 11 ||
		    setsockopt(11, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) ||
		    setsockopt(11, SOL_SOCKET, SO_LOCK_FILTER, &one, sizeof(one)))
			return skip("SO_ATTACH_FILTER");
		return s < 0 || dup2(s, 10) != 10 ||
				       setsockopt(10, SOL_SOCKET, SO_BINDTODEVICE, "lo", 3) ||
				       setsockopt(10, SOL_SOCKET, 72 /* SO_BUF_LOCK */, &one,
						  sizeof(one))
			       ? skip("SO_BINDTODEVICE or SO_BUF_LOCK")
			       : 0;
	}
	if (!strcmp(kind, "tcpclosed")) {
		/*
		 * zdtm's socket-tcp-close2: fd 10 accepted from a listener bound to
		 * 127.0.0.1:7431 and fd 11 its client, both shut for
		 * writes: the connection ended, both sockets closed; the client's
		 * port is released and held in TIME_WAIT.  fd 12: bound to
		 * 127.0.0.1:7432, never connected, shut for reads and writes.
		 * fd 13: the listener, still listening (fd 10 shares its port).
		 */
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons(7431),
					.sin_addr.s_addr = htonl(0x7f000001)};
		struct sockaddr_in b = a;
		int one = 1, l = socket(AF_INET, SOCK_STREAM, 0),
		    c = socket(AF_INET, SOCK_STREAM, 0);
		int u = socket(AF_INET, SOCK_STREAM, 0);

		b.sin_port = htons(7432);
		if (l < 0 || c < 0 || u < 0 ||
		    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
		    bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
		    connect(c, (struct sockaddr *)&a, sizeof(a)) || dup2(c, 11) != 11 ||
		    dup2(accept(l, NULL, NULL), 10) != 10 ||
		    bind(u, (struct sockaddr *)&b, sizeof(b)) || dup2(u, 12) != 12 ||
		    dup2(l, 13) != 13)
			return skip("TCP on 127.0.0.1:7431-7432");
		close(l);
		close(c);
		close(u);
		if (shutdown(11, SHUT_WR) || usleep(50000) || shutdown(10, SHUT_WR) ||
		    usleep(100000) || (shutdown(12, SHUT_RDWR) && errno != ENOTCONN))
			return skip("TCP shutdown");
		return 0;
	}
	if (!strcmp(kind, "unixshut")) {
		/*
		 * Unix pairs shut down (zdtm's sockets01-03), each at fds 10+2k, 11+2k:
		 * stream, 10 for reads; stream, 12 both ways; datagram, 14 for reads;
		 * datagram, "m" queued at 17 and 16 shut for writes; seqpacket, "q"
		 * queued at 19 and 18 shut for writes; stream, "abc" queued at 21 and
		 * 20 shut for writes (21 reads it, then EOF).
		 */
		static const int type[] = {SOCK_STREAM, SOCK_STREAM,	SOCK_DGRAM,
					   SOCK_DGRAM,	SOCK_SEQPACKET, SOCK_STREAM};
		static const int how[] = {SHUT_RD, SHUT_RDWR, SHUT_RD, SHUT_WR, SHUT_WR, SHUT_WR};
		static const char *const data[] = {NULL, NULL, NULL, "m", "q", "abc"};

		for (int k = 0; k < 6; k++) {
			int sv[2], a = 10 + 2 * k;

			if (socketpair(AF_UNIX, type[k], 0, sv) || dup2(sv[0], a) != a ||
			    dup2(sv[1], a + 1) != a + 1)
				return skip("unix socketpair");
			close(sv[0]);
			close(sv[1]);
			if (data[k] &&
			    write(a, data[k], strlen(data[k])) != (ssize_t)strlen(data[k]))
				return skip("unix write");
			if (shutdown(a, how[k]))
				return skip("unix shutdown");
		}
		return 0;
	}
	if (!strcmp(kind, "udpshut")) {
		/*
		 * fd 10: UDP connected to itself on 127.0.0.1, shut for writes; fd 11:
		 * never bound, for reads; fd 12: connected to itself, not shut; fd 13:
		 * connected to itself, shut both ways (one inet_diag answer for 10, 12, 13)
		 */
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_addr.s_addr = htonl(0x7f000001)};
		socklen_t al = sizeof(a);
		static const int how[] = {SHUT_WR, -1, -1, SHUT_RDWR};

		for (int fd = 10; fd <= 13; fd++) {
			struct sockaddr_in b = a;
			int u = socket(AF_INET, SOCK_DGRAM, 0);

			al = sizeof(b);
			if (u < 0 || dup2(u, fd) != fd)
				return skip("UDP shutdown");
			close(u);
			if (fd != 11 && (bind(fd, (struct sockaddr *)&b, sizeof(b)) ||
					 getsockname(fd, (struct sockaddr *)&b, &al) ||
					 connect(fd, (struct sockaddr *)&b, sizeof(b))))
				return skip("UDP shutdown");
			if (fd == 11 ? shutdown(11, SHUT_RD) && errno != ENOTCONN
				     : how[fd - 10] >= 0 && shutdown(fd, how[fd - 10]))
				return skip("UDP shutdown");
		}
		return 0;
	}
	if (!strcmp(kind, "nonlocal")) {
		/* fd 10: UDP bound to 198.18.254.254:7419, which no interface has, then no FREEBIND */
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_port = htons(7419),
					.sin_addr.s_addr = htonl(0xc612fefe)};
		int one = 1, zero = 0, u = socket(AF_INET, SOCK_DGRAM, 0);

		if (u < 0 || dup2(u, 10) != 10 ||
		    setsockopt(10, SOL_IP, IP_FREEBIND, &one, sizeof(one)) ||
		    bind(10, (struct sockaddr *)&a, sizeof(a)) ||
		    setsockopt(10, SOL_IP, IP_FREEBIND, &zero, sizeof(zero)))
			return skip("IP_FREEBIND");
		close(u);
		return 0;
	}
	if (!strcmp(kind, "reuseport")) {
		/* two listeners on one port (fds 10, 11); fd 10 turns SO_REUSEPORT off after */
		struct sockaddr_in a = {.sin_family = AF_INET,
					.sin_addr.s_addr = htonl(0x7f000001)};
		socklen_t al = sizeof(a);
		int one = 1, zero = 0;
		int s1 = socket(AF_INET, SOCK_STREAM, 0), s2 = socket(AF_INET, SOCK_STREAM, 0);

		if (s1 < 0 || s2 < 0 || dup2(s1, 10) != 10 || dup2(s2, 11) != 11 ||
		    setsockopt(10, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
		    setsockopt(11, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) ||
		    bind(10, (struct sockaddr *)&a, sizeof(a)) ||
		    getsockname(10, (struct sockaddr *)&a, &al) ||
		    bind(11, (struct sockaddr *)&a, sizeof(a)) || listen(10, 4) || listen(11, 4) ||
		    setsockopt(10, SOL_SOCKET, SO_REUSEPORT, &zero, sizeof(zero)))
			return skip("SO_REUSEPORT");
		close(s1);
		close(s2);
		return 0;
	}
	if (!strcmp(kind, "personality"))
		return personality(ADDR_NO_RANDOMIZE | READ_IMPLIES_EXEC) < 0 ? skip("personality")
									      : 0;
	if (!strcmp(kind, "rlimits")) {
		getrlimit(RLIMIT_NOFILE, &rl);
		rl.rlim_cur = 100;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			return skip("RLIMIT_NOFILE");
		getrlimit(RLIMIT_CORE, &rl);
		rl.rlim_cur = 0;
		return setrlimit(RLIMIT_CORE, &rl) ? skip("RLIMIT_CORE") : 0;
	}
	if (!strcmp(kind, "signals")) {
		sigemptyset(&set);
		sigaddset(&set, SIGUSR2);
		if (sigprocmask(SIG_BLOCK, &set, NULL) || signal(SIGPIPE, SIG_IGN) == SIG_ERR ||
		    signal(SIGUSR1, on_usr1) == SIG_ERR || raise(SIGUSR2))
			return skip("signals");
		return 0;
	}
	if (!strcmp(kind, "nice_threads")) {
		/* nice 5 in the main thread, inherited by three threads that wait */
		if (setpriority(PRIO_PROCESS, 0, 5))
			return skip("setpriority");
		for (int i = 0; i < 3; i++) {
			pthread_t th;

			errno = pthread_create(&th, NULL, waiter, NULL);
			if (errno)
				return skip("pthread_create");
		}
		return 0;
	}
	if (!strcmp(kind, "cwd_umask")) {
		umask(0345);
		return chdir(dir) ? skip("chdir") : 0;
	}
	if (!strcmp(kind, "cwd_proc_gone")) {
		/* zdtm's unhashed_proc: in /proc/CHILD of a child since reaped (deleted, on procfs) */
		char p[64];
		pid_t c = fork();

		if (c == 0)
			_exit(0);
		snprintf(p, sizeof(p), "/proc/%d", (int)c);
		return c < 0 || chdir(p) || waitpid(c, NULL, 0) != c ? skip("a cwd in /proc") : 0;
	}
	if (!strcmp(kind, "cwd_deleted")) {
		/* zdtm's cwd01: DIR/gone, mode 0751, entered and then removed */
		char gone[4096];

		snprintf(gone, sizeof(gone), "%s/gone", dir);
		return mkdir(gone, 0751) || chmod(gone, 0751) || chdir(gone) || rmdir(gone)
			       ? skip("a deleted cwd")
			       : 0;
	}
	errno = EINVAL;
	return skip(kind);
}

int main(int argc, char **argv)
{
	const char *kind = argc > 1 ? argv[1] : "";
	const char *dir = argc > 2 ? argv[2] : "/tmp";
	int ret;

	if (strstr(kind, "lock") && strcmp(kind, "mlock"))
		ret = set_locks(kind, dir);
	else if (!strcmp(kind, "lease"))
		ret = set_locks(kind, dir);
	else if (!strcmp(kind, "madvise") || !strcmp(kind, "mlock"))
		ret = set_memory(kind);
	else if (!strcmp(kind, "pipe_flags") || !strcmp(kind, "cloexec_fds") ||
		 !strcmp(kind, "append_pos"))
		ret = set_fds(kind, dir);
	else
		ret = set_task(kind, dir);
	if (ret)
		return ret;
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}
