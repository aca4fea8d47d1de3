/*
 * procread.c - the small /proc readers the dump, the precheck and the fd
 * kinds share: a whole file, one "Key: value" field, a link.  A file that
 * is gone reads as -ESRCH: under /proc that means the process exited.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restore/fd_int.h"

int rst_read_file(const char *path, char **out, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf = malloc(cap + 1);
	int fd, ret = 0;

	if (!buf)
		return -ENOMEM;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		free(buf);
		return errno == ENOENT ? -ESRCH : -errno;
	}
	for (;;) {
		ssize_t r;

		if (n == cap) {
			char *nb = realloc(buf, cap * 2 + 1);

			if (!nb) {
				ret = -ENOMEM;
				break;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0) {
			ret = -errno;
			break;
		}
		if (r == 0)
			break;
		n += r;
	}
	close(fd);
	if (ret) {
		free(buf);
		return ret;
	}
	buf[n] = '\0';
	*out = buf;
	if (len)
		*len = n;
	return 0;
}

int rst_read_proc(pid_t pid, const char *name, char **out, size_t *len)
{
	char path[96];

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	return rst_read_file(path, out, len);
}

/* The value after "@key:" in a "Key:\tvalue" file such as status, or NULL. */
const char *rst_status_field(const char *text, const char *key)
{
	size_t kl = strlen(key);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (!strncmp(p, key, kl) && p[kl] == ':')
			return p + kl + 1;
	return NULL;
}

int rst_read_link(const char *path, char *buf, size_t len)
{
	ssize_t n = readlink(path, buf, len - 1);

	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return 0;
}

bool rst_strip_deleted(char *path)
{
	static const char del[] = " (deleted)";
	size_t l = strlen(path), dl = sizeof(del) - 1;

	if (l > dl && !strcmp(path + l - dl, del)) {
		path[l - dl] = '\0';
		return true;
	}
	return false;
}

/* The open flags fdinfo shows for an fd (O_CLOEXEC included). */
unsigned long rst_fdinfo_flags(const char *text)
{
	const char *f = rst_status_field(text, "flags");

	return f ? strtoul(f, NULL, 8) : 0;
}
