/*
 * th_mig.h - test helper for migrations between two network namespaces: a
 * page server on host B, the test workload (tests/progs/mig_workload) on
 * host A, `haul migrate` from A to B, and checks of where the workload runs.
 */
#ifndef HAUL_TESTS_TH_MIG_H
#define HAUL_TESTS_TH_MIG_H

#include <stdbool.h>
#include <sys/types.h>

#include "th_net.h"

struct th_state;

#define TH_MIG_PORT "7411"

struct th_mig {
	struct th_net net;
	char dir[64];
	char key[96], out[96], control[96], json[96];
	char tag[48];
	pid_t ps_pid; /* haul pageserver in B */
	int ps_fd;
	pid_t wl_pid;		   /* the workload as started in A */
	bool wl_by_run;		   /* started by haul run: not our child */
	int threads;		   /* extra writer threads of the workload (th_mig_workload) */
	unsigned long random_seed; /* nonzero: the workload writes pages at random (--random) */
	bool filemap;		   /* the workload maps a file of the fixture too (--filemap) */
	bool fork_on_move;	   /* it forks a reading child once it has moved (--fork-on-move) */
	bool vmcases;		   /* it maps the VMAs of tests/progs/vmcases.h too (--vmcases) */
	bool world;		   /* it has what tests/progs/world.h sets up (--world) */
	unsigned long net_a, net_b; /* netns inodes, as the workload prints them */
	struct th_state *before;    /* its state before the move (th_mig_state_before) */
};

/* Namespaces (optionally tbf-capped), key, page server.  cr_skip_test when unavailable. */
void th_mig_setup(struct th_mig *m, unsigned rate_mbit);
/* Kill whatever runs (workload copies, page server), delete the namespaces and files. */
void th_mig_teardown(struct th_mig *m);
/*
 * Start mig_workload in A with --mem MiB and --rate MiB/s (-1 unbounded) and --hot MiB
 * (0 all), with m->threads more writer threads.
 */
void th_mig_workload(struct th_mig *m, int mem, int rate, int hot);
/*
 * Start mig_workload in A with `haul run --name @name` (its own cgroup and PID
 * namespace; registry in the fixture's directory, HAUL_RUN_DIR set for haul).
 */
void th_mig_workload_run(struct th_mig *m, const char *name, int mem, int rate);
/*
 * Start `haul migrate` in A towards B with extra arguments (NULL-terminated);
 * stderr on *fd.  The process is the workload's pid, unless @extra names it
 * (a first argument not starting with "--": a NAME, or "--cgroup" PATH).
 */
pid_t th_mig_haul(struct th_mig *m, int *fd, const char *const extra[]);
/* Whether a new tick line shows up within @ms from the namespace @net (0: any). */
bool th_mig_ticking(struct th_mig *m, unsigned long net, int ms);
/* The seq= of the last tick line, or -1. */
long th_mig_seq(struct th_mig *m);
/* Ask the workload to verify its memory; true when it reports ok. */
bool th_mig_verify(struct th_mig *m);
/* Live (non-zombie) copies of the workload, on either host. */
int th_mig_copies(struct th_mig *m);
/* A numeric field "key": N of the --json file, or -1. */
double th_mig_json(struct th_mig *m, const char *key);

/*
 * Wait until the workload has printed @n more tick lines (one per 100 ms of
 * running and writing); the ready signal before a migration starts.
 * cr_assert with the output when they do not come within @ms.
 */
void th_mig_ticks(struct th_mig *m, int n, int ms);
/* Keep the workload's state (th_verify) to compare after the move; cr_assert on failure. */
void th_mig_state_before(struct th_mig *m);
/* Log every line haul still has to say on @fd (after a failure). */
void th_mig_dump_output(int fd);
/*
 * th_mig_state_before, then `haul migrate` with @extra to completion within
 * @timeout_ms (killed after); its exit status or -ETIMEDOUT, its output
 * logged when it failed.
 */
int th_mig_migrate(struct th_mig *m, const char *const extra[], int timeout_ms);
/*
 * After a migration: ticks come from B and not A, progress went on from
 * @seq_before, memory verifies, exactly one copy, and the state is the one
 * kept by th_mig_state_before.
 */
void th_mig_assert_moved(struct th_mig *m, long seq_before);

#endif
