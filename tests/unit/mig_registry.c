/* mig_registry.c - the haul run registry entry format. */
#include <criterion/criterion.h>
#include <errno.h>

#include "haul/haul_int.h"

Test(mig_registry, parses_every_key)
{
	struct haul_wl w = {0};

	cr_assert_eq(haul_reg_parse(
			     "pid=42\nstart=9001\ncgroup=/sys/fs/cgroup/haul/web\n"
			     "cmd=sleep 100\nlog=/run/haul/web/out\nmigrated_to=198.18.0.2:7000\n",
			     &w),
		     0);
	cr_assert_eq(w.pid, 42);
	cr_assert_eq(w.start, 9001);
	cr_assert_str_eq(w.cgroup, "/sys/fs/cgroup/haul/web");
	cr_assert_str_eq(w.cmd, "sleep 100");
	cr_assert_str_eq(w.log, "/run/haul/web/out");
	cr_assert_str_eq(w.migrated_to, "198.18.0.2:7000");
}

Test(mig_registry, rejects_an_entry_without_a_pid)
{
	struct haul_wl w = {0};

	cr_assert_eq(haul_reg_parse("cmd=x\n", &w), -EINVAL);
	cr_assert_eq(haul_reg_parse("pid=0\n", &w), -EINVAL);
}

Test(mig_registry, ignores_unknown_keys_and_truncates_long_values)
{
	struct haul_wl w = {0};
	char text[2048];

	memset(text, 'x', sizeof(text));
	memcpy(text, "pid=7\nfuture=1\ncmd=", 19);
	text[sizeof(text) - 1] = '\0';
	cr_assert_eq(haul_reg_parse(text, &w), 0);
	cr_assert_eq(strlen(w.cmd), sizeof(w.cmd) - 1);
}
