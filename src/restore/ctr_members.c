/*
 * ctr_members.c - the processes of a container's namespaces, found by a
 * walk over /proc (ns_ctr.c, pidns_ctr.c, joinns_ctr.c).
 *
 * A namespace is told by the stat(2) of /proc/PID/ns/NAME (device and
 * inode, as the kernel's nsfs gives them).  The walk reads /proc once and
 * compares each process's namespaces with those of the container's
 * process; what a caller does with a member (refuse it, look at its maps)
 * is its callback.  A process that ends during the walk drops out: its
 * /proc entries are gone.
 *
 * A member "descends" from the container's process when the chain of its
 * parents (the ppid of /proc/PID/stat, host pids) reaches it; a `runc
 * exec` process does not (its parent is the engine's, outside), nor does
 * a zombie whose parent outside has not reaped it yet, which is not
 * counted: there is no process left to carry.
 *
 * A namespace the engine names as its own (CRIU's external NS[INODE]:KEY)
 * is told the same way: by the inode of the container process's one.
 */
#define LOG_PREFIX "ctr: "
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "restore/ctr.h"
#include "restore/ctr_int.h"

/* The parent of @pid (host PIDs), 0 when it cannot be read; its state letter in *@state. */
static pid_t parent_of(pid_t pid, char *state)
{
	char path[64], buf[512], *rp;
	ssize_t n;
	int fd, ppid = 0;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	/* the name may hold spaces and parentheses: the state follows the last ')' */
	rp = strrchr(buf, ')');
	if (!rp || sscanf(rp + 1, " %c %d", state, &ppid) != 2)
		return 0;
	return ppid;
}

bool rst_ctr_in_ns(pid_t p, const char *ns, const struct stat *want)
{
	char path[64];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)p, ns);
	return stat(path, &st) == 0 && st.st_ino == want->st_ino && st.st_dev == want->st_dev;
}

int rst_ctr_walk_ns(pid_t pid, const char *const *ns, int (*fn)(pid_t p, void *arg), void *arg)
{
	struct stat want[RST_CTR_WALK_NS];
	struct dirent *d;
	size_t n = 0;
	int ret = 0;
	DIR *dir;

	for (; ns[n]; n++) {
		char path[64];

		if (n == RST_CTR_WALK_NS)
			return -EINVAL;
		snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, ns[n]);
		if (stat(path, &want[n]) < 0)
			return -errno;
	}
	dir = opendir("/proc");
	if (!dir)
		return -errno;
	while (!ret && (d = readdir(dir))) {
		pid_t p = atoi(d->d_name);
		size_t i = 0;

		if (p <= 0)
			continue;
		while (i < n && rst_ctr_in_ns(p, ns[i], &want[i]))
			i++;
		if (i == n)
			ret = fn(p, arg);
	}
	closedir(dir);
	return ret;
}

/* @p when it is a live process that does not descend from *@arg, else 0. */
static int stray(pid_t p, void *arg)
{
	pid_t pid = *(pid_t *)arg, up = p;
	char state = '?';
	int depth = 0;

	while (up > 1 && up != pid && depth++ < 4096)
		up = parent_of(up, &state);
	/* gone, or a zombie its parent outside has not reaped yet: no process to carry */
	return up != pid && parent_of(p, &state) > 0 && state != 'Z' ? p : 0;
}

pid_t rst_ctr_stray_member(pid_t pid, const char *const *ns)
{
	return rst_ctr_walk_ns(pid, ns, stray, &pid);
}

bool rst_ctr_ns_external(pid_t pid, const char *ns, const struct rst_ctr_ext *ext, size_t next)
{
	char path[64], key[48];
	struct stat st;

	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, ns);
	if (stat(path, &st) < 0)
		return false;
	snprintf(key, sizeof(key), "%s[%llu]", ns, (unsigned long long)st.st_ino);
	for (size_t i = 0; i < next; i++)
		if (ext[i].key && !strcmp(ext[i].key, key))
			return true;
	return false;
}
