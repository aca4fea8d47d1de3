/*
 * target_jobstop.c - a process stopped by job control at the dump (its
 * owner's SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU; ProcessState
 * job_stop_signal) is restored stopped: the stop signal is queued while
 * every thread is still ptrace-stopped, so the first thread to return to
 * user mode takes it and the group stops before any user instruction; its
 * parent's wait then reports the stop as on the source.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

/*
 * The signal that stops @ps again as its owner had it stopped: its own
 * (SIGTSTP...: what its parent's wait reports) where that one stops it,
 * i.e. is neither caught, ignored nor blocked; else SIGSTOP, which always does.
 */
int rst_job_stop_signal(const Haul__Img__ProcessState *ps)
{
	int sig = ps->has_job_stop_signal ? ps->job_stop_signal : 0;

	if (!sig || sig == SIGSTOP)
		return sig;
	if (ps->sigmask & (1ULL << (sig - 1)))
		return SIGSTOP;
	/* the dump lists only the signals caught or ignored */
	for (size_t i = 0; i < ps->n_sigactions; i++)
		if (ps->sigactions[i]->signo == (uint32_t)sig)
			return SIGSTOP;
	return sig;
}

bool rst_proc_stopped(pid_t pid)
{
	return rst_proc_state(pid) == 'T';
}

/*
 * Queued while every thread is still ptrace-stopped: the first to return
 * to user mode takes it and the group stops, before any user instruction.
 * A SIGTSTP, SIGTTIN or SIGTTOU is dropped by the kernel in an orphaned
 * process group (which the restored root's may be, under haul): if @t has
 * not stopped within 200 ms, SIGSTOP stops it.
 */
void rst_job_stop_send(struct rst_target *t)
{
	if (syscall(SYS_pidfd_send_signal, t->pidfd, t->job_stop, NULL, 0) < 0)
		pr_warn("cannot stop restored pid %d again (signal %d): %s; it runs", (int)t->o.pid,
			t->job_stop, strerror(errno));
}

void rst_job_stop_check(struct rst_target *t)
{
	struct timespec ms = {0, 1000 * 1000};

	for (int i = 0; i < 200; i++) {
		if (rst_proc_stopped(t->stub))
			return;
		nanosleep(&ms, NULL);
	}
	pr_debug("pid %d did not stop on signal %d (orphaned process group?): SIGSTOP",
		 (int)t->o.pid, t->job_stop);
	t->job_stop = SIGSTOP;
	rst_job_stop_send(t);
}
