/*
 * freeze.c - hold every thread of a process still with ptrace, briefly.
 *
 * The soft-dirty backend must read pagemap and clear the bits as one atomic
 * step: a page written between the read and clear_refs would lose its bit
 * and never be reported.  PTRACE_SEIZE + PTRACE_INTERRUPT stops a thread
 * without the process or its parent seeing a signal; new threads can only
 * be created by running threads, so listing /proc/PID/task until a pass
 * finds nobody new leaves every thread stopped.  If we die while holding
 * them, the kernel detaches and they run on.
 */
#define LOG_PREFIX "trk: "
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>

#include "common/grow.h"
#include "common/log.h"
#include "common/proc.h"
#include "common/rsys.h"
#include "tracker/trk_int.h"

static bool have_tid(const struct trk_frozen *f, pid_t tid)
{
	for (size_t i = 0; i < f->n; i++)
		if (f->tids[i] == tid)
			return true;
	return false;
}

static int stop_one(struct trk_frozen *f, pid_t tid)
{
	int ret = haul_grow(&f->tids, &f->cap, f->n, sizeof(*f->tids), 16);

	if (ret)
		return ret;
	if (ptrace(PTRACE_SEIZE, tid, 0, 0) < 0) {
		ret = -errno;
		/* a thread that just exited (EPERM while it is a zombie) */
		return ret == -ESRCH || (ret == -EPERM && rsys_thread_gone(tid)) ? 0 : ret;
	}
	f->tids[f->n++] = tid;
	if (ptrace(PTRACE_INTERRUPT, tid, 0, 0) < 0)
		return errno == ESRCH ? 0 : -errno;
	ret = rsys_wait_event_stop(tid);
	return ret == -ESRCH ? 0 : ret;
}

int trk_freeze(pid_t pid, struct trk_frozen *f)
{
	bool added;
	int ret = 0;

	f->n = 0;
	do {
		struct dirent *de;
		DIR *d = haul_proc_opendir(pid, "task");

		if (!d) {
			ret = errno == ENOENT ? -ESRCH : -errno;
			break;
		}
		added = false;
		while ((de = readdir(d))) {
			pid_t tid = (pid_t)atoi(de->d_name);

			if (tid <= 0 || have_tid(f, tid))
				continue;
			ret = stop_one(f, tid);
			if (ret)
				break;
			added = true;
		}
		closedir(d);
	} while (!ret && added);
	if (ret) {
		pr_err_r(ret, "cannot stop the threads of pid %d (traced by someone else?)",
			 (int)pid);
		trk_thaw(f);
	}
	return ret;
}

void trk_thaw(struct trk_frozen *f)
{
	for (size_t i = 0; i < f->n; i++)
		ptrace(PTRACE_DETACH, f->tids[i], 0, 0);
	f->n = 0;
}
