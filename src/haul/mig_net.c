/*
 * mig_net.c - the source's network part of a live migration: the lock,
 * the address move and the --on-switch hook, at the points migrate.c and
 * mig_switch.c call it.
 *
 *  before anything is touched (haul_mig_net_prepare): each --move-address
 *      must be on an interface here (remembered: a rollback puts it back
 *      there); the migration id is picked (it is the session id, so both
 *      sides name the same migration);
 *  once the target answered (haul_mig_net_check): each moving address must
 *      be on a subnet of the target's and not be the one the session runs
 *      from, and each socket's local address must
 *      be moving or be the target's already; else refused before the
 *      freeze.  Then the survivor (netguard.c) is forked and, when the
 *      process has inet sockets or an address moves, the lock's table is
 *      installed with empty sets (haul_netlock_prepare), outside the
 *      downtime;
 *  after the freeze (haul_mig_net_down), before any socket state is read:
 *      a recorder of what the lock will drop (netreplay.c), the lock filled
 *      (the process's sockets as they are now, and the moving addresses:
 *      one small transaction; the whole table when none was prepared), the
 *      addresses removed, the source-down hook; the same socket ends go to
 *      the target with the restore command so that it locks them before it
 *      restores them;
 *  rollback (haul_mig_net_undo), after the process was released and thawed:
 *      the addresses back and announced, the lock lifted, what it dropped
 *      sent again to the process here, source-up;
 *  commit (haul_mig_net_done), after the source died: the lock lifted
 *      (the dead sockets sent nothing through it), what it dropped on the
 *      way to a moving address sent again (to the target), source-done;
 *  in doubt (haul_mig_net_indoubt_end): the lock lifted, the addresses left
 *      where the switch put them, and the operator told how to put them back.
 * Nothing is done (no table, no survivor) when the process has no inet
 * socket and no address moves.
 * A process in a network namespace other than haul's (a container's own,
 * with the engine's veth) has its sockets, its addresses and so its lock
 * there: haul's thread enters that namespace (kept open from the precheck
 * on: the process is gone at the commit) for each step and returns, and
 * the survivor is forked inside it.  The migration's own connection stays
 * in haul's namespace, where it was made.
 */
#define LOG_PREFIX "migrate: "
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/migrate_int.h"
#include "haul/netlock.h"

static bool same_netns(pid_t pid);

/* This thread into the process's network namespace, when it has its own (ctr_netns.c). */
static int net_enter(const struct mig_net *n, int *back)
{
	return haul_netns_enter(n->own_ns ? n->nsfd : -1, back);
}

static void net_leave(int back)
{
	haul_netns_leave(back);
}

static int prepare_addrs(struct mig *m)
{
	const struct haul_mig_opts *o = m->o;
	struct mig_net *n = &m->net;
	size_t len = 0;
	int back, ret;

	while (!n->id)
		if (getrandom(&n->id, sizeof(n->id), 0) != sizeof(n->id))
			return -errno;
	haul_netlock_name(n->table, sizeof(n->table), m->pid, n->id);
	if (o->nmove_addrs) {
		n->addrs = calloc(o->nmove_addrs, sizeof(*n->addrs));
		if (!n->addrs)
			return -ENOMEM;
	}
	for (size_t i = 0; i < o->nmove_addrs; i++) {
		struct haul_net_addr *a = &n->addrs[i];

		ret = haul_net_addr_parse(o->move_addrs[i], a);
		if (!ret)
			ret = net_enter(n, &back);
		if (!ret) {
			ret = haul_addr_find(a);
			net_leave(back);
		}
		if (ret) {
			snprintf(
				m->res->why, sizeof(m->res->why),
				"--move-address %s is not an address of %s (with that prefix); see "
				"'ip addr'%s, or leave it out",
				o->move_addrs[i],
				n->own_ns ? "the process's network namespace" : "this host",
				n->own_ns ? " there (nsenter --net=/proc/PID/ns/net)" : "");
			return ret == -EINVAL ? -EINVAL : -EADDRNOTAVAIL;
		}
		n->naddrs++;
		len += snprintf(n->addr_list + len,
				len < sizeof(n->addr_list) ? sizeof(n->addr_list) - len : 0, "%s%s",
				i ? "," : "", o->move_addrs[i]);
		if (len >= sizeof(n->addr_list))
			return -E2BIG;
	}
	n->hook = (struct haul_switch_hook){.cmd = o->on_switch,
					    .pid = o->ns_pid ? o->ns_pid : o->pid,
					    .id = n->id,
					    .side = "source",
					    .addresses = n->addr_list};
	return 0;
}

int haul_mig_net_prepare(struct mig *m)
{
	struct mig_net *n = &m->net;
	int ret;

	n->ng.fd = -1;
	n->ng.pid = -1;
	n->replay.fd = -1;
	if (!same_netns(m->pid)) {
		char p[64];

		snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)m->pid);
		n->nsfd = open(p, O_RDONLY | O_CLOEXEC);
		if (n->nsfd < 0)
			return -errno;
		n->own_ns = true;
	}
	ret = prepare_addrs(m);
	if (ret && n->own_ns) {
		close(n->nsfd);
		n->own_ns = false;
	}
	return ret;
}

static bool same_netns(pid_t pid)
{
	struct stat a, b;
	char p[64];

	snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
	return !stat(p, &a) && !stat("/proc/self/ns/net", &b) && a.st_ino == b.st_ino &&
	       a.st_dev == b.st_dev;
}

/*
 * The migration's own connection must not run from a moving address: the
 * lock would drop it and the removal would cut it at the freeze.
 */
static int not_our_own_address(struct mig *m)
{
	const struct mig_net *n = &m->net;
	struct sockaddr_storage ss;
	const uint8_t *a;
	int fam;

	if (!n->naddrs || ps_client_local_addr(m->client, &ss))
		return 0;
	fam = ss.ss_family;
	a = fam == AF_INET ? (const uint8_t *)&((struct sockaddr_in *)&ss)->sin_addr
			   : (const uint8_t *)&((struct sockaddr_in6 *)&ss)->sin6_addr;
	for (size_t i = 0; i < n->naddrs; i++) {
		if (n->addrs[i].family != fam ||
		    memcmp(n->addrs[i].addr, a, fam == AF_INET ? 4 : 16))
			continue;
		snprintf(m->res->why, sizeof(m->res->why),
			 "--move-address %s is the address haul reaches %s from: the lock and "
			 "the move would cut the migration itself; give this host another address "
			 "towards %s (a route with 'src ADDR') and migrate again",
			 m->o->move_addrs[i], m->o->to, m->o->to);
		return -EADDRINUSE;
	}
	return 0;
}

int haul_mig_net_check(struct mig *m)
{
	struct mig_net *n = &m->net;
	const char *const *ts;
	size_t nt = ps_client_target_addrs(m->client, &ts);
	struct haul_net_addr *target = calloc(nt ? nt : 1, sizeof(*target));
	struct haul_net_tuple *socks = NULL;
	size_t nsocks = 0, ntarget = 0;
	int back, ret = 0;

	if (!target)
		return -ENOMEM;
	for (size_t i = 0; i < nt; i++)
		if (!haul_net_addr_parse(ts[i], &target[ntarget]))
			ntarget++;
	for (size_t i = 0; i < n->naddrs && !ret; i++) {
		bool covered = false;

		for (size_t j = 0; j < ntarget && !covered; j++)
			covered = target[j].family == n->addrs[i].family &&
				  target[j].prefix <= n->addrs[i].prefix &&
				  haul_net_covers(target[j].family, target[j].addr,
						  target[j].prefix, n->addrs[i].addr);
		if (!covered) {
			snprintf(m->res->why, sizeof(m->res->why),
				 "--move-address %s: %s has no interface on that subnet; give one "
				 "of its interfaces an address there first, or use --on-switch for "
				 "a routed setup",
				 m->o->move_addrs[i], m->o->to);
			ret = -ENETUNREACH;
		}
	}
	if (!ret)
		ret = not_our_own_address(m);
	if (!ret)
		ret = haul_mig_sockets(m, &socks, &nsocks);
	if (!ret)
		ret = haul_net_check_local(socks, nsocks, n->addrs, n->naddrs, target, ntarget,
					   m->res->why, sizeof(m->res->why));
	free(socks);
	free(target);
	if (ret)
		return ret;
	/* the survivor, forked now (a fork in the downtime would lengthen it), where the lock is */
	ret = net_enter(n, &back);
	if (ret)
		return ret;
	ret = haul_netguard_start(&n->ng, n->table, n->addrs, n->naddrs, true);
	if (ret)
		pr_err_r(ret, "cannot start the network survivor of pid %d", m->pid);
	n->active = !ret;
	/*
	 * The lock's table now, its sets empty (it drops nothing yet): at the
	 * freeze only its elements go in.  A host that cannot lock refuses here,
	 * before the source is touched.
	 */
	if (!ret && (nsocks || n->naddrs)) {
		ret = haul_netlock_prepare(n->table, true);
		n->locked = n->prepared = !ret;
		if (ret)
			snprintf(m->res->why, sizeof(m->res->why),
				 "cannot install the network lock for pid %d (nftables)", m->pid);
	}
	net_leave(back);
	return ret;
}

void haul_mig_net_presnap(struct mig *m)
{
	struct mig_net *n = &m->net;

	haul_net_snap_free(&n->snap);
	if (n->prepared && haul_mig_sockets_snap(m, &n->snap, false, NULL))
		haul_net_snap_free(&n->snap); /* read at the freeze then */
}

/* The sockets as they are at the freeze: the snapshot verified, else read again. */
static int sockets_now(struct mig *m, bool *reused)
{
	struct mig_net *n = &m->net;
	int ret;

	*reused = false;
	free(n->socks);
	n->socks = NULL;
	n->nsocks = 0;
	if (!n->snap.ino)
		return haul_mig_sockets(m, &n->socks, &n->nsocks);
	ret = haul_mig_sockets_snap(m, &n->snap, true, reused);
	n->socks = n->snap.t; /* ours now */
	n->nsocks = n->snap.n;
	n->snap.t = NULL;
	haul_net_snap_free(&n->snap);
	return ret;
}

int haul_mig_net_down(struct mig *m)
{
	struct mig_net *n = &m->net;
	struct ps_net_end *ends = NULL;
	double t0 = haul_now_ms(), t_read, t_fill, t_addr;
	bool reused;
	int back, ret;

	/* the sockets as they are at the freeze (connections come and go before it) */
	ret = sockets_now(m, &reused);
	if (ret)
		return ret;
	t_read = haul_now_ms();
	if (!n->nsocks && !n->naddrs && !n->hook.cmd)
		return 0;
	ret = net_enter(n, &back);
	if (ret)
		return ret;
	if (n->nsocks || n->naddrs) {
		/* recording before the lock: a segment it drops is sent again after it */
		haul_replay_start(&n->replay, n->socks, n->nsocks, n->addrs, n->naddrs);
		ret = n->prepared ? haul_netlock_fill(n->table, n->socks, n->nsocks, n->addrs,
						      n->naddrs)
				  : haul_netlock_take(n->table, n->socks, n->nsocks, n->addrs,
						      n->naddrs, true);
		n->locked = n->prepared || !ret; /* a prepared table is there, filled or not */
	}
	t_fill = haul_now_ms();
	if (!ret && n->naddrs && n->active)
		haul_netguard_moved(
			&n->ng); /* before the first removal: a re-add of one there is 0 */
	for (size_t i = 0; !ret && i < n->naddrs; i++) {
		ret = haul_addr_del(&n->addrs[i]);
		if (!ret)
			n->removed = i + 1;
	}
	net_leave(back);
	if (ret)
		return ret;
	t_addr = haul_now_ms();
	ends = calloc(n->nsocks ? n->nsocks : 1, sizeof(*ends));
	if (!ends)
		return -ENOMEM;
	for (size_t i = 0; i < n->nsocks; i++) {
		const struct haul_net_tuple *t = &n->socks[i];

		ends[i] = (struct ps_net_end){.family = t->family,
					      .proto = t->proto,
					      .lport = t->lport,
					      .rport = t->rport};
		memcpy(ends[i].laddr, t->laddr, 16);
		memcpy(ends[i].raddr, t->raddr, 16);
	}
	ret = ps_client_set_lock(m->client, ends, n->nsocks);
	free(ends);
	if (ret)
		return ret;
	pr_debug("pid %d lock: %zu sockets %s %.2f ms, recorder and fill %.2f, addresses %.2f, "
		 "told the target %.2f",
		 m->pid, n->nsocks, reused ? "verified" : "read", t_read - t0, t_fill - t_read,
		 t_addr - t_fill, haul_now_ms() - t_addr);
	/*
	 * Before the commit point: a failing hook rolls the migration back, and
	 * source-up runs then too (the hook may have done part of its work).
	 */
	n->hook_down = true;
	ret = haul_switch_hook_run(&n->hook, "source-down");
	if (ret)
		snprintf(m->res->why, sizeof(m->res->why), "the source-down hook failed");
	return ret;
}

void haul_mig_net_indoubt(struct mig *m, bool indoubt)
{
	if (!m->net.active)
		return;
	if (indoubt)
		haul_netguard_indoubt(&m->net.ng);
	else
		haul_netguard_rearm(&m->net.ng);
}

static void net_release(struct mig_net *n)
{
	if (n->own_ns)
		close(n->nsfd);
	n->own_ns = false;
	haul_replay_stop(&n->replay);
	haul_netguard_stop(&n->ng);
	free(n->socks);
	n->socks = NULL;
	haul_net_snap_free(&n->snap);
	free(n->addrs);
	n->addrs = NULL;
	n->active = false;
}

void haul_mig_net_undo(struct mig *m)
{
	struct mig_net *n = &m->net;
	int back;

	/* the process runs again here: its address first, then its packets */
	if (!net_enter(n, &back)) {
		for (size_t i = 0; i < n->removed; i++)
			if (!haul_addr_add(&n->addrs[i]))
				haul_addr_announce(&n->addrs[i]);
		n->removed = 0;
		if (n->locked && !haul_netlock_lift(n->table))
			n->locked = false;
		/* what the peers sent meanwhile, to the process that runs here again */
		if (!n->locked)
			haul_replay_send(&n->replay, false);
		net_leave(back);
	}
	if (n->hook_down)
		haul_switch_hook_run(&n->hook, "source-up"); /* reported, nothing to undo */
	n->hook_down = false;
	net_release(n);
}

void haul_mig_net_done(struct mig *m)
{
	struct mig_net *n = &m->net;
	int back;

	if (!net_enter(n, &back)) {
		if (n->locked && !haul_netlock_lift(n->table))
			n->locked = false;
		/*
		 * What the peers sent to the moving addresses meanwhile, on to the
		 * target, which has them now (no replay to an address that stays: the
		 * dead process's sockets are gone here, and a reset would answer it).
		 */
		if (!n->locked)
			haul_replay_send(&n->replay, true);
		net_leave(back);
	}
	if (n->hook_down)
		haul_switch_hook_run(&n->hook, "source-done");
	net_release(n);
}

void haul_mig_net_indoubt_end(struct mig *m)
{
	struct mig_net *n = &m->net;
	char s[64];
	int back;

	if (n->locked && !net_enter(n, &back)) {
		if (!haul_netlock_lift(n->table))
			n->locked = false;
		net_leave(back);
	}
	for (size_t i = 0; i < n->removed; i++) {
		haul_net_addr_str(n->addrs[i].family, n->addrs[i].addr, n->addrs[i].prefix, s,
				  sizeof(s));
		pr_err("%s stays removed from %s here (it may serve the process on %s); if you "
		       "thaw the source instead, put it back: ip addr add %s dev %s",
		       s, n->addrs[i].ifname, m->o->to, s, n->addrs[i].ifname);
	}
	n->removed = 0;
	net_release(n);
}
