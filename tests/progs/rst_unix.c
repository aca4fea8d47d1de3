/*
 * rst_unix - a unix listener serving one echo per connection.
 *
 * usage: rst_unix MODE DIR   with MODE path-stream, path-seqpacket,
 *        abstract-stream or abstract-seqpacket, or one of those prefixed
 *        by conn- (a connection to itself too) or connlate- (the same, its
 *        listener moved to fd 20, above the connection's ends)
 * It listens (backlog 7) on DIR/sock, or on the abstract name DIR (a NUL
 * then DIR's bytes), creates DIR/ready, then serves: each connection it
 * accepts gets back "echo:" and the one message it sent.  Once DIR/stop
 * exists it prints "final ok served N" and exits 0; any failed call
 * prints "ERROR ..." and exits 1.
 * conn-: before it is ready, it connects a socket to its listener and
 * accepts it; each end has 9 bytes queued to read ("to-server",
 * "to-client"; seqpacket: and a second message each), and a datagram
 * socketpair has three messages queued one way and one the other.
 * connbound-: the same, its client end bound first (the listener's name
 * and a "c").  Each conn- mode also sets socket options (buffer sizes,
 * SO_RCVLOWAT, SO_PRIORITY, SO_MARK, SO_PEEK_OFF, the timeouts, SO_LINGER)
 * on the listener, the two
 * ends and the datagram pair, which the stop checks ("options ok").  At the
 * stop it checks the queued bytes,
 * that the accepted end still has the listener's name and the client end
 * sees it as its peer, and sends two messages each way (seqpacket: their
 * boundaries kept); then "pair ok".
 * gone-: before it is ready, it accepts a connection of its own whose
 * client end wrote "to-server" (seqpacket: and "s2") and closed, and holds
 * one end of a socketpair whose other end wrote "bye" (seqpacket: "by",
 * "e") and closed (zdtm sockets02: a server whose client went away), and
 * two sockets never connected, one bound to the abstract name of DIR and
 * "u" (zdtm sk-unix-unconn).  At the stop each reads its bytes, then the
 * end of the stream (0), the accepted end still has the listener's name,
 * the bound one its own and it listens and accepts; then "gone ok".
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(const char *what)
{
	printf("ERROR %s (errno %d)\n", what, errno);
	fflush(stdout);
	return 1;
}

/* Read exactly @want from @fd (one message on a seqpacket). */
static int expect(int fd, const char *want, const char *what)
{
	char buf[64];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	if (n != (ssize_t)strlen(want) || memcmp(buf, want, n)) {
		printf("ERROR %s: got %zd bytes '%.*s', want '%s'\n", what, n, n > 0 ? (int)n : 0,
		       buf, want);
		fflush(stdout);
		return 1;
	}
	return 0;
}

/* An option's value: an int, a timeval (SO_RCVTIMEO, SO_SNDTIMEO) or a linger. */
union optval {
	int i;
	struct timeval tv;
	struct linger lg;
};

/* Socket options set on conn- modes' sockets: fd, option, value read back after setting. */
static struct {
	int *fd, name;
	union optval set, got;
	socklen_t len;
} opts[] = {
	{NULL, SO_RCVBUF, {.i = 70000}, {0}, sizeof(int)},
	{NULL, SO_SNDBUF, {.i = 50000}, {0}, sizeof(int)},
	{NULL, SO_PRIORITY, {.i = 5}, {0}, sizeof(int)},
	{NULL, SO_RCVLOWAT, {.i = 2}, {0}, sizeof(int)},
	{NULL, SO_MARK, {.i = 7}, {0}, sizeof(int)},
	{NULL, SO_SNDBUF, {.i = 40000}, {0}, sizeof(int)},
	{NULL, SO_PEEK_OFF, {.i = 0}, {0}, sizeof(int)},
	{NULL, SO_RCVTIMEO, {.tv = {2, 500000}}, {0}, sizeof(struct timeval)},
	{NULL, SO_SNDTIMEO, {.tv = {0, 1750}}, {0}, sizeof(struct timeval)},
	{NULL, SO_RCVTIMEO, {.tv = {3600, 0}}, {0}, sizeof(struct timeval)},
	{NULL, SO_LINGER, {.lg = {1, 9}}, {0}, sizeof(struct linger)},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

/* Set each option on its socket: listener @s, client @c, accepted @a, datagram ends @dg. */
static int set_opts(int *s, int *c, int *a, int *dg)
{
	int *fds[NOPTS] = {s, c, c, a, a, &dg[1], &dg[0], s, c, &dg[0], a};

	for (size_t i = 0; i < NOPTS; i++) {
		socklen_t l = opts[i].len;

		opts[i].fd = fds[i];
		if (setsockopt(*fds[i], SOL_SOCKET, opts[i].name, &opts[i].set, opts[i].len) ||
		    getsockopt(*fds[i], SOL_SOCKET, opts[i].name, &opts[i].got, &l))
			return fail("set a socket option");
	}
	return 0;
}

/* Each option still reads what it read when it was set. */
static int check_opts(void)
{
	int bad = 0;

	for (size_t i = 0; i < NOPTS; i++) {
		socklen_t l = opts[i].len;
		union optval v;

		memset(&v, 0xff, sizeof(v));
		if (getsockopt(*opts[i].fd, SOL_SOCKET, opts[i].name, &v, &l) ||
		    memcmp(&v, &opts[i].got, opts[i].len)) {
			printf("ERROR option %d of fd %d reads %d (%lld.%06lld s), not %d "
			       "(%lld.%06lld s)\n",
			       opts[i].name, *opts[i].fd, v.i, (long long)v.tv.tv_sec,
			       (long long)v.tv.tv_usec, opts[i].got.i,
			       (long long)opts[i].got.tv.tv_sec, (long long)opts[i].got.tv.tv_usec);
			bad = 1;
		}
	}
	if (!bad)
		printf("options ok\n");
	fflush(stdout);
	return bad;
}

/* The abstract name of DIR and "u", for the bound unconnected socket. */
static socklen_t lone_name(const char *dir, struct sockaddr_un *sun)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path + 1, dir, strlen(dir));
	sun->sun_path[1 + strlen(dir)] = 'u';
	return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 2 + strlen(dir));
}

/* The unconnected sockets at the stop: @l1 unbound, @l2 bound to lone_name, listening then. */
static int check_lone(int l1, int l2, const char *dir, int type)
{
	struct sockaddr_un want, got;
	socklen_t wl = lone_name(dir, &want), gl = sizeof(got);
	int t = 0, c, bad = 0;

	if (getsockopt(l1, SOL_SOCKET, SO_TYPE, &t, &(socklen_t){sizeof(t)}) || t != type ||
	    getsockname(l1, (struct sockaddr *)&got, &gl) || gl != sizeof(sa_family_t))
		bad |= fail("the unbound unconnected socket changed");
	gl = sizeof(got);
	if (getsockname(l2, (struct sockaddr *)&got, &gl) || gl != wl || memcmp(&got, &want, wl))
		bad |= fail("the bound unconnected socket lost its name");
	c = socket(AF_UNIX, type, 0);
	if (listen(l2, 1) || connect(c, (struct sockaddr *)&want, wl) || accept(l2, NULL, NULL) < 0)
		bad |= fail("the bound unconnected socket cannot listen and accept");
	close(c);
	return bad;
}

/* The ends whose peers closed, at the stop: their bytes, then EOF; the accepted end's name. */
static int check_gone(int a, int sp, const struct sockaddr_un *sun, socklen_t sl, bool stream)
{
	struct sockaddr_un got;
	socklen_t gl = sizeof(got);
	char b;
	int bad = 0;

	bad |= expect(a, "to-server", "queued by the client that closed");
	if (!stream)
		bad |= expect(a, "s2", "second message of the client that closed");
	bad |= stream ? expect(sp, "bye", "queued by the socketpair end that closed")
		      : expect(sp, "by", "first message of the socketpair end that closed") |
				expect(sp, "e", "second message of the socketpair end that closed");
	if (recv(a, &b, 1, MSG_DONTWAIT) != 0 || recv(sp, &b, 1, MSG_DONTWAIT) != 0)
		bad |= fail("no end of stream after the bytes of a peer that closed");
	if (getsockname(a, (struct sockaddr *)&got, &gl) || gl != sl || memcmp(&got, sun, sl))
		bad |= fail("the accepted end lost the listener's name");
	if (!bad) {
		printf("gone ok\n");
		fflush(stdout);
	}
	return bad;
}

/* The pair at the stop: queued bytes, names, two messages each way. */
static int check_pair(int c, int a, const struct sockaddr_un *sun, socklen_t sl, bool stream)
{
	struct sockaddr_un got;
	socklen_t gl = sizeof(got);
	int bad = 0;

	bad |= expect(a, "to-server", "queued towards the accepted end");
	bad |= expect(c, "to-client", "queued towards the client end");
	if (!stream) {
		bad |= expect(a, "s2", "second message queued towards the accepted end");
		bad |= expect(c, "c2", "second message queued towards the client end");
	}
	if (getsockname(a, (struct sockaddr *)&got, &gl) || gl != sl || memcmp(&got, sun, sl))
		bad |= fail("the accepted end lost the listener's name");
	gl = sizeof(got);
	if (getpeername(c, (struct sockaddr *)&got, &gl) || gl != sl || memcmp(&got, sun, sl))
		bad |= fail("the client end's peer is not the listener's name");
	if (send(c, "c1", 2, 0) != 2 || send(c, "c2", 2, 0) != 2 || send(a, "a1", 2, 0) != 2 ||
	    send(a, "a2", 2, 0) != 2)
		return fail("send on the pair");
	if (stream) {
		bad |= expect(a, "c1c2", "client to server");
		bad |= expect(c, "a1a2", "server to client");
	} else {
		bad |= expect(a, "c1", "first message to server");
		bad |= expect(a, "c2", "second message to server");
		bad |= expect(c, "a1", "first message to client");
		bad |= expect(c, "a2", "second message to client");
	}
	if (!bad)
		printf("pair ok\n");
	return bad;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char ready[200], stop[200], buf[128], reply[160];
	const char *mode = argc == 3 ? argv[1] : "";
	int s, fd, served = 0, c = -1, a = -1, type, dg[2] = {-1, -1};
	struct sockaddr_un csun = {.sun_family = AF_UNIX};
	socklen_t csl = 0;
	bool conn = !strncmp(mode, "conn", 4), gone = !strncmp(mode, "gone-", 5);
	int sp[2] = {-1, -1}, l1 = -1, l2 = -1;

	if (!strncmp(mode, "connlate-", 9) || !strncmp(mode, "connbound-", 10))
		conn = true;
	socklen_t sl;

	if (argc != 3 || strlen(argv[2]) > 90)
		return 2;
	if (strstr(mode, "path-")) {
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/sock", argv[2]);
		sl = offsetof(struct sockaddr_un, sun_path) + strlen(sun.sun_path) + 1;
	} else {
		memcpy(sun.sun_path + 1, argv[2], strlen(argv[2]));
		sl = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(argv[2]);
	}
	type = strstr(mode, "seqpacket") ? SOCK_SEQPACKET : SOCK_STREAM;
	s = socket(AF_UNIX, type, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sun, sl) || listen(s, 7))
		return fail("listen");
	/* zdtm's sockets00: the socket file's own mode, not bind()'s umask one */
	if (sun.sun_path[0] && chmod(sun.sun_path, 0640))
		return fail("chmod");
	if (conn) {
		c = socket(AF_UNIX, type, 0);
		if (c < 0)
			return fail("socket");
		if (!strncmp(mode, "connbound-", 10)) {
			/* the client end bound too: the listener's name and a "c" */
			csun = sun;
			csun.sun_path[sl - offsetof(struct sockaddr_un, sun_path) -
				      (sun.sun_path[0] != 0)] = 'c';
			csl = sl + 1;
			if (bind(c, (struct sockaddr *)&csun, csl))
				return fail("bind the client end");
		}
		if (connect(c, (struct sockaddr *)&sun, sl))
			return fail("connect to itself");
		a = accept(s, NULL, NULL);
		if (a < 0)
			return fail("accept its own connection");
		if (write(c, "to-server", 9) != 9 || write(a, "to-client", 9) != 9)
			return fail("queue bytes on the pair");
		if (type == SOCK_SEQPACKET && (write(c, "s2", 2) != 2 || write(a, "c2", 2) != 2))
			return fail("queue a second message on the pair");
		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) || write(dg[1], "d1", 2) != 2 ||
		    write(dg[1], "dd2", 3) != 3 || write(dg[1], "ddd3", 4) != 4 ||
		    write(dg[0], "e1", 2) != 2)
			return fail("queue datagrams on a socketpair");
		if (!strncmp(mode, "connlate-", 9)) {
			if (dup2(s, 20) != 20)
				return fail("dup2 the listener");
			close(s);
			s = 20;
		}
		if (set_opts(&s, &c, &a, dg))
			return 1;
	}
	if (gone) {
		c = socket(AF_UNIX, type, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&sun, sl))
			return fail("connect to itself");
		a = accept(s, NULL, NULL);
		if (a < 0 || write(c, "to-server", 9) != 9 ||
		    (type == SOCK_SEQPACKET && write(c, "s2", 2) != 2))
			return fail("queue bytes from the client");
		close(c);
		if (socketpair(AF_UNIX, type, 0, sp) ||
		    (type == SOCK_STREAM ? write(sp[1], "bye", 3) != 3
					 : write(sp[1], "by", 2) != 2 || write(sp[1], "e", 1) != 1))
			return fail("queue bytes on a socketpair");
		close(sp[1]);
		l1 = socket(AF_UNIX, type, 0);
		l2 = socket(AF_UNIX, type, 0);
		if (l1 < 0 || l2 < 0 ||
		    bind(l2, (struct sockaddr *)&csun, lone_name(argv[2], &csun)))
			return fail("unconnected sockets");
	}
	snprintf(ready, sizeof(ready), "%s/ready", argv[2]);
	snprintf(stop, sizeof(stop), "%s/stop", argv[2]);
	fd = open(ready, O_WRONLY | O_CREAT, 0644);
	if (fd < 0)
		return fail("ready");
	close(fd);
	while (access(stop, F_OK)) {
		struct pollfd p = {.fd = s, .events = POLLIN};
		ssize_t n;
		int c;

		/* poll is not restarted after a stop (ptrace): EINTR */
		if (poll(&p, 1, 10) <= 0)
			continue;
		c = accept(s, NULL, NULL);
		if (c < 0)
			return fail("accept");
		n = read(c, buf, sizeof(buf) - 1);
		if (n <= 0)
			return fail("read");
		buf[n] = '\0';
		n = snprintf(reply, sizeof(reply), "echo:%s", buf);
		if (write(c, reply, n) != n)
			return fail("write");
		close(c);
		served++;
	}
	if (conn && (check_opts() | check_pair(c, a, &sun, sl, type == SOCK_STREAM)))
		return 1;
	if (gone && (check_lone(l1, l2, argv[2], type) |
		     check_gone(a, sp[0], &sun, sl, type == SOCK_STREAM)))
		return 1;
	if (csl) {
		struct sockaddr_un got;
		socklen_t gl = sizeof(got);

		if (getsockname(c, (struct sockaddr *)&got, &gl) || gl != csl ||
		    memcmp(&got, &csun, csl))
			return fail("the bound client end lost its name");
		gl = sizeof(got);
		if (getpeername(a, (struct sockaddr *)&got, &gl) || gl != csl ||
		    memcmp(&got, &csun, csl))
			return fail("the accepted end's peer is not the bound client's name");
	}
	if (conn &&
	    (expect(dg[0], "d1", "first datagram") | expect(dg[0], "dd2", "second datagram") |
	     expect(dg[0], "ddd3", "third datagram") | expect(dg[1], "e1", "datagram back")))
		return 1;
	printf("final ok served %d\n", served);
	return 0;
}
