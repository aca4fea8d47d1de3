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
	struct haul_netguard ng;
	struct haul_switch_hook hook;
	/* what the lock drops, sent again after it (netreplay.c) */
	struct haul_replay replay;
	bool active;	/* the survivor runs */
	bool locked;	/* the table is up */
	size_t removed; /* addresses removed from here so far */
	bool hook_down; /* source-down ran */
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
	double last_progress; /* when on_progress was last called */
	/* pacing */
	double pace_t0;
	uint64_t pace_bytes0;
	/* throttle */
	double cpus;
	long long cpu_ticks;
	double cpu_t;
	struct haul_stall_probe *probe; /* pre-copy: the client's stalls (stall.c) */
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
int haul_mig_net_down(struct mig *m);
void haul_mig_net_indoubt(struct mig *m, bool indoubt);
void haul_mig_net_undo(struct mig *m);
void haul_mig_net_done(struct mig *m);
void haul_mig_net_indoubt_end(struct mig *m);

/* mig_switch.c */
int haul_mig_lazy_presend(struct mig *m);
int haul_mig_switchover(struct mig *m);

#endif
