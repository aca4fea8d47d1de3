/*
 * rst_unix_tree - two processes, a parent and its child, that talk over
 * unix sockets whose ends each holds one of, with data in flight both
 * ways when they are checkpointed.
 *
 * usage: rst_unix_tree MODE DIR
 *   pairs:        a stream, a datagram and a seqpacket socketpair made
 *                 before the fork; the parent keeps end 0, the child end 1
 *   conn-path:    the parent listens on DIR/s (stream) and DIR/q
 *                 (seqpacket); the child connects to both, the parent
 *                 accepts
 *   conn-abstract: the same on the abstract names DIR+"s" and DIR+"q"
 *   conn-client:  the roles swapped: the parent makes the listeners, forks,
 *                 closes them and connects; the child accepts
 *   dgram:        the parent binds a datagram socket on DIR/log (a
 *                 syslog); it sends to it through an unnamed socket
 *                 connected to it, the child through one unnamed connected,
 *                 one unnamed by sendto and one bound to DIR/c by sendto,
 *                 in a fixed order; nobody reads.  After the restore the
 *                 parent checks every datagram and its sender's name, then
 *                 each sender sends "ping" again and the parent answers
 *                 "pong" to DIR/c
 *   dgram-rev:    the same, the child holding DIR/log and the parent the
 *                 three senders
 *   pending:      the parent listens on DIR/s; the child connects two
 *                 stream sockets to it, which the parent does not accept
 *                 before the checkpoint.  After it, the parent accepts two
 *                 connections: the first must be the child's first ("one"),
 *                 the second its second ("two"); each is answered "ack"
 *   pending-rev:  the same, the child listening and the parent connecting
 *   both:         the channels of pairs and of conn-path together (a
 *                 socketpair of each type, a stream and a seqpacket
 *                 connection of the child to the parent's listeners)
 *   scm:          the parent sends over a seqpacket socketpair a message
 *                 "files" carrying two fds in flight (DIR/f1 read-only at
 *                 offset 4, DIR/f2 append-only), closes its copies, then a
 *                 message "plain"; the child reads nothing before the
 *                 checkpoint.  After it, the child gets "files" with two
 *                 fds: reading the first gives "456789", writing the second
 *                 appends to DIR/f2; then "plain"
 *   scm-held:     the same, the parent keeping its copy of DIR/f1: after
 *                 the child's read the parent's offset is 10 (one open
 *                 file description)
 *   scm-kinds:    the parent sends over a seqpacket socketpair a message
 *                 "kinds" carrying a pipe's read end, an eventfd (count 3)
 *                 and one end of a stream socketpair, keeping all three
 *                 and the pipe's write end and the other socket end.
 *                 After the restore the parent writes "p" into the pipe
 *                 and "s" into its socket end; the child reads them and
 *                 the count 3 through the fds it receives, and answers
 *                 "a" on the socket end
 *   scm-later:    the child sends the parent DIR/f1 over a seqpacket
 *                 socketpair and keeps it: the holder is restored after
 *                 the queue's owner (refused)
 *   solo:         one process (no child): a datagram socket S connected to
 *                 its own DIR/log (S's fd below the log's: S connects again
 *                 only once the log is bound), two datagrams queued from
 *                 S, and a client whose fd is below its listener's on
 *                 DIR/s, not accepted yet.  After the restore: the log
 *                 reads both datagrams, the listener accepts the client,
 *                 and both talk; "ok parent" and "ok child" both come
 *                 from the one process
 *   outside:      a stream socketpair whose other end a process outside
 *                 the tree holds (a grandchild whose parent exited): both
 *                 only mark ready and exit 0 at DIR/go
 * The last channel's ends (and the dgram modes' log socket) have
 * SO_PASSCRED on, which must still be on after the restore.
 * Each side then sends to the other without reading: stream, "abc" and
 * "defgh" (8 bytes); datagram and seqpacket, three messages of 1, 5 and
 * 300 bytes.  Each creates DIR/ready-parent or DIR/ready-child and waits
 * for DIR/go.  Then each checks what it had to read, byte for byte and
 * message by message (boundaries kept, none more), marks DIR/checked-NAME,
 * waits for the other's mark, and checks that every channel works: the
 * parent sends "ping" on each, the child answers "pong".  Each prints
 * "ok NAME" or "BAD ..." into DIR/NAME.out; the parent reaps the child
 * and exits 0 only if both are ok.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NCH 3

struct ch {
	int type;
	int fd; /* this process's end */
};

static FILE *out;
static const char *dir;

static int bad(const char *what, const char *ch)
{
	fprintf(out, "BAD %s on the %s channel (errno %d)\n", what, ch, errno);
	fflush(out);
	return 1;
}

static const char *tname(int type)
{
	return type == SOCK_STREAM ? "stream" : type == SOCK_DGRAM ? "datagram" : "seqpacket";
}

/* The three messages a side sends, @side 'p' or 'c': distinct bytes per side and message. */
static void msg(char side, int i, char *buf, size_t *len)
{
	static const size_t lens[3] = {1, 5, 300};

	*len = lens[i];
	for (size_t k = 0; k < *len; k++)
		buf[k] = (char)(side + i * 7 + k % 13);
}

static int send_queue(const struct ch *c, char side)
{
	char buf[300];
	size_t len;

	if (c->type == SOCK_STREAM) {
		const char *s = side == 'p' ? "abc" : "ABC", *t = side == 'p' ? "defgh" : "DEFGH";

		if (send(c->fd, s, 3, 0) != 3 || send(c->fd, t, 5, 0) != 5)
			return bad("send", tname(c->type));
		return 0;
	}
	for (int i = 0; i < 3; i++) {
		msg(side, i, buf, &len);
		if (send(c->fd, buf, len, 0) != (ssize_t)len)
			return bad("send", tname(c->type));
	}
	return 0;
}

/* What the other side (@from) queued before the checkpoint, read now without waiting. */
static int check_queue(const struct ch *c, char from)
{
	char buf[1024], want[300];
	size_t len;
	ssize_t n;

	if (c->type == SOCK_STREAM) {
		const char *w = from == 'p' ? "abcdefgh" : "ABCDEFGH";

		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n != 8 || memcmp(buf, w, 8)) {
			fprintf(out, "got %zd bytes '%.*s'\n", n, n > 0 ? (int)n : 0, buf);
			return bad("queued stream bytes lost or changed", "stream");
		}
		return 0;
	}
	for (int i = 0; i < 3; i++) {
		msg(from, i, want, &len);
		n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n != (ssize_t)len || memcmp(buf, want, len))
			return bad("queued message lost, merged or changed", tname(c->type));
	}
	n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n >= 0)
		return bad("a message too many", tname(c->type));
	return 0;
}

/* Read @want (4 bytes) from @c, waiting up to 10 s. */
static int wait_for(const struct ch *c, const char *want)
{
	struct pollfd p = {.fd = c->fd, .events = POLLIN};
	char buf[16];

	if (poll(&p, 1, 10000) != 1 || recv(c->fd, buf, sizeof(buf), 0) != 4 ||
	    memcmp(buf, want, 4))
		return bad("no answer after the restore", tname(c->type));
	return 0;
}

static void mark(const char *name)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	if (fd >= 0)
		close(fd);
}

static void wait_mark(const char *name)
{
	char path[512];
	struct timespec ts = {0, 10 * 1000 * 1000};

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	while (access(path, F_OK))
		nanosleep(&ts, NULL);
}

/* SO_PASSCRED, turned on before the checkpoint, is still on. */
static int check_passcred(int fd, const char *ch)
{
	int on = 0;
	socklen_t ol = sizeof(on);

	if (getsockopt(fd, SOL_SOCKET, SO_PASSCRED, &on, &ol) || !on)
		return bad("SO_PASSCRED lost", ch);
	return 0;
}

/* One side: queue, ready, wait, check, then ping/pong. */
static int side(struct ch *c, size_t n, bool parent)
{
	char me = parent ? 'p' : 'c', other = parent ? 'c' : 'p';
	char path[512];
	int bads = 0;

	snprintf(path, sizeof(path), "%s/%s.out", dir, parent ? "parent" : "child");
	out = fopen(path, "w");
	if (!out)
		return 1;
	for (size_t i = 0; i < n; i++)
		bads += send_queue(&c[i], me);
	/* the last channel's end asks for credentials (it must still after the restore) */
	if (setsockopt(c[n - 1].fd, SOL_SOCKET, SO_PASSCRED, &(int){1}, sizeof(int)))
		bads += bad("SO_PASSCRED", "last");
	mark(parent ? "ready-parent" : "ready-child");
	wait_mark("go");
	for (size_t i = 0; i < n; i++)
		bads += check_queue(&c[i], other);
	bads += check_passcred(c[n - 1].fd, "last");
	/* no ping before the other side has checked its queues: it would count it */
	mark(parent ? "checked-parent" : "checked-child");
	wait_mark(parent ? "checked-child" : "checked-parent");
	for (size_t i = 0; i < n && !bads; i++) {
		if (parent)
			bads += send(c[i].fd, "ping", 4, 0) != 4 || wait_for(&c[i], "pong");
		else
			bads += wait_for(&c[i], "ping") || send(c[i].fd, "pong", 4, 0) != 4;
	}
	if (!bads)
		fprintf(out, "ok %s\n", parent ? "parent" : "child");
	fclose(out);
	return bads ? 1 : 0;
}

static socklen_t addr(const char *mode, char tag, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if (!strcmp(mode, "conn-abstract")) {
		snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "%s%c", dir, tag);
		return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1);
	}
	snprintf(a->sun_path, sizeof(a->sun_path), "%s/%c", dir, tag);
	return offsetof(struct sockaddr_un, sun_path) + strlen(a->sun_path) + 1;
}

static int run_pairs(void)
{
	static const int types[NCH] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET};
	struct ch c[NCH];
	int sv[NCH][2], mine, st;
	pid_t pid;

	for (int i = 0; i < NCH; i++)
		if (socketpair(AF_UNIX, types[i], 0, sv[i]))
			return 2;
	pid = fork();
	if (pid < 0)
		return 2;
	for (int i = 0; i < NCH; i++) {
		c[i].type = types[i];
		c[i].fd = sv[i][pid ? 0 : 1];
		close(sv[i][pid ? 1 : 0]);
	}
	if (!pid)
		_exit(side(c, NCH, false));
	mine = side(c, NCH, true);
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	return mine || !WIFEXITED(st) || WEXITSTATUS(st);
}

/*
 * A child's start in the scm tests: open child.out, say it is ready, wait for
 * "go", then take the message TEXT with N (at most 3) fds from S into FDS.
 * Returns 0, 1 when the message is not that one (logged as WHAT of check CH),
 * or -1 when child.out cannot be opened.
 */
static int child_recv_fds(int s, const char *text, int *fds, int n, const char *what,
			  const char *ch)
{
	char buf[64], ctl[CMSG_SPACE(3 * sizeof(int))], path[512];
	struct iovec iov = {buf, sizeof(buf)};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl,
			   .msg_controllen = sizeof(ctl)};
	size_t len = strlen(text);
	struct cmsghdr *c;
	ssize_t got;

	snprintf(path, sizeof(path), "%s/child.out", dir);
	out = fopen(path, "w");
	if (!out)
		return -1;
	mark("ready-child");
	wait_mark("go");
	got = recvmsg(s, &m, MSG_DONTWAIT);
	c = CMSG_FIRSTHDR(&m);
	if (got != (ssize_t)len || memcmp(buf, text, len) || !c || c->cmsg_type != SCM_RIGHTS ||
	    c->cmsg_len != CMSG_LEN(n * sizeof(int)))
		return bad(what, ch);
	memcpy(fds, CMSG_DATA(c), n * sizeof(int));
	return 0;
}

/* pairs + conn-path: three socketpairs and two connections between parent and child. */
static int scm_child(int s)
{
	char buf[64], path[512];
	int fds[2] = {-1, -1}, bads;

	bads = child_recv_fds(s, "files", fds, 2, "the message with the files lost", "scm");
	if (bads < 0)
		return 1;
	if (!bads && (read(fds[0], buf, sizeof(buf)) != 6 || memcmp(buf, "456789", 6)))
		bads += bad("the first file's offset or content", "scm");
	if (!bads && (write(fds[1], "+", 1) != 1 || (fcntl(fds[1], F_GETFL) & O_APPEND) == 0))
		bads += bad("the second file's flags", "scm");
	snprintf(path, sizeof(path), "%s/f2", dir);
	if (!bads && (access(path, F_OK) || lseek(fds[1], 0, SEEK_CUR) != 4))
		bads += bad("the append did not land at the end", "scm");
	if (!bads && (recv(s, buf, sizeof(buf), MSG_DONTWAIT) != 5 || memcmp(buf, "plain", 5)))
		bads += bad("the plain message after it", "scm");
	if (!bads)
		fprintf(out, "ok child\n");
	fclose(out);
	return bads ? 1 : 0;
}

static int run_scm(bool held)
{
	char path[512], ctl[CMSG_SPACE(2 * sizeof(int))];
	struct iovec iov = {"files", 5};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl,
			   .msg_controllen = sizeof(ctl)};
	int sv[2], f[2], st;
	pid_t pid;

	snprintf(path, sizeof(path), "%s/f1", dir);
	f[0] = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f[0] < 0 || write(f[0], "0123456789", 10) != 10 || lseek(f[0], 4, SEEK_SET) != 4)
		return 2;
	snprintf(path, sizeof(path), "%s/f2", dir);
	f[1] = open(path, O_WRONLY | O_APPEND | O_CREAT | O_TRUNC, 0644);
	if (f[1] < 0 || write(f[1], "abc", 3) != 3)
		return 2;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return 2;
	pid = fork();
	if (pid < 0)
		return 2;
	if (!pid) {
		close(sv[0]);
		close(f[0]);
		close(f[1]);
		_exit(scm_child(sv[1]));
	}
	close(sv[1]);
	CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
	CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
	CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(2 * sizeof(int));
	memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), f, sizeof(f));
	if (sendmsg(sv[0], &m, 0) != 5 || send(sv[0], "plain", 5, 0) != 5)
		return 2;
	if (!held)
		close(f[0]);
	close(f[1]);
	mark("ready-parent");
	wait_mark("go");
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	snprintf(path, sizeof(path), "%s/parent.out", dir);
	out = fopen(path, "w");
	if (!out)
		return 1;
	/* held: the child's read moved the offset of the parent's fd too (one open file) */
	if (held && lseek(f[0], 0, SEEK_CUR) != 10)
		fprintf(out, "the child's read did not move the offset of the parent's f1 (%lld)\n",
			(long long)lseek(f[0], 0, SEEK_CUR));
	else
		fprintf(out, "ok parent\n");
	fclose(out);
	return !WIFEXITED(st) || WEXITSTATUS(st);
}

/* scm-later: the child sends the parent DIR/f1 and keeps it (the holder comes later). */
static int run_scm_later(void)
{
	char path[512], ctl[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {"later", 5};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl,
			   .msg_controllen = sizeof(ctl)};
	int sv[2], f, st;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return 2;
	pid = fork();
	if (pid < 0)
		return 2;
	if (!pid) {
		close(sv[0]);
		snprintf(path, sizeof(path), "%s/f1", dir);
		f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
		if (f < 0)
			_exit(2);
		CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
		CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
		CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), &f, sizeof(f));
		if (sendmsg(sv[1], &m, 0) != 5)
			_exit(2);
		mark("ready-child");
		wait_mark("go");
		_exit(0);
	}
	close(sv[1]);
	mark("ready-parent");
	wait_mark("go");
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	return !WIFEXITED(st) || WEXITSTATUS(st);
}

/* scm-kinds, the child: the three fds of "kinds" are the parent's pipe, eventfd and socket. */
static int kinds_child(int s)
{
	char buf[64];
	int fds[3] = {-1, -1, -1}, bads;
	uint64_t count = 0;

	bads = child_recv_fds(s, "kinds", fds, 3, "the message with the fds lost", "scm-kinds");
	if (bads < 0)
		return 1;
	if (!bads && (read(fds[0], buf, 1) != 1 || buf[0] != 'p'))
		bads += bad("the pipe's byte", "scm-kinds");
	if (!bads && (read(fds[1], &count, sizeof(count)) != sizeof(count) || count != 3))
		bads += bad("the eventfd's count", "scm-kinds");
	if (!bads && (read(fds[2], buf, 1) != 1 || buf[0] != 's' || write(fds[2], "a", 1) != 1))
		bads += bad("the socket end's byte", "scm-kinds");
	if (!bads)
		fprintf(out, "ok child\n");
	fclose(out);
	return bads ? 1 : 0;
}

static int run_scm_kinds(void)
{
	char path[512], ctl[CMSG_SPACE(3 * sizeof(int))], c = 0;
	struct iovec iov = {"kinds", 5};
	struct msghdr m = {.msg_iov = &iov,
			   .msg_iovlen = 1,
			   .msg_control = ctl,
			   .msg_controllen = sizeof(ctl)};
	int sv[2], p[2], ss[2], f[3], st;
	pid_t pid;

	if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, ss) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return 2;
	f[0] = p[0];
	f[1] = eventfd(3, 0);
	f[2] = ss[1];
	if (f[1] < 0)
		return 2;
	pid = fork();
	if (pid < 0)
		return 2;
	if (!pid) {
		close(sv[0]);
		for (int i = 0; i < 3; i++)
			close(f[i]);
		close(p[1]);
		close(ss[0]);
		_exit(kinds_child(sv[1]));
	}
	close(sv[1]);
	CMSG_FIRSTHDR(&m)->cmsg_level = SOL_SOCKET;
	CMSG_FIRSTHDR(&m)->cmsg_type = SCM_RIGHTS;
	CMSG_FIRSTHDR(&m)->cmsg_len = CMSG_LEN(3 * sizeof(int));
	memcpy(CMSG_DATA(CMSG_FIRSTHDR(&m)), f, sizeof(f));
	if (sendmsg(sv[0], &m, 0) != 5)
		return 2;
	mark("ready-parent");
	wait_mark("go");
	if (write(p[1], "p", 1) != 1 || write(ss[0], "s", 1) != 1)
		return 1;
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	snprintf(path, sizeof(path), "%s/parent.out", dir);
	out = fopen(path, "w");
	if (!out)
		return 1;
	if (recv(ss[0], &c, 1, MSG_DONTWAIT) != 1 || c != 'a')
		fprintf(out, "no answer from the child on the socket end it received\n");
	else
		fprintf(out, "ok parent\n");
	fclose(out);
	return !WIFEXITED(st) || WEXITSTATUS(st);
}

static int run_both(void)
{
	static const int types[5] = {SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM,
				     SOCK_SEQPACKET};
	struct sockaddr_un a;
	struct ch c[5];
	int sv[3][2], l[2], mine, st;
	pid_t pid;

	for (int i = 0; i < 3; i++)
		if (socketpair(AF_UNIX, types[i], 0, sv[i]))
			return 2;
	for (int i = 0; i < 2; i++) {
		socklen_t al = addr("conn-path", "sq"[i], &a);

		l[i] = socket(AF_UNIX, types[3 + i], 0);
		if (l[i] < 0 || bind(l[i], (struct sockaddr *)&a, al) || listen(l[i], 4))
			return 2;
	}
	pid = fork();
	if (pid < 0)
		return 2;
	for (int i = 0; i < 5; i++) {
		socklen_t al = i < 3 ? 0 : addr("conn-path", "sq"[i - 3], &a);

		c[i].type = types[i];
		if (i < 3) {
			c[i].fd = sv[i][pid ? 0 : 1];
			close(sv[i][pid ? 1 : 0]);
		} else if (pid) {
			c[i].fd = accept(l[i - 3], NULL, NULL);
		} else {
			close(l[i - 3]);
			c[i].fd = socket(AF_UNIX, types[i], 0);
			if (c[i].fd >= 0 && connect(c[i].fd, (struct sockaddr *)&a, al))
				c[i].fd = -1;
		}
		if (c[i].fd < 0)
			return 2;
	}
	if (!pid)
		_exit(side(c, 5, false));
	mine = side(c, 5, true);
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	return mine || !WIFEXITED(st) || WEXITSTATUS(st);
}

static int run_conn(const char *mode)
{
	static const int types[2] = {SOCK_STREAM, SOCK_SEQPACKET};
	bool client_first = !strcmp(mode, "conn-client");
	struct sockaddr_un a;
	struct ch c[2];
	int l[2], mine, st;
	pid_t pid;

	for (int i = 0; i < 2; i++) {
		socklen_t al = addr(mode, "sq"[i], &a);

		l[i] = socket(AF_UNIX, types[i], 0);
		if (l[i] < 0 || bind(l[i], (struct sockaddr *)&a, al) || listen(l[i], 4))
			return 2;
	}
	pid = fork();
	if (pid < 0)
		return 2;
	/* the server accepts; the client closes the listeners and connects */
	for (int i = 0; i < 2; i++) {
		bool server = client_first ? !pid : pid;
		socklen_t al = addr(mode, "sq"[i], &a);

		c[i].type = types[i];
		if (server) {
			c[i].fd = accept(l[i], NULL, NULL);
		} else {
			close(l[i]);
			c[i].fd = socket(AF_UNIX, types[i], 0);
			if (c[i].fd >= 0 && connect(c[i].fd, (struct sockaddr *)&a, al))
				c[i].fd = -1;
		}
		if (c[i].fd < 0)
			return 2;
	}
	if (!pid)
		_exit(side(c, 2, false));
	mine = side(c, 2, true);
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	return mine || !WIFEXITED(st) || WEXITSTATUS(st);
}

static int run_outside(void)
{
	int sv[2], st;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		return 2;
	pid = fork();
	if (pid < 0)
		return 2;
	if (!pid) {
		/* the grandchild is reparented away: outside the tree */
		if (fork())
			_exit(0);
		close(sv[0]);
		mark("ready-child");
		wait_mark("go");
		_exit(0);
	}
	close(sv[1]);
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	mark("ready-parent");
	wait_mark("go");
	return 0;
}

/* The datagrams of the dgram modes: who sends which, in queue order ('s': the log's side). */
static const struct {
	char who; /* 's' the log's side, 'o' the other side */
	int sock; /* 0 connected, 1 sendto, 2 named sendto */
	const char *text;
} dgs[] = {
	{'s', 0, "s-conn-1"}, {'o', 1, "o-sendto-1"}, {'o', 2, "o-named-1"},
	{'o', 0, "o-conn-1"}, {'s', 0, "s-conn-2"},   {'o', 2, "o-named-2"},
};

static int dgram_side(bool log_side, const char *name, int logfd, int s[3])
{
	struct sockaddr_un log, c, from;
	socklen_t ll = addr("", 'l', &log), cl = addr("", 'c', &c), fl;
	char buf[64], path[512];
	int bads = 0;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	out = fopen(path, "w");
	if (!out)
		return 1;
	/* in turn: the log's side sends, then the other, then the log's again */
	for (size_t i = 0; i < sizeof(dgs) / sizeof(dgs[0]); i++) {
		bool mine = (dgs[i].who == 's') == log_side;
		int fd = s[dgs[i].sock];
		char turn[32];

		if (!mine)
			continue;
		if (i && (dgs[i - 1].who == 's') != log_side) {
			snprintf(turn, sizeof(turn), "turn-%zu", i);
			wait_mark(turn);
		}
		if (dgs[i].sock ? sendto(fd, dgs[i].text, strlen(dgs[i].text), 0,
					 (struct sockaddr *)&log, ll) < 0
				: send(fd, dgs[i].text, strlen(dgs[i].text), 0) < 0)
			bads += bad("send", dgs[i].text);
		if (i + 1 < sizeof(dgs) / sizeof(dgs[0]) && (dgs[i + 1].who == 's') != log_side) {
			snprintf(turn, sizeof(turn), "turn-%zu", i + 1);
			mark(turn);
		}
	}
	snprintf(path, sizeof(path), "ready-%s", name);
	mark(path);
	wait_mark("go");
	if (log_side) {
		for (size_t i = 0; i < sizeof(dgs) / sizeof(dgs[0]); i++) {
			fl = sizeof(from);
			memset(&from, 0, sizeof(from));
			n = recvfrom(logfd, buf, sizeof(buf), MSG_DONTWAIT,
				     (struct sockaddr *)&from, &fl);
			if (n != (ssize_t)strlen(dgs[i].text) || memcmp(buf, dgs[i].text, n))
				bads += bad("datagram lost, reordered or changed", dgs[i].text);
			else if ((dgs[i].sock == 2) !=
					 (fl > offsetof(struct sockaddr_un, sun_path)) ||
				 (dgs[i].sock == 2 && strcmp(from.sun_path, c.sun_path)))
				bads += bad("sender's name lost", dgs[i].text);
		}
		if (recv(logfd, buf, sizeof(buf), MSG_DONTWAIT) >= 0)
			bads += bad("a datagram too many", "log");
		bads += check_passcred(logfd, "log");
		mark("checked-log");
		/* every sender works again: 1 of ours, 3 of theirs; the named one gets an answer */
		if (send(s[0], "ping", 4, 0) != 4)
			bads += bad("ping", "own sender");
		for (int i = 0; i < 4 && !bads; i++) {
			struct pollfd p = {.fd = logfd, .events = POLLIN};

			if (poll(&p, 1, 10000) != 1 || recv(logfd, buf, sizeof(buf), 0) != 4)
				bads += bad("no ping after the restore", "log");
		}
		if (!bads && sendto(logfd, "pong", 4, 0, (struct sockaddr *)&c, cl) != 4)
			bads += bad("pong", "log");
	} else {
		struct pollfd p = {.fd = s[2], .events = POLLIN};

		wait_mark("checked-log");
		for (int i = 0; i < 3 && !bads; i++)
			if (i ? sendto(s[i], "ping", 4, 0, (struct sockaddr *)&log, ll) != 4
			      : send(s[i], "ping", 4, 0) != 4)
				bads += bad("ping", "sender");
		if (!bads && (poll(&p, 1, 10000) != 1 || recv(s[2], buf, sizeof(buf), 0) != 4 ||
			      memcmp(buf, "pong", 4)))
			bads += bad("no pong on the named sender", "sender");
	}
	if (!bads)
		fprintf(out, "ok %s\n", name);
	fclose(out);
	return bads ? 1 : 0;
}

static int run_dgram(bool rev)
{
	struct sockaddr_un log, c;
	socklen_t ll = addr("", 'l', &log), cl = addr("", 'c', &c);
	int logfd = -1, s[3] = {-1, -1, -1}, mine, st;
	bool log_side;
	pid_t pid;

	pid = fork();
	if (pid < 0)
		return 2;
	log_side = rev ? !pid : pid;
	if (log_side) {
		logfd = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (logfd < 0 || bind(logfd, (struct sockaddr *)&log, ll) ||
		    setsockopt(logfd, SOL_SOCKET, SO_PASSCRED, &(int){1}, sizeof(int)))
			return 2;
		mark("bound");
	} else {
		wait_mark("bound");
	}
	/* the log's side has one connected sender; the other side all three kinds */
	s[0] = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s[0] < 0 || connect(s[0], (struct sockaddr *)&log, ll))
		return 2;
	if (!log_side) {
		s[1] = socket(AF_UNIX, SOCK_DGRAM, 0);
		s[2] = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (s[1] < 0 || s[2] < 0 || bind(s[2], (struct sockaddr *)&c, cl))
			return 2;
	}
	if (!pid)
		_exit(dgram_side(log_side, "child", logfd, s));
	mine = dgram_side(log_side, "parent", logfd, s);
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	return mine || !WIFEXITED(st) || WEXITSTATUS(st);
}

static int pending_side(bool server, const char *name)
{
	static const char *const msgs[2] = {"one", "two"};
	struct sockaddr_un a;
	socklen_t al = addr("", 's', &a);
	char path[512], buf[16];
	int l = -1, c[2] = {-1, -1}, bads = 0;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	out = fopen(path, "w");
	if (!out)
		return 1;
	if (server) {
		l = socket(AF_UNIX, SOCK_STREAM, 0);
		if (l < 0 || bind(l, (struct sockaddr *)&a, al) || listen(l, 8))
			bads += bad("listen", "pending");
		mark("bound");
	} else {
		wait_mark("bound");
		for (int i = 0; i < 2; i++) {
			c[i] = socket(AF_UNIX, SOCK_STREAM, 0);
			if (c[i] < 0 || connect(c[i], (struct sockaddr *)&a, al))
				bads += bad("connect", "pending");
		}
	}
	snprintf(path, sizeof(path), "ready-%s", name);
	mark(path);
	wait_mark("go");
	if (server) {
		for (int i = 0; i < 2 && !bads; i++) {
			struct pollfd p = {.fd = l, .events = POLLIN};
			int s;

			if (poll(&p, 1, 10000) != 1 || (s = accept(l, NULL, NULL)) < 0) {
				bads += bad("nothing to accept after the restore", "pending");
				break;
			}
			p.fd = s;
			if (poll(&p, 1, 10000) != 1 || recv(s, buf, sizeof(buf), 0) != 3 ||
			    memcmp(buf, msgs[i], 3))
				bads += bad("connections accepted out of order", "pending");
			else if (send(s, "ack", 3, 0) != 3)
				bads += bad("ack", "pending");
		}
	} else {
		for (int i = 0; i < 2 && !bads; i++) {
			struct pollfd p = {.fd = c[i], .events = POLLIN};

			if (send(c[i], msgs[i], 3, 0) != 3 || poll(&p, 1, 10000) != 1 ||
			    recv(c[i], buf, sizeof(buf), 0) != 3 || memcmp(buf, "ack", 3))
				bads += bad("no answer after the restore", "pending");
		}
	}
	if (!bads)
		fprintf(out, "ok %s\n", name);
	fclose(out);
	return bads ? 1 : 0;
}

static int run_pending(bool rev)
{
	pid_t pid = fork();
	int mine, st;

	if (pid < 0)
		return 2;
	if (!pid)
		_exit(pending_side(rev, "child"));
	mine = pending_side(!rev, "parent");
	if (waitpid(pid, &st, 0) != pid)
		return 1;
	return mine || !WIFEXITED(st) || WEXITSTATUS(st);
}

static int run_solo(void)
{
	struct sockaddr_un log, sa;
	socklen_t ll = addr("", 'l', &log), sl = addr("", 's', &sa);
	int s = socket(AF_UNIX, SOCK_DGRAM, 0), c = socket(AF_UNIX, SOCK_STREAM, 0);
	int d = socket(AF_UNIX, SOCK_DGRAM, 0), l = socket(AF_UNIX, SOCK_STREAM, 0);
	struct pollfd p = {.events = POLLIN};
	char buf[16], path[512];
	int a = -1, bads = 0;

	if (s < 0 || c < 0 || d < 0 || l < 0 || bind(d, (struct sockaddr *)&log, ll) ||
	    connect(s, (struct sockaddr *)&log, ll) || bind(l, (struct sockaddr *)&sa, sl) ||
	    listen(l, 4) || connect(c, (struct sockaddr *)&sa, sl))
		return 2;
	if (send(s, "first", 5, 0) != 5 || send(s, "second", 6, 0) != 6)
		return 2;
	snprintf(path, sizeof(path), "%s/child.out", dir);
	out = fopen(path, "w");
	if (!out)
		return 1;
	mark("ready-parent");
	mark("ready-child");
	wait_mark("go");
	if (recv(d, buf, sizeof(buf), MSG_DONTWAIT) != 5 || memcmp(buf, "first", 5) ||
	    recv(d, buf, sizeof(buf), MSG_DONTWAIT) != 6 || memcmp(buf, "second", 6))
		bads += bad("queued datagrams lost", "solo log");
	if (!bads && (send(s, "again", 5, 0) != 5 || recv(d, buf, sizeof(buf), 0) != 5))
		bads += bad("the sender is not connected again", "solo log");
	p.fd = l;
	if (!bads && (poll(&p, 1, 10000) != 1 || (a = accept(l, NULL, NULL)) < 0))
		bads += bad("nothing to accept", "solo listener");
	if (!bads && (send(c, "hi", 2, 0) != 2 || recv(a, buf, sizeof(buf), 0) != 2 ||
		      send(a, "ho", 2, 0) != 2 || recv(c, buf, sizeof(buf), 0) != 2))
		bads += bad("the accepted connection does not work", "solo listener");
	if (!bads)
		fprintf(out, "ok child\n");
	fclose(out);
	snprintf(path, sizeof(path), "%s/parent.out", dir);
	out = fopen(path, "w");
	if (out && !bads)
		fprintf(out, "ok parent\n");
	if (out)
		fclose(out);
	return bads ? 1 : 0;
}

int main(int argc, char **argv)
{
	int ret;

	if (argc != 3)
		return 2;
	dir = argv[2];
	if (!strcmp(argv[1], "pairs"))
		ret = run_pairs();
	else if (!strncmp(argv[1], "conn-", 5))
		ret = run_conn(argv[1]);
	else if (!strcmp(argv[1], "dgram") || !strcmp(argv[1], "dgram-rev"))
		ret = run_dgram(!strcmp(argv[1], "dgram-rev"));
	else if (!strcmp(argv[1], "pending") || !strcmp(argv[1], "pending-rev"))
		ret = run_pending(!strcmp(argv[1], "pending-rev"));
	else if (!strcmp(argv[1], "both"))
		ret = run_both();
	else if (!strcmp(argv[1], "scm") || !strcmp(argv[1], "scm-held"))
		ret = run_scm(!strcmp(argv[1], "scm-held"));
	else if (!strcmp(argv[1], "scm-later"))
		ret = run_scm_later();
	else if (!strcmp(argv[1], "scm-kinds"))
		ret = run_scm_kinds();
	else if (!strcmp(argv[1], "solo"))
		ret = run_solo();
	else if (!strcmp(argv[1], "outside"))
		ret = run_outside();
	else
		return 2;
	return ret;
}
