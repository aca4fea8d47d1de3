/*
 * caps.c - a process's capability sets: read from /proc/PID/status at
 * dump (CapInh, CapPrm, CapEff, CapBnd, CapAmb into Creds), set in every
 * thread of the restored process around its ids.
 *
 * Order in each thread, as the kernel's rules require: drop from the
 * bounding set what the image lacks (needs CAP_SETPCAP: done while the
 * stub still has haul's root capabilities); PR_SET_KEEPCAPS so that a
 * change to non-zero uids keeps the permitted set; the ids (target_resume.c);
 * later, after the seccomp filters (installing one may need CAP_SYS_ADMIN),
 * capset() of effective, permitted and inheritable; the ambient set (each
 * one must be permitted and inheritable); PR_SET_KEEPCAPS off.
 * A capability the restorer itself lacks (root without CAP_SYS_RESOURCE
 * in a container of its own) makes capset() fail: the restore is refused
 * with the sets named.  Containers drop most capabilities (runc keeps
 * three): without this a container's process could not be carried.
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <inttypes.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

#include "common/log.h"

#include "restore/fd_int.h"
#include "restore/restore_int.h"
#include "restore/target_int.h"

static bool cap_field(const char *status, const char *key, uint64_t *v)
{
	const char *f = rst_status_field(status, key);

	if (!f)
		return false;
	*v = strtoull(f, NULL, 16);
	return true;
}

void rst_caps_read(const char *status, Haul__Img__Creds *c)
{
	c->has_cap_inh = cap_field(status, "CapInh", &c->cap_inh);
	c->has_cap_prm = cap_field(status, "CapPrm", &c->cap_prm);
	c->has_cap_eff = cap_field(status, "CapEff", &c->cap_eff);
	c->has_cap_bnd = cap_field(status, "CapBnd", &c->cap_bnd);
	c->has_cap_amb = cap_field(status, "CapAmb", &c->cap_amb);
}

static int last_cap(void)
{
	FILE *f = fopen("/proc/sys/kernel/cap_last_cap", "re");
	int n = 40;

	if (f) {
		if (fscanf(f, "%d", &n) != 1)
			n = 40;
		fclose(f);
	}
	return n;
}

bool rst_caps_carried(const Haul__Img__Creds *c)
{
	return c->has_cap_inh && c->has_cap_prm && c->has_cap_eff && c->has_cap_bnd &&
	       c->has_cap_amb;
}

void rst_caps_before_ids(struct rst_target *t, struct rst_batch *b, const Haul__Img__Creds *c)
{
	int top = last_cap();

	if (!rst_caps_carried(c))
		return;
	for (int cap = 0; cap <= top && cap < 64; cap++)
		if (!(c->cap_bnd & (1ULL << cap)))
			rst_bcall(t, b, 0, "prctl(PR_CAPBSET_DROP)", SYS_prctl, PR_CAPBSET_DROP,
				  cap, 0, 0, 0, 0);
	rst_bcall(t, b, 0, "prctl(PR_SET_KEEPCAPS)", SYS_prctl, PR_SET_KEEPCAPS, 1, 0, 0, 0, 0);
}

/* capset, the ambient set and PR_SET_KEEPCAPS off: one batch (target_batch.c). */
int rst_caps_after_ids(struct rst_target *t, const Haul__Img__Creds *c)
{
	struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct data[2] = {
		{(uint32_t)c->cap_eff, (uint32_t)c->cap_prm, (uint32_t)c->cap_inh},
		{(uint32_t)(c->cap_eff >> 32), (uint32_t)(c->cap_prm >> 32),
		 (uint32_t)(c->cap_inh >> 32)},
	};
	struct rst_batch b;
	uint64_t h, d;
	int ret;

	if (!rst_caps_carried(c))
		return 0;
	rst_batch_init(&b);
	rst_bdata(t, &b, &hdr, sizeof(hdr), &h);
	rst_bdata(t, &b, data, sizeof(data), &d);
	rst_bcall(t, &b, 0, "capset", SYS_capset, h, d, 0, 0, 0, 0);
	rst_bcall(t, &b, 0, "prctl(PR_CAP_AMBIENT_CLEAR_ALL)", SYS_prctl, PR_CAP_AMBIENT,
		  PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0, 0);
	for (int cap = 0; cap < 64; cap++)
		if (c->cap_amb & (1ULL << cap))
			rst_bcall(t, &b, 0, "prctl(PR_CAP_AMBIENT_RAISE)", SYS_prctl,
				  PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0, 0);
	rst_bcall(t, &b, 0, "prctl(PR_SET_KEEPCAPS)", SYS_prctl, PR_SET_KEEPCAPS, 0, 0, 0, 0, 0);
	ret = rst_batch_run(t, &b);
	if (ret && !strncmp(b.what, "capset", 6))
		pr_err_r(ret,
			 "cannot set the capabilities (effective %016" PRIx64
			 ", permitted %016" PRIx64 ", inheritable %016" PRIx64
			 ") of the restored process; haul must run with "
			 "at least those",
			 c->cap_eff, c->cap_prm, c->cap_inh);
	else if (ret)
		pr_err_r(ret,
			 "cannot set the ambient capabilities %016" PRIx64 " of the restored "
			 "process: %s",
			 c->cap_amb, b.what);
	return ret;
}
