/*
 * rst_prep.c - VmFlags read before the stop (rst_dump_prepare) must still
 * be the stopped process's: taken from the prepared layout only when the
 * process took no mmap write lock since, read from smaps otherwise.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "image.pb-c.h"
#include "restore/restore.h"

#define REGION_ADDR 0x200000000000ULL /* as tests/progs/rst_advise.c */
#define REGION	    (8u << 20)

/*
 * Whether @pid is ready: rst_advise catches SIGUSR1 only once it has mapped,
 * advised and filled the region, so SigCgt is its ready signal (a SIGUSR1
 * sent before would kill it).
 */
static bool ready(pid_t pid)
{
	char path[64], line[256];
	unsigned long long cgt = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "SigCgt: %llx", &cgt) == 1)
			break;
	fclose(f);
	return cgt & (1ull << (SIGUSR1 - 1));
}

/*
 * rst_advise with only /dev/null fds: it has advised the region
 * MADV_HUGEPAGE and filled it; SIGUSR1 makes it advise MADV_NOHUGEPAGE and stop.
 */
static pid_t spawn(void)
{
	const char *progs = getenv("HAUL_PROGS");
	char bin[512];
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/rst_advise", progs ? progs : "build/progs");
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);

		if (nul < 0 || dup2(nul, 0) < 0 || dup2(nul, 1) < 0 || dup2(nul, 2) < 0)
			_exit(126);
		closefrom(3);
		execl(bin, bin, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 1000 && !ready(pid); i++)
		usleep(10000);
	cr_assert(ready(pid), "%s did not start", bin);
	return pid;
}

/* Wait until @pid stops itself or is stopped (a group stop). */
static void wait_stopped(pid_t pid)
{
	int status;

	cr_assert_eq(waitpid(pid, &status, WUNTRACED), pid);
	cr_assert(WIFSTOPPED(status), "child did not stop: status %#x", status);
}

/* Seize stopped @pid, dump with @p, and give the flags of the region's VMA. */
static uint32_t dump_region_flags(pid_t pid, struct rst_dump_prep *p)
{
	Haul__Img__ProcessState *ps;
	struct rst_seized *s;
	uint32_t flags = 0;
	bool found = false;
	uint8_t *blob;
	size_t len;

	cr_assert_eq(rst_seize(pid, &s), 0);
	cr_assert_eq(rst_dump_state_prepared(s, p, &blob, &len), 0);
	rst_kill_seized(s);
	waitpid(pid, NULL, 0);
	ps = haul__img__process_state__unpack(NULL, len, blob);
	cr_assert_not_null(ps);
	for (size_t i = 0; i < ps->n_vmas; i++)
		if (ps->vmas[i]->start <= REGION_ADDR && ps->vmas[i]->end >= REGION_ADDR + REGION) {
			flags = ps->vmas[i]->flags;
			found = true;
		}
	haul__img__process_state__free_unpacked(ps, NULL);
	free(blob);
	cr_assert(found, "the region's VMA is not in the image");
	return flags;
}

static void skip_without_tracefs(void)
{
	struct stat st;

	if (stat("/sys/kernel/tracing/events/mmap_lock", &st) &&
	    stat("/sys/kernel/debug/tracing/events/mmap_lock", &st))
		cr_skip_test("no mmap_lock tracepoint (tracefs): the fast path cannot be used");
}

Test(rst_prep, unchanged_process_dumps_prepared_vmflags_without_smaps, .timeout = 30)
{
	struct rst_dump_prep *p = NULL;
	uint32_t flags;
	pid_t pid = spawn();

	cr_assert_eq(rst_dump_prepare(pid, &p), 0);
	skip_without_tracefs();
	cr_assert_eq(rst_dump_prepare(pid, &p), 0); /* again: nothing changed, nothing read */
	kill(pid, SIGSTOP);
	wait_stopped(pid);
	flags = dump_region_flags(pid, p);
	cr_expect(rst_dump_prep_fast(p), "the dump read smaps although nothing changed");
	cr_expect(flags & HAUL_VMA_HUGEPAGE, "VmFlags lost: %#x", flags);
	rst_dump_prep_free(p);
}

Test(rst_prep, advice_changed_after_prepare_is_dumped_as_it_is_at_the_stop, .timeout = 30)
{
	struct rst_dump_prep *p = NULL;
	uint32_t flags;
	pid_t pid = spawn();

	cr_assert_eq(rst_dump_prepare(pid, &p), 0);
	/* Same range, prot and file: only VmFlags tell the change. */
	kill(pid, SIGUSR1);
	wait_stopped(pid);
	flags = dump_region_flags(pid, p);
	cr_expect(!rst_dump_prep_fast(p), "the dump trusted VmFlags that had changed");
	cr_expect(flags & HAUL_VMA_NOHUGE, "MADV_NOHUGEPAGE not dumped: %#x", flags);
	cr_expect(!(flags & HAUL_VMA_HUGEPAGE), "stale MADV_HUGEPAGE dumped: %#x", flags);
	rst_dump_prep_free(p);
}

Test(rst_prep, without_prepare_the_dump_reads_smaps, .timeout = 30)
{
	uint32_t flags;
	pid_t pid = spawn();

	kill(pid, SIGSTOP);
	wait_stopped(pid);
	flags = dump_region_flags(pid, NULL);
	cr_expect(flags & HAUL_VMA_HUGEPAGE, "VmFlags lost: %#x", flags);
}
