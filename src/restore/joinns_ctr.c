/*
 * joinns_ctr.c - a container's uts and IPC namespaces that the engine
 * makes it join (runc: a namespace "path" in config.json; podman pods
 * share their ipc and uts namespaces so), as CRIU's join_ns.
 *
 * runc says nothing about such namespaces at dump; at restore it names
 * them with join_ns {ns, ns_file}.  So:
 *  - dump: a uts or IPC namespace of the container that a process outside
 *    the container (another PID namespace) is in too is not the
 *    container's own.  Its hostname is recorded as usual (CRIU dumps it
 *    too); its SysV objects and POSIX queues belong to whoever holds the
 *    namespace and are neither refused nor carried (Container.ipc_shared),
 *    but a process of the container that maps a segment there is refused
 *    by name (its restore would make the segment anew, in an IPC
 *    namespace of its own when the id is taken);
 *  - restore: a join_ns of uts or ipc is joined by the restore helper
 *    (setns) instead of unsharing one.  CRIU (criu/cr-restore.c,
 *    namespaces.c) joins in the root task after cloning it and still
 *    runs prepare_utsns and prepare_ipc_ns there: the dumped hostname and
 *    domainname are written into the joined namespace, and so is done
 *    here (pid 1 sets them as for a new one).  CRIU also recreates the
 *    dumped IPC objects there (IPC_CREAT | IPC_EXCL with the old ids: it
 *    fails when the holder still has them); haul carries no IPC objects,
 *    so the joined namespace keeps its own, which are the holder's.  An
 *    IPC namespace that was shared at dump needs a join_ns ipc at
 *    restore: an empty new one would silently lose the objects the
 *    container used there.
 * The join is refused at prepare, before anything is made, when the path
 * is not a namespace of that kind or the container has a user namespace
 * (the helper, then inside a user namespace of its own, could not enter a
 * namespace the engine's user namespace owns).
 */
#define LOG_PREFIX "ctr: "
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/ctr.h"
#include "restore/ctr_int.h"

/* The kinds a join_ns may name, with where their path goes in struct rst_ctr. */
static const struct {
	const char *ns;
	int flag;
	size_t off;
} joinable[] = {
	{"uts", CLONE_NEWUTS, offsetof(struct rst_ctr, utsns)},
	{"ipc", CLONE_NEWIPC, offsetof(struct rst_ctr, ipcns)},
};

bool rst_ctr_join_kind(const char *ns)
{
	for (size_t i = 0; i < sizeof(joinable) / sizeof(joinable[0]); i++)
		if (!strcmp(joinable[i].ns, ns))
			return true;
	return false;
}

/* @p when it is outside the PID namespace *@arg (the container's), else 0. */
static int outside_pidns(pid_t p, void *arg)
{
	return rst_ctr_in_ns(p, "pid", arg) ? 0 : p;
}

pid_t rst_ctr_ns_shared_outside(pid_t pid, const char *ns)
{
	const char *const which[] = {ns, NULL};
	struct stat pidns;
	char path[64];
	pid_t found;

	snprintf(path, sizeof(path), "/proc/%d/ns/pid", (int)pid);
	if (stat(path, &pidns) < 0)
		return 0;
	found = rst_ctr_walk_ns(pid, which, outside_pidns, &pidns);
	return found > 0 ? found : 0;
}

/* What is refused of a process of the container's PID namespace. */
struct ipc_member {
	pid_t pid;
	char *why;
	size_t wl;
};

/* A SysV segment that process @p of the container maps: refused (-EOPNOTSUPP). */
static int maps_sysv(pid_t p, void *arg)
{
	const struct ipc_member *m = arg;
	char path[64], line[512];
	int ret = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)p);
	f = fopen(path, "re");
	while (f && !ret && fgets(line, sizeof(line), f)) {
		char *sysv = strstr(line, " /SYSV");

		if (!sysv)
			continue;
		sysv[strcspn(sysv, "\n")] = '\0';
		snprintf(m->why, m->wl,
			 "pid %d of the container of pid %d maps the SysV segment%s of an IPC "
			 "namespace shared with a process outside the container: the segment is "
			 "the holder's, not carried; detach it (shmdt) and checkpoint again",
			 (int)p, (int)m->pid, sysv);
		ret = -EOPNOTSUPP;
	}
	if (f)
		fclose(f);
	return ret;
}

int rst_ctr_shared_ipc_check(pid_t pid, char *why, size_t wl)
{
	static const char *const ns[] = {"pid", NULL};
	struct ipc_member m = {pid, why, wl};

	return rst_ctr_walk_ns(pid, ns, maps_sysv, &m);
}

/* Whether @path opens as a namespace of type @flag (NS_GET_NSTYPE). 0 or -errno. */
static int ns_file_is(const char *path, int flag)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), type;

	if (fd < 0)
		return -errno;
	type = ioctl(fd, NS_GET_NSTYPE);
	close(fd);
	if (type < 0)
		return errno == ENOTTY ? -EINVAL : -errno;
	return type == flag ? 0 : -EINVAL;
}

int rst_ctr_prepare_joins(const Haul__Ctr__Container *c, const struct rst_ctr_ext *ext, size_t next,
			  struct rst_ctr *out, char *why, size_t wl)
{
	const size_t plen = strlen(RST_CTR_JOIN_KEY);
	bool ipc_joined = false;

	for (size_t i = 0; i < next; i++) {
		const char *ns;
		size_t k;
		int ret;

		if (!ext[i].key || strncmp(ext[i].key, RST_CTR_JOIN_KEY, plen))
			continue;
		ns = ext[i].key + plen;
		for (k = 0; k < sizeof(joinable) / sizeof(joinable[0]); k++)
			if (!strcmp(joinable[k].ns, ns))
				break;
		if (k == sizeof(joinable) / sizeof(joinable[0]) || !ext[i].value ||
		    ext[i].value[0] != '/' || strlen(ext[i].value) >= PATH_MAX) {
			snprintf(why, wl,
				 "join_ns %s '%s' is not supported: only the uts and ipc "
				 "namespaces are joined, by an absolute path",
				 ns, ext[i].value ? ext[i].value : "");
			return -EOPNOTSUPP;
		}
		if (c->ns_flags & CLONE_NEWUSER) {
			snprintf(why, wl,
				 "join_ns %s %s: the container has a user namespace, and joining "
				 "a namespace of the engine's from inside it is not done; run it "
				 "without one, or without the %s namespace path",
				 ns, ext[i].value, ns);
			return -EOPNOTSUPP;
		}
		ret = ns_file_is(ext[i].value, joinable[k].flag);
		if (ret) {
			snprintf(why, wl,
				 "join_ns %s %s: %s; give the path of an existing %s namespace "
				 "(/proc/PID/ns/%s of a process that holds it)",
				 ns, ext[i].value,
				 ret == -EINVAL ? "not a namespace of that kind" : strerror(-ret),
				 ns, ns);
			return ret;
		}
		snprintf((char *)out + joinable[k].off, PATH_MAX, "%s", ext[i].value);
		pr_info("the container joins the %s namespace %s (join_ns)", ns, ext[i].value);
		ipc_joined |= joinable[k].flag == CLONE_NEWIPC;
	}
	if (c->has_ipc_shared && c->ipc_shared && !ipc_joined) {
		snprintf(why, wl,
			 "the container's IPC namespace was shared with a process outside it "
			 "(its objects were not carried), and the restore names none to join "
			 "(join_ns ipc): give the container its ipc namespace path in "
			 "config.json on this host too");
		return -EINVAL;
	}
	return 0;
}

int rst_ctr_join(const struct rst_ctr *c, int *flags)
{
	for (size_t k = 0; k < sizeof(joinable) / sizeof(joinable[0]); k++) {
		const char *path = (const char *)c + joinable[k].off;
		int fd;

		if (!path[0])
			continue;
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || setns(fd, joinable[k].flag) < 0) {
			int ret = -errno;

			if (fd >= 0)
				close(fd);
			return ret;
		}
		close(fd);
		*flags &= ~joinable[k].flag;
	}
	return 0;
}
