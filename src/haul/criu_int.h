/*
 * criu_int.h - the criu-compatible entry point's private declarations
 * (criu_main.c, criu_swrk.c, criu_opts.c, criu_ctr.c, criu_stats.c).
 * Nothing outside src/haul includes this header.
 */
#ifndef HAUL_CRIU_INT_H
#define HAUL_CRIU_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "criu_rpc.pb-c.h"

/*
 * The CRIU interface level answered to VERSION and --version: runc 1.1 asks
 * for >= 3.0 (and 3.14/3.15/3.16 for features that are refused by option
 * anyway), go-criu parses "Version: X.Y".
 */
#define CRIU_COMPAT_MAJOR 3
#define CRIU_COMPAT_MINOR 17

/* Longest request accepted (a DUMP with hundreds of ext_mnt entries fits). */
#define CRIU_REQ_MAX (1 << 20)

/* Serve requests on the seqpacket socket @fd until one without keep_open. 0 or -errno. */
int criu_swrk(int fd);

/*
 * Check the options of a @type request: every option set that haul does
 * not implement for that request is named in @why.  0, or -EOPNOTSUPP.
 */
int criu_opts_check(Haul__Criu__ReqType type, const Haul__Criu__Options *o, char *why, size_t wl);

/* The RPC connection: the socket and whether the engine wants callbacks. */
struct criu_conn {
	int fd;
	bool notify;
};

/*
 * Ask the engine to run its hook @script for @pid (0: none) and wait for
 * its answer.  0, or -ECANCELED when it answered failure, or -errno.
 */
int criu_notify(struct criu_conn *c, const char *script, pid_t pid);

/*
 * DUMP of a container (or of any process): the namespaces and mounts of
 * @o->pid are recorded beside haul's image in the images directory
 * @imgfd, stats-dump goes into the work directory @wdir (where CRIU puts
 * it and podman reads it); the engine's hooks are called through @c.
 * 0 or -errno.
 */
int criu_ctr_dump(struct criu_conn *c, const Haul__Criu__Options *o, int imgfd, int wdir);

/*
 * RESTORE: the container of the images directory @imgfd; stats-restore
 * into the work directory @wdir.  *@pid: its PID here.  0 or -errno.
 */
int criu_ctr_restore(struct criu_conn *c, const Haul__Criu__Options *o, int imgfd, int wdir,
		     pid_t *pid);

/*
 * Write "stats-dump" (CRIU's image framing around a stats entry) into the
 * directory @dirfd: the times podman --print-stats shows.  0 or -errno.
 */
int criu_stats_write(int dirfd, uint64_t frozen_us, uint64_t memdump_us, uint64_t memwrite_us,
		     uint64_t pages_written, uint64_t pages_zero);

/* Write "stats-restore" into @dirfd (the work directory). 0 or -errno. */
int criu_stats_restore_write(int dirfd, uint64_t restore_us, uint64_t pages);
/* Write "inventory.img" (criu_stats.c says what) into @imgfd. 0 or -errno. */
int criu_inventory_write(int imgfd);

#endif
