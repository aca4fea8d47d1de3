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
	int exit_on_move; /* it exits with this status once it has moved (-1: execs; < -1: that signal; 0: none) */
	bool vmcases;		    /* it maps the VMAs of tests/progs/vmcases.h too (--vmcases) */
	bool world;		    /* it has what tests/progs/world.h sets up (--world) */
	unsigned long net_a, net_b; /* netns inodes, as the workload prints them */
	struct th_state *before;    /* its state before the move (th_mig_state_before) */
	char client[48];	    /* th_mig_setup_svc: the client namespace C ("" without) */
	char ca[16], cb[16];	    /* its links' ends in A and in B (on the service subnet) */
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
/* th_mig_haul with HAUL_FAULT=@fault, parked at its point ("stalled at" on *@fd, 30 s at most). */
pid_t th_mig_haul_stalled(struct th_mig *m, const char *fault, const char *const extra[], int *fd);
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
/* The frozen round's pages: the last of "pages_per_round" in --json; -1 when absent. */
long th_mig_final_round_pages(struct th_mig *m);

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
/* th_mig_migrate without the state taken before: for workloads of other programs. */
int th_mig_run(struct th_mig *m, const char *const extra[], int timeout_ms);
/*
 * After a migration: ticks come from B and not A, progress went on from
 * @seq_before, memory verifies, exactly one copy, and the state is the one
 * kept by th_mig_state_before.
 */
void th_mig_assert_moved(struct th_mig *m, long seq_before);

/*
 * The service network (th_svc.c): a third "client" host C, a namespace with a
 * bridge (198.18.1.3/24, and 2001:2:0:1::3/64) joined by a veth to A
 * (198.18.1.1/24 on m->ca, with the service address TH_SVC_PFX) and one to
 * B (198.18.1.2/24 on m->cb).  `haul migrate --move-address TH_SVC_PFX`
 * moves the address from A to B; a client in m->client follows it.
 */
#define TH_SVC_ADDR "198.18.1.100"
#define TH_SVC_PFX  TH_SVC_ADDR "/24"
/* The IPv6 service address, in the benchmarking range 2001:2::/48 (RFC 5180). */
#define TH_SVC6_ADDR "2001:2:0:1::100"
#define TH_SVC6_PFX  TH_SVC6_ADDR "/64"

/*
 * th_mig_setup, then C and its links (names carry the pid); the client
 * reaches TH_SVC_ADDR at A.  cr_skip_test without nftables; th_mig_teardown
 * deletes C too.
 */
void th_mig_setup_svc(struct th_mig *m);
/* The IPv6 subnet on the same links, TH_SVC6_PFX on A; the client reaches it there. */
void th_mig_svc_ipv6(struct th_mig *m);
/* Whether namespace @ns holds the address @pfx ("ADDR/PREFIX"). */
bool th_mig_has_addr(const char *ns, const char *pfx);
/* Whether @pfx is on A only (@at_a) or on B only. */
bool th_mig_addr_only_at(struct th_mig *m, const char *pfx, bool at_a);
/* No nftables table or rule in A, B or C (haul's lock tables are the only ones made). */
bool th_mig_no_nft(struct th_mig *m);
/* Whether a SYN from C to @addr port 9 gets an answer (a reset: the host is reached). */
bool th_mig_client_reaches(struct th_mig *m, const char *addr);
/* Whether C's neighbour entry for @addr names B's link on the service subnet. */
bool th_mig_client_neigh_is_b(struct th_mig *m, const char *addr);
/* Poll @what(m, @arg) for up to @ms. */
bool th_mig_eventually(bool (*what)(struct th_mig *m, const char *arg), struct th_mig *m,
		       const char *arg, int ms);
/*
 * The operator's move for an in-doubt source (DESIGN.md "In doubt"): kill it
 * when the target runs the process, then thaw its migration cgroup.
 */
void th_mig_resolve_in_doubt(struct th_mig *m, bool target_runs);
/* Delete C and its links (th_mig_teardown does it); safe without C. */
void th_mig_svc_teardown(struct th_mig *m);

#endif
