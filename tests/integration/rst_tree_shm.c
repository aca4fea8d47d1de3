/*
 * rst_tree_shm.c - shared memory between the processes of a tree
 * (tests/progs/rst_tree_shm): checkpoint and restore of a parent and two
 * children sharing MAP_SHARED anonymous memory (moved by mremap in one,
 * partly unmapped in another), two SysV segments (one IPC_RMID'ed while
 * attached, one attached twice by a child), two memfds (one closed after
 * mapping, one held open) and POSIX shm.  After the restore every pattern
 * is intact, the objects are still shared (each process sees the others'
 * new counts in every object: the programs check it), S1 has as many
 * attachments as before, and the big object's pages were stored once.
 * Memory shared with a process outside the tree is refused, naming it,
 * and both run on.
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
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "haul/haul.h"
#include "restore/restore.h"
#include "th_net.h"
#include "th_rst.h"
#include "th_tree.h"

#define A_PAGES 2048 /* tests/progs/rst_tree_shm.c */

struct line {
	long tick;
	int pid, nattch, s1;
	unsigned long long peers;
	bool bad;
};

static void make_dir(char *dir, size_t len, const char *tag)
{
	snprintf(dir, len, "/tmp/haul-treeshm-%s-%d", tag, (int)getpid());
	mkdir(dir, 0755);
}

/* The last line of DIR/NAME.out, parsed; bad: a BAD line anywhere in it. */
static struct line last_line(const char *dir, const char *name)
{
	char path[512];
	const char *s, *last;
	struct line l = {0};

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	s = th_slurp(path);
	l.bad = strstr(s, "BAD") != NULL;
	last = th_last_line(s);
	if (sscanf(last, "tick %ld pid %d peers %llu nattch %d", &l.tick, &l.pid, &l.peers,
		   &l.nattch) != 4)
		sscanf(last, "ready %*d pid %d s1 %d", &l.pid, &l.s1);
	return l;
}

/* Wait (bounded) until NAME's last line has tick >= @tick and peers > @peers. */
static struct line wait_for(const char *dir, const char *name, long tick, unsigned long long peers)
{
	struct line l = {0};

	for (int i = 0; i < 3000; i++) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		l = last_line(dir, name);
		if (l.tick >= tick && (peers == 0 || l.peers > peers))
			return l;
		nanosleep(&ts, NULL);
	}
	cr_assert_fail("%s/%s.out never reached tick %ld with peers above %llu (tick %ld peers "
		       "%llu)",
		       dir, name, tick, peers, l.tick, l.peers);
	return l;
}

/* S1's shmid, from the root's first line. */
static int s1_of(const char *dir)
{
	char path[512];
	int pid, s1 = -1;

	snprintf(path, sizeof(path), "%s/r.out", dir);
	sscanf(th_slurp(path), "ready %*d pid %d s1 %d", &pid, &s1);
	return s1;
}

/* Wait (bounded) until no process has pid @pid any more (killed ones are reaped by init). */
static void wait_pid_free(pid_t pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d", (int)pid);
	for (int i = 0; i < 2000 && access(path, F_OK) == 0; i++) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
}

/* What a failed share_cycle leaves behind, for cleanup(). */
static struct {
	char dir[256];
	int s1;
	pid_t root;
} left = {"", -1, 0};

/* After a failure: let every copy of the tree end, remove its files and the source's S1. */
static void cleanup(void)
{
	char cmd[600];

	if (!left.dir[0])
		return;
	th_tree_touch(left.dir, "stop");
	if (left.s1 >= 0)
		shmctl(left.s1, IPC_RMID, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s /dev/shm/haul-treeshm-%d", left.dir, (int)left.root);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", left.dir);
	left.dir[0] = '\0';
}

/*
 * rst_tree_shm DIR share: checkpoint (the source dies), restore (@ns; on
 * the host: once the old pids are free), every process sees the others'
 * new counts in every object, patterns intact, S1's attachments as before,
 * the big object stored once.
 */
static void share_cycle(const char *tag, enum rst_pidns ns)
{
	static const char *const names[] = {"r", "c1", "c2"};
	struct rst_target_opts o = {.pidns = ns};
	const char *args[] = {NULL, "share", NULL};
	char dir[256], out[512], imgs[512], cmd[600];
	struct rst_ckpt_stats st;
	struct rst_target *t = NULL;
	struct line before[3];
	long top = 0;
	pid_t pid, here = 0;
	int ret, status, s1;

	make_dir(dir, sizeof(dir), tag);
	args[0] = dir;
	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	pid = th_spawn_prog(out, "rst_tree_shm", args);
	for (int i = 0; i < 3; i++)
		wait_for(dir, names[i], 3, 0);
	s1 = s1_of(dir);
	snprintf(left.dir, sizeof(left.dir), "%s", dir);
	left.s1 = s1;
	left.root = pid;
	ret = haul_checkpoint_images(pid, imgs, false, NULL, &st);
	cr_assert_eq(ret, 0, "checkpoint of the tree of pid %d failed: %s", (int)pid,
		     strerror(-ret));
	waitpid(pid, &status, 0);
	/* A (2048 pages of pattern) once, not once per process that maps it */
	cr_expect_geq(st.pages, A_PAGES, "only %llu pages stored", (unsigned long long)st.pages);
	cr_expect_lt(st.pages, 2 * A_PAGES, "%llu pages stored: shared memory stored per process",
		     (unsigned long long)st.pages);
	for (int i = 0; i < 3; i++) {
		before[i] = last_line(dir, names[i]);
		cr_assert(!before[i].bad, "%s: BAD before the restore", names[i]);
		top = before[i].tick > top ? before[i].tick : top;
	}
	cr_expect_eq(before[0].nattch, 4, "S1 had %d attachments, not 4", before[0].nattch);
	for (int i = 0; ns == RST_PIDNS_NEVER && i < 3; i++)
		wait_pid_free(before[i].pid);
	ret = rst_restore_images(imgs, NULL, 0, &o, &t, &here);
	cr_assert_eq(ret, 0, "restore of the tree failed: %s", strerror(-ret));
	for (int i = 0; i < 3; i++) {
		/* every other process's count after the restore, seen in every object */
		struct line now =
			wait_for(dir, names[i], before[i].tick + 3, (unsigned long long)top);

		cr_expect_eq(now.pid, before[i].pid, "%s: pid %d, was %d", names[i], now.pid,
			     before[i].pid);
		cr_expect(!now.bad, "%s: memory changed or no longer shared", names[i]);
		cr_expect_eq(now.nattch, before[i].nattch, "%s: S1 has %d attachments, had %d",
			     names[i], now.nattch, before[i].nattch);
	}
	th_tree_touch(dir, "stop");
	cr_expect_eq(rst_target_wait(t), 0);
	rst_target_free(t);
	/* the source's S1 outlived it (never removed); the restored one was removed */
	if (s1 >= 0)
		shmctl(s1, IPC_RMID, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf %s /dev/shm/haul-treeshm-%d", dir, (int)pid);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
	left.dir[0] = '\0';
}

Test(rst_tree_shm, shared_memory_of_a_tree_is_shared_again_after_restore_and_stored_once,
     .fini = cleanup, .timeout = 180)
{
	share_cycle("share", RST_PIDNS_ALWAYS);
}

Test(rst_tree_shm, shared_memory_of_a_tree_restored_on_the_host_with_its_pids_is_shared_again,
     .fini = cleanup, .timeout = 180)
{
	share_cycle("host", RST_PIDNS_NEVER);
}

Test(rst_tree_shm, memory_shared_with_a_process_outside_the_tree_is_refused_naming_it,
     .timeout = 120)
{
	const char *args[] = {NULL, "outside", NULL};
	const char *bin = getenv("HAUL_BIN") ? getenv("HAUL_BIN") : "build/haul";
	char dir[256], out[512], text[8192], want[64], cmd[600];
	struct line c1;
	pid_t pid;
	int ret, status;

	make_dir(dir, sizeof(dir), "outside");
	args[0] = dir;
	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	pid = th_spawn_prog(out, "rst_tree_shm", args);
	wait_for(dir, "r", 3, 0);
	c1 = wait_for(dir, "c1", 3, 0);
	/* c1 and its (empty) tree: the root, outside it, maps the same object */
	ret = th_run(text, sizeof(text), "%s checkpoint %d --images %s/images", bin, c1.pid, dir);
	cr_expect_neq(ret, 0, "checkpoint of pid %d was not refused: %s", c1.pid, text);
	snprintf(want, sizeof(want), "also mapped by pid %d", (int)pid);
	cr_expect(strstr(text, want) != NULL, "the refusal does not name pid %d: %s", (int)pid,
		  text);
	/* both run on */
	wait_for(dir, "r", last_line(dir, "r").tick + 3, 0);
	wait_for(dir, "c1", last_line(dir, "c1").tick + 3, 0);
	th_tree_touch(dir, "stop");
	cr_expect_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the root ended with %#x", status);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}
