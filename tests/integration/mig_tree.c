/*
 * mig_tree.c - live migration of a process tree between two network
 * namespaces (tests/progs/rst_tree): every process moves with pre-copy,
 * keeps its pid, parent, process group and session (as each sees itself:
 * they print their own ids), its memory (each checks its own pattern every
 * ~10 ms and says "ok" or "BAD") and what it shares; a failure at any
 * point leaves the whole tree running at the source, never half of it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sys/ptrace.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "haul/haul_int.h"
#include "restore/restore.h"
#include "th_mig.h"
#include "th_proc.h"
#include "th_rst.h"

static struct th_mig M;
static char dir[160];		  /* rst_tree's DIR: holds the tag, so teardown finds every copy */
static char cgdir[PATH_MAX + 64]; /* a cgroup the test made, removed at teardown */

struct ids {
	int pid, ppid, pgid, sid;
};

static void teardown(void)
{
	char stop[200];

	snprintf(stop, sizeof(stop), "%s/stop", dir);
	close(open(stop, O_WRONLY | O_CREAT, 0644));
	th_mig_teardown(&M);
	if (cgdir[0]) {
		/* emptied once the source and the copies that joined it are gone */
		for (int i = 0; i < 100 && rmdir(cgdir) && errno == EBUSY; i++)
			usleep(20000);
		cgdir[0] = '\0';
	}
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

static int count_in(const char *name, const char *needle)
{
	char path[256];
	const char *s;
	int n = 0;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	for (s = th_slurp_lines(path); s && (s = strstr(s, needle)); s++)
		n++;
	return n;
}

/* Wait (bounded) until DIR/NAME.out holds @n lines with @needle. */
static bool wait_lines(const char *name, const char *needle, int n, int ms)
{
	for (int t = 0; t < ms; t += 5) {
		if (count_in(name, needle) >= n)
			return true;
		sleep_ms(5);
	}
	return false;
}

/* The ids on the last line of DIR/NAME.out. */
static struct ids last_ids(const char *name)
{
	char path[256];
	const char *s, *last;
	struct ids id = {0};

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	s = th_slurp(path);
	cr_assert(s, "no %s", path);
	last = th_last_line(s);
	cr_assert_eq(sscanf(last, "%*s %*d pid %d ppid %d pgid %d sid %d", &id.pid, &id.ppid,
			    &id.pgid, &id.sid),
		     4, "no ids in %s: %s", path, last);
	return id;
}

/* rst_tree DIR @shape in host A; waits until each of @names ticks. */
static void start_tree(const char *shape, const char *const *names, size_t n)
{
	char bin[512], out[200];
	char *argv[] = {bin, dir, (char *)shape, NULL};

	snprintf(dir, sizeof(dir), "%s/%s", M.dir, M.tag);
	mkdir(dir, 0755);
	snprintf(bin, sizeof(bin), "%s/rst_tree", th_progs_dir());
	snprintf(out, sizeof(out), "%s/root.stdout", dir);
	M.wl_pid = th_spawn(M.net.a, argv, out);
	cr_assert_gt(M.wl_pid, 0);
	for (size_t i = 0; i < n; i++)
		cr_assert(wait_lines(names[i], "tick", 3, 10000), "%s never ticked", names[i]);
}

/* The network namespace inode of host pid @pid (0: gone). */
static unsigned long netns_of(pid_t pid)
{
	char p[64];
	struct stat st;

	snprintf(p, sizeof(p), "/proc/%d/ns/net", (int)pid);
	return stat(p, &st) ? 0 : (unsigned long)st.st_ino;
}

/* haul migrate of the root with @extra; its exit status (output logged on failure). */
static int migrate(const char *const extra[], int timeout_ms)
{
	int fd, st;
	pid_t pid = th_mig_haul(&M, &fd, extra);

	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, timeout_ms);
	if (st)
		th_mig_dump_output(fd);
	close(fd);
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	return st;
}

/*
 * Every process of @names ticks on with the ids it had before (@before),
 * with its memory intact, and the processes run in the target (the root's
 * pid there from --json) unless @at_source.
 */
static void assert_tree_runs(const char *const *names, size_t n, const struct ids *before,
			     bool at_source)
{
	for (size_t i = 0; i < n; i++) {
		int ticks = count_in(names[i], "tick");
		struct ids id;

		cr_assert(wait_lines(names[i], "tick", ticks + 5, 5000), "%s does not tick on",
			  names[i]);
		id = last_ids(names[i]);
		cr_assert(id.pid == before[i].pid && id.pgid == before[i].pgid &&
				  id.sid == before[i].sid && (!i || id.ppid == before[i].ppid),
			  "%s: pid %d ppid %d pgid %d sid %d, was %d %d %d %d", names[i], id.pid,
			  id.ppid, id.pgid, id.sid, before[i].pid, before[i].ppid, before[i].pgid,
			  before[i].sid);
		cr_assert_eq(count_in(names[i], "BAD"), 0, "%s: its memory changed under it",
			     names[i]);
	}
	if (at_source) {
		cr_assert_eq(netns_of(M.wl_pid), M.net_a, "the root no longer runs at the source");
	} else {
		pid_t there = (pid_t)th_mig_json(&M, "target_pid");

		cr_assert_gt(there, 0);
		cr_assert_eq(netns_of(there), M.net_b, "the root does not run in the target");
		cr_assert_eq(netns_of(M.wl_pid), 0, "the source root still exists");
	}
}

static const char *const family[] = {"r", "c1", "c2", "c3", "g1"};
#define NFAMILY (sizeof(family) / sizeof(family[0]))

Test(mig_tree, moves_a_writing_tree_with_pids_groups_and_memory, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--downtime", "50", NULL};
	struct ids before[NFAMILY];

	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	cr_assert_eq(migrate(extra, 90000), 0, "haul migrate of the tree failed");
	assert_tree_runs(family, NFAMILY, before, false);
	cr_assert_geq(th_mig_json(&M, "rounds"), 2, "no pre-copy round before the final one");
	cr_assert_eq(th_mig_json(&M, "processes"), NFAMILY);
	/* c2's second thread came along and counts on */
	cr_assert(wait_lines("c2", "threads", 3, 5000));
}

static void touch(const char *name)
{
	char path[256];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	close(open(path, O_WRONLY | O_CREAT, 0644));
}

Test(mig_tree, zombies_keep_their_exit_status_for_the_migrated_parent, .fini = teardown,
     .timeout = 120)
{
	const char *const names[] = {"r"};
	const char *extra[] = {"--downtime", "50", NULL};
	struct ids before[1];
	char path[256];
	const char *s;
	int pid1 = 0, st1 = 0, pid2 = 0, st2 = 0, pid3 = 0, st3 = 0;

	th_mig_setup(&M, 0);
	start_tree("zombie", names, 1);
	before[0] = last_ids("r");
	cr_assert_eq(migrate(extra, 90000), 0, "haul migrate of a tree with zombies failed");
	assert_tree_runs(names, 1, before, false);
	cr_assert_eq(th_mig_json(&M, "processes"), 4);
	touch("reap");
	cr_assert(wait_lines("r", "reaped", 3, 5000), "the migrated root did not reap");
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
	cr_expect(pid3 > 0 && WIFSIGNALED(st3) && WTERMSIG(st3) == SIGKILL,
		  "the third zombie was reaped as %d with status %#x", pid3, st3);
}

Test(mig_tree, sessions_and_groups_come_back_as_they_were, .fini = teardown, .timeout = 120)
{
	static const char *const names[] = {"r", "s1", "s2", "s3", "p1", "p2"};
	const char *extra[] = {"--downtime", "50", NULL};
	struct ids before[6];

	th_mig_setup(&M, 0);
	start_tree("sessions", names, 6);
	for (size_t i = 0; i < 6; i++)
		before[i] = last_ids(names[i]);
	cr_assert_eq(migrate(extra, 90000), 0, "haul migrate of the sessions tree failed");
	assert_tree_runs(names, 6, before, false);
}

/* rst_tree DIR pipeline run to its end here: its output. */
static char *undisturbed_pipeline(void)
{
	char ref[200], bin[512], out[260], path[260];
	char *argv[] = {bin, ref, "pipeline", NULL};
	pid_t pid;

	snprintf(ref, sizeof(ref), "%s/ref", M.dir);
	mkdir(ref, 0755);
	snprintf(bin, sizeof(bin), "%s/rst_tree", th_progs_dir());
	snprintf(out, sizeof(out), "%s/spawn.out", ref);
	pid = th_spawn(NULL, argv, out);
	cr_assert_gt(pid, 0);
	cr_assert_eq(th_wait_exit(pid, 60000), 0, "the undisturbed pipeline failed");
	snprintf(path, sizeof(path), "%s/pipeline.out", ref);
	return strdup(th_slurp(path));
}

Test(mig_tree, a_pipeline_with_bytes_in_flight_gives_the_undisturbed_output, .fini = teardown,
     .timeout = 150)
{
	const char *extra[] = {"--downtime", "50", NULL};
	char bin[512], out[200], path[200], hold[200];
	char *argv[] = {bin, dir, "pipeline", NULL};
	char *want;

	th_mig_setup(&M, 0);
	want = undisturbed_pipeline();
	snprintf(dir, sizeof(dir), "%s/%s", M.dir, M.tag);
	mkdir(dir, 0755);
	snprintf(bin, sizeof(bin), "%s/rst_tree", th_progs_dir());
	snprintf(out, sizeof(out), "%s/root.stdout", dir);
	snprintf(path, sizeof(path), "%s/pipeline.out", dir);
	/*
	 * In flight: the consumer has written some, far from all, and waits for
	 * DIR/hold to go while both pipes fill.  Without the hold the pipeline
	 * (~1.4 s) could end during a migration that takes as long or longer.
	 */
	touch("hold");
	M.wl_pid = th_spawn(M.net.a, argv, out);
	cr_assert_gt(M.wl_pid, 0);
	for (int i = 0; i < 4000 && strlen(th_slurp(path)) < 4096; i++)
		sleep_ms(1);
	cr_assert_geq(strlen(th_slurp(path)), 4096, "the consumer wrote nothing in 4 s");
	cr_assert_eq(migrate(extra, 90000), 0, "haul migrate of the pipeline failed");
	cr_expect_eq(netns_of((pid_t)th_mig_json(&M, "target_pid")), M.net_b);
	cr_assert_null(strstr(th_slurp(path), "done"), "the pipeline ended before it moved");
	snprintf(hold, sizeof(hold), "%s/hold", dir);
	cr_assert_eq(unlink(hold), 0, "cannot remove %s", hold);
	for (int i = 0; i < 60000 && !strstr(th_slurp(path), "done"); i += 10)
		sleep_ms(10);
	cr_assert(!strcmp(th_slurp(path), want), "the output differs from the undisturbed run's");
	free(want);
}

static pid_t haul_pid; /* the haul of a fault test */

/* Run haul migrate with HAUL_FAULT=@fault; once it says it stalled, @act; its exit status. */
static int migrate_faulted(const char *fault, void (*act)(void), int timeout_ms)
{
	const char *extra[] = {"--downtime", "50", NULL};
	char line[512];
	int fd, st;
	pid_t pid;

	setenv("HAUL_FAULT", fault, 1);
	pid = th_mig_haul(&M, &fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(pid, 0);
	haul_pid = pid;
	cr_assert_eq(th_wait_line(fd, "fault: stalled at", 30000, line, sizeof(line)), 0,
		     "haul never reached the fault point %s", fault);
	act();
	st = th_wait_exit(pid, timeout_ms);
	th_mig_dump_output(fd);
	close(fd);
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	return st;
}

static void kill_page_server(void)
{
	th_kill(M.ps_pid, SIGKILL, 2000);
	M.ps_pid = -1;
}

static void kill_haul(void)
{
	kill(haul_pid, SIGKILL);
}

/*
 * No haul/mig-ROOT cgroup is left in any hierarchy (cgroup2, v1 freezer, v1
 * cpu): haul removes its cgroups after a rollback, a restart and a success.
 */
static void assert_no_mig_cgroup(void)
{
	struct haul_cg_mounts mnt;
	char cg[PATH_MAX + 64];

	cr_assert_eq(haul_cg_probe(&mnt), 0);
	const char *const mnts[] = {mnt.v2, mnt.v1_freezer, mnt.v1_cpu};

	for (size_t i = 0; i < sizeof(mnts) / sizeof(mnts[0]); i++) {
		if (!mnts[i][0])
			continue;
		snprintf(cg, sizeof(cg), "%s/haul/mig-%d", mnts[i], (int)M.wl_pid);
		cr_assert(access(cg, F_OK), "haul left cgroup %s behind", cg);
	}
}

static void rollback_case(const char *fault, void (*act)(void))
{
	struct ids before[NFAMILY];
	int st;

	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	st = migrate_faulted(fault, act, 60000);
	cr_assert_neq(st, 0, "haul migrate succeeded despite the failure");
	assert_tree_runs(family, NFAMILY, before, true);
	assert_no_mig_cgroup();
}

Test(mig_tree, page_server_killed_mid_round_leaves_every_process_running_here, .fini = teardown,
     .timeout = 120)
{
	rollback_case("stall:precopy:1500", kill_page_server);
}

Test(mig_tree, page_server_killed_at_the_freeze_leaves_every_process_running_here, .fini = teardown,
     .timeout = 120)
{
	rollback_case("stall:frozen:1500", kill_page_server);
}

Test(mig_tree, haul_killed_with_the_tree_seized_leaves_every_process_running_here, .fini = teardown,
     .timeout = 120)
{
	/* every process but the root is held by haul's own SIGSTOP: the guardian continues it */
	rollback_case("stall:seized", kill_haul);
}

static void fork_now(void)
{
	touch("fork");
}

/* The ids on the first line of DIR/NAME.out. */
static struct ids first_ids(const char *name)
{
	char path[256];
	struct ids id = {0};
	const char *s;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	s = th_slurp(path);
	cr_assert(s && sscanf(s, "%*s %*d pid %d ppid %d pgid %d sid %d", &id.pid, &id.ppid,
			      &id.pgid, &id.sid) == 4,
		  "no ids in %s", path);
	return id;
}

Test(mig_tree, a_fork_during_pre_copy_restarts_the_migration_with_the_new_process, .fini = teardown,
     .timeout = 150)
{
	const char *const names[] = {"r", "c1", "n1"};
	struct ids before[3];

	th_mig_setup(&M, 0);
	start_tree("forker", names, 2);
	before[0] = last_ids("r");
	before[1] = last_ids("c1");
	/* the root forks n1 while the first attempt's pre-copy is stalled */
	cr_assert_eq(migrate_faulted("stall:precopy:1500", fork_now, 90000), 0,
		     "haul migrate did not start over with the new process");
	before[2] = first_ids("n1");
	cr_assert_eq(before[2].ppid, before[0].pid);
	assert_tree_runs(names, 3, before, false);
	cr_assert_eq(th_mig_json(&M, "processes"), 3);
	assert_no_mig_cgroup();
}

Test(mig_tree, a_fork_during_pre_copy_with_the_v1_freezer_leaves_no_cgroup_behind, .fini = teardown,
     .timeout = 150)
{
	const char *const names[] = {"r", "c1", "n1"};
	struct haul_cg_mounts mnt;
	struct ids before[3];
	int st;

	if (haul_cg_probe(&mnt) || !mnt.v1_freezer[0])
		cr_skip_test("no v1 freezer hierarchy on this host");
	th_mig_setup(&M, 0);
	start_tree("forker", names, 2);
	before[0] = last_ids("r");
	before[1] = last_ids("c1");
	/* n1 is forked into the v1 freezer (and cpu) cgroups of the first attempt */
	setenv("HAUL_FREEZER", "v1", 1);
	st = migrate_faulted("stall:precopy:1500", fork_now, 90000);
	unsetenv("HAUL_FREEZER");
	cr_assert_eq(st, 0, "haul migrate did not start over with the new process");
	before[2] = first_ids("n1");
	assert_tree_runs(names, 3, before, false);
	assert_no_mig_cgroup();
}

/*
 * A root that forks a short-lived child every tick (PostgreSQL's postmaster
 * starting autovacuum workers) forks into the migration cgroup while haul
 * moves the tree back: whether an attempt is rolled back or the tree moves
 * (frozen between two children), no haul/mig-* cgroup is left, on cgroup2
 * and on the v1 freezer and cpu hierarchies.
 */
static void spawner_case(bool v1)
{
	const char *const names[] = {"r", "c1"};
	const char *extra[] = {"--downtime", "50", NULL};
	struct haul_cg_mounts mnt;
	int st;

	if (v1 && (haul_cg_probe(&mnt) || !mnt.v1_freezer[0]))
		cr_skip_test("no v1 freezer hierarchy on this host");
	th_mig_setup(&M, 0);
	start_tree("spawner", names, 2);
	if (v1)
		setenv("HAUL_FREEZER", "v1", 1);
	st = migrate(extra, 90000);
	unsetenv("HAUL_FREEZER");
	/* frozen between two children, the tree has its first shape and moves */
	if (st)
		cr_assert(wait_lines("r", "tick", count_in("r", "tick") + 3, 10000),
			  "the root stopped running here");
	assert_no_mig_cgroup();
}

Test(mig_tree, a_root_forking_all_along_leaves_no_cgroup_behind, .fini = teardown, .timeout = 150)
{
	spawner_case(false);
}

Test(mig_tree, a_root_forking_all_along_leaves_no_v1_cgroup_behind, .fini = teardown,
     .timeout = 150)
{
	spawner_case(true);
}

Test(mig_tree, postcopy_of_a_tree_is_refused_by_name_and_nothing_is_touched, .fini = teardown,
     .timeout = 60)
{
	const char *extra[] = {"--postcopy", NULL};
	struct ids before[NFAMILY];
	char line[512];
	int fd, st;
	pid_t pid;

	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	pid = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(pid, 0);
	cr_assert_eq(th_wait_line(fd, "--postcopy of a tree", 10000, line, sizeof(line)), 0,
		     "the refusal does not name --postcopy of a tree");
	st = th_wait_exit(pid, 10000);
	close(fd);
	cr_assert_neq(st, 0);
	assert_tree_runs(family, NFAMILY, before, true);
}

/* Live processes running rst_tree for this test in network namespace @net. */
static int tree_in(unsigned long net)
{
	char cmd[64];
	FILE *p;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "pgrep -f %s", M.tag);
	p = popen(cmd, "r");
	if (!p)
		return -1;
	n = 0;
	for (int pid; fscanf(p, "%d", &pid) == 1;) {
		char path[64], st[256];
		FILE *f;

		if (netns_of(pid) != net)
			continue;
		snprintf(path, sizeof(path), "/proc/%d/stat", pid);
		f = fopen(path, "r");
		if (f && fgets(st, sizeof(st), f) && !strstr(strrchr(st, ')'), ") Z") &&
		    strstr(st, "rst_tree"))
			n++;
		if (f)
			fclose(f);
	}
	pclose(p);
	return n;
}

/* The tree's migration cgroup: thaw it, after killing every process in it (@kill). */
static void resolve_in_doubt(bool kill_source)
{
	struct haul_cg_mounts mnt;
	char cg[PATH_MAX + 64];

	cr_assert_eq(haul_cg_probe(&mnt), 0);
	if (!mnt.v2[0])
		cr_skip_test("the in-doubt tree is thawed through cgroup2 here");
	snprintf(cg, sizeof(cg), "%s/haul/mig-%d", mnt.v2, (int)M.wl_pid);
	if (kill_source)
		cr_assert_eq(th_sh("for p in $(cat %s/cgroup.procs); do kill -9 $p; done", cg), 0);
	cr_assert_eq(th_sh("echo 0 > %s/cgroup.freeze", cg), 0, "cannot thaw %s", cg);
}

Test(mig_tree, haul_killed_between_resume_and_commit_leaves_the_whole_tree_here, .fini = teardown,
     .timeout = 120)
{
	struct ids before[NFAMILY];

	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	cr_assert_neq(migrate_faulted("stall:restored", kill_haul, 10000), 0);
	/* the target kills every process of the uncommitted tree; the source stays frozen */
	for (int i = 0; i < 300 && tree_in(M.net_b) > 0; i++)
		sleep_ms(10);
	cr_assert_eq(tree_in(M.net_b), 0, "a process of the tree runs on the target");
	cr_assert_eq(tree_in(M.net_a), (int)NFAMILY, "the in-doubt source lost a process");
	resolve_in_doubt(false);
	assert_tree_runs(family, NFAMILY, before, true);
}

Test(mig_tree, haul_killed_after_the_commit_leaves_the_whole_tree_on_the_target, .fini = teardown,
     .timeout = 120)
{
	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	cr_assert_neq(migrate_faulted("stall:committed", kill_haul, 10000), 0);
	cr_assert_eq(tree_in(M.net_b), (int)NFAMILY, "not every process runs on the target");
	resolve_in_doubt(true);
	for (int i = 0; i < 300 && tree_in(M.net_a) > 0; i++)
		sleep_ms(10);
	cr_assert_eq(tree_in(M.net_a), 0, "a source process survived");
	for (size_t i = 0; i < NFAMILY; i++) {
		int ticks = count_in(family[i], "tick");

		cr_assert(wait_lines(family[i], "tick", ticks + 5, 5000), "%s does not tick on",
			  family[i]);
		cr_assert_eq(count_in(family[i], "BAD"), 0);
	}
	cr_assert_eq(tree_in(M.net_b), (int)NFAMILY);
}

Test(mig_tree, a_cgroup_holding_one_tree_moves_as_a_whole, .fini = teardown, .timeout = 120)
{
	char cg[64];
	const char *extra[] = {"--cgroup", cg, "--downtime", "50", NULL};
	struct haul_cg_mounts mnt;
	struct ids before[NFAMILY];

	cr_assert_eq(haul_cg_probe(&mnt), 0);
	if (!mnt.v2[0])
		cr_skip_test("no cgroup2 hierarchy to hold the tree");
	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	snprintf(cg, sizeof(cg), "haul/migtree%d", (int)getpid());
	snprintf(cgdir, sizeof(cgdir), "%s/%s", mnt.v2, cg);
	cr_assert_eq(th_sh("mkdir -p %s && for p in $(pgrep -f %s); do grep -qx rst_tree "
			   "/proc/$p/comm && echo $p > %s/cgroup.procs; done; true",
			   cgdir, M.tag, cgdir),
		     0, "cannot put the tree into %s", cgdir);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	cr_assert_eq(migrate(extra, 90000), 0, "haul migrate --cgroup of the tree failed");
	assert_tree_runs(family, NFAMILY, before, false);
	cr_assert_eq(th_mig_json(&M, "processes"), NFAMILY);
}

Test(mig_tree, a_target_that_does_not_restore_trees_is_refused_before_anything_stops,
     .fini = teardown, .timeout = 60)
{
	const char *extra[] = {"--downtime", "50", NULL};
	struct ids before[NFAMILY];
	char line[512];
	int fd, st;
	pid_t pid;

	setenv("HAUL_FAULT", "caps-without:" RST_CAP_TREE, 1);
	th_mig_setup(&M, 0); /* its page server announces no PROCESS_TREE */
	unsetenv("HAUL_FAULT");
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	pid = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(pid, 0);
	cr_assert_eq(th_wait_line(fd, "does not restore process trees", 10000, line, sizeof(line)),
		     0, "the refusal does not say the target cannot restore trees");
	st = th_wait_exit(pid, 10000);
	close(fd);
	cr_assert_neq(st, 0);
	assert_tree_runs(family, NFAMILY, before, true);
}

Test(mig_tree, moves_with_the_v1_freezer, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--downtime", "50", NULL};
	struct haul_cg_mounts mnt;
	struct ids before[NFAMILY];
	int st;

	if (haul_cg_probe(&mnt) || !mnt.v1_freezer[0])
		cr_skip_test("no v1 freezer hierarchy on this host");
	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	setenv("HAUL_FREEZER", "v1", 1);
	st = migrate(extra, 90000);
	unsetenv("HAUL_FREEZER");
	cr_assert_eq(st, 0, "haul migrate of the tree with the v1 freezer failed");
	assert_tree_runs(family, NFAMILY, before, false);
}

Test(mig_tree, an_inherited_file_offset_stays_shared_by_parent_and_child, .fini = teardown,
     .timeout = 120)
{
	static const char *const names[] = {"r", "c1"};
	const char *extra[] = {"--downtime", "50", NULL};
	struct ids before[2];
	char path[256];
	long next[2] = {1, 1};
	const char *s;

	th_mig_setup(&M, 0);
	start_tree("stdout", names, 2);
	before[0] = last_ids("r");
	before[1] = last_ids("c1");
	cr_assert_eq(migrate(extra, 90000), 0, "haul migrate of the tree failed");
	assert_tree_runs(names, 2, before, false);
	touch("stop");
	/* both writers gone before the file is read: a line being written reads as half a line */
	for (int i = 0; i < 1000 && tree_in(M.net_b) > 0; i++)
		sleep_ms(10);
	cr_assert_eq(tree_in(M.net_b), 0, "the tree did not end at its stop file");
	/* each writer's numbers 1, 2, 3... with no gap: one offset, nothing overwritten */
	snprintf(path, sizeof(path), "%s/shared.out", dir);
	for (s = th_slurp(path); s && *s;) {
		size_t len = strcspn(s, "\n");
		char who[16];
		long v;
		int k;

		cr_assert_eq(sscanf(s, "%15s %ld", who, &v), 2, "a broken line '%.*s'", (int)len,
			     s);
		k = !strcmp(who, "c1");
		cr_assert(k || !strcmp(who, "r"), "a line of no writer: '%.*s'", (int)len, s);
		cr_assert_eq(v, next[k], "%s wrote %ld after %ld: a line was lost or overwritten",
			     who, v, next[k] - 1);
		next[k]++;
		s += len + (s[len] == '\n');
	}
	cr_assert(next[0] > 10 && next[1] > 10, "too few lines: %ld and %ld", next[0] - 1,
		  next[1] - 1);
}

Test(mig_tree, a_child_another_haul_is_moving_is_refused_by_name, .fini = teardown, .timeout = 60)
{
	const char *extra[] = {"--downtime", "50", NULL};
	struct haul_pid_lock lock = {.fd = -1};
	struct ids before[NFAMILY];
	char cmd[64], why[256] = "", line[512];
	pid_t child = 0, pid;
	FILE *p;
	int fd, st;

	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	snprintf(cmd, sizeof(cmd), "pgrep -P %d", (int)M.wl_pid);
	p = popen(cmd, "r");
	cr_assert(p && fscanf(p, "%d", &child) == 1, "the root has no child");
	pclose(p);
	/* this test plays the other haul */
	cr_assert_eq(haul_pid_lock(child, "migrated", &lock, why, sizeof(why)), 0, "%s", why);
	pid = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(pid, 0);
	cr_assert_eq(th_wait_line(fd, "already being migrated", 10000, line, sizeof(line)), 0,
		     "the refusal does not name the other migration");
	st = th_wait_exit(pid, 10000);
	close(fd);
	haul_pid_unlock(&lock);
	cr_assert_neq(st, 0);
	assert_tree_runs(family, NFAMILY, before, true);
}

/*
 * haul SIGKILLed at injected calls all through the migration (the trackers'
 * attach, the dump of each process at the switchover): every time, every
 * process of the tree runs on here with its memory; the walk ends when haul
 * gets through (the tree moved) or its time is up.
 */
Test(mig_tree, haul_killed_at_injected_calls_leaves_every_process_running_here, .fini = teardown,
     .timeout = 240)
{
	const char *extra[] = {"--downtime", "50", NULL};
	struct ids before[NFAMILY];
	char fault[64];
	int st = 128 + SIGKILL, n, kills = 0;

	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	for (n = 1; st == 128 + SIGKILL && n < 400; n += 13) {
		snprintf(fault, sizeof(fault), "kill:inject:regs:%d", n);
		setenv("HAUL_FAULT", fault, 1);
		st = migrate(extra, 60000);
		unsetenv("HAUL_FAULT");
		if (st != 128 + SIGKILL)
			break;
		kills++;
		assert_tree_runs(family, NFAMILY, before, true);
	}
	cr_assert_eq(st, 0, "%s: haul exited with %d", fault, st);
	cr_assert_gt(kills, 3, "only %d injected calls were reached", kills);
	assert_tree_runs(family, NFAMILY, before, false);
}

static void exit_now(void)
{
	touch("exit");
}

Test(mig_tree, an_exit_during_pre_copy_restarts_the_migration_with_the_zombie, .fini = teardown,
     .timeout = 150)
{
	const char *const names[] = {"r", "c1"};
	struct ids before[1];

	th_mig_setup(&M, 0);
	start_tree("forker", names, 2);
	before[0] = last_ids("r");
	/* c1 exits (a zombie: the root reaps only at the end) while pre-copy is stalled */
	cr_assert_eq(migrate_faulted("stall:precopy:1500", exit_now, 90000), 0,
		     "haul migrate did not start over without the exited process");
	assert_tree_runs(names, 1, before, false);
	cr_assert_eq(th_mig_json(&M, "processes"), 2, "the zombie is not in the moved tree");
}

static pid_t stalled_pid; /* the child the stall test holds */

/* The state letter of @pid (/proc/PID/stat), or 0. */
static char state_of(pid_t pid)
{
	char path[64], buf[512], *c;
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	c = strrchr(buf, ')');
	return c && c[1] == ' ' ? c[2] : 0;
}

/*
 * haul holds mid-round: the child is held in a ptrace stop of ours ('t',
 * as a tracer's stop stalls a client) for 300 ms, then let go.  Waited for
 * by its state and the clock: the stall is the length of the hold.
 */
static void hold_the_child(void)
{
	struct timespec t0, t;

	cr_assert_eq(ptrace(PTRACE_SEIZE, stalled_pid, 0, 0), 0, "cannot seize pid %d: %s",
		     (int)stalled_pid, strerror(errno));
	cr_assert_eq(ptrace(PTRACE_INTERRUPT, stalled_pid, 0, 0), 0);
	cr_assert_eq(waitpid(stalled_pid, NULL, __WALL), stalled_pid);
	cr_assert_eq(state_of(stalled_pid), 't');
	clock_gettime(CLOCK_MONOTONIC, &t0);
	do {
		sleep_ms(5);
		clock_gettime(CLOCK_MONOTONIC, &t);
	} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 300);
	cr_assert_eq(ptrace(PTRACE_DETACH, stalled_pid, 0, 0), 0);
}

/*
 * A child of the root (c3), held in a ptrace stop for 300 ms while haul
 * waits in the first round, is the longest stall: --json names its pid and
 * the summary says so (the probe watched the root only before).
 */
Test(mig_tree, a_stalled_child_is_the_stall_the_tree_reports, .fini = teardown, .timeout = 120)
{
	const char *extra[] = {"--downtime", "50", NULL};
	struct ids before[NFAMILY];
	char line[1024], want[32];
	bool reached;
	int fd, st;
	double res;
	pid_t pid;

	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	stalled_pid = before[3].pid; /* c3 */
	setenv("HAUL_FAULT", "stall:precopy:3000", 1);
	pid = th_mig_haul(&M, &fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(pid, 0);
	reached = th_wait_line(fd, "fault: stalled at", 30000, line, sizeof(line)) == 0;
	if (reached)
		hold_the_child();
	reached = reached &&
		  th_wait_line(fd, "client's longest stall", 90000, line, sizeof(line)) == 0;
	st = th_wait_exit(pid, 90000);
	th_mig_dump_output(fd);
	close(fd);
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	cr_assert(reached, "haul never held in its first round, or gave no summary");
	cr_assert_eq(st, 0, "haul migrate of the tree failed");
	assert_tree_runs(family, NFAMILY, before, false);
	cr_assert_eq(th_mig_json(&M, "client_stall_before_pid"), stalled_pid,
		     "the longest stall is not c3's (pid %d): %s", (int)stalled_pid, line);
	/* the probe misses up to an interval at each end of the hold: the longest it reports */
	res = th_mig_json(&M, "client_stall_resolution_ms");
	cr_assert_geq(th_mig_json(&M, "client_stall_before_ms"), 300 - 2 * res - 1, "%s", line);
	snprintf(want, sizeof(want), "in pid %d", (int)stalled_pid);
	cr_assert(strstr(line, want), "the summary does not name pid %d: %s", (int)stalled_pid,
		  line);
}

/*
 * --json's phases add up to the downtime: nothing of a tree's stop is
 * unaccounted (bench/RESULTS.md "Where a tree's downtime goes").
 */
Test(mig_tree, the_phases_of_a_tree_s_stop_add_up_to_its_downtime, .fini = teardown, .timeout = 120)
{
	static const char *const keys[] = {"freeze_ms",	  "lock_ms",	    "handover_ms",
					   "seize_ms",	  "final_round_ms", "state_ms",
					   "refreeze_ms", "indoubt_ms",	    "restore_ms"};
	const char *extra[] = {"--downtime", "50", NULL};
	struct ids before[NFAMILY];
	double sum = 0, down;

	th_mig_setup(&M, 0);
	start_tree("family", family, NFAMILY);
	for (size_t i = 0; i < NFAMILY; i++)
		before[i] = last_ids(family[i]);
	cr_assert_eq(migrate(extra, 90000), 0, "haul migrate of the tree failed");
	assert_tree_runs(family, NFAMILY, before, false);
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		double v = th_mig_json(&M, keys[i]);

		cr_assert_geq(v, 0, "no %s in --json", keys[i]);
		sum += v;
	}
	down = th_mig_json(&M, "downtime_ms");
	cr_assert_gt(down, 0);
	cr_assert_leq(down - sum, 1.0, "%.2f ms of the %.2f ms downtime is in no phase", down - sum,
		      down);
	cr_assert_leq(sum - down, 0.01, "the phases (%.2f ms) exceed the downtime (%.2f ms)", sum,
		      down);
}
