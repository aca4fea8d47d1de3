/*
 * rst_aa_prog.c - the confined workload of rst_apparmor_qemu.sh, static.
 *
 * rst_aa_prog PROFILE OUTDIR: both threads change to AppArmor profile
 * PROFILE (each writes "changeprofile" to its own attr file: a label is per
 * task), then every 20 ms each rewrites OUTDIR/main or OUTDIR/thread with
 * "COUNT LABEL", LABEL what its own attr/current reads now.  The counts
 * going on after a restore say it keeps working, the labels that the
 * restore gave each thread its profile back.  OUTDIR/ready appears once
 * both threads are confined.  With a third argument "child" it first forks
 * a child that stays unconfined and counts into OUTDIR/child: a tree whose
 * processes have different labels.  With "confined-child" it is the other
 * way round: the child changes to PROFILE (and makes OUTDIR/ready), both
 * threads of the parent stay unconfined.
 *
 * Each thread reads its label once it is confined and again after each
 * SIGUSR1 (the test sends one after a restore or a migration), never in
 * between: an attr fd open at the freeze would be part of the dump, and
 * no process can reopen another's /proc/PID/task/TID/attr file.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *outdir;
static const char *profile;
static int confine_parent = 1;

static int own_attr(char *buf, size_t len, int change)
{
	const char *path = "/proc/thread-self/attr/apparmor/current";
	int fd = open(path, change ? O_WRONLY : O_RDONLY);
	ssize_t n;

	if (fd < 0) {
		path = "/proc/thread-self/attr/current";
		fd = open(path, change ? O_WRONLY : O_RDONLY);
	}
	if (fd < 0)
		return -errno;
	if (change) {
		char cmd[256];
		int cl = snprintf(cmd, sizeof(cmd), "changeprofile %s", profile);

		n = write(fd, cmd, (size_t)cl);
	} else {
		n = read(fd, buf, len - 1);
		if (n >= 0) {
			buf[n] = '\0';
			buf[strcspn(buf, "\n")] = '\0';
		}
	}
	close(fd);
	return n < 0 ? -errno : 0;
}

static volatile sig_atomic_t relabel = 1;

static void on_usr1(int sig)
{
	(void)sig;
	relabel++;
}

static void put(const char *name, unsigned long count)
{
	static __thread char label[256] = "?";
	static __thread sig_atomic_t seen;
	char path[256], tmp[256], line[320];
	int fd, n;

	if (seen != relabel) {
		seen = relabel;
		own_attr(label, sizeof(label), 0);
	}
	snprintf(path, sizeof(path), "%s/%s", outdir, name);
	snprintf(tmp, sizeof(tmp), "%s/.%s", outdir, name);
	n = snprintf(line, sizeof(line), "%lu %s\n", count, label);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return;
	if (write(fd, line, (size_t)n) == n)
		rename(tmp, path);
	close(fd);
}

static void loop(const char *name)
{
	struct timespec ts = {0, 20 * 1000 * 1000};

	for (unsigned long count = 1;; count++) {
		put(name, count);
		nanosleep(&ts, NULL);
	}
}

static volatile int thread_ready;

static void *thread_main(void *arg)
{
	(void)arg;
	if (confine_parent && own_attr(NULL, 0, 1)) {
		thread_ready = -1;
		return NULL;
	}
	thread_ready = 1;
	loop("thread");
	return NULL;
}

int main(int argc, char **argv)
{
	char path[256];
	pthread_t th;
	int err;

	if (argc < 3 || argc > 4 ||
	    (argc == 4 && strcmp(argv[3], "child") && strcmp(argv[3], "confined-child"))) {
		fprintf(stderr, "usage: rst_aa_prog PROFILE OUTDIR [child|confined-child]\n");
		return 2;
	}
	profile = argv[1];
	outdir = argv[2];
	{
		struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_RESTART};

		sigaction(SIGUSR1, &sa, NULL);
	}
	if (argc == 4) {
		pid_t c = fork();

		if (c < 0)
			return 1;
		confine_parent = !strcmp(argv[3], "child");
		if (c == 0 && !confine_parent) {
			err = own_attr(NULL, 0, 1);
			if (err) {
				fprintf(stderr, "rst_aa_prog: child: changeprofile %s: %s\n",
					profile, strerror(-err));
				return 1;
			}
			snprintf(path, sizeof(path), "%s/ready", outdir);
			close(open(path, O_WRONLY | O_CREAT, 0644));
		}
		if (c == 0)
			loop("child");
	}
	/* the thread first, unconfined: each thread changes its own label */
	if (pthread_create(&th, NULL, thread_main, NULL))
		return 1;
	while (!thread_ready) {
		struct timespec ts = {0, 1000 * 1000};

		nanosleep(&ts, NULL);
	}
	if (!confine_parent)
		loop("main");
	err = thread_ready < 0 ? -EPERM : own_attr(NULL, 0, 1);
	if (err) {
		fprintf(stderr, "rst_aa_prog: changeprofile %s: %s\n", profile, strerror(-err));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/ready", outdir);
	close(open(path, O_WRONLY | O_CREAT, 0644));
	loop("main");
	return 0;
}
