/*
 * ctr_httpd - the server inside the container that tests/extra/ctr_migrate.sh
 * and bench/ctr/run.sh migrate: the HTTP/1.1 keep-alive protocol of
 * build/progs/srvload_http (bench/servers/srvload_http.c), in C and linked
 * static so that it runs in a busybox rootfs.
 *
 * usage: ctr_httpd ADDR PORT MIB FILE
 * Each connection keeps its own request counter: GET PATH is answered
 * "path=PATH n=N h=H\n" (N: requests answered on this connection, H:
 * FNV-1a 32 of PATH in hex), so a client notices lost per-connection
 * state.  MIB MiB of memory are filled at start and one page of it is
 * rewritten per request (pre-copy has something to converge on).  Every
 * 100 requests, and once listening, FILE (in the rootfs) is rewritten with
 * "TOKEN SERVED": TOKEN drawn at start and kept only in memory, SERVED the
 * requests answered so far; so a restart shows as another token.  One
 * thread, poll(2).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem; the tests build it alone, with gcc -static */
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONN 256

struct conn {
	int fd;
	unsigned long answered;
	char in[8192];
	size_t len;
};

static struct conn conns[MAX_CONN];
static unsigned long served, token;
static char *mem;
static size_t mem_len;

static unsigned fnv1a(const char *s, size_t n)
{
	unsigned h = 2166136261u;

	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static void note(const char *file)
{
	char tmp[4096], line[64];
	int fd, n;

	snprintf(tmp, sizeof(tmp), "%s.tmp", file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return;
	n = snprintf(line, sizeof(line), "%lu %lu\n", token, served);
	if (write(fd, line, (size_t)n) == n)
		rename(tmp, file);
	close(fd);
}

/* Answer every whole request of @c.  0, or -1 to close it. */
static int serve(struct conn *c, const char *file)
{
	char *end;

	while ((end = memmem(c->in, c->len, "\r\n\r\n", 4))) {
		size_t used = (size_t)(end - c->in) + 4, plen;
		char path[256], body[400], out[600];
		char *sp = memchr(c->in, ' ', used), *sp2;
		int bl, ol;

		if (!sp || strncmp(c->in, "GET ", 4))
			return -1;
		sp2 = memchr(sp + 1, ' ', used - (size_t)(sp + 1 - c->in));
		if (!sp2 || (plen = (size_t)(sp2 - sp - 1)) >= sizeof(path))
			return -1;
		memcpy(path, sp + 1, plen);
		path[plen] = '\0';
		c->answered++;
		bl = snprintf(body, sizeof(body), "path=%s n=%lu h=%08x\n", path, c->answered,
			      fnv1a(path, plen));
		ol = snprintf(out, sizeof(out),
			      "HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: keep-alive"
			      "\r\n\r\n%s",
			      bl, body);
		if (write(c->fd, out, (size_t)ol) != ol)
			return -1;
		memmove(c->in, c->in + used, c->len - used);
		c->len -= used;
		mem[(served * 4096) % mem_len] = (char)served;
		if (++served % 100 == 0)
			note(file);
	}
	return c->len == sizeof(c->in) ? -1 : 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	struct pollfd pfd[MAX_CONN + 1];
	int lfd;

	if (argc != 5) {
		fprintf(stderr, "usage: ctr_httpd ADDR PORT MIB FILE\n");
		return 2;
	}
	mem_len = (size_t)atol(argv[3]) << 20;
	if (!mem_len)
		mem_len = 4096;
	mem = malloc(mem_len);
	if (!mem)
		return 1;
	for (size_t i = 0; i < mem_len; i += 4096)
		mem[i] = (char)i;
	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	token = (unsigned long)rand() * 65536ul + (unsigned long)rand() % 65536;
	sa.sin_port = htons((unsigned short)atoi(argv[2]));
	if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1)
		return 2;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &(int){1}, sizeof(int));
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0) {
		perror("ctr_httpd: listen");
		return 1;
	}
	for (int i = 0; i < MAX_CONN; i++)
		conns[i].fd = -1;
	note(argv[4]);
	for (;;) {
		int n = 0;

		pfd[n++] = (struct pollfd){.fd = lfd, .events = POLLIN};
		for (int i = 0; i < MAX_CONN; i++)
			pfd[n++] = (struct pollfd){.fd = conns[i].fd, .events = POLLIN};
		if (poll(pfd, (nfds_t)n, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (pfd[0].revents & POLLIN) {
			int fd = accept(lfd, NULL, NULL);

			for (int i = 0; fd >= 0 && i < MAX_CONN; i++)
				if (conns[i].fd < 0) {
					conns[i] = (struct conn){.fd = fd};
					fd = -1;
				}
			if (fd >= 0)
				close(fd);
		}
		for (int i = 0; i < MAX_CONN; i++) {
			struct conn *c = &conns[i];
			ssize_t r;

			if (c->fd < 0 || !(pfd[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			r = read(c->fd, c->in + c->len, sizeof(c->in) - c->len);
			if (r > 0) {
				c->len += (size_t)r;
				if (!serve(c, argv[4]))
					continue;
			} else if (r < 0 && errno == EINTR) {
				continue;
			}
			close(c->fd);
			c->fd = -1;
		}
	}
}
