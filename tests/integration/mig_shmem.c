/*
 * mig_shmem.c - `haul migrate` between the two network namespaces of
 * th_mig.h moves a process whose data lives in shared memory (issue 12):
 * each kind (shared anonymous, memfd only mapped, SysV segment), mapped
 * twice, keeps every page's last write, one object behind both mappings,
 * the memfd's seals and the SysV key and id (tests/progs/shm_workload's
 * verify).  Pre-copy tracks shared memory with uffd-wp like private memory:
 * with 1 GiB of shared memory and a writer of 32 pages, the frozen round
 * sends a few pages, not the segment.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/shm.h>
#include <unistd.h>

#include "th_mig.h"
#include "th_rst.h"

static struct th_mig M;
static int key; /* SysV key of this test: holds its PID */

static void teardown(void)
{
	char path[160];
	int id;

	snprintf(path, sizeof(path), "/dev/shm/haul-shm-%s", M.tag); /* --kind posix */
	if (M.tag[0])
		unlink(path);
	th_mig_teardown(&M);
	/* the source's segment outlives it; the target's lives in its own IPC namespace */
	if (key && (id = shmget(key, 0, 0)) >= 0)
		shmctl(id, IPC_RMID, NULL);
}

/* Start shm_workload --kind @kind with @mib MiB in A; wait for its first tick. */
static void workload(const char *kind, int mib)
{
	char path[512], smem[16], skey[24];
	char *argv[] = {path,	     "--kind",	(char *)kind, "--mem", smem,	"--key", skey,
			"--control", M.control, "--tag",      M.tag,   "--hot", "32",	 NULL};

	key = 0x4d000000 | (getpid() & 0xffffff);
	snprintf(path, sizeof(path), "%s/shm_workload", th_progs_dir());
	snprintf(smem, sizeof(smem), "%d", mib);
	snprintf(skey, sizeof(skey), "%#x", key);
	M.wl_pid = th_spawn(M.net.a, argv, M.out);
	cr_assert_gt(M.wl_pid, 0);
	cr_assert_eq(th_wait_file(M.out, 0, "tick", 60000, NULL, 0), 0,
		     "the workload never started: %s", th_slurp(M.out));
}

static void moves_intact(const char *kind, const char *const extra[])
{
	long seq;

	th_mig_setup(&M, 0);
	workload(kind, 8);
	cr_assert(th_mig_verify(&M), "the workload does not verify before the move");
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	if (!th_mig_verify(&M))
		th_sh("grep 'verify FAIL' %s >&2", M.out);
	th_mig_assert_moved(&M, seq);
}

Test(mig_shmem, pre_copy_moves_a_shared_anonymous_object_mapped_twice, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--downtime", "100", NULL};

	moves_intact("anon", extra);
}

Test(mig_shmem, pre_copy_moves_a_closed_sealed_memfd_mapped_twice, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--downtime", "100", NULL};

	moves_intact("memfd", extra);
}

Test(mig_shmem, pre_copy_moves_a_sysv_segment_with_its_key_and_shmid, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--downtime", "100", NULL};

	moves_intact("sysv", extra);
}

Test(mig_shmem, pre_copy_moves_a_memfd_held_open_with_its_offset_and_unmapped_bytes,
     .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--downtime", "100", NULL};

	moves_intact("memfd-fd", extra);
}

Test(mig_shmem, pre_copy_moves_a_write_sealed_memfd_still_sealed, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--downtime", "100", NULL};

	/*
	 * Nothing writes a sealed memfd: no progress to compare, only where it
	 * runs.  No verify before the move either: its pages, written with
	 * write(), are in no page table until then, and must move all the same.
	 */
	th_mig_setup(&M, 0);
	workload("memfd-sealed", 1);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	cr_assert(th_mig_ticking(&M, M.net_b, 3000), "the workload does not tick in the target");
	cr_assert(th_mig_verify(&M), "the sealed memfd is not intact after the move");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}

Test(mig_shmem, pre_copy_moves_a_posix_shm_mapping_of_a_file_both_hosts_see, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--downtime", "100", NULL};

	moves_intact("posix", extra);
}

Test(mig_shmem, stop_and_copy_moves_a_memfd_and_its_seals, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--stop-and-copy", NULL};

	moves_intact("memfd", extra);
}

Test(mig_shmem, final_round_of_1gib_shared_memory_sends_only_the_dirty_pages, .fini = teardown,
     .timeout = 240)
{
	const char *extra[] = {"--downtime", "100", NULL};
	const long segment = (1L << 30) / 4096;
	long seq, last;

	th_mig_setup(&M, 0);
	workload("anon", 1024);
	seq = th_mig_seq(&M);
	cr_assert_eq(th_mig_migrate(&M, extra, 180000), 0, "haul migrate failed");
	th_mig_assert_moved(&M, seq);
	last = th_mig_final_round_pages(&M);
	cr_log_info("frozen round: %ld of %ld pages, %.0f rounds, downtime %.1f ms", last, segment,
		    th_mig_json(&M, "rounds"), th_mig_json(&M, "downtime_ms"));
	cr_assert_gt(th_mig_json(&M, "rounds"), 1, "no pre-copy round");
	cr_assert_geq(last, 0, "no pages_per_round in the report");
	/* 32 hot pages plus what the layout adds; the segment is 262144 pages */
	cr_assert_lt(last, segment / 100, "the frozen round sent %ld of %ld pages", last, segment);
}

/*
 * A fresh IPC namespace's first segment has shmid 0, and so does its copy
 * on the target (its inode there is 0 too): the second attachment must map
 * that segment, not make it again.  The test's own process (criterion forks
 * one per test) holds the namespace; workload and page server inherit it.
 */
Test(mig_shmem, post_copy_moves_a_sysv_segment_with_shmid_0, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--postcopy", NULL};

	cr_assert_eq(unshare(CLONE_NEWIPC), 0, "unshare(CLONE_NEWIPC): %s", strerror(errno));
	moves_intact("sysv", extra);
}

Test(mig_shmem, post_copy_moves_a_memfd_mapped_twice, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--postcopy", NULL};

	moves_intact("memfd", extra);
}

Test(mig_shmem, post_copy_of_a_write_sealed_memfd_is_refused_by_name_and_the_source_runs_on,
     .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--postcopy", NULL};
	long seq;

	th_mig_setup(&M, 0);
	workload("memfd-sealed-fd", 1);
	seq = th_mig_seq(&M);
	cr_assert_neq(th_mig_migrate(&M, extra, 60000), 0, "post-copy of a sealed memfd went on");
	cr_expect(th_sh("grep -q 'memfd haul-shm-sealed of pid [0-9]* has write seals' %s",
			M.json) == 0,
		  "the refusal does not name the sealed memfd");
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the source does not run on");
	cr_assert_geq(th_mig_seq(&M), seq);
	cr_assert(th_mig_verify(&M), "the sealed memfd is not intact after the refusal");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}

Test(mig_shmem, pre_copy_moves_a_write_sealed_memfd_held_open_and_mapped, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--downtime", "100", NULL};

	th_mig_setup(&M, 0);
	workload("memfd-sealed-fd", 1);
	cr_assert_eq(th_mig_migrate(&M, extra, 60000), 0, "haul migrate failed");
	cr_assert(th_mig_ticking(&M, M.net_b, 3000), "the workload does not tick in the target");
	cr_assert(th_mig_verify(&M), "the sealed memfd is not intact after the move");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}

Test(mig_shmem, post_copy_moves_a_sysv_segment, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--postcopy", NULL};

	moves_intact("sysv", extra);
}

Test(mig_shmem, post_copy_moves_a_shared_anonymous_object_mapped_twice, .fini = teardown,
     .timeout = 120)
{
	const char *extra[] = {"--postcopy", NULL};

	moves_intact("anon", extra);
}
