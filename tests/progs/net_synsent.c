/*
 * net_synsent - a TCP socket stuck in SYN_SENT, for the refusal test.
 *
 * usage: net_synsent ADDR PORT
 * Starts a non-blocking connect() to ADDR:PORT (the test drops the SYNs),
 * prints "connecting" and waits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int fd;

	if (argc != 3)
		return 2;
	a.sin_port = htons(atoi(argv[2]));
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (fd < 0 || (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno != EINPROGRESS))
		return 1;
	printf("connecting\n");
	fflush(stdout);
	for (;;)
		pause();
}
