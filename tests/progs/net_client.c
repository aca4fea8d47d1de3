/*
 * net_client - the peer of net_server in the socket tests.
 *
 * usage: net_client ADDR PORT NCONN
 * Opens NCONN connections to ADDR:PORT and writes its pattern
 * (net_pattern.h) on each until EAGAIN, reading nothing: "sent".
 * At the first SIGUSR1 it sends 5 datagrams to the server's UDP socket
 * (ADDR:PORT): "udp sent".  At the second it reads and checks the server's
 * whole stream on every connection and writes the rest of its own, then
 * shuts down its side and waits for the server's close: "streams ok"; then
 * one new connection must echo "ping": "echo ok"; then one more datagram
 * must come back: "udp replies N" (N: every reply, so 1 when the 5 queued
 * at the freeze were dropped) and "client ok".  "ERROR ..." and exit 1 on a
 * mismatch, an early EOF or 30 s without progress.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net_pattern.h"

struct conn {
	int fd;
	uint64_t wpos, rpos;
	int shut, done;
};

static struct conn c[NET_MAX_CONN];
static struct sockaddr_storage sa;
static socklen_t sl;

static void fail(const char *what)
{
	printf("ERROR %s: %s\n", what, strerror(errno));
	fflush(stdout);
	exit(1);
}

static void line(const char *s)
{
	printf("%s\n", s);
	fflush(stdout);
}

static int dial(void)
{
	int fd = socket(sa.ss_family, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sl) < 0)
		fail("connect");
	return fd;
}

/* Both streams complete on our side: our EOF tells the server to close. */
static void maybe_shut(int i)
{
	if (!c[i].shut && c[i].rpos == NET_S2C_TOTAL && c[i].wpos == NET_C2S_TOTAL) {
		shutdown(c[i].fd, SHUT_WR);
		c[i].shut = 1;
	}
}

static void pump_out(int i)
{
	uint8_t buf[16384];

	while (c[i].wpos < NET_C2S_TOTAL) {
		size_t n = NET_C2S_TOTAL - c[i].wpos;
		ssize_t w;

		if (n > sizeof(buf))
			n = sizeof(buf);
		for (size_t k = 0; k < n; k++)
			buf[k] = net_byte(1, i, c[i].wpos + k);
		w = send(c[i].fd, buf, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (w < 0 && errno == EAGAIN)
			return;
		if (w < 0)
			fail("send");
		c[i].wpos += w;
	}
	maybe_shut(i);
}

static void pump_in(int i)
{
	uint8_t buf[16384];
	ssize_t n;

	while ((n = recv(c[i].fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
		for (ssize_t k = 0; k < n; k++)
			if (buf[k] != net_byte(0, i, c[i].rpos + k)) {
				printf("ERROR conn %d byte %llu\n", i,
				       (unsigned long long)(c[i].rpos + k));
				fflush(stdout);
				exit(1);
			}
		c[i].rpos += n;
	}
	maybe_shut(i);
	if (n == 0) {
		if (c[i].rpos != NET_S2C_TOTAL || !c[i].shut) {
			printf("ERROR conn %d eof at %llu\n", i, (unsigned long long)c[i].rpos);
			fflush(stdout);
			exit(1);
		}
		close(c[i].fd);
		c[i].done = 1;
	} else if (errno != EAGAIN) {
		fail("recv");
	}
}

static void streams(int nconn)
{
	for (;;) {
		struct pollfd p[NET_MAX_CONN];
		int n = 0, idx[NET_MAX_CONN];

		for (int i = 0; i < nconn; i++) {
			if (c[i].done)
				continue;
			idx[n] = i;
			p[n++] = (struct pollfd){
				c[i].fd, POLLIN | (c[i].wpos < NET_C2S_TOTAL ? POLLOUT : 0), 0};
		}
		if (!n)
			break;
		if (poll(p, n, 30000) <= 0)
			fail("timeout waiting for the server");
		for (int k = 0; k < n; k++)
			if (p[k].revents) {
				pump_out(idx[k]);
				pump_in(idx[k]);
			}
	}
	line("streams ok");
}

static void echo_and_udp(int ufd)
{
	struct pollfd p;
	char buf[64];
	int fd = dial(), replies = 0;

	if (send(fd, "ping", 4, 0) != 4)
		fail("ping");
	p = (struct pollfd){fd, POLLIN, 0};
	if (poll(&p, 1, 30000) <= 0 || recv(fd, buf, sizeof(buf), 0) != 4 || memcmp(buf, "ping", 4))
		fail("echo");
	close(fd);
	line("echo ok");
	if (sendto(ufd, "u", 1, 0, (struct sockaddr *)&sa, sl) != 1)
		fail("udp send");
	p = (struct pollfd){ufd, POLLIN, 0};
	for (;;) {
		if (poll(&p, 1, replies ? 200 : 30000) <= 0)
			break;
		if (recv(ufd, buf, sizeof(buf), 0) > 0)
			replies++;
	}
	if (!replies)
		fail("no udp reply");
	printf("udp replies %d\n", replies);
	line("client ok");
}

int main(int argc, char **argv)
{
	sigset_t set;
	int nconn, sig, ufd;

	if (argc != 4)
		return 2;
	memset(&sa, 0, sizeof(sa));
	if (strchr(argv[1], ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&sa;

		a->sin6_family = AF_INET6;
		a->sin6_port = htons(atoi(argv[2]));
		inet_pton(AF_INET6, argv[1], &a->sin6_addr);
		sl = sizeof(*a);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&sa;

		a->sin_family = AF_INET;
		a->sin_port = htons(atoi(argv[2]));
		inet_pton(AF_INET, argv[1], &a->sin_addr);
		sl = sizeof(*a);
	}
	nconn = atoi(argv[3]);
	if (nconn < 1 || nconn > NET_MAX_CONN)
		return 2;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (int i = 0; i < nconn; i++) {
		c[i].fd = dial();
		pump_out(i);
	}
	line("sent");
	ufd = socket(sa.ss_family, SOCK_DGRAM, 0);
	if (ufd < 0)
		fail("udp socket");
	sigwait(&set, &sig);
	for (int i = 0; i < 5; i++)
		if (sendto(ufd, "q", 1, 0, (struct sockaddr *)&sa, sl) != 1)
			fail("udp send");
	line("udp sent");
	sigwait(&set, &sig);
	streams(nconn);
	echo_and_udp(ufd);
	return 0;
}
