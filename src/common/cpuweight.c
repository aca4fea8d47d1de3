/*
 * cpuweight.c - haul's pre-copy work yields the CPU to the workload.
 *
 * While the workload runs, everything haul does for it (the tracker's scans,
 * the page reads and the page client's sender threads on the source; the
 * page server's receive and ingest on the target) competes with it for the
 * same CPUs, and on a busy host the workload waits in the run queue behind
 * haul (bench/RESULTS.md "Stalls": every client stall of 10 ms or more
 * before the freeze was such a wait during round 1's send).  So during
 * pre-copy haul's threads run at a higher nice: SCHED_OTHER still gives them
 * a share (nice +N weighs 1.25^-N of a nice-0 thread), so a workload that
 * keeps every CPU busy slows the copy but cannot stop it, as SCHED_IDLE
 * would.  From the freeze on the process waits for haul, so haul goes back
 * to full weight before the final round; the SCHED_FIFO boosts of the scans
 * and the resume save and restore whatever nice they find, so they stay as
 * they were.
 *
 * nice is per thread on Linux (setpriority(PRIO_PROCESS, tid)), and a new
 * thread inherits its creator's: each call walks /proc/self/task, so threads
 * started while lowered (a reconnect's streams, io_uring's workers) go back
 * with the others.  Going back needs CAP_SYS_NICE (or an RLIMIT_NICE that
 * allows the base nice): without it haul would do the downtime's work at the
 * lowered weight, so it then stays at full weight throughout and says so.
 */
#define LOG_PREFIX "cpuweight: "
#include <errno.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cpuweight.h"
#include "common/log.h"
#include "common/proc.h"

#define NICE_MAX 19

int haul_cpuweight_thread_nice(pid_t tid, int *nice)
{
	struct haul_sched_attr a = {0};

	if (syscall(SYS_sched_getattr, tid, &a, sizeof(a), 0) < 0)
		return -errno;
	*nice = a.nice;
	return 0;
}

/* Whether this process may lower its threads' nice back to @base later. */
static bool can_go_back(int base)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {{0}};
	struct rlimit rl;

	if (!syscall(SYS_capget, &h, d) &&
	    (d[CAP_SYS_NICE / 32].effective & (1u << (CAP_SYS_NICE % 32))))
		return true;
	/* RLIMIT_NICE's ceiling is 20 - rlim_cur (setrlimit(2)) */
	return !getrlimit(RLIMIT_NICE, &rl) &&
	       (rl.rlim_cur == RLIM_INFINITY || (long long)rl.rlim_cur >= 20 - base);
}

void haul_cpuweight_init(struct haul_cpuweight *w, pid_t keep)
{
	int nice;

	*w = (struct haul_cpuweight){.keep = keep};
	if (!haul_cpuweight_thread_nice((pid_t)syscall(SYS_gettid), &nice))
		w->base = nice;
}

int haul_cpuweight_set(struct haul_cpuweight *w, int nice)
{
	int want = w->base + nice > NICE_MAX ? NICE_MAX : w->base + nice;
	pid_t *tids;
	size_t n;
	int ret, first = 0;

	if (nice == w->nice)
		return 0;
	if (!w->nice && !can_go_back(w->base)) {
		pr_warn("haul (pid %d) may not raise its nice back from %d to %d at the freeze "
			"(no CAP_SYS_NICE, RLIMIT_NICE too low); its pre-copy runs at full weight "
			"(--precopy-nice 0 says this without the warning)",
			(int)getpid(), want, w->base);
		return -EPERM;
	}
	ret = haul_proc_tids(getpid(), &tids, &n);
	if (ret) {
		pr_warn("cannot list the threads of haul (pid %d) to set their nice to %d: %s; "
			"they keep %d",
			(int)getpid(), want, strerror(-ret), w->base + w->nice);
		return ret;
	}
	for (size_t i = 0; i < n; i++) {
		if (tids[i] == w->keep)
			continue;
		if (setpriority(PRIO_PROCESS, (id_t)tids[i], want) < 0 && errno != ESRCH &&
		    !first) {
			first = -errno;
			pr_warn("cannot set the nice of haul's thread %d to %d: %s", (int)tids[i],
				want, strerror(errno));
		}
	}
	free(tids);
	pr_debug("%zu threads of pid %d at nice %d", n, (int)getpid(), want);
	w->nice = nice;
	return first;
}
