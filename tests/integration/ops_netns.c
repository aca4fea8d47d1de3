/*
 * ops_netns.c - `haul migrate` run under `ip netns exec`, where no cgroup
 * hierarchy is visible (ip remounts /sys; /sys/fs/cgroup is an empty
 * directory of the fresh sysfs).  haul mounts cgroup2 in a private mount
 * namespace of its own and migrates, instead of failing with "cgroup: No
 * such file or directory".  Every other cgroup mount this host may carry
 * elsewhere is unmounted first, inside a private mount namespace (unshare
 * -m --propagation private), so the test sees what a clean host sees and
 * the host's mounts stay untouched.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "th_mig.h"

static struct th_mig M;

static void teardown(void)
{
	th_mig_teardown(&M);
}

Test(ops_netns, migrate_under_ip_netns_exec_mounts_its_own_cgroup2_and_moves_the_process,
     .fini = teardown, .timeout = 90)
{
	static const char script[] =
		"for m in $(awk '$3 == \"cgroup\" || $3 == \"cgroup2\" { print $2 }' "
		"/proc/self/mounts | sort -r); do umount -l \"$m\" || exit 125; done; "
		"exec \"$@\"";
	char pid[16], line[512];
	const char *argv[] = {"/usr/bin/env",
			      "HAUL_LOG=info",
			      "ip",
			      "netns",
			      "exec",
			      M.net.a,
			      "unshare",
			      "-m",
			      "--propagation",
			      "private",
			      "sh",
			      "-c",
			      script,
			      "sh",
			      th_haul_bin(),
			      "migrate",
			      pid,
			      "--to",
			      TH_IP_B ":" TH_MIG_PORT,
			      "--key",
			      M.key,
			      NULL};
	bool said = false;
	int fd, st;
	pid_t haul;

	if (system("command -v unshare >/dev/null && command -v ip >/dev/null"))
		cr_skip_test("ip or unshare (util-linux) is not installed");
	th_mig_setup(&M, 0);
	th_mig_workload(&M, 16, 8, 0);
	snprintf(pid, sizeof(pid), "%d", M.wl_pid);
	haul = th_spawn_pipe(NULL, (char *const *)argv, &fd);
	cr_assert_gt(haul, 0);
	st = th_wait_exit(haul, 60000);
	while (th_read_line(fd, line, sizeof(line)) == 0) {
		cr_log_info("haul: %s", line);
		said |= strstr(line, "mounted cgroup2") != NULL;
	}
	close(fd);
	cr_assert_neq(st, 125, "cannot unmount the cgroup hierarchies for the test");
	cr_assert_eq(st, 0, "haul migrate under ip netns exec failed");
	cr_assert(said, "haul did not say that it mounted cgroup2 itself");
	cr_assert(th_mig_ticking(&M, M.net_b, 3000), "the workload does not tick in the target");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}
