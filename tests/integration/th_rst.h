/*
 * th_rst.h - test helper for checkpoint/restore tests on one host: start a
 * test program with only files open (a pipe from the test runner would be
 * refused by the restorer), read its output, wait for its ready lines, and
 * take an in-memory snapshot (state, layout, every readable page) that the
 * restorer rebuilds, as `haul migrate` would without the network.
 */
#ifndef HAUL_TESTS_TH_RST_H
#define HAUL_TESTS_TH_RST_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/vma.h"
#include "restore/restore.h"
#include "th_net.h"

/*
 * fork + exec tests/progs/@prog with the NULL-terminated arguments @args
 * (NULL: none), stdin /dev/null, stdout and stderr into @out (emptied
 * before the fork), no other fd.  cr_assert on fork failure; returns the child's pid.
 */
pid_t th_spawn_prog(const char *out, const char *prog, const char *const args[]);
/* rst_counter DIR ITERS MIB SLEEP_US with output in @out (tests/progs/rst_counter.c). */
pid_t th_spawn_counter(const char *dir, const char *out, const char *iters, const char *mib,
		       const char *sleep_us);
/*
 * Wait up to @ms until @out holds @ticks "tick" lines: the program has set
 * everything up and run that far into its loop (rst_counter ticks every
 * 100 iterations).  cr_assert with the output when they do not come.
 */
void th_wait_ticking(const char *out, int ticks, int ms);
/*
 * rst_counter @pid with output @out: th_wait_ticking, and no more: the
 * dump may find it anywhere in its loop.  (It used to wait for nanosleep,
 * which hid issue 15: a source released before its SIGKILL ran on and
 * wrote its files again; th_snap_take_kill is the fix.)
 */
void th_wait_counter(pid_t pid, const char *out, int ticks);

/*
 * Run rst_counter DIR ITERS MIB undisturbed (no sleeps) to its end, output
 * in DIR/expected.out; its "final ..." line into @line.  cr_assert when it fails.
 */
void th_expected_final(const char *dir, const char *iters, const char *mib, char *line, size_t len);

/* The whole of @path (up to 1 MiB) in a static buffer; "" when missing. */
char *th_slurp(const char *path);
/*
 * The start of the last line of @s that ends in a newline ("" when none).
 * A file that a program appends to is read while it writes: a read can end
 * inside the line being written (one write(2) is not atomic for a reader of
 * a regular file), so the partial line after the last newline is left out.
 */
const char *th_last_line(const char *s);
/* th_slurp(@path) up to its last newline: only the lines written whole. */
char *th_slurp_lines(const char *path);
/* The "final ..." line of @path into @line; cr_assert when there is none. */
void th_final_line(const char *path, char *line, size_t len);

struct th_snap_run {
	uint64_t addr;
	uint32_t npages;
	void *data;
};

/* What migrate takes on the source, without the network: layout, pages, state. */
struct th_snap {
	struct haul_layout l;
	struct th_snap_run *runs;
	size_t n;
	uint8_t *state;
	size_t state_len;
};

/* Seize @pid, dump its state, layout and readable pages, release it.  0 or -errno. */
int th_snap_take(pid_t pid, struct th_snap *s);
/*
 * Like th_snap_take, but kill @pid (and reap it) while it is still seized,
 * so that it runs no instruction after the dump, as haul checkpoint does.
 * On failure it is released instead.  0 or -errno.
 */
int th_snap_take_kill(pid_t pid, struct th_snap *s);
/* Free what th_snap_take allocated (also after it failed). */
void th_snap_free(struct th_snap *s);
/*
 * Rebuild @s as a process with pid @pid (namespace policy @ns) and resume it;
 * the target in *@out.  0 or -errno, with the restorer's reason in @why.
 */
int th_snap_restore(const struct th_snap *s, pid_t pid, enum rst_pidns ns, struct rst_target **out,
		    char *why, size_t wl);

#endif
