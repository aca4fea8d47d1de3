/*
 * srvload_file.c - HTTP/1.1 keep-alive load client for a static file server
 * (nginx in tests/extra/srv_nginx.sh): each connection sends GET /f/K.bin for
 * K cycling through --keys files and compares every body, byte for byte,
 * with the file's known content: load_fill_bytes(load_seed(K, SIZE, 0)) of
 * --value-size bytes.  A reply other than 200, or without Content-Length, is
 * a protocol error; a body of another length or content is a wrong value.
 *
 * `srvload_file --write-files DIR --keys N --value-size SIZE` writes those
 * files as DIR/f/K.bin and exits: the server's document root then holds
 * exactly what the clients expect.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "load.h"

struct file_conn {
	uint64_t sent; /* requests sent on this connection */
	int key;       /* the file the request in flight asks for */
	char *want;    /* its content, --value-size bytes */
};

static void file_content(int key, int size, char *buf)
{
	load_fill_bytes(load_seed((uint64_t)key, (uint64_t)size, 0), buf, (size_t)size);
}

static int file_init(struct load_conn *c, const struct load_opts *o)
{
	struct file_conn *f = calloc(1, sizeof(*f));

	if (!f)
		return -ENOMEM;
	f->want = malloc((size_t)o->value_size);
	if (!f->want) {
		free(f);
		return -ENOMEM;
	}
	c->priv = f;
	return 0;
}

static void file_reset(struct load_conn *c)
{
	struct file_conn *f = c->priv;

	f->sent = 0;
}

static void file_free(struct load_conn *c)
{
	struct file_conn *f = c->priv;

	if (f)
		free(f->want);
	free(f);
	c->priv = NULL;
}

static int file_request(struct load_conn *c, const struct load_opts *o)
{
	struct file_conn *f = c->priv;

	if (c->finishing)
		return 1;
	/* connections start at different files and walk all of them */
	f->key = (int)((c->id * 7 + f->sent) % (uint64_t)o->keys);
	f->sent++;
	file_content(f->key, o->value_size, f->want);
	return load_outf(c, "GET /f/%d.bin HTTP/1.1\r\nHost: srv\r\nConnection: keep-alive\r\n\r\n",
			 f->key);
}

/* The value of header @name in [p, end), or NULL. */
static const char *header(const char *p, const char *end, const char *name)
{
	size_t n = strlen(name);

	for (; p && p < end; p = memchr(p, '\n', (size_t)(end - p))) {
		if (*p == '\n')
			p++;
		if ((size_t)(end - p) > n && !strncasecmp(p, name, n))
			return p + n;
	}
	return NULL;
}

static long file_response(struct load_conn *c, const struct load_opts *o, bool *wrong)
{
	struct file_conn *f = c->priv;
	const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
	const char *len;
	size_t hdr, body;

	if (!end)
		return c->in_len > 65536 ? -EPROTO : 0;
	hdr = (size_t)(end - c->in) + 4;
	if (hdr < 12 || memcmp(c->in, "HTTP/1.1 200", 12)) {
		fprintf(stderr, "load: connection %d: GET /f/%d.bin: reply %.12s\n", c->id, f->key,
			c->in);
		return -EPROTO;
	}
	len = header(c->in, end, "content-length:");
	if (!len)
		return -EPROTO;
	body = strtoul(len, NULL, 10);
	if (body > LOAD_MAX_VALUE)
		return -EPROTO;
	if (c->in_len < hdr + body)
		return 0;
	if (body != (size_t)o->value_size || memcmp(c->in + hdr, f->want, body)) {
		*wrong = true;
		fprintf(stderr, "load: connection %d: GET /f/%d.bin: body of %zu bytes differs\n",
			c->id, f->key, body);
	}
	return (long)(hdr + body);
}

/* --write-files DIR --keys N --value-size SIZE: DIR/f/K.bin for K < N. */
static int write_files(const char *dir, int keys, int size)
{
	char path[4096], *buf;
	int fd, ret = 0;

	if (keys <= 0 || size <= 0 || size > LOAD_MAX_VALUE) {
		fprintf(stderr, "srvload_file: --keys and --value-size must be positive\n");
		return 2;
	}
	snprintf(path, sizeof(path), "%s/f", dir);
	if (mkdir(path, 0755) && errno != EEXIST) {
		fprintf(stderr, "srvload_file: cannot make %s: %s\n", path, strerror(errno));
		return 1;
	}
	buf = malloc((size_t)size);
	if (!buf)
		return 1;
	for (int k = 0; k < keys && !ret; k++) {
		snprintf(path, sizeof(path), "%s/f/%d.bin", dir, k);
		file_content(k, size, buf);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0 || write(fd, buf, (size_t)size) != size) {
			fprintf(stderr, "srvload_file: cannot write %s: %s\n", path,
				strerror(errno));
			ret = 1;
		}
		if (fd >= 0)
			close(fd);
	}
	free(buf);
	return ret;
}

static const struct load_proto file_proto = {
	.name = "file",
	.default_port = 8080,
	.conn_init = file_init,
	.conn_reset = file_reset,
	.conn_free = file_free,
	.request = file_request,
	.response = file_response,
};

int main(int argc, char **argv)
{
	int keys = 64, size = 100;

	if (argc >= 3 && !strcmp(argv[1], "--write-files")) {
		for (int i = 3; i + 1 < argc; i += 2) {
			if (!strcmp(argv[i], "--keys"))
				keys = atoi(argv[i + 1]);
			else if (!strcmp(argv[i], "--value-size"))
				size = atoi(argv[i + 1]);
		}
		return write_files(argv[2], keys, size);
	}
	return load_main(&file_proto, argc, argv);
}
