/*
 * rst_counter - a deterministic workload for checkpoint/restore tests.
 *
 * usage: rst_counter DIR ITERATIONS [ANON_MIB] [SLEEP_US] [memonly]
 *
 * It uses one of each thing the restorer must carry: anonymous private
 * memory (mmap and brk heap), a MAP_GROWSDOWN-free stack array, private
 * and shared file mappings, shared anonymous memory, an mlock'ed and a
 * MADV_HUGEPAGE region, a signal handler on an alternate stack, a blocked
 * pending signal, an itimer-free sleep loop, a deleted-but-open file, a
 * file with an offset (O_APPEND), a directory fd, /dev/null, umask, cwd
 * and its name.  Every
 * iteration mixes a PRNG into all of it; the final line
 *   "final <hash>"
 * depends only on ITERATIONS, so an undisturbed run and a checkpointed,
 * killed and restored one must print the same.  Progress ("tick N") goes to
 * stdout every 100 iterations; problems are printed as "ERROR ...".
 * SLEEP_US (default 1000) is slept each iteration, so a dump usually finds
 * the process inside nanosleep.  With "memonly" nothing is written to files
 * but stdout (same content at the same offsets), so a run that went on
 * after a --leave-running checkpoint leaves the files as they were.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <linux/prctl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t usr1, usr2;
static char altstack[64 << 10];
static uint64_t data_seg[4096]; /* .bss */

static void on_usr1(int sig)
{
	char probe;

	(void)sig;
	/* The handler must run on the alternate stack. */
	if ((uintptr_t)&probe >= (uintptr_t)altstack &&
	    (uintptr_t)&probe < (uintptr_t)altstack + sizeof(altstack))
		usr1++;
	else
		usr1 += 1000000;
}

static void on_usr2(int sig)
{
	(void)sig;
	usr2++;
}

static uint64_t mix(uint64_t h, uint64_t v)
{
	h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
	return h;
}

static uint64_t hash_mem(uint64_t h, const void *p, size_t len)
{
	const uint64_t *q = p;

	for (size_t i = 0; i < len / 8; i++)
		h = mix(h, q[i]);
	return h;
}

static void say(const char *fmt, unsigned long long a, unsigned long long b)
{
	char line[128];
	int n = snprintf(line, sizeof(line), fmt, a, b);

	if (write(1, line, n) != n)
		_exit(3);
}

static void *map_file(const char *path, size_t len, int flags)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	void *p;

	if (fd < 0 || ftruncate(fd, len) < 0) {
		perror(path);
		exit(2);
	}
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = i * 31 + 7;

		if (pwrite(fd, &v, 8, i) != 8)
			exit(2);
	}
	p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
	close(fd);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	return p;
}

int main(int argc, char **argv)
{
	uint64_t iters, anon_len, rng = 88172645463325252ULL, h = 0, *anon, *fpriv, *fshared,
				  *shanon, *locked, *huge;
	uint64_t stackbuf[512] = {0};
	long sleep_us = 1000;
	char path[4096], *heap[64] = {0};
	double acc = 1.0;
	int delfd, offfd, nullfd, dirfd, named, memonly;
	struct timespec last, now;
	pid_t pid = getpid();
	sigset_t block;
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof(altstack)};
	struct sigaction sa = {.sa_handler = on_usr1, .sa_flags = SA_ONSTACK | SA_RESTART};

	if (argc < 3) {
		fprintf(stderr, "usage: %s DIR ITERATIONS [ANON_MIB] [SLEEP_US]\n", argv[0]);
		return 2;
	}
	iters = strtoull(argv[2], NULL, 10);
	anon_len = (argc > 3 ? strtoull(argv[3], NULL, 10) : 16) << 20;
	if (argc > 4)
		sleep_us = atol(argv[4]);
	memonly = argc > 5 && !strcmp(argv[5], "memonly");
	if (chdir(argv[1]) < 0) {
		perror(argv[1]);
		return 2;
	}
	umask(027);
	prctl(PR_SET_NAME, "rst_counter");

	anon = mmap(NULL, anon_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shanon = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	locked = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	huge = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED || shanon == MAP_FAILED || locked == MAP_FAILED ||
	    huge == MAP_FAILED)
		return 2;
	mlock(locked, 1 << 16);
	named = !prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)huge, 4 << 20, "rst_named");
	madvise(huge, 4 << 20, MADV_HUGEPAGE);
	snprintf(path, sizeof(path), "priv.%d", (int)pid);
	fpriv = map_file(path, 1 << 20, MAP_PRIVATE);
	snprintf(path, sizeof(path), "shared.%d", (int)pid);
	fshared = map_file(path, 1 << 20, MAP_SHARED);

	snprintf(path, sizeof(path), "deleted.%d", (int)pid);
	delfd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	unlink(path);
	snprintf(path, sizeof(path), "offset.%d", (int)pid);
	offfd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND, 0600);
	nullfd = open("/dev/null", O_WRONLY);
	dirfd = open(".", O_RDONLY | O_DIRECTORY);
	if (delfd < 0 || offfd < 0 || nullfd < 0 || dirfd < 0)
		return 2;

	sigaltstack(&ss, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sa.sa_flags = 0;
	sigaction(SIGUSR2, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, NULL);
	raise(SIGUSR2); /* stays pending until the end */
	clock_gettime(CLOCK_MONOTONIC, &last);

	for (uint64_t i = 0; i < iters; i++) {
		uint64_t r;
		struct timespec ts = {0, sleep_us * 1000};

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		r = rng;
		for (int k = 0; k < 64; k++) {
			r = r * 6364136223846793005ULL + 1442695040888963407ULL;
			anon[(r >> 20) % (anon_len / 8)] += r;
		}
		fpriv[r % (1 << 17)] ^= r;
		if (!memonly)
			fshared[(r >> 8) % (1 << 17)] += 1;
		shanon[(r >> 16) % (1 << 17)] += r;
		locked[(r >> 24) % (1 << 13)] ^= r;
		huge[(r >> 32) % (1 << 19)] += r;
		data_seg[r % 4096] += i;
		stackbuf[r % 512] ^= r;
		acc = acc * 1.0000001 + (double)(r & 0xff) / 256.0;
		if (i % 16 == 0) {
			free(heap[(r >> 40) % 64]);
			heap[(r >> 40) % 64] = malloc(1 + (r % 20000));
			memset(heap[(r >> 40) % 64], (int)i, 1 + (r % 20000));
		}
		if (!memonly && (write(delfd, &r, 8) != 8 || write(offfd, &i, 8) != 8))
			say("ERROR write failed at %llu%llu\n", i, 0);
		if (write(nullfd, &r, 8) != 8)
			say("ERROR write to /dev/null failed at %llu%llu\n", i, 0);
		if (i % 100 == 0) {
			raise(SIGUSR1);
			say("tick %llu %llu\n", i, usr1);
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec < last.tv_sec ||
		    (now.tv_sec == last.tv_sec && now.tv_nsec < last.tv_nsec))
			say("ERROR CLOCK_MONOTONIC went back at %llu %llu\n", i, 0);
		last = now;
		if (sleep_us)
			nanosleep(&ts, NULL);
	}
	sigprocmask(SIG_UNBLOCK, &block, NULL);

	h = hash_mem(h, anon, anon_len);
	h = hash_mem(h, fpriv, 1 << 20);
	h = hash_mem(h, fshared, 1 << 20);
	h = hash_mem(h, shanon, 1 << 20);
	h = hash_mem(h, locked, 1 << 16);
	h = hash_mem(h, huge, 4 << 20);
	h = hash_mem(h, data_seg, sizeof(data_seg));
	h = hash_mem(h, stackbuf, sizeof(stackbuf));
	{
		uint64_t bits;

		memcpy(&bits, &acc, 8);
		h = mix(h, bits);
	}
	h = mix(h, lseek(delfd, 0, SEEK_CUR));
	h = mix(h, lseek(offfd, 0, SEEK_END));
	{
		uint64_t buf[512];
		ssize_t n;
		off_t off = 0;

		while ((n = pread(delfd, buf, sizeof(buf), off)) > 0) {
			h = hash_mem(h, buf, n);
			off += n;
		}
	}
	h = mix(h, usr1);
	h = mix(h, usr2);
	h = mix(h, umask(0));
	if (getpid() != pid)
		say("ERROR getpid changed from %llu to %llu\n", pid, getpid());
	{
		char comm[32] = "";
		int fd = open("/proc/self/comm", O_RDONLY);

		if (fd >= 0 && read(fd, comm, sizeof(comm) - 1) > 0 &&
		    strncmp(comm, "rst_counter", 11))
			say("ERROR comm lost %llu%llu\n", 0, 0);
		if (fd >= 0)
			close(fd);
		if (readlink("/proc/self/cwd", path, sizeof(path)) < 0)
			say("ERROR no cwd %llu%llu\n", 0, 0);
	}
	snprintf(path, sizeof(path), "offset.%d", (int)pid);
	if (faccessat(dirfd, path, F_OK, 0))
		say("ERROR directory fd lost %llu%llu\n", 0, 0);
	if (named) {
		char maps[1 << 16];
		int fd = open("/proc/self/maps", O_RDONLY);
		ssize_t n = fd < 0 ? -1 : read(fd, maps, sizeof(maps) - 1);

		maps[n > 0 ? n : 0] = '\0';
		if (!strstr(maps, "[anon:rst_named]"))
			say("ERROR VMA name lost %llu%llu\n", 0, 0);
		if (fd >= 0)
			close(fd);
	}
	if (usr2 != 1)
		say("ERROR pending SIGUSR2 delivered %llu times%llu\n", usr2, 0);
	if ((uint64_t)usr1 != (iters + 99) / 100)
		say("ERROR SIGUSR1 handler count %llu, want %llu\n", usr1, (iters + 99) / 100);
	say("final %016llx %llu\n", h, iters);
	snprintf(path, sizeof(path), "priv.%d", (int)pid);
	unlink(path);
	snprintf(path, sizeof(path), "shared.%d", (int)pid);
	unlink(path);
	snprintf(path, sizeof(path), "offset.%d", (int)pid);
	unlink(path);
	return 0;
}
