/*
 * ctr_counter.c - the process of a container test (tests/extra/ctr_runc.sh),
 * built static for a busybox rootfs: keeps a counter in memory, bumps it
 * every 20 ms and writes "TOKEN COUNTER" to ARGV[1] and ARGV[2] (a file in
 * a tmpfs and one in the rootfs).  TOKEN is drawn at start and lives only
 * in memory: after a checkpoint and restore the same token with a larger
 * counter shows the memory survived (a restart would draw a new token).
 * Each file is written under a temporary name and renamed: a reader never
 * sees it empty.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void put(const char *path, unsigned long token, unsigned long v)
{
	char tmp[4096];
	FILE *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (!f)
		return;
	fprintf(f, "%lu %lu\n", token, v);
	fclose(f);
	rename(tmp, path);
}

int main(int argc, char **argv)
{
	struct timespec ts = {0, 20 * 1000 * 1000};
	volatile unsigned long counter = 0;
	unsigned long token;
	struct timespec now;

	if (argc < 3) {
		fprintf(stderr, "usage: ctr_counter TMPFS_FILE ROOTFS_FILE\n");
		return 2;
	}
	clock_gettime(CLOCK_REALTIME, &now);
	token = (unsigned long)now.tv_nsec ^ ((unsigned long)getpid() << 32) ^
		(unsigned long)now.tv_sec;
	for (;;) {
		counter++;
		put(argv[1], token, counter);
		put(argv[2], token, counter);
		nanosleep(&ts, NULL);
	}
}
