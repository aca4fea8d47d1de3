/*
 * th_verify.h - test helper: a process's observable state, before checkpoint
 * and after restore, compared item by item so that a resource the restorer
 * forgets (a mapping's flags, an fd's O_CLOEXEC, a lock, a limit, a blocked
 * signal, a prctl) fails the test by name instead of drifting silently.
 *
 * What is read, and what is left out and why, is the table in th_verify.c.
 */
#ifndef HAUL_TESTS_TH_VERIFY_H
#define HAUL_TESTS_TH_VERIFY_H

#include <stddef.h>
#include <sys/types.h>

/* Snapshot options (or-ed). */
enum {
	/*
	 * The process runs between the two snapshots (a live workload): file
	 * positions may only have grown, nothing else is relaxed.
	 */
	TH_VERIFY_LIVE = 1 << 0,
	/*
	 * No injected prctl calls (ptrace): for a process whose memory is still
	 * served on demand by the calling thread (post-copy), or that is traced.
	 */
	TH_VERIFY_NO_INJECT = 1 << 1,
};

struct th_state;

/*
 * Read the state of @pid now (/proc and, unless TH_VERIFY_NO_INJECT, prctl
 * values through injected calls; the process is stopped for those only).
 * Returns 0 and a new snapshot in *@out, or -errno (-ESRCH: gone).
 */
int th_state_take(pid_t pid, int flags, struct th_state **out);
void th_state_free(struct th_state *s);

/*
 * Compare @before with @after; each difference is one line "item: before ->
 * after" in @report (truncated to @len).  Values that are the snapshot's own
 * pid compare as "self", so a restore under another pid compares cleanly.
 * Returns the number of differences.
 */
int th_state_diff(const struct th_state *before, const struct th_state *after, int flags,
		  char *report, size_t len);

/*
 * The usual test step: snapshot @pid now and expect no difference from
 * @before (a Criterion expectation naming every drifted item, with @what).
 * Frees nothing; returns the number of differences (-1 when @pid cannot be read).
 */
int th_verify_same(const struct th_state *before, pid_t pid, int flags, const char *what);

#endif
