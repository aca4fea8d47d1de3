/*
 * rst_unix_scm.c - files in flight (SCM_RIGHTS) in the queue of a unix
 * stream socketpair across `haul checkpoint` + `haul restore`
 * (tests/progs/unix_scm_stream): the reader gets each file with the bytes
 * it was sent with, and each read ends where the kernel ended it before
 * (plain bytes before a buffer with files are read with it, nothing after
 * it); the files work (a file at its offset, an append-only file, a pipe
 * and an eventfd the sender holds; a pipe with its bytes, an eventfd and a
 * sealed memfd that no process holds any more, a socket end whose peer is
 * closed, with its bytes).  A checkpoint that leaves the process running
 * leaves its queue as it was; a device in flight that no process holds is
 * refused by name, and the queue is kept.
 */
#include <criterion/criterion.h>
#include <errno.h>
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
#include "th_rst.h"

static void make_dir(char *dir, size_t len, const char *mode)
{
	snprintf(dir, len, "/tmp/haul-uscm-%s-%d", mode, (int)getpid());
	mkdir(dir, 0755);
}

static void touch(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	close(open(path, O_WRONLY | O_CREAT, 0644));
}

/* Wait (bounded) until DIR/NAME exists: the program's ready signal. */
static void wait_file(const char *dir, const char *name)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	for (int i = 0; i < 3000; i++) {
		struct timespec ts = {0, 5 * 1000 * 1000};

		if (!access(path, F_OK))
			return;
		nanosleep(&ts, NULL);
	}
	cr_assert_fail("%s never appeared", path);
}

static void remove_dir(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

static void expect_ok(const char *dir)
{
	char path[512];

	snprintf(path, sizeof(path), "%s/child.out", dir);
	cr_expect_neq(strstr(th_slurp(path), "ok child"), NULL, "child: %s", th_slurp(path));
	snprintf(path, sizeof(path), "%s/parent.out", dir);
	cr_expect_neq(strstr(th_slurp(path), "ok parent"), NULL, "parent: %s", th_slurp(path));
}

static pid_t start(char *dir, size_t len, const char *mode)
{
	char out[512];
	const char *args[] = {mode, dir, NULL};
	pid_t pid;

	make_dir(dir, len, mode);
	snprintf(out, sizeof(out), "%s/spawn.out", dir);
	pid = th_spawn_prog(out, "unix_scm_stream", args);
	wait_file(dir, "ready-parent");
	wait_file(dir, "ready-child");
	return pid;
}

/* unix_scm_stream @mode: checkpoint once ready, restore, let the reader check. */
static void cycle(const char *mode)
{
	struct rst_target_opts o = {.pidns = RST_PIDNS_ALWAYS};
	char dir[256], imgs[512];
	struct rst_ckpt_stats st;
	struct rst_target *t = NULL;
	pid_t pid, here = 0;
	int ret, status;

	pid = start(dir, sizeof(dir), mode);
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	ret = haul_checkpoint_images(pid, imgs, false, NULL, &st);
	if (ret)
		touch(dir, "go"); /* refused: the source runs on, let it end */
	cr_assert_eq(ret, 0, "checkpoint of unix_scm_stream %s failed: %s", mode, strerror(-ret));
	waitpid(pid, &status, 0);
	ret = rst_restore_images(imgs, NULL, 0, &o, &t, &here);
	cr_assert_eq(ret, 0, "restore of unix_scm_stream %s failed: %s", mode, strerror(-ret));
	touch(dir, "go");
	status = rst_target_wait(t);
	rst_target_free(t);
	expect_ok(dir);
	cr_expect_eq(status, 0, "the restored process exited with %d", status);
	remove_dir(dir);
}

Test(rst_unix_scm, a_stream_queue_gives_each_file_with_the_bytes_it_was_sent_with, .timeout = 120)
{
	cycle("solo");
}

Test(rst_unix_scm, files_in_flight_from_parent_to_child_on_a_stream_come_back_at_their_bytes,
     .timeout = 120)
{
	cycle("tree");
}

Test(rst_unix_scm, a_checkpoint_that_leaves_the_process_running_leaves_its_queue_as_it_was,
     .timeout = 120)
{
	char dir[256], imgs[512];
	struct rst_ckpt_stats st;
	int ret, status;
	pid_t pid;

	pid = start(dir, sizeof(dir), "tree");
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	ret = haul_checkpoint_images(pid, imgs, true, NULL, &st);
	cr_expect_eq(ret, 0, "checkpoint (leave running) failed: %s", strerror(-ret));
	touch(dir, "go");
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	expect_ok(dir);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the source ended with %#x",
		  status);
	remove_dir(dir);
}

Test(rst_unix_scm, a_pipe_an_eventfd_and_a_memfd_in_flight_that_no_process_holds_work,
     .timeout = 120)
{
	cycle("pipe");
}

Test(rst_unix_scm, a_socket_end_in_flight_whose_peer_is_closed_keeps_its_bytes, .timeout = 120)
{
	cycle("sock");
}

Test(rst_unix_scm, a_device_in_flight_that_no_process_holds_is_refused_and_the_queue_kept,
     .timeout = 120)
{
	char dir[256], imgs[512];
	struct rst_ckpt_stats st;
	int ret, status;
	pid_t pid;

	pid = start(dir, sizeof(dir), "dev");
	snprintf(imgs, sizeof(imgs), "%s/images", dir);
	ret = haul_checkpoint_images(pid, imgs, false, NULL, &st);
	cr_expect_eq(ret, -EOPNOTSUPP, "the checkpoint was not refused: %s", strerror(-ret));
	/* refused before anything was touched: the process reads its queue as it was */
	touch(dir, "go");
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	expect_ok(dir);
	cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 0, "the source ended with %#x",
		  status);
	remove_dir(dir);
}
