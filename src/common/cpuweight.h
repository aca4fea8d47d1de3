/*
 * cpuweight.h - haul's own threads at a lower CPU weight while the workload
 * runs (pre-copy), and back at full weight for the downtime.
 */
#ifndef HAUL_COMMON_CPUWEIGHT_H
#define HAUL_COMMON_CPUWEIGHT_H

#include <sys/types.h>

/*
 * One process's weight: every thread of it at @base + @nice (nice(2) values,
 * SCHED_OTHER's weight; capped at 19).  Owned by one thread, which alone
 * calls haul_cpuweight_set; the other threads are only written to.
 */
struct haul_cpuweight {
	int base;   /* the nice the threads go back to: the caller's at init */
	int nice;   /* added to base now; 0: at full weight */
	pid_t keep; /* a thread left at base throughout (the stall probe); 0: none */
};

/* Remember the calling thread's nice as @w's base; @w starts at full weight. */
void haul_cpuweight_init(struct haul_cpuweight *w, pid_t keep);

/*
 * Every thread of this process (but @w->keep) to @w->base + @nice; 0 puts
 * them back.  Threads started since the last call (they inherit their
 * creator's nice) are set too.  Nothing is done when @nice is what @w has.
 * Returns 0, or the -errno of the first thread that could not be set (the
 * others are still set; a thread that exited meanwhile is no error).
 */
int haul_cpuweight_set(struct haul_cpuweight *w, int nice);

/* The nice of thread @tid of this process, for tests and messages; -errno on failure. */
int haul_cpuweight_thread_nice(pid_t tid, int *nice);

#endif
