/*
 * rst_world - a program with the per-process resources of world.h, for
 * tests/integration/rst_world.c.
 *
 * rst_world MODE...: sets up each MODE, prints "ready", then waits for SIGUSR1: it checks each MODE, prints
 * "world ok" or "world FAIL MODE: why", and exits 0 or 1.  MODEs:
 *   timers, seccomp, pidfd carried (world.h says what is checked)
 *   inotify:DIR            carried, watching under DIR
 *   fanotify:DIR           carried, marking a file under DIR
 *   seccomp-uid            carried: seccomp's filter installed as root without
 *                          no_new_privs, then the ids dropped to nobody's
 *   strict                 carried: a helper thread in seccomp strict mode,
 *                          blocked in read() on a pipe; it echoes a byte
 *                          back, and its status says Seccomp 1
 *   timer-cpuclock         a timer on the CPU clock of a given process
 *   seccomp-notif          a filter returning SECCOMP_RET_USER_NOTIF whose
 *                          listener fd was closed
 *   pidfd-parent           a pidfd on its parent (a process that does not move)
 *   inotify-queued         an inotify watch on /tmp with an event not read yet
 *   inotify-hole           inotify watches 1 (removed) and 2 on /tmp and /
 *   fanotify-content       a fanotify group of the content class
 *   (the last two are refused; only their setup is done.)
 */
#include <grp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "world.h"

static volatile sig_atomic_t go;

static void on_usr1(int sig)
{
	(void)sig;
	go = 1;
}

static int strict_in[2], strict_out[2];
static pid_t strict_tid;

static void *strict_thread(void *arg)
{
	char c;

	(void)arg;
	strict_tid = (pid_t)syscall(SYS_gettid);
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0))
		return NULL;
	/* only read, write, exit and sigreturn from here */
	while (read(strict_in[0], &c, 1) == 1)
		if (write(strict_out[1], &c, 1) != 1)
			break;
	syscall(SYS_exit, 0);
	return NULL;
}

static int setup_strict(void)
{
	pthread_t t;

	if (pipe(strict_in) || pipe(strict_out) || pthread_create(&t, NULL, strict_thread, NULL))
		return -1;
	for (int i = 0; i < 500 && !strict_tid; i++)
		world_nap(10);
	world_nap(50); /* past its prctl: the status check below tells if not */
	return strict_tid ? 0 : -1;
}

static int check_strict(char *why, size_t wl)
{
	char path[64], buf[256], c = 'x';
	int mode = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", (int)strict_tid);
	f = fopen(path, "r");
	while (f && fgets(buf, sizeof(buf), f))
		if (!strncmp(buf, "Seccomp:", 8))
			mode = atoi(buf + 8);
	if (f)
		fclose(f);
	if (mode != 1 || write(strict_in[1], &c, 1) != 1 || read(strict_out[0], &c, 1) != 1 ||
	    c != 'x') {
		snprintf(why, wl, "strict thread %d: seccomp mode %d, echo '%c'", (int)strict_tid,
			 mode, c);
		return -1;
	}
	return 0;
}

static int setup_notif(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpgid, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
	int fd;

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	fd = (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER,
			  &prog);
	return fd < 0 ? -1 : close(fd);
}

/*
 * A filter installed as root without no_new_privs, then the ids dropped:
 * the restored process has neither CAP_SYS_ADMIN nor no_new_privs.
 */
static int setup_seccomp_uid(void)
{
	if (world_seccomp_install(false))
		return -1;
	return setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
			       setresuid(65534, 65534, 65534)
		       ? -1
		       : 0;
}

static int setup(const char *m)
{
	if (!strcmp(m, "timers"))
		return world_timers_setup();
	if (!strcmp(m, "seccomp"))
		return world_seccomp_setup();
	if (!strcmp(m, "seccomp-uid"))
		return setup_seccomp_uid();
	if (!strcmp(m, "timer-cpuclock")) {
		clockid_t c;
		int id;

		return clock_getcpuclockid(getpid(), &c) || world_timer(c, SIGEV_NONE, 0, &id);
	}
	if (!strcmp(m, "seccomp-notif"))
		return setup_notif();
	if (!strcmp(m, "pidfd"))
		return world_pidfd_setup();
	if (!strncmp(m, "inotify:", 8))
		return world_inotify_setup(m + 8);
	if (!strncmp(m, "fanotify:", 9))
		return world_inotify_setup(m + 9) || world_fanotify_setup();
	if (!strcmp(m, "strict"))
		return setup_strict();
	if (!strcmp(m, "fanotify-content"))
		return fanotify_init(FAN_CLASS_CONTENT, O_RDONLY) < 0 ? -1 : 0;
	if (!strcmp(m, "inotify-queued") || !strcmp(m, "inotify-hole")) {
		int fd = inotify_init1(0), w = fd < 0 ? -1 : inotify_add_watch(fd, "/tmp", IN_OPEN);

		if (w < 0)
			return -1;
		if (!strcmp(m, "inotify-hole"))
			return inotify_add_watch(fd, "/", IN_OPEN) < 0 ? -1
								       : inotify_rm_watch(fd, w);
		return close(open("/tmp", O_RDONLY | O_DIRECTORY));
	}
	if (!strcmp(m, "pidfd-parent"))
		return syscall(SYS_pidfd_open, getppid(), 0) < 0 ? -1 : 0;
	fprintf(stderr, "rst_world: unknown mode %s\n", m);
	return -1;
}

static int check(const char *m, char *why, size_t wl)
{
	if (!strcmp(m, "timers"))
		return world_timers_check(why, wl);
	if (!strcmp(m, "seccomp") || !strcmp(m, "seccomp-uid"))
		return world_seccomp_check(why, wl);
	if (!strcmp(m, "pidfd"))
		return world_pidfd_check(why, wl);
	if (!strncmp(m, "inotify:", 8))
		return world_inotify_check(why, wl);
	if (!strncmp(m, "fanotify:", 9))
		return world_fanotify_check(why, wl);
	if (!strcmp(m, "strict"))
		return check_strict(why, wl);
	return 0;
}

int main(int argc, char **argv)
{
	char why[256];

	signal(SIGUSR1, on_usr1);
	for (int i = 1; i < argc; i++)
		if (setup(argv[i])) {
			printf("world FAIL %s: setup: %s\n", argv[i], strerror(errno));
			return 2;
		}
	printf("ready\n");
	fflush(stdout);
	while (!go)
		world_nap(20);
	for (int i = 1; i < argc; i++)
		if (check(argv[i], why, sizeof(why))) {
			printf("world FAIL %s: %s\n", argv[i], why);
			fflush(stdout);
			return 1;
		}
	printf("world ok\n");
	fflush(stdout);
	return 0;
}
