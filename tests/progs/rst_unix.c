/*
 * rst_unix - a unix listener serving one echo per connection.
 *
 * usage: rst_unix MODE DIR   with MODE path-stream, path-seqpacket,
 *        abstract-stream or abstract-seqpacket
 * It listens (backlog 7) on DIR/sock, or on the abstract name DIR (a NUL
 * then DIR's bytes), creates DIR/ready, then serves: each connection it
 * accepts gets back "echo:" and the one message it sent.  Once DIR/stop
 * exists it prints "final ok served N" and exits 0; any failed call
 * prints "ERROR ..." and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static int fail(const char *what)
{
	printf("ERROR %s (errno %d)\n", what, errno);
	fflush(stdout);
	return 1;
}

int main(int argc, char **argv)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	char ready[200], stop[200], buf[128], reply[160];
	socklen_t sl;
	int s, fd, served = 0;

	if (argc != 3 || strlen(argv[2]) > 90)
		return 2;
	if (!strncmp(argv[1], "path-", 5)) {
		snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/sock", argv[2]);
		sl = offsetof(struct sockaddr_un, sun_path) + strlen(sun.sun_path) + 1;
	} else {
		memcpy(sun.sun_path + 1, argv[2], strlen(argv[2]));
		sl = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(argv[2]);
	}
	s = socket(AF_UNIX, strstr(argv[1], "seqpacket") ? SOCK_SEQPACKET : SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sun, sl) || listen(s, 7))
		return fail("listen");
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
	printf("final ok served %d\n", served);
	return 0;
}
