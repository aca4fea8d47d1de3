/*
 * misuse.c - haul used on the wrong thing, or twice at once, answers early
 * and clearly: a kernel thread is refused at the precheck by name; a
 * process of another uid (dumpable or not) is checkpointed and migrated
 * like any other; a corrupt state blob is named at restore; a second haul on
 * one process is refused naming the haul that holds it, and a killed haul's
 * lock file is swept by the next; the help texts name
 * only commands that exist; `haul check` is clean under ASan.
 *
 * Everything runs on this host (page server on 127.0.0.1, port 0); files,
 * images and locks live under /tmp/haul-misuse-PID (HAUL_LOCK_DIR).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/pstore.h"
#include "common/vma.h"
#include "restore/restore.h"
#include "th_net.h"

static char dir[64], key[96], lockdir[96];
static pid_t target = -1, server = -1, restored = -1;
static int server_fd = -1;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/haul-misuse-%d", getpid());
	snprintf(key, sizeof(key), "%s/key", dir);
	snprintf(lockdir, sizeof(lockdir), "%s/lock", dir);
	mkdir(dir, 0755); /* the workloads of another uid write their output here */
	cr_assert_eq(th_make_key(key), 0);
	/* haul's locks of this test's processes stay in the test's directory */
	setenv("HAUL_LOCK_DIR", lockdir, 1);
	if (access(th_haul_bin(), X_OK))
		cr_skip_test("no haul binary at %s", th_haul_bin());
}

static void teardown(void)
{
	if (restored > 0) {
		/* not our child: through a pidfd, so that a reused PID is never hit */
		int fd = (int)syscall(SYS_pidfd_open, restored, 0);

		if (fd >= 0) {
			syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0);
			close(fd);
		}
	}
	th_kill(target, SIGKILL, 2000);
	th_kill(server, SIGKILL, 2000);
	if (server_fd >= 0)
		close(server_fd);
	target = server = restored = -1;
	server_fd = -1;
	unsetenv("HAUL_LOCK_DIR");
	th_sh("rm -rf %s", dir);
}

TestSuite(misuse, .init = setup, .fini = teardown, .timeout = 60);

/* Start misuse_target (as uid 65534 when @other_uid) with @mode; its output in @outp. */
static void start_target(bool other_uid, const char *mode, char *outp, size_t len)
{
	char prog[512], tag[32];
	char *argv[12];
	int n = 0;

	snprintf(prog, sizeof(prog), "%s/misuse_target", th_progs_dir());
	snprintf(tag, sizeof(tag), "misusetag%d", getpid());
	snprintf(outp, len, "%s/target.out", dir);
	if (other_uid) {
		if (access("/usr/bin/setpriv", X_OK))
			cr_skip_test("setpriv (util-linux) is not installed");
		argv[n++] = "/usr/bin/setpriv";
		argv[n++] = "--reuid=65534";
		argv[n++] = "--regid=65534";
		/* supplementary groups as zdtm's tests have: "Groups:" ends in a blank */
		argv[n++] = "--groups=27495,48244";
	}
	argv[n++] = prog;
	argv[n++] = tag;
	if (mode)
		argv[n++] = (char *)mode;
	argv[n] = NULL;
	target = th_spawn(NULL, argv, outp);
	cr_assert_gt(target, 0);
	cr_assert_eq(th_wait_file(outp, 0, "ready", 10000, NULL, 0), 0,
		     "misuse_target never started");
}

/* A page server on 127.0.0.1 at any free port; its port. */
static int start_server(void)
{
	char *argv[] = {
		(char *)th_haul_bin(), "pageserver", "--listen", "127.0.0.1:0", "--key", key, NULL};
	char line[256], *p;

	server = th_spawn_pipe(NULL, argv, &server_fd);
	cr_assert_gt(server, 0);
	cr_assert_eq(th_wait_line(server_fd, "listening on", 5000, line, sizeof(line)), 0,
		     "the page server did not start");
	p = strrchr(line, ':');
	cr_assert_not_null(p);
	return atoi(p + 1);
}

Test(misuse, a_kernel_thread_is_refused_at_the_precheck_by_name)
{
	char out[4096];

	if (!rst_is_kthread(2))
		cr_skip_test(
			"pid 2 is not a kernel thread here (no kthreadd in this PID namespace)");
	cr_expect_eq(th_run(out, sizeof(out), "%s migrate 2 --to 127.0.0.1:1 --key %s",
			    th_haul_bin(), key),
		     1);
	cr_expect(strstr(out, "precheck: pid 2 (kthreadd) is a kernel thread"), "said: %s", out);
	cr_expect_not(strstr(out, "Success"), "said: %s", out);
	cr_expect_eq(
		th_run(out, sizeof(out), "%s checkpoint 2 --images %s/img", th_haul_bin(), dir), 1);
	cr_expect(strstr(out, "is a kernel thread"), "said: %s", out);
	cr_expect_eq(th_run(out, sizeof(out), "%s track 2 --rounds 1", th_haul_bin()), 1);
	cr_expect(strstr(out, "pid 2 is a kernel thread"), "said: %s", out);
	cr_expect_not(strstr(out, "No such process"), "said: %s", out);
}

/* A process of uid 65534 is checkpointed (left running) and then migrated; it runs on. */
static void another_uid_moves(const char *mode)
{
	char outp[128], out[4096], status[128], *p;
	size_t from;
	int port;
	FILE *f;
	unsigned uid = 0;

	start_target(true, mode, outp, sizeof(outp));
	/* tracked with uffd-wp, not the hash fallback: a user-mode-only uffd is allowed */
	cr_assert_eq(th_run(out, sizeof(out), "%s track %d --rounds 1", th_haul_bin(), (int)target),
		     0, "a process of another uid was not tracked: %s", out);
	cr_expect(strstr(out, "with uffd"), "said: %s", out);
	cr_expect_not(strstr(out, "error"), "said: %s", out);
	cr_assert_eq(th_run(out, sizeof(out), "%s checkpoint %d --images %s/img --leave-running",
			    th_haul_bin(), (int)target, dir),
		     0, "a process of another uid was not checkpointed: %s", out);
	cr_assert(strstr(out, "checkpointed pid"), "said: %s", out);
	port = start_server();
	cr_assert_eq(th_run(out, sizeof(out), "%s migrate %d --to 127.0.0.1:%d --key %s --quiet",
			    th_haul_bin(), (int)target, port, key),
		     0, "a process of another uid was not migrated: %s", out);
	p = strstr(out, "(pid ");
	cr_assert_not_null(p, "said: %s", out);
	restored = atoi(p + 5);
	cr_assert_gt(restored, 0);
	th_wait_exit(target, 5000); /* the source was killed after the commit */
	target = -1;
	/* the restored copy still runs as uid 65534, and goes on ticking */
	snprintf(status, sizeof(status), "grep ^Uid: /proc/%d/status", (int)restored);
	f = popen(status, "r");
	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "Uid: %u", &uid), 1);
	pclose(f);
	cr_expect_eq(uid, 65534, "the restored copy runs as uid %u", uid);
	snprintf(status, sizeof(status), "grep ^Groups: /proc/%d/status", (int)restored);
	f = popen(status, "r");
	cr_assert_not_null(f);
	cr_expect(fgets(status, sizeof(status), f) && strstr(status, "27495 48244"),
		  "the restored copy has groups %s", status);
	pclose(f);
	from = th_file_size(outp);
	cr_expect_eq(th_wait_file(outp, from, "tick", 3000, NULL, 0), 0,
		     "the restored copy does not run");
}

Test(misuse, a_process_of_another_uid_is_checkpointed_and_migrated)
{
	another_uid_moves(NULL);
}

Test(misuse, a_non_dumpable_process_of_another_uid_is_checkpointed_and_migrated)
{
	another_uid_moves("nondumpable");
}

Test(misuse, a_corrupt_state_blob_is_named_at_restore)
{
	struct pstore *s;
	struct pstore_proc *p;
	struct haul_layout l = {0};
	static const char junk[] = "this is not a process state \xff\xff\xff\xff\xff";
	char out[4096], images[96];

	snprintf(images, sizeof(images), "%s/img", dir);
	cr_assert_eq(pstore_open(images, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 4242, true, &p), 0);
	cr_assert_eq(pstore_set_comm(p, "junk"), 0);
	cr_assert_eq(pstore_set_layout(p, &l), 0);
	cr_assert_eq(pstore_set_state(p, junk, sizeof(junk)), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	pstore_close(s);
	cr_expect_eq(
		th_run(out, sizeof(out), "%s restore --images %s --detach", th_haul_bin(), images),
		1);
	cr_expect(strstr(out, "the process state of pid 4242 in") && strstr(out, "is corrupt"),
		  "said: %s", out);
}

Test(misuse, a_second_haul_on_one_process_is_refused_naming_the_first)
{
	char outp[128], out[4096], want[128];
	char *argv[] = {(char *)th_haul_bin(), "track", NULL, "--interval", "100", NULL};
	char spid[16];
	pid_t track;
	int fd;

	start_target(false, NULL, outp, sizeof(outp));
	snprintf(spid, sizeof(spid), "%d", (int)target);
	argv[2] = spid;
	track = th_spawn_pipe(NULL, argv, &fd);
	cr_assert_gt(track, 0);
	cr_assert_eq(th_wait_line(fd, "tracking pid", 10000, NULL, 0), 0, "haul track never began");
	snprintf(want, sizeof(want), "pid %d is already being tracked by haul pid %d", (int)target,
		 (int)track);
	cr_expect_eq(th_run(out, sizeof(out), "%s migrate %d --to 127.0.0.1:1 --key %s",
			    th_haul_bin(), (int)target, key),
		     1);
	cr_expect(strstr(out, want), "said: %s", out);
	cr_expect(strstr(out, "precheck"), "not refused at the precheck: %s", out);
	cr_expect_eq(th_run(out, sizeof(out), "%s checkpoint %d --images %s/img --leave-running",
			    th_haul_bin(), (int)target, dir),
		     1);
	cr_expect(strstr(out, want), "said: %s", out);
	cr_expect_eq(th_run(out, sizeof(out), "%s track %d --rounds 1", th_haul_bin(), (int)target),
		     1);
	cr_expect(strstr(out, want), "said: %s", out);
	/* the first one ends: the lock goes with it */
	th_kill(track, SIGTERM, 5000);
	close(fd);
	cr_expect_eq(th_run(out, sizeof(out), "%s checkpoint %d --images %s/img --leave-running",
			    th_haul_bin(), (int)target, dir),
		     0, "still refused after the first haul ended: %s", out);
	cr_expect_eq(th_wait_file(outp, th_file_size(outp), "tick", 3000, NULL, 0), 0,
		     "the process does not run on");
}

Test(misuse, the_lock_of_a_haul_killed_by_sigkill_does_not_block_the_next)
{
	char outp[128], out[4096], spid[16];
	char *argv[] = {(char *)th_haul_bin(), "track", spid, "--interval", "100", NULL};
	pid_t track;
	int fd;

	start_target(false, NULL, outp, sizeof(outp));
	snprintf(spid, sizeof(spid), "%d", (int)target);
	track = th_spawn_pipe(NULL, argv, &fd);
	cr_assert_gt(track, 0);
	cr_assert_eq(th_wait_line(fd, "tracking pid", 10000, NULL, 0), 0, "haul track never began");
	th_kill(track, SIGKILL, 5000);
	close(fd);
	cr_expect_eq(th_run(out, sizeof(out), "%s track %d --rounds 1", th_haul_bin(), (int)target),
		     0, "refused after the holder was killed: %s", out);
}

/* A killed haul's lock file, its process gone, is removed by the next haul that locks. */
Test(misuse, lock_files_of_processes_gone_are_swept_by_the_next_lock)
{
	char outp[128], out[4096], spid[16], dead[160], held[160];
	char *argv[] = {(char *)th_haul_bin(), "track", spid, "--interval", "100", NULL};
	pid_t track;
	int fd;

	start_target(false, NULL, outp, sizeof(outp));
	mkdir(lockdir, 0700);
	/* a process that is gone (pid 1's start time is not 1), and a live one's held lock */
	snprintf(dead, sizeof(dead), "%s/pid-1-1.lock", lockdir);
	cr_assert_eq(th_run(out, sizeof(out), "echo 4242 track > %s", dead), 0);
	snprintf(spid, sizeof(spid), "%d", (int)target);
	track = th_spawn_pipe(NULL, argv, &fd);
	cr_assert_gt(track, 0);
	cr_assert_eq(th_wait_line(fd, "tracking pid", 10000, NULL, 0), 0, "haul track never began");
	cr_expect(access(dead, F_OK) && errno == ENOENT, "%s is still there", dead);
	cr_assert_eq(th_run(held, sizeof(held), "ls %s | grep -c '^pid-%d-'", lockdir, (int)target),
		     0);
	cr_expect_eq(atoi(held), 1, "the live lock was swept too");
	th_kill(track, SIGKILL, 5000);
	close(fd);
}

Test(misuse, pageserver_help_names_only_commands_that_exist)
{
	char out[8192], all[4096];

	cr_assert_eq(th_run(out, sizeof(out), "%s pageserver --help", th_haul_bin()), 0);
	cr_assert_eq(th_run(all, sizeof(all), "%s --help", th_haul_bin()), 0);
	cr_expect_not(strstr(out, "--to"), "it names an option of no command: %s", out);
	/* every `haul CMD` it names is a command */
	for (const char *p = out; (p = strstr(p, "`haul ")); p++) {
		char cmd[32] = "", needle[40];

		sscanf(p + 6, "%31[a-z]", cmd);
		snprintf(needle, sizeof(needle), "  %s ", cmd);
		cr_expect(strstr(all, needle), "it names 'haul %s', which does not exist", cmd);
	}
}

/* `haul check` read /proc/self/cgroup into a freed buffer (cg_probe). */
Test(misuse, haul_check_is_clean_under_asan)
{
	const char *src = getenv("HAUL_SRC");
	char bin[512], out[16384];

	snprintf(bin, sizeof(bin), "%s/build-asan/haul", src ? src : ".");
	if (access(bin, X_OK))
		cr_skip_test("no ASan build at %s (make asan, or make BUILD=build-asan ... "
			     "build-asan/haul)",
			     bin);
	cr_expect_eq(th_run(out, sizeof(out), "ASAN_OPTIONS=detect_leaks=0 %s check", bin), 0);
	cr_expect_not(strstr(out, "AddressSanitizer"), "said: %s", out);
	cr_expect_not(strstr(out, "runtime error"), "said: %s", out);
}
