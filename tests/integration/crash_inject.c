/*
 * crash_inject.c - a haul SIGKILLed at any step of a system call injection
 * (HAUL_FAULT=kill:inject:STEP[:N], src/common/injlog.h) leaves the process
 * it injected into running exactly as before: same signal mask, no group-stop
 * or tracer left, no scratch mapping or userfaultfd left, its own work going
 * on without an error, its scheduling policy its own, and for a migration
 * one copy in no haul cgroup.
 * Covered: `haul track` (the userfaultfd attach), `haul checkpoint` with and
 * without --leave-running (before the commit), the criu entry point's DUMP
 * (`criu swrk`, as runc drives it), `haul migrate` (the tracker attach and
 * the dump, one and several threads), and a walk over every injected call
 * of one dump.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "haul/criu_int.h"
#include "haul/haul_int.h"
#include "th_mig.h"
#include "th_rst.h"

/* One kill point: HAUL_FAULT=kill:inject:STEP:N (inline: workers do not share our addresses). */
struct kill_at {
	char step[16];
	int n;
};

/* The workload's observable state before haul touched it. */
struct wl {
	pid_t pid;
	char dir[64];
	char out[96];
	char sigblk[32];
	char maps[16384];
};

static struct wl W;

static double ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A field of /proc/PID/status ("SigBlk", "State", "TracerPid") into @buf; false when gone. */
static bool status_field(pid_t pid, const char *key, char *buf, size_t len)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (!found && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			char *v = line + kl + 1;

			v += strspn(v, " \t");
			v[strcspn(v, "\n")] = '\0';
			snprintf(buf, len, "%s", v);
			found = true;
		}
	fclose(f);
	return found;
}

/* /proc/PID/maps as text into @buf; false when gone. */
static bool read_maps(pid_t pid, char *buf, size_t len)
{
	char path[64];
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
	return true;
}

/*
 * An anonymous RSYS_SCRATCH_SIZE (64 KiB) mapping in @now that @before did
 * not have: the scratch page of an injection, left behind.  (Counting lines
 * would not do: the tracker's uffd registration can leave a VMA split.)
 */
static bool has_new_scratch(const char *before, const char *now)
{
	char line[512];

	for (const char *p = now; *p;) {
		size_t l = strcspn(p, "\n");
		unsigned long long s, e;
		char range[64];
		int off = 0;

		snprintf(line, sizeof(line), "%.*s", (int)l, p);
		p += l + (p[l] == '\n');
		if (sscanf(line, "%llx-%llx %*s %*s %*s %*s%n", &s, &e, &off) != 2 ||
		    e - s != 65536 || line[off + strspn(line + off, " ")])
			continue;
		snprintf(range, sizeof(range), "%llx-%llx ", s, e);
		if (!strstr(before, range))
			return true;
	}
	return false;
}

/* Released: not stopped, not traced (the survivor has finished). */
static bool released(pid_t pid, int timeout_ms)
{
	double until = ms_now() + timeout_ms;
	char st[64], tr[32];

	while (ms_now() < until) {
		if (status_field(pid, "State", st, sizeof(st)) &&
		    status_field(pid, "TracerPid", tr, sizeof(tr)) && st[0] != 'T' &&
		    st[0] != 't' && !strcmp(tr, "0"))
			return true;
		usleep(2000);
	}
	return false;
}

static void wl_start(void)
{
	char bin[512];
	char *argv[] = {bin, W.dir, "100000000", "4", "1000", "memonly", NULL};

	snprintf(W.dir, sizeof(W.dir), "/tmp/haul-inj-%d", (int)getpid());
	snprintf(W.out, sizeof(W.out), "%s/out", W.dir);
	cr_assert_eq(th_sh("rm -rf %s && mkdir -p %s", W.dir, W.dir), 0);
	snprintf(bin, sizeof(bin), "%s/rst_counter", th_progs_dir());
	W.pid = th_spawn(NULL, argv, W.out);
	cr_assert_gt(W.pid, 0);
	/* its first tick comes after its setup (signal mask, mappings) is complete */
	cr_assert_eq(th_wait_file(W.out, 0, "tick", 10000, NULL, 0), 0, "the workload never ticks");
	cr_assert(status_field(W.pid, "SigBlk", W.sigblk, sizeof(W.sigblk)));
	cr_assert(read_maps(W.pid, W.maps, sizeof(W.maps)));
}

static void wl_stop(void)
{
	if (W.pid > 0)
		th_kill(W.pid, SIGKILL, 2000);
	W.pid = 0;
	if (W.dir[0])
		th_sh("rm -rf %s", W.dir);
}

/* The workload runs on as before @what killed haul. */
static void assert_wl_intact(const char *what)
{
	char blk[32], maps[16384];
	int st;

	cr_assert(released(W.pid, 5000), "%s: pid %d is left stopped or traced", what, W.pid);
	cr_assert_eq(waitpid(W.pid, &st, WNOHANG), 0, "%s: the workload died (status %#x)", what,
		     st);
	cr_assert_eq(th_wait_file(W.out, th_file_size(W.out), "tick", 3000, NULL, 0), 0,
		     "%s: the workload stopped ticking", what);
	cr_assert(status_field(W.pid, "SigBlk", blk, sizeof(blk)));
	cr_assert_str_eq(blk, W.sigblk, "%s: signal mask %s, was %s", what, blk, W.sigblk);
	cr_assert(read_maps(W.pid, maps, sizeof(maps)));
	cr_assert_not(has_new_scratch(W.maps, maps), "%s: a scratch mapping was left behind:\n%s",
		      what, maps);
	cr_assert_neq(th_sh("ls -l /proc/%d/fd | grep -q userfaultfd", W.pid), 0,
		      "%s: a userfaultfd was left behind", what);
	cr_assert_neq(th_sh("grep -q ERROR %s", W.out), 0, "%s: the workload reports an error",
		      what);
	/* the tracker raised it to SCHED_FIFO for the attach: back to its own policy */
	cr_assert_eq(th_sh("chrt -p %d | grep -q 'policy: SCHED_OTHER'", W.pid), 0,
		     "%s: the workload keeps a raised scheduling policy", what);
}

/* Run haul with @argv under HAUL_FAULT=@fault; its exit status (137: killed itself). */
static int haul_under_fault(const char *fault, char *const argv[])
{
	char log[128];
	pid_t pid;
	int st;

	snprintf(log, sizeof(log), "%s/haul.log", W.dir);
	setenv("HAUL_FAULT", fault, 1);
	pid = th_spawn(NULL, argv, log);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, 30000);
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	return st;
}

static void kill_once(const struct kill_at *k, char *const argv[])
{
	char fault[64];

	snprintf(fault, sizeof(fault), "kill:inject:%s:%d", k->step, k->n);
	cr_assert_eq(haul_under_fault(fault, argv), 128 + SIGKILL, "haul did not reach %s", fault);
	assert_wl_intact(fault);
}

static void teardown_wl(void)
{
	wl_stop();
}

/* ---- haul track: the userfaultfd attach (userfaultfd, close) ------------------ */

ParameterizedTestParameters(crash_inject, track_attach)
{
	static struct kill_at k[] = {
		{"hold", 1}, {"seize", 1},   {"mask", 1},   {"regs", 1},  {"entry", 1},
		{"exit", 1}, {"call", 1},    {"regs", 2},   {"entry", 2}, {"exit", 2},
		{"call", 2}, {"restore", 1}, {"unhold", 1},
	};

	return cr_make_param_array(struct kill_at, k, sizeof(k) / sizeof(k[0]));
}

ParameterizedTest(struct kill_at *k, crash_inject, track_attach, .fini = teardown_wl, .timeout = 60)
{
	char bin[512], pid[16];
	char *argv[] = {bin, "track", pid, "--rounds", "1", NULL};

	wl_start();
	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	snprintf(pid, sizeof(pid), "%d", W.pid);
	kill_once(k, argv);
}

/* ---- haul checkpoint, before its commit --------------------------------------- */

/* The dump alone (no tracker): its calls are 1..; release only happens with --leave-running. */
ParameterizedTestParameters(crash_inject, checkpoint_before_commit)
{
	static struct kill_at k[] = {
		{"hold", 1},  {"seize", 1}, {"mask", 1}, {"regs", 1},
		{"entry", 2}, {"exit", 3},  {"call", 4}, {"call", 8},
	};

	return cr_make_param_array(struct kill_at, k, sizeof(k) / sizeof(k[0]));
}

ParameterizedTest(struct kill_at *k, crash_inject, checkpoint_before_commit, .fini = teardown_wl,
		  .timeout = 60)
{
	char bin[512], pid[16], img[96];
	char *argv[] = {bin, "checkpoint", pid, "--images", img, NULL};

	wl_start();
	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	snprintf(pid, sizeof(pid), "%d", W.pid);
	snprintf(img, sizeof(img), "%s/img", W.dir);
	kill_once(k, argv);
}

/* With --leave-running: the tracker attach (2 calls), then the dump, then the release. */
ParameterizedTestParameters(crash_inject, checkpoint_leave_running)
{
	static struct kill_at k[] = {
		{"hold", 1},  {"entry", 1}, {"hold", 2}, {"seize", 2},	 {"mask", 2},	{"regs", 3},
		{"entry", 4}, {"exit", 5},  {"call", 6}, {"restore", 2}, {"unhold", 2},
	};

	return cr_make_param_array(struct kill_at, k, sizeof(k) / sizeof(k[0]));
}

ParameterizedTest(struct kill_at *k, crash_inject, checkpoint_leave_running, .fini = teardown_wl,
		  .timeout = 60)
{
	char bin[512], pid[16], img[96];
	char *argv[] = {bin, "checkpoint", pid, "--images", img, "--leave-running", NULL};

	wl_start();
	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	snprintf(pid, sizeof(pid), "%d", W.pid);
	snprintf(img, sizeof(img), "%s/img", W.dir);
	kill_once(k, argv);
}

/*
 * Every injected call of one checkpoint killed at each of its four steps in
 * turn (a batch of calls has two: "regs" before it runs, "call" after),
 * each step's walk until haul gets through (N past its last); bounded in time.
 */
Test(crash_inject, checkpoint_survives_a_kill_at_every_injected_call, .fini = teardown_wl,
     .timeout = 240)
{
	static const char *const steps[] = {"regs", "entry", "exit", "call"};
	char bin[512], pid[16], img[96], fault[64];
	char *argv[] = {bin, "checkpoint", pid, "--images", img, "--leave-running", NULL};
	double until = ms_now() + 150000;
	int n, total = 0, st;

	wl_start();
	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	snprintf(pid, sizeof(pid), "%d", W.pid);
	snprintf(img, sizeof(img), "%s/img", W.dir);
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		st = 128 + SIGKILL;
		for (n = 1; st == 128 + SIGKILL && ms_now() < until; n++) {
			snprintf(fault, sizeof(fault), "kill:inject:%s:%d", steps[k], n);
			st = haul_under_fault(fault, argv);
			cr_assert(st == 0 || st == 128 + SIGKILL, "%s: haul exited with %d", fault,
				  st);
			assert_wl_intact(fault);
		}
		cr_assert_eq(st, 0,
			     "the walk of step %s did not reach the end of the dump in time "
			     "(at call %d)",
			     steps[k], n);
		cr_assert_gt(n, 3, "only %d injected calls reached step %s", n - 2, steps[k]);
		total += n - 2;
	}
	cr_log_info("killed haul at each of %d steps of injected calls; the workload ran on each "
		    "time",
		    total);
}

/* ---- the criu entry point: `criu swrk 3` answering runc's DUMP ---------------- */

/*
 * haul as `criu swrk 3` (argv[0] criu) under HAUL_FAULT=@fault, sent one
 * request of @type (DUMP, PRE_DUMP) for the workload into W.dir/criu-img, as
 * runc sends it (the images directory an fd of ours), SIGKILLed after
 * @kill_us when not 0; its exit status (137: killed).
 */
static int criu_req_killed(Haul__Criu__ReqType type, const char *fault, bool leave,
			   unsigned kill_us)
{
	Haul__Criu__Request q = HAUL__CRIU__REQUEST__INIT;
	Haul__Criu__Options o = HAUL__CRIU__OPTIONS__INIT;
	char img[96], *argv[] = {"criu", "swrk", "3", NULL};
	uint8_t buf[4096];
	int sv[2], dfd, st;
	size_t n;
	pid_t pid;

	snprintf(img, sizeof(img), "%s/criu-img", W.dir);
	mkdir(img, 0700);
	dfd = open(img, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	cr_assert_geq(dfd, 0);
	o.has_images_dir_fd = o.has_pid = o.has_leave_running = true;
	o.images_dir_fd = dfd;
	o.pid = W.pid;
	o.log_file = "dump.log";
	o.leave_running = leave;
	o.has_track_mem = o.track_mem = type == HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP;
	q.has_type = true;
	q.type = type;
	q.opts = &o;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		setenv("HAUL_FAULT", fault, 1);
		if (dup2(sv[1], 3) == 3)
			execv(th_haul_bin(), argv);
		_exit(127);
	}
	close(sv[1]);
	n = haul__criu__request__get_packed_size(&q);
	haul__criu__request__pack(&q, buf);
	cr_assert_eq(send(sv[0], buf, n, 0), (ssize_t)n);
	if (kill_us) {
		usleep(kill_us);
		kill(pid, SIGKILL);
	}
	st = th_wait_exit(pid, 30000);
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	close(sv[0]);
	close(dfd);
	return st;
}

static int criu_dump_under_fault(const char *fault, bool leave)
{
	return criu_req_killed(HAUL__CRIU__REQ_TYPE__REQ_DUMP, fault, leave, 0);
}

/* A kill point of the criu DUMP, with or without leave_running. */
struct criu_kill {
	struct kill_at at;
	bool leave;
};

/* The dump before its commit; with leave_running the tracker's calls come first, then the release. */
ParameterizedTestParameters(crash_inject, criu_dump)
{
	static struct criu_kill k[] = {
		{{"hold", 1}, false},	{{"seize", 1}, false}, {{"mask", 1}, false},
		{{"regs", 1}, false},	{{"entry", 2}, false}, {{"exit", 3}, false},
		{{"call", 4}, false},	{{"call", 8}, false},  {{"hold", 2}, true},
		{{"entry", 4}, true},	{{"exit", 5}, true},   {{"call", 6}, true},
		{{"restore", 2}, true}, {{"unhold", 2}, true},
	};

	return cr_make_param_array(struct criu_kill, k, sizeof(k) / sizeof(k[0]));
}

ParameterizedTest(struct criu_kill *k, crash_inject, criu_dump, .fini = teardown_wl, .timeout = 60)
{
	char fault[64], log[160];
	int st;

	wl_start();
	snprintf(fault, sizeof(fault), "kill:inject:%s:%d", k->at.step, k->at.n);
	snprintf(log, sizeof(log), "%s/criu-img/dump.log", W.dir);
	st = criu_dump_under_fault(fault, k->leave);
	cr_assert_eq(st, 128 + SIGKILL, "criu swrk did not reach %s%s (exit %d): %s", fault,
		     k->leave ? " (leave_running)" : "", st, th_slurp(log));
	assert_wl_intact(fault);
}

/*
 * The same without a fault: `criu swrk` killed 2-200 ms into a DUMP with
 * leave_running (most of it is the attach and the dump, whose calls last
 * ~1 ms), as ^C on `runc checkpoint` would: the process runs on each time.
 * Without the journal it died within 60 tries (SIGSEGV or SIGTRAP), 4 runs
 * of 4.
 */
Test(crash_inject, criu_dump_killed_at_random_moments, .fini = teardown_wl, .timeout = 120)
{
	int killed = 0;

	wl_start();
	srand((unsigned)getpid());
	for (int i = 0; i < 60; i++) {
		char what[64];

		snprintf(what, sizeof(what), "criu swrk killed at random (%d)", i);
		killed += criu_req_killed(HAUL__CRIU__REQ_TYPE__REQ_DUMP, "", true,
					  2000 + (unsigned)(rand() % 198000)) == 128 + SIGKILL;
		assert_wl_intact(what);
	}
	cr_log_info("%d of 60 DUMPs killed mid-way; the workload ran on each time", killed);
	cr_expect_gt(killed, 30, "only %d of 60 DUMPs were killed before their end", killed);
}

/*
 * PRE_DUMP: the tracker daemon it starts (trackd.c, which inherits
 * HAUL_FAULT) killed in its attach; the request fails, the process runs on.
 */
ParameterizedTestParameters(crash_inject, criu_predump_attach)
{
	static struct kill_at k[] = {
		{"hold", 1},  {"seize", 1}, {"mask", 1},    {"regs", 1},
		{"entry", 1}, {"exit", 1},  {"restore", 1}, {"unhold", 1},
	};

	return cr_make_param_array(struct kill_at, k, sizeof(k) / sizeof(k[0]));
}

ParameterizedTest(struct kill_at *k, crash_inject, criu_predump_attach, .fini = teardown_wl,
		  .timeout = 60)
{
	char fault[64], log[160];
	int st;

	wl_start();
	snprintf(fault, sizeof(fault), "kill:inject:%s:%d", k->step, k->n);
	snprintf(log, sizeof(log), "%s/criu-img/dump.log", W.dir);
	st = criu_req_killed(HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP, fault, true, 0);
	cr_assert_eq(st, 1,
		     "the pre-dump whose tracker was killed at %s did not fail (exit %d): %s",
		     fault, st, th_slurp(log));
	cr_assert(strstr(th_slurp(log), "did not start"), "%s", th_slurp(log));
	assert_wl_intact(fault);
}

/* ---- haul migrate: the tracker attach and the dump at the switchover --------- */

static struct th_mig M;

static void teardown_mig(void)
{
	th_mig_teardown(&M);
}

static void mig_kill_once(const struct kill_at *k, int threads)
{
	char fault[64], blk0[32], blk[32], path[64];
	int fd;
	pid_t haul;

	th_mig_setup(&M, 0);
	M.threads = threads;
	th_mig_workload(&M, 32, 16, 0);
	cr_assert(th_mig_ticking(&M, M.net_a, 5000));
	cr_assert(status_field(M.wl_pid, "SigBlk", blk0, sizeof(blk0)));
	snprintf(fault, sizeof(fault), "kill:inject:%s:%d", k->step, k->n);
	setenv("HAUL_FAULT", fault, 1);
	haul = th_mig_haul(&M, &fd, NULL);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(haul, 0);
	cr_assert_eq(th_wait_exit(haul, 30000), 128 + SIGKILL, "haul did not reach %s", fault);
	close(fd);
	cr_assert(released(M.wl_pid, 5000), "%s: the source is left stopped or traced", fault);
	cr_assert(th_mig_ticking(&M, M.net_a, 3000), "%s: the source does not run", fault);
	cr_assert(th_mig_verify(&M), "%s: the source's memory is not intact", fault);
	cr_assert_eq(th_mig_copies(&M), 1, "%s: not exactly one copy", fault);
	cr_assert(status_field(M.wl_pid, "SigBlk", blk, sizeof(blk)));
	cr_assert_str_eq(blk, blk0, "%s: signal mask %s, was %s", fault, blk, blk0);
	cr_assert_neq(th_sh("ls -l /proc/%d/fd | grep -q userfaultfd", M.wl_pid), 0,
		      "%s: a userfaultfd was left behind", fault);
	/* the guardian moved it out of haul's cgroups, thawed */
	snprintf(path, sizeof(path), "/proc/%d/cgroup", M.wl_pid);
	cr_assert_neq(th_sh("grep -q 'haul/mig-' %s", path), 0, "%s: still in haul's cgroup",
		      fault);
}

/* Calls 1-2 are the tracker's attach, 3.. the dump (hold 2, seize 2: the dump's). */
ParameterizedTestParameters(crash_inject, migrate)
{
	static struct kill_at k[] = {
		{"hold", 1}, {"entry", 1}, {"call", 2}, {"hold", 2}, {"seize", 2},   {"mask", 2},
		{"regs", 3}, {"entry", 4}, {"exit", 5}, {"call", 7}, {"restore", 2}, {"unhold", 2},
	};

	return cr_make_param_array(struct kill_at, k, sizeof(k) / sizeof(k[0]));
}

ParameterizedTest(struct kill_at *k, crash_inject, migrate, .fini = teardown_mig, .timeout = 90)
{
	mig_kill_once(k, 0);
}

/* Several threads: seize 3 and mask 3 are the second thread's, its calls follow the main one's. */
ParameterizedTestParameters(crash_inject, migrate_threads)
{
	static struct kill_at k[] = {
		{"seize", 3},
		{"mask", 3},
		{"restore", 3},
	};

	return cr_make_param_array(struct kill_at, k, sizeof(k) / sizeof(k[0]));
}

ParameterizedTest(struct kill_at *k, crash_inject, migrate_threads, .fini = teardown_mig,
		  .timeout = 90)
{
	mig_kill_once(k, 2);
}

/* Under the v1 freezer the source is seized running and frozen only for the hand-over. */
ParameterizedTestParameters(crash_inject, migrate_v1_freezer)
{
	static struct kill_at k[] = {
		{"entry", 4},
		{"restore", 2},
		{"unhold", 2},
	};

	return cr_make_param_array(struct kill_at, k, sizeof(k) / sizeof(k[0]));
}

ParameterizedTest(struct kill_at *k, crash_inject, migrate_v1_freezer, .fini = teardown_mig,
		  .timeout = 90)
{
	struct haul_cg_mounts mnt;

	if (haul_cg_probe(&mnt) || !mnt.v1_freezer[0])
		cr_skip_test("no v1 freezer hierarchy on this host");
	setenv("HAUL_FREEZER", "v1", 1);
	mig_kill_once(k, 0);
	unsetenv("HAUL_FREEZER");
}

/*
 * Without --leave-running the dumped process stays seized, on the registers
 * of its last injected call, while its image is written: a haul killed with
 * the image staged but not committed (HAUL_FAULT=ckpt-kill:staged) must
 * leave it running as before, and no image.
 */
Test(crash_inject, checkpoint_killed_with_the_image_staged_leaves_it_running, .fini = teardown_wl,
     .timeout = 60)
{
	char bin[512], pid[16], img[96];
	char *argv[] = {bin, "checkpoint", pid, "--images", img, NULL};

	wl_start();
	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	snprintf(pid, sizeof(pid), "%d", W.pid);
	snprintf(img, sizeof(img), "%s/img", W.dir);
	cr_assert_eq(haul_under_fault("ckpt-kill:staged", argv), 128 + SIGKILL,
		     "haul did not reach ckpt-kill:staged");
	assert_wl_intact("ckpt-kill:staged");
}

/* ---- one holder at a time: another haul, or a dead one's survivor ------------- */

/* Take (F_WRLCK) or drop (F_UNLCK) what injlog.c locks for @pid in @run/inject.lock: an fd. */
static int inject_lock(const char *run, pid_t pid, short type, int fd)
{
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = pid, .l_len = 1};
	char path[160];

	if (fd < 0) {
		snprintf(path, sizeof(path), "%s/inject.lock", run);
		fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
		cr_assert_geq(fd, 0, "cannot open %s", path);
	}
	cr_assert_eq(fcntl(fd, F_OFD_SETLK, &fl), 0, "cannot lock byte %d of inject.lock",
		     (int)pid);
	return fd;
}

/* The workload, its lock held here; `haul track` started on it: held.h, its log held.log. */
struct held {
	char run[96], log[128];
	int fd;
	pid_t h;
};

static void track_while_held(struct held *x)
{
	char bin[512], pid[16];
	char *argv[] = {bin, "track", pid, "--rounds", "1", NULL};

	wl_start();
	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	snprintf(pid, sizeof(pid), "%d", W.pid);
	snprintf(x->run, sizeof(x->run), "%s/run", W.dir);
	snprintf(x->log, sizeof(x->log), "%s/haul.log", W.dir);
	cr_assert_eq(th_sh("mkdir -p %s", x->run), 0);
	setenv("HAUL_RUN_DIR", x->run, 1);
	x->fd = inject_lock(x->run, W.pid, F_WRLCK, -1);
	x->h = th_spawn(NULL, argv, x->log);
	unsetenv("HAUL_RUN_DIR");
	cr_assert_gt(x->h, 0);
}

/*
 * A survivor that owes a SIGCONT sends it after haul's death, maybe while a
 * second haul holds the process (tests/extra/inj_random_kill.sh caught that
 * once: the second haul's kill then let the process run on an all-blocked
 * mask).  While the lock of the process is held elsewhere, haul waits: the
 * process is neither stopped nor traced meanwhile, and haul goes on once it
 * is let go.
 */
Test(crash_inject, track_waits_while_another_holds_the_process, .fini = teardown_wl, .timeout = 60)
{
	struct held x;
	char st[64], tr[32];

	track_while_held(&x);
	for (int i = 0; i < 30; i++) {
		usleep(10000);
		cr_assert(status_field(W.pid, "State", st, sizeof(st)) &&
				  status_field(W.pid, "TracerPid", tr, sizeof(tr)),
			  "the workload is gone");
		cr_assert(st[0] != 'T' && st[0] != 't' && !strcmp(tr, "0"),
			  "pid %d was stopped or traced (%s, tracer %s) while another held it",
			  W.pid, st, tr);
	}
	cr_assert_eq(waitpid(x.h, NULL, WNOHANG), 0, "haul did not wait for the holder");
	inject_lock(x.run, W.pid, F_UNLCK, x.fd);
	close(x.fd);
	cr_assert_eq(th_wait_exit(x.h, 30000), 0, "haul track failed once let go: %s",
		     th_slurp(x.log));
	assert_wl_intact("after a wait for the holder");
}

/*
 * A holder that never lets go: after HAUL_INJ_LOCK_TIMEOUT_MS the uffd
 * tracker gives up on it by pid, untouched, and `haul track` goes on with a
 * tracker that injects nothing (hashing).
 */
Test(crash_inject, track_gives_up_injecting_into_a_process_held_too_long, .fini = teardown_wl,
     .timeout = 60)
{
	struct held x;

	track_while_held(&x);
	th_wait_exit(x.h, 30000);
	close(x.fd);
	cr_assert_eq(th_sh("grep -q 'pid %d is held by another haul' %s", W.pid, x.log), 0,
		     "no refusal by pid: %s", th_slurp(x.log));
	cr_assert_neq(th_sh("grep -q 'tracking pid %d with uffd' %s", W.pid, x.log), 0,
		      "the uffd tracker attached anyway: %s", th_slurp(x.log));
	assert_wl_intact("a refusal");
}

/* The race itself: a haul killed while it holds the process, another started at once and killed mid-call. */
Test(crash_inject, a_haul_right_after_a_killed_one_is_not_undone_by_its_survivor,
     .fini = teardown_wl, .timeout = 60)
{
	char bin[512], pid[16];
	char *argv[] = {bin, "track", pid, "--rounds", "1", NULL};

	wl_start();
	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	snprintf(pid, sizeof(pid), "%d", W.pid);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(haul_under_fault("kill:inject:hold", argv), 128 + SIGKILL);
		cr_assert_eq(haul_under_fault("kill:inject:mask", argv), 128 + SIGKILL);
		assert_wl_intact("two kills in a row");
	}
}
