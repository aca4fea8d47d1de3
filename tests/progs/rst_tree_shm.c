/*
 * rst_tree_shm DIR MODE - a process tree that shares memory, for
 * tests/integration/rst_tree_shm.c.
 *
 * MODE "share": the root leads a session of its own (unless it leads a
 * process group already) and makes, before forking c1 and c2 (who inherit
 * it all):
 *   A   MAP_SHARED|MAP_ANONYMOUS, A_PAGES pages;
 *   S1  a SysV segment of 5 pages and 100 bytes (IPC_PRIVATE), attached;
 *   S2  a SysV segment of 3 pages, attached, then IPC_RMID'ed;
 *   M   a memfd of 8 pages, mapped, its fd closed;
 *   M2  a memfd of 4 pages, mapped, its fd kept open (inherited);
 *   P   POSIX shm /haul-treeshm-ROOTPID of 4 pages, mapped, its fd closed;
 *   M3  a memfd of 4 pages, filled, write-sealed, mapped read-only, closed.
 * Every object's pages from SLOTS on hold a pattern of its own.  c1 moves
 * A elsewhere (mremap) and attaches S1 a second time; c2 unmaps A's last 8
 * pages and M's last 2; the root, once both are forked, unmaps M's pages
 * 4-5 (only its children map them then).
 * Process k (r 0, c1 1, c2 2) writes its tick count at page k of every
 * object, every ~10 ms, then reads the other processes' counts in every
 * object it maps (and through both of c1's S1 attachments; M3 is only
 * read) and checks the pattern of what it maps and that M3 cannot be made
 * writable; it writes to DIR/NAME.out
 *   "tick T pid P peers MIN nattch N ok" (or "... BAD OBJECT")
 * where MIN is the smallest count of another process seen in any object:
 * it grows only while every object is still shared by all three, and
 * nattch is S1's.  The first line is "ready 0 pid P s1 SHMID".  Once
 * DIR/stop exists the children exit, the root reaps them, removes S1 and
 * P, and exits 0.
 * MODE "outside": the root maps A, forks c1 (which inherits it) and both
 * tick (r, c1) without slots: c1's tree shares A with a process outside it.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PG	4096UL
#define A_PAGES 2048UL
#define SLOTS	3 /* pages 0..2: one count per process */
#define NOBJ	8 /* A, S1, S2, M, M2, P, c1's second S1, M3 */
#define SEALED	7 /* M3: read-only, write-sealed */

struct obj {
	const char *name;
	uint8_t *at;
	size_t pages; /* mapped by this process */
	uint64_t seed;
	size_t hole, hole_end; /* pages [hole, hole_end) not mapped here */
};

static const char *dir;
static struct obj o[NOBJ];
static int s1 = -1;
static char posix_name[64];

static int exists(const char *name)
{
	char path[4096];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static void pause_ms(int ms)
{
	struct timespec ts = {0, ms * 1000 * 1000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static uint64_t word(uint64_t seed, size_t page)
{
	return seed * 0x9e3779b97f4a7c15ULL + page;
}

static void *map_fd(int fd, size_t pages)
{
	void *p = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void *attach(int id)
{
	void *p = shmat(id, NULL, 0);

	return p == (void *)-1 ? NULL : p;
}

/* The pattern of @b from page SLOTS on. */
static int fill(const struct obj *b)
{
	if (!b->at || b->at == MAP_FAILED)
		return -1;
	for (size_t pg = SLOTS; pg < b->pages; pg++)
		for (size_t w = 0; w < PG / 8; w++)
			((uint64_t *)(b->at + pg * PG))[w] = word(b->seed, pg) + w;
	return 0;
}

/* M3: filled, write-sealed, then mapped read-only and closed. */
static int make_sealed(void)
{
	int fd = (int)syscall(SYS_memfd_create, "treeshm3", MFD_ALLOW_SEALING);
	struct obj w = {"M3", NULL, 4, 17, 0, 0};

	if (fd < 0 || ftruncate(fd, 4 * PG))
		return -1;
	w.at = map_fd(fd, 4);
	if (fill(&w) || munmap(w.at, 4 * PG) ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW))
		return -1;
	w.at = mmap(NULL, 4 * PG, PROT_READ, MAP_SHARED, fd, 0);
	close(fd);
	if (w.at == MAP_FAILED)
		return -1;
	o[SEALED] = w;
	return 0;
}

/* Every object, made by the root before it forks; the pattern in each. */
static int make_objects(void)
{
	int m, m2, p, s2;

	o[0] = (struct obj){
		"A",
		mmap(NULL, A_PAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
		A_PAGES,
		11,
		0,
		0};
	s1 = shmget(IPC_PRIVATE, 5 * PG + 100, IPC_CREAT | 0600);
	s2 = shmget(IPC_PRIVATE, 3 * PG, IPC_CREAT | 0600);
	m = (int)syscall(SYS_memfd_create, "treeshm", 0);
	m2 = (int)syscall(SYS_memfd_create, "treeshm2", 0);
	snprintf(posix_name, sizeof(posix_name), "/dev/shm/haul-treeshm-%d", (int)getpid());
	p = open(posix_name, O_RDWR | O_CREAT | O_EXCL, 0600);
	if (o[0].at == MAP_FAILED || s1 < 0 || s2 < 0 || m < 0 || m2 < 0 || p < 0 ||
	    ftruncate(m, 8 * PG) || ftruncate(m2, 4 * PG) || ftruncate(p, 4 * PG))
		return -1;
	o[1] = (struct obj){"S1", attach(s1), 5, 12, 0, 0};
	o[2] = (struct obj){"S2", attach(s2), 3, 13, 0, 0};
	o[3] = (struct obj){"M", map_fd(m, 8), 8, 14, 0, 0};
	o[4] = (struct obj){"M2", map_fd(m2, 4), 4, 15, 0, 0};
	o[5] = (struct obj){"P", map_fd(p, 4), 4, 16, 0, 0};
	if (make_sealed())
		return -1;
	close(m); /* mapped, then closed */
	close(p);
	if (shmctl(s2, IPC_RMID, NULL)) /* removed while attached */
		return -1;
	for (int k = 0; k < 6; k++)
		if (fill(&o[k]))
			return -1;
	return 0;
}

/* c1: A moved elsewhere (same object, new address), S1 attached once more. */
static int c1_setup(void)
{
	void *to = mmap(NULL, A_PAGES * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (to == MAP_FAILED)
		return -1;
	o[0].at = mremap(o[0].at, A_PAGES * PG, A_PAGES * PG, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	o[6] = (struct obj){"S1b", attach(s1), 5, 12, 0, 0};
	return o[0].at == MAP_FAILED || !o[6].at ? -1 : 0;
}

/* c2: the end of A and of M unmapped here only. */
static int c2_setup(void)
{
	if (munmap(o[0].at + (A_PAGES - 8) * PG, 8 * PG) || munmap(o[3].at + 6 * PG, 2 * PG))
		return -1;
	o[0].pages -= 8;
	o[3].pages -= 2;
	return 0;
}

static int s1_nattch(void)
{
	struct shmid_ds ds;

	return shmctl(s1, IPC_STAT, &ds) ? -1 : (int)ds.shm_nattch;
}

/* A line to @fd; exits on a failed write. */
static void say(int fd, const char *line)
{
	size_t n = strlen(line);

	if (write(fd, line, n) != (ssize_t)n)
		_exit(3);
}

/* The pattern of every page this process maps, first and last word: the bad object or NULL. */
static const char *check(void)
{
	for (int k = 0; k < NOBJ; k++)
		for (size_t pg = SLOTS; o[k].at && pg < o[k].pages; pg++) {
			if (pg >= o[k].hole && pg < o[k].hole_end)
				continue;
			const uint64_t *w = (const uint64_t *)(o[k].at + pg * PG);

			if (w[0] != word(o[k].seed, pg) ||
			    w[PG / 8 - 1] != word(o[k].seed, pg) + PG / 8 - 1)
				return o[k].name;
		}
	return NULL;
}

static void __attribute__((noreturn)) live(const char *name, int me, int nproc)
{
	char path[4096], line[256];
	long tick = 0;
	int fd;

	snprintf(path, sizeof(path), "%s/%s.out", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (fd < 0)
		_exit(2);
	snprintf(line, sizeof(line), "ready 0 pid %d s1 %d\n", (int)getpid(), s1);
	say(fd, line);
	while (!exists("stop")) {
		const char *bad = check();
		uint64_t min = UINT64_MAX;

		tick++;
		for (int k = 0; k < NOBJ; k++)
			if (o[k].at && k != 6 && k != SEALED)
				((volatile uint64_t *)(o[k].at + (size_t)me * PG))[0] =
					(uint64_t)tick;
		for (int k = 0; k < NOBJ; k++)
			for (int j = 0; o[k].at && k != SEALED && j < nproc; j++) {
				uint64_t v = ((volatile uint64_t *)(o[k].at + (size_t)j * PG))[0];

				if (j != me && v < min)
					min = v;
			}
		if (o[6].at && memcmp(o[1].at, o[6].at, SLOTS * PG))
			bad = "S1 attachments differ";
		if (o[SEALED].at && !mprotect(o[SEALED].at, 4 * PG, PROT_READ | PROT_WRITE))
			bad = "M3 can be made writable";
		snprintf(line, sizeof(line), "tick %ld pid %d peers %llu nattch %d %s%s\n", tick,
			 (int)getpid(), min == UINT64_MAX ? 0ULL : (unsigned long long)min,
			 s1 >= 0 ? s1_nattch() : 0, bad ? "BAD " : "ok", bad ? bad : "");
		say(fd, line);
		pause_ms(10);
	}
	if (me == 0) {
		while (wait(NULL) > 0)
			;
		if (s1 >= 0)
			shmctl(s1, IPC_RMID, NULL);
		if (posix_name[0])
			unlink(posix_name);
	}
	_exit(0);
}

int main(int argc, char **argv)
{
	if (argc != 3)
		return 1;
	dir = argv[1];
	if (!strcmp(argv[2], "share")) {
		/*
		 * its own session, so that the tree can come back on the host with
		 * every id (a group leader, as th_spawn makes it, stays where it is)
		 */
		if ((setsid() < 0 && errno != EPERM) || make_objects())
			return 4;
		if (fork() == 0) {
			if (c1_setup())
				_exit(5);
			live("c1", 1, 3);
		}
		if (fork() == 0) {
			if (c2_setup())
				_exit(5);
			live("c2", 2, 3);
		}
		if (munmap(o[3].at + 4 * PG, 2 * PG))
			return 6;
		o[3].hole = 4;
		o[3].hole_end = 6;
		live("r", 0, 3);
	}
	if (!strcmp(argv[2], "outside")) {
		o[0] = (struct obj){
			"A",
			mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
			16,
			11,
			0,
			0};
		if (fill(&o[0]))
			return 4;
		if (fork() == 0) {
			/* its own stdout: only the memory is shared with its parent */
			int nul = open("/dev/null", O_WRONLY);

			if (nul < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
				_exit(5);
			close(nul);
			live("c1", 1, 2);
		}
		live("r", 0, 2);
	}
	return 1;
}
