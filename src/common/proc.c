/*
 * proc.c - small reads of another process's kernel state (see proc.h).
 *
 * /proc/PID/stat is "pid (comm) S ppid ...": comm is whatever the task set
 * with prctl(PR_SET_NAME), spaces and ')' included, so the fields are counted
 * from the last ')', never split from the start of the line.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "common/proc.h"

int haul_read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	if (n < 0) {
		n = -errno;
		close(fd);
		return (int)n;
	}
	close(fd);
	buf[n] = '\0';
	return (int)n;
}

int haul_proc_stat_field(pid_t pid, int field, char *state, unsigned long long *val)
{
	char path[64], buf[1024], *p;
	int n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	n = haul_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return n;
	if (n == 0)
		return -ESRCH;
	p = strrchr(buf, ')');
	if (!p || p[1] != ' ')
		return -EINVAL;
	p += 2;
	if (state)
		*state = *p;
	/* p is field 3 (state); walk to @field */
	for (int f = 3; f < field; f++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	if (val)
		*val = strtoull(p, NULL, 10);
	return 0;
}

/* struct pidfd_info up to exit_code (Linux 6.15 uapi; Debian 12's headers lack it) */
struct haul_pidfd_info {
	uint64_t mask, cgroupid;
	uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
	int32_t exit_code;
};
#define HAUL_PIDFD_INFO_EXIT (1ull << 3)
#define HAUL_PIDFD_GET_INFO  _IOWR(0xFF, 11, struct haul_pidfd_info)

int haul_pidfd_exit_status(int pidfd, int *wstatus)
{
	struct haul_pidfd_info info = {.mask = HAUL_PIDFD_INFO_EXIT};

	if (ioctl(pidfd, HAUL_PIDFD_GET_INFO, &info) || !(info.mask & HAUL_PIDFD_INFO_EXIT))
		return -1;
	*wstatus = info.exit_code;
	return 0;
}

int haul_proc_starttime(pid_t pid, unsigned long long *start)
{
	return haul_proc_stat_field(pid, 22, NULL, start);
}

int haul_proc_tids(pid_t pid, pid_t **out, size_t *n)
{
	struct dirent *de;
	pid_t *v = NULL;
	size_t k = 0, cap = 0;
	DIR *d;

	*out = NULL;
	*n = 0;
	d = haul_proc_opendir(pid, "task");
	if (!d)
		return errno == ENOENT ? -ESRCH : -errno;
	while ((de = readdir(d))) {
		pid_t tid = (pid_t)atoi(de->d_name);

		if (tid <= 0)
			continue;
		if (k == cap) {
			pid_t *nv = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof(*v));

			if (!nv) {
				free(v);
				closedir(d);
				return -ENOMEM;
			}
			v = nv;
		}
		v[k++] = tid;
	}
	closedir(d);
	*out = v;
	*n = k;
	return 0;
}

DIR *haul_proc_opendir(pid_t pid, const char *sub)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, sub);
	return opendir(path);
}
