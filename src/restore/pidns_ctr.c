/*
 * pidns_ctr.c - a container that joined an existing PID namespace (runc: a
 * pid namespace "path" in config.json; podman pods that share one), as
 * CRIU's external pid[INODE]:KEY at dump and inherit_fd KEY at restore.
 *
 * Dump: the engine names the container's PID namespace as its own
 * (external "pid[INODE]", INODE that of /proc/PID/ns/pid).  The
 * container's process is then not pid 1 of its namespace; the tree under
 * it is still what is carried, with the pids it knows itself by (the last
 * NSpid entry, as for every dumped process).  Other processes of the
 * namespace are the holder's (its init and what the holder runs) unless
 * they are in the container's mount namespace and do not descend from its
 * process: a `runc exec` process, refused by name as for a namespace of
 * its own.  A container with a user namespace is refused (the restore
 * helper, inside a user namespace of its own, could not join one of the
 * engine's).
 *
 * Restore: the record says pid_external; the engine hands the namespace
 * over as inherit_fd KEY (value here: /proc/<haul>/fd/N, which the
 * helper opens).  The helper setns()es into it for its children,
 * unshares its own mount namespace, and clones the container's process
 * with clone3 set_tid = its recorded pid.  set_tid names the innermost
 * level only (set_tid_size 1, which clone3 allows at any nesting depth):
 * the pids of the outer namespaces are whatever is free there.  A pid
 * taken in the joined namespace fails with EEXIST, said by pid and
 * namespace.  The restored process is the engine's child (rst_sibling,
 * CLONE_PARENT) as for a namespace of its own; its orphans go to the
 * namespace's init, the holder.
 */
#define LOG_PREFIX "ctr: "
#include <errno.h>
#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/ctr.h"
#include "restore/ctr_int.h"
#include "restore/target_int.h"

bool rst_ctr_pid_external(pid_t pid, const struct rst_ctr_ext *ext, size_t next)
{
	return rst_ctr_ns_external(pid, "pid", ext, next);
}

int rst_ctr_joined_members(pid_t pid, char *why, size_t wl)
{
	static const char *const ns[] = {"pid", "mnt", NULL};
	pid_t p = rst_ctr_stray_member(pid, ns);

	if (p <= 0)
		return p;
	snprintf(why, wl,
		 "pid %d is in the container of pid %d (its PID and mount namespaces) but does "
		 "not descend from it (a `runc exec` process): not carried; end it and "
		 "checkpoint again",
		 (int)p, (int)pid);
	return -EOPNOTSUPP;
}

int rst_ctr_prepare_pidns(const Haul__Ctr__Container *c, const struct rst_ctr_ext *ext, size_t next,
			  struct rst_ctr *out, char *why, size_t wl)
{
	bool joined = c->has_pid_external && c->pid_external;
	const char *path = NULL;
	int fd, type;

	for (size_t i = 0; i < next; i++)
		if (ext[i].key && !strcmp(ext[i].key, RST_CTR_PID_KEY))
			path = ext[i].value;
	if (!joined && !path)
		return 0;
	if (!joined) {
		snprintf(why, wl,
			 "the restore names a PID namespace to join (inherit_fd %s), but the "
			 "container had one of its own at checkpoint: remove the pid namespace "
			 "path from config.json",
			 RST_CTR_PID_KEY);
		return -EINVAL;
	}
	if (!path || !path[0] || strlen(path) >= sizeof(out->pidns)) {
		snprintf(why, wl,
			 "the container had joined an existing PID namespace (external pid), and "
			 "the restore names none to join (inherit_fd %s): give the container its "
			 "pid namespace path in config.json on this host too",
			 RST_CTR_PID_KEY);
		return -EINVAL;
	}
	if (c->ns_flags & CLONE_NEWUSER) {
		snprintf(why, wl,
			 "the container has a user namespace and joined an existing PID "
			 "namespace: joining it from inside the user namespace is not done");
		return -EOPNOTSUPP;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	type = fd < 0 ? -1 : ioctl(fd, NS_GET_NSTYPE);
	if (fd >= 0)
		close(fd);
	if (type != CLONE_NEWPID) {
		snprintf(why, wl,
			 "the PID namespace to join (inherit_fd %s, %s) is %s: give the path of "
			 "an existing pid namespace",
			 RST_CTR_PID_KEY, path,
			 fd < 0	    ? "not open"
			 : type < 0 ? "not a namespace"
				    : "another kind");
		return -EINVAL;
	}
	snprintf(out->pidns, sizeof(out->pidns), "%s", path);
	pr_info("the container joins the PID namespace %s", path);
	return 0;
}

pid_t rst_ctr_clone_joined(const struct rst_ctr *c, pid_t pid, bool sibling, int errfd)
{
	struct clone_args_ a;
	pid_t tid = pid, child;
	int fd = open(c->pidns, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || setns(fd, CLONE_NEWPID) < 0) {
		int err = errno;

		dprintf(errfd, "cannot join the PID namespace %s: %s\n", c->pidns, strerror(err));
		if (fd >= 0)
			close(fd);
		errno = err;
		return -1;
	}
	close(fd);
	if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
		dprintf(errfd, "cannot make the container's mount namespace: %s\n",
			strerror(errno));
		return -1;
	}
	memset(&a, 0, sizeof(a));
	a.flags = sibling ? CLONE_PARENT : 0;
	/* clone3 refuses an exit signal with CLONE_PARENT: the parent's own is used */
	a.exit_signal = sibling ? 0 : SIGCHLD;
	a.set_tid = (uint64_t)(uintptr_t)&tid;
	a.set_tid_size = 1; /* the joined namespace's level only */
	child = syscall(SYS_clone3, &a, sizeof(a));
	if (child < 0 && errno == EEXIST)
		dprintf(errfd,
			"pid %d is taken in the PID namespace %s the container joins: end the "
			"process that has it there, or restore into another namespace\n",
			(int)pid, c->pidns);
	else if (child < 0)
		dprintf(errfd, "cannot create pid %d in the PID namespace %s: %s\n", (int)pid,
			c->pidns, strerror(errno));
	return child;
}
