/*
 * procread.c - the small /proc readers the dump, the precheck and the fd
 * kinds share: a whole file, one "Key: value" field, a link, the rlimits
 * (/proc/PID/limits) and the time-namespace offsets.  A file that is gone
 * reads as -ESRCH: under /proc that means the process exited.
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore.h"
#include "restore/restore_int.h"

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

/* The last number of the "NSpid:" field of @text (the innermost namespace's), or -1. */
long rst_status_last_nspid(const char *text)
{
	const char *f = rst_status_field(text, "NSpid");
	long last = -1;

	while (f && *f && *f != '\n') {
		char *end;
		long v = strtol(f, &end, 10);

		if (end == f)
			break;
		last = v;
		f = end;
	}
	return last;
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

/*
 * The rlimits of @pid from /proc/PID/limits, which anyone who may read the
 * process's /proc may read: prlimit(2) on a process of another uid needs
 * CAP_SYS_RESOURCE, which root lacks in some containers.  The kernel prints
 * one header line, then one line per resource in resource order: the name
 * padded to 25 columns and a space, then the soft and the hard limit, each a
 * number or "unlimited".
 */
int rst_parse_limits(pid_t pid, const char *text, Haul__Img__Rlimit *rl)
{
	const char *line = strchr(text, '\n');
	int res;

	for (res = 0; res < RLIM_NLIMITS && line && line[1]; res++) {
		char soft[32], hard[32];
		uint64_t v[2];

		line++;
		if (strcspn(line, "\n") < 27 || sscanf(line + 26, "%31s %31s", soft, hard) != 2)
			break;
		for (int k = 0; k < 2; k++) {
			const char *w = k ? hard : soft;
			char *end;

			if (!strcmp(w, "unlimited")) {
				v[k] = RLIM_INFINITY;
				continue;
			}
			errno = 0;
			v[k] = strtoull(w, &end, 10);
			if (errno || *end)
				goto bad;
		}
		haul__img__rlimit__init(&rl[res]);
		rl[res].resource = res;
		rl[res].cur = v[0];
		rl[res].max = v[1];
		line = strchr(line, '\n');
	}
	if (res == RLIM_NLIMITS)
		return 0;
bad:
	pr_err("cannot parse line %d of /proc/%d/limits; is this a Linux kernel /proc?", res + 2,
	       (int)pid);
	return -EBADMSG;
}

int rst_timens_offsets(pid_t pid, int64_t *mono, int64_t *boot)
{
	long long msec = 0, mnsec = 0, bsec = 0, bnsec = 0;
	char *text = NULL;
	int ret;

	/*
	 * timens_offsets shows the namespace its children will get; after an
	 * unshare(CLONE_NEWTIME) with no fork since, that is not its own.
	 */
	if (rst_attr_timens_pending(pid))
		return rst_attr_active_timens(pid, mono, boot);
	*mono = *boot = 0;
	ret = rst_read_proc(pid, "timens_offsets", &text, NULL);
	if (ret)
		return ret;
	for (char *l = text; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
		if (!strncmp(l, "monotonic", 9))
			sscanf(l + 9, "%lld %lld", &msec, &mnsec);
		else if (!strncmp(l, "boottime", 8))
			sscanf(l + 8, "%lld %lld", &bsec, &bnsec);
	}
	free(text);
	*mono = msec * 1000000000LL + mnsec;
	*boot = bsec * 1000000000LL + bnsec;
	return 0;
}

char rst_proc_state(pid_t pid)
{
	char *status = NULL, c = 0;
	const char *f;

	if (!rst_read_proc(pid, "status", &status, NULL)) {
		f = rst_status_field(status, "State");
		c = f ? f[strspn(f, " \t")] : 0;
	}
	free(status);
	return c;
}
