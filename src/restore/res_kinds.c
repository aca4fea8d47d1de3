/*
 * res_kinds.c - the table of per-process resources that are not fds
 * (res_int.h), and the walks the sequence files call over it.
 *
 * Order matters where hooks of one phase depend on each other: attributes
 * before cgroups (rst_attr_apply places the cgroups too), timers before
 * seccomp (a filter installed last cannot refuse the timer calls).
 */
#define LOG_PREFIX "dump: "
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/log.h"

#include "restore/res_int.h"

const struct rst_res_ops *const rst_res_kinds[] = {
	&rst_res_attrs,	    /* procattr.c: status, prctl, oom_score_adj, ... */
	&rst_res_cgroups,   /* cgplace.c: placed by rst_res_attrs' apply */
	&rst_res_sched,	    /* res_sched.c: its apply once the cgroups are placed */
	&rst_res_vmas,	    /* vmcheck.c: smaps refusals at the precheck */
	&rst_res_vma_ghost, /* vma_ghost.c: deleted files mapped privately */
	&rst_res_timers,    /* res_timers.c: POSIX timers */
	&rst_res_procfs,    /* fd_procfs.c: /proc offsets, once the task is restored */
	&rst_res_apparmor,  /* res_apparmor.c: its profile may refuse what is injected before */
	&rst_res_seccomp,   /* res_seccomp.c: last, its filters may refuse syscalls */
	NULL,
};

int rst_res_precheck(pid_t pid, pid_t tracer, char *why, size_t wl)
{
	int ret = 0;

	for (size_t i = 0; rst_res_kinds[i] && !ret; i++)
		if (rst_res_kinds[i]->precheck)
			ret = rst_res_kinds[i]->precheck(pid, tracer, why, wl);
	return ret;
}

int rst_res_precheck_seized(struct rst_seized *s, uint64_t scratch, char *why, size_t wl)
{
	int ret = 0;

	for (size_t i = 0; rst_res_kinds[i] && !ret; i++)
		if (rst_res_kinds[i]->precheck_seized)
			ret = rst_res_kinds[i]->precheck_seized(s, scratch, why, wl);
	return ret;
}

int rst_res_dump(struct rst_seized *s, uint64_t scratch, Haul__Img__ProcessState *ps, void **priv,
		 char *why, size_t wl)
{
	char times[256] = "";
	size_t tl = 0;
	int ret = 0;

	for (size_t i = 0; rst_res_kinds[i] && i < RST_RES_MAX && !ret; i++) {
		struct timespec a, b;

		if (!rst_res_kinds[i]->dump)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &a);
		ret = rst_res_kinds[i]->dump(s, scratch, ps, &priv[i], why, wl);
		clock_gettime(CLOCK_MONOTONIC, &b);
		if (tl < sizeof(times))
			tl += (size_t)snprintf(times + tl, sizeof(times) - tl, " %s %.2f",
					       rst_res_kinds[i]->name,
					       (double)(b.tv_sec - a.tv_sec) * 1e3 +
						       (double)(b.tv_nsec - a.tv_nsec) / 1e6);
	}
	pr_debug("resources dumped (ms):%s", times);
	return ret;
}

void rst_res_release(void **priv)
{
	for (size_t i = 0; rst_res_kinds[i] && i < RST_RES_MAX; i++) {
		if (rst_res_kinds[i]->release && priv[i])
			rst_res_kinds[i]->release(priv[i]);
		priv[i] = NULL;
	}
}

int rst_res_validate(const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	int ret = 0;

	for (size_t i = 0; rst_res_kinds[i] && !ret; i++)
		if (rst_res_kinds[i]->validate)
			ret = rst_res_kinds[i]->validate(ps, why, wl);
	return ret;
}

int rst_res_validate_blob(const void *blob, size_t len, char *why, size_t wl)
{
	Haul__Img__ProcessState *ps = haul__img__process_state__unpack(NULL, len, blob);
	int ret;

	if (!ps) {
		snprintf(why, wl, "the process state does not parse (corrupt or truncated)");
		return -EBADMSG;
	}
	ret = rst_res_validate(ps, why, wl);
	haul__img__process_state__free_unpacked(ps, NULL);
	return ret;
}

int rst_res_restore(struct rst_target *t, const Haul__Img__ProcessState *ps,
		    enum rst_res_phase phase, char *why, size_t wl)
{
	int ret = 0;

	for (size_t i = 0; rst_res_kinds[i] && !ret; i++)
		if (rst_res_kinds[i]->restore && rst_res_kinds[i]->phase == phase)
			ret = rst_res_kinds[i]->restore(t, ps, why, wl);
	return ret;
}

int rst_res_apply(struct rst_target *t, const Haul__Img__ProcessState *ps, char *why, size_t wl)
{
	int ret = 0;

	for (size_t i = 0; rst_res_kinds[i] && !ret; i++)
		if (rst_res_kinds[i]->apply)
			ret = rst_res_kinds[i]->apply(t, ps, why, wl);
	return ret;
}
