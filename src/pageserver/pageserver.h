/*
 * pageserver.h - the page server (target side) and its client (source side).
 *
 * The server: one thread, one libev loop, one io_uring; several concurrent
 * connections, each an explicit state machine.  A migration ("session") may
 * use N connections ("streams"); the first stream opens the session, the
 * others join it by session id.  Received pages go either to a sink (a live
 * restore target, plugged in by `haul pageserver` from src/restore) or to a
 * page store (memory or an --images directory).
 *
 * The client: used by `haul migrate` on the source to open N authenticated
 * streams to a server and push layout, rounds of pages, the process state,
 * and the restore command.  Not thread-safe: one thread drives one client
 * (it runs a sender thread per stream internally).
 *
 * Changes since the first contract (all additive, old callers still build):
 *  - ps_client_opts gained `kind` (LIVE default, STORE, FETCH) and
 *    `session_id`; ps_client_fetch() reads pages back (lazy restore).
 *  - ps_server_opts gained `once`; ps_server_store().
 *  - Post-copy over the migration's streams: ps_session_info.session,
 *    ps_session_fetch() and ps_session_fetch_done() (target),
 *    ps_client_serve() (source).
 *  - Hybrid post-copy: ps_sink_ops.stale, ps_client_state_stale()
 *    (State.stale on the wire, offered with CAP_STALE).
 *  - ps_client_pages_v(): scattered ranges in shared batches.
 *  - Clocks across hosts: ps_client_opts.clocks, ps_session_info.has_clocks
 *    and the fields after it (SessionOpen 7-11).
 *  - Post-copy statistics to the source: ps_session_fetch_done_report()
 *    (target), ps_client_lazy_report() and ps_client_stats.serve_* (source);
 *    Ack.lazy on the wire.
 *  - Post-copy recovery: ps_client_reconnect(), ps_client_broken(),
 *    ps_client_server(), ps_client_fault_break(), ps_client_stats.reconnects
 *    (SessionJoin.resume on the wire); the server detaches a lazy session
 *    whose connection breaks after the resume instead of failing it.
 *  - Unless stated, functions return 0 or -errno.  A peer's error reply
 *    (an Error frame) comes back as its errno, logged with its reason.
 */
#ifndef HAUL_PAGESERVER_H
#define HAUL_PAGESERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/vma.h"

struct pstore;

#define PS_KEY_LEN 32

/*
 * Read a key file (at least 32 bytes; hashed down to PS_KEY_LEN).  The key
 * is root-equivalent on the target.  -EPERM when group or others may access
 * the file (chmod 600), -EINVAL when it is too short or has no entropy
 * (one repeated byte, < 96 bits by byte frequency), else -errno.  Logs why.
 */
int ps_key_load(const char *path, uint8_t key[PS_KEY_LEN]);

/* ---- the sink: where a live session's data goes ------------------------- */

struct ps_session_info {
	uint64_t session_id;
	int32_t pid; /* the process on the source (its PID in its own namespace) */
	const char *comm;
	const char *peer; /* "198.18.0.1:40312" */
	uint32_t nstreams;
	bool lazy; /* post-copy: pages will be requested, not pushed */
	/*
	 * The process's clocks as the open arrived (source clock + its time
	 * namespace offsets + half the Hello round trip), when the client sent
	 * them; boot_id equal to ours means the same host and clock, and then
	 * the process's offsets (timens_*) are exact.
	 */
	bool has_clocks;
	int64_t clock_monotonic_ns, clock_boottime_ns;
	bool has_boot_id;
	uint8_t boot_id[16];
	int64_t timens_monotonic_ns, timens_boottime_ns;
	/* LIVE: the process's cgroups, "controllers:path" (SessionOpen.cgroups) */
	char *const *cgroups;
	size_t ncgroups;
	/* LIVE: SessionOpen.apparmor_profiles, each once, valid during open() */
	char *const *apparmor_profiles;
	size_t napparmor_profiles;
	/* For ps_session_fetch() (post-copy); valid until the sink's close() returns. */
	struct ps_session *session;
	/* SessionOpen.move_address: ADDR/PREFIX strings, valid during open() */
	const char *const *move_addrs;
	size_t nmove_addrs;
	/*
	 * A process tree (SessionOpen.tree, .tree_session): the root's session
	 * carries the packed haul.img.Tree (valid during open()); every other
	 * session of the tree names the root's session id (0: none).
	 */
	const uint8_t *tree;
	size_t tree_len;
	uint64_t tree_session;
};

/* One TCP/UDP socket end of a migrating process (Restore.lock; the network lock). */
struct ps_net_end {
	int family; /* AF_INET or AF_INET6 */
	int proto;  /* IPPROTO_TCP or IPPROTO_UDP */
	uint8_t laddr[16], raddr[16];
	uint16_t lport, rport; /* host order; rport 0: listening or unconnected */
};

/*
 * Post-copy, target side: ask the source of a live session for @npages
 * (<= 1024) pages at @addr and wait for them in @buf.  Any thread except
 * the server's loop thread may call it (there it returns -EDEADLK), several
 * at once.  The source must be in ps_client_serve().  Returns 0,
 * -ECONNRESET when the session ended, -ETIMEDOUT when no reply came within
 * the server's stall timeout, -EIO when the source could not read them.
 * After the resume (a restored lazy session, not yet committed) a broken
 * connection does not end the session: it waits up to the stall timeout
 * for the source to rejoin (ps_client_reconnect), and so do the requests:
 * their deadline moves to the end of that wait, and a request sent again
 * after the rejoin gets a whole stall timeout for its reply.
 */
int ps_session_fetch(struct ps_session *s, uint64_t addr, uint32_t npages, void *buf);
/*
 * ps_session_fetch() for a fault: sent before the queued background
 * requests and, when the session has two streams or more, on stream 0,
 * which carries nothing else (the source serves each stream on its own
 * thread): the reply does not wait behind pushed pages.
 */
int ps_session_fetch_urgent(struct ps_session *s, uint64_t addr, uint32_t npages, void *buf);
/*
 * ps_session_fetch_urgent() over the session's fault lane, if the source
 * opened one (SessionJoin.lane): the request and its reply are written and
 * read on the caller's thread, not through the loop thread.  One caller at
 * a time: -EBUSY when another is using the lane, -ENOTCONN when there is
 * none (or it broke before: a lane that fails once is not used again);
 * either way the caller asks through ps_session_fetch_urgent().  Other
 * errors as ps_session_fetch(), after LANE_TIMEOUT_MS without a reply.
 */
int ps_session_lane_fetch(struct ps_session *s, uint64_t addr, uint32_t npages, void *buf);
/* Post-copy: every page has arrived; the source's ps_client_serve() returns 0. */
int ps_session_fetch_done(struct ps_session *s);
/*
 * Post-copy: the target cannot go on (its process died), so the session
 * fails with @err and @why, which the source's ps_client_serve() returns at
 * once instead of waiting for a request.  Any thread; once.
 */
int ps_session_fetch_fail(struct ps_session *s, int err, const char *why);

/*
 * What the target measured of a post-copy (rst_lazy_stats of its fault
 * server), carried to the source with the "every page arrived" notice
 * (Ack(PAGE_REQ).lazy, DESIGN "Wire format").  A field the peer did not
 * send reads 0.
 */
struct ps_lazy_report {
	uint64_t faults;	/* page faults answered */
	uint64_t fault_pages;	/* pages copied for faults (with fault-around) */
	uint64_t pushed_pages;	/* pages copied by the background push */
	uint64_t zero_filled;	/* of fault and pushed pages: all zeros, mapped not copied */
	uint64_t present_pages; /* lazy pages already in place at the resume (eager, pre-copy) */
	uint64_t total_pages;	/* pages of the lazy VMAs at the resume */
	uint64_t eexist_pages;	/* pages found present when copied (a race, not an error) */
	uint64_t fetched_bytes; /* page bytes asked of the source */
	uint64_t fault_p50_ns;	/* fault service time, from reading the fault to waking it */
	uint64_t fault_p99_ns;
	uint64_t fault_max_ns;
	uint64_t complete_ns; /* fault server start (the resume) to every page present */
	/*
	 * PS_LAZY_EXITED: the process exited by itself before every page
	 * arrived (@exit_status, a wait status); PS_LAZY_EXECED: it exec'd
	 * (it runs on, in new memory).  0: every page arrived.
	 */
	uint32_t ended;
	int32_t exit_status;
};
#define PS_LAZY_EXITED 1
#define PS_LAZY_EXECED 2

/*
 * ps_session_fetch_done() that also sends @r (NULL: none, the same as
 * ps_session_fetch_done).  @r is copied before return.  Any thread.
 */
int ps_session_fetch_done_report(struct ps_session *s, const struct ps_lazy_report *r);

/* A run of pages: @npages pages from @addr (page aligned). */
struct ps_range {
	uint64_t addr;
	uint64_t npages;
};

/*
 * The most stale ranges one state may carry: as varints a pair takes at most
 * 12 bytes (user addresses < 2^48, npages < 2^32), so 4096 pairs stay under
 * the client's 64 KiB message room (WIRE_MAX_MSG is 1 MiB, the client's
 * frame buffer is smaller).
 */
#define PS_MAX_STALE_RANGES 4096

/* The reply to a restore command. */
struct ps_restore_result {
	int32_t pid;   /* the restored process, as seen from the page server */
	int32_t err;   /* 0 or -errno */
	char msg[256]; /* a user-facing reason when err != 0 */
};

/*
 * All callbacks run on the server's loop thread, in arrival order within a
 * session; a round's pages all arrive before its round_end (the server keeps
 * a barrier across streams).  Each returns 0 or -errno; an error fails the
 * session (every stream of it is closed with that reason sent to the peer).
 */
struct ps_sink_ops {
	int (*open)(void *arg, const struct ps_session_info *info, void **sess);
	/* The full layout, sent before the first round and whenever it changes. */
	int (*layout)(void *sess, const struct haul_layout *l);
	/* @npages pages at @addr; @data NULL means they are all zero. */
	int (*pages)(void *sess, uint64_t addr, const void *data, uint32_t npages);
	/* Every page of round @round has arrived (pages of VMAs that vanished are gone with the layout). */
	int (*round_end)(void *sess, uint64_t round);
	/* The dumped process state (opaque to the page server: image.proto ProcessState). */
	int (*state)(void *sess, const void *blob, size_t len);
	/*
	 * Optional (hybrid post-copy; a lazy session only): pages already
	 * delivered that are stale, to be dropped and fetched after the
	 * resume; @complete: every other page of the lazy VMAs is delivered
	 * (or zero where none was), so only these need fetching (State.complete).
	 * Called with the state that named them, just before state(); @r is
	 * valid during the call.  Without it a state naming stale pages, or
	 * complete, fails the session with -EOPNOTSUPP.
	 */
	int (*stale)(void *sess, const struct ps_range *r, size_t n, bool complete);
	/* Resume the process. Fills @res; returns 0 even when @res->err says it failed. */
	int (*restore)(void *sess, struct ps_restore_result *res);
	/* The session ends: @committed once the source confirmed it killed its copy. */
	void (*close)(void *sess, bool committed);
	/*
	 * Optional: the socket ends the Restore command names (the network
	 * lock), called just before restore(); @e is valid during the call.
	 * An error fails the restore (the source rolls back).
	 */
	int (*lock)(void *sess, const struct ps_net_end *e, size_t n);
	/*
	 * Optional (LIVE): a deleted file the process maps privately, sent
	 * before the freeze (wire Ghost: a packed image MappedGhost with its
	 * content), so that the state may name it without its bytes.  1: kept,
	 * 0: declined (the state will carry it), -errno: fails the session.
	 */
	int (*ghost)(void *sess, const void *blob, size_t len);
};

/* ---- the server ---------------------------------------------------------- */

/* A resource kind a restorer can rebuild, and the version of its image message. */
struct ps_resource_cap {
	const char *kind; /* the image's name: an FdKind value name, "FD_PIPE" */
	uint32_t version;
};

struct ps_server_opts {
	const char *listen; /* "ADDR:PORT" */
	uint8_t key[PS_KEY_LEN];
	const char *images_dir; /* NULL: keep pages in memory */
	bool require_encrypt;
	int stall_timeout_ms;		/* a peer silent this long mid-frame is dropped */
	const struct ps_sink_ops *sink; /* NULL: LIVE sessions go to the page store too */
	void *sink_arg;
	bool once; /* return from ps_server_run() after one session ends */
	/* an authenticated connection (its session) silent this long is closed;
	 * 0: PS_IDLE_TIMEOUT_MS, < 0: never.  FETCH and post-copy sessions are exempt. */
	int idle_timeout_ms;
	/* announced in every SessionOk of a LIVE session (none: nothing announced) */
	const struct ps_resource_cap *caps;
	size_t ncaps;
};

struct ps_server;

int ps_server_new(const struct ps_server_opts *o, struct ps_server **out);
/* Run until SIGINT/SIGTERM or ps_server_stop(). 0 or -errno. */
int ps_server_run(struct ps_server *s);
void ps_server_stop(struct ps_server *s);
void ps_server_free(struct ps_server *s);
/* The bound port (useful with port 0). */
int ps_server_port(const struct ps_server *s);
/* The page store of the server (STORE sessions, and LIVE ones without a sink). */
struct pstore *ps_server_store(struct ps_server *s);

/* ---- the client ---------------------------------------------------------- */

enum ps_compress {
	PS_COMPRESS_AUTO = 0,
	PS_COMPRESS_LZ4,
	PS_COMPRESS_NONE
};

/*
 * LIVE: a migration, data goes to the server's sink.  STORE: pages go to
 * the server's page store, committed at every round barrier (checkpoint to
 * a remote server).  FETCH: read pages of a committed process (pid) back
 * with ps_client_fetch(); no rounds.
 */
enum ps_session_kind {
	PS_SESSION_LIVE = 0,
	PS_SESSION_STORE,
	PS_SESSION_FETCH
};

struct ps_client_opts {
	const char *to; /* "HOST:PORT" */
	uint8_t key[PS_KEY_LEN];
	unsigned nstreams; /* >= 1 */
	enum ps_compress compress;
	bool encrypt;
	bool lazy;
	uint64_t bandwidth; /* bytes/s cap, 0 = none */
	int32_t pid;
	const char *comm;
	int timeout_ms;		   /* per reply; 0: PS_STALL_TIMEOUT_MS */
	enum ps_session_kind kind; /* default LIVE */
	uint64_t session_id;	   /* 0: random */
	/*
	 * Send the process's clocks with the open (ps_session_info): ours plus
	 * these time-namespace offsets of the process, and our boot_id.
	 */
	bool clocks;
	int64_t timens_monotonic_ns, timens_boottime_ns;
	/* LIVE: SessionOpen.move_address, ADDR/PREFIX each (haul migrate --move-address) */
	const char *const *move_addrs;
	size_t nmove_addrs;
	/* LIVE: the process's cgroups, "controllers:path"; must outlive the client */
	char *const *cgroups;
	size_t ncgroups;
	/* LIVE, a tree: SessionOpen.tree (the root's; must outlive the client), .tree_session */
	const uint8_t *tree;
	size_t tree_len;
	uint64_t tree_session;
	/* LIVE: SessionOpen.apparmor_profiles (rst_apparmor_profiles); read by ps_client_new only */
	char *const *apparmor_profiles;
	size_t napparmor_profiles;
	/*
	 * When the server refuses the open or a join (ERROR), ps_client_new
	 * copies its reason here (NULL: not kept); written by ps_client_new only.
	 */
	char *refusal;
	size_t refusal_len;
};

struct ps_client;

/* Connect and authenticate every stream, open the session. 0 or -errno. */
int ps_client_new(const struct ps_client_opts *o, struct ps_client **out);
void ps_client_free(struct ps_client *c);

int ps_client_layout(struct ps_client *c, const struct haul_layout *l);
int ps_client_round_begin(struct ps_client *c, uint64_t round);
/*
 * The nice the target's page server may take for the rounds begun from now
 * on (RoundBegin.nice; cpuweight.h): > 0 while the process runs, 0 from the
 * freeze on.  Caller's thread only.
 */
void ps_client_set_nice(struct ps_client *c, int nice);
/*
 * Queue @npages pages at @addr from @data (contiguous); @zero, if not NULL,
 * marks all-zero pages (bit i = page i) so that they are elided.  The data
 * is copied or sent before return.  Spreads batches over the streams.
 */
int ps_client_pages(struct ps_client *c, uint64_t addr, const void *data, uint32_t npages,
		    const uint64_t *zero);
/*
 * ps_client_pages() for @n ranges whose data lies back to back at @data
 * (@zero: bit i = page i of all of them).  Ranges share batches (frames),
 * so a round of scattered single pages costs one hand-off per batch, not
 * per page.
 */
int ps_client_pages_v(struct ps_client *c, const struct ps_range *r, size_t n, const void *data,
		      const uint64_t *zero);
/* Flush, and wait until the server has every page of the round. */
int ps_client_round_end(struct ps_client *c, uint64_t round);
int ps_client_state(struct ps_client *c, const void *blob, size_t len);
/*
 * Between rounds: a deleted file the process maps (a packed image
 * MappedGhost with its content), for the target to keep until the state.
 * *@kept: the target kept it; false also when it takes none (no CAP_GHOST:
 * nothing is sent).  0 or -errno (the session failed).
 */
int ps_client_ghost(struct ps_client *c, const void *blob, size_t len, bool *kept);
/*
 * The target's own addresses (SessionOk.addresses, ADDR/PREFIX each) as the
 * session opened; *@out stays valid until ps_client_free().  Returns how
 * many (0 from an older target).
 */
size_t ps_client_target_addrs(const struct ps_client *c, const char *const **out);
/* The local address of the session's first stream (getsockname). 0 or -errno. */
struct sockaddr_storage;
int ps_client_local_addr(const struct ps_client *c, struct sockaddr_storage *ss);
/* The socket ends ps_client_restore() names for the target's network lock (copied). */
int ps_client_set_lock(struct ps_client *c, const struct ps_net_end *e, size_t n);
/*
 * The state plus @n (<= PS_MAX_STALE_RANGES, -E2BIG otherwise) stale
 * ranges: pages sent in earlier rounds but written again since, which the
 * target drops and fetches lazily (hybrid post-copy; a lazy LIVE session).
 * -EOPNOTSUPP, logged, when the server does not offer CAP_STALE (it would
 * ignore them).  Ranges must be page aligned, non-empty.  @complete (hybrid):
 * every other page of the lazy VMAs has been delivered in the rounds, so the
 * target fetches only these (State.complete); not sent to a server without
 * CAP_STALE, which then fetches every page it lacks, as before.
 */
int ps_client_state_stale(struct ps_client *c, const void *blob, size_t len,
			  const struct ps_range *stale, size_t n, bool complete);
/* Ask the target to resume the process; waits for its reply. */
int ps_client_restore(struct ps_client *c, struct ps_restore_result *res);
/*
 * LIVE: tell the target the source copy is dead, the session is committed.
 * STORE: commit what was staged since the last round (state, layout).
 */
int ps_client_commit(struct ps_client *c);
/*
 * Read @npages committed pages at @addr into @buf (npages <= 1024) with a
 * PAGE_REQ on stream 0.  Pages never stored read as zeros.  Any session
 * kind may fetch (FETCH, STORE; LIVE when the server has the pages).
 */
int ps_client_fetch(struct ps_client *c, uint64_t addr, uint32_t npages, void *buf);
/* The last committed round the server reported when the session opened. */
uint64_t ps_client_committed_round(const struct ps_client *c);
/*
 * The resource kinds the target announced when the session opened, in
 * *@caps (owned by the client); 0: none (an older target, which restores
 * the kinds of image version 3).
 */
size_t ps_client_caps(const struct ps_client *c, const struct ps_resource_cap **caps);

/*
 * Post-copy, source side: called for each page request of the target;
 * fill @buf with @npages pages at @addr.  0, or -errno (the request fails
 * on the target with -EIO).
 */
typedef int (*ps_serve_fn)(void *arg, uint64_t addr, uint32_t npages, void *buf);
/*
 * Serve the target's page requests on every stream (after
 * ps_client_restore() of a lazy session) until the target says every page
 * arrived (0), or the session ends or fails (-errno).  @idle_ms: give up
 * with -ETIMEDOUT after that long without a request (0: never).
 */
int ps_client_serve(struct ps_client *c, ps_serve_fn fn, void *arg, int idle_ms);
/*
 * After ps_client_serve() failed: whether it was the transport (a socket
 * reached EOF, was reset, or a send or receive failed or timed out) rather
 * than a refusal or a protocol error; then ps_client_reconnect() may
 * recover the session.  False after an idle timeout.
 */
bool ps_client_broken(const struct ps_client *c);
/*
 * Post-copy recovery, after ps_client_serve() failed with
 * ps_client_broken(): close every stream, connect and authenticate each
 * again and rejoin the session (SessionJoin.resume), retrying with backoff
 * (10 ms doubling to 1 s) for up to @timeout_ms (0: the reply timeout).
 * Then call ps_client_serve() again: the target re-sends what it had asked.
 * 0; -ENOENT when the server no longer has the session (it gave up waiting,
 * or failed), -ECONNREFUSED when no server listens (it died: so did the
 * session), -EACCES, -EPROTO: not retried; else the last try's error once
 * @timeout_ms is spent.  The caller's thread only, not while serving.
 */
int ps_client_reconnect(struct ps_client *c, int timeout_ms);
/* The server's "HOST:PORT", as given in ps_client_opts.to. */
const char *ps_client_server(const struct ps_client *c);
/*
 * Fault injection (tests, HAUL_FAULT=reset:serve:N): once ps_client_serve()
 * has answered @nreq requests, shut every stream's socket down
 * (shutdown(SHUT_RDWR)), as a reset would.  0 disarms.
 */
void ps_client_fault_break(struct ps_client *c, uint64_t nreq);
/* The same for the fault lane alone: shut it down once it has answered @nreq requests. */
void ps_client_fault_break_lane(struct ps_client *c, uint64_t nreq);

/*
 * After ps_client_serve() returned 0: what the target measured of the
 * post-copy (struct ps_lazy_report).  0, or -ENODATA when the target sent
 * no report (an older haul, or a sink that measures nothing).
 */
int ps_client_lazy_report(const struct ps_client *c, struct ps_lazy_report *out);

struct ps_client_stats {
	uint64_t bytes_sent; /* on the wire, all streams */
	uint64_t pages_sent;
	uint64_t zero_pages;
	uint64_t lz4_pages;
	uint64_t payload_bytes; /* payload bytes before encoding (pages * 4096) */
	double last_round_mbps; /* payload throughput of the last round (MB/s of pages) */
	/* ps_client_serve(): page replies sent and their wire bytes (also in bytes_sent) */
	uint64_t serve_replies;
	uint64_t serve_bytes;
	uint64_t serve_lane_replies; /* of serve_replies, those on the fault lane */
	unsigned reconnects;	     /* ps_client_reconnect() successes */
};
void ps_client_stats(const struct ps_client *c, struct ps_client_stats *st);

#endif
