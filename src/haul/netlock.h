/*
 * netlock.h - what a migration does to the network around the process:
 * the network lock (netlock.c), the process's inet sockets (netsock.c),
 * the service address that moves with it (addrmove.c), the --on-switch
 * hook (onswitch.c) and the survivor that undoes them if haul dies
 * (netguard.c).  Private to src/haul.  Unless stated, 0 or -errno; every
 * failure is logged where it is found.
 */
#ifndef HAUL_HAUL_NETLOCK_H
#define HAUL_HAUL_NETLOCK_H

#include <net/if.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One socket end of the moving process, as inet_diag reports it. */
struct haul_net_tuple {
	int family;	   /* AF_INET or AF_INET6 (v4-mapped IPv6 ends are AF_INET) */
	int proto;	   /* IPPROTO_TCP or IPPROTO_UDP */
	uint8_t laddr[16]; /* local address; all zero: any (a wildcard bind) */
	uint8_t raddr[16];
	uint16_t lport, rport; /* host order; rport 0: listening or unconnected */
	int fd;		       /* the fd in the process; -1 when unknown */
	int state;	       /* TCP_ESTABLISHED, TCP_LISTEN, ... (linux/tcp.h); UDP: 7 (close) */
	pid_t pid;	       /* the process whose @fd it is (of a set: the first that holds it) */
	/* as inet_diag named it, for a lookup of this one socket (netsock.c) */
	unsigned long ino;
	int diag_family;     /* the socket's own family (AF_INET6 for a v4-mapped end) */
	uint8_t diag_id[48]; /* struct inet_diag_sockid: ends, interface, cookie */
};

/* An address that moves: ADDR/PREFIX and, where it lives, its interface. */
struct haul_net_addr {
	int family;
	uint8_t addr[16];
	int prefix;
	int ifindex; /* 0: not (yet) found */
	char ifname[IF_NAMESIZE];
};

/* Longest text of a tuple or an address ("TCP [v6]:port <- [v6]:port"). */
#define HAUL_NET_TEXT 128

/* ---- netsock.c ------------------------------------------------------------ */

/*
 * The TCP and UDP sockets that @pid's fds hold (inet_diag over
 * NETLINK_SOCK_DIAG, matched by inode to /proc/PID/fd; IPv4 and IPv6).
 * *@out is malloc'd (NULL when none).  Sockets in other network namespaces
 * than haul's are not seen (inet_diag answers for the caller's): they are
 * left out, and that is logged.
 */
int haul_net_sockets(pid_t pid, struct haul_net_tuple **out, size_t *n);
/*
 * The same for a set of processes (a tree: @pids, host PIDs), each socket
 * once however many of them hold it (one inode), with the fd and pid of
 * the first process of @pids that holds it.  The processes must share one
 * network namespace (-EXDEV, logged naming the pids, otherwise).
 */
int haul_net_sockets_of(const pid_t *pids, size_t npids, struct haul_net_tuple **out, size_t *n);
/*
 * The same, read in two steps so that the freeze holds only the cheap one.
 * haul_net_snap_take reads them while the processes run (the inet_diag
 * dumps walk the whole TCP hash: ~3 ms each on a host with 256 K buckets).
 * haul_net_snap_again, at the freeze, lists the socket inodes again and,
 * when they are the same, asks inet_diag for each TCP socket by its ends and
 * cookie (a hash lookup) and dumps UDP (cheap) again; on any difference, or
 * when a socket's ends could change unseen (a TCP socket not connected nor
 * listening, an inet socket inet_diag did not list), it reads everything
 * again, and so does a set of more than HAUL_NET_LOOKUP_MAX TCP sockets
 * (a lookup each would cost more than the dumps).  *@reused says which.
 * @s keeps the result (s->t, s->n).
 */
struct haul_net_snap {
	struct haul_net_tuple *t;
	size_t n;
	unsigned long *ino; /* every socket inode of the set (any family), sorted */
	size_t nino;
	bool settled; /* no socket whose ends could change without its inode changing */
};
int haul_net_snap_take(const pid_t *pids, size_t npids, struct haul_net_snap *s);
int haul_net_snap_again(const pid_t *pids, size_t npids, struct haul_net_snap *s, bool *reused);
void haul_net_snap_free(struct haul_net_snap *s);
/* "TCP 198.18.0.100:6379 <- 198.18.0.3:51234" or "UDP [::]:53". */
void haul_net_tuple_str(const struct haul_net_tuple *t, char *buf, size_t len);
/* "198.18.0.100/24" (with @prefix >= 0) or "198.18.0.100". */
void haul_net_addr_str(int family, const uint8_t *addr, int prefix, char *buf, size_t len);
/* Parse "ADDR/PREFIX" (IPv4 or IPv6); -EINVAL when it is not one. */
int haul_net_addr_parse(const char *s, struct haul_net_addr *a);
/* Does @net/@prefix contain @addr (same family)? */
bool haul_net_covers(int family, const uint8_t *net, int prefix, const uint8_t *addr);

/*
 * Refuse before the freeze when a connected or listening socket would move
 * without its local address: each socket of @t whose (non-wildcard) local
 * address is neither among @moved nor among @target (the target's own
 * addresses, ADDR/PREFIX, as it reported them).  -EADDRNOTAVAIL with @why
 * naming the first such socket and what to do; 0 when all are there.
 * Loopback sockets move along with any target; but a connection on
 * loopback whose other end is not one of @t (a process that stays here)
 * has no peer there: -EADDRNOTAVAIL naming it and the remedy.
 */
int haul_net_check_local(const struct haul_net_tuple *t, size_t n,
			 const struct haul_net_addr *moved, size_t nmoved,
			 const struct haul_net_addr *target, size_t ntarget, char *why, size_t wl);

/* ---- netlock.c ------------------------------------------------------------ */

/* "haul-lock-<pid>-<id>": one table per migration (and per side). */
void haul_netlock_name(char *buf, size_t len, pid_t pid, uint64_t id);
/*
 * Take the lock named @name in haul's network namespace: an nftables
 * table (family inet) that drops, in prerouting and output, every TCP/UDP
 * packet of @t (both directions; listening and unconnected ends by local
 * address and port) and every TCP/UDP packet to or from an address of @a
 * (ICMP, ARP and neighbour discovery pass, so the address can be
 * announced and pinged).  It is recorded first in the registry
 * (HAUL_LOCK_DIR/netlock) with this process as its owner, so that
 * haul_netlock_reap() removes it if we die.  -EEXIST when a table of that
 * name exists.  Without @out only incoming packets are dropped: a
 * locally sent packet that a rule drops fails its sendto() with EPERM (UDP
 * sees it; TCP retransmits), so a lock held while the process runs drops
 * nothing it sends.
 */
int haul_netlock_take(const char *name, const struct haul_net_tuple *t, size_t n,
		      const struct haul_net_addr *a, size_t na, bool out);
/*
 * The same lock in two steps, so that the downtime holds only the second:
 * prepare installs the table (registered, -EEXIST as take) with its rules
 * and empty sets, which drop nothing, while the process still runs; fill
 * adds @t and @a to the sets at the freeze, in one transaction.  From the
 * prepare on, haul_netlock_lift removes it on every path.
 */
int haul_netlock_prepare(const char *name, bool out);
int haul_netlock_fill(const char *name, const struct haul_net_tuple *t, size_t n,
		      const struct haul_net_addr *a, size_t na);
/*
 * The lock @name outlives us (a checkpoint's): its registry entry names
 * the image @image (an absolute DIR/<id>) too, and the lock is kept while
 * that image's file netlock names it (rst_netlock_record), after this
 * process is gone; once the image is removed or replaced, the next reap
 * removes it.  0 or -errno (logged).
 */
int haul_netlock_own(const char *name, const char *image);
/* Remove it and its registry entry; 0 when it was not there. */
int haul_netlock_lift(const char *name);
/*
 * Whether a mount pins network namespace @ino (an nsfs bind mount, as
 * `ip netns add` makes, in haul's mount namespace): 1, 0, or -errno.
 */
int haul_netns_mounted(unsigned long long ino);
/*
 * Whether network namespace @ino is in use: a mount pins it, or a process
 * is in it that @skip (may be NULL) does not skip.  1, 0, or -errno (cannot
 * tell).
 */
int haul_netns_in_use(unsigned long long ino, bool (*skip)(pid_t pid, void *arg), void *arg);
/* Is a table @name in haul's network namespace? */
bool haul_netlock_exists(const char *name);
/*
 * Remove every registered table (of haul's network namespace) whose owner
 * is dead, and its entry.  Returns how many were removed, or -errno.
 */
int haul_netlock_reap(void);

/* ---- ckpt_netlock.c -------------------------------------------------------- */

/*
 * haul_ckpt_netlock_use: from now on, checkpoints of this process take the
 * network lock and restores lift the one their image keeps
 * (rst_netlock_set; src/restore/ckpt_lock.c).  haul_ckpt_netlock_done:
 * after the checkpoint, its lock lifted or kept by the image: the
 * survivor that lifts it if haul dies goes.
 */
void haul_ckpt_netlock_use(void);
void haul_ckpt_netlock_done(void);

/* ---- netreplay.c --------------------------------------------------------- */

/*
 * The TCP segments the lock drops, recorded while it holds and sent again
 * after it is lifted, so that peers need not wait for their retransmission
 * timeout.  @t/@n and @a/@na are the lock's socket ends and moving
 * addresses; they must outlive the recorder.  haul_replay_start() before
 * the lock is taken: 0, also when there is no TCP end to record (fd -1);
 * -errno (logged as a warning: the migration goes on without it).
 * haul_replay_send() after the lift: every recorded segment to a moving
 * address, and with !@moved_only also those of the lock's TCP ends, sent
 * again through a raw socket; returns how many, or -errno; the recorder is
 * closed.  haul_replay_stop() drops what was recorded.
 */
struct haul_replay {
	int fd; /* AF_PACKET recorder; -1: none */
	const struct haul_net_tuple *t;
	size_t n;
	const struct haul_net_addr *a;
	size_t na;
};
int haul_replay_start(struct haul_replay *r, const struct haul_net_tuple *t, size_t n,
		      const struct haul_net_addr *a, size_t na);
int haul_replay_send(struct haul_replay *r, bool moved_only);
void haul_replay_stop(struct haul_replay *r);
/*
 * close(@fd) on a detached thread: closing a packet socket (AF_PACKET)
 * waits for an RCU grace period (synchronize_net: 8-18 ms on a loaded
 * 2-core VM), which does not belong in a downtime.  -1 is ignored.
 */
void haul_close_later(int fd);

/* ---- addrmove.c ----------------------------------------------------------- */

/* Find the interface that holds @a (exact address and prefix); -EADDRNOTAVAIL if none. */
int haul_addr_find(struct haul_net_addr *a);
/* The interface whose own address covers @a's prefix; -ENETUNREACH if none. */
int haul_addr_find_subnet(struct haul_net_addr *a);
/* Add @a to a->ifindex (IPv6: IFA_F_NODAD); 0 also when it is already there. */
int haul_addr_add(const struct haul_net_addr *a);
/* Remove @a from a->ifindex; 0 also when it was not there. */
int haul_addr_del(const struct haul_net_addr *a);
/* Gratuitous ARP (request and reply) or an unsolicited NA (override) to ff02::1. */
int haul_addr_announce(const struct haul_net_addr *a);
/* Every address of this host's interfaces, ADDR/PREFIX; *@out malloc'd. */
int haul_addr_list(struct haul_net_addr **out, size_t *n);

/* ---- onswitch.c ----------------------------------------------------------- */

struct haul_switch_hook {
	const char *cmd;       /* NULL: no hook */
	pid_t pid;	       /* HAUL_PID */
	uint64_t id;	       /* HAUL_MIGRATION_ID */
	const char *side;      /* HAUL_SIDE: "source" or "target" */
	const char *addresses; /* HAUL_ADDRESSES: "A/P,B/Q" or "" */
	int timeout_ms;	       /* 0: HAUL_SWITCH_HOOK_TIMEOUT_MS */
};

/*
 * Run @h->cmd with `sh -c`, HAUL_SWITCH_PHASE=@phase and the other
 * variables in its environment, stdout/stderr to ours, and wait for it.
 * 0 (or no hook); -ECANCELED when it exited non-zero or was killed, and
 * -ETIMEDOUT when it outlived the timeout (then it is killed); logged.
 */
int haul_switch_hook_run(const struct haul_switch_hook *h, const char *phase);

/* ---- switch_sink.c -------------------------------------------------------- */

/*
 * The sink of `haul pageserver`: rst_live_sink with the target's part of
 * the switch around it.  Its open() takes the page server's --on-switch
 * CMD (or NULL) as its arg.
 */
struct ps_sink_ops;
extern const struct ps_sink_ops haul_switch_sink;
/* The sink inside it (default rst_live_sink; haul pageserver --containers: ctr_sink.c). */
void haul_switch_sink_inner(const struct ps_sink_ops *ops);

/* ---- netguard.c ----------------------------------------------------------- */

/*
 * The survivor of the switch, started before the freeze: a child that,
 * when its pipe closes without "done" (haul or the page server died),
 * lifts the lock @table if it exists and, once told the addresses moved
 * and while armed, puts them back as they were (@readd: the source adds
 * them again; else the target removes them).  In doubt (the target may run
 * the process), it lifts the lock and leaves the addresses alone.
 */
struct haul_netguard {
	pid_t pid;
	int fd;
};
int haul_netguard_start(struct haul_netguard *g, const char *table, const struct haul_net_addr *a,
			size_t na, bool readd);
int haul_netguard_moved(struct haul_netguard *g);
int haul_netguard_indoubt(struct haul_netguard *g);
int haul_netguard_rearm(struct haul_netguard *g);
/* haul undid (or completed) everything itself: the survivor exits quietly. */
void haul_netguard_stop(struct haul_netguard *g);

/* ---- ctr_netns.c: a step inside a container's network namespace ---------- */

/*
 * This thread into network namespace @nsfd (-1: stays where it is); *@back
 * gets haul's own for haul_netns_leave() (-1 when nothing changed), which
 * returns to it (and aborts if it cannot: nothing may run on in the wrong
 * namespace).  0 or -errno.
 */
int haul_netns_enter(int nsfd, int *back);
void haul_netns_leave(int back);
/* The same into @pid's network namespace; *@back -1 when it is this thread's already. */
int haul_netns_enter_pid(pid_t pid, int *back);
/*
 * The one interface other than lo that is up, into @a's ifindex and
 * ifname (a container's namespace: the engine's veth).  -ENODEV when there
 * is none or more than one; -errno.
 */
int haul_netns_sole_iface(struct haul_net_addr *a);
/*
 * The network namespace path of the container that page-server session
 * @session brings (its received config.json), into @out.  -ENOENT when the
 * session is no container's or the container shares its host's namespace.
 */
int haul_ctr_session_netns(uint64_t session, char *out, size_t len);

#endif
