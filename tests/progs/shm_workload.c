/*
 * shm_workload.c - a process that keeps its data in shared memory, for the
 * shared memory tests (tests/integration/rst_shmem.c, mig_shmem.c).
 *
 * shm_workload --kind anon|memfd|memfd-fd|memfd-sealed|posix|sysv|sem|msg --mem MiB --hot PAGES
 *              [--key KEY] [--control FILE] [--tag WORD] [--sysv-short BYTES]
 *
 * It makes one shared memory object of --mem MiB (anon: MAP_SHARED|
 * MAP_ANONYMOUS; memfd: memfd_create("haul-shm-TAG"), sealed against
 * growing and shrinking, its fd closed; sysv: shmget(KEY) of --mem MiB
 * minus --sysv-short bytes (default 1000: not page-aligned), mode 0640), maps it twice (A: all of it; B: its pages
 * 1-16 again, elsewhere: for anon a mremap(old_size 0) copy, for memfd and
 * SysV a second mmap/shmat), fills every page, then every 1 ms rewrites
 * one of the first --hot pages, alternately through A and through B.  Page
 * i at generation g holds i, g and a pattern of both; the generations live
 * in private memory, so `verify` proves every page holds its last write
 * whichever mapping wrote it.  Verify also checks that B shows A's pages,
 * that a byte written through A now reads back through B (writes after a
 * restore reach every mapping), the memfd's seals and name, the SysV key,
 * shmid, size and mode.  "verify ok" or "verify FAIL what".
 *
 * posix is shm_open("/haul-shm-TAG") (/dev/shm/haul-shm-TAG, mode 0640)
 * mapped twice, its fd closed; the test removes the file.
 * memfd-fd is memfd with its fd kept open (fd 7, offset 12345) and two
 * more pages past the mappings, written with pwrite: verify reads them
 * back through the fd.  memfd-sealed writes 16 pages into a memfd, seals
 * it (write, grow, shrink, seal), maps it read-only and closes it: verify
 * checks the bytes, the seals and that the mapping cannot become writable.
 * memfd-sealed-fd keeps its fd open too (fd 7): verify also reads through
 * it and checks a write through it fails.
 *
 * sem and msg make a semaphore set or a message queue in a new IPC
 * namespace of its own (so that no other test's process can see it) and
 * just tick: haul must refuse them by name.
 *
 * Output (stdout, a file), in mig_workload's format for th_mig.h:
 *   ready pid=PID net=NETNS_INODE shmid=ID map=START-END   (mapping A)
 *   tick seq=WRITES pid=PID net=NETNS_INODE gap_ms=0 maxgap_ms=0   (every 100 ms)
 * --control FILE is polled each tick for "verify" or "exit"; SIGUSR1 verifies too.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE   4096UL
#define WORDS  (PAGE / 8)
#define BPAGES 16 /* mapping B: pages 1..16 of the object */

static volatile sig_atomic_t want_verify;
static const char *kind = "anon", *control, *tag = "shm";
static char *A, *B;
static uint64_t npages, hot = 16, *gen, seq;
static size_t size;
static int key = 0x48410000, shmid = -1;
static size_t sysv_short = 1000;
static char *R; /* memfd-sealed: the read-only mapping */
#define MFD_FD	  7
#define MFD_POS	  12345
#define MFD_UID	  65534 /* the memfd's owner (nobody) */
#define RPAGES	  16
#define ALL_SEALS (F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)

static void on_usr1(int sig)
{
	(void)sig;
	want_verify = 1;
}

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	char buf[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (write(1, buf, n) < 0)
		_exit(4);
}

static uint64_t pattern(uint64_t i, uint64_t g)
{
	uint64_t x = i * 0x100000001b3ULL ^ g;

	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	return x ^ (x >> 27);
}

/* Page @i through mapping @m (A, or B for pages 1..BPAGES). */
static uint64_t *page(char *m, uint64_t i)
{
	return (uint64_t *)(m == A ? A + i * PAGE : B + (i - 1) * PAGE);
}

static void fill(uint64_t *p, uint64_t i, uint64_t g)
{
	p[0] = i;
	p[1] = g;
	for (unsigned w = 2; w < WORDS; w += 61)
		p[w] = pattern(i, g) + w;
}

static int check(const uint64_t *p, uint64_t i, uint64_t g)
{
	if (p[0] != i || p[1] != g)
		return -1;
	for (unsigned w = 2; w < WORDS; w += 61)
		if (p[w] != pattern(i, g) + w)
			return -1;
	return 0;
}

static int setup_object(void)
{
	char name[64];
	int fd;

	if (!strcmp(kind, "anon")) {
		A = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (A == MAP_FAILED)
			return -1;
		/* old_size 0: a second mapping of the same shared pages */
		B = mremap(A + PAGE, 0, BPAGES * PAGE, MREMAP_MAYMOVE);
		return B == MAP_FAILED ? -1 : 0;
	}
	if (!strcmp(kind, "memfd") || !strcmp(kind, "memfd-fd")) {
		bool keep = !strcmp(kind, "memfd-fd");

		snprintf(name, sizeof(name), "haul-shm-%s", tag);
		fd = memfd_create(name, MFD_ALLOW_SEALING | MFD_CLOEXEC);
		/* a mode and owner of its own: memfd_create makes it 0777, the creator's */
		if (fd < 0 || ftruncate(fd, (off_t)size + (keep ? 2 * PAGE : 0)) < 0 ||
		    fchown(fd, MFD_UID, MFD_UID) < 0 || fchmod(fd, 0642) < 0)
			return -1;
		A = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		B = mmap(NULL, BPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PAGE);
		if (A == MAP_FAILED || B == MAP_FAILED)
			return -1;
		if (keep) { /* bytes only the fd reaches, and an offset */
			uint64_t tail[WORDS];

			fill(tail, npages + 1, 7);
			if (pwrite(fd, tail, PAGE, (off_t)size + PAGE) != (ssize_t)PAGE ||
			    dup2(fd, MFD_FD) != MFD_FD || lseek(MFD_FD, MFD_POS, SEEK_SET) < 0)
				return -1;
		}
		if (fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) < 0)
			return -1;
		close(fd); /* memfd: only mapped from here on */
		return 0;
	}
	if (!strcmp(kind, "posix")) {
		snprintf(name, sizeof(name), "/haul-shm-%s", tag);
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0640);
		if (fd < 0 || ftruncate(fd, (off_t)size) < 0)
			return -1;
		A = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		B = mmap(NULL, BPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, PAGE);
		close(fd);
		return A == MAP_FAILED || B == MAP_FAILED ? -1 : 0;
	}
	if (!strncmp(kind, "memfd-sealed", 12)) {
		fd = memfd_create("haul-shm-sealed", MFD_ALLOW_SEALING);
		for (uint64_t i = 0; fd >= 0 && i < RPAGES; i++) {
			uint64_t p[WORDS];

			fill(p, i, 3);
			if (write(fd, p, PAGE) != (ssize_t)PAGE)
				return -1;
		}
		if (fd < 0 || fcntl(fd, F_ADD_SEALS, ALL_SEALS) < 0)
			return -1;
		R = mmap(NULL, RPAGES * PAGE, PROT_READ, MAP_SHARED, fd, 0);
		/* memfd-sealed-fd: the fd stays open too */
		if (!strcmp(kind, "memfd-sealed-fd") && dup2(fd, MFD_FD) != MFD_FD)
			return -1;
		close(fd);
		return R == MAP_FAILED ? -1 : 0;
	}
	if (!strcmp(kind, "sysv")) {
		shmid = shmget(key, size - sysv_short, IPC_CREAT | IPC_EXCL | 0640);
		if (shmid < 0)
			return -1;
		A = shmat(shmid, NULL, 0);
		if (A == (void *)-1)
			return -1;
		/* B: a second attachment, then all but its pages 1..16 unmapped */
		B = shmat(shmid, NULL, 0);
		if (B == (void *)-1 || munmap(B, PAGE) < 0 ||
		    munmap(B + (BPAGES + 1) * PAGE, size - (BPAGES + 1) * PAGE) < 0)
			return -1;
		B += PAGE;
		return 0;
	}
	if (unshare(CLONE_NEWIPC) < 0)
		return -1;
	if (!strcmp(kind, "sem"))
		return semget(key, 2, IPC_CREAT | 0600) < 0 ? -1 : 0;
	if (!strcmp(kind, "msg"))
		return msgget(key, IPC_CREAT | 0600) < 0 ? -1 : 0;
	errno = EINVAL;
	return -1;
}

static int verify_object(char *why, size_t len)
{
	struct shmid_ds ds;
	struct stat st;
	char path[96], link[160];
	int fd, seals;
	ssize_t n;

	if (!strncmp(kind, "memfd", 5) && A) {
		snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)A,
			 (unsigned long)A + size);
		n = readlink(path, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = '\0';
		if (!strstr(link, "/memfd:haul-shm-"))
			return snprintf(why, len, "memfd name lost: %s", link), -1;
		fd = open(path, O_RDONLY);
		seals = fd >= 0 ? fcntl(fd, F_GET_SEALS) : -1;
		if (fd < 0 || fstat(fd, &st) < 0)
			st.st_mode = st.st_uid = 0;
		if (fd >= 0)
			close(fd);
		if ((!strcmp(kind, "memfd") || !strcmp(kind, "memfd-fd")) &&
		    ((st.st_mode & 07777) != 0642 || st.st_uid != MFD_UID))
			return snprintf(why, len, "memfd mode %#o owner %u, not 0642 %u",
					st.st_mode & 07777, st.st_uid, MFD_UID),
			       -1;
		if (seals != (F_SEAL_GROW | F_SEAL_SHRINK))
			return snprintf(why, len, "memfd seals are %#x, not grow|shrink", seals),
			       -1;
	}
	if (!strcmp(kind, "memfd-fd")) {
		uint64_t tail[WORDS];

		if (lseek(MFD_FD, 0, SEEK_CUR) != MFD_POS)
			return snprintf(why, len, "memfd fd %d lost its offset", MFD_FD), -1;
		if (pread(MFD_FD, tail, PAGE, (off_t)size + PAGE) != (ssize_t)PAGE ||
		    check(tail, npages + 1, 7))
			return snprintf(why, len, "memfd bytes past the mappings lost"), -1;
		if (pread(MFD_FD, tail, PAGE, 5 * PAGE) != (ssize_t)PAGE ||
		    memcmp(tail, page(A, 5), PAGE))
			return snprintf(why, len, "memfd fd and mapping differ"), -1;
	}
	if (!strcmp(kind, "memfd-sealed-fd")) {
		uint64_t p[WORDS];

		if (pread(MFD_FD, p, PAGE, 2 * PAGE) != (ssize_t)PAGE || check(p, 2, 3))
			return snprintf(why, len, "sealed memfd read through its fd"), -1;
		if (pwrite(MFD_FD, p, PAGE, 0) >= 0)
			return snprintf(why, len, "a write-sealed memfd took a write"), -1;
	}
	if (!strncmp(kind, "memfd-sealed", 12)) {
		for (uint64_t i = 0; i < RPAGES; i++)
			if (check((uint64_t *)(R + i * PAGE), i, 3))
				return snprintf(why, len, "sealed memfd page %llu",
						(unsigned long long)i),
				       -1;
		snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)R,
			 (unsigned long)R + RPAGES * PAGE);
		fd = open(path, O_RDONLY);
		seals = fd >= 0 ? fcntl(fd, F_GET_SEALS) : -1;
		if (fd < 0 || fstat(fd, &st) < 0)
			st.st_mode = st.st_uid = 0;
		if (fd >= 0)
			close(fd);
		if ((!strcmp(kind, "memfd") || !strcmp(kind, "memfd-fd")) &&
		    ((st.st_mode & 07777) != 0642 || st.st_uid != MFD_UID))
			return snprintf(why, len, "memfd mode %#o owner %u, not 0642 %u",
					st.st_mode & 07777, st.st_uid, MFD_UID),
			       -1;
		if (seals != ALL_SEALS)
			return snprintf(why, len, "sealed memfd has seals %#x", seals), -1;
		if (mprotect(R, PAGE, PROT_READ | PROT_WRITE) == 0)
			return snprintf(why, len, "a write-sealed mapping became writable"), -1;
	}
	if (!strcmp(kind, "sysv")) {
		if (shmget(key, 0, 0) != shmid)
			return snprintf(why, len, "key %#x names shmid %d, not %d", key,
					shmget(key, 0, 0), shmid),
			       -1;
		if (shmctl(shmid, IPC_STAT, &ds) < 0)
			return snprintf(why, len, "IPC_STAT: %s", strerror(errno)), -1;
		if (ds.shm_segsz != size - sysv_short || (ds.shm_perm.mode & 0777) != 0640)
			return snprintf(why, len, "segment size %zu mode %o", ds.shm_segsz,
					ds.shm_perm.mode & 0777),
			       -1;
	}
	return 0;
}

static int verify(char *why, size_t len)
{
	uint64_t *a, *b;

	if (!A)
		return verify_object(why, len);
	for (uint64_t i = 0; i < npages; i++)
		if (check(page(A, i), i, gen[i]))
			return snprintf(why, len, "page=%llu", (unsigned long long)i), -1;
	for (uint64_t i = 1; i <= BPAGES; i++)
		if (memcmp(page(A, i), page(B, i), PAGE))
			return snprintf(why, len, "mapping B differs at page %llu",
					(unsigned long long)i),
			       -1;
	/* a write through one mapping shows through the other */
	a = page(A, 3);
	b = page(B, 3);
	a[WORDS - 1] ^= 0x5a5a;
	if (b[WORDS - 1] != a[WORDS - 1])
		return snprintf(why, len, "a write through A did not show through B"), -1;
	a[WORDS - 1] ^= 0x5a5a;
	return verify_object(why, len);
}

static void poll_control(void)
{
	char cmd[32] = "", why[200];
	FILE *f;

	if (control && (f = fopen(control, "r"))) {
		if (!fgets(cmd, sizeof(cmd), f))
			cmd[0] = '\0';
		fclose(f);
		unlink(control);
	}
	if (!strncmp(cmd, "exit", 4))
		exit(0);
	if (want_verify || !strncmp(cmd, "verify", 6)) {
		want_verify = 0;
		if (verify(why, sizeof(why)))
			out("verify FAIL %s\n", why);
		else
			out("verify ok seq=%llu pages=%llu\n", (unsigned long long)seq,
			    (unsigned long long)npages);
	}
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_usr1};
	struct timespec tick = {0, 1000000};
	unsigned long net = 0;
	struct stat st;
	long mem = 4;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--kind"))
			kind = argv[i + 1];
		else if (!strcmp(argv[i], "--mem"))
			mem = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--hot"))
			hot = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--key"))
			key = (int)strtol(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--control"))
			control = argv[i + 1];
		else if (!strcmp(argv[i], "--sysv-short"))
			sysv_short = strtoull(argv[i + 1], NULL, 0);
		else if (!strcmp(argv[i], "--tag"))
			tag = argv[i + 1];
	}
	size = (size_t)mem << 20;
	npages = size / PAGE;
	if (!strcmp(kind, "sysv"))
		npages = (size - sysv_short) / PAGE; /* whole pages of the segment */
	if (hot < 2 || hot > npages)
		hot = npages < 32 ? npages : 32;
	sigaction(SIGUSR1, &sa, NULL);
	gen = calloc(npages, sizeof(*gen));
	if (!gen || setup_object()) {
		out("setup failed: %s\n", strerror(errno));
		return 3;
	}
	for (uint64_t i = 0; A && i < npages; i++)
		fill(page(A, i), i, 0);
	if (stat("/proc/self/ns/net", &st) == 0)
		net = st.st_ino;
	out("ready pid=%d net=%lu shmid=%d map=%lx-%lx\n", getpid(), net, shmid, (unsigned long)A,
	    (unsigned long)A + (A ? size : 0));
	for (uint64_t t = 0;; t++) {
		uint64_t i = seq % hot;

		if (A) {
			/* odd writes go through B where B maps the page */
			char *m = (seq & 1) && i >= 1 && i <= BPAGES ? B : A;

			fill(page(m, i), i, ++gen[i]);
			seq++;
		}
		nanosleep(&tick, NULL);
		if (t % 100 == 0) {
			if (stat("/proc/self/ns/net", &st) == 0)
				net = st.st_ino;
			out("tick seq=%llu pid=%d net=%lu gap_ms=0 maxgap_ms=0\n",
			    (unsigned long long)seq, getpid(), net);
			poll_control();
		}
	}
}
