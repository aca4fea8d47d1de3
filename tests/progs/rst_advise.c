/*
 * rst_advise.c - a process whose VMA advice changes on request
 * (tests/integration/rst_prep.c).  Maps RST_ADVISE_SIZE bytes at
 * RST_ADVISE_ADDR, advises MADV_HUGEPAGE and fills them; on SIGUSR1 it
 * advises MADV_NOHUGEPAGE on the same whole range (maps does not change,
 * only VmFlags do) and stops itself.
 */
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define RST_ADVISE_ADDR 0x200000000000ULL
#define RST_ADVISE_SIZE (8u << 20)

static void on_usr1(int sig)
{
	(void)sig;
	madvise((void *)(uintptr_t)RST_ADVISE_ADDR, RST_ADVISE_SIZE, MADV_NOHUGEPAGE);
	raise(SIGSTOP);
}

int main(void)
{
	void *p = mmap((void *)(uintptr_t)RST_ADVISE_ADDR, RST_ADVISE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (p != (void *)(uintptr_t)RST_ADVISE_ADDR)
		return 2;
	if (madvise(p, RST_ADVISE_SIZE, MADV_HUGEPAGE))
		return 3;
	memset(p, 1, RST_ADVISE_SIZE);
	signal(SIGUSR1, on_usr1);
	for (;;)
		pause();
}
