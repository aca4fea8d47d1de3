/*
 * migrate_int.h - what the parts of a live migration share: struct mig (one
 * migration's state, owned by haul_migrate() on its stack) and the steps
 * that migrate.c (the whole migration), mig_precopy.c (sending pages,
 * rounds) and mig_switch.c (switchover and commit) call in one another.
 * Private to src/haul.
 */
#ifndef HAUL_HAUL_MIGRATE_INT_H
#define HAUL_HAUL_MIGRATE_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "haul/haul_int.h"
#include "haul/netlock.h"
#include "pageserver/pageserver.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

/* The network around the process (mig_net.c). */
struct mig_net {
	uint64_t id;		     /* the migration id: the session id */
	char table[64];		     /* the lock's nftables table */
	struct haul_net_addr *addrs; /* --move-address, with the interface here */
	size_t naddrs;
	char addr_list[256];	      /* HAUL_ADDRESSES */
	struct haul_net_tuple *socks; /* locked at the freeze */
	size_t nsocks;
	struct haul_net_snap snap; /* the sockets read just before the freeze */
	struct haul_netguard ng;
	struct haul_switch_hook hook;
	/* what the lock drops, sent again after it (netreplay.c) */
	struct haul_replay replay;
	bool active;	/* the survivor runs */
	bool locked;	/* the table is up */
	bool prepared;	/* ...since before the freeze, its sets empty until then */
	size_t removed; /* addresses removed from here so far */
	bool hook_down; /* source-down ran */
	bool own_ns;	/* the process's network namespace is not haul's: nsfd holds it */
	int nsfd;
};

/*
 * A process of a tree being migrated (mig_tree.c): the per-process part of
 * struct mig.  struct mig always holds the process being worked on;
 * haul_mig_select() parks it in its procs[] entry and takes out another.
 */
struct mig_proc {
	pid_t pid;    /* as seen from here */
	pid_t ns_pid; /* in the tree's PID namespace: its session's pid */
	struct ps_client *client;
	char **cglines;
	size_t ncglines;
	int *listeners;
	size_t nlisteners;
	struct trk *trk;
	struct rst_seized *seized;
	struct rst_dump_prep *prep;
	bool stopped; /* SIGSTOPped by us (not the journal's): SIGCONT owed */
	struct haul_pid_lock
		lock; /* one haul per process: the others' locks (the root's: migrate.c) */
};

struct mig {
	const struct haul_mig_opts *o;
	struct haul_mig_result *res;
	pid_t pid;
	struct haul_cg cg;
	bool cg_ready;
	struct haul_guard guard;
	struct ps_client *client;
	char **cglines; /* its cgroups for SessionOpen (the client keeps pointers) */
	int *listeners; /* its listening TCP fds just before the freeze (sock_drain.c) */
	size_t nlisteners;
	size_t ncglines;
	struct trk *trk;
	struct rst_seized *seized;
	struct rst_dump_prep *prep; /* VmFlags read during pre-copy, not in the stop */
	struct haul_conv conv;
	struct mig_net net;
	/* post-copy and hybrid */
	struct haul_pc *pc;
	bool stale_final; /* hybrid: the last dirty set is fetched after the resume */
	/*
	 * A set scanned at the start of a throttle stretch held frozen, small
	 * enough for the downtime target: that stretch is the switchover's stop,
	 * and the set goes in its final round (mig_precopy.c, hold_stretch).
	 */
	struct trk_round held;
	bool held_switch;
	bool hold_final;     /* the rounds decided to switch over: in the next held stretch */
	bool running_round;  /* a pre-copy round's send: the processes run (not held, not frozen) */
	double last_scan_ms; /* the last round's scan (trk_round.scan_ms) */
	double held_at_ms;   /* when that stretch's freeze began (haul_now_ms) */
	/* page batch */
	uint8_t *buf;
	uint64_t *zero;
	struct trk_range batch[HAUL_MIG_READ_PAGES];
	struct ps_range vbatch[HAUL_MIG_READ_PAGES]; /* the batch, for ps_client_pages_v */
	size_t nbatch;
	uint64_t batch_pages;
	uint64_t round_pages; /* pages handed to the client this round */
	uint64_t round_total; /* pages the round has to send */
	uint64_t round_seq;
	double round_read_ms, round_send_ms, round_end_ms; /* this round's, for the debug log */
	/* a tree: this round's pages found and sent in the processes before procs[cur] */
	uint64_t tree_found, tree_sent;
	double last_progress; /* when on_progress was last called */
	/* pacing */
	double pace_t0;
	uint64_t pace_bytes0;
	/* throttle */
	double cpus;
	long long cpu_ticks;
	double cpu_t;
	struct haul_stall_probe *probe; /* pre-copy: the client's stalls (stall.c) */
	/* a process tree (mig_tree.c); nprocs 0: one process */
	struct rst_mig_tree *tree;
	struct mig_proc *procs; /* every live process, the root first */
	size_t nprocs, cur;	/* procs[cur] is the one in the fields above */
	pid_t *more;		/* the others' PIDs here (haul_cg.more) */
	uint8_t *tree_msg;	/* SessionOpen.tree */
	size_t tree_len;
	bool tree_changed;		 /* the shape differed at the freeze: start over */
	struct rst_shm_route *shm_route; /* mig_tree.c: who sends each shared page */
};

/* migrate.c */
bool haul_mig_stop_requested(const struct mig *m);
int haul_mig_fault_point(const struct mig *m, const char *point);

/* mig_precopy.c */
int haul_mig_send_round(struct mig *m, const struct trk_round *r, bool midpoint_fault);
int haul_mig_add_round_stat(struct haul_mig_result *res, const struct haul_mig_round *s);
int haul_mig_precopy(struct mig *m);

/* mig_net.c: see there for when each is called */
int haul_mig_net_prepare(struct mig *m);
int haul_mig_net_check(struct mig *m);
/* Its sockets read while it still runs, so that the freeze only verifies them. */
void haul_mig_net_presnap(struct mig *m);
int haul_mig_net_down(struct mig *m);
void haul_mig_net_indoubt(struct mig *m, bool indoubt);
void haul_mig_net_undo(struct mig *m);
void haul_mig_net_done(struct mig *m);
void haul_mig_net_indoubt_end(struct mig *m);

/* mig_tree.c: see there */
void haul_mig_select(struct mig *m, size_t i);
int haul_mig_tree_prepare(struct mig *m);
int haul_mig_tree_check_target(struct mig *m);
int haul_mig_tree_track(struct mig *m);
int haul_mig_tree_round(struct mig *m, struct trk_round *root, bool final, bool midpoint_fault,
			uint64_t *pages, uint64_t *wire, double *scan_ms);
int haul_mig_tree_stop(struct mig *m);
void haul_mig_tree_listeners(struct mig *m);
int haul_mig_tree_seize(struct mig *m);
int haul_mig_tree_merge_root(struct mig *m, uint8_t **blob, size_t *len);
int haul_mig_tree_state(struct mig *m, double *dump_ms);
void haul_mig_tree_release(struct mig *m);
void haul_mig_tree_held(struct mig *m);
void haul_mig_tree_kill(struct mig *m);
void haul_mig_tree_finish(struct mig *m);
void haul_mig_tree_free(struct mig *m);
/* The host PIDs of every process of the migration into *@pids (to free), *@n of them. */
int haul_mig_pids(const struct mig *m, pid_t **pids, size_t *n);
int haul_mig_sockets(struct mig *m, struct haul_net_tuple **out, size_t *n);
/* The same read while it runs (@again false), then verified at the freeze (netsock.c). */
int haul_mig_sockets_snap(struct mig *m, struct haul_net_snap *s, bool again, bool *reused);
long long haul_mig_cpu_ticks(const struct mig *m);

/* mig_switch.c */
int haul_mig_lazy_presend(struct mig *m);
int haul_mig_switchover(struct mig *m);

#endif
