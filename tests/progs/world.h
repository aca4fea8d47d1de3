/*
 * world.h - the per-process resources that are not fds, set up and checked
 * by tests/progs/rst_world and mig_workload --world (DESIGN.md "Supported
 * and not supported").
 *
 *  timers   three POSIX timers made, the middle one deleted: ids a and c
 *           remain with a hole between.  a: CLOCK_MONOTONIC, every 100 ms,
 *           SIGRTMIN+1 with a sigev_value; c: CLOCK_BOOTTIME, one hour,
 *           SIGEV_NONE.  Check: a and c answer timer_gettime by their old
 *           ids and b does not, a's interval is 100 ms, a fires 3-30 times
 *           a second with its id and value in siginfo, its overrun stays
 *           small, c has 3000-3600 s left.  d: CLOCK_MONOTONIC, every 100 ms,
 *           SIGRTMIN+2 to a helper thread (SIGEV_THREAD_ID): it fires there,
 *           3-30 times a second.
 *  seccomp  no_new_privs and a filter failing getpgid with ENOTTY and
 *           userfaultfd with EACCES (haul's tracker injects it regardless),
 *           in every thread (TSYNC: the timers' thread too), before a helper
 *           thread starts.  Check: both fail so, getpgid in
 *           the helper thread too, getpid works, status says Seccomp 2.
 *  inotify  an inotify fd watching directory DIR/watched (IN_CREATE, wd 1) and
 *           the file DIR/watched/f (IN_MODIFY, wd 2).  Check: a file made in
 *           the directory shows up as IN_CREATE on wd 1 with its name.
 *  fanotify a fanotify group (notification class) marking DIR/watched/f for
 *           FAN_OPEN (inotify sets the file up).  Check: opening the file
 *           shows up as FAN_OPEN from this process with an fd.
 *  pidfd    a pidfd on the process itself.  Check: pidfd_send_signal with
 *           signal 0 works through it, and its fdinfo names getpid().
 *
 * Header-only (static functions): each program is one .c file.
 */
#ifndef HAUL_TESTS_WORLD_H
#define HAUL_TESTS_WORLD_H

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define WORLD_SIGVAL 0x5eed

static int world_ids[4];
static volatile sig_atomic_t world_fires, world_bad_info, world_thr_fires, world_thr_wrong;
static volatile pid_t world_timer_tid;
static volatile int world_req, world_thr_errno = -1;

static void world_nap(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static void world_on_timer(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (si->si_timerid != world_ids[0] || si->si_value.sival_int != WORLD_SIGVAL)
		world_bad_info = 1;
	world_fires++;
}

static void world_on_thr_timer(int sig)
{
	(void)sig;
	if ((pid_t)syscall(SYS_gettid) != world_timer_tid)
		world_thr_wrong = 1;
	world_thr_fires++;
}

static int world_timer_tid_of(clockid_t clock, int notify, int signo, pid_t tid, int *id)
{
	struct sigevent sev;

	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = signo;
	sev.sigev_value.sival_int = WORLD_SIGVAL;
	sev._sigev_un._tid = tid;
	return (int)syscall(SYS_timer_create, clock, &sev, id);
}

static int world_timer(clockid_t clock, int notify, int signo, int *id)
{
	return world_timer_tid_of(clock, notify, signo, 0, id);
}

static void *world_timer_thread(void *arg)
{
	sigset_t m;

	(void)arg;
	sigemptyset(&m);
	sigaddset(&m, SIGRTMIN + 2);
	pthread_sigmask(SIG_UNBLOCK, &m, NULL);
	world_timer_tid = (pid_t)syscall(SYS_gettid);
	for (;;)
		world_nap(1000);
	return NULL;
}

static int world_timers_setup(void)
{
	struct sigaction sa = {.sa_sigaction = world_on_timer, .sa_flags = SA_SIGINFO | SA_RESTART};
	struct itimerspec a = {{0, 100000000}, {0, 100000000}}, c = {{0, 0}, {3600, 0}};

	struct sigaction st = {.sa_handler = world_on_thr_timer, .sa_flags = SA_RESTART};
	struct itimerspec d = {{0, 100000000}, {0, 100000000}};
	sigset_t m;
	pthread_t t;

	/* SIGRTMIN+2 only in the helper thread, which the timer names */
	sigemptyset(&m);
	sigaddset(&m, SIGRTMIN + 2);
	if (sigaction(SIGRTMIN + 2, &st, NULL) || pthread_sigmask(SIG_BLOCK, &m, NULL) ||
	    pthread_create(&t, NULL, world_timer_thread, NULL))
		return -1;
	for (int i = 0; i < 500 && !world_timer_tid; i++)
		world_nap(10);
	if (!world_timer_tid ||
	    world_timer_tid_of(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 2, world_timer_tid,
			       &world_ids[3]) ||
	    syscall(SYS_timer_settime, world_ids[3], 0, &d, NULL))
		return -1;
	if (sigaction(SIGRTMIN + 1, &sa, NULL) ||
	    world_timer(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 1, &world_ids[0]) ||
	    world_timer(CLOCK_MONOTONIC, SIGEV_NONE, 0, &world_ids[1]) ||
	    world_timer(CLOCK_BOOTTIME, SIGEV_NONE, 0, &world_ids[2]) ||
	    syscall(SYS_timer_delete, world_ids[1]) ||
	    syscall(SYS_timer_settime, world_ids[2], 0, &c, NULL) ||
	    syscall(SYS_timer_settime, world_ids[0], 0, &a, NULL))
		return -1;
	return 0;
}

static int world_timers_check(char *why, size_t wl)
{
	struct itimerspec a, c;
	int f0, f1, over;

	if (syscall(SYS_timer_gettime, world_ids[0], &a) ||
	    syscall(SYS_timer_gettime, world_ids[2], &c)) {
		snprintf(why, wl, "timers %d and %d: %s", world_ids[0], world_ids[2],
			 strerror(errno));
		return -1;
	}
	if (syscall(SYS_timer_gettime, world_ids[1], &c) == 0 || errno != EINVAL) {
		snprintf(why, wl, "the deleted timer %d exists", world_ids[1]);
		return -1;
	}
	syscall(SYS_timer_gettime, world_ids[2], &c);
	if (a.it_interval.tv_sec || a.it_interval.tv_nsec != 100000000 ||
	    c.it_value.tv_sec < 3000 || c.it_value.tv_sec > 3600 || c.it_interval.tv_sec ||
	    c.it_interval.tv_nsec) {
		snprintf(why, wl, "timer a interval %ld.%09ld, timer c left %ld s",
			 a.it_interval.tv_sec, a.it_interval.tv_nsec, c.it_value.tv_sec);
		return -1;
	}
	int t0 = world_thr_fires, t1;

	f0 = world_fires;
	world_nap(1000);
	f1 = world_fires;
	t1 = world_thr_fires;
	if (t1 - t0 < 3 || t1 - t0 > 30 || world_thr_wrong) {
		snprintf(why, wl, "timer d fired %d times in 1 s%s", t1 - t0,
			 world_thr_wrong ? ", not in its thread" : "");
		return -1;
	}
	over = (int)syscall(SYS_timer_getoverrun, world_ids[0]);
	if (f1 - f0 < 3 || f1 - f0 > 30 || world_bad_info || over < 0 || over > 50) {
		snprintf(why, wl, "timer a fired %d times in 1 s (overrun %d, siginfo %s)", f1 - f0,
			 over, world_bad_info ? "wrong" : "right");
		return -1;
	}
	return 0;
}

static void *world_thread(void *arg)
{
	(void)arg;
	for (;;) {
		if (world_req) {
			world_thr_errno = syscall(SYS_getpgid, 0) < 0 ? errno : 0;
			world_req = 0;
		}
		world_nap(10);
	}
	return NULL;
}

/* The filter below with no_new_privs set first (@nnp), or installed as root without it. */
static int world_seccomp_install(bool nnp)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpgid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOTTY),
		/* as container profiles do: haul's tracker injects it all the same */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_userfaultfd, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	pthread_t t;

	if ((nnp && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) ||
	    syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog))
		return -1;
	return pthread_create(&t, NULL, world_thread, NULL) ? -1 : 0;
}

static int world_seccomp_setup(void)
{
	return world_seccomp_install(true);
}

static int world_seccomp_check(char *why, size_t wl)
{
	char buf[4096];
	FILE *f = fopen("/proc/self/status", "r");
	int mode = -1;

	while (f && fgets(buf, sizeof(buf), f))
		if (!strncmp(buf, "Seccomp:", 8))
			mode = atoi(buf + 8);
	if (f)
		fclose(f);
	errno = 0;
	if (syscall(SYS_userfaultfd, O_CLOEXEC) >= 0 || errno != EACCES) {
		snprintf(why, wl, "userfaultfd: %s, want the filter's EACCES", strerror(errno));
		return -1;
	}
	errno = 0;
	if (syscall(SYS_getpgid, 0) >= 0 || errno != ENOTTY || getpid() <= 0 || mode != 2) {
		snprintf(why, wl, "getpgid: %s, seccomp mode %d", strerror(errno), mode);
		return -1;
	}
	world_thr_errno = -1;
	world_req = 1;
	for (int i = 0; i < 500 && world_req; i++)
		world_nap(10);
	if (world_thr_errno != ENOTTY) {
		snprintf(why, wl, "getpgid in the helper thread: %s",
			 world_thr_errno < 0 ? "no answer" : strerror(world_thr_errno));
		return -1;
	}
	return 0;
}

static int world_ino = -1;
static char world_ino_dir[256];
static unsigned world_ino_n;

static int world_inotify_setup(const char *dir)
{
	char f[300];
	int fd;

	snprintf(world_ino_dir, sizeof(world_ino_dir), "%s/watched", dir);
	snprintf(f, sizeof(f), "%s/f", world_ino_dir);
	if (mkdir(world_ino_dir, 0755) && errno != EEXIST)
		return -1;
	fd = open(f, O_WRONLY | O_CREAT, 0644);
	if (fd < 0 || close(fd))
		return -1;
	world_ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (world_ino < 0 || inotify_add_watch(world_ino, world_ino_dir, IN_CREATE) != 1 ||
	    inotify_add_watch(world_ino, f, IN_MODIFY) != 2)
		return -1;
	return 0;
}

static int world_inotify_check(char *why, size_t wl)
{
	union {
		struct inotify_event e;
		char b[4096];
	} u;
	char name[32], f[300];
	ssize_t n = -1;
	int fd;

	snprintf(name, sizeof(name), "new%u", world_ino_n++);
	snprintf(f, sizeof(f), "%s/%s", world_ino_dir, name);
	fd = open(f, O_WRONLY | O_CREAT, 0644);
	if (fd < 0) {
		snprintf(why, wl, "cannot create %.160s: %s", f, strerror(errno));
		return -1;
	}
	close(fd);
	unlink(f);
	for (int i = 0; i < 200 && n < 0; i++) {
		n = read(world_ino, &u, sizeof(u));
		if (n < 0)
			world_nap(10);
	}
	if (n < (ssize_t)sizeof(u.e) || u.e.wd != 1 || !(u.e.mask & IN_CREATE) ||
	    strcmp(u.e.name, name)) {
		snprintf(why, wl, "inotify: read %zd, wd %d mask %#x name '%.32s', want wd 1 %s", n,
			 n > 0 ? u.e.wd : -1, n > 0 ? u.e.mask : 0,
			 n > 0 && u.e.len ? u.e.name : "", name);
		return -1;
	}
	/* drop the rest (the unlink's IN_DELETE is not watched; nothing else should be there) */
	while (read(world_ino, &u, sizeof(u)) > 0)
		;
	return 0;
}

static int world_fan = -1;

static int world_fanotify_setup(void)
{
	char f[300];

	snprintf(f, sizeof(f), "%s/f", world_ino_dir);
	world_fan = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, O_RDONLY);
	if (world_fan < 0 || fanotify_mark(world_fan, FAN_MARK_ADD, FAN_OPEN, AT_FDCWD, f))
		return -1;
	return 0;
}

static int world_fanotify_check(char *why, size_t wl)
{
	union {
		struct fanotify_event_metadata m;
		char b[4096];
	} u;
	char f[300];
	ssize_t n = -1;
	int fd;

	snprintf(f, sizeof(f), "%s/f", world_ino_dir);
	fd = open(f, O_RDONLY);
	if (fd < 0) {
		snprintf(why, wl, "cannot open %.160s: %s", f, strerror(errno));
		return -1;
	}
	close(fd);
	for (int i = 0; i < 200 && n < 0; i++) {
		n = read(world_fan, &u, sizeof(u));
		if (n < 0)
			world_nap(10);
	}
	if (n < (ssize_t)sizeof(u.m) || !(u.m.mask & FAN_OPEN) || u.m.pid != getpid() ||
	    u.m.fd < 0) {
		snprintf(why, wl, "fanotify: read %zd, mask %#llx pid %d fd %d", n,
			 n > 0 ? (unsigned long long)u.m.mask : 0ULL, n > 0 ? (int)u.m.pid : -1,
			 n > 0 ? u.m.fd : -1);
		return -1;
	}
	for (ssize_t off = 0; off + (ssize_t)sizeof(u.m) <= n;
	     off += ((struct fanotify_event_metadata *)(u.b + off))->event_len)
		close(((struct fanotify_event_metadata *)(u.b + off))->fd);
	return 0;
}

static int world_pidfd = -1;

static int world_pidfd_setup(void)
{
	world_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	return world_pidfd < 0 ? -1 : 0;
}

static int world_pidfd_check(char *why, size_t wl)
{
	char path[64], buf[256];
	FILE *f;
	int pid = -1;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", world_pidfd);
	f = fopen(path, "r");
	while (f && fgets(buf, sizeof(buf), f))
		if (!strncmp(buf, "Pid:", 4))
			pid = atoi(buf + 4);
	if (f)
		fclose(f);
	if (syscall(SYS_pidfd_send_signal, world_pidfd, 0, NULL, 0) || pid != getpid()) {
		snprintf(why, wl, "pidfd %d: signal 0: %s, names pid %d (this is %d)", world_pidfd,
			 strerror(errno), pid, (int)getpid());
		return -1;
	}
	return 0;
}

#endif
