/*
 * cmd_ps.c - `haul ps`: list the workloads `haul run` started (registry.c),
 * with what they are doing now: running, frozen (a migration's switchover,
 * or one left in doubt), exited, or migrated away.
 */
#define LOG_PREFIX "ps: "
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "haul/criu_int.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"

static const char *wl_state(const struct haul_wl *w, char *buf, size_t len)
{
	unsigned long long start;
	char st = haul_proc_state(w->pid), ev[256];

	if (w->migrated_to[0]) {
		snprintf(buf, len, "migrated to %s", w->migrated_to);
		return buf;
	}
	if (!st || st == 'Z' || st == 'X' || haul_proc_starttime(w->pid, &start) ||
	    start != w->start)
		return "exited";
	if (haul_cg_read(w->cgroup, "cgroup.events", ev, sizeof(ev)) > 0 && strstr(ev, "frozen 1"))
		return "frozen";
	if (haul_cg_read(w->cgroup, "freezer.state", ev, sizeof(ev)) > 0 &&
	    strncmp(ev, "THAWED", 6))
		return "frozen";
	return "running";
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int haul_cmd_ps(int argc, char **argv)
{
	struct dirent **de = NULL;
	int n;

	char intro[PATH_MAX + 64];
	const struct haul_opt opts[] = {{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL}};
	const struct haul_cmd_spec spec = {"ps", "", intro, NULL, opts, 0, 0, false};

	snprintf(intro, sizeof(intro),
		 "List the workloads started with 'haul run' (registry %s).\n", haul_reg_dir());
	n = haul_opts_parse(&spec, argc, argv);
	if (n < 0)
		return haul_opts_exit(n);
	/* network locks whose owner died (and its survivor): removed here too */
	haul_netlock_reap();
	n = scandir(haul_reg_dir(), &de, NULL, by_name);
	if (n < 0) {
		if (errno == ENOENT)
			return 0;
		pr_err("cannot read registry '%s': %s", haul_reg_dir(), strerror(errno));
		return 1;
	}
	printf("%-20s %7s  %-24s %s\n", "NAME", "PID", "STATE", "COMMAND");
	for (int i = 0; i < n; i++) {
		struct haul_wl w;
		char buf[160];

		if (de[i]->d_name[0] != '.' && !haul_reg_load(de[i]->d_name, &w))
			printf("%-20s %7d  %-24s %s\n", w.name, w.pid,
			       wl_state(&w, buf, sizeof(buf)), w.cmd);
		free(de[i]);
	}
	free(de);
	trackd_list(stdout); /* criu pre-dump trackers (trackd.c) */
	return 0;
}
