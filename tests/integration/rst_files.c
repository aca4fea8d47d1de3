/*
 * rst_files.c - open files across checkpoint and restore: fds sharing one
 * open file description, several open file descriptions of one pipe, file
 * locks and leases, deleted files (sparse, owner, mode, mtime, two opens,
 * a deleted directory), O_PATH fds; and the refusal of a deleted device
 * node before anything is touched.  The workload is tests/progs/rst_files:
 * it checks its own invariants every millisecond until told to stop.
 * The shared-OFD and pipe cases also go through `haul migrate` between two
 * network namespaces (th_mig.h).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/rsys.h"
#include "common/vma.h"
#include "haul/haul.h"
#include "restore/restore.h"
#include "th_mig.h"
#include "th_rst.h"

/* Wait until @path exists and holds at least @bytes (a ready signal of the workload). */
static bool wait_file(const char *path, off_t bytes, int ms)
{
	struct timespec ts = {0, 5000000};
	struct stat st;

	for (int i = 0; i < ms / 5; i++) {
		if (!stat(path, &st) && st.st_size >= bytes)
			return true;
		nanosleep(&ts, NULL);
	}
	return false;
}

struct fcase {
	char dir[128], out[160], ready[160], stop[160];
	const char *result; /* where "final ok" goes: out, or the log in mode ofd */
	pid_t pid;
};

/*
 * Start `rst_files @mode DIR` (stdout and stderr: one open of DIR/out; DIR/what
 * holds @what unless NULL) and wait until ready.
 */
static void start_what(struct fcase *c, const char *mode, const char *what)
{
	const char *const args[] = {mode, c->dir, NULL};
	char p[200];

	snprintf(c->dir, sizeof(c->dir), "/tmp/haul-files-%s-%d", mode, (int)getpid());
	snprintf(c->out, sizeof(c->out), "%s/out", c->dir);
	snprintf(c->ready, sizeof(c->ready), "%s/ready", c->dir);
	snprintf(c->stop, sizeof(c->stop), "%s/stop", c->dir);
	c->result = c->out;
	mkdir(c->dir, 0755);
	snprintf(p, sizeof(p), "%s/what", c->dir);
	if (what) {
		FILE *f = fopen(p, "w");

		cr_assert_not_null(f);
		fputs(what, f);
		fclose(f);
	}
	c->pid = th_spawn_prog(c->out, "rst_files", args);
	cr_assert(wait_file(c->ready, 0, 10000), "rst_files %s never got ready: %s", mode,
		  th_slurp(c->out));
}

static void start(struct fcase *c, const char *mode)
{
	start_what(c, mode, NULL);
}

/* Checkpoint it, kill it, restore it (in a new PID namespace if @ns says); the copy in *@t. */
static void checkpoint_restore_ns(struct fcase *c, enum rst_pidns ns, struct rst_target **t)
{
	struct th_snap s;
	char why[512] = "";
	int ret;

	ret = th_snap_take_kill(c->pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	ret = th_snap_restore(&s, c->pid, ns, t, why, sizeof(why));
	th_snap_free(&s);
	cr_assert_eq(ret, 0, "restore failed: %s (%s)", strerror(-ret), why);
}

static void checkpoint_restore(struct fcase *c, struct rst_target **t)
{
	checkpoint_restore_ns(c, RST_PIDNS_AUTO, t);
}

static void cleanup(const struct fcase *c)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", c->dir);
}

/* The steps the workload in @dir has run, as DIR/progress says (-1: none yet). */
static long progress(const char *dir)
{
	char p[200];

	snprintf(p, sizeof(p), "%s/progress", dir);
	return access(p, F_OK) ? -1 : atol(th_slurp(p));
}

/* Wait until the workload in @dir has run @n more steps (its copy after a restore, too). */
static void wait_steps(const char *dir, long n)
{
	struct timespec ts = {0, 5000000};
	long from = progress(dir);

	for (int i = 0; i < 4000 && progress(dir) < from + n; i++)
		nanosleep(&ts, NULL);
	cr_assert_geq(progress(dir), from + n, "the workload in %s stopped making progress", dir);
}

/* Tell the restored copy to stop after 200 more steps; it must exit 0 having seen no error. */
static void finish(struct fcase *c, struct rst_target *t)
{
	int status, fd;

	wait_steps(c->dir, 200);

	fd = open(c->stop, O_WRONLY | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	close(fd);
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "restored rst_files exited with %d:\n%s", status, th_slurp(c->out));
	cr_expect_null(strstr(th_slurp(c->out), "ERROR"), "%s", th_slurp(c->out));
	cr_expect(strstr(th_slurp(c->result), "final ok"), "%s", th_slurp(c->result));
}

/*
 * DIR/log must hold "out N\nerr N\n" for N = 0, 1, ... in order, then
 * "final ok": a byte lost or overwritten breaks the sequence.
 */
static void check_interleaved_log(const char *log)
{
	const char *p = th_slurp(log);
	long n = 0;

	for (;; n++) {
		char want[64];
		int len = snprintf(want, sizeof(want), "out %ld\nerr %ld\n", n, n);

		if (strncmp(p, want, len))
			break;
		p += len;
	}
	cr_expect_str_eq(p, "final ok\n", "the log breaks after %ld steps at: %.80s", n, p);
	cr_expect_gt(n, 10, "too few steps to mean anything");
}

Test(rst_files, fds_sharing_one_open_file_keep_one_offset_and_lose_no_byte, .timeout = 60)
{
	struct rst_target *t;
	struct fcase c;
	char log[200];

	start(&c, "ofd");
	snprintf(log, sizeof(log), "%s/log", c.dir);
	c.result = log;
	cr_assert(wait_file(log, 2000, 10000), "no progress in %s", log);
	checkpoint_restore(&c, &t);
	finish(&c, t);
	check_interleaved_log(log);
	cleanup(&c);
}

Test(rst_files, two_open_files_of_one_pipe_keep_their_own_nonblock_flags, .timeout = 60)
{
	struct rst_target *t;
	struct fcase c;

	start(&c, "pipes");
	checkpoint_restore(&c, &t);
	finish(&c, t);
	cleanup(&c);
}

/*
 * zdtm fifo, fifo_ro, fifo_wronly, unlink_fifo: FIFOs only the process
 * holds were refused as staying behind.  The deleted one's name, taken by
 * a regular file, is left alone, and no name of it is left behind.
 */
Test(rst_files, named_fifos_keep_their_bytes_and_open_files, .timeout = 60)
{
	struct rst_target *t;
	struct fcase c;
	struct stat st;
	char p[200];

	start(&c, "fifos");
	checkpoint_restore(&c, &t);
	snprintf(p, sizeof(p), "%s/fifo3", c.dir);
	cr_expect(!stat(p, &st) && S_ISREG(st.st_mode), "the file at the deleted FIFO's name");
	cr_expect_eq(th_run(p, sizeof(p), "ls %s | grep -c haul", c.dir), 1, "left: %s", p);
	finish(&c, t);
	cleanup(&c);
}

/* Restored where its path is missing (another host): the FIFO is made with its mode. */
Test(rst_files, a_named_fifo_missing_where_it_is_restored_is_made_again, .timeout = 60)
{
	struct rst_target *t;
	struct fcase c;
	struct th_snap s;
	struct stat st;
	char why[512] = "", p[200];
	int ret;

	start(&c, "fifos");
	ret = th_snap_take_kill(c.pid, &s);
	cr_assert_eq(ret, 0, "dump failed: %s", strerror(-ret));
	snprintf(p, sizeof(p), "%s/fifo", c.dir);
	cr_assert_eq(unlink(p), 0);
	ret = th_snap_restore(&s, c.pid, RST_PIDNS_AUTO, &t, why, sizeof(why));
	th_snap_free(&s);
	cr_assert_eq(ret, 0, "restore failed: %s (%s)", strerror(-ret), why);
	cr_assert_eq(stat(p, &st), 0);
	cr_expect(S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0640, "mode %o", st.st_mode);
	cr_expect(st.st_uid == 4321 && st.st_gid == 8765, "owner %u:%u", st.st_uid, st.st_gid);
	finish(&c, t);
	cleanup(&c);
}

/* A child holding FIFO @path read-write; @gone: it unlinks it and its directory @dir first. */
static pid_t hold_fifo(const char *path, const char *dir, bool gone)
{
	int ready[2];
	pid_t pid;
	char c;

	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int fd = open(path, O_RDWR), null = open("/dev/null", O_RDWR);

		/* only the FIFO at 3, /dev/null at 0-2: the test's own pipes stay out */
		if (fd < 0 || null < 0 || (gone && (unlink(path) || rmdir(dir))) ||
		    dup2(fd, 3) != 3 || dup2(null, 0) || dup2(null, 1) != 1 || dup2(null, 2) != 2)
			_exit(2);
		if (write(ready[1], "r", 1) != 1)
			_exit(3);
		syscall(SYS_close_range, 4, ~0U, 0);
		pause();
		_exit(0);
	}
	close(ready[1]);
	cr_assert_eq(read(ready[0], &c, 1), 1, "the holder did not start");
	close(ready[0]);
	return pid;
}

/*
 * Held under another name too (a hard link here; a volume mounted at
 * another path, in practice): the other holder is found by inode, and the
 * FIFO stays an endpoint left behind, refused without a rule.
 */
Test(rst_files, a_fifo_held_outside_under_another_name_is_not_moved, .timeout = 60)
{
	char dir[96], path[128], link2[128], why[512] = "";
	pid_t pid;
	int mine, ret;

	snprintf(dir, sizeof(dir), "/tmp/haul-fifolink-%d", (int)getpid());
	snprintf(path, sizeof(path), "%s/fifo", dir);
	snprintf(link2, sizeof(link2), "%s/other-name", dir);
	cr_assert_eq(mkdir(dir, 0755), 0);
	cr_assert_eq(mkfifo(path, 0600), 0);
	cr_assert_eq(link(path, link2), 0);
	pid = hold_fifo(path, dir, false);
	mine = open(link2, O_RDONLY | O_NONBLOCK);
	cr_assert_geq(mine, 0);
	ret = rst_dump_precheck(pid, why, sizeof(why));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(mine);
	th_sh("rm -rf %s", dir);
	cr_expect_eq(ret, -EOPNOTSUPP, "precheck returned %d: %s", ret, why);
	cr_expect(strstr(why, "named fifo") && strstr(why, "stays behind"), "%s", why);
}

/* A deleted FIFO is made again in its directory: deleted with it, it is refused, untouched. */
Test(rst_files, a_deleted_fifo_whose_directory_is_gone_is_refused, .timeout = 60)
{
	char dir[96], path[128], why[512] = "";
	pid_t pid;
	int ret;

	snprintf(dir, sizeof(dir), "/tmp/haul-fifogone-%d", (int)getpid());
	snprintf(path, sizeof(path), "%s/fifo", dir);
	cr_assert_eq(mkdir(dir, 0755), 0);
	cr_assert_eq(mkfifo(path, 0600), 0);
	pid = hold_fifo(path, dir, true);
	ret = rst_dump_precheck(pid, why, sizeof(why));
	cr_expect_eq(kill(pid, 0), 0, "the process was touched");
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	cr_expect_eq(ret, -EOPNOTSUPP, "precheck returned %d: %s", ret, why);
	cr_expect(strstr(why, "its directory is gone too"), "%s", why);
}

Test(rst_files, deleted_sparse_file_keeps_holes_owner_mode_mtime_and_one_inode, .timeout = 60)
{
	struct rst_target *t;
	struct fcase c;

	start(&c, "ghost");
	checkpoint_restore(&c, &t);
	finish(&c, t);
	cleanup(&c);
}

/* In a new PID namespace /proc/self is the namespace's own /proc: the pipe reopen uses it. */
Test(rst_files, pipe_and_deleted_file_cases_also_restore_in_a_new_pid_namespace, .timeout = 60)
{
	struct rst_target *t;
	struct fcase c;

	start(&c, "pipes");
	checkpoint_restore_ns(&c, RST_PIDNS_ALWAYS, &t);
	finish(&c, t);
	cleanup(&c);
	start(&c, "ghost");
	checkpoint_restore_ns(&c, RST_PIDNS_ALWAYS, &t);
	finish(&c, t);
	cleanup(&c);
}

Test(rst_files, o_async_keeps_its_owner_and_signal, .timeout = 60)
{
	struct rst_target *t;
	struct fcase c;

	start(&c, "async");
	checkpoint_restore(&c, &t);
	finish(&c, t);
	cleanup(&c);
}

Test(rst_files, o_path_fds_come_back_as_o_path, .timeout = 60)
{
	struct rst_target *t;
	struct fcase c;

	start(&c, "opath");
	checkpoint_restore(&c, &t);
	finish(&c, t);
	cleanup(&c);
}

/* Whether another open file description can take a lock conflicting with the workload's. */
static void expect_locked(const struct fcase *c, const char *when)
{
	struct flock pl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 50, .l_len = 10};
	struct flock ol = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 250, .l_len = 1};
	struct flock free_range = {
		.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 300, .l_len = 10};
	char p[200];
	int fd;

	snprintf(p, sizeof(p), "%s/posix", c->dir);
	fd = open(p, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_expect_eq(fcntl(fd, F_OFD_SETLK, &pl), -1, "the POSIX lock is gone %s", when);
	close(fd);
	snprintf(p, sizeof(p), "%s/flock", c->dir);
	fd = open(p, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_expect_eq(flock(fd, LOCK_SH | LOCK_NB), -1, "the flock is gone %s", when);
	close(fd);
	snprintf(p, sizeof(p), "%s/ofd", c->dir);
	fd = open(p, O_RDWR);
	cr_assert_geq(fd, 0);
	cr_expect_eq(fcntl(fd, F_OFD_SETLK, &ol), -1, "the OFD lock is gone %s", when);
	cr_expect_eq(fcntl(fd, F_OFD_SETLK, &free_range), 0,
		     "the OFD lock grew beyond [200,300) %s", when);
	close(fd);
}

Test(rst_files, posix_flock_ofd_locks_and_a_lease_are_held_again_after_restore, .timeout = 60)
{
	struct rst_target *t;
	struct fcase c;

	start(&c, "locks");
	expect_locked(&c, "before the checkpoint");
	checkpoint_restore(&c, &t);
	expect_locked(&c, "after the restore");
	finish(&c, t);
	cleanup(&c);
}

Test(rst_files, deleted_device_node_is_refused_before_the_process_is_touched, .timeout = 60)
{
	char why[512] = "";
	struct fcase c;
	int ret, status, fd;

	start(&c, "deldev");
	ret = rst_dump_precheck(c.pid, why, sizeof(why));
	cr_expect_eq(ret, -EOPNOTSUPP, "precheck said %d (%s)", ret, why);
	cr_expect(strstr(why, "deleted") && strstr(why, "null"), "reason: %s", why);
	/* Untouched: it runs on and finishes by itself. */
	fd = open(c.stop, O_WRONLY | O_CREAT, 0644);
	close(fd);
	cr_assert_eq(waitpid(c.pid, &status, 0), c.pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "it exited with %d: %s", status,
		  th_slurp(c.out));
	cr_expect(strstr(th_slurp(c.out), "final ok"), "%s", th_slurp(c.out));
	cleanup(&c);
}

/* How many "ppid N" lines the procfs workload printed: one more for each parent it saw. */
static int ppids_seen(const struct fcase *c)
{
	int n = 0;

	for (const char *p = th_slurp(c->out); (p = strstr(p, "ppid ")); p++)
		n++;
	return n;
}

/*
 * Its own /proc files (status, task/PID/stat, the /proc/self directory, an
 * offset), one of its second thread (task/TID/stat, reopened once the
 * thread exists) and two of no pid (loadavg, sys/...) are reopened for the
 * restored process: it reads its new parent through them.
 */
Test(rst_files, own_proc_files_show_the_restored_process, .timeout = 60)
{
	static const enum rst_pidns ns[] = {RST_PIDNS_AUTO, RST_PIDNS_ALWAYS};
	struct rst_target *t;
	struct fcase c;

	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		start(&c, "procfs");
		checkpoint_restore_ns(&c, ns[i], &t);
		finish(&c, t);
		cr_expect_geq(ppids_seen(&c), 2, "the restored copy never saw its new parent: %s",
			      th_slurp(c.out));
		cleanup(&c);
	}
}

/* A parent's fd on its child's /proc file names the restored child (a tree checkpoint). */
Test(rst_files, a_proc_file_of_a_child_in_the_tree_shows_the_restored_child, .timeout = 60)
{
	struct rst_target_opts o = {.pidns = RST_PIDNS_ALWAYS};
	struct rst_target *t = NULL;
	struct rst_ckpt_stats st;
	char imgs[200];
	pid_t here = 0;
	struct fcase c;
	int ret, status;

	start(&c, "proctree");
	snprintf(imgs, sizeof(imgs), "%s/images", c.dir);
	ret = haul_checkpoint_images(c.pid, imgs, false, NULL, &st);
	cr_assert_eq(ret, 0, "checkpoint of the tree failed: %s", strerror(-ret));
	waitpid(c.pid, &status, 0);
	ret = rst_restore_images(imgs, NULL, 0, &o, &t, &here);
	cr_assert_eq(ret, 0, "restore of the tree failed: %s", strerror(-ret));
	finish(&c, t);
	cleanup(&c);
}

/* Each fd on /proc that cannot be reopened faithfully is refused before anything is touched. */
Test(rst_files, proc_files_that_cannot_be_carried_are_refused_at_the_precheck, .timeout = 120)
{
	static const struct {
		const char *what, *says[2];
	} cases[] = {
		{"mem", {"/mem", "close it"}},
		{"fdlink", {"/fd/1", "open the file itself"}},
		{"ns", {"namespace file net:[", "close it"}},
		{"self", {"link /proc/self", "close it"}},
		{"threadpid", {"a file of its thread", "/proc/PID/task/TID"}},
		{"other", {"a process that does not move", "close it"}},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char why[512] = "";
		struct fcase c;
		int ret, status, fd;

		start_what(&c, "procrefuse", cases[i].what);
		ret = rst_dump_precheck(c.pid, why, sizeof(why));
		cr_expect_eq(ret, -EOPNOTSUPP, "%s: precheck said %d (%s)", cases[i].what, ret,
			     why);
		cr_expect(strstr(why, cases[i].says[0]) && strstr(why, cases[i].says[1]),
			  "%s: reason: %s", cases[i].what, why);
		/* Untouched: it runs on and finishes by itself. */
		fd = open(c.stop, O_WRONLY | O_CREAT, 0644);
		close(fd);
		cr_assert_eq(waitpid(c.pid, &status, 0), c.pid);
		cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
			  "%s: it exited with %d: %s", cases[i].what, status, th_slurp(c.out));
		cleanup(&c);
	}
}

/* ---- the same through haul migrate ---------------------------------------------------- */

static struct th_mig M;

static void mig_teardown(void)
{
	th_mig_teardown(&M);
}

/*
 * Start `rst_files @mode` in host A (its directory carries the fixture's tag,
 * so its copies are counted), migrate it to B, stop the copy there; it must
 * finish with "final ok" in @result (a file name in its directory).
 */
/* Run haul migrate on the workload; its exit status, its output in @msg. */
static int migrate_workload(char *msg, size_t len)
{
	const char *extra[] = {"--downtime", "200", NULL};
	char line[512];
	size_t at = 0;
	int fd, st;
	pid_t h;

	msg[0] = '\0';
	h = th_mig_haul(&M, &fd, extra);
	cr_assert_gt(h, 0);
	st = th_wait_exit(h, 60000);
	while (th_read_line(fd, line, sizeof(line)) == 0 && at < len)
		at += snprintf(msg + at, len - at, "%s\n", line);
	close(fd);
	return st;
}

static void migrate_case(const char *mode, const char *result, char *dir, size_t dlen)
{
	char bin[512], out[200], path[200], msg[4096];
	char *argv[] = {bin, (char *)mode, dir, NULL};
	int fd;

	th_mig_setup(&M, 0);
	snprintf(dir, dlen, "%s/%s", M.dir, M.tag);
	cr_assert_eq(mkdir(dir, 0755), 0);
	snprintf(bin, sizeof(bin), "%s/rst_files", th_progs_dir());
	snprintf(out, sizeof(out), "%s/out", dir);
	M.wl_pid = th_spawn(M.net.a, argv, out);
	cr_assert_gt(M.wl_pid, 0);
	snprintf(path, sizeof(path), "%s/ready", dir);
	cr_assert(wait_file(path, 0, 10000), "rst_files %s never got ready: %s", mode,
		  th_slurp(out));
	if (!strcmp(mode, "ofd")) {
		snprintf(path, sizeof(path), "%s/log", dir);
		cr_assert(wait_file(path, 2000, 10000), "no progress in %s", path);
	}
	if (!strcmp(mode, "locks")) {
		/*
		 * On one host the frozen source still holds its locks while the
		 * target takes them: the restore fails, and the source must run on.
		 */
		cr_assert_neq(migrate_workload(msg, sizeof(msg)), 0, "migrate succeeded: %s", msg);
		cr_expect(strstr(msg, "POSIX lock of fd") && strstr(msg, "runs on here"), "%s",
			  msg);
		cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy after the failed move");
		wait_steps(dir, 200);
		snprintf(path, sizeof(path), "%s/stop", dir);
		fd = open(path, O_WRONLY | O_CREAT, 0644);
		close(fd);
		cr_assert_eq(th_wait_exit(M.wl_pid, 20000), 0, "the source did not finish: %s",
			     th_slurp(out));
		M.wl_pid = 0;
		cr_expect(strstr(th_slurp(out), "final ok"), "%s", th_slurp(out));
		return;
	}
	cr_assert_eq(migrate_workload(msg, sizeof(msg)), 0, "haul migrate failed: %s", msg);
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy after the move");
	wait_steps(dir, 200);
	snprintf(path, sizeof(path), "%s/stop", dir);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	close(fd);
	snprintf(path, sizeof(path), "%s/%s", dir, result);
	cr_assert_eq(th_wait_file(path, 0, "final ok", 20000, NULL, 0), 0,
		     "the migrated copy did not finish cleanly: %s", th_slurp(out));
	cr_expect_null(strstr(th_slurp(out), "ERROR"), "%s", th_slurp(out));
}

Test(mig_files, fds_sharing_one_open_file_lose_no_byte_across_migrate, .fini = mig_teardown,
     .timeout = 120)
{
	char dir[160], log[200];

	migrate_case("ofd", "log", dir, sizeof(dir));
	snprintf(log, sizeof(log), "%s/log", dir);
	check_interleaved_log(log);
}

Test(mig_files, two_open_files_of_one_pipe_keep_their_flags_across_migrate, .fini = mig_teardown,
     .timeout = 120)
{
	char dir[160];

	migrate_case("pipes", "out", dir, sizeof(dir));
}

Test(mig_files, named_fifos_keep_their_bytes_across_migrate, .fini = mig_teardown, .timeout = 120)
{
	char dir[160];

	migrate_case("fifos", "out", dir, sizeof(dir));
}

Test(mig_files, own_proc_files_show_the_migrated_process, .fini = mig_teardown, .timeout = 120)
{
	char dir[160];

	migrate_case("procfs", "out", dir, sizeof(dir));
}

Test(mig_files, locks_held_on_one_host_fail_the_move_and_the_source_runs_on, .fini = mig_teardown,
     .timeout = 120)
{
	char dir[160];

	migrate_case("locks", "out", dir, sizeof(dir));
}

/* Precheck the forked child of `rst_files @mode`; its result and reason. */
static int precheck_forked_child(struct fcase *c, const char *mode, char *why, size_t wl)
{
	char p[200];
	pid_t child;
	int ret, status, fd;

	start(c, mode);
	snprintf(p, sizeof(p), "%s/child", c->dir);
	child = atoi(th_slurp(p));
	cr_assert_gt(child, 0, "no child pid in %s", p);
	why[0] = '\0';
	ret = rst_dump_precheck(child, why, wl);
	fd = open(c->stop, O_WRONLY | O_CREAT, 0644);
	close(fd);
	cr_assert_eq(waitpid(c->pid, &status, 0), c->pid);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the pair exited with %d", status);
	return ret;
}

Test(rst_files, open_file_shared_with_another_process_is_refused_unless_append_only, .timeout = 60)
{
	char why[512];
	struct fcase c;
	int ret;

	ret = precheck_forked_child(&c, "forkshare", why, sizeof(why));
	cr_expect_eq(ret, -EOPNOTSUPP, "precheck said %d (%s)", ret, why);
	cr_expect(strstr(why, "shares its open file") && strstr(why, "/log"), "reason: %s", why);
	cleanup(&c);
	ret = precheck_forked_child(&c, "forkappend", why, sizeof(why));
	cr_expect_eq(ret, 0, "an O_APPEND log shared with the parent was refused: %s", why);
	cleanup(&c);
}
