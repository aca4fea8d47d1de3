/*
 * criu_int.h - the criu-compatible entry point's private declarations
 * (criu_main.c, criu_swrk.c, criu_opts.c, criu_ctr.c, criu_stats.c).
 * Nothing outside src/haul includes this header.
 */
#ifndef HAUL_CRIU_INT_H
#define HAUL_CRIU_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "criu_rpc.pb-c.h"
#include "ctr_image.pb-c.h"

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

/* ---- pre-dump rounds (criu_predump.c, trackd.c) ------------------------- */

#define TRACKD_IDLE_S	 900		  /* a tracker no request reached for 15 min ends */
#define TRACKD_CHUNK	 256		  /* pages per DATA frame (1 MiB) */
#define TRACKD_IDENT_MAX (PATH_MAX + 128) /* an image's identity: its path */

/*
 * Start the tracker daemon of @pid (trackd.c says what it is) and wait
 * until it tracks and listens.  0 or -errno, logged.
 */
int trackd_start(pid_t pid);
/* Connect to the tracker daemon of @pid: -ENOENT when there is none. */
int trackd_connect(pid_t pid, int *fd);
/* The image committed last from its rounds ("" : none, or rounds since). 0 or -errno. */
int trackd_status(int fd, char *ident, size_t len);
/*
 * One round: its layout into *@l (released first), then @lfn with it,
 * then @fn gets each range, @data NULL for ranges whose contents are gone,
 * else the pages (valid during the call).  *@round: its number.  0, a
 * callback's error, or -errno.
 */
struct haul_layout;
typedef int (*trackd_layout_fn)(void *arg, const struct haul_layout *l);
typedef int (*trackd_page_fn)(void *arg, uint64_t addr, const void *data, uint32_t npages);
int trackd_round(int fd, struct haul_layout *l, trackd_layout_fn lfn, trackd_page_fn fn, void *arg,
		 uint64_t *round);
/* The rounds since the last commit are image @ident now. 0 or -errno. */
int trackd_commit(int fd, const char *ident);
/* Ask the daemon to end. 0 or -errno. */
int trackd_quit(int fd);
/* `haul ps`: the live tracker daemons, after the workloads. */
void trackd_list(FILE *out);

/*
 * PRE_DUMP: the memory of @o->pid into the images directory @imgfd (a
 * page image without state), from the rounds of its tracker daemon, which
 * stays; with parent_img, only what changed since that image.  0 or -errno.
 */
int criu_predump(struct criu_conn *c, const Haul__Criu__Options *o, int imgfd, int wdir);

struct criu_chain;
struct rst_ckpt;
/*
 * A DUMP with parent_img (or track_mem and leave_running) in @dir: the
 * pages come from the tracker daemon's rounds (criu_chain_round, one while
 * it runs, one stopped), parent.img names the parent when it is still the
 * daemon's last image (criu_chain_link, before the commit), and the daemon
 * learns the new image (criu_chain_committed).  *@out NULL: dump every page
 * as usual (no usable tracker, the reason logged).  0 or -errno.
 */
int criu_chain_open(const Haul__Criu__Options *o, const char *dir, const char *id, bool keep,
		    struct criu_chain **out);
int criu_chain_round(struct criu_chain *ch, struct rst_ckpt *ck);
int criu_chain_link(struct criu_chain *ch, struct rst_ckpt *ck);
void criu_chain_committed(struct criu_chain *ch);
void criu_chain_free(struct criu_chain *ch);
/* criu_ctr.c: the container's stdio pipes as external fds (descriptors.json). */
int criu_stdio_rules(int imgfd, const Haul__Criu__Options *o, bool restore);
/* The container record (RST_CTR_FILE) into images directory @imgfd, synced.  0 or -errno. */
int criu_ctr_write_record(int imgfd, const Haul__Ctr__Container *rec);

#endif
