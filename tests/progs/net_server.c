/*
 * net_server - a TCP and UDP server for the socket checkpoint/restore tests:
 * a listener with options, NCONN stream connections that end up with data
 * queued both ways, echo connections, and a UDP echo socket.
 *
 * usage: net_server v4|v6|dual ADDR PORT NCONN [TAG]
 * The listener (dual: "::" with IPV6_V6ONLY off) has SO_REUSEADDR,
 * TCP_NODELAY, keepalive with its timers, TCP_USER_TIMEOUT, SO_LINGER, a
 * TOS/traffic class, SO_RCVBUF, SO_NO_CHECK, SO_RCVTIMEO and SO_SNDTIMEO,
 * TCP_CONGESTION reno (accepted connections inherit it) and
 * backlog 17 (the UDP socket: a SO_RCVTIMEO of its own, and in v4 the group
 * 239.7.7.7 joined with 198.18.9.9 blocked); a UDP socket is bound to
 * ADDR:PORT too, another connected to it.  The options compared include
 * every socket's local and peer address.  Lines on stdout:
 *  "listening"           - ready for clients;
 *  "accepted N"          - N stream connections (the first NCONN accepted);
 *  on SIGUSR1 (signalfd): each stream connection is written (its pattern,
 *  net_pattern.h) until EAGAIN, and neither they nor the UDP socket are read
 *  any more: "filled"; the options of every socket are remembered;
 *  the first POLLOUT on a stream connection after that (its peer reads
 *  again: after a restore) compares the options: "opts same" or "opts
 *  differ ..."; then every stream connection is read (and checked) to
 *  NET_C2S_TOTAL bytes and written to NET_S2C_TOTAL, and closed at the
 *  peer's EOF: "conn I done", and "all done"; "udp N" counts the datagrams
 *  it echoed since "filled"; a UDP socket connected to the bound one sends
 *  it "self" when the streams run again and gets it back: "udp connected ok"
 *  (sent again as each stream connection is done until it comes back: what
 *  a migrated process sends before the target lifts its network lock is
 *  dropped, DESIGN.md);
 *  any later connection is an echo connection; one that sends "nap" makes it
 *  stop (no accept) until SIGUSR2: "napping", "awake"; one that sends "bye"
 *  gets "bye" and the server's shutdown(SHUT_WR) ("shut down"), and what it
 *  sends later is printed: "late DATA".  "ERROR ..." on a
 *  mismatch.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "net_pattern.h"

#define MAXFD 64

struct conn {
	int fd;
	int idx; /* stream connection index, -1: echo */
	uint64_t wpos, rpos;
	int done;
	int shut; /* echo: we said "bye" and shut down our side */
};

static struct conn conns[MAXFD];
static int nconn, nstream, want, filled, running, ndone, nudp;
static int lfd, ufd, sfd, cfd, self_back;
static struct in_addr mc_if; /* v4: the interface address the UDP socket joined 239.7.7.7 on */
#define NOPT 23
static int optsnap[MAXFD][NOPT];

static void die(const char *what)
{
	printf("ERROR %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void say(const char *fmt, int v)
{
	printf(fmt, v);
	printf("\n");
	fflush(stdout);
}

static void line(const char *s)
{
	printf("%s\n", s);
	fflush(stdout);
}

static void seti(int fd, int level, int name, int v)
{
	if (setsockopt(fd, level, name, &v, sizeof(v)) < 0)
		die("setsockopt");
}

static int geti(int fd, int level, int name)
{
	int v = -1;
	socklen_t l = sizeof(v);

	getsockopt(fd, level, name, &v, &l);
	return v;
}

/* A digest of the address @get (getsockname or getpeername) gives for @fd; 0: none. */
static int addr_hash(int fd, int (*get)(int, struct sockaddr *, socklen_t *))
{
	struct sockaddr_storage a;
	socklen_t l = sizeof(a);
	unsigned h = 5381;

	memset(&a, 0, sizeof(a));
	if (get(fd, (struct sockaddr *)&a, &l) < 0)
		return 0;
	for (socklen_t i = 0; i < l; i++)
		h = h * 33 + ((unsigned char *)&a)[i];
	return (int)h;
}

/* Whether @fd's local address is a specific IPv6 one (not any, not v4-mapped). */
static int v6_specific(int fd)
{
	struct sockaddr_in6 a;
	socklen_t l = sizeof(a);

	memset(&a, 0, sizeof(a));
	if (getsockname(fd, (struct sockaddr *)&a, &l) < 0 || a.sin6_family != AF_INET6)
		return 0;
	return !IN6_IS_ADDR_UNSPECIFIED(&a.sin6_addr) && !IN6_IS_ADDR_V4MAPPED(&a.sin6_addr);
}

/* @fd's SO_RCVTIMEO or SO_SNDTIMEO in microseconds (up to ~35 minutes); -1: unknown. */
static int timeo_us(int fd, int name)
{
	struct timeval tv = {-1, 0};
	socklen_t l = sizeof(tv);

	if (getsockopt(fd, SOL_SOCKET, name, &tv, &l) < 0)
		return -1;
	return (int)(tv.tv_sec * 1000000 + tv.tv_usec);
}

/*
 * The v4 UDP socket's membership of 239.7.7.7 on mc_if: 10 + its blocked
 * sources when joined, 0 when not (or not v4).
 */
static int mc_state(int fd)
{
	char buf[IP_MSFILTER_SIZE(8)];
	struct ip_msfilter *f = (struct ip_msfilter *)buf;
	socklen_t l = sizeof(buf);

	if (!mc_if.s_addr)
		return 0;
	memset(buf, 0, sizeof(buf));
	inet_pton(AF_INET, "239.7.7.7", &f->imsf_multiaddr);
	f->imsf_interface = mc_if;
	f->imsf_numsrc = 8;
	if (getsockopt(fd, IPPROTO_IP, IP_MSFILTER, f, &l) < 0)
		return 0;
	return 10 + (int)f->imsf_numsrc + (f->imsf_fmode == MCAST_EXCLUDE ? 100 : 0);
}

/* A digest of TCP socket @fd's congestion control's name; -1: none. */
static int congestion_hash(int fd)
{
	char name[16] = "";
	socklen_t l = sizeof(name) - 1;
	int h = 7;

	if (getsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name, &l) < 0)
		return -1;
	for (const char *c = name; *c; c++)
		h = h * 31 + *c;
	return h;
}

/* The options the test compares across a restore, of socket @fd. */
static void opts_of(int fd, int *o)
{
	struct linger lg = {0};
	socklen_t l = sizeof(lg);
	int dom = geti(fd, SOL_SOCKET, SO_DOMAIN);

	getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &l);
	o[0] = geti(fd, SOL_SOCKET, SO_REUSEADDR);
	o[1] = geti(fd, SOL_SOCKET, SO_KEEPALIVE);
	o[2] = geti(fd, IPPROTO_TCP, TCP_NODELAY);
	o[3] = geti(fd, IPPROTO_TCP, TCP_KEEPIDLE);
	o[4] = geti(fd, IPPROTO_TCP, TCP_KEEPINTVL);
	o[5] = geti(fd, IPPROTO_TCP, TCP_KEEPCNT);
	o[6] = geti(fd, IPPROTO_TCP, TCP_USER_TIMEOUT);
	o[7] = lg.l_onoff * 1000 + lg.l_linger;
	o[8] = dom == AF_INET6 ? geti(fd, IPPROTO_IPV6, IPV6_TCLASS) : geti(fd, IPPROTO_IP, IP_TOS);
	/* bind() to a specific IPv6 address sets V6ONLY (it changes nothing then): not compared */
	o[9] = dom == AF_INET6 && !v6_specific(fd) ? geti(fd, IPPROTO_IPV6, IPV6_V6ONLY) : 0;
	o[10] = fcntl(fd, F_GETFL) & O_NONBLOCK;
	o[11] = fd == lfd ? geti(fd, SOL_SOCKET, SO_RCVBUF) : 0;
	o[12] = fd == lfd ? geti(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT) : 0;
	o[13] = geti(fd, SOL_SOCKET, SO_TYPE);
	o[14] = dom;
	o[15] = fd == lfd ? geti(fd, SOL_SOCKET, SO_ACCEPTCONN) : 0;
	o[16] = addr_hash(fd, getsockname);
	o[17] = addr_hash(fd, getpeername);
	o[18] = fd == lfd ? geti(fd, SOL_SOCKET, SO_NO_CHECK) : 0;
	o[19] = timeo_us(fd, SO_RCVTIMEO);
	o[20] = timeo_us(fd, SO_SNDTIMEO);
	o[21] = geti(fd, SOL_SOCKET, SO_TYPE) == SOCK_STREAM ? congestion_hash(fd) : 0;
	o[22] = fd == ufd ? mc_state(fd) : 0;
}

static void opts_snapshot(void)
{
	for (int fd = 0; fd < MAXFD; fd++)
		if (fd == lfd || fd == ufd || fd == cfd || conns[fd].fd == fd)
			opts_of(fd, optsnap[fd]);
}

static void opts_compare(void)
{
	int o[NOPT], bad = 0;

	for (int fd = 0; fd < MAXFD; fd++) {
		if (fd != lfd && fd != ufd && fd != cfd && conns[fd].fd != fd)
			continue;
		opts_of(fd, o);
		for (int k = 0; k < NOPT; k++)
			if (o[k] != optsnap[fd][k]) {
				printf("opts differ fd %d option %d: %d, was %d\n", fd, k, o[k],
				       optsnap[fd][k]);
				bad = 1;
			}
	}
	if (!bad)
		printf("opts same\n");
	fflush(stdout);
}

static int make_listener(const char *mode, const char *addr, int port)
{
	struct sockaddr_storage sa;
	struct linger lg = {1, 3};
	struct timeval rcvtimeo = {4, 250000}, sndtimeo = {0, 60000}, udptimeo = {1, 500};
	socklen_t sl;
	int v6 = strcmp(mode, "v4") != 0, fd;

	memset(&sa, 0, sizeof(sa));
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(port);
		inet_pton(AF_INET6, addr, &a->sin6_addr);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&sa;

		a->sin_family = AF_INET;
		a->sin_port = htons(port);
		inet_pton(AF_INET, addr, &a->sin_addr);
		sl = sizeof(*a);
	}
	fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0)
		die("socket");
	seti(fd, SOL_SOCKET, SO_REUSEADDR, 1);
	if (v6)
		seti(fd, IPPROTO_IPV6, IPV6_V6ONLY, !strcmp(mode, "v6"));
	seti(fd, IPPROTO_TCP, TCP_NODELAY, 1);
	seti(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
	seti(fd, IPPROTO_TCP, TCP_KEEPIDLE, 77);
	seti(fd, IPPROTO_TCP, TCP_KEEPINTVL, 11);
	seti(fd, IPPROTO_TCP, TCP_KEEPCNT, 5);
	seti(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, 12345);
	seti(fd, SOL_SOCKET, SO_RCVBUF, 200000);
	seti(fd, SOL_SOCKET, SO_NO_CHECK, 1); /* zdtm sock_opts00: it was lost */
	/* not the default (cubic): accepted connections inherit it (reno is always built in) */
	if (setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, "reno", 4) < 0)
		die("TCP_CONGESTION");
	/* the accepted connections inherit the timeouts (nonblocking: no effect) */
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &rcvtimeo, sizeof(rcvtimeo)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &sndtimeo, sizeof(sndtimeo)) < 0)
		die("timeouts");
	if (v6)
		seti(fd, IPPROTO_IPV6, IPV6_TCLASS, 0x20);
	else
		seti(fd, IPPROTO_IP, IP_TOS, 0x10);
	if (setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)) < 0)
		die("linger");
	if (bind(fd, (struct sockaddr *)&sa, sl) < 0)
		die("bind");
	if (listen(fd, 17) < 0)
		die("listen");
	ufd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (ufd < 0)
		die("udp socket");
	if (v6)
		seti(ufd, IPPROTO_IPV6, IPV6_V6ONLY, !strcmp(mode, "v6"));
	if (bind(ufd, (struct sockaddr *)&sa, sl) < 0 ||
	    setsockopt(ufd, SOL_SOCKET, SO_RCVTIMEO, &udptimeo, sizeof(udptimeo)) < 0)
		die("udp bind");
	if (!v6) { /* a group on the interface of ADDR, one source blocked */
		struct ip_mreq m = {.imr_interface = ((struct sockaddr_in *)&sa)->sin_addr};
		struct ip_mreq_source b = {.imr_interface = m.imr_interface};

		inet_pton(AF_INET, "239.7.7.7", &m.imr_multiaddr);
		b.imr_multiaddr = m.imr_multiaddr;
		inet_pton(AF_INET, "198.18.9.9", &b.imr_sourceaddr);
		if (setsockopt(ufd, IPPROTO_IP, IP_ADD_MEMBERSHIP, &m, sizeof(m)) < 0 ||
		    setsockopt(ufd, IPPROTO_IP, IP_BLOCK_SOURCE, &b, sizeof(b)) < 0)
			die("multicast");
		mc_if = m.imr_interface;
	}
	/*
	 * a connected UDP socket (an ephemeral port), connected to the bound
	 * one, bound to ADDR as well: as a service on an address of its own,
	 * it uses no other address of the host (which would not move with it)
	 */
	cfd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (cfd < 0)
		die("udp socket");
	if (v6)
		seti(cfd, IPPROTO_IPV6, IPV6_V6ONLY, !strcmp(mode, "v6"));
	if (v6)
		((struct sockaddr_in6 *)&sa)->sin6_port = 0;
	else
		((struct sockaddr_in *)&sa)->sin_port = 0;
	if (bind(cfd, (struct sockaddr *)&sa, sl) < 0)
		die("udp bind to the address");
	if (v6)
		((struct sockaddr_in6 *)&sa)->sin6_port = htons(port);
	else
		((struct sockaddr_in *)&sa)->sin_port = htons(port);
	if (connect(cfd, (struct sockaddr *)&sa, sl) < 0)
		die("udp connect");
	return fd;
}

/* Write the stream's pattern until EAGAIN or its end. */
static void pump_out(struct conn *c)
{
	uint8_t buf[16384];

	while (c->wpos < NET_S2C_TOTAL) {
		size_t n = NET_S2C_TOTAL - c->wpos;
		ssize_t w;

		if (n > sizeof(buf))
			n = sizeof(buf);
		for (size_t i = 0; i < n; i++)
			buf[i] = net_byte(0, c->idx, c->wpos + i);
		w = send(c->fd, buf, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0)
			die("send");
		c->wpos += w;
	}
}

/* Read and check what the peer sent; its EOF closes the connection. */
static void pump_in(struct conn *c)
{
	uint8_t buf[16384];
	ssize_t n;

	while ((n = recv(c->fd, buf, sizeof(buf), 0)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] != net_byte(1, c->idx, c->rpos + i)) {
				printf("ERROR conn %d byte %llu\n", c->idx,
				       (unsigned long long)(c->rpos + i));
				fflush(stdout);
				exit(1);
			}
		c->rpos += n;
	}
	if (n == 0 && c->wpos == NET_S2C_TOTAL && c->rpos == NET_C2S_TOTAL) {
		close(c->fd);
		c->fd = -1;
		c->done = 1;
		say("conn %d done", c->idx);
		if (!self_back)
			send(cfd, "self", 4, 0);
		if (++ndone == nstream)
			line("all done");
	} else if (n == 0) {
		printf("ERROR conn %d eof at %llu\n", c->idx, (unsigned long long)c->rpos);
		fflush(stdout);
		exit(1);
	}
}

static void echo(struct conn *c)
{
	char buf[4096];
	ssize_t n = recv(c->fd, buf, sizeof(buf), 0);

	if (n >= 3 && !memcmp(buf, "nap", 3)) {
		/* accept nothing until SIGUSR2: a connection made meanwhile waits in the queue */
		sigset_t s2;
		int sig;

		sigemptyset(&s2);
		sigaddset(&s2, SIGUSR2);
		line("napping");
		sigwait(&s2, &sig);
		line("awake");
	} else if (n >= 3 && !memcmp(buf, "bye", 3)) {
		/* our side is done, theirs goes on */
		send(c->fd, "bye", 3, MSG_NOSIGNAL);
		shutdown(c->fd, SHUT_WR);
		c->shut = 1;
		line("shut down");
	} else if (n > 0 && c->shut) {
		printf("late %.*s\n", (int)n, buf);
		fflush(stdout);
	} else if (n > 0)
		send(c->fd, buf, n, MSG_NOSIGNAL);
	else if (n == 0 || errno != EAGAIN) {
		close(c->fd);
		c->fd = -1;
	}
}

static void udp_echo(void)
{
	struct sockaddr_storage from;
	socklen_t fl = sizeof(from);
	char buf[2048];
	ssize_t n;

	while ((n = recvfrom(ufd, buf, sizeof(buf), 0, (struct sockaddr *)&from, &fl)) > 0) {
		sendto(ufd, buf, n, 0, (struct sockaddr *)&from, fl);
		if (filled)
			say("udp %d", ++nudp);
		fl = sizeof(from);
	}
}

static void on_accept(void)
{
	int fd;

	while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
		if (fd >= MAXFD)
			die("too many fds");
		memset(&conns[fd], 0, sizeof(conns[fd]));
		conns[fd].fd = fd;
		conns[fd].idx = nstream < want ? nstream++ : -1;
		nconn++;
		if (conns[fd].idx >= 0 && nstream == want)
			say("accepted %d", nstream);
	}
}

static void on_signal(void)
{
	struct signalfd_siginfo si;

	if (read(sfd, &si, sizeof(si)) != sizeof(si) || filled)
		return;
	for (int fd = 0; fd < MAXFD; fd++)
		if (conns[fd].fd == fd && conns[fd].idx >= 0)
			pump_out(&conns[fd]);
	opts_snapshot();
	filled = 1;
	line("filled");
}

int main(int argc, char **argv)
{
	struct pollfd p[MAXFD + 4];
	sigset_t set;

	if (argc < 5) /* more: a tag for the test to find it by */
		return 2;
	for (int i = 0; i < MAXFD; i++)
		conns[i].fd = -1;
	want = atoi(argv[4]);
	lfd = make_listener(argv[1], argv[2], atoi(argv[3]));
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sigdelset(&set, SIGUSR2);
	sfd = signalfd(-1, &set, SFD_NONBLOCK);
	line("listening");
	for (;;) {
		int n = 0;

		p[n++] = (struct pollfd){lfd, POLLIN, 0};
		p[n++] = (struct pollfd){sfd, POLLIN, 0};
		p[n++] = (struct pollfd){ufd, filled && !running ? 0 : POLLIN, 0};
		p[n++] = (struct pollfd){cfd, POLLIN, 0};
		for (int fd = 0; fd < MAXFD; fd++) {
			struct conn *c = &conns[fd];
			short ev;

			if (c->fd != fd)
				continue;
			if (c->idx < 0)
				ev = POLLIN;
			else if (!filled)
				ev = 0; /* until SIGUSR1: nothing read or written */
			else if (!running)
				ev = POLLOUT;
			else
				ev = POLLIN | (c->wpos < NET_S2C_TOTAL ? POLLOUT : 0);
			p[n++] = (struct pollfd){fd, ev, 0};
		}
		if (poll(p, n, -1) < 0 && errno != EINTR)
			die("poll");
		for (int i = 0; i < n; i++) {
			struct conn *c = &conns[p[i].fd];

			if (!p[i].revents)
				continue;
			if (p[i].fd == lfd)
				on_accept();
			else if (p[i].fd == sfd)
				on_signal();
			else if (p[i].fd == ufd)
				udp_echo();
			else if (p[i].fd == cfd) {
				char b[16];

				if (recv(cfd, b, sizeof(b), 0) == 4 && !memcmp(b, "self", 4) &&
				    !self_back++)
					line("udp connected ok");
			} else if (c->fd < 0)
				continue;
			else if (c->idx < 0)
				echo(c);
			else {
				if (!running) {
					/* the peer reads again: we were restored */
					running = 1;
					opts_compare();
					/* the connected UDP socket reaches the bound one */
					send(cfd, "self", 4, 0);
				}
				pump_out(c);
				pump_in(c);
			}
		}
	}
}
