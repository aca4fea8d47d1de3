/*
 * th_tree.h - the two-process test programs (tests/progs/unix_scm_stream,
 * rst_unix_tree) driven through their directory DIR: a parent and its
 * child create DIR/ready-parent and DIR/ready-child once set up, wait for
 * DIR/go, then check what they read and write "ok parent" to
 * DIR/parent.out and "ok child" to DIR/child.out.  Checkpoint and restore
 * cycles of such a tree, and its `haul migrate` from namespace A to B
 * (th_mig.h).  Failures are Criterion assertions naming the file or step.
 */
#ifndef HAUL_TESTS_TH_TREE_H
#define HAUL_TESTS_TH_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct th_mig;

/* Create DIR/@name (the programs' "go"). */
void th_tree_touch(const char *dir, const char *name);
/* Wait (bounded) until DIR/ready-parent and DIR/ready-child exist. */
void th_tree_wait_ready(const char *dir);
/* Expect "ok child" in DIR/child.out and "ok parent" in DIR/parent.out, waiting up to @ms. */
void th_tree_expect_ok(const char *dir, int ms);
/* rm -rf @dir. */
void th_tree_remove(const char *dir);

/*
 * On this host: DIR = /tmp/haul-@tag-@mode-PID, `@prog @mode DIR` started
 * (its output in DIR/spawn.out) and ready; its pid.
 */
pid_t th_tree_start(char *dir, size_t len, const char *tag, const char *prog, const char *mode);
/*
 * th_tree_start, checkpoint (the source killed), restore in a new PID
 * namespace, "go": the restored tree must end with status 0 and both "ok".
 */
void th_tree_cycle(const char *tag, const char *prog, const char *mode);
/*
 * th_tree_start, then a checkpoint (leaving it running with @leave) that
 * must return @want (0, or -EOPNOTSUPP for a refusal); the source runs on
 * and, told to go, ends with status 0 (and both "ok" with @ok).
 */
void th_tree_checkpoint_runs_on(const char *tag, const char *prog, const char *mode, bool leave,
				int want, bool ok);

/* th_mig_setup(@m), DIR = m->dir/m->tag (teardown finds every copy by the tag), `@prog @mode DIR` in A, ready. */
void th_tree_start_in_a(struct th_mig *m, char *dir, size_t len, const char *prog,
			const char *mode);
/* `haul migrate --downtime 50` of m's workload; it must exit 0 (its output is logged if not). */
void th_tree_migrate(struct th_mig *m);
/* The migrated tree's root runs in namespace B. */
void th_tree_assert_in_b(struct th_mig *m);

#endif
