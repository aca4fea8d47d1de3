/*
 * tree_net - a server made of 3 processes that share their sockets, as
 * nginx (workers accepting on the master's listener), Redis's BGSAVE child
 * (every client connection held by parent and child) and a shell (epoll
 * sets inherited over fork) do; the peer is net_client.
 *
 * usage: tree_net DIR ADDR PORT NCONN [gone]   (NCONN a multiple of 3, <= 15)
 * The parent P listens on ADDR:PORT (TCP) with a UDP socket bound there
 * too, accepts NCONN stream connections (index = accept order), makes the
 * epoll E0 (the listener EPOLLIN|EPOLLEXCLUSIVE, the UDP socket EPOLLIN)
 * and forks W1 and W2: all three hold the listener, the UDP socket, E0
 * and every connection.  After the fork P opens /dev/null and W1 an
 * eventfd X at the same fd number, and W1 adds X to E0 (EPOLLONESHOT): a
 * watch of a shared epoll on a file only W1 holds, at a number that is
 * another file in P.  W1 has its own epoll E1 on the listener and on an
 * eventfd Y (EPOLLONESHOT), which fires once now: disarmed.  With "gone",
 * W1 then moves X to another fd number (dup, close): the watch lives on,
 * keyed by a number no process holds X at any more (haul refuses it).
 * Lines on stdout: "listening", "accepted N", "pK ready" (K = 0, 1, 2);
 * "p0 e0 W..." and "p1 e1 W..." list the watches (tfd:events:data, X left
 * out) of E0 (the UDP watch is edge-triggered) and E1 as fdinfo shows
 * them, at "ready" and again once running: the same after a restore.
 * On SIGUSR1 (to the process group) each process writes the server
 * pattern (net_pattern.h) on the connections it owns (index % 3 == K)
 * until EAGAIN and reads nothing any more: "pK filled".  The first
 * POLLOUT on a connection after that (its peer reads again: after a
 * restore) starts the rest: each process closes its copies of the
 * connections it does not own ("pK running"), and serves its own: every
 * byte read and checked, the rest written, closed at the peer's EOF ("pK
 * conn I done").  W1 writes X: W2, waiting on E0, sees it ("p2 saw x").
 * W1 and W2 accept echo connections on the shared listener (W1 through
 * E1, W2 through E0; W1 also before, once DIR/accept exists: "accepted
 * echo") and answer each when its data comes ("echoed"); W2 echoes
 * datagrams on the UDP socket.  Y must not
 * fire again until W1 re-arms it once its connections are done: "p1
 * oneshot ok".  DIR/stop ends every process (P reaps its children).
 * "ERROR ..." on any mismatch.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "net_pattern.h"

#define D_LISTEN 1000
#define D_UDP	 2000
#define D_X	 3000
#define D_Y	 4000

struct conn {
	int fd;
	uint64_t wpos, rpos;
	int done;
};

static struct conn c[NET_MAX_CONN];
static int me, nconn, lfd, ufd, e0, e1 = -1, xfd = -1, yfd = -1;
static int filled, running, ndone, nown, saw_x, y_fired, gone;
static char stopfile[512], acceptfile[512];
static int echo_fds[4] = {-1, -1, -1, -1}; /* echo connections accepted, not answered yet */
static volatile sig_atomic_t go;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
	va_list ap;

	printf("p%d ", me);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fputc('\n', stdout);
	fflush(stdout);
}

static void fail(const char *what)
{
	printf("ERROR p%d %s: %s\n", me, what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static bool owned(int i)
{
	return i % 3 == me;
}

static void fill(int i)
{
	uint8_t buf[16384];

	while (c[i].wpos < NET_S2C_TOTAL) {
		size_t n = NET_S2C_TOTAL - c[i].wpos;
		ssize_t w;

		if (n > sizeof(buf))
			n = sizeof(buf);
		for (size_t k = 0; k < n; k++)
			buf[k] = net_byte(0, i, c[i].wpos + k);
		w = send(c[i].fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0)
			fail("send");
		c[i].wpos += w;
	}
}

static void drain(int i)
{
	uint8_t buf[16384];
	ssize_t n;

	while ((n = recv(c[i].fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		for (ssize_t k = 0; k < n; k++)
			if (buf[k] != net_byte(1, i, c[i].rpos + k)) {
				printf("ERROR p%d conn %d byte %llu\n", me, i,
				       (unsigned long long)(c[i].rpos + k));
				fflush(stdout);
				exit(1);
			}
		c[i].rpos += n;
	}
	if (n == 0) {
		if (c[i].rpos != NET_C2S_TOTAL || c[i].wpos != NET_S2C_TOTAL) {
			printf("ERROR p%d conn %d eof at %llu\n", me, i,
			       (unsigned long long)c[i].rpos);
			fflush(stdout);
			exit(1);
		}
		close(c[i].fd);
		c[i].fd = -1;
		c[i].done = 1;
		ndone++;
		say("conn %d done", i);
	} else if (errno != EAGAIN) {
		fail("recv");
	}
}

/*
 * "pK eN tfd:events:data ..." for epoll fd @ep, by fd number (fdinfo's
 * order is the kernel's tree of file pointers); X, which W1 fires, left
 * out.  EPOLLERR and EPOLLHUP are left out too: every EPOLL_CTL_ADD sets
 * them, so a disarmed EPOLLONESHOT watch (events reduced to its flags)
 * comes back with them (DESIGN.md).
 */
static void show_watches(int ep, int n)
{
	char path[64], line[256], out[1024];
	struct {
		int tfd;
		unsigned int ev;
		unsigned long long data;
	} w[8];
	int nw = 0;
	FILE *f;
	size_t len = 0;

	if (ep < 0)
		return;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	f = fopen(path, "r");
	if (!f)
		fail("fdinfo");
	out[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		unsigned int ev;
		unsigned long long data;
		int tfd, k;

		if (sscanf(line, "tfd: %d events: %x data: %llx", &tfd, &ev, &data) != 3 ||
		    data == D_X || nw == 8)
			continue;
		/* insertion by fd number */
		for (k = nw++; k > 0 && w[k - 1].tfd > tfd; k--)
			w[k] = w[k - 1];
		w[k].tfd = tfd;
		w[k].ev = ev & ~(unsigned)(EPOLLERR | EPOLLHUP);
		w[k].data = data;
	}
	fclose(f);
	for (int k = 0; k < nw; k++)
		len += snprintf(out + len, sizeof(out) - len, " %d:%x:%llx", w[k].tfd, w[k].ev,
				w[k].data);
	say("e%d%s", n, out);
}

/* The peer reads again: only the owner keeps each connection. */
static void start_running(void)
{
	running = 1;
	for (int i = 0; i < nconn; i++)
		if (!owned(i)) {
			close(c[i].fd);
			c[i].fd = -1;
		}
	say("running");
	if (me == 0)
		show_watches(e0, 0);
	if (me == 1)
		show_watches(e1, 1);
	if (me == 1) {
		uint64_t one = 1;

		if (write(xfd, &one, sizeof(one)) != sizeof(one))
			fail("write x");
	}
}

/* An echo connection: answered when its data comes (serve's poll). */
static void echo_accept(void)
{
	int fd, k;

	for (k = 0; k < 4 && echo_fds[k] >= 0; k++)
		;
	if (k == 4)
		return; /* busy: it waits in the queue */
	fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0)
		return; /* the other worker took it */
	echo_fds[k] = fd;
	say("accepted echo");
}

static void echo_answer(int k)
{
	char buf[64];
	ssize_t n = recv(echo_fds[k], buf, sizeof(buf), MSG_DONTWAIT);

	if (n < 0 && errno == EAGAIN)
		return;
	if (n > 0 && send(echo_fds[k], buf, n, MSG_NOSIGNAL) != n)
		fail("echo");
	close(echo_fds[k]);
	echo_fds[k] = -1;
	if (n > 0)
		say("echoed");
}

static void udp_echo(void)
{
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	char buf[64];
	ssize_t n = recvfrom(ufd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &fl);

	if (n > 0 && sendto(ufd, buf, n, 0, (struct sockaddr *)&from, fl) != n)
		fail("udp echo");
}

/* W1 and W2, once running: the shared listener, UDP, X and Y through their epolls. */
static void events(void)
{
	struct epoll_event ev[8];
	int n = epoll_wait(me == 1 ? e1 : e0, ev, 8, 0);

	for (int k = 0; k < n; k++) {
		uint64_t d = ev[k].data.u64;

		if (d == D_LISTEN || d == D_LISTEN + 1)
			echo_accept();
		else if (d == D_UDP)
			udp_echo();
		else if (d == D_X && !saw_x) {
			saw_x = 1;
			say("saw x");
		} else if (d == D_Y) {
			y_fired++;
		}
	}
	if (n < 0 && errno != EINTR)
		fail("epoll_wait");
}

/* W1, its connections done: Y stayed disarmed; re-armed, it fires. */
static void check_oneshot(void)
{
	struct epoll_event ev = {EPOLLIN | EPOLLONESHOT, {.u64 = D_Y}};

	if (y_fired) {
		say("ERROR oneshot y fired %d times while disarmed", y_fired);
		exit(1);
	}
	if (epoll_ctl(e1, EPOLL_CTL_MOD, yfd, &ev))
		fail("epoll_ctl mod y");
	for (int i = 0; i < 100 && !y_fired; i++) {
		struct epoll_event got = {0};

		if (epoll_wait(e1, &got, 1, 100) == 1 && got.data.u64 == D_Y)
			y_fired = 1;
		else if (got.data.u64 == D_LISTEN + 1)
			echo_accept();
	}
	if (!y_fired) {
		say("ERROR oneshot y did not fire once re-armed");
		exit(1);
	}
	say("oneshot ok");
}

static void serve(void)
{
	int checked = 0;

	for (;;) {
		struct pollfd p[NET_MAX_CONN + 4];
		int idx[NET_MAX_CONN + 4], n = 0;
		struct stat st;

		if (!stat(stopfile, &st))
			return;
		if (go && !filled) {
			for (int i = 0; i < nconn; i++)
				if (owned(i))
					fill(i);
			filled = 1;
			say("filled");
		}
		for (int i = 0; i < nconn; i++) {
			/* running: the peer reads again, which only the owner's writes see */
			if (c[i].fd < 0 || (!filled && !running) || !owned(i))
				continue;
			idx[n] = i;
			p[n++] = (struct pollfd){c[i].fd,
						 (running ? POLLIN : 0) |
							 (c[i].wpos < NET_S2C_TOTAL ? POLLOUT : 0),
						 0};
		}
		for (int k = 0; k < 4; k++)
			if (echo_fds[k] >= 0) {
				idx[n] = -1 - k;
				p[n++] = (struct pollfd){echo_fds[k], POLLIN, 0};
			}
		if (poll(p, n, 20) < 0 && errno != EINTR)
			fail("poll");
		for (int k = 0; k < n; k++) {
			int i = idx[k];

			if (!p[k].revents)
				continue;
			if (i < 0) {
				echo_answer(-1 - i);
				continue;
			}
			if (!running)
				start_running();
			if (c[i].fd < 0)
				continue;
			fill(i);
			drain(i);
		}
		/* W1 accepts before any restore too once DIR/accept exists */
		if (me && (running || (me == 1 && !stat(acceptfile, &st))))
			events();
		if (me == 1 && running && ndone == nown && !checked) {
			check_oneshot();
			checked = 1;
		}
	}
}

static int setup_listen(const char *addr, int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	int one = 1;

	inet_pton(AF_INET, addr, &a.sin_addr);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ufd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || ufd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(lfd, (struct sockaddr *)&a, sizeof(a)) || listen(lfd, 16) ||
	    bind(ufd, (struct sockaddr *)&a, sizeof(a)))
		fail("listen");
	say("listening");
	return 0;
}

static void add(int ep, int fd, uint32_t events, uint64_t data)
{
	struct epoll_event ev = {events, {.u64 = data}};

	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		fail("epoll_ctl add");
}

/* W1's own files, after the fork: X in the shared E0, E1 with the listener and Y. */
static void setup_w1(void)
{
	struct epoll_event got;
	uint64_t one = 1;

	xfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (xfd < 0)
		fail("eventfd x");
	add(e0, xfd, EPOLLIN | EPOLLONESHOT, D_X);
	if (gone) {
		int moved = fcntl(xfd, F_DUPFD_CLOEXEC, 40);

		if (moved < 0)
			fail("dup x");
		close(xfd);
		xfd = moved;
	}
	e1 = epoll_create1(EPOLL_CLOEXEC);
	yfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e1 < 0 || yfd < 0)
		fail("epoll e1");
	add(e1, lfd, EPOLLIN, D_LISTEN + 1);
	add(e1, yfd, EPOLLIN | EPOLLONESHOT, D_Y);
	if (write(yfd, &one, sizeof(one)) != sizeof(one) || epoll_wait(e1, &got, 1, 1000) != 1 ||
	    got.data.u64 != D_Y)
		fail("oneshot y");
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	pid_t kids[2];

	if (argc != 5 && argc != 6)
		return 2;
	gone = argc == 6 && !strcmp(argv[5], "gone");
	setvbuf(stdout, NULL, _IOLBF, 0);
	nconn = atoi(argv[4]);
	if (nconn < 3 || nconn % 3 || nconn > NET_MAX_CONN)
		return 2;
	snprintf(stopfile, sizeof(stopfile), "%s/stop", argv[1]);
	snprintf(acceptfile, sizeof(acceptfile), "%s/accept", argv[1]);
	sigaction(SIGUSR1, &sa, NULL);
	setup_listen(argv[2], atoi(argv[3]));
	for (int i = 0; i < nconn; i++) {
		c[i].fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c[i].fd < 0)
			fail("accept");
	}
	say("accepted %d", nconn);
	e0 = epoll_create1(EPOLL_CLOEXEC);
	if (e0 < 0)
		fail("epoll e0");
	add(e0, lfd, EPOLLIN | EPOLLEXCLUSIVE, D_LISTEN);
	add(e0, ufd, EPOLLIN | EPOLLET, D_UDP);
	for (int k = 1; k <= 2; k++) {
		kids[k - 1] = fork();
		if (kids[k - 1] < 0)
			fail("fork");
		if (kids[k - 1] == 0) {
			me = k;
			break;
		}
	}
	if (me == 0 && open("/dev/null", O_RDONLY | O_CLOEXEC) < 0) /* X's number in W1 */
		fail("open /dev/null");
	if (me == 1)
		setup_w1();
	for (int i = 0; i < nconn; i++)
		nown += owned(i);
	say("ready");
	if (me == 0)
		show_watches(e0, 0);
	if (me == 1)
		show_watches(e1, 1);
	serve();
	if (me == 0)
		for (int k = 0; k < 2; k++)
			waitpid(kids[k], NULL, 0);
	return 0;
}
