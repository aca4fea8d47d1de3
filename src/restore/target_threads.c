/*
 * target_threads.c - the restored process's other threads: each made by an
 * injected clone3 with its TID (the new thread auto-attached through
 * PTRACE_O_TRACECLONE), then, in one batch run by the new thread itself,
 * what a thread sets for its own: rseq, robust list, tid address, altstack
 * and name.  Called by the resume (target_resume.c) after the task's own
 * state and before the credentials, which are set per thread.
 */
#define LOG_PREFIX "restore: "
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/rsys.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

/* The thread of the stub (as seen from here) that is not the main one nor known yet. */
static pid_t new_thread(struct rst_target *t)
{
	char path[64];
	struct dirent *de;
	pid_t found = -ESRCH;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)t->stub);
	d = opendir(path);
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		pid_t tid = atoi(de->d_name);
		bool known = tid == t->stub;

		for (size_t i = 0; i < t->nthr; i++)
			known |= t->thr[i].pid == tid;
		if (tid > 0 && !known) {
			found = tid;
			break;
		}
	}
	closedir(d);
	return found;
}

/* What a new thread sets for itself: rseq, robust list, tid address, altstack, name. */
static int thread_setup(struct rst_target *t, const Haul__Img__ThreadState *th, char *why,
			size_t wl)
{
	struct rst_batch *b = rst_batch_new();
	uint64_t at;
	int ret;

	if (!b)
		return -ENOMEM;
	if (th->rseq)
		rst_bcall(t, b, 0, "rseq", SYS_rseq, th->rseq->addr, th->rseq->len, 0,
			  th->rseq->sig, 0, 0);
	if (th->has_robust_list)
		rst_bcall(t, b, 0, "set_robust_list", SYS_set_robust_list, th->robust_list,
			  th->robust_list_len, 0, 0, 0, 0);
	if (th->has_tid_address)
		rst_bcall(t, b, 0, "set_tid_address", SYS_set_tid_address, th->tid_address, 0, 0, 0,
			  0, 0);
	if (th->has_altstack_flags && !(th->altstack_flags & SS_DISABLE)) {
		uint64_t ss[3] = {th->altstack_sp, th->altstack_flags & ~(uint32_t)SS_ONSTACK,
				  th->altstack_size};

		rst_bdata(t, b, ss, sizeof(ss), &at);
		rst_bcall(t, b, 0, "sigaltstack", SYS_sigaltstack, at, 0, 0, 0, 0, 0);
	}
	if (th->comm) {
		rst_bdata(t, b, th->comm, strlen(th->comm) + 1, &at);
		rst_bcall(t, b, 0, "prctl(PR_SET_NAME)", SYS_prctl, PR_SET_NAME, at, 0, 0, 0, 0);
	}
	ret = rst_batch_run(t, b);
	if (ret)
		snprintf(why, wl, "cannot set up thread %d: %s: %s", th->tid, b->what,
			 strerror(-ret));
	free(b);
	return ret;
}

/*
 * Create thread @th inside the stub: clone3 with the thread flags glibc
 * uses and set_tid = its old TID, injected in the main thread.  With
 * PTRACE_O_TRACECLONE the kernel attaches it to us and stops it before it
 * runs a single instruction; its registers come last, with everyone's.
 */
static int create_thread(struct rst_target *t, const Haul__Img__ThreadState *th, char *why,
			 size_t wl)
{
	struct clone_args_ a = {0};
	struct rsys *r;
	int32_t tid = th->tid;
	pid_t outer;
	int ret, status;

	a.flags = CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD | CLONE_SYSVSEM;
	a.set_tid = rst_scratch(t) + 256;
	a.set_tid_size = 1;
	ret = rst_poke(t, rst_scratch(t), &a, sizeof(a));
	if (!ret)
		ret = rst_poke(t, rst_scratch(t) + 256, &tid, sizeof(tid));
	if (!ret)
		ret = rst_rcall(t, SYS_clone3, rst_scratch(t), sizeof(a), 0, 0, 0, 0, NULL);
	if (ret) {
		if (ret == -EEXIST)
			snprintf(why, wl,
				 "thread id %d is in use here; restore into a new PID namespace",
				 tid);
		else
			snprintf(why, wl, "cannot create thread %d: %s", tid, strerror(-ret));
		return ret;
	}
	outer = new_thread(t);
	if (outer < 0) {
		snprintf(why, wl, "cannot find new thread %d", tid);
		return outer;
	}
	/* Its first stop: attached by PTRACE_O_TRACECLONE. */
	while (waitpid(outer, &status, __WALL) < 0) {
		if (errno != EINTR) {
			snprintf(why, wl, "cannot wait for new thread %d: %s", tid,
				 strerror(errno));
			return -errno;
		}
	}
	r = &t->thr[t->nthr];
	ret = rsys_attach_stopped(r, outer, t->tramp);
	if (ret)
		return ret;
	t->nthr++;

	/* Its own bookkeeping, injected in it in one round trip (target_batch.c). */
	t->cur = r;
	ret = thread_setup(t, th, why, wl);
	t->cur = NULL;
	/* Its own queue of signals, sent to it by TID. */
	for (size_t i = 0; !ret && i < th->n_pending; i++) {
		int32_t signo;

		if (th->pending[i]->siginfo.len != 128)
			continue;
		memcpy(&signo, th->pending[i]->siginfo.data, sizeof(signo));
		ret = rst_poke(t, rst_scratch(t), th->pending[i]->siginfo.data, 128);
		if (!ret)
			ret = rst_rcall(t, SYS_rt_tgsigqueueinfo, t->o.pid, th->tid, signo,
					rst_scratch(t), 0, 0, NULL);
	}
	if (ret && !why[0])
		snprintf(why, wl, "cannot set up thread %d: %s", tid, strerror(-ret));
	return ret;
}

int rst_create_threads(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why,
		       size_t wl)
{
	int ret = 0;

	if (!ps->n_threads)
		return 0;
	t->thr = calloc(ps->n_threads, sizeof(*t->thr));
	if (!t->thr)
		return -ENOMEM;
	if (ptrace(PTRACE_SETOPTIONS, t->stub, 0, PTRACE_O_TRACESYSGOOD | PTRACE_O_TRACECLONE) < 0)
		return -errno;
	for (size_t i = 0; i < ps->n_threads && !ret; i++)
		ret = create_thread(t, ps->threads[i], why, wl);
	return ret;
}
