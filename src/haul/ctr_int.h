/*
 * ctr_int.h - live migration of a runc container (`haul migrate
 * --container ID`): what ctr_migrate.c (the source), ctr_sink.c (the
 * target's sink), ctr_runc.c (running runc) and fchan*.c (the file
 * channel) share.  Private to src/haul.  DESIGN.md "Containers: live
 * migration".
 */
#ifndef HAUL_HAUL_CTR_INT_H
#define HAUL_HAUL_CTR_INT_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/wire.h"

/* ---- ctr_runc.c: the runtime, run as a command ---------------------------- */

/* What `runc state ID` says of a container. */
struct haul_runc_state {
	pid_t pid;
	char status[32]; /* "running", "paused", "stopped", "created" */
	char bundle[PATH_MAX];
	char rootfs[PATH_MAX];
};

/*
 * Run `@runtime [--root @root] @args...` (@args NULL-terminated), stdin
 * /dev/null, stdout into @out (up to @len - 1 bytes, NUL-terminated; NULL:
 * discarded), stderr appended to @log (NULL: into @out too).  Extra
 * environment: PATH with @path_first in front (NULL: unchanged).  Past
 * @timeout_ms (0: none) its process group is killed: -ETIMEDOUT.  0 when
 * it exited 0, -EIO when it failed (its output says why), -errno.
 */
int haul_runc(const char *runtime, const char *root, const char *const args[],
	      const char *path_first, const char *log, char *out, size_t len, int timeout_ms);
/* `runc state @id` into @st. 0, -ENOENT (no such container), -EBADMSG, -errno. */
int haul_runc_state(const char *runtime, const char *root, const char *id,
		    struct haul_runc_state *st);
/*
 * The string (or number, as text) of key @key of the first object level
 * of JSON @text, into @out.  0, -ENOENT, -ENAMETOOLONG.  Enough for
 * runc's flat `state` output; not a general JSON parser.
 */
int haul_json_flat(const char *text, const char *key, char *out, size_t len);
/*
 * The network namespace path the bundle's config.json gives the container
 * (namespaces[type network].path), into @out.  -ENOENT when it has none
 * (its host's namespace, or one runc makes); -errno.
 */
int haul_ctr_config_netns(const char *bundle, char *out, size_t len);
/* A container ID runc accepts and that is safe as a file name: [A-Za-z0-9_.+-], 1..127. */
bool haul_ctr_id_ok(const char *id);

/* ---- ctr_bolt.c, ctr_podman.c, ctr_podman_rst.c: podman's containers ------ */

/*
 * The value at @path (bucket names, then the key; NULL-terminated) of the
 * BoltDB file @db, NUL-terminated, into *@out (the caller frees it) and
 * @len.  0, -ENOENT (a name is missing), -EBADMSG (not a bbolt file, or
 * one being rewritten), -errno.
 */
int haul_bolt_get(const char *db, const char *const path[], char **out, size_t *len);

/* What the source knows of a podman container (`podman inspect`). */
struct haul_podman {
	char id[128]; /* podman's full ID: runc's too */
	char name[256];
	char userdata[PATH_MAX]; /* its bundle: config.json (spec.dump) */
	char upper[PATH_MAX];	 /* the overlay's upper dir: the rootfs's changes */
	char db[PATH_MAX];	 /* podman's state database: config.dump */
};

struct fchan;

/*
 * Resolve podman container @name with @podman (a command): its ID, init
 * pid (into @st, with bundle = its userdata, rootfs = the overlay's merged
 * dir), storage and state database.  Refused (logged, nothing touched,
 * -EOPNOTSUPP or -EINVAL): not running, not runc, a network other than
 * none or host, not overlay storage, no state database.  0 or -errno.
 */
int haul_podman_inspect(const char *podman, const char *name, struct haul_podman *pm,
			struct haul_runc_state *st);
/* config.dump and spec.dump into the target's bundle area.  0 or -errno (logged). */
int haul_podman_send_config(const struct haul_podman *pm, struct fchan *fc);
/*
 * Frozen: the rootfs's changes as podman exports them (rootfs-diff.tar of
 * what the upper dir holds, deleted.files of its whiteouts), made in @tmp
 * and sent to the bundle area.  A refusal names the path in @why.  0 or -errno.
 */
int haul_podman_send_diff(const struct haul_podman *pm, struct fchan *fc, const char *tmp,
			  char *why, size_t wl);
/*
 * The container's fds 0-2 that are pipes (to conmon, which stays) become
 * the restoring haul's fds of the same numbers, which runc's restore gives
 * conmon's new pipes (rst_external_add rules).  0 or -errno.
 */
int haul_podman_stdio(pid_t pid);
/*
 * `podman rm -f --time 0 @id`: killed at once and forgotten, and runc's
 * state of it (--root @runc_root, NULL: runc's default) deleted if podman's
 * cleanup left it.  0 or -errno (podman's).
 */
int haul_podman_rm(const char *podman, const char *runc_root, const char *id);

/* ---- fchan.c: the file channel ------------------------------------------- */

/* Record types (DESIGN.md "Containers: live migration", the file channel). */
enum fchan_type {
	FCHAN_BEGIN = 1,   /* path: container ID; data: session id (8, LE) + bundle path */
	FCHAN_DIR = 2,	   /* path; mode, uid, gid, mtime */
	FCHAN_FILE = 3,	   /* path; data: the contents */
	FCHAN_SYMLINK = 4, /* path; data: the link's target */
	FCHAN_DELETE = 5,  /* path (and everything below it) */
	FCHAN_SYNC = 6,	   /* everything so far on disk: the receiver answers */
	FCHAN_END = 7,	   /* the migration committed: keep the files */
	FCHAN_TYPE_MAX = 7,
};

/* Where a path lies on the target. */
enum fchan_area {
	FCHAN_BUNDLE = 0, /* the container's bundle (config.json, rootfs/) */
	FCHAN_IMAGES = 1, /* runc's images directory (haul-ctr.img, tmpfs archives) */
};

#define FCHAN_HDR_LEN  40
#define FCHAN_MAGIC    0x31434648u /* "HFC1" */
#define FCHAN_MAX_PATH 4096
#define FCHAN_CHUNK    (1u << 20)
#define FCHAN_CTX_C    "haul-fchan-client-v1"
#define FCHAN_CTX_S    "haul-fchan-server-v1"

struct fchan_hdr {
	uint32_t magic;
	uint8_t type, area;
	uint16_t reserved; /* 0 */
	uint32_t mode, uid, gid;
	uint32_t path_len;
	uint64_t data_len;
	int64_t mtime_ns;
};

void fchan_hdr_encode(const struct fchan_hdr *h, uint8_t out[FCHAN_HDR_LEN]);
/* Decode and check: 0, -EBADMSG (magic, reserved, type, area), -EMSGSIZE (lengths). */
int fchan_hdr_decode(const uint8_t in[FCHAN_HDR_LEN], struct fchan_hdr *h);
/* HMAC-SHA256(@key, @ctx || @cn || @sn) into @mac. */
void fchan_mac(const uint8_t key[WIRE_KEY_LEN], const char *ctx, const uint8_t cn[WIRE_NONCE_LEN],
	       const uint8_t sn[WIRE_NONCE_LEN], uint8_t mac[WIRE_MAC_LEN]);
/* Whole reads and writes on a blocking socket with a deadline of @ms each. */
int fchan_read_all(int fd, void *buf, size_t len, int ms);
int fchan_write_all(int fd, const void *buf, size_t len);

/* One entry of a tree as the source last sent it (fchan_tree.c). */
struct fchan_ent {
	char *path; /* relative to the tree's root, "" for the root */
	mode_t mode;
	off_t size;
	int64_t mtime_ns, ctime_ns;
	ino_t ino;
	bool seen; /* found again by the latest scan */
};

struct fchan_tree {
	char root[PATH_MAX];
	char prefix[64]; /* the name of the root on the target ("rootfs") */
	struct fchan_ent *e;
	size_t n, cap;
};

/* The source side of one channel. */
struct fchan {
	int fd;
	int timeout_ms;
	uint64_t bytes, files; /* sent so far */
};

/*
 * Connect to @to (HOST:PORT), authenticate with @key, and open the
 * transfer of container @id for migration @session (@bundle: the bundle
 * path the target must use, on shared storage; "" for a copied one).  A
 * refusal of the target (the ID exists there) is logged.  0 or -errno.
 */
int fchan_open(struct fchan *c, const char *to, const uint8_t key[WIRE_KEY_LEN], int timeout_ms,
	       uint64_t session, const char *id, const char *bundle);
void fchan_close(struct fchan *c);
/*
 * Send the file @path (of this host) as @name in @area.  0 or -errno;
 * -ENOENT (not logged, nothing sent) when @path does not exist.
 */
int fchan_send_file(struct fchan *c, enum fchan_area area, const char *path, const char *name);
/* One record @h for @name with @data (h->data_len bytes; NULL: none). 0 or -errno. */
int fchan_send_rec(struct fchan *c, const struct fchan_hdr *h, const char *name, const void *data);
/* Send record @type with @name and no data (SYNC: waits for the answer). 0 or -errno. */
int fchan_send_cmd(struct fchan *c, enum fchan_type type, const char *name);

/*
 * Scan @t's tree: a refusal (a device node, socket or fifo: the channel
 * carries directories, regular files and symlinks) names the path in
 * @why: -EOPNOTSUPP.  With @send, everything new or changed since the
 * last scan goes to @c, then what vanished is deleted there.  0 or -errno.
 */
int fchan_tree_sync(struct fchan_tree *t, struct fchan *c, bool send, char *why, size_t wl);
void fchan_tree_free(struct fchan_tree *t);

/* Remove @name in @dfd and everything below it (no symlink followed). 0 or -errno. */
int fchan_rm_rf(int dfd, const char *name);

/* ---- ctr_migrate.c: the source ------------------------------------------- */

struct haul_ctr_opts {
	const char *id;
	const char *runtime;  /* "runc" */
	const char *root;     /* runc --root; NULL: runc's default */
	const char *files_to; /* NULL: the page server's host, its port + 1 */
	bool shared;	      /* --shared-storage: the bundle is at the same path there */
	const char *podman;   /* --podman CMD: @id is a podman container's name or ID */
};

struct haul_ctr_mig;
struct haul_mig_opts;
struct haul_mig_result;

/*
 * Resolve and check container @co->id (nothing touched: a refusal is
 * logged and the container runs on), open the file channel, copy the
 * bundle while it runs, and set @o's pid, session id and on_frozen for
 * haul_migrate().  0 or -errno.
 */
int haul_ctr_mig_prepare(const struct haul_ctr_opts *co, struct haul_mig_opts *o,
			 struct haul_ctr_mig **out);
/* After haul_migrate(): committed, tell the target and `runc delete` here. 0 or -errno. */
int haul_ctr_mig_finish(struct haul_ctr_mig *c, const struct haul_mig_result *r);
void haul_ctr_mig_free(struct haul_ctr_mig *c);
/* ctr_sink.c: the last non-empty line of @path (an engine's error log), into @out. */
void haul_ctr_last_line(const char *path, char *out, size_t len);

/* ---- fchan_recv.c / ctr_sink.c: the target ------------------------------- */

/*
 * haul pageserver --containers DIR: the file channel listens on @listen
 * (ADDR:PORT) in a thread of its own, containers are restored with
 * @runtime (--root @root) from DIR/<session>/, and the page server's sink
 * restores the sessions the channel announced through runc.  0 or -errno.
 */
int haul_ctr_target_start(const char *dir, const char *listen, const uint8_t key[WIRE_KEY_LEN],
			  const char *runtime, const char *root);

/* A container announced on the file channel, waiting for (or in) its session. */
struct ctr_rx {
	uint64_t session;
	char id[128];
	char dir[PATH_MAX];    /* DIR/<session> */
	char bundle[PATH_MAX]; /* the bundle runc restores from */
	char images[PATH_MAX]; /* DIR/<session>/img */
	bool shared;	       /* the bundle is on shared storage: not ours to remove */
	bool synced;	       /* the last SYNC arrived: everything is on disk */
	bool ended;	       /* END: the migration committed */
	bool restored;	       /* runc restore ran: the container exists here */
	bool committed;	       /* the page session committed */
	bool podman;	       /* restored by podman restore --import (ctr_podman_rst.c) */
	int refs;
	struct ctr_rx *next;
};

/* The target's settings (fchan_recv.c), for the sink. */
struct ctr_target {
	char dir[PATH_MAX];
	char runtime[64];
	char root[PATH_MAX];
	char podman[PATH_MAX];	 /* --podman CMD: restores podman's containers */
	char criu_dir[PATH_MAX]; /* holds `criu`, a link to this haul */
};
extern struct ctr_target haul_ctr_target;

/*
 * ctr_podman_rst.c: a bundle that holds config.dump is a podman container's.
 * Restore it (`podman container restore --import` of an archive made of
 * the bundle and the images): its init pid into @pid; a failure says why
 * in @why.  0 or -errno.
 */
bool haul_podman_bundle(const char *bundle);
int haul_podman_restore(struct ctr_rx *rx, pid_t *pid, char *why, size_t wl);

/* The sink of haul pageserver --containers: rst_live_sink, or runc for announced containers. */
struct ps_sink_ops;
extern const struct ps_sink_ops haul_ctr_sink;

/* The registry: find (taking a reference) and drop; the last drop cleans up. */
struct ctr_rx *ctr_rx_get(uint64_t session);
void ctr_rx_put(struct ctr_rx *r);
void ctr_rx_lock(void);
void ctr_rx_unlock(void);

#endif
