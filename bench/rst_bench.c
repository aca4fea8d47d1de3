/*
 * rst_bench.c - checkpoint and restore time against moving the same bytes,
 * all measured in the same run (issue 4, item 6).
 *
 * For each size (MiB; default 256 1024 4096, or RST_BENCH_MIB="a b c" or
 * arguments), a forked child fills that much anonymous memory with
 * incompressible, page-distinct data and waits.  Measured, in this order:
 *   read      process_vm_readv of the child's region, 1 MiB per call;
 *   write     the same bytes written to a file in the images directory,
 *             then fsync (what the image costs on disk at best);
 *   snapshot  haul's checkpoint --leave-running (memory copied while it runs;
 *             the stop is what matters);
 *   checkpoint  haul's checkpoint into the images directory (durable);
 *   fresh     process_vm_writev of the same bytes into never-touched
 *             memory of a new process (first-touch cost included);
 *   restore   haul's restore from the images directory, until it runs.
 * Reported: seconds, GB/s, and the ratios checkpoint/read, checkpoint/write,
 * restore/fresh.  The restored process's memory is spot-checked.
 * Images go to RST_BENCH_DIR (default /var/tmp).  Memory needed: about
 * three times the largest size (source, restored copy, page cache).
 */
#define LOG_PREFIX "rst_bench: "
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/haul.h"
#include "restore/restore.h"

#define CHUNK (1UL << 20)

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fill_page(uint64_t *p, uint64_t i)
{
	uint64_t x = i * 0x9e3779b97f4a7c15ULL + 1;

	for (size_t k = 0; k < 512; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[k] = x;
	}
}

/* A child holding @len bytes of page-distinct data at *@addr. */
static pid_t spawn_holder(size_t len, uint64_t *addr)
{
	int pfd[2];
	pid_t pid;

	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid == 0) {
		uint8_t *m =
			mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t a = (uint64_t)(uintptr_t)m;
		int nul = open("/dev/null", O_RDWR);

		if (m == MAP_FAILED)
			_exit(1);
		for (size_t off = 0; off < len; off += 4096)
			fill_page((uint64_t *)(m + off), off / 4096);
		if (write(pfd[1], &a, sizeof(a)) != sizeof(a))
			_exit(1);
		/* Nothing but /dev/null on its fds: checkpointable. */
		dup2(nul, 0);
		dup2(nul, 1);
		dup2(nul, 2);
		closefrom(3);
		for (;;)
			pause();
	}
	close(pfd[1]);
	if (pid < 0 || read(pfd[0], addr, sizeof(*addr)) != sizeof(*addr)) {
		close(pfd[0]);
		return -1;
	}
	close(pfd[0]);
	return pid;
}

static double time_read(pid_t pid, uint64_t addr, size_t len, uint8_t *buf)
{
	double t0 = now_s();

	for (size_t off = 0; off < len; off += CHUNK) {
		struct iovec l = {buf, CHUNK}, r = {(void *)(uintptr_t)(addr + off), CHUNK};

		if (process_vm_readv(pid, &l, 1, &r, 1, 0) != (ssize_t)CHUNK)
			return -1;
	}
	return now_s() - t0;
}

static double time_file_write(const char *dir, size_t len, const uint8_t *buf)
{
	char path[600];
	double t0 = now_s(), t;
	int fd;

	snprintf(path, sizeof(path), "%s/baseline.bin", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		return -1;
	for (size_t off = 0; off < len; off += CHUNK)
		if (write(fd, buf, CHUNK) != (ssize_t)CHUNK) {
			close(fd);
			return -1;
		}
	fsync(fd);
	t = now_s() - t0;
	close(fd);
	unlink(path);
	return t;
}

/* Write @len bytes into fresh memory of a new process, as a restore does. */
static double time_fresh_write(size_t len, const uint8_t *buf)
{
	int pfd[2];
	uint64_t addr;
	double t0, t = -1;
	pid_t pid;

	if (pipe(pfd))
		return -1;
	pid = fork();
	if (pid == 0) {
		void *m =
			mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uint64_t a = (uint64_t)(uintptr_t)m;

		if (write(pfd[1], &a, sizeof(a)) != sizeof(a))
			_exit(1);
		for (;;)
			pause();
	}
	close(pfd[1]);
	if (pid > 0 && read(pfd[0], &addr, sizeof(addr)) == sizeof(addr)) {
		t0 = now_s();
		for (size_t off = 0; off < len; off += CHUNK) {
			struct iovec l = {(void *)buf, CHUNK};
			struct iovec r = {(void *)(uintptr_t)(addr + off), CHUNK};

			if (process_vm_writev(pid, &l, 1, &r, 1, 0) != (ssize_t)CHUNK)
				break;
			if (off + CHUNK >= len)
				t = now_s() - t0;
		}
	}
	close(pfd[0]);
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	return t;
}

static int spot_check(pid_t pid, uint64_t addr, size_t len)
{
	uint64_t want[512], got[512];

	for (uint64_t i = 0; i < len / 4096; i += 997) {
		struct iovec l = {got, 4096}, r = {(void *)(uintptr_t)(addr + i * 4096), 4096};

		fill_page(want, i);
		if (process_vm_readv(pid, &l, 1, &r, 1, 0) != 4096 || memcmp(want, got, 4096))
			return -EIO;
	}
	return 0;
}

static int bench_one(size_t mib, const char *base)
{
	size_t len = mib << 20;
	struct rst_target_opts o = {.pidns = RST_PIDNS_AUTO};
	struct rst_ckpt_stats st, snap;
	struct rst_target *t = NULL;
	double rd, wr, fresh, ck, rs, t0;
	char dir[256], cmd[1200];
	uint8_t *buf = malloc(CHUNK);
	uint64_t addr;
	pid_t pid, here;
	int ret;

	snprintf(dir, sizeof(dir), "%s/haul-rst-bench-%d", base, (int)getpid());
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'; mkdir -p '%s'", dir, dir);
	if (!buf || system(cmd) != 0)
		return -ENOMEM;
	fill_page((uint64_t *)buf, 7);
	for (size_t off = 4096; off < CHUNK; off += 4096)
		memcpy(buf + off, buf, 4096);

	pid = spawn_holder(len, &addr);
	if (pid < 0)
		return -ECHILD;
	rd = time_read(pid, addr, len, buf);
	wr = time_file_write(dir, len, buf);
	/* A snapshot that leaves it running: memory copied while it runs. */
	ret = haul_checkpoint_images(pid, dir, true, NULL, &snap);
	if (ret) {
		pr_err_r(ret, "snapshot of %zu MiB failed", mib);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		goto out;
	}
	ret = haul_checkpoint_images(pid, dir, false, NULL, &st);
	waitpid(pid, NULL, 0);
	if (ret) {
		pr_err_r(ret, "checkpoint of %zu MiB failed", mib);
		goto out;
	}
	ck = st.total_ns / 1e9;
	/* Drop the page cache of the image? No: root may not; say it is warm. */
	fresh = time_fresh_write(len, buf);
	t0 = now_s();
	ret = rst_restore_images(dir, NULL, pid, &o, &t, &here);
	rs = now_s() - t0;
	if (ret) {
		pr_err_r(ret, "restore of %zu MiB failed", mib);
		goto out;
	}
	ret = spot_check(here, addr, len);
	if (ret)
		pr_err("restored memory of %zu MiB differs from the source", mib);
	kill(here, SIGKILL);
	rst_target_wait(t);
	rst_target_free(t);
	printf("rst_bench: %5zu MiB  read %.3f s (%.2f GB/s)  file write+fsync %.3f s (%.2f GB/s)  "
	       "checkpoint %.3f s (%.2f GB/s, stopped %.3f s)\n",
	       mib, rd, len / rd / 1e9, wr, len / wr / 1e9, ck, len / ck / 1e9, st.frozen_ns / 1e9);
	printf("rst_bench: %5zu MiB  fresh-memory write %.3f s (%.2f GB/s)  restore %.3f s "
	       "(%.2f GB/s, image in page cache)\n",
	       mib, fresh, len / fresh / 1e9, rs, len / rs / 1e9);
	printf("rst_bench: %5zu MiB  snapshot (--leave-running) %.3f s, stopped %.1f ms\n", mib,
	       snap.total_ns / 1e9, snap.frozen_ns / 1e6);
	printf("rst_bench: %5zu MiB  ratio checkpoint/read %.2f  checkpoint/write %.2f  "
	       "restore/fresh-write %.2f  snapshot-stop/checkpoint-stop %.3f\n",
	       mib, ck / rd, ck / wr, rs / fresh, (double)snap.frozen_ns / st.frozen_ns);
	fflush(stdout);
out:
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		pr_warn("cannot remove %s", dir);
	free(buf);
	return ret;
}

int main(int argc, char **argv)
{
	const char *base = getenv("RST_BENCH_DIR") ? getenv("RST_BENCH_DIR") : "/var/tmp";
	const char *env = getenv("RST_BENCH_MIB");
	char sizes[256];
	int ret = 0;

	log_init("rst_bench");
	if (argc > 1) {
		sizes[0] = '\0';
		for (int i = 1; i < argc; i++) {
			strncat(sizes, argv[i], sizeof(sizes) - strlen(sizes) - 2);
			strcat(sizes, " ");
		}
	} else {
		snprintf(sizes, sizeof(sizes), "%s", env ? env : "256 1024 4096");
	}
	printf("rst_bench: checkpoint to %s, restore from it; memory warm (filled just before)\n",
	       base);
	fflush(stdout);
	for (char *s = strtok(sizes, " "); s; s = strtok(NULL, " ")) {
		size_t mib = strtoul(s, NULL, 10);

		if (mib && bench_one(mib, base))
			ret = 1;
	}
	return ret;
}
