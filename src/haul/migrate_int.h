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
#include "pageserver/pageserver.h"
#include "restore/restore.h"
#include "tracker/tracker.h"

struct mig {
	const struct haul_mig_opts *o;
	struct haul_mig_result *res;
	pid_t pid;
	struct haul_cg cg;
	bool cg_ready;
	struct haul_guard guard;
	struct ps_client *client;
	char **cglines; /* its cgroups for SessionOpen (the client keeps pointers) */
	size_t ncglines;
	struct trk *trk;
	struct rst_seized *seized;
	struct rst_dump_prep *prep; /* VmFlags read during pre-copy, not in the stop */
	struct haul_conv conv;
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
};

/* migrate.c */
bool haul_mig_stop_requested(const struct mig *m);
int haul_mig_fault_point(const struct mig *m, const char *point);

/* mig_precopy.c */
int haul_mig_send_round(struct mig *m, const struct trk_round *r, bool midpoint_fault);
int haul_mig_add_round_stat(struct haul_mig_result *res, const struct haul_mig_round *s);
int haul_mig_precopy(struct mig *m);

/* mig_switch.c */
int haul_mig_lazy_presend(struct mig *m);
int haul_mig_switchover(struct mig *m);

#endif
