/*
 * switch_sink.c - the target's network part of a live migration: a sink
 * (ps_sink_ops) around the restore sink (rst_live_sink) that `haul
 * pageserver` serves live sessions with.
 *
 *  open:    the moving addresses (SessionOpen.move_address) are read (the
 *           source refuses before the freeze one that falls in no subnet of
 *           ours: it has our addresses from SessionOk.addresses); the
 *           survivor (netguard.c) is forked, outside any downtime;
 *  lock:    (the restore command, before anything of the process exists
 *           here) the lock, incoming packets only (a peer's segment before
 *           its socket exists here would be answered by a reset; what the
 *           resumed process sends must not fail with EPERM before the lift),
 *           on the socket ends the source named and on the moving
 *           addresses, a recorder of what it drops (netreplay.c), each
 *           address added to the interface whose own address covers its
 *           prefix (IPv6 without DAD) and announced, the target-prepare
 *           hook; a failure undoes these and the restore is refused, so the
 *           source rolls back;
 *  restore: the process is restored and resumed (its sockets bound to the
 *           address just added); then the lock is lifted, what it dropped
 *           sent again to the sockets, the addresses announced once more,
 *           the target-up hook run (its failure is reported: the process
 *           runs already); the survivor is told "in doubt";
 *  close:   committed: done.  Not committed (the restore failed or the
 *           source never committed, and the inner sink killed the copy):
 *           locked both ways before the kill (its sockets must close
 *           unseen), the addresses removed, the lock lifted, target-abort.
 * The hook is the page server's own --on-switch: the target's operator
 * decides what runs on the target, not the source's.
 * A container with a network namespace of its own (its config.json names
 * one: the engine made it here, with its veth, before the migration;
 * ctr_netns.c) has the lock, the recorder and the addresses inside that
 * namespace: each step enters it and returns; an address goes to the
 * interface covering its subnet there, else to the namespace's only
 * interface besides lo.  The restore itself (runc) and the hook run in the
 * page server's own.
 */
#define LOG_PREFIX "pageserver: "
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"
#include "pageserver/pageserver.h"
#include "restore/restore.h"

struct sw_sess {
	void *inner;
	pid_t pid;
	struct haul_net_addr *addrs; /* every moving address (the lock, HAUL_ADDRESSES) */
	size_t naddrs;
	struct haul_net_addr *mine; /* those not here before: added, and removed on undo */
	size_t nmine;
	char addr_list[256];
	char table[64];
	struct haul_netguard ng;
	struct haul_switch_hook hook;
	bool locked, prepared, resumed;
	size_t added;
	struct haul_net_tuple *ends; /* the lock's socket ends, for a relock */
	size_t nends;
	struct haul_replay replay; /* what the lock drops, delivered after the lift */
	double lock_ms;		   /* sw_lock's time, for the debug line of the phases */
	int nsfd;		   /* the container's own network namespace, or -1 (ctr_netns.c) */
};

static const struct ps_sink_ops *inner = &rst_live_sink;

void haul_switch_sink_inner(const struct ps_sink_ops *ops)
{
	inner = ops;
}

static void sw_free(struct sw_sess *s)
{
	if (s->nsfd >= 0)
		close(s->nsfd);
	haul_replay_stop(&s->replay);
	haul_netguard_stop(&s->ng);
	free(s->ends);
	free(s->mine);
	free(s->addrs);
	free(s);
}

/* The interface @a goes to: on its subnet, or in a container's namespace the engine's veth. */
static int sw_iface(const struct sw_sess *s, struct haul_net_addr *a)
{
	int ret = haul_addr_find_subnet(a);

	return ret && s->nsfd >= 0 ? haul_netns_sole_iface(a) : ret;
}

static int sw_addrs(struct sw_sess *s, const struct ps_session_info *info)
{
	size_t len = 0;

	s->addrs = calloc(info->nmove_addrs ? info->nmove_addrs : 1, sizeof(*s->addrs));
	s->mine = calloc(info->nmove_addrs ? info->nmove_addrs : 1, sizeof(*s->mine));
	if (!s->addrs || !s->mine)
		return -ENOMEM;
	for (size_t i = 0; i < info->nmove_addrs; i++) {
		struct haul_net_addr *a = &s->addrs[i];
		const char *m = info->move_addrs[i];

		if (haul_net_addr_parse(m, a)) {
			pr_err("session from %s: '%s' is not an address to move (ADDR/PREFIX)",
			       info->peer, m);
			return -EINVAL;
		}
		/*
		 * No interface on its subnet: the source refuses before the freeze
		 * (it has our addresses from SessionOk, and says what to do);
		 * sw_lock() refuses the restore if it went on anyway.
		 */
		if (sw_iface(s, a))
			pr_warn("pid %d from %s: no interface here is on the subnet of %s",
				(int)info->pid, info->peer, m);
		s->naddrs++;
		/* an address this host has already is neither added nor ever removed */
		s->mine[s->nmine] = *a;
		if (haul_addr_find(&s->mine[s->nmine]))
			s->nmine++;
		else
			pr_info("pid %d from %s: %s is here already; it stays after the migration",
				(int)info->pid, info->peer, m);
		len += snprintf(s->addr_list + len,
				len < sizeof(s->addr_list) ? sizeof(s->addr_list) - len : 0, "%s%s",
				i ? "," : "", m);
		if (len >= sizeof(s->addr_list))
			return -E2BIG;
	}
	return 0;
}

/* A container's own network namespace, which its engine made here before the migration. */
static int sw_netns(struct sw_sess *s, const struct ps_session_info *info)
{
	char path[PATH_MAX];

	if (haul_ctr_session_netns(info->session_id, path, sizeof(path)))
		return 0;
	s->nsfd = open(path, O_RDONLY | O_CLOEXEC);
	if (s->nsfd < 0) {
		int ret = -errno;

		pr_err_r(ret,
			 "pid %d from %s: the container's network namespace %s is not here; make "
			 "it (with the engine's interface, up, without the container's address) "
			 "before migrating",
			 (int)info->pid, info->peer, path);
		return ret;
	}
	pr_info("pid %d from %s: its network is the container's namespace %s", (int)info->pid,
		info->peer, path);
	return 0;
}

static int sw_open(void *arg, const struct ps_session_info *info, void **sess)
{
	const char *cmd = arg;
	struct sw_sess *s = calloc(1, sizeof(*s));
	int back, ret;

	if (!s)
		return -ENOMEM;
	s->ng.fd = -1;
	s->ng.pid = -1;
	s->replay.fd = -1;
	s->nsfd = -1;
	s->pid = info->pid;
	haul_netlock_name(s->table, sizeof(s->table), info->pid, info->session_id);
	ret = sw_netns(s, info);
	if (!ret)
		ret = haul_netns_enter(s->nsfd, &back);
	if (!ret) {
		ret = sw_addrs(s, info);
		haul_netns_leave(back);
	}
	if (!ret)
		ret = inner->open(NULL, info, &s->inner);
	/* the survivor, forked now rather than in the downtime, where the lock will be */
	if (!ret && !(ret = haul_netns_enter(s->nsfd, &back))) {
		ret = haul_netguard_start(&s->ng, s->table, s->mine, s->nmine, false);
		haul_netns_leave(back);
		if (ret) {
			pr_err_r(ret, "cannot start the network survivor for pid %d",
				 (int)info->pid);
			inner->close(s->inner, false);
		}
	}
	if (ret) {
		sw_free(s);
		return ret;
	}
	s->hook = (struct haul_switch_hook){.cmd = cmd,
					    .pid = info->pid,
					    .id = info->session_id,
					    .side = "target",
					    .addresses = s->addr_list};
	*sess = s;
	return 0;
}

static int sw_layout(void *sess, const struct haul_layout *l)
{
	return inner->layout(((struct sw_sess *)sess)->inner, l);
}

static int sw_pages(void *sess, uint64_t addr, const void *data, uint32_t npages)
{
	return inner->pages(((struct sw_sess *)sess)->inner, addr, data, npages);
}

static int sw_round_end(void *sess, uint64_t round)
{
	return inner->round_end(((struct sw_sess *)sess)->inner, round);
}

static int sw_state(void *sess, const void *blob, size_t len)
{
	return inner->state(((struct sw_sess *)sess)->inner, blob, len);
}

static int sw_ghost(void *sess, const void *blob, size_t len)
{
	return inner->ghost ? inner->ghost(((struct sw_sess *)sess)->inner, blob, len) : 0;
}

static int sw_stale(void *sess, const struct ps_range *r, size_t n, bool complete)
{
	if (!inner->stale)
		return -EOPNOTSUPP;
	return inner->stale(((struct sw_sess *)sess)->inner, r, n, complete);
}

/* Everything the switch did here, undone: the process does not run here. */
static void sw_undo(struct sw_sess *s)
{
	int back;

	haul_replay_stop(&s->replay);
	if (!haul_netns_enter(s->nsfd, &back)) {
		for (size_t i = 0; i < s->added; i++)
			haul_addr_del(&s->mine[i]);
		s->added = 0;
		if (s->locked && !haul_netlock_lift(s->table))
			s->locked = false;
		haul_netns_leave(back);
	}
	if (s->prepared)
		haul_switch_hook_run(&s->hook, "target-abort");
	s->prepared = false;
}

static int sw_lock(void *sess, const struct ps_net_end *e, size_t n)
{
	struct sw_sess *s = sess;
	struct haul_net_tuple *t = calloc(n ? n : 1, sizeof(*t));
	double t0 = haul_now_ms();
	int back, ret;

	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		t[i] = (struct haul_net_tuple){.family = e[i].family,
					       .proto = e[i].proto,
					       .lport = e[i].lport,
					       .rport = e[i].rport,
					       .fd = -1};
		memcpy(t[i].laddr, e[i].laddr, 16);
		memcpy(t[i].raddr, e[i].raddr, 16);
	}
	free(s->ends);
	s->ends = t;
	s->nends = n;
	ret = haul_netns_enter(s->nsfd, &back);
	if (ret)
		return ret;
	if (n || s->naddrs) {
		/* recording first: what the lock drops is delivered after the lift */
		haul_replay_start(&s->replay, t, n, s->addrs, s->naddrs);
		ret = haul_netlock_take(s->table, t, n, s->addrs, s->naddrs, false);
		s->locked = !ret;
	}
	if (!ret && s->nmine)
		haul_netguard_moved(&s->ng);
	for (size_t i = 0; !ret && i < s->nmine; i++) {
		char as[64];

		haul_net_addr_str(s->mine[i].family, s->mine[i].addr, s->mine[i].prefix, as,
				  sizeof(as));
		ret = sw_iface(s, &s->mine[i]);
		if (ret) {
			pr_err("pid %d: no interface here is on the subnet of %s; give one an "
			       "address there (ip addr add), or migrate without --move-address",
			       (int)s->pid, as);
			break;
		}
		ret = haul_addr_add(&s->mine[i]);
		if (!ret)
			s->added = i + 1;
		/*
		 * Announced at once (the source removed it at the freeze): from here
		 * on the peers' segments reach this host, where the lock records
		 * them, instead of the source, which sends what it recorded only
		 * after the commit.
		 */
		if (!ret)
			haul_addr_announce(&s->mine[i]);
	}
	haul_netns_leave(back);
	if (!ret) {
		s->prepared = true;
		ret = haul_switch_hook_run(&s->hook, "target-prepare");
	}
	s->lock_ms = haul_now_ms() - t0;
	if (ret)
		sw_undo(s);
	return ret;
}

static int sw_restore(void *sess, struct ps_restore_result *res)
{
	struct sw_sess *s = sess;
	double t[5];
	int back, ret;

	t[0] = haul_now_ms();
	ret = inner->restore(s->inner, res);
	if (ret || res->err) {
		sw_undo(s);
		return ret;
	}
	s->resumed = true;
	t[1] = t[2] = t[3] = t[4] = haul_now_ms();
	if (!haul_netns_enter(s->nsfd, &back)) {
		/* it runs: its packets through, those the lock dropped first */
		if (s->locked && !haul_netlock_lift(s->table))
			s->locked = false;
		t[2] = haul_now_ms();
		if (!s->locked)
			haul_replay_send(&s->replay, false);
		t[3] = haul_now_ms();
		/* announced again (sw_lock did once), in case that one was lost */
		for (size_t i = 0; i < s->added; i++)
			haul_addr_announce(&s->mine[i]);
		t[4] = haul_now_ms();
		haul_netns_leave(back);
	}
	pr_debug("pid %d switch phases (ms): lock and addresses %.2f, restore and resume %.2f, "
		 "lift %.2f, replay %.2f, announce %.2f",
		 (int)s->pid, s->lock_ms, t[1] - t[0], t[2] - t[1], t[3] - t[2], t[4] - t[3]);
	haul_netguard_indoubt(&s->ng);
	haul_switch_hook_run(&s->hook, "target-up"); /* after the resume: reported only */
	return 0;
}

static void sw_close(void *sess, bool committed)
{
	struct sw_sess *s = sess;
	int back;

	if (!s)
		return;
	/* the inner sink kills an uncommitted copy: its sockets must go while locked */
	if (!committed && s->resumed && (s->nends || s->naddrs) && !s->locked &&
	    !haul_netns_enter(s->nsfd, &back)) {
		s->locked =
			!haul_netlock_take(s->table, s->ends, s->nends, s->addrs, s->naddrs, true);
		haul_netns_leave(back);
	}
	inner->close(s->inner, committed);
	if (!committed)
		sw_undo(s);
	sw_free(s);
}

const struct ps_sink_ops haul_switch_sink = {
	.open = sw_open,
	.layout = sw_layout,
	.pages = sw_pages,
	.round_end = sw_round_end,
	.state = sw_state,
	.stale = sw_stale,
	.restore = sw_restore,
	.close = sw_close,
	.lock = sw_lock,
	.ghost = sw_ghost,
};
