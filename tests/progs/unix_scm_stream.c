/*
 * unix_scm_stream - a unix stream socketpair whose queue holds files in
 * flight (SCM_RIGHTS) between plain bytes when it is checkpointed, so the
 * reader can check afterwards that each file comes with the bytes it was
 * sent with and that a read ends where the kernel ends it.
 *
 * usage: unix_scm_stream MODE DIR
 *   solo: one process holds both ends.  It sends "head", then "AB" with
 *         DIR/f (read-only, at offset 2; closed by the sender), then "mid",
 *         then "CD" with DIR/g (write-only, append), then "tail".
 *   tree: the parent holds the sending end, its child the reading one; the
 *         parent sends "head", "AB" with DIR/f, "mid", then "CD" with the
 *         read end of a pipe and an eventfd (count 5), both of which it
 *         keeps (with the pipe's write end), then "tail".  After the
 *         restore it writes "p" into the pipe.
 *   pipe: one process; "CD" carries the read end of a pipe holding "pq",
 *         an eventfd (count 5) and a memfd "haul-scm" holding "memory" at
 *         offset 2, read-only, sealed against growing and shrinking; every
 *         other copy of the three closed (files in flight no process holds).
 *   sock: one process; "CD" carries one end of a stream socketpair with
 *         "zz" queued on it, both ends then closed (its peer is gone).
 *   dev:  one process; "CD" carries /dev/null, closed then (a kind haul
 *         does not carry: the checkpoint is refused, the process reads on).
 * Each process creates DIR/ready-NAME (NAME parent or child; solo and pipe:
 * both) and waits for DIR/go.  The reader then reads: recv(2) "he" and
 * recv(2) "ad" with no file; recvmsg(100) "AB" with one file (reading it
 * gives "23456789"); recvmsg(100) "midCD" with its files (the read takes
 * the plain bytes before a buffer with files, and ends with it); recv
 * "tail".  It checks the files: DIR/g grows by what it writes; the pipe
 * gives "p" (tree) or "pq" (pipe), the eventfd 5, the memfd "mory" and its
 * seals; the socket "zz" then end of file (dev: not looked at).  It prints "ok NAME" or
 * "BAD ..." into DIR/NAME.out and exits 0 when ok.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static FILE *out;
static int bads;

static void bad(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fprintf(out, "BAD ");
	vfprintf(out, fmt, ap);
	fprintf(out, "\n");
	fflush(out);
	va_end(ap);
	bads++;
}

static void mark(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	close(open(path, O_WRONLY | O_CREAT, 0644));
}

static void wait_go(void)
{
	char path[512];
	struct timespec ts = {0, 2 * 1000 * 1000};

	snprintf(path, sizeof(path), "%s/go", dir);
	while (access(path, F_OK))
		nanosleep(&ts, NULL);
}

static int open_in(const char *name, int flags)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return open(path, flags, 0644);
}

/* Send @s with the @n fds @fds (none when @n is 0). */
static void send_fds(int sk, const char *s, const int *fds, int n)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 4)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {(void *)s, strlen(s)};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};

	if (n) {
		m.msg_control = ctl.b;
		m.msg_controllen = CMSG_SPACE(sizeof(int) * n);
		CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(sizeof(int) * n);
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), fds, sizeof(int) * n);
	}
	if (sendmsg(sk, &m, 0) != (ssize_t)strlen(s))
		bad("cannot send %s: %s", s, strerror(errno));
}

/* Read up to @size bytes: they must be @want, with @nfds files (into @fds). */
static void expect(int sk, size_t size, const char *want, int *fds, int nfds)
{
	union {
		char b[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;
	char buf[128] = {0};
	struct iovec iov = {buf, size};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl.b,
			   .msg_controllen = sizeof(ctl.b)};
	ssize_t n = recvmsg(sk, &m, MSG_DONTWAIT);
	int got = 0;

	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++, got++)
			if (got < nfds)
				memcpy(&fds[got], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
	}
	if (n != (ssize_t)strlen(want) || memcmp(buf, want, strlen(want)) || got != nfds)
		bad("read %zd bytes '%.*s' with %d files, not '%s' with %d", n,
		    (int)(n > 0 ? n : 0), buf, got, want, nfds);
}

/* The reading end's checks; @kind: "solo", "tree" or "pipe". */
static void reader(int sk, const char *kind)
{
	int f[1] = {-1}, k[3] = {-1, -1, -1};
	char buf[64] = {0};
	uint64_t cnt = 0;

	expect(sk, 2, "he", f, 0);
	expect(sk, 2, "ad", f, 0);
	if (!strcmp(kind, "solo") || !strcmp(kind, "tree")) {
		expect(sk, 100, "AB", f, 1);
		if (f[0] < 0 || read(f[0], buf, sizeof(buf)) != 8 || memcmp(buf, "23456789", 8))
			bad("DIR/f in flight reads '%s', not 23456789 from offset 2", buf);
	}
	expect(sk, 100, "midCD", k, !strcmp(kind, "pipe") ? 3 : !strcmp(kind, "tree") ? 2 : 1);
	expect(sk, 100, "tail", f, 0);
	if (!strcmp(kind, "dev"))
		return;
	if (!strcmp(kind, "sock")) {
		if (k[0] < 0 || read(k[0], buf, sizeof(buf)) != 2 || memcmp(buf, "zz", 2) ||
		    read(k[0], buf, sizeof(buf)) != 0)
			bad("the socket end in flight does not read zz then end of file");
		return;
	}
	if (!strcmp(kind, "solo")) {
		struct stat st;

		if (k[0] < 0 || write(k[0], "xy", 2) != 2 || fstat(k[0], &st) || st.st_size != 5)
			bad("DIR/g in flight does not append (size %lld)", (long long)st.st_size);
		return;
	}
	memset(buf, 0, sizeof(buf));
	if (k[0] < 0 || read(k[0], buf, sizeof(buf)) != (strcmp(kind, "tree") ? 2 : 1) ||
	    strcmp(buf, strcmp(kind, "tree") ? "pq" : "p"))
		bad("the pipe in flight reads '%s'", buf);
	if (k[1] < 0 || read(k[1], &cnt, sizeof(cnt)) != sizeof(cnt) || cnt != 5)
		bad("the eventfd in flight counts %llu, not 5", (unsigned long long)cnt);
	if (strcmp(kind, "pipe"))
		return;
	memset(buf, 0, sizeof(buf));
	if (k[2] < 0 || read(k[2], buf, sizeof(buf)) != 4 || strcmp(buf, "mory") ||
	    fcntl(k[2], F_GET_SEALS) != (F_SEAL_SHRINK | F_SEAL_GROW) ||
	    (fcntl(k[2], F_GETFL) & O_ACCMODE) != O_RDONLY)
		bad("the memfd in flight reads '%s' with seals %#x", buf, fcntl(k[2], F_GET_SEALS));
}

static void setup_files(void)
{
	int fd = open_in("f", O_WRONLY | O_CREAT | O_TRUNC);

	if (fd < 0 || write(fd, "0123456789", 10) != 10)
		bad("cannot write DIR/f");
	close(fd);
	fd = open_in("g", O_WRONLY | O_CREAT | O_TRUNC);
	if (fd < 0 || write(fd, "abc", 3) != 3)
		bad("cannot write DIR/g");
	close(fd);
}

/* "head", "AB"+DIR/f, "mid" into @sk. */
static void send_head(int sk)
{
	int f = open_in("f", O_RDONLY);

	send_fds(sk, "head", NULL, 0);
	if (f < 0 || lseek(f, 2, SEEK_SET) != 2)
		bad("cannot open DIR/f");
	send_fds(sk, "AB", &f, 1);
	close(f);
	send_fds(sk, "mid", NULL, 0);
}

static int finish(const char *name)
{
	if (!bads)
		fprintf(out, "ok %s\n", name);
	fclose(out);
	return bads ? 1 : 0;
}

static FILE *open_out(const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	return fopen(path, "w");
}

static int solo(const char *kind)
{
	int sv[2], k[3], p[2];

	out = open_out("parent");
	if (!out || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 2;
	setup_files();
	if (!strcmp(kind, "solo")) {
		send_head(sv[0]);
		k[0] = open_in("g", O_WRONLY | O_APPEND);
		send_fds(sv[0], "CD", k, 1);
		close(k[0]);
	} else if (!strcmp(kind, "pipe")) {
		char path[64];
		int m = memfd_create("haul-scm", MFD_ALLOW_SEALING);

		send_fds(sv[0], "head", NULL, 0);
		send_fds(sv[0], "mid", NULL, 0);
		if (pipe(p) || write(p[1], "pq", 2) != 2)
			bad("cannot fill a pipe");
		k[0] = p[0];
		k[1] = eventfd(5, 0);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", m);
		if (m < 0 || write(m, "memory", 6) != 6 ||
		    fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) ||
		    (k[2] = open(path, O_RDONLY)) < 0 || lseek(k[2], 2, SEEK_SET) != 2)
			bad("cannot fill a memfd");
		send_fds(sv[0], "CD", k, 3);
		close(p[0]);
		close(p[1]);
		close(k[1]);
		close(k[2]);
		close(m);
	} else if (!strcmp(kind, "sock")) {
		send_fds(sv[0], "head", NULL, 0);
		send_fds(sv[0], "mid", NULL, 0);
		if (socketpair(AF_UNIX, SOCK_STREAM, 0, p) || write(p[1], "zz", 2) != 2)
			bad("cannot make a socketpair");
		send_fds(sv[0], "CD", p, 1);
		close(p[0]);
		close(p[1]);
	} else {
		send_fds(sv[0], "head", NULL, 0);
		send_fds(sv[0], "mid", NULL, 0);
		k[0] = open("/dev/null", O_RDONLY);
		send_fds(sv[0], "CD", k, 1);
		close(k[0]);
	}
	send_fds(sv[0], "tail", NULL, 0);
	mark("ready-child");
	mark("ready-parent");
	wait_go();
	reader(sv[1], kind);
	if (!bads) {
		FILE *c = open_out("child");

		fprintf(c, "ok child\n");
		fclose(c);
	}
	return finish("parent");
}

static int tree(void)
{
	int sv[2], p[2], k[2], st;
	pid_t child;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || pipe(p))
		return 2;
	child = fork();
	if (child == 0) {
		close(sv[0]);
		close(p[0]);
		close(p[1]);
		out = open_out("child");
		mark("ready-child");
		wait_go();
		reader(sv[1], "tree");
		return finish("child");
	}
	close(sv[1]);
	out = open_out("parent");
	setup_files();
	send_head(sv[0]);
	k[0] = p[0];
	k[1] = eventfd(5, 0);
	send_fds(sv[0], "CD", k, 2);
	send_fds(sv[0], "tail", NULL, 0);
	mark("ready-parent");
	wait_go();
	if (write(p[1], "p", 1) != 1)
		bad("cannot write into the pipe");
	if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st))
		bad("the child ended with %#x", st);
	return finish("parent");
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 2;
	dir = argv[2];
	if (!strcmp(argv[1], "tree"))
		return tree();
	if (!strcmp(argv[1], "solo") || !strcmp(argv[1], "pipe") || !strcmp(argv[1], "sock") ||
	    !strcmp(argv[1], "dev"))
		return solo(argv[1]);
	return 2;
}
