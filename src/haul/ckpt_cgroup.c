/*
 * ckpt_cgroup.c - `haul checkpoint --cgroup PATH`: every process of a
 * cgroup, as one tree.
 *
 * The processes of the cgroup (cgroup.procs: cgroup2, or the v1 freezer
 * hierarchy where there is no cgroup2) must form one tree: exactly one of
 * them has its parent outside the cgroup, and that root is checkpointed
 * with all its descendants (rst_tree_checkpoint, which also takes a
 * descendant that moved to another cgroup: a tree is what is restored).
 * Several roots are refused, naming them: checkpoint each on its own.
 */
#define LOG_PREFIX "checkpoint: "
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/haul.h"
#include "haul/haul_int.h"

/* Processes one cgroup may hold for a checkpoint (its cgroup.procs read at once). */
#define CKPT_CG_MAX 4096

static pid_t ppid_of(pid_t pid)
{
	char path[64], line[256];
	pid_t ppid = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "PPid:", 5))
			ppid = atoi(line + 5);
	fclose(f);
	return ppid;
}

static bool member(const pid_t *p, size_t n, pid_t pid)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] == pid)
			return true;
	return false;
}

int haul_cgroup_tree_root(const char *path, pid_t *root)
{
	static char buf[CKPT_CG_MAX * 12];
	char dir[PATH_MAX + 8];
	pid_t *p = NULL, roots[4];
	size_t n = 0, nroots = 0;
	int ret;

	ret = haul_cg_read_procs(path, dir, sizeof(dir), buf, sizeof(buf));
	if (ret < 0)
		return ret;
	p = calloc(CKPT_CG_MAX, sizeof(*p));
	if (!p)
		return -ENOMEM;
	for (char *s = buf, *end; n < CKPT_CG_MAX; s = end) {
		long v = strtol(s, &end, 10);

		if (end == s)
			break;
		p[n++] = (pid_t)v;
	}
	for (size_t i = 0; i < n; i++)
		if (!member(p, n, ppid_of(p[i]))) {
			if (nroots < 4)
				roots[nroots] = p[i];
			nroots++;
		}
	free(p);
	if (nroots == 1) {
		*root = roots[0];
		return 0;
	}
	if (!nroots)
		pr_err("cgroup '%s' holds no process; nothing to checkpoint or migrate", dir);
	else
		pr_err("cgroup '%s' holds %zu process trees (roots %d, %d%s); checkpoint or migrate each root "
		       "on its own",
		       dir, nroots, (int)roots[0], (int)roots[1], nroots > 2 ? ", ..." : "");
	return -EINVAL;
}
