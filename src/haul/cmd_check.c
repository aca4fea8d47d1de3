/*
 * cmd_check.c - `haul check`: which kernel features haul can use here, and
 * what each missing one costs, in the manner of `criu check`.
 *
 * Every line comes from a probe that ran the real operation (common/probe.c),
 * not from the kernel version.  Exit status: 0 when haul can migrate here
 * (some tracker and some freezer work), 1 otherwise, with the reason.
 */
#define LOG_PREFIX "check: "
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "common/log.h"
#include "common/probe.h"
#include "haul/haul.h"
#include "haul/haul_int.h"

static void line(const char *what, bool ok, const char *detail)
{
	printf("  %-38s %-4s %s\n", what, ok ? "yes" : "no", detail ? detail : "");
}

static void uffd_feature_names(uint64_t f, char *buf, size_t len)
{
	static const struct {
		uint64_t bit;
		const char *name;
	} names[] = {
		{UFFD_FEATURE_PAGEFAULT_FLAG_WP, "WP"},
		{UFFD_FEATURE_EVENT_FORK, "EVENT_FORK"},
		{UFFD_FEATURE_EVENT_REMAP, "EVENT_REMAP"},
		{UFFD_FEATURE_MISSING_SHMEM, "MISSING_SHMEM"},
		{UFFD_FEATURE_MINOR_SHMEM, "MINOR_SHMEM"},
		{UFFD_FEATURE_WP_HUGETLBFS_SHMEM, "WP_SHMEM"},
		{UFFD_FEATURE_WP_UNPOPULATED, "WP_UNPOPULATED"},
		{UFFD_FEATURE_WP_ASYNC, "WP_ASYNC"},
		{UFFD_FEATURE_MOVE, "MOVE"},
	};
	size_t o = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]) && o < len; i++)
		if (f & names[i].bit)
			o += snprintf(buf + o, len - o, "%s%s", o ? " " : "", names[i].name);
}

int haul_cmd_check(int argc, char **argv)
{
	const struct probe_cgroup *cg = probe_cgroup();
	const char *why = NULL;
	struct utsname u;
	char buf[512];
	uint64_t feat = 0;
	bool uffd_wp, sd, uffd, freezer;
	int uerr;

	const struct haul_opt opts[] = {{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL}};
	const struct haul_cmd_spec spec = {
		"check",
		"",
		"Report the kernel features haul can use on this machine and what each\n"
		"missing one costs.\n",
		"Exit status: 0 haul can migrate here; 1 it cannot (the reason is said);\n"
		"2 the command line is wrong.\n",
		opts,
		0,
		0,
		false};
	int ret = haul_opts_parse(&spec, argc, argv);

	if (ret < 0)
		return haul_opts_exit(ret);
	uname(&u);
	printf("haul check: Linux %s %s\n\n", u.release, u.machine);

	printf("dirty tracking (pre-copy)\n");
	uffd_wp = probe_uffd_wp_async(&why);
	line("uffd-wp async + PAGEMAP_SCAN", uffd_wp,
	     uffd_wp ? "tracker 'uffd': ~0.5 ms per clean GiB, target stopped < 2 ms once" : why);
	sd = probe_soft_dirty();
	line("soft-dirty (clear_refs + pagemap)", sd,
	     sd	       ? "tracker 'soft-dirty': target stopped for each scan"
	     : uffd_wp ? "CONFIG_MEM_SOFT_DIRTY not set; costs nothing while uffd-wp works"
		       : "CONFIG_MEM_SOFT_DIRTY not set; falls back to hashing");
	line("content hashing (XXH3)", true,
	     uffd_wp || sd ? "fallback only: reads all memory each round (~60-700x uffd)"
			   : "tracker 'hash': reads all memory each round (~60-700x uffd)");
	printf("  -> tracker chosen: %s\n\n", uffd_wp ? "uffd" : sd ? "soft-dirty" : "hash");

	printf("userfaultfd\n");
	uerr = probe_uffd_features(&feat);
	uffd = uerr == 0;
	if (uffd)
		uffd_feature_names(feat, buf, sizeof(buf));
	else
		snprintf(buf, sizeof(buf), "%s: no uffd tracking, no lazy restore",
			 strerror(-uerr));
	line("userfaultfd", uffd, buf);
	line("write-protect async (WP_ASYNC)", uffd && (feat & UFFD_FEATURE_WP_ASYNC),
	     feat & UFFD_FEATURE_WP_ASYNC ? NULL : "kernel < 6.7: no uffd tracker");
	line("write-protect holes (WP_UNPOPULATED)", uffd && (feat & UFFD_FEATURE_WP_UNPOPULATED),
	     feat & UFFD_FEATURE_WP_UNPOPULATED ? NULL : "kernel < 6.7: no uffd tracker");
	line("shmem write-protect (WP_SHMEM)", uffd && (feat & UFFD_FEATURE_WP_HUGETLBFS_SHMEM),
	     feat & UFFD_FEATURE_WP_HUGETLBFS_SHMEM ? NULL
						    : "shared memory is sent whole every round");
	line("shmem minor faults (MINOR_SHMEM)", uffd && (feat & UFFD_FEATURE_MINOR_SHMEM),
	     feat & UFFD_FEATURE_MINOR_SHMEM ? NULL : "lazy restore of shmem is not possible");
	line("pidfd_getfd", probe_pidfd_getfd(),
	     probe_pidfd_getfd() ? NULL : "kernel < 5.6: no uffd tracker");
	line("PAGEMAP_SCAN ioctl", probe_pagemap_scan(),
	     probe_pagemap_scan() ? NULL : "kernel < 6.7: no uffd tracker");
	printf("\n");

	printf("freezer\n");
	snprintf(buf, sizeof(buf), "%s%s%s", probe_cg_layout_name(cg->layout),
		 cg->v2_mount[0] ? ", cgroup2 at " : "", cg->v2_mount);
	line("cgroup layout", cg->layout != PROBE_CG_NONE, buf);
	line("cgroup v2 freezer (cgroup.freeze)", cg->v2_freeze,
	     cg->v2_freeze ? "freeze ~40-70 us; ptrace can stop frozen threads"
			   : "no v2 freezer: v1 freezer or SIGSTOP");
	snprintf(buf, sizeof(buf), "%s", cg->v1_freezer[0] ? cg->v1_freezer : "not mounted");
	line("cgroup v1 freezer", cg->v1_freezer[0] != '\0',
	     cg->v1_freezer[0] ? buf
	     : cg->v2_freeze   ? "not needed while the v2 freezer works"
			       : "no freezer: the final copy needs SIGSTOP");
	freezer = cg->v2_freeze || cg->v1_freezer[0];
	printf("\n");

	printf("restore\n");
	line("io_uring", probe_io_uring(),
	     probe_io_uring() ? "page server moves bytes with io_uring"
			      : "page server cannot start (io_uring disabled or missing)");
	snprintf(buf, sizeof(buf), "%s: restored processes get new PIDs",
		 strerror(-probe_clone3_set_tid_err()));
	line("clone3 set_tid", probe_clone3_set_tid(),
	     probe_clone3_set_tid() ? "restored processes keep their PIDs" : buf);
	snprintf(buf, sizeof(buf), "%s: CLOCK_MONOTONIC jumps across migration",
		 strerror(-probe_time_ns_err()));
	line("time namespaces", probe_time_ns(),
	     probe_time_ns() ? "CLOCK_MONOTONIC/BOOTTIME continue across migration" : buf);
	printf("\n");

	if (!freezer && cg->layout == PROBE_CG_NONE) {
		/* ip netns exec mounts a fresh sysfs on /sys: nothing under /sys/fs/cgroup */
		printf("no cgroup hierarchy is mounted in this mount namespace (as under 'ip netns "
		       "exec'): 'haul migrate' and 'haul run' mount cgroup2 privately and go on; "
		       "elsewhere mount cgroup2 on /sys/fs/cgroup\n");
		return 1;
	}
	if (!freezer) {
		printf("haul cannot freeze processes here: mount cgroup2 (or the v1 freezer)\n");
		return 1;
	}
	if (!probe_io_uring()) {
		printf("haul cannot run its page server here: enable io_uring "
		       "(sysctl kernel.io_uring_disabled=0)\n");
		return 1;
	}
	printf("Looks good.\n");
	return 0;
}
