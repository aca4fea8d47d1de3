/*
 * rst_world.c - the per-process resources that are not fds (res_int.h)
 * through checkpoint + restore (haul's image path) and through haul
 * migrate: each carried one still works in the restored process
 * (tests/progs/rst_world and mig_workload --world check themselves, see
 * tests/progs/world.h), and each one haul cannot carry is refused by name
 * at the precheck, the process running on untouched.  CRIU's zdtm
 * posix_timers and seccomp_filter* check the same.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "haul/haul.h"
#include "restore/restore.h"
#include "th_mig.h"
#include "th_rst.h"

static char dir[128], out[160];

static void fini(void)
{
	char cmd[160];

	if (dir[0]) {
		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		if (system(cmd))
			cr_log_warn("cannot remove %s", dir);
	}
}

/* Start rst_world with @modes (NULL-terminated), output in DIR/out; returns once it is ready. */
static pid_t spawn_world(const char *const modes[])
{
	pid_t pid;

	snprintf(dir, sizeof(dir), "/tmp/haul-world-%d", (int)getpid());
	mkdir(dir, 0755);
	snprintf(out, sizeof(out), "%s/out", dir);
	pid = th_spawn_prog(out, "rst_world", modes);
	if (th_wait_file(out, 0, "ready", 10000, NULL, 0)) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		cr_assert_fail("rst_world did not start: %s", th_slurp(out));
	}
	return pid;
}

/* Checkpoint rst_world @modes into DIR/img (it dies), restore it, let it check itself. */
static void carried(const char *const modes[])
{
	struct rst_target_opts o = {.pidns = RST_PIDNS_AUTO};
	pid_t pid = spawn_world(modes), here;
	struct rst_ckpt_stats st;
	struct rst_target *t;
	char img[192];
	int ret, status;

	snprintf(img, sizeof(img), "%s/img", dir);
	ret = haul_checkpoint_images(pid, img, false, NULL, &st);
	if (ret) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		cr_assert_fail("checkpoint failed: %s", strerror(-ret));
	}
	waitpid(pid, &status, 0);
	ret = rst_restore_images(img, st.id, pid, &o, &t, &here);
	cr_assert_eq(ret, 0, "restore failed: %s", strerror(-ret));
	kill(here, SIGUSR1);
	status = rst_target_wait(t);
	rst_target_free(t);
	cr_expect_eq(status, 0, "the restored process found a resource lost:\n%s", th_slurp(out));
	cr_expect(strstr(th_slurp(out), "world ok\n"), "no ok line:\n%s", th_slurp(out));
}

/* The precheck of rst_world @mode refuses with @reason; the process runs on and answers. */
static void refused(const char *mode, const char *reason)
{
	pid_t pid = spawn_world((const char *const[]){mode, NULL});
	char why[512] = "";
	int ret, status = -1;

	ret = rst_dump_precheck(pid, why, sizeof(why));
	cr_expect_eq(ret, -EOPNOTSUPP, "precheck of %s returned %d (%s)", mode, ret, why);
	cr_expect(strstr(why, reason), "reason for %s is '%s', want '%s'", mode, why, reason);
	kill(pid, SIGUSR1);
	cr_expect_eq(th_wait_exit(pid, 10000), 0, "rst_world %s did not run on:\n%s", mode,
		     th_slurp(out));
	(void)status;
}

Test(rst_world, posix_timers_keep_their_ids_and_fire_at_their_interval, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"timers", NULL});
}

Test(rst_world, a_seccomp_filter_still_denies_its_syscall_in_every_thread, .fini = fini,
     .timeout = 60)
{
	carried((const char *const[]){"seccomp", NULL});
}

/* zdtm's seccomp_filter: installed after the ids' restore, the filter needed privileges gone */
Test(rst_world, a_seccomp_filter_installed_as_root_before_a_uid_change_is_restored, .fini = fini,
     .timeout = 60)
{
	carried((const char *const[]){"seccomp-uid", NULL});
}

Test(rst_world, a_thread_in_seccomp_strict_mode_stays_strict, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"strict", NULL});
}

Test(rst_world, timers_and_seccomp_together, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"timers", "seccomp", NULL});
}

Test(rst_world, a_pidfd_on_itself_still_names_it, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){"pidfd", NULL});
}

/* "inotify:DIR" with this test's directory (made by spawn_world before the program runs). */
static const char *ino_mode(void)
{
	static char m[160];

	snprintf(m, sizeof(m), "inotify:/tmp/haul-world-%d", (int)getpid());
	return m;
}

Test(rst_world, an_inotify_watch_still_fires_with_its_wd, .fini = fini, .timeout = 60)
{
	carried((const char *const[]){ino_mode(), NULL});
}

Test(rst_world, a_fanotify_mark_still_reports_opens, .fini = fini, .timeout = 60)
{
	char m[160];

	snprintf(m, sizeof(m), "fanotify:/tmp/haul-world-%d", (int)getpid());
	carried((const char *const[]){m, NULL});
}

Test(rst_world, a_fanotify_group_of_the_content_class_is_refused_by_name, .fini = fini,
     .timeout = 30)
{
	refused("fanotify-content", "permission events may be waiting");
}

Test(rst_world, an_inotify_fd_with_unread_events_is_refused_by_name, .fini = fini, .timeout = 30)
{
	refused("inotify-queued", "bytes of unread events");
}

Test(rst_world, an_inotify_watch_removed_before_a_later_one_is_refused_by_name, .fini = fini,
     .timeout = 30)
{
	refused("inotify-hole", "has no watch 1 but has watch 2");
}

Test(rst_world, a_pidfd_on_a_process_that_does_not_move_is_refused_by_name, .fini = fini,
     .timeout = 30)
{
	refused("pidfd-parent", "a process that does not move with pid");
}

Test(rst_world, a_timer_on_a_process_cpu_clock_is_refused_by_name, .fini = fini, .timeout = 30)
{
	refused("timer-cpuclock", "counts the CPU time of a given process or thread");
}

Test(rst_world, a_seccomp_user_notification_filter_is_refused_by_name, .fini = fini, .timeout = 30)
{
	refused("seccomp-notif", "SECCOMP_RET_USER_NOTIF");
}

/* ---- through haul migrate ------------------------------------------------ */

static struct th_mig M;

static void mig_fini(void)
{
	th_mig_teardown(&M);
}

Test(rst_world, timers_seccomp_a_pidfd_inotify_and_fanotify_survive_haul_migrate, .fini = mig_fini,
     .timeout = 120)
{
	char line[512] = "";
	bool uffd_failed;
	pid_t haul;
	int fd, st;
	long seq;

	th_mig_setup(&M, 0);
	M.world = true;
	th_mig_workload(&M, 16, 8, 0);
	th_mig_ticks(&M, 3, 5000);
	seq = th_mig_seq(&M);
	th_mig_state_before(&M);
	haul = th_mig_haul(&M, &fd, NULL);
	cr_assert_gt(haul, 0);
	st = th_wait_exit(haul, 60000);
	if (st)
		th_mig_dump_output(fd);
	/* the filter refuses userfaultfd: only a suspended filter lets the uffd tracker in */
	uffd_failed =
		!st && th_wait_line(fd, "tracker 'uffd' failed", 1000, line, sizeof(line)) == 0;
	close(fd);
	cr_assert_eq(st, 0, "haul migrate failed");
	cr_expect(!uffd_failed, "the seccomp filter kept the uffd tracker out: %s", line);
	/* verify runs world.h's checks too (mig_workload --world) */
	th_mig_assert_moved(&M, seq);
}

Test(rst_world, a_target_without_posix_timers_is_refused_before_the_freeze, .fini = mig_fini,
     .timeout = 90)
{
	char line[512];
	int fd, st;
	pid_t haul;

	/* Only the page server (started by the setup) sees the hook: an older target. */
	setenv("HAUL_FAULT", "caps-without:RES_POSIX_TIMERS", 1);
	th_mig_setup(&M, 0);
	unsetenv("HAUL_FAULT");
	M.world = true;
	th_mig_workload(&M, 16, 8, 0);
	haul = th_mig_haul(&M, &fd, NULL);
	st = th_wait_exit(haul, 30000);
	cr_expect_eq(th_wait_line(fd, "RES_POSIX_TIMERS", 1000, line, sizeof(line)), 0,
		     "haul did not name the resource the target lacks");
	cr_expect(strstr(line, "target cannot restore"), "%s", line);
	close(fd);
	cr_assert_eq(st, 1, "haul migrate exited with %d", st);
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "the workload stopped in the source");
	cr_assert_eq(th_mig_copies(&M), 1, "not exactly one copy");
}
