/*
 * seize.c - stopping a process for the dump and letting it go: every
 * thread PTRACE_SEIZEd and interrupted (rsys, which rewinds an interrupted
 * syscall), group-stopped for the injection journal (injlog), released
 * untouched.  And the precheck, which refuses from /proc first
 * (precheck.c) and then stops the process briefly for what only injected
 * calls can read (procattr.c).
 */
#define LOG_PREFIX "dump: "
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ioctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rsys.h"
#include "common/vma.h"
#include "restore/restore.h"
#include "restore/res_int.h"
#include "restore/restore_int.h"
#include "restore/fd_int.h"

int rst_dump_precheck(pid_t pid, char *why, size_t whylen)
{
	struct rst_seized *s;
	uint64_t scratch;
	int ret;

	why[0] = '\0';
	/* with each resource's precheck hook (VmFlags from smaps: only here, not in the freeze) */
	ret = rst_check_resources(pid, 0, why, whylen);
	if (ret)
		return ret;
	/*
	 * What only the process can tell (prctl values): a short stop, the
	 * calls injected, everything put back (procattr.c).
	 */
	ret = rst_seize(pid, &s);
	if (ret) {
		snprintf(why, whylen, "cannot stop pid %d to read its attributes: %s", (int)pid,
			 strerror(-ret));
		return ret;
	}
	ret = rsys_scratch(&s->thr[0], &scratch);
	if (ret)
		snprintf(why, whylen, "cannot map a scratch page in pid %d: %s", (int)pid,
			 strerror(-ret));
	else
		ret = rst_res_precheck_seized(s, scratch, why, whylen);
	rst_release(s);
	return ret;
}

/* ---- seize / release ----------------------------------------------------- */

/*
 * The threads of @d but the main one, into @s: each one's stop asked for
 * first, then each one waited for, so that they stop together rather than
 * one wakeup after another; the main thread's vdso syscall serves them all.
 */
static int seize_others(struct rst_seized *s, DIR *d)
{
	pid_t *tids = NULL;
	size_t n = 0, cap = 0, k = 0;
	struct dirent *de;
	int ret = 0;

	while ((de = readdir(d))) {
		pid_t tid = atoi(de->d_name), *nt;

		if (tid <= 0 || tid == s->pid)
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			nt = realloc(tids, cap * sizeof(*tids));
			if (!nt) {
				ret = -ENOMEM;
				break;
			}
			tids = nt;
		}
		ret = rsys_seize_start(tid);
		if (ret == -ESRCH) { /* exited meanwhile */
			ret = 0;
			continue;
		}
		if (ret)
			break;
		tids[n++] = tid;
	}
	if (!ret) {
		struct rsys *nt = realloc(s->thr, (1 + n) * sizeof(*nt));
		struct user_regs_struct *nr;

		if (nt)
			s->thr = nt;
		nr = realloc(s->raw, (1 + n) * sizeof(*nr));
		if (nr)
			s->raw = nr;
		if (!nt || !nr)
			ret = -ENOMEM;
	}
	for (; !ret && k < n; k++) {
		ret = rsys_seize_finish(&s->thr[s->n], tids[k], s->thr[0].sc_addr);
		if (ret == -ESRCH) { /* exited meanwhile */
			ret = 0;
			continue;
		}
		if (ret) {
			k++; /* detached by its failed finish */
			break;
		}
		if (ptrace(PTRACE_GETREGS, tids[k], 0, &s->raw[s->n]) < 0)
			s->raw[s->n] = s->thr[s->n].saved;
		s->n++;
	}
	/* started and not finished (a failure): traced, stopped or not, untouched */
	for (; k < n; k++)
		ptrace(PTRACE_DETACH, tids[k], 0, 0);
	free(tids);
	return ret;
}

int rst_seize(pid_t pid, struct rst_seized **out)
{
	struct rst_seized *s;
	char path[64];
	DIR *d;
	int ret = 0;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->pid = pid;
	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	if (!d) {
		free(s);
		return errno == ENOENT ? -ESRCH : -errno;
	}
	/* The main thread first: the dump talks to thr[0]. */
	s->thr = calloc(1, sizeof(*s->thr));
	if (!s->thr) {
		ret = -ENOMEM;
		goto out;
	}
	s->raw = calloc(1, sizeof(*s->raw));
	if (!s->raw) {
		ret = -ENOMEM;
		goto out;
	}
	s->owner_stopped = injlog_owner_stopped(pid);
	/* the group-stop that keeps it off injected registers if we die (injlog.h) */
	ret = injlog_hold(pid);
	if (ret)
		goto out;
	s->held = true;
	ret = rsys_seize(&s->thr[0], pid);
	if (ret)
		goto out;
	s->n = 1;
	/* Nothing was injected yet: these are the registers it stopped with. */
	if (ptrace(PTRACE_GETREGS, pid, 0, &s->raw[0]) < 0)
		s->raw[0] = s->thr[0].saved;
	ret = seize_others(s, d);
out:
	closedir(d);
	if (ret) {
		rst_release(s);
		return ret;
	}
	*out = s;
	return 0;
}

void rst_seized_owner_stopped(struct rst_seized *s, bool stopped)
{
	s->owner_stopped = stopped;
}

void rst_release(struct rst_seized *s)
{
	if (!s)
		return;
	for (size_t i = s->n; i-- > 0;) {
		int ret = rsys_release(&s->thr[i]);

		if (ret)
			pr_warn_r(ret, "cannot release thread %d of pid %d", s->thr[i].pid, s->pid);
	}
	if (s->held)
		injlog_unhold(s->pid);
	free(s->thr);
	free(s->raw);
	free(s);
}

void rst_kill_seized(struct rst_seized *s)
{
	if (!s)
		return;
	kill(s->pid, SIGKILL);
	injlog_forget(s->pid);
	/* As its tracer we see its death first; its parent can reap it only after. */
	/* The leader's death is reported only after every other thread's: them first. */
	for (size_t i = s->n; i-- > 0;)
		while (waitpid(s->thr[i].pid, NULL, __WALL) < 0 && errno == EINTR)
			;
	free(s->thr);
	free(s->raw);
	free(s);
}
