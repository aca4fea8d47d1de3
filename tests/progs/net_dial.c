/*
 * net_dial - one TCP connection for the socket tests.
 *
 * usage: net_dial synsent|nap|echo|halfclose|peerclose ADDR PORT
 *  synsent: a non-blocking connect() (the test drops the SYNs, so it stays in
 *           SYN_SENT): "connecting", then waits;
 *  nap:     connects and sends "nap" (net_server stops accepting until its
 *           SIGUSR2): "napped", then waits;
 *  echo:    connects: "connected"; at SIGUSR1 sends "ping" and expects it
 *           back within 30 s: "echo ok in MS ms" (from the send to the
 *           answer) and exit 0, else "ERROR" and exit 1;
 *  halfclose: connects: "connected"; at SIGUSR1 sends "hello" and shuts down
 *           its side: "shut"; then expects "hello" back and the server's
 *           EOF within 30 s: "halfclose ok";
 *  peerclose: connects: "connected"; at SIGUSR1 sends "bye" and expects "bye"
 *           and the server's EOF: "eof"; at the next SIGUSR1 sends "more"
 *           and shuts down its side: "more sent", then expects nothing but
 *           the end: "peerclose ok".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void line(const char *s)
{
	printf("%s\n", s);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int syn, fd, sig;
	struct timespec t0, t1;
	struct pollfd p;
	sigset_t set;
	char buf[8];

	if (argc != 4)
		return 2;
	syn = !strcmp(argv[1], "synsent");
	a.sin_port = htons(atoi(argv[3]));
	inet_pton(AF_INET, argv[2], &a.sin_addr);
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	fd = socket(AF_INET, SOCK_STREAM | (syn ? SOCK_NONBLOCK : 0), 0);
	if (fd < 0 || (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS))
		return 1;
	if (syn || !strcmp(argv[1], "nap")) {
		if (!syn && send(fd, "nap", 3, 0) != 3)
			return 1;
		line(syn ? "connecting" : "napped");
		for (;;)
			pause();
	}
	line("connected");
	sigwait(&set, &sig);
	if (!strcmp(argv[1], "peerclose")) {
		char got[16];
		size_t n = 0;
		ssize_t r = -1;

		if (send(fd, "bye", 3, 0) != 3)
			return 1;
		p = (struct pollfd){fd, POLLIN, 0};
		while (poll(&p, 1, 30000) > 0 && (r = recv(fd, got + n, sizeof(got) - n, 0)) > 0)
			n += r;
		if (n != 3 || memcmp(got, "bye", 3) || r != 0) {
			line("ERROR no bye and EOF");
			return 1;
		}
		line("eof");
		sigwait(&set, &sig);
		if (send(fd, "more", 4, MSG_NOSIGNAL) != 4 || shutdown(fd, SHUT_WR) < 0) {
			line("ERROR cannot send after the server's EOF");
			return 1;
		}
		line("more sent");
		if (poll(&p, 1, 30000) <= 0 || recv(fd, got, sizeof(got), 0) != 0) {
			line("ERROR no end");
			return 1;
		}
		line("peerclose ok");
		return 0;
	}
	if (!strcmp(argv[1], "halfclose")) {
		char got[16];
		size_t n = 0;
		ssize_t r = -1;

		if (send(fd, "hello", 5, 0) != 5 || shutdown(fd, SHUT_WR) < 0)
			return 1;
		line("shut");
		p = (struct pollfd){fd, POLLIN, 0};
		while (poll(&p, 1, 30000) > 0 && (r = recv(fd, got + n, sizeof(got) - n, 0)) > 0)
			n += r;
		if (n != 5 || memcmp(got, "hello", 5) || r != 0) {
			line("ERROR no echo and EOF");
			return 1;
		}
		line("halfclose ok");
		return 0;
	}
	p = (struct pollfd){fd, POLLIN, 0};
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (send(fd, "ping", 4, 0) != 4 || poll(&p, 1, 30000) <= 0 || recv(fd, buf, 8, 0) != 4 ||
	    memcmp(buf, "ping", 4)) {
		line("ERROR no echo");
		return 1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("echo ok in %.1f ms\n",
	       (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
	fflush(stdout);
	return 0;
}
