/*
 * mig_vmas.c - `haul migrate` carries the VMAs of tests/progs/vmcases.h
 * exactly (issue 15): a PROT_NONE page's data, MAP_NORESERVE, a shared
 * file mapping that may become writable, guard pages, KSM advice,
 * MAP_DROPPABLE and mseal.  Pre-copy layouts come from maps without
 * VmFlags, so this also proves that the switchover's layout remakes what
 * mmap fixes for good.  The workload's verify checks every case.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "th_mig.h"

static struct th_mig M;

static void teardown(void)
{
	th_mig_teardown(&M);
}

/* Run haul migrate; its exit status, and whether a line of its output had @needle (NULL: none). */
static int migrate(const char *const extra[], int timeout_ms, const char *needle, bool *said)
{
	char line[512];
	bool lines = false;
	int fd, st;
	pid_t pid = th_mig_haul(&M, &fd, extra);

	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, timeout_ms);
	while (th_read_line(fd, line, sizeof(line)) == 0) {
		if (needle && strstr(line, needle))
			lines = true;
		if (st)
			cr_log_info("haul: %s", line);
	}
	close(fd);
	if (said)
		*said = lines;
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	return st;
}

/* @ahead: the deleted file must have gone to the target before the freeze (vma_ghost_pre.c). */
static void moves_intact(const char *const extra[], bool ahead)
{
	bool said;
	long seq;

	th_mig_setup(&M, 0);
	M.vmcases = true;
	th_mig_workload(&M, 16, 4, 0);
	cr_assert(th_mig_verify(&M), "the workload's VMAs do not verify before the move");
	seq = th_mig_seq(&M);
	cr_assert_eq(
		migrate(extra, 60000, "vmcases.deleted (32768 bytes of data) sent before", &said),
		0, "haul migrate failed");
	cr_expect_eq(said, ahead, "the deleted file %s before the freeze",
		     ahead ? "was not sent" : "was sent");
	cr_assert(th_mig_ticking(&M, M.net_b, 3000), "the workload does not tick in the target");
	cr_assert_gt(th_mig_seq(&M), seq, "progress went backwards");
	if (!th_mig_verify(&M)) {
		th_sh("grep 'verify FAIL' %s >&2", M.out);
		cr_assert_fail("a VMA is not what it was after the move");
	}
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}

Test(mig_vmas, pre_copy_carries_protnone_noreserve_fileprot_guards_and_vmflags, .fini = teardown,
     .timeout = 90)
{
	const char *extra[] = {"--downtime", "100", NULL};

	moves_intact(extra, true);
}

Test(mig_vmas, stop_and_copy_carries_the_same_vmas, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--stop-and-copy", NULL};

	moves_intact(extra, false);
}

Test(mig_vmas, post_copy_carries_the_same_vmas, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--postcopy", NULL};

	moves_intact(extra, false);
}

Test(mig_vmas, hybrid_carries_the_same_vmas, .fini = teardown, .timeout = 90)
{
	const char *extra[] = {"--hybrid", NULL};

	moves_intact(extra, true);
}
