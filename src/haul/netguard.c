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
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/netlock.h"

static void __attribute__((noreturn))
netguard_main(const char *table, struct haul_net_addr *a, size_t na, bool readd, int rfd)
{
	bool indoubt = false, moved = false;
	char c, s[64];
	ssize_t n;

	setsid();
	signal(SIGINT, SIG_IGN);
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_NAME, "haul-netguard", 0, 0, 0);
	for (;;) {
		n = read(rfd, &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (c == 'D')
			_exit(0);
		if (c == 'M')
			moved = true;
		indoubt = c == 'C' ? true : c == 'A' ? false : indoubt;
	}
	for (size_t i = 0; moved && !indoubt && i < na; i++) {
		haul_net_addr_str(a[i].family, a[i].addr, a[i].prefix, s, sizeof(s));
		if (readd ? haul_addr_add(&a[i]) : haul_addr_del(&a[i]))
			continue; /* logged */
		pr_warn("%s %s %s", readd ? "put" : "removed", s,
			readd ? "back on its interface" : "again");
	}
	if (haul_netlock_exists(table) && haul_netlock_lift(table) == 0)
		pr_warn("the owner of network lock %s died; lock lifted%s", table,
			indoubt ? " (in doubt: the moved addresses stay where the switch put them)"
				: "");
	_exit(0);
}

int haul_netguard_start(struct haul_netguard *g, const char *table, const struct haul_net_addr *a,
			size_t na, bool readd)
{
	struct haul_net_addr *copy = calloc(na ? na : 1, sizeof(*copy));
	char name[64];
	int p[2];
	pid_t pid;

	g->pid = -1;
	g->fd = -1;
	if (!copy)
		return -ENOMEM;
	if (na)
		memcpy(copy, a, na * sizeof(*a));
	snprintf(name, sizeof(name), "%s", table);
	if (pipe2(p, O_CLOEXEC)) {
		free(copy);
		return -errno;
	}
	pid = fork();
	if (pid < 0) {
		int ret = -errno;

		close(p[0]);
		close(p[1]);
		free(copy);
		return ret;
	}
	if (pid == 0) {
		close(p[1]);
		for (int fd = 3; fd < 1024; fd++)
			if (fd != p[0])
				close(fd);
		netguard_main(name, copy, na, readd, p[0]);
	}
	free(copy);
	close(p[0]);
	g->pid = pid;
	g->fd = p[1];
	return 0;
}

static int netguard_send(struct haul_netguard *g, char c)
{
	if (g->fd < 0)
		return -EBADF;
	return write(g->fd, &c, 1) == 1 ? 0 : -errno;
}

int haul_netguard_moved(struct haul_netguard *g)
{
	return netguard_send(g, 'M');
}

int haul_netguard_indoubt(struct haul_netguard *g)
{
	return netguard_send(g, 'C');
}

int haul_netguard_rearm(struct haul_netguard *g)
{
	return netguard_send(g, 'A');
}

void haul_netguard_stop(struct haul_netguard *g)
{
	if (g->fd >= 0) {
		netguard_send(g, 'D');
		close(g->fd);
		g->fd = -1;
	}
	if (g->pid > 0) {
		waitpid(g->pid, NULL, 0);
		g->pid = -1;
	}
}
