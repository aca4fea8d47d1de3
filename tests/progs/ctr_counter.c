/*
 * ctr_counter.c - the process of a container test (tests/extra/ctr_runc.sh),
 * built static for a busybox rootfs: keeps a counter in memory, bumps it
 * every 20 ms and writes it to ARGV[1] and ARGV[2] (a file in a tmpfs and
 * one in the rootfs).  After a checkpoint and restore the counter goes on
 * from its value in memory: the files show whether memory survived.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static void put(const char *path, unsigned long v)
{
	FILE *f = fopen(path, "w");

	if (!f)
		return;
	fprintf(f, "%lu\n", v);
	fclose(f);
}

int main(int argc, char **argv)
{
	struct timespec ts = {0, 20 * 1000 * 1000};
	volatile unsigned long counter = 0;

	if (argc < 3) {
		fprintf(stderr, "usage: ctr_counter TMPFS_FILE ROOTFS_FILE\n");
		return 2;
	}
	for (;;) {
		counter++;
		put(argv[1], counter);
		put(argv[2], counter);
		nanosleep(&ts, NULL);
	}
}
