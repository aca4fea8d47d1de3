/*
 * th_tree.c - fixtures for the two-process test programs and their DIR
 * protocol (th_tree.h): the start and ready wait, the checkpoint/restore
 * cycle, a checkpoint the source runs on after, and a migration from A to
 * B.  Polls are bounded (15 s for ready, the caller's @ms for results).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "haul/haul.h"
#include "restore/restore.h"
#include "th_mig.h"
#include "th_rst.h"
#include "th_tree.h"

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

void th_tree_touch(const char *dir, const char *name)
{
	char path[512];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT, 0644);
	cr_assert_geq(fd, 0, "cannot create %s", path);
	close(fd);
}

/* Wait (bounded) until DIR/@name exists. */
static void wait_file(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (int i = 0; i < 3000 && access(path, F_OK); i++)
		sleep_ms(5);
	cr_assert_eq(access(path, F_OK), 0, "%s never appeared", path);
}

void th_tree_wait_ready(const char *dir)
{
	wait_file(dir, "ready-parent");
	wait_file(dir, "ready-child");
}

/* Wait (up to @ms) until DIR/@name holds @needle. */
static bool wait_for(const char *dir, const char *name, const char *needle, int ms)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (int t = 0;; t += 10) {
		const char *s = th_slurp(path);

		if (s && strstr(s, needle))
			return true;
		if (t >= ms)
			return false;
		sleep_ms(10);
	}
}

void th_tree_expect_ok(const char *dir, int ms)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/child.out", dir);
	cr_expect(wait_for(dir, "child.out", "ok child", ms), "child: %s", th_slurp(path));
	snprintf(path, sizeof(path), "%s/parent.out", dir);
	cr_expect(wait_for(dir, "parent.out", "ok parent", ms), "parent: %s", th_slurp(path));
}

void th_tree_remove(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

pid_t th_tree_start(char *dir, size_t len, const char *tag, const char *prog, const char *mode)
{
	const char *args[] = {mode, dir, NULL};
	char out[512];
	pid_t pid;

	snprintf(dir, len, "/tmp/haul-%s-%s-%d", tag, mode, (int)getpid());
	mkdir(dir, 0755);
	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	pid = th_spawn_prog(out, prog, args);
	th_tree_wait_ready(dir);
	return pid;
}

void th_tree_cycle(const char *tag, const char *prog, const char *mode)
{
	struct rst_target_opts o = {.pidns = RST_PIDNS_ALWAYS};
	char dir[256], imgs[512];
	struct rst_ckpt_stats st;
	struct rst_target *t = NULL;
	pid_t pid, here = 0;
	int ret, status;

	pid = th_tree_start(dir, sizeof(dir), tag, prog, mode);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	ret = haul_checkpoint_images(pid, imgs, false, NULL, &st);
	if (ret)
		th_tree_touch(dir, "go"); /* refused: the source runs on, let it end */
	cr_assert_eq(ret, 0, "checkpoint of %s %s failed: %s", prog, mode, strerror(-ret));
	waitpid(pid, &status, 0);
	ret = rst_restore_images(imgs, NULL, 0, &o, &t, &here);
	cr_assert_eq(ret, 0, "restore of %s %s failed: %s", prog, mode, strerror(-ret));
	th_tree_touch(dir, "go");
	status = rst_target_wait(t);
	rst_target_free(t);
	th_tree_expect_ok(dir, 0);
	cr_expect_eq(status, 0, "the restored %s %s exited with %d", prog, mode, status);
	th_tree_remove(dir);
}

void th_tree_checkpoint_runs_on(const char *tag, const char *prog, const char *mode, bool leave,
				int want, bool ok)
{
	char dir[256], imgs[512];
	struct rst_ckpt_stats st;
	int ret, status;
	pid_t pid;

	pid = th_tree_start(dir, sizeof(dir), tag, prog, mode);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	ret = haul_checkpoint_images(pid, imgs, leave, NULL, &st);
	cr_expect_eq(ret, want, "checkpoint of %s %s: %s, not %s", prog, mode, strerror(-ret),
		     strerror(-want));
	/* the source runs on, as it was: it ends when told to */
	th_tree_touch(dir, "go");
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	if (ok)
		th_tree_expect_ok(dir, 0);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the source ended with %#x",
		  status);
	th_tree_remove(dir);
}

void th_tree_start_in_a(struct th_mig *m, char *dir, size_t len, const char *prog, const char *mode)
{
	char bin[512], out[600];
	char *argv[] = {bin, (char *)mode, dir, NULL};

	th_mig_setup(m, 0);
	snprintf(dir, len, "%s/%s", m->dir, m->tag);
	mkdir(dir, 0755);
	snprintf(bin, sizeof(bin), "%s/%s", th_progs_dir(), prog);
	snprintf(out, sizeof(out), "%s/root.stdout", dir);
	m->wl_pid = th_spawn(m->net.a, argv, out);
	cr_assert_gt(m->wl_pid, 0);
	th_tree_wait_ready(dir);
}

void th_tree_migrate(struct th_mig *m)
{
	const char *extra[] = {"--downtime", "50", NULL};

	cr_assert_eq(th_mig_run(m, extra, 90000), 0, "haul migrate failed");
}

void th_tree_assert_in_b(struct th_mig *m)
{
	pid_t there = (pid_t)th_mig_json(m, "target_pid");
	char path[64];
	struct stat ns;

	snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)there);
	cr_assert(there > 0 && !stat(path, &ns) && ns.st_ino == m->net_b,
		  "the tree does not run in the target");
}
