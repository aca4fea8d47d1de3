/*
 * rst_attrs.c - a process that sets the attributes named on its command
 * line, says so, and after SIGUSR1 (sent once it was checkpointed and
 * restored) checks that each one still holds.  Mirrors CRIU's zdtm
 * oom_score_adj, loginuid, child_subreaper, membarrier, thp_disable,
 * cgroup01/03/04 and cgroup_threads in one small program.
 *
 *   rst_attrs READY_FD ATTR...
 * ATTR: oom (oom_score_adj 400), loginuid (3), subreaper, thp, membarrier,
 *   coredump (0x3f), nnp, cgroup=DIR@LINE (the process into the cgroup at
 *   DIR, which /proc/self/cgroup shows as "...:LINE": "cpu:/a" for v1, ":/a"
 *   for cgroup2), cgthread=DIR@LINE (the second thread, v1 only); refused ones: timens (a pending time namespace for
 *   batch (SCHED_BATCH), rr (SCHED_RR 3 with SCHED_RESET_ON_FORK, as zdtm
 *   sched_policy00), threadfifo (the second thread SCHED_FIFO 7), ionice
 *   (I/O class idle, the second thread best-effort 2), threadnice (the
 *   second thread at nice 5); refused ones: timens (a pending time
 *   namespace for children), tsc (PR_SET_TSC SIGSEGV), mdwe, deadline
 *   (SCHED_DEADLINE), securebits (KEEP_CAPS).
 * Writes "ready" to READY_FD (then closes it: a pipe shared with the test
 * would be refused), and after SIGUSR1 one line per ATTR, "ok ATTR" or
 * "bad ATTR: ...", then "done"; exits 0 when every ATTR held.
 */
#include <errno.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#define MB_QUERY	     0
#define MB_GET_REGISTRATIONS (1 << 9)
#define PR_SET_MDWE_	     65
#define SECBIT_KEEP_CAPS_    (1 << 4)
#define PR_SET_IO_FLUSHER_   57

static volatile sig_atomic_t go;
static char thread_cg[512];	     /* cgthread=DIR */
static volatile int thread_nice = 0; /* threadnice */
static volatile int thread_timens;   /* threadtimens */
static volatile int thread_done;
static char thread_got[1024];
static volatile int thread_fifo; /* threadfifo */
static volatile int thread_io;	 /* ionice: the second thread best-effort 2 */
static char thread_io_got[256];
static char thread_nice_got[64]; /* threadnice: the thread's nice after the restore */
static char thread_sched[256];	 /* threadfifo: what the thread found after the restore */
static double mono_ready;	 /* CLOCK_MONOTONIC when it said ready */

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static int write_file(const char *path, const char *v)
{
	int fd = open(path, O_WRONLY), ret = 0;

	if (fd < 0)
		return -errno;
	if (write(fd, v, strlen(v)) < 0)
		ret = -errno;
	close(fd);
	return ret;
}

static void read_file(const char *path, char *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, len - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
}

/*
 * Whether @cgfile (/proc/.../cgroup) has a line ending in ":@line": "cpu:/a/b"
 * (v1) or ":/a" (cgroup2, whose line is "0::/a").  The file's text in @got.
 */
static int in_cgroup(const char *cgfile, const char *line, char *got, size_t len)
{
	char text[4096], want[600];

	snprintf(want, sizeof(want), ":%s\n", line);
	read_file(cgfile, text, sizeof(text));
	snprintf(got, len, "%.900s", text);
	for (char *p = got; *p; p++)
		if (*p == '\n')
			*p = ' ';
	return strstr(text, want) != NULL;
}

static void *thread_main(void *arg)
{
	(void)arg;
	if (thread_cg[0]) {
		char f[600];

		/* v1 only: cgroup2 would need a threaded subtree */
		snprintf(f, sizeof(f), "%.*s/tasks", (int)strcspn(thread_cg, "@"), thread_cg);
		if (write_file(f, "0"))
			snprintf(thread_got, sizeof(thread_got), "cannot write %s", f);
	}
	if (thread_nice)
		setpriority(PRIO_PROCESS, syscall(SYS_gettid), thread_nice);
	if (thread_io && syscall(SYS_ioprio_set, 1, 0, (2 << 13) | 2))
		snprintf(thread_got, sizeof(thread_got), "ioprio: %s", strerror(errno));
	if (thread_fifo) {
		struct sched_param p = {7};

		if (sched_setscheduler(0, SCHED_FIFO, &p))
			snprintf(thread_got, sizeof(thread_got), "SCHED_FIFO: %s", strerror(errno));
	}
	if (thread_timens && unshare(CLONE_NEWTIME))
		snprintf(thread_got, sizeof(thread_got), "unshare: %s", strerror(errno));
	thread_done = 1;
	while (!go)
		usleep(1000);
	if (thread_nice) {
		errno = 0;
		snprintf(thread_nice_got, sizeof(thread_nice_got), "%d",
			 getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid)));
	}
	if (thread_io) {
		long io = syscall(SYS_ioprio_get, 1, 0);

		snprintf(thread_io_got, sizeof(thread_io_got), "%s: %#lx",
			 io == ((2 << 13) | 2) ? "ok" : "bad", io);
	}
	if (thread_fifo) {
		struct sched_param p = {0};
		int pol = sched_getscheduler(0);

		sched_getparam(0, &p);
		snprintf(thread_sched, sizeof(thread_sched), "%s: policy %d priority %d",
			 pol == SCHED_FIFO && p.sched_priority == 7 ? "ok" : "bad", pol,
			 p.sched_priority);
	}
	if (thread_cg[0]) {
		char got[1024];

		if (in_cgroup("/proc/thread-self/cgroup", strchr(thread_cg, '@') + 1, got,
			      sizeof(got)))
			snprintf(thread_got, sizeof(thread_got), "ok");
		else
			snprintf(thread_got, sizeof(thread_got), "%s", got);
	}
	return NULL;
}

static int membarrier_registered;

/* CAP_SYS_RESOURCE out of the effective and permitted sets (as in a container); 1 when in effect. */
static int capres(int drop)
{
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -errno;
	if (!drop)
		return !!(d[0].effective & (1u << CAP_SYS_RESOURCE));
	d[0].effective &= ~(1u << CAP_SYS_RESOURCE);
	d[0].permitted &= ~(1u << CAP_SYS_RESOURCE);
	return syscall(SYS_capset, &h, d) ? -errno : 0;
}

static int set_attr(const char *a)
{
	if (!strcmp(a, "oom"))
		return write_file("/proc/self/oom_score_adj", "400");
	if (!strcmp(a, "loginuid"))
		return write_file("/proc/self/loginuid", "3");
	if (!strcmp(a, "subreaper"))
		return prctl(PR_SET_CHILD_SUBREAPER, 1) ? -errno : 0;
	if (!strcmp(a, "thp"))
		return prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) ? -errno : 0;
	if (!strcmp(a, "membarrier")) {
		long q = syscall(SYS_membarrier, MB_QUERY, 0, 0);

		if (q < 0)
			return -errno;
		/* REGISTER_GLOBAL_EXPEDITED, _PRIVATE_EXPEDITED, _SYNC_CORE, _RSEQ */
		for (int b = 2; b <= 8; b += 2)
			if ((q & (1 << b)) && !syscall(SYS_membarrier, 1 << b, 0, 0))
				membarrier_registered |= 1 << b;
		return membarrier_registered ? 0 : -ENOSYS;
	}
	if (!strcmp(a, "coredump"))
		return write_file("/proc/self/coredump_filter", "0x3f");
	if (!strcmp(a, "nnp"))
		return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ? -errno : 0;
	if (!strncmp(a, "cgroup=", 7)) {
		char f[600];

		snprintf(f, sizeof(f), "%.*s/cgroup.procs", (int)strcspn(a + 7, "@"), a + 7);
		return strchr(a, '@') ? write_file(f, "0") : -EINVAL;
	}
	if (!strncmp(a, "cgthread=", 9)) {
		snprintf(thread_cg, sizeof(thread_cg), "%s", a + 9);
		return strchr(a, '@') ? 0 : -EINVAL;
	}
	if (!strcmp(a, "timens")) {
		if (unshare(CLONE_NEWTIME))
			return -errno;
		return write_file("/proc/self/timens_offsets",
				  "monotonic 1000 0\nboottime 500 0\n");
	}
	if (!strcmp(a, "threadtimens")) {
		thread_timens = 1;
		return 0;
	}
	if (!strcmp(a, "tsc"))
		return prctl(PR_SET_TSC, PR_TSC_SIGSEGV) ? -errno : 0;
	if (!strcmp(a, "mdwe"))
		return prctl(PR_SET_MDWE_, 1, 0, 0, 0) ? -errno : 0;
	if (!strcmp(a, "batch")) {
		struct sched_param p = {0};

		return sched_setscheduler(0, SCHED_BATCH, &p) ? -errno : 0;
	}
	if (!strcmp(a, "rr")) { /* zdtm sched_policy00; its threads start as SCHED_OTHER */
		struct sched_param p = {3};

		return sched_setscheduler(0, SCHED_RR | SCHED_RESET_ON_FORK, &p) ? -errno : 0;
	}
	if (!strcmp(a, "threadfifo")) {
		thread_fifo = 1;
		return 0;
	}
	if (!strcmp(a, "ionice")) { /* IOPRIO_WHO_PROCESS: this thread, class idle */
		thread_io = 1;
		return syscall(SYS_ioprio_set, 1, 0, 3 << 13) ? -errno : 0;
	}
	if (!strcmp(a, "deadline")) {
		/* struct sched_attr: size, policy, flags (RESET_ON_FORK: threads may start), nice,
		 * priority, runtime, deadline, period */
		struct {
			uint32_t size, policy;
			uint64_t flags;
			int32_t nice;
			uint32_t priority;
			uint64_t runtime, deadline, period;
		} d = {sizeof(d), 6, 1, 0, 0, 1000000, 10000000, 10000000};

		return syscall(SYS_sched_setattr, 0, &d, 0) ? -errno : 0;
	}
	if (!strcmp(a, "threadnice")) {
		thread_nice = 5;
		return 0;
	}
	if (!strcmp(a, "securebits"))
		return prctl(PR_SET_SECUREBITS, SECBIT_KEEP_CAPS_) ? -errno : 0;
	if (!strcmp(a, "nocapres"))
		return capres(1);
	if (!strcmp(a, "ioflusher"))
		return prctl(PR_SET_IO_FLUSHER_, 1, 0, 0, 0) ? -errno : capres(1);
	return -EINVAL;
}

static double now_s(clockid_t c)
{
	struct timespec ts;

	/* The system call, not the vDSO: with PR_TSC_SIGSEGV (tsc) rdtsc would fault. */
	syscall(SYS_clock_gettime, c, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A child forked now sees CLOCK_MONOTONIC +1000 s and CLOCK_BOOTTIME +500 s. */
static int check_timens(char *why, size_t len)
{
	char a[64] = "", b[64] = "";
	double seen[2], mono, boot;
	int p[2], status;
	pid_t c;

	if (readlink("/proc/self/ns/time", a, sizeof(a) - 1) < 0 ||
	    readlink("/proc/self/ns/time_for_children", b, sizeof(b) - 1) < 0 || !strcmp(a, b)) {
		snprintf(why, len, "no time namespace pending: %s %s", a, b);
		return 0;
	}
	mono = now_s(CLOCK_MONOTONIC);
	/* Its own clock ran on from the dump: the pending offsets are not its own. */
	if (mono < mono_ready || mono > mono_ready + 60) {
		snprintf(why, len, "its own monotonic clock moved by %+.3f s across the restore",
			 mono - mono_ready);
		return 0;
	}
	if (pipe(p))
		return 0;
	boot = now_s(CLOCK_BOOTTIME);
	c = fork();
	if (c == 0) {
		seen[0] = now_s(CLOCK_MONOTONIC);
		seen[1] = now_s(CLOCK_BOOTTIME);
		_exit(write(p[1], seen, sizeof(seen)) == sizeof(seen) ? 0 : 1);
	}
	close(p[1]);
	if (c < 0 || read(p[0], seen, sizeof(seen)) != sizeof(seen)) {
		snprintf(why, len, "the child did not report its clocks");
		return 0;
	}
	close(p[0]);
	waitpid(c, &status, 0);
	snprintf(why, len, "a child sees monotonic %+.3f s, boottime %+.3f s", seen[0] - mono,
		 seen[1] - boot);
	return seen[0] - mono > 999 && seen[0] - mono < 1001 && seen[1] - boot > 499 &&
	       seen[1] - boot < 501;
}

/* Whether @a still holds; a reason in @why when not. */
static int check_attr(const char *a, char *why, size_t len)
{
	char text[4096];
	int v = 0;

	why[0] = '\0';
	if (!strcmp(a, "oom")) {
		read_file("/proc/self/oom_score_adj", text, sizeof(text));
		snprintf(why, len, "oom_score_adj %.64s", text);
		return atoi(text) == 400;
	}
	if (!strcmp(a, "loginuid")) {
		read_file("/proc/self/loginuid", text, sizeof(text));
		snprintf(why, len, "loginuid %.64s", text);
		return atoi(text) == 3;
	}
	if (!strcmp(a, "subreaper")) {
		prctl(PR_GET_CHILD_SUBREAPER, &v);
		snprintf(why, len, "child subreaper %d", v);
		return v == 1;
	}
	if (!strcmp(a, "thp")) {
		v = prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0);
		snprintf(why, len, "PR_GET_THP_DISABLE %d", v);
		return v == 1;
	}
	if (!strcmp(a, "membarrier")) {
		long r = syscall(SYS_membarrier, MB_GET_REGISTRATIONS, 0, 0);

		snprintf(why, len, "registrations %#lx, wanted %#x", r, membarrier_registered);
		if (r != membarrier_registered)
			return 0;
		/* The private expedited barrier needs its registration (EPERM without). */
		for (int b = 2; b <= 8; b += 2)
			if ((membarrier_registered & (1 << b)) &&
			    syscall(SYS_membarrier, 1 << (b - 1), 0, 0) < 0) {
				snprintf(why, len, "membarrier %#x: %s", 1 << (b - 1),
					 strerror(errno));
				return 0;
			}
		return 1;
	}
	if (!strcmp(a, "coredump")) {
		read_file("/proc/self/coredump_filter", text, sizeof(text));
		snprintf(why, len, "coredump_filter %.64s", text);
		return strtoul(text, NULL, 16) == 0x3f;
	}
	if (!strcmp(a, "nnp")) {
		v = prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0);
		snprintf(why, len, "no_new_privs %d", v);
		return v == 1;
	}
	if (!strcmp(a, "timens"))
		return check_timens(why, len);
	if (!strcmp(a, "batch") || !strcmp(a, "rr")) {
		int want = a[0] == 'b' ? SCHED_BATCH : SCHED_RR | SCHED_RESET_ON_FORK;
		struct sched_param p = {0};

		v = sched_getscheduler(0);
		sched_getparam(0, &p);
		snprintf(why, len, "policy %#x priority %d", v, p.sched_priority);
		return v == want && p.sched_priority == (a[0] == 'b' ? 0 : 3);
	}
	if (!strcmp(a, "threadfifo")) {
		snprintf(why, len, "the second thread: %s", thread_sched);
		return !strncmp(thread_sched, "ok", 2);
	}
	if (!strcmp(a, "threadnice")) {
		snprintf(why, len, "the second thread's nice %s", thread_nice_got);
		return atoi(thread_nice_got) == 5;
	}
	if (!strcmp(a, "ionice")) {
		long io = syscall(SYS_ioprio_get, 1, 0);

		snprintf(why, len, "ioprio %#lx, the second thread's %s", io, thread_io_got);
		return io == 3 << 13 && !strncmp(thread_io_got, "ok", 2);
	}
	if (!strcmp(a, "nocapres")) {
		v = capres(0);
		snprintf(why, len, "CAP_SYS_RESOURCE in effect: %d", v);
		return v == 0;
	}
	if (!strncmp(a, "cgroup=", 7))
		return in_cgroup("/proc/self/cgroup", strchr(a, '@') + 1, why, len);
	if (!strncmp(a, "cgthread=", 9)) {
		snprintf(why, len, "%s", thread_got);
		return !strcmp(thread_got, "ok");
	}
	snprintf(why, len, "only checked before the checkpoint");
	return 1;
}

int main(int argc, char **argv)
{
	int ready = argc > 1 ? atoi(argv[1]) : -1, bad = 0;
	struct sigaction sa;
	pthread_t th;
	sigset_t usr1, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, &old);
	for (int i = 2; i < argc; i++) {
		int ret = set_attr(argv[i]);

		if (ret) {
			printf("cannot set %s: %s\n", argv[i], strerror(-ret));
			fflush(stdout);
			return 2;
		}
	}
	if (pthread_create(&th, NULL, thread_main, NULL))
		return 2;
	while (!thread_done)
		usleep(1000);
	if (thread_got[0]) {
		printf("cannot set the thread's attribute: %s\n", thread_got);
		return 2;
	}
	mono_ready = now_s(CLOCK_MONOTONIC);
	if (write(ready, "ready\n", 6) != 6)
		return 2;
	close(ready);
	while (!go)
		sigsuspend(&old);
	pthread_join(th, NULL);
	for (int i = 2; i < argc; i++) {
		char why[1024];
		int ok = check_attr(argv[i], why, sizeof(why));

		printf("%s %s: %s\n", ok ? "ok" : "bad", argv[i], why);
		bad |= !ok;
	}
	printf("done\n");
	fflush(stdout);
	return bad;
}
