/* mig_cgroup.c - cgroup layout detection from /proc/self/mounts and /proc/PID/cgroup text. */
#include <criterion/criterion.h>
#include <errno.h>

#include "haul/haul_int.h"

static const char hybrid[] = "sysfs /sys sysfs rw,nosuid 0 0\n"
			     "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
			     "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0\n"
			     "cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0\n"
			     "cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0\n"
			     "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";

Test(mig_cgroup, finds_every_hierarchy_of_a_hybrid_host)
{
	struct haul_cg_mounts m;

	cr_assert_eq(haul_cg_parse_mounts(hybrid, &m), 0);
	cr_assert_str_eq(m.v2, "/sys/fs/cgroup/unified");
	cr_assert_str_eq(m.v1_freezer, "/sys/fs/cgroup/freezer");
	cr_assert_str_eq(m.v1_cpu, "/sys/fs/cgroup/cpu");
}

Test(mig_cgroup, tells_cpu_from_cpuacct_and_cpuset)
{
	struct haul_cg_mounts m;
	const char *t = "cgroup /a cgroup rw,cpuacct 0 0\n"
			"cgroup /b cgroup rw,cpuset 0 0\n"
			"cgroup /c cgroup rw,cpu,cpuacct 0 0\n"
			"cgroup /f cgroup rw,freezer 0 0\n";

	cr_assert_eq(haul_cg_parse_mounts(t, &m), 0);
	cr_assert_str_eq(m.v1_cpu, "/c");
	cr_assert_str_eq(m.v2, "");
}

Test(mig_cgroup, finds_pure_cgroup2)
{
	struct haul_cg_mounts m;

	cr_assert_eq(haul_cg_parse_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0", &m),
		     0);
	cr_assert_str_eq(m.v2, "/sys/fs/cgroup");
	cr_assert_str_eq(m.v1_freezer, "");
	cr_assert_str_eq(m.v1_cpu, "");
}

Test(mig_cgroup, refuses_a_host_without_a_freezer)
{
	struct haul_cg_mounts m;

	cr_assert_eq(
		haul_cg_parse_mounts("cgroup /c cgroup rw,cpu 0 0\nproc /proc proc rw 0 0\n", &m),
		-ENOENT);
}

static const char proc_cg[] = "9:name=systemd:/\n"
			      "6:freezer:/jobs/a\n"
			      "2:cpu,cpuacct:/slow\n"
			      "0::/haul/web\n";

Test(mig_cgroup, reads_the_cgroup2_path_of_a_process)
{
	char out[256];

	cr_assert_eq(haul_cg_parse_proc(proc_cg, "", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/haul/web");
}

Test(mig_cgroup, reads_a_v1_controller_path_from_a_shared_hierarchy)
{
	char out[256];

	cr_assert_eq(haul_cg_parse_proc(proc_cg, "cpu", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/slow");
	cr_assert_eq(haul_cg_parse_proc(proc_cg, "freezer", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/jobs/a");
}

Test(mig_cgroup, reports_a_missing_hierarchy_and_a_short_buffer)
{
	char out[4];

	cr_assert_eq(haul_cg_parse_proc(proc_cg, "memory", out, sizeof(out)), -ENOENT);
	cr_assert_eq(haul_cg_parse_proc("1:cpu:/x\n", "", out, sizeof(out)), -ENOENT);
	cr_assert_eq(haul_cg_parse_proc(proc_cg, "", out, sizeof(out)), -ENAMETOOLONG);
}
