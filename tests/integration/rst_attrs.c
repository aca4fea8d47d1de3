/*
 * rst_attrs.c - process attributes through checkpoint + restore (haul's
 * image path: precheck, dump, page store, restore) and through haul
 * migrate: each carried attribute holds in the restored process
 * (tests/progs/rst_attrs checks itself after SIGUSR1), and each one haul
 * cannot carry is refused by name at the precheck, the process running on
 * untouched.  The zdtm tests oom_score_adj, loginuid, child_subreaper,
 * membarrier, thp_disable, cgroup01/03/04 (membership; their settings are
 * the host's), cgroup_threads and timens_for_kids check the same in CRIU.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/prctl.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "haul/haul.h"
#include "restore/restore.h"
#include "restore/restore_int.h"
#include "th_mig.h"
#include "th_rst.h"

static char dir[128];
static char cgs[4][256]; /* cgroups this test made (removed deepest first) */
static int ncgs;

static void fini(void)
{
	char cmd[256];

	for (int i = ncgs; i-- > 0;)
		rmdir(cgs[i]);
	ncgs = 0;
	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			cr_log_warn("cannot remove %s", dir);
	}
}

/* Start rst_attrs with @attrs (NULL-terminated), output in DIR/out; returns once it is ready. */
static pid_t spawn_attrs(const char *const attrs[])
{
	char bin[512], out[256], buf[8];
	const char *argv[16];
	int p[2], n = 0;
	pid_t pid;

	snprintf(dir, sizeof(dir), "/tmp/haul-attrs-%d", (int)getpid());
	mkdir(dir, 0755);
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(bin, sizeof(bin), "%s/rst_attrs", th_progs_dir());
	argv[n++] = bin;
	argv[n++] = "3";
	for (int i = 0; attrs[i] && n < 15; i++)
		argv[n++] = attrs[i];
	argv[n] = NULL;
	cr_assert_eq(pipe(p), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDONLY);

		/* Only files and /dev/null: a pipe from the test runner would be refused. */
		if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0 ||
		    dup2(p[1], 3) < 0)
			_exit(126);
		closefrom(4);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	n = read(p[0], buf, sizeof(buf));
	/* Then EOF: it closed the pipe, so the checkpoint does not see it closing. */
	while (n > 0 && read(p[0], buf, sizeof(buf)) > 0)
		;
	close(p[0]);
	if (n <= 0) {
		waitpid(pid, NULL, 0);
		cr_assert_fail("rst_attrs did not start: %s", th_slurp(out));
	}
	return pid;
}

/*
 * Checkpoint @pid into DIR/img (it dies), restore it (after removing the
 * test's cgroups when @rm_cgroups), let it check itself; its output.
 */
static const char *checkpoint_restore_check(pid_t pid, bool rm_cgroups)
{
	struct rst_target_opts o = {.pidns = RST_PIDNS_AUTO};
	struct rst_ckpt_stats st;
	struct rst_target *t;
	char img[256], out[256];
	pid_t here;
	int ret, status;

	snprintf(img, sizeof(img), "%s/img", dir);
	snprintf(out, sizeof(out), "%s/out", dir);
	ret = haul_checkpoint_images(pid, img, false, NULL, &st);
	if (ret) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		cr_assert_fail("checkpoint failed: %s", strerror(-ret));
	}
	waitpid(pid, &status, 0);
	for (int i = ncgs; rm_cgroups && i-- > 0;)
		cr_assert_eq(rmdir(cgs[i]), 0, "cannot remove %s: %s", cgs[i], strerror(errno));
	ret = rst_restore_images(img, st.id, pid, &o, &t, &here);
	cr_assert_eq(ret, 0, "restore failed: %s", strerror(-ret));
	kill(here, SIGUSR1);
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "the restored process found an attribute lost:\n%s", th_slurp(out));
	cr_expect(strstr(th_slurp(out), "done\n"), "no done line:\n%s", th_slurp(out));
	return th_slurp(out);
}

static void carried(const char *const attrs[])
{
	checkpoint_restore_check(spawn_attrs(attrs), false);
}

Test(rst_attrs, oom_score_adj_400_is_carried, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"oom", NULL});
}

Test(rst_attrs, loginuid_is_carried, .fini = fini, .timeout = 60)
{
	char v[32];
	int fd = open("/proc/self/loginuid", O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, v, sizeof(v) - 1);

	if (fd >= 0)
		close(fd);
	if (n <= 0)
		cr_skip_test("no /proc/self/loginuid (kernel without CONFIG_AUDIT)");
	v[n] = '\0';
	if (strtoul(v, NULL, 10) != 4294967295UL && strtoul(v, NULL, 10) != 3)
		cr_skip_test("this test runs with loginuid %s set: a restored process "
			     "inherits it and it can be set only once",
			     v);
	carried((const char *const[]){"loginuid", NULL});
}

Test(rst_attrs, child_subreaper_and_thp_disable_are_carried, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"subreaper", "thp", NULL});
}

Test(rst_attrs, membarrier_registrations_are_carried, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"membarrier", NULL});
}

Test(rst_attrs, coredump_filter_and_no_new_privs_are_carried, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"coredump", "nnp", NULL});
}

/* Make cgroup @rel under the hierarchy mounted at @mnt; its directory in cgs[]. */
static const char *make_cg(const char *mnt, const char *rel)
{
	char *d = cgs[ncgs];

	snprintf(d, sizeof(cgs[0]), "%s/%s", mnt, rel);
	if (mkdir(d, 0755) && errno != EEXIST)
		cr_skip_test("cannot make cgroup %s: %s", d, strerror(errno));
	ncgs++;
	return d;
}

/* The cgroup2 mount: /sys/fs/cgroup/unified (hybrid) or /sys/fs/cgroup (pure). */
static const char *v2_mount(void)
{
	struct stat st;

	if (!stat("/sys/fs/cgroup/unified/cgroup.procs", &st))
		return "/sys/fs/cgroup/unified";
	if (!stat("/sys/fs/cgroup/cgroup.procs", &st))
		return "/sys/fs/cgroup";
	return NULL;
}

Test(rst_attrs, cgroups_of_v1_and_v2_are_carried_and_recreated, .fini = fini, .timeout = 60)
{
	char a1[512], a2[512], rel[64], sub[96], d[300];
	const char *v2 = v2_mount(), *attrs[4] = {NULL};
	int n = 0;
	struct stat st;

	snprintf(rel, sizeof(rel), "haul-attrs-%d", (int)getpid());
	snprintf(sub, sizeof(sub), "%s/a", rel);
	if (!stat("/sys/fs/cgroup/cpu/cgroup.procs", &st)) {
		make_cg("/sys/fs/cgroup/cpu", rel);
		snprintf(d, sizeof(d), "%s", make_cg("/sys/fs/cgroup/cpu", sub));
		snprintf(a1, sizeof(a1), "cgroup=%s@cpu:/%s", d, sub);
		attrs[n++] = a1;
	}
	if (v2) {
		snprintf(a2, sizeof(a2), "cgroup=%s@:/%s", make_cg(v2, rel), rel);
		attrs[n++] = a2;
	}
	if (!n)
		cr_skip_test("neither a v1 cpu hierarchy nor cgroup2 here");
	/* Removed between checkpoint and restore: the restore makes them again. */
	checkpoint_restore_check(spawn_attrs(attrs), true);
}

/* A sleeping child (no PID namespace), killed by the test. */
static pid_t sleeper(void)
{
	pid_t p = fork();

	if (!p) {
		pause();
		_exit(0);
	}
	cr_assert_gt(p, 0);
	return p;
}

/* Whether @pid's cgroup2 line names @rel. */
static bool in_v2(pid_t pid, const char *rel)
{
	char path[64], want[128];

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	snprintf(want, sizeof(want), "0::/%s\n", rel);
	return strstr(th_slurp(path), want) != NULL;
}

static void kill_wait(pid_t p)
{
	kill(p, SIGKILL);
	waitpid(p, NULL, 0);
}

Test(rst_attrs, a_migration_target_joins_only_idle_cgroups_before_the_switch, .fini = fini,
     .timeout = 30)
{
	char rel[64], idle[96], busy[96], frozen[96], f[400], *line[1];
	const char *v2 = v2_mount();
	pid_t stub = sleeper(), other = sleeper();
	int fd;

	if (!v2) {
		kill_wait(stub);
		kill_wait(other);
		cr_skip_test("no cgroup2 mount here");
	}
	snprintf(rel, sizeof(rel), "haul-early-%d", (int)getpid());
	snprintf(idle, sizeof(idle), "%s/idle", rel);
	snprintf(busy, sizeof(busy), "%s/busy", rel);
	snprintf(frozen, sizeof(frozen), "%s/frozen", rel);
	make_cg(v2, rel);
	make_cg(v2, idle);
	snprintf(f, sizeof(f), "%s/cgroup.procs", make_cg(v2, busy));
	fd = open(f, O_WRONLY);
	cr_assert(fd >= 0 && dprintf(fd, "%d", (int)other) > 0, "cannot fill %s", f);
	close(fd);
	snprintf(f, sizeof(f), "%s/cgroup.freeze", make_cg(v2, frozen));
	fd = open(f, O_WRONLY);
	cr_assert(fd >= 0 && write(fd, "1", 1) == 1, "cannot freeze %s", f);
	close(fd);

	/* in use (on one host: the source's own, frozen at the switch) or frozen: not joined */
	cr_assert(asprintf(&line[0], ":/%s", busy) > 0);
	rst_cg_early(1, stub, line, 1);
	free(line[0]);
	cr_expect(!in_v2(stub, busy), "the stub joined a cgroup in use");
	cr_assert(asprintf(&line[0], ":/%s", frozen) > 0);
	rst_cg_early(1, stub, line, 1);
	free(line[0]);
	cr_expect(!in_v2(stub, frozen), "the stub joined a frozen cgroup");
	/* idle: joined now, so the resume has no cgroup move to make */
	cr_assert(asprintf(&line[0], ":/%s", idle) > 0);
	rst_cg_early(1, stub, line, 1);
	free(line[0]);
	cr_expect(in_v2(stub, idle), "the stub did not join the idle cgroup");
	kill_wait(stub);
	kill_wait(other);
	/* thaw so fini can remove it */
	fd = open(f, O_WRONLY);
	if (fd >= 0) {
		cr_expect(write(fd, "0", 1) == 1);
		close(fd);
	}
}

Test(rst_attrs, a_thread_in_another_v1_cgroup_stays_there, .fini = fini, .timeout = 60)
{
	char a[512], b[512], rel[64], sa[96], sb[96];
	struct stat st;

	if (stat("/sys/fs/cgroup/cpu/tasks", &st))
		cr_skip_test("no v1 cpu hierarchy here (per-thread cgroups need v1 or a threaded "
			     "cgroup2 subtree)");
	snprintf(rel, sizeof(rel), "haul-attrs-%d", (int)getpid());
	snprintf(sa, sizeof(sa), "%s/a", rel);
	snprintf(sb, sizeof(sb), "%s/b", rel);
	make_cg("/sys/fs/cgroup/cpu", rel);
	snprintf(a, sizeof(a), "cgroup=%s@cpu:/%s", make_cg("/sys/fs/cgroup/cpu", sa), sa);
	snprintf(b, sizeof(b), "cgthread=%s@cpu:/%s", make_cg("/sys/fs/cgroup/cpu", sb), sb);
	carried((const char *const[]){a, b, NULL});
}

/* The precheck refuses @attr naming @needle; the process then runs on unharmed. */
static void refused(const char *attr, const char *needle)
{
	pid_t pid = spawn_attrs((const char *const[]){attr, NULL});
	char why[512] = "", out[256];
	int ret = rst_dump_precheck(pid, why, sizeof(why)), status;

	kill(pid, SIGUSR1);
	waitpid(pid, &status, 0);
	cr_expect_eq(ret, -EOPNOTSUPP, "%s: precheck returned %d (%s)", attr, ret, why);
	cr_expect(strstr(why, needle), "%s: the reason does not name '%s': %s", attr, needle, why);
	snprintf(out, sizeof(out), "%s/out", dir);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		  "%s: the refused process did not run on: %s", attr, th_slurp(out));
	cr_log_info("%s refused: %s", attr, why);
}

Test(rst_attrs, time_namespace_pending_for_children_is_carried_with_its_offsets, .fini = fini,
     .timeout = 60)
{
	carried((const char *const[]){"timens", NULL});
}

Test(rst_attrs, a_thread_with_a_pending_time_namespace_is_refused, .fini = fini, .timeout = 30)
{
	refused("threadtimens", "time namespaces (its own and its children's) are not the main");
}

Test(rst_attrs, prctl_values_haul_cannot_carry_are_refused_by_name, .fini = fini, .timeout = 60)
{
	refused("tsc", "PR_GET_TSC");
	refused("mdwe", "PR_GET_MDWE");
	refused("securebits", "PR_GET_SECUREBITS");
}

/*
 * Without CAP_SYS_RESOURCE (another uid's process, a container's) a process
 * reads PR_GET_IO_FLUSHER as EPERM where haul, with it, reads 0: carried,
 * haul reads the flag from its task flags.  Set before the capability was
 * dropped, the flag is seen there and refused.
 */
Test(rst_attrs, a_process_without_cap_sys_resource_is_carried, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"nocapres", NULL});
}

Test(rst_attrs, io_flusher_the_process_cannot_read_is_refused_by_name, .fini = fini, .timeout = 60)
{
	if (prctl(57 /* PR_SET_IO_FLUSHER */, 0, 0, 0, 0))
		cr_skip_test(
			"needs CAP_SYS_RESOURCE to set PR_SET_IO_FLUSHER (%s); root here lacks "
			"it",
			strerror(errno));
	refused("ioflusher", "PR_GET_IO_FLUSHER");
}

/* zdtm sched_policy00 restored as SCHED_OTHER until res_sched.c */
Test(rst_attrs, scheduling_policies_of_each_thread_are_carried, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"rr", "threadfifo", NULL});
}

Test(rst_attrs, sched_batch_each_threads_io_priority_and_nice_are_carried, .fini = fini,
     .timeout = 60)
{
	carried((const char *const[]){"batch", "ionice", "threadnice", NULL});
}

Test(rst_attrs, sched_deadline_is_refused_by_name, .fini = fini, .timeout = 60)
{
	refused("deadline", "SCHED_DEADLINE");
}

/* ---- through haul migrate ------------------------------------------------ */

static struct th_mig M;

static void mig_fini(void)
{
	th_mig_teardown(&M);
}

Test(rst_attrs, oom_score_adj_cgroups_and_sched_policy_survive_haul_migrate, .fini = mig_fini,
     .timeout = 120)
{
	char path[64], before[1 << 14], after[1 << 14], line[512];
	struct sched_param sp = {0};
	pid_t pid, copy = 0;
	int fd, st;

	th_mig_setup(&M, 0);
	th_mig_workload(&M, 16, 8, 0);
	snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)M.wl_pid);
	fd = open(path, O_WRONLY);
	cr_assert(fd >= 0 && write(fd, "400", 3) == 3, "cannot set oom_score_adj");
	close(fd);
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)M.wl_pid);
	snprintf(before, sizeof(before), "%s", th_slurp(path));
	cr_assert_eq(sched_setscheduler(M.wl_pid, SCHED_BATCH, &sp), 0, "SCHED_BATCH: %s",
		     strerror(errno));

	pid = th_mig_haul(&M, &fd, NULL);
	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, 60000);
	if (st)
		while (th_read_line(fd, line, sizeof(line)) == 0)
			cr_log_info("haul: %s", line);
	close(fd);
	cr_assert_eq(st, 0, "haul migrate failed");
	cr_assert(th_mig_ticking(&M, M.net_b, 3000), "the workload does not tick in the target");
	cr_assert_eq(th_count_procs(M.tag, &copy), 1, "not exactly one copy");
	snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)copy);
	cr_expect_eq(atoi(th_slurp(path)), 400, "oom_score_adj after migrate: %s", th_slurp(path));
	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)copy);
	snprintf(after, sizeof(after), "%s", th_slurp(path));
	cr_expect_str_eq(after, before, "the cgroups changed (haul's own must not be carried)");
	cr_expect_eq(sched_getscheduler(copy), SCHED_BATCH, "policy after migrate: %d",
		     sched_getscheduler(copy));
}
