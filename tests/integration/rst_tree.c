/*
 * rst_tree.c - checkpoint and restore of process trees (tests/progs/rst_tree):
 * every process comes back with its pid, parent, process group and session
 * (as each sees itself: the restored processes print their own ids), its
 * memory intact, and carries on; zombies keep their exit status; a tree
 * that cannot be carried is refused naming the pid and resource, and every
 * process of it runs on.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "haul/haul.h"
#include "restore/restore.h"
#include "th_rst.h"
#include "th_tree.h"

struct ids {
	int pid, ppid, pgid, sid;
};

static void make_dir(char *dir, size_t len, const char *tag)
{
	snprintf(dir, len, "/tmp/haul-tree-%s-%d", tag, (int)getpid());
	mkdir(dir, 0755);
}

/*
 * After every test, also a failed one: no rst_tree of this test's
 * directories may run on (a restored tree's processes outlive the test
 * that failed before its finish()), and the directories go.
 */
static void sweep(void)
{
	char cmd[256];

	snprintf(cmd, sizeof(cmd),
		 "pkill -9 -f '^[^ ]*rst_tree /tmp/haul-tree-[a-z]*-%d( |$)'; "
		 "rm -rf /tmp/haul-tree-*-%d",
		 (int)getpid(), (int)getpid());
	if (system(cmd) < 0)
		cr_log_warn("cannot sweep after the test");
}

TestSuite(rst_tree, .fini = sweep);

/* Lines of DIR/NAME.out. */
static int count_lines(const char *dir, const char *name, const char *needle)
{
	char path[512];
	const char *s;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	for (s = th_slurp_lines(path); (s = strstr(s, needle)); s++)
		n++;
	return n;
}

/* Wait (bounded) until DIR/NAME.out holds @n lines with @needle. */
static void wait_lines(const char *dir, const char *name, const char *needle, int n)
{
	for (int i = 0; i < 3000; i++) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		if (count_lines(dir, name, needle) >= n)
			return;
		nanosleep(&ts, NULL);
	}
	cr_assert_fail("%s/%s.out never had %d lines with '%s'", dir, name, n, needle);
}

/* The ids on the last line of DIR/NAME.out. */
static struct ids last_ids(const char *dir, const char *name)
{
	char path[512];
	const char *s, *last;
	struct ids id = {0};

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	s = th_slurp(path);
	last = th_last_line(s);
	cr_assert_eq(sscanf(last, "%*s %*d pid %d ppid %d pgid %d sid %d", &id.pid, &id.ppid,
			    &id.pgid, &id.sid),
		     4, "no ids in %s: %s", path, last);
	return id;
}

/* The "threads N" count on the last line of DIR/NAME.out (0: none). */
static unsigned long thread_count(const char *dir, const char *name)
{
	char path[512];
	const char *s, *last = NULL;
	unsigned long n = 0;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	for (s = th_slurp(path); (s = strstr(s, "threads ")); s++)
		last = s;
	if (last)
		sscanf(last, "threads %lu", &n);
	return n;
}

/*
 * Spawn rst_tree DIR @shape, wait until all @n processes @names tick,
 * record their ids, checkpoint the tree (the source dies), restore it
 * (@ns), and check every process is back with the same ids (the root's
 * parent aside: it was the test), ticking on with its memory intact.
 */
/* The cgroup2 mount ("" when there is none). */
static const char *cgroup2_mount(void)
{
	static char mnt[256];
	char line[512], dev[64], type[64];
	FILE *f = fopen("/proc/self/mounts", "r");

	mnt[0] = '\0';
	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %255s %63s", dev, mnt, type) == 3 &&
		    !strcmp(type, "cgroup2"))
			break;
		else
			mnt[0] = '\0';
	if (f)
		fclose(f);
	return mnt;
}

/* rst_tree DIR @shape started inside cgroup @cg (its children follow it there). */
static pid_t spawn_in_cgroup(const char *dir, const char *shape, const char *cg)
{
	char bin[512], procs[600];
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/rst_tree", th_progs_dir());
	snprintf(procs, sizeof(procs), "%s/cgroup.procs", cg);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR), fd = open(procs, O_WRONLY);

		if (nul < 0 || fd < 0 || write(fd, "0", 1) != 1 || dup2(nul, 0) < 0 ||
		    dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
			_exit(126);
		closefrom(3);
		execl(bin, bin, dir, shape, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/*
 * Spawn rst_tree DIR @shape (inside cgroup @cg when not NULL), wait until
 * all @n processes @names tick, record their ids, checkpoint the tree
 * (`haul checkpoint --cgroup` for @cg; the source dies), restore it (@ns),
 * and check every process is back with the same ids (the root's parent
 * aside: it was the test), ticking on with its memory intact.
 */
static struct rst_target *cycle_cg(const char *dir, const char *shape, const char *const *names,
				   int n, enum rst_pidns ns, struct ids *before, const char *cg);

static struct rst_target *cycle(const char *dir, const char *shape, const char *const *names, int n,
				enum rst_pidns ns, struct ids *before)
{
	return cycle_cg(dir, shape, names, n, ns, before, NULL);
}

static struct rst_target *cycle_cg(const char *dir, const char *shape, const char *const *names,
				   int n, enum rst_pidns ns, struct ids *before, const char *cg)
{
	struct rst_target_opts o = {.pidns = ns};
	char out[512], imgs[512];
	struct rst_ckpt_stats st;
	struct rst_target *t = NULL;
	const char *args[] = {dir, shape, NULL};
	int ticks[16];
	pid_t pid, here = 0;
	int ret, status;

	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	pid = cg ? spawn_in_cgroup(dir, shape, cg) : th_spawn_prog(out, "rst_tree", args);
	for (int i = 0; i < n; i++)
		wait_lines(dir, names[i], "tick", 3);
	if (cg) {
		char cmd[1600];
		const char *bin = getenv("HAUL_BIN") ? getenv("HAUL_BIN") : "build/haul";

		snprintf(cmd, sizeof(cmd), "%s checkpoint --cgroup %s --images %s", bin, cg, imgs);
		ret = system(cmd) == 0 ? 0 : -EIO;
	} else {
		ret = haul_checkpoint_images(pid, imgs, false, NULL, &st);
	}
	cr_assert_eq(ret, 0, "checkpoint of the tree of pid %d failed: %s", (int)pid,
		     strerror(-ret));
	for (int i = 0; i < n; i++) {
		before[i] = last_ids(dir, names[i]);
		cr_assert_eq(strstr(th_slurp(out), "BAD"), NULL);
	}
	/* killed and reaped already (the checkpoint, its tracer, saw it die first) */
	waitpid(pid, &status, 0);
	for (int i = 0; i < n; i++)
		ticks[i] = count_lines(dir, names[i], "tick");
	ret = rst_restore_images(imgs, NULL, 0, &o, &t, &here);
	cr_assert_eq(ret, 0, "restore of the tree failed: %s", strerror(-ret));
	for (int i = 0; i < n; i++) {
		struct ids now;

		wait_lines(dir, names[i], "tick", ticks[i] + 3);
		now = last_ids(dir, names[i]);
		cr_expect_eq(now.pid, before[i].pid, "%s: pid %d, was %d", names[i], now.pid,
			     before[i].pid);
		if (i)
			cr_expect_eq(now.ppid, before[i].ppid, "%s: ppid %d, was %d", names[i],
				     now.ppid, before[i].ppid);
		cr_expect_eq(now.pgid, before[i].pgid, "%s: pgid %d, was %d", names[i], now.pgid,
			     before[i].pgid);
		cr_expect_eq(now.sid, before[i].sid, "%s: sid %d, was %d", names[i], now.sid,
			     before[i].sid);
		cr_expect_eq(count_lines(dir, names[i], "BAD"), 0, "%s: memory changed", names[i]);
	}
	return t;
}

static void finish_dir(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

/* Let the tree end (DIR/stop): the root reaps its children and exits 0. */
static void finish(const char *dir, struct rst_target *t)
{
	int status;

	th_tree_touch(dir, "stop");
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "the restored root exited with %d", status);
	finish_dir(dir);
}

Test(rst_tree, parent_three_children_and_grandchild_come_back_with_their_ids_and_memory,
     .timeout = 120)
{
	static const char *const names[] = {"r", "c1", "c2", "c3", "g1"};
	struct ids before[5];
	char dir[256];
	struct rst_target *t;

	make_dir(dir, sizeof(dir), "family");
	t = cycle(dir, "family", names, 5, RST_PIDNS_ALWAYS, before);
	cr_expect_eq(before[4].ppid, before[1].pid, "g1 is not c1's child");
	/* c2's second thread counts on in the restored c2 */
	{
		unsigned long t1 = thread_count(dir, "c2"), t2;
		int n = count_lines(dir, "c2", "tick");

		wait_lines(dir, "c2", "tick", n + 5);
		t2 = thread_count(dir, "c2");
		cr_expect_gt(t2, t1, "c2's second thread stopped counting at %lu", t1);
	}
	finish(dir, t);
}

Test(rst_tree, checkpoint_by_cgroup_takes_every_process_of_it, .timeout = 120)
{
	static const char *const names[] = {"r", "c1", "c2", "c3", "g1"};
	struct ids before[5];
	char dir[256], cg[512];
	struct rst_target *t;

	if (!cgroup2_mount()[0])
		cr_skip_test("no cgroup2 mount here");
	snprintf(cg, sizeof(cg), "%s/haul-tree-%d", cgroup2_mount(), (int)getpid());
	cr_assert(mkdir(cg, 0755) == 0 || errno == EEXIST, "cannot make cgroup %s", cg);
	make_dir(dir, sizeof(dir), "cgroup");
	t = cycle_cg(dir, "family", names, 5, RST_PIDNS_ALWAYS, before, cg);
	finish(dir, t);
	for (int i = 0; i < 200 && rmdir(cg) < 0 && errno == EBUSY; i++) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		nanosleep(&ts, NULL); /* the last of the tree still exiting */
	}
}

Test(rst_tree, zombies_keep_their_exit_status_for_the_restored_parent, .timeout = 120)
{
	static const char *const names[] = {"r"};
	struct ids before[1];
	char dir[256], path[512];
	struct rst_target *t;
	const char *s;
	int pid1 = 0, st1 = 0, pid2 = 0, st2 = 0, pid3 = 0, st3 = 0;

	make_dir(dir, sizeof(dir), "zombie");
	t = cycle(dir, "zombie", names, 1, RST_PIDNS_ALWAYS, before);
	th_tree_touch(dir, "reap");
	wait_lines(dir, "r", "reaped", 3);
	snprintf(path, sizeof(path), "%s/r.out", dir);
	s = strstr(th_slurp_lines(path), "reaped");
	cr_assert(s && sscanf(s, "reaped %d status %d", &pid1, &st1) == 2);
	s = strstr(s + 1, "reaped");
	cr_assert(s && sscanf(s, "reaped %d status %d", &pid2, &st2) == 2);
	s = strstr(s + 1, "reaped");
	cr_assert(s && sscanf(s, "reaped %d status %d", &pid3, &st3) == 2);
	cr_expect(pid1 > 0 && WIFEXITED(st1) && WEXITSTATUS(st1) == 42,
		  "the first zombie was reaped as %d with status %#x", pid1, st1);
	cr_expect(pid2 > 0 && WIFSIGNALED(st2) && WTERMSIG(st2) == SIGTERM,
		  "the second zombie was reaped as %d with status %#x", pid2, st2);
	/* SIGKILL ends a stopped stub at once: it cannot wait in a ptrace stop */
	cr_expect(pid3 > 0 && WIFSIGNALED(st3) && WTERMSIG(st3) == SIGKILL,
		  "the third zombie was reaped as %d with status %#x", pid3, st3);
	finish(dir, t);
}

Test(rst_tree, two_sessions_and_groups_with_a_leader_outside_the_tree_come_back, .timeout = 120)
{
	static const char *const names[] = {"r", "s1", "s2", "s3", "p1", "p2"};
	struct ids before[6];
	char dir[256];
	struct rst_target *t;

	make_dir(dir, sizeof(dir), "sessions");
	t = cycle(dir, "sessions", names, 6, RST_PIDNS_AUTO, before);
	cr_expect_neq(before[0].sid, before[0].pid, "the root should not lead its session");
	cr_expect_eq(before[1].sid, before[1].pid, "s1 should lead a session");
	cr_expect_eq(before[2].pgid, before[2].pid, "s2 should lead a group");
	cr_expect_eq(before[5].pgid, before[4].pid, "p2 should be in p1's group");
	finish(dir, t);
}

Test(rst_tree, a_group_whose_leader_is_gone_comes_back_in_a_root_led_session, .timeout = 120)
{
	static const char *const names[] = {"r", "p2"};
	struct ids before[2];
	char dir[256];
	struct rst_target *t;

	make_dir(dir, sizeof(dir), "lostleader");
	t = cycle(dir, "lostleader", names, 2, RST_PIDNS_ALWAYS, before);
	cr_expect_eq(before[0].sid, before[0].pid, "the root should lead its session");
	cr_expect(before[1].pgid != before[1].pid && before[1].pgid != before[0].pid,
		  "p2 should be in the group of p1, which is gone (pgid %d)", before[1].pgid);
	finish(dir, t);
}

/* rst_tree DIR @shape is refused, and every one of its @n processes @names runs on. */
static void refused_and_running(const char *shape, const char *const *names, int n)
{
	char dir[256], out[512], imgs[512], cmd[600];
	const char *args[] = {dir, shape, NULL};
	struct rst_ckpt_stats st;
	int ticks[3], ret, status;
	pid_t pid;

	make_dir(dir, sizeof(dir), shape);
	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	pid = th_spawn_prog(out, "rst_tree", args);
	for (int i = 0; i < n; i++)
		wait_lines(dir, names[i], "tick", 3);
	ret = haul_checkpoint_images(pid, imgs, false, NULL, &st);
	cr_expect_eq(ret, -EOPNOTSUPP, "checkpoint of a tree (%s): %s", shape, strerror(-ret));
	/* every process of it carries on: new ticks in each */
	for (int i = 0; i < n; i++) {
		ticks[i] = count_lines(dir, names[i], "tick");
		wait_lines(dir, names[i], "tick", ticks[i] + 3);
	}
	th_tree_touch(dir, "stop");
	cr_expect_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the root ended with %#x", status);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

Test(rst_tree, a_refused_child_is_named_and_every_process_runs_on, .timeout = 120)
{
	static const char *const names[] = {"r", "c1", "c2"};

	refused_and_running("timer", names, 3);
}

Test(rst_tree, a_child_stopped_by_job_control_comes_back_stopped_by_the_same_signal, .timeout = 120)
{
	static const char *const names[] = {"r"};
	struct ids before[1];
	char dir[256], path[512];
	struct rst_target *t;
	const char *last;
	int n, ran;

	make_dir(dir, sizeof(dir), "jobstop");
	t = cycle(dir, "jobstop", names, 1, RST_PIDNS_ALWAYS, before);
	ran = count_lines(dir, "s1", "ran");
	n = count_lines(dir, "r", "tick");
	wait_lines(dir, "r", "tick", n + 10);
	snprintf(path, sizeof(path), "%s/r.out", dir);
	last = th_last_line(th_slurp(path));
	/* its parent's wait reports the stop, by SIGTSTP as on the source */
	cr_expect(strstr(last, "stopsig 20") != NULL, "the root's wait for s1 says: %s", last);
	cr_expect_eq(count_lines(dir, "s1", "ran"), ran, "s1 ran after the restore (%d lines, %d)",
		     count_lines(dir, "s1", "ran"), ran);
	finish(dir, t);
}

/* Wait until the root's last tick says the shared deleted file is bigger than @than. */
static long long ghost_size_past(const char *dir, long long than)
{
	char path[512];
	long long sz = -1;

	snprintf(path, sizeof(path), "%s/r.out", dir);
	for (int i = 0; i < 300; i++) {
		const char *g = strstr(th_last_line(th_slurp(path)), "ghost ");

		if (g && sscanf(g, "ghost %lld", &sz) == 1 && sz > than)
			return sz;
		usleep(10 * 1000);
	}
	return sz;
}

Test(rst_tree, two_opens_of_one_deleted_file_in_parent_and_child_stay_one_file, .timeout = 120)
{
	static const char *const names[] = {"r", "c1"};
	struct ids before[2];
	char dir[256];
	struct rst_target *t;
	long long at;

	make_dir(dir, sizeof(dir), "ghost");
	t = cycle(dir, "ghost", names, 2, RST_PIDNS_ALWAYS, before);
	at = ghost_size_past(dir, 0);
	cr_assert_gt(at, 0, "the root never saw c1's lines in the deleted file");
	/* c1 appends on through its fd, the root sees them through its own */
	cr_expect_gt(ghost_size_past(dir, at), at,
		     "c1's lines no longer reach the root's fd of the deleted file (%lld bytes)",
		     at);
	finish(dir, t);
}

/* The echo count on the last line of DIR/c1.out (-1: none). */
static long echoes(const char *dir)
{
	char path[512];
	const char *e;
	long n = -1;

	snprintf(path, sizeof(path), "%s/c1.out", dir);
	e = strstr(th_last_line(th_slurp(path)), "echo ");
	if (e)
		sscanf(e, "echo %ld", &n);
	return n;
}

/* Both ends restored, neither meeting a closed port on the way (fd_tcp_local.c). */
Test(rst_tree, tcp_connections_between_parent_and_child_on_loopback_carry_on, .timeout = 120)
{
	static const char *const names[] = {"r", "c1"};
	struct ids before[2];
	char dir[256];
	struct rst_target *t;
	long at;
	int n;

	make_dir(dir, sizeof(dir), "loopback");
	t = cycle(dir, "loopback", names, 2, RST_PIDNS_ALWAYS, before);
	at = echoes(dir);
	n = count_lines(dir, "c1", "tick");
	wait_lines(dir, "c1", "tick", n + 10);
	cr_expect_gt(echoes(dir), at, "no round trip on loopback after the restore (%ld)", at);
	cr_expect_eq(count_lines(dir, "c1", "BAD"), 0, "c1's connections failed");
	cr_expect_eq(count_lines(dir, "r", "BAD"), 0, "the root's connections failed");
	finish(dir, t);
}

/*
 * `@env haul checkpoint @args` of the loopback tree exits with @want, and
 * the tree runs on: its connections (put in repair mode by the dump) carry
 * on, and no network lock is left in the way.
 */
static void loopback_runs_on(const char *tag, const char *env, const char *args_, int want)
{
	const char *bin = getenv("HAUL_BIN") ? getenv("HAUL_BIN") : "build/haul";
	char dir[256], out[512], cmd[1200];
	const char *args[] = {dir, "loopback", NULL};
	int status, n;
	long at;
	pid_t pid;

	make_dir(dir, sizeof(dir), tag);
	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	pid = th_spawn_prog(out, "rst_tree", args);
	wait_lines(dir, "c1", "tick", 3);
	snprintf(cmd, sizeof(cmd), "%s %s checkpoint %d --images %s/images %s", env, bin, (int)pid,
		 dir, args_);
	status = system(cmd);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == want, "%s: status %#x, not %d", cmd,
		  status, want);
	/* a killed haul's survivor lifts its lock: wait for that (bounded); only ours counts */
	snprintf(
		cmd, sizeof(cmd),
		"for i in $(seq 200); do nft list tables | grep -q 'inet haul-lock-%d-' || exit 0; "
		"sleep 0.05; done; exit 1",
		(int)pid);
	cr_assert_eq(system(cmd), 0, "a network lock outlived the checkpoint");
	at = echoes(dir);
	n = count_lines(dir, "c1", "tick");
	wait_lines(dir, "c1", "tick", n + 10);
	cr_expect_gt(echoes(dir), at, "no round trip after the checkpoint (%ld)", at);
	cr_expect_eq(count_lines(dir, "c1", "BAD") + count_lines(dir, "r", "BAD"), 0,
		     "a connection failed after the checkpoint");
	th_tree_touch(dir, "stop");
	cr_expect_eq(waitpid(pid, &status, 0), pid);
	finish_dir(dir);
}

/* --leave-running: the connections the dump put in repair mode carry on after it. */
Test(rst_tree, tcp_connections_on_loopback_carry_on_after_a_checkpoint_that_leaves_them_running,
     .timeout = 120)
{
	loopback_runs_on("loopleave", "", "--leave-running", 0);
}

/*
 * haul killed after the dump (HAUL_FAULT): no image, and the survivors
 * take the connections out of repair mode and lift the lock before the
 * tree runs on.
 */
Test(rst_tree, tcp_connections_on_loopback_carry_on_after_a_haul_killed_in_the_checkpoint,
     .timeout = 120)
{
	loopback_runs_on("loopkilled", "HAUL_FAULT=ckpt-kill:staged", "", 128 + SIGKILL);
}

/* The restore could not rebuild g1's session: refused before the tree is killed. */
Test(rst_tree, a_session_the_restore_cannot_rebuild_is_refused_at_the_checkpoint, .timeout = 120)
{
	static const char *const names[] = {"r", "c1", "g1"};

	refused_and_running("latesetsid", names, 3);
}

Test(rst_tree, shared_anonymous_memory_between_processes_comes_back_shared, .timeout = 120)
{
	static const char *const names[] = {"r", "c1"};
	struct ids before[2];
	char dir[256];

	/* more in rst_tree_shm.c */
	make_dir(dir, sizeof(dir), "shmem");
	finish(dir, cycle(dir, "shmem", names, 2, RST_PIDNS_ALWAYS, before));
}

Test(rst_tree, siblings_sharing_an_fd_table_their_parent_does_not_are_refused_and_run_on,
     .timeout = 120)
{
	static const char *const names[] = {"r", "c1", "c2"};

	refused_and_running("siblingfiles", names, 3);
}

/* The host PIDs of the live rst_tree processes of @dir: at most @max into @pids; the count. */
static int tree_hosts(const char *dir, pid_t *pids, int max)
{
	struct dirent *de;
	DIR *d = opendir("/proc");
	int n = 0;

	while (d && n < max && (de = readdir(d))) {
		char path[300], cmd[1024];
		ssize_t len;
		size_t a0;
		int fd;

		if (atoi(de->d_name) <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		len = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (len <= 0)
			continue;
		cmd[len] = '\0';
		a0 = strlen(cmd);
		if (a0 >= 8 && !strcmp(cmd + a0 - 8, "rst_tree") && (ssize_t)a0 + 1 < len &&
		    !strcmp(cmd + a0 + 1, dir))
			pids[n++] = atoi(de->d_name);
	}
	if (d)
		closedir(d);
	return n;
}

/*
 * A child cloned with CLONE_FILES | CLONE_FS (no CLONE_VM): forked again
 * with them, it shares its parent's fd table and cwd after the restore
 * (kcmp), and both tick on.
 */
Test(rst_tree, a_child_sharing_its_parents_fd_table_and_cwd_comes_back_sharing_them, .timeout = 120)
{
	static const char *const names[] = {"r", "c1"};
	struct ids before[2];
	char dir[256];
	struct rst_target *t;
	pid_t h[4];

	make_dir(dir, sizeof(dir), "clonefiles");
	t = cycle(dir, "clonefiles", names, 2, RST_PIDNS_ALWAYS, before);
	cr_assert_eq(tree_hosts(dir, h, 4), 2, "not the 2 processes of the tree");
	cr_expect_eq(syscall(SYS_kcmp, h[0], h[1], 2 /* KCMP_FILES */, 0, 0), 0,
		     "pids %d and %d have separate fd tables", (int)h[0], (int)h[1]);
	cr_expect_eq(syscall(SYS_kcmp, h[0], h[1], 3 /* KCMP_FS */, 0, 0), 0,
		     "pids %d and %d have separate fs info", (int)h[0], (int)h[1]);
	finish(dir, t);
}

/* Each NAME's numbers in @text, in order: 1, 2, 3... with no gap, and nothing else. */
static void expect_contiguous(const char *text, const char *const *names, int n)
{
	long next[4] = {1, 1, 1, 1};
	char line[128];

	for (const char *s = text; *s;) {
		size_t len = strcspn(s, "\n");
		char who[16];
		long v;
		int k;

		cr_assert_lt(len, sizeof(line), "a line of %zu bytes in the shared file", len);
		memcpy(line, s, len);
		line[len] = '\0';
		cr_assert_eq(sscanf(line, "%15s %ld", who, &v), 2, "a broken line '%s'", line);
		for (k = 0; k < n && strcmp(who, names[k]); k++)
			;
		cr_assert_lt(k, n, "a line of no writer: '%s'", line);
		cr_assert_eq(v, next[k], "%s wrote %ld after %ld: a line was lost or overwritten",
			     who, v, next[k] - 1);
		next[k]++;
		s += len + (s[len] == '\n');
	}
	for (int k = 0; k < n; k++)
		/* 3 ticks before the dump and 3 after, at least (cycle) */
		cr_expect_gt(next[k], 6, "%s wrote only %ld lines", names[k], next[k] - 1);
}

Test(rst_tree, an_inherited_file_offset_stays_shared_by_parent_and_child, .timeout = 120)
{
	static const char *const names[] = {"r", "c1"};
	struct ids before[2];
	char dir[256], path[512];
	struct rst_target *t;

	make_dir(dir, sizeof(dir), "stdout");
	t = cycle(dir, "stdout", names, 2, RST_PIDNS_ALWAYS, before);
	th_tree_touch(dir, "stop");
	cr_expect_eq(rst_target_wait(t), 0);
	rst_target_free(t);
	snprintf(path, sizeof(path), "%s/shared.out", dir);
	expect_contiguous(th_slurp(path), names, 2);
	finish_dir(dir);
}

/* The SIGIO count on @name's last tick line. */
static int last_sigio(const char *dir, const char *name)
{
	char path[512];
	const char *s, *last = NULL;
	int n = -1;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	for (s = th_slurp(path); (s = strstr(s, "sigio ")); s++)
		last = s;
	if (last)
		sscanf(last, "sigio %d", &n);
	return n;
}

Test(rst_tree, o_async_signals_owned_by_another_process_of_the_tree_still_reach_it, .timeout = 120)
{
	static const char *const names[] = {"r", "c1"};
	struct ids before[2];
	char dir[256];
	struct rst_target *t;
	int at_dump, later = -1;

	make_dir(dir, sizeof(dir), "async");
	t = cycle(dir, "async", names, 2, RST_PIDNS_ALWAYS, before);
	at_dump = last_sigio(dir, "r");
	cr_assert_gt(at_dump, 0, "the root got no SIGIO before the checkpoint");
	for (int i = 0; i < 3000 && later < at_dump + 3; i++) {
		struct timespec ts = {0, 1000 * 1000};

		nanosleep(&ts, NULL);
		later = last_sigio(dir, "r");
	}
	cr_expect_geq(
		later, at_dump + 3,
		"c1's O_ASYNC pipe no longer signals the root after the restore (%d, then %d)",
		at_dump, later);
	finish(dir, t);
}

/* rst_tree DIR pipeline undisturbed: its output. */
static char *undisturbed_pipeline(const char *dir)
{
	const char *args[] = {dir, "pipeline", NULL};
	char out[512], path[512];
	int status;
	pid_t pid;

	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	pid = th_spawn_prog(out, "rst_tree", args);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the pipeline failed: %#x",
		  status);
	snprintf(path, sizeof(path), "%s/pipeline.out", dir);
	return strdup(th_slurp(path));
}

Test(rst_tree, a_pipeline_with_bytes_in_flight_gives_the_undisturbed_output, .timeout = 120)
{
	struct rst_target_opts o = {.pidns = RST_PIDNS_AUTO};
	char dir[256], ref[300], imgs[512], out[512], path[512], hold[512];
	const char *args[] = {dir, "pipeline", NULL};
	struct rst_ckpt_stats st;
	struct rst_target *t = NULL;
	char *want;
	pid_t pid, here;
	int ret, status;

	make_dir(dir, sizeof(dir), "pipeline");
	snprintf(ref, sizeof(ref), "%s/ref", dir);
	mkdir(ref, 0755);
	want = undisturbed_pipeline(ref);
	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	snprintf(path, sizeof(path), "%s/pipeline.out", dir);
	/* in flight: the consumer has written some, far from all, and waits for DIR/hold to go */
	th_tree_touch(dir, "hold");
	pid = th_spawn_prog(out, "rst_tree", args);
	for (int i = 0; i < 2000 && strlen(th_slurp(path)) < 4096; i++) {
		struct timespec ts = {0, 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	ret = haul_checkpoint_images(pid, imgs, false, NULL, &st);
	cr_assert_eq(ret, 0, "checkpoint of the pipeline: %s", strerror(-ret));
	waitpid(pid, &status, 0);
	cr_expect_eq(strstr(th_slurp(path), "done"), NULL, "the pipeline ended before its dump");
	snprintf(hold, sizeof(hold), "%s/hold", dir);
	cr_assert_eq(unlink(hold), 0, "cannot remove %s", hold);
	ret = rst_restore_images(imgs, NULL, 0, &o, &t, &here);
	cr_assert_eq(ret, 0, "restore of the pipeline: %s", strerror(-ret));
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "the restored pipeline exited with %d", status);
	cr_expect(!strcmp(th_slurp(path), want), "the output differs from the undisturbed run's");
	free(want);
	finish_dir(dir);
}

/* How many live (not zombie) processes run rst_tree with @dir. */
static int tree_alive(const char *dir)
{
	struct dirent *de;
	DIR *d = opendir("/proc");
	int n = 0;

	while (d && (de = readdir(d))) {
		char path[300], cmd[1024], *status;
		ssize_t len;
		size_t a0;
		int fd;

		if (atoi(de->d_name) <= 0)
			continue;
		snprintf(path, sizeof(path), "/proc/%s/cmdline", de->d_name);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		len = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (len <= 0)
			continue;
		cmd[len] = '\0';
		a0 = strlen(cmd);
		if (a0 < 8 || strcmp(cmd + a0 - 8, "rst_tree") || (ssize_t)a0 + 1 >= len ||
		    strcmp(cmd + a0 + 1, dir))
			continue;
		snprintf(path, sizeof(path), "/proc/%s/status", de->d_name);
		status = th_slurp(path);
		n += !strstr(status, "Z (zombie)");
	}
	if (d)
		closedir(d);
	return n;
}

Test(rst_tree, a_failure_midway_kills_every_restored_process, .timeout = 120)
{
	static const char *const names[] = {"r", "c1", "c2", "c3", "g1"};
	struct rst_target_opts o = {.pidns = RST_PIDNS_ALWAYS};
	char dir[256], out[512], imgs[512], path[512];
	const char *args[] = {dir, "family", NULL};
	struct rst_ckpt_stats st;
	struct rst_target *t = NULL;
	pid_t pid, here = 0;
	int ret, fd, alive = -1;

	make_dir(dir, sizeof(dir), "midway");
	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	pid = th_spawn_prog(out, "rst_tree", args);
	for (int i = 0; i < 5; i++)
		wait_lines(dir, names[i], "tick", 3);
	ret = haul_checkpoint_images(pid, imgs, false, NULL, &st);
	cr_assert_eq(ret, 0, "checkpoint: %s", strerror(-ret));
	waitpid(pid, NULL, 0);
	/* c3's O_APPEND log grew after the dump: its restore refuses, after r, c1, c2 were made */
	snprintf(path, sizeof(path), "%s/c3.out", dir);
	fd = open(path, O_WRONLY | O_APPEND);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "x\n", 2), 2);
	close(fd);
	ret = rst_restore_images(imgs, NULL, 0, &o, &t, &here);
	cr_expect_neq(ret, 0, "the restore of a tree with a changed log succeeded");
	for (int i = 0; i < 400 && (alive = tree_alive(dir)) > 0; i++) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	cr_expect_eq(alive, 0, "%d processes of the failed restore are still alive", alive);
	finish_dir(dir);
}

Test(rst_tree, leave_running_lets_every_process_of_the_tree_run_on, .timeout = 120)
{
	static const char *const names[] = {"r", "c1", "c2", "c3", "g1"};
	const char *bin = getenv("HAUL_BIN") ? getenv("HAUL_BIN") : "build/haul";
	char dir[256], out[512], cmd[1200];
	const char *args[] = {dir, "family", NULL};
	int ticks[5], status;
	pid_t pid;

	make_dir(dir, sizeof(dir), "leave");
	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	pid = th_spawn_prog(out, "rst_tree", args);
	for (int i = 0; i < 5; i++)
		wait_lines(dir, names[i], "tick", 3);
	/* the command line: with its injection journal, whose hold is one process at a time */
	snprintf(cmd, sizeof(cmd), "%s checkpoint %d --images %s/images --leave-running", bin,
		 (int)pid, dir);
	cr_assert_eq(system(cmd), 0, "%s failed", cmd);
	for (int i = 0; i < 5; i++) {
		ticks[i] = count_lines(dir, names[i], "tick");
		wait_lines(dir, names[i], "tick", ticks[i] + 3);
	}
	th_tree_touch(dir, "stop");
	cr_expect_eq(waitpid(pid, &status, 0), pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the root ended with %#x", status);
	finish_dir(dir);
}
