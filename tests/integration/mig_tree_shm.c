/*
 * mig_tree_shm.c - haul migrate of a process tree whose processes share
 * memory (tests/progs/rst_tree_shm share: MAP_SHARED anonymous memory moved
 * by mremap in one child and partly unmapped in the other, SysV segments,
 * memfds, POSIX shm), between two network namespaces, with pre-copy.  One
 * tracker per process: a store through any process's mapping is sent, and
 * each shared page by one process only (the big object crosses once).
 * After the move every process sees the others' new counts in every
 * object (the program checks it), its patterns are intact, and S1 keeps
 * its attachments.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "th_mig.h"
#include "th_proc.h"
#include "th_rst.h"

#define A_PAGES 2048 /* tests/progs/rst_tree_shm.c */

static struct th_mig M;
static char dir[160];
static int s1 = -1; /* the source's S1, never removed by it (it moved) */

static void teardown(void)
{
	char path[200];

	snprintf(path, sizeof(path), "%s/stop", dir);
	close(open(path, O_WRONLY | O_CREAT, 0644));
	pid_t root = M.wl_pid;

	th_mig_teardown(&M);
	if (s1 >= 0)
		shmctl(s1, IPC_RMID, NULL);
	/* its POSIX shm, named for the root (the teardown may kill it before it unlinks) */
	snprintf(path, sizeof(path), "/dev/shm/haul-treeshm-%d", (int)root);
	unlink(path);
}

struct line {
	long tick;
	int pid, nattch;
	unsigned long long peers;
	bool bad;
};

static struct line last_line(const char *name)
{
	char path[256];
	const char *s, *last;
	struct line l = {0};

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	s = th_slurp(path);
	l.bad = strstr(s, "BAD") != NULL;
	last = th_last_line(s);
	sscanf(last, "tick %ld pid %d peers %llu nattch %d", &l.tick, &l.pid, &l.peers, &l.nattch);
	return l;
}

/* Wait (bounded) until NAME's last line has tick >= @tick and peers > @peers. */
static struct line wait_for(const char *name, long tick, unsigned long long peers)
{
	struct line l = {0};

	for (int i = 0; i < 4000; i++) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		l = last_line(name);
		if (l.tick >= tick && l.peers > peers)
			return l;
		nanosleep(&ts, NULL);
	}
	cr_assert_fail("%s/%s.out never reached tick %ld with peers above %llu (tick %ld peers "
		       "%llu)",
		       dir, name, tick, peers, l.tick, l.peers);
	return l;
}

Test(mig_tree_shm, a_tree_sharing_memory_moves_with_pre_copy_and_shares_it_at_the_target,
     .fini = teardown, .timeout = 180)
{
	static const char *const names[] = {"r", "c1", "c2"};
	const char *extra[] = {"--downtime", "50", NULL};
	char bin[512], out[200], path[256];
	char *argv[] = {bin, dir, "share", NULL};
	struct line before[3];
	long top = 0;
	int pid;

	th_mig_setup(&M, 0);
	snprintf(dir, sizeof(dir), "%s/%s", M.dir, M.tag);
	mkdir(dir, 0755);
	snprintf(bin, sizeof(bin), "%s/rst_tree_shm", th_progs_dir());
	snprintf(out, sizeof(out), "%s/root.stdout", dir);
	M.wl_pid = th_spawn(M.net.a, argv, out);
	cr_assert_gt(M.wl_pid, 0);
	for (int i = 0; i < 3; i++)
		before[i] = wait_for(names[i], 3, 0);
	snprintf(path, sizeof(path), "%s/r.out", dir);
	sscanf(th_slurp(path), "ready %*d pid %d s1 %d", &pid, &s1);
	cr_expect_eq(before[0].nattch, 4, "S1 has %d attachments, not 4", before[0].nattch);
	cr_assert_eq(th_mig_run(&M, extra, 120000), 0,
		     "haul migrate of a tree sharing memory failed");
	cr_expect_eq(th_mig_json(&M, "processes"), 3);
	/* A (2048 pages of pattern) crossed once, not once per process mapping it */
	cr_expect_lt(th_mig_json(&M, "pages_sent"), 2 * A_PAGES, "%.0f pages sent",
		     th_mig_json(&M, "pages_sent"));
	for (int i = 0; i < 3; i++) {
		struct line l = last_line(names[i]);

		top = l.tick > top ? l.tick : top;
	}
	for (int i = 0; i < 3; i++) {
		/* every other process's count from the target, seen in every object */
		struct line now = wait_for(names[i], before[i].tick + 3, (unsigned long long)top);

		cr_expect(!now.bad, "%s: memory changed or no longer shared", names[i]);
		cr_expect_eq(now.pid, before[i].pid, "%s: pid %d, was %d", names[i], now.pid,
			     before[i].pid);
		cr_expect_eq(now.nattch, before[i].nattch, "%s: S1 has %d attachments, had %d",
			     names[i], now.nattch, before[i].nattch);
	}
}
