/*
 * netguard.c - the survivor of the network switch: no lock rule and no
 * half-moved address outlives a haul (or page server) that dies.
 *
 * Forked before the freeze (source) or at the session's open (target), so
 * that the fork costs nothing in the downtime, in the same way as the
 * guardian (guard.c): a session leader that ignores SIGINT/SIGTERM/SIGHUP,
 * keeps only stderr and the read end of a pipe, and reads one byte per
 * state change: 'M' the addresses moved (the source removed them, the
 * target added them), 'C' in doubt (the target may run the process), 'A'
 * armed again, 'D' done (haul lifted or kept everything itself: exit
 * quietly).  EOF without 'D' means its parent died:
 *   armed:    the addresses that moved go back as they were (the source
 *             adds them again, the target removes what it added), then the
 *             lock is lifted (if it was taken): the process runs on where it
 *             ran before;
 *   in doubt: the lock is lifted and the addresses are left where the
 *             switch put them (the process may run on the target; an
 *             address on both hosts would be worse), and it says so.
 * The registry of netlock.c covers the case where the survivor is killed
 * too: the next haul start removes the table.
 */
#define LOG_PREFIX "netguard: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"

static void __attribute__((noreturn))
netguard_main(const char *table, struct haul_net_addr *a, size_t na, bool readd, int rfd)
{
	struct haul_survivor_state st = {0};
	char s[64];

	haul_survivor_wait(rfd, &st);
	for (size_t i = 0; st.moved && !st.indoubt && i < na; i++) {
		haul_net_addr_str(a[i].family, a[i].addr, a[i].prefix, s, sizeof(s));
		if (readd ? haul_addr_add(&a[i]) : haul_addr_del(&a[i]))
			continue; /* logged */
		pr_warn("%s %s %s", readd ? "put" : "removed", s,
			readd ? "back on its interface" : "again");
	}
	if (haul_netlock_exists(table) && haul_netlock_lift(table) == 0)
		pr_warn("the owner of network lock %s died; lock lifted%s", table,
			st.indoubt
				? " (in doubt: the moved addresses stay where the switch put them)"
				: "");
	_exit(0);
}

int haul_netguard_start(struct haul_netguard *g, const char *table, const struct haul_net_addr *a,
			size_t na, bool readd)
{
	struct haul_net_addr *copy = calloc(na ? na : 1, sizeof(*copy));
	char name[64];
	int fd;
	pid_t pid;

	g->pid = -1;
	g->fd = -1;
	if (!copy)
		return -ENOMEM;
	if (na)
		memcpy(copy, a, na * sizeof(*a));
	snprintf(name, sizeof(name), "%s", table);
	pid = haul_survivor_fork("haul-netguard", &fd);
	if (pid == 0)
		netguard_main(name, copy, na, readd, fd);
	free(copy);
	if (pid < 0)
		return pid;
	g->pid = pid;
	g->fd = fd;
	return 0;
}

int haul_netguard_moved(struct haul_netguard *g)
{
	return haul_survivor_send(g->fd, 'M');
}

int haul_netguard_indoubt(struct haul_netguard *g)
{
	return haul_survivor_send(g->fd, 'C');
}

int haul_netguard_rearm(struct haul_netguard *g)
{
	return haul_survivor_send(g->fd, 'A');
}

void haul_netguard_stop(struct haul_netguard *g)
{
	haul_survivor_stop(&g->pid, &g->fd);
}
