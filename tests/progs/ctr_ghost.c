/*
 * ctr_ghost.c - the process of tests/extra/ctr_ghost.sh, built static for a
 * busybox rootfs: a container whose library was upgraded under it.  It maps
 * /lib.so (4 pages, page i filled with 'a' + i) MAP_PRIVATE, writes page 1,
 * holds /held.tmp open, deletes both, and puts a new /lib.so at the path
 * (the upgrade's).  Every 20 ms it checks the mapping (pages 0, 2, 3 the old
 * file's, page 1 its own), the held file ("held") and that maps shows the
 * mapping deleted, and writes "TOKEN COUNTER ok" (or "bad") to ARGV[1], the
 * token drawn at start and kept in memory only.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#define PG 4096

static char *map;
static int held = -1;

static int setup(void)
{
	char page[PG];
	int fd = open("/lib.so", O_RDWR | O_CREAT | O_TRUNC, 0755);

	if (fd < 0)
		return -1;
	for (int i = 0; i < 4; i++) {
		memset(page, 'a' + i, PG);
		if (write(fd, page, PG) != PG)
			return -1;
	}
	map = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	close(fd);
	if (map == MAP_FAILED)
		return -1;
	memset(map + PG, 'W', PG);
	held = open("/held.tmp", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (held < 0 || write(held, "held", 4) != 4)
		return -1;
	if (unlink("/held.tmp") || unlink("/lib.so"))
		return -1;
	fd = open("/lib.so", O_WRONLY | O_CREAT | O_EXCL, 0755); /* the upgrade's */
	if (fd < 0 || write(fd, "new\n", 4) != 4)
		return -1;
	return close(fd);
}

static int check(void)
{
	char line[256], buf[8] = "";
	int deleted = 0;
	FILE *f;

	for (int i = 0; i < 4; i++)
		for (int k = 0; k < PG; k += 512)
			if (map[i * PG + k] != (i == 1 ? 'W' : 'a' + i))
				return -1;
	if (pread(held, buf, 4, 0) != 4 || memcmp(buf, "held", 4))
		return -1;
	f = fopen("/proc/self/maps", "r");
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "/lib.so") && strstr(line, "(deleted)"))
			deleted = 1;
	if (f)
		fclose(f);
	return deleted ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct timespec ts = {0, 20 * 1000 * 1000}, now;
	unsigned long token, counter = 0;
	char tmp[4096];

	if (argc < 2 || setup())
		return 2;
	clock_gettime(CLOCK_REALTIME, &now);
	token = (unsigned long)now.tv_nsec ^ ((unsigned long)getpid() << 32) ^
		(unsigned long)now.tv_sec;
	for (;;) {
		FILE *f;

		snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
		f = fopen(tmp, "w");
		if (f) {
			fprintf(f, "%lu %lu %s\n", token, ++counter, check() ? "bad" : "ok");
			fclose(f);
			rename(tmp, argv[1]);
		}
		nanosleep(&ts, NULL);
	}
}
