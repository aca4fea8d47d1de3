/*
 * ckpt_netlock.c - the network lock of `haul checkpoint` and `haul
 * restore`: the rst_netlock_ops the restorer calls (src/restore/ckpt_lock.c
 * says when, and what the image keeps).
 *
 * take: the sockets of the stopped processes (haul_net_sockets_of): their
 * TCP ends (connections and listeners), or with --leave-running only the
 * connections whose two ends are both theirs, locked in both directions by
 * one nftables table (netlock.c).  A survivor
 * (netguard.c) lifts it if this haul dies before it is kept or lifted; a
 * lock the checkpoint leaves behind is handed to the image in the registry
 * (haul_netlock_own), so that no reaper removes it while the image names
 * it.  lift: remove the table (a failed or --leave-running checkpoint, or
 * the restore of the image).
 *
 * Processes in another network namespace than haul's are locked in theirs
 * (each step enters it and returns), as a migration does; the restore
 * lifts the lock when it runs in that namespace (ckpt_lock.c).
 */
#define LOG_PREFIX "netlock: "
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/injlog.h"
#include "common/log.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"
#include "restore/restore.h"

static struct haul_netguard guard = {.pid = -1, .fd = -1};
/* the network namespace the checkpoint's lock is in (its processes'); -1: haul's own */
static int lock_ns = -1;

/* Whether TCP end @a's peer is the end @b (both ends in the set). */
static bool peers(const struct haul_net_tuple *a, const struct haul_net_tuple *b)
{
	size_t alen = a->family == AF_INET ? 4 : 16;

	return a->proto == IPPROTO_TCP && b->proto == IPPROTO_TCP && a->family == b->family &&
	       a->rport && a->rport == b->lport && a->lport == b->rport &&
	       !memcmp(a->raddr, b->laddr, alen) && !memcmp(a->laddr, b->raddr, alen);
}

/*
 * Keep in @t only its TCP ends; their new count.  A lock that outlives the
 * checkpoint holds what a RST would break (connections) and what a client
 * would be refused (listeners) until the restore: a UDP end, unconnected
 * or connected, loses its datagrams either way, and its port, often an
 * ephemeral one, may be given to another program meanwhile, whose traffic
 * the lock would then drop.
 */
static size_t tcp_only(struct haul_net_tuple *t, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (t[i].proto == IPPROTO_TCP)
			t[k++] = t[i];
	return k;
}

/* Keep in @t only the connections whose peer is in @t too; their new count. */
static size_t inner_pairs(struct haul_net_tuple *t, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++) {
		bool pair = false;

		for (size_t j = 0; j < n && !pair; j++)
			pair = j != i && peers(&t[i], &t[j]);
		if (pair)
			t[k++] = t[i];
	}
	return k;
}

/* The lock of @t in the current network namespace (take, below). */
static int take_here(const pid_t *pids, size_t n, bool leave_running, const char *image, char *name,
		     size_t len)
{
	struct haul_net_tuple *t = NULL;
	uint64_t id = 0;
	size_t nt = 0;
	int ret = haul_net_sockets_of(pids, n, &t, &nt);

	if (ret)
		return ret; /* logged, naming the pid */
	nt = leave_running ? inner_pairs(t, nt) : tcp_only(t, nt);
	if (!nt)
		goto out;
	if (getrandom(&id, sizeof(id), 0) != sizeof(id))
		id = (uint64_t)haul_now_ms();
	haul_netlock_name(name, len, pids[0], id);
	/* its survivor first (forked here: in this namespace), so no table outlives a haul */
	ret = haul_netguard_start(&guard, name, NULL, 0, false);
	if (!ret) {
		injlog_companion(guard.pid); /* no process continued before it lifts the lock */
		ret = haul_netlock_take(name, t, nt, NULL, 0, true);
		if (ret)
			pr_err("pid %d runs on; without the lock, 'haul checkpoint --no-network-lock' "
			       "checkpoints it (a peer that sends before the restore resets its "
			       "connection)",
			       (int)pids[0]);
	}
	/* from the image's commit on, the lock is the image's (until the restore) */
	if (!ret && !leave_running) {
		ret = haul_netlock_own(name, image);
		if (ret)
			haul_netlock_lift(name);
	}
	if (ret) {
		injlog_companion(0);
		haul_netguard_stop(&guard);
		name[0] = '\0';
	}
out:
	free(t);
	return ret;
}

/* Every process of @pids in @pids[0]'s network namespace (a tree comes back in one). */
static int one_netns(const pid_t *pids, size_t n)
{
	struct stat a, b;
	char p[64];

	snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pids[0]);
	if (stat(p, &a))
		return 0; /* gone: the dump says so */
	for (size_t i = 1; i < n; i++) {
		snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pids[i]);
		if (stat(p, &b) || (a.st_ino == b.st_ino && a.st_dev == b.st_dev))
			continue;
		pr_err("pid %d is in another network namespace than pid %d of its tree, and a tree "
		       "is restored in one: not checkpointed, every process runs on",
		       (int)pids[i], (int)pids[0]);
		return -EOPNOTSUPP;
	}
	return 0;
}

/* rst_netlock_ops.take: in the processes' network namespace, where their sockets are. */
static int take(const pid_t *pids, size_t n, bool leave_running, const char *image, char *name,
		size_t len)
{
	int back = -1, ret;

	name[0] = '\0';
	if (!n)
		return 0;
	ret = one_netns(pids, n);
	if (ret)
		return ret;
	ret = haul_netns_enter_pid(pids[0], &back);
	if (ret) {
		pr_err_r(ret, "cannot enter the network namespace of pid %d", (int)pids[0]);
		return ret;
	}
	ret = take_here(pids, n, leave_running, image, name, len);
	/* a lift of this lock (a failed or --leave-running checkpoint) goes there too */
	if (!ret && name[0] && back >= 0)
		lock_ns = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
	haul_netns_leave(back);
	return ret;
}

/* The survivor's part is over: the lock is lifted, or the committed image's. */
static void guard_done(void)
{
	if (guard.pid > 0) {
		injlog_companion(0);
		haul_netguard_stop(&guard);
	}
}

/* rst_netlock_ops.lift: in the namespace it was taken in (a restore's: haul's own). */
static int lift(const char *name)
{
	int back = -1, ret = lock_ns >= 0 ? haul_netns_enter(lock_ns, &back) : 0;

	if (ret) {
		pr_err_r(ret, "cannot enter the network namespace of the lock %s to lift it", name);
		return ret;
	}
	ret = haul_netlock_lift(name);
	haul_netns_leave(back);
	if (!ret)
		guard_done();
	return ret;
}

/* rst_netlock_ops.keep: the image's from now on; a haul that dies must not lift it. */
static void keep(const char *name)
{
	(void)name;
	guard_done();
}

void haul_ckpt_netlock_use(void)
{
	static const struct rst_netlock_ops ops = {.take = take, .lift = lift, .keep = keep};

	rst_netlock_set(&ops);
}

void haul_ckpt_netlock_done(void)
{
	/* lifted, or kept by the committed image: the survivor has nothing left to do */
	guard_done();
	if (lock_ns >= 0)
		close(lock_ns);
	lock_ns = -1;
}
