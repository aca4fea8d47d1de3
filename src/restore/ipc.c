/*
 * ipc.c - the SysV IPC objects of a process's IPC namespace: the reader of
 * /proc/sysvipc/{shm,sem,msg} as the process sees them, and the precheck
 * of semaphore sets and message queues.
 *
 * /proc/sysvipc shows the IPC namespace of the *reading thread*, so the
 * reader enters the process's namespace with setns() in the calling thread
 * only (IPC namespaces are per task) and returns to its own before it
 * returns; nothing else runs in that thread meanwhile.
 *
 * Which process uses a semaphore set is not recorded anywhere (semop
 * leaves only a time; SEM_UNDO state is not shown per process), and a
 * message queue shows only the last sender's and receiver's pids.  haul
 * carries neither, so the precheck refuses, by id and key: in an IPC
 * namespace of the process's own (not haul's), every set and queue there;
 * in haul's, those its effective user owns or created, and the queues it
 * last sent to or received from.  A process using another user's set
 * through group or world permissions in the host's namespace is not seen
 * (refusing every such set would refuse every process on a host where
 * any service uses one).
 *
 * SysV shared memory is visible per process (its attachments are VMAs)
 * and is carried (shm_dump.c, shm_restore.c).
 */
#define LOG_PREFIX "precheck: "
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"

int rst_ipc_read(pid_t pid, const char *what, char **out)
{
	char path[64];
	struct stat own, its;
	int self = -1, ns = -1, ret;

	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", (int)pid);
	if (stat(path, &its) < 0)
		return errno == ENOENT ? -ESRCH : -errno;
	if (stat("/proc/thread-self/ns/ipc", &own) < 0)
		return -errno;
	snprintf(path, sizeof(path), "/proc/sysvipc/%s", what);
	if (own.st_ino == its.st_ino && own.st_dev == its.st_dev)
		return rst_read_file(path, out, NULL);

	self = open("/proc/thread-self/ns/ipc", O_RDONLY | O_CLOEXEC);
	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", (int)pid);
	ns = open(path, O_RDONLY | O_CLOEXEC);
	if (self < 0 || ns < 0) {
		ret = -errno;
		goto out;
	}
	if (setns(ns, CLONE_NEWIPC) < 0) {
		ret = -errno;
		pr_err_r(ret, "cannot enter the IPC namespace of pid %d", (int)pid);
		goto out;
	}
	snprintf(path, sizeof(path), "/proc/sysvipc/%s", what);
	ret = rst_read_file(path, out, NULL);
	if (setns(self, CLONE_NEWIPC) < 0) {
		/* this thread would go on in the wrong namespace: fail loudly */
		pr_err("cannot return to haul's IPC namespace after reading pid %d's: %s", (int)pid,
		       strerror(errno));
		if (!ret)
			free(*out);
		ret = -EIO;
	}
out:
	if (self >= 0)
		close(self);
	if (ns >= 0)
		close(ns);
	return ret;
}

/* Whether @pid has its own IPC namespace (not haul's). */
static bool own_ipc_ns(pid_t pid)
{
	char path[64];
	struct stat own, its;

	snprintf(path, sizeof(path), "/proc/%d/ns/ipc", (int)pid);
	return stat(path, &its) == 0 && stat("/proc/thread-self/ns/ipc", &own) == 0 &&
	       (own.st_ino != its.st_ino || own.st_dev != its.st_dev);
}

/*
 * Refuse the first object of /proc/sysvipc/@what (its header line
 * skipped) that @pid may be using: any, in a namespace of its own (@all);
 * else one its user @uid owns or created, or (message queues: @pid_col,
 * the lspid column, then lrpid) that it last sent to or received from.
 * @owner_col: the column of "uid" (then gid, cuid, cgid).
 */
static int refuse_ipc(pid_t pid, const char *what, const char *kind, const char *rm, int owner_col,
		      int pid_col, uint32_t uid, bool all, char *why, size_t whylen)
{
	char *text, *line, *save = NULL;
	int ret = rst_ipc_read(pid, what, &text);

	if (ret)
		return ret;
	line = strtok_r(text, "\n", &save); /* the header */
	while ((line = strtok_r(NULL, "\n", &save))) {
		long long col[16];
		unsigned o[4];
		int n = 0;
		char *p = line, *end;

		while (n < 16) {
			col[n] = strtoll(p, &end, n == 2 ? 8 : 10); /* perms are octal */
			if (end == p)
				break;
			n++;
			p = end;
		}
		if (n < owner_col + 4)
			continue;
		for (int k = 0; k < 4; k++)
			o[k] = (unsigned)col[owner_col + k];
		if (!all && uid != o[0] && uid != o[2] &&
		    !(pid_col && (col[pid_col] == pid || col[pid_col + 1] == pid)))
			continue;
		snprintf(
			why, whylen,
			"pid %d may be using SysV %s id %lld (key %#llx) of its IPC namespace; haul "
			"does not carry %ss and cannot tell which processes use one; remove it "
			"(ipcrm %s %lld) or keep it out of the process's IPC namespace",
			(int)pid, kind, col[1], (unsigned long long)(uint32_t)col[0], kind, rm,
			col[1]);
		ret = -EOPNOTSUPP;
		break;
	}
	free(text);
	return ret;
}

int rst_ipc_precheck(pid_t pid, char *why, size_t whylen)
{
	char *status;
	const char *u;
	uint32_t uid;
	bool all = own_ipc_ns(pid);
	int ret = rst_read_proc(pid, "status", &status, NULL);

	if (ret)
		return ret;
	u = rst_status_field(status, "Uid");
	/* the effective uid (second column) is the one ipcget checks */
	if (!u || sscanf(u, "%*u %u", &uid) != 1) {
		free(status);
		return -EBADMSG;
	}
	free(status);
	/* sem: key semid perms nsems uid gid cuid cgid ...; msg: key msqid perms cbytes qnum lspid lrpid uid ... */
	ret = refuse_ipc(pid, "sem", "semaphore set", "-s", 4, 0, uid, all, why, whylen);
	if (!ret)
		ret = refuse_ipc(pid, "msg", "message queue", "-q", 7, 5, uid, all, why, whylen);
	return ret;
}
