/*
 * rst_vmflags.c - VmFlags read from the kernel's vm_flags words (the BPF
 * iterator of src/restore/vmflags.c) must be exactly what smaps says, for
 * every flag haul carries and for those it refuses, and fall back to smaps
 * where a bit is unknown.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/vma.h"
#include "restore/restore_int.h"

#define LEN (64u << 10)

/* A child with VMAs of many kinds (split by advice on parts of them); waits on @hold. */
static pid_t subject(int hold, bool pkey)
{
	int ready[2];
	pid_t pid;
	char b;

	cr_assert_eq(pipe(ready), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (!pid) {
		const int anon = MAP_PRIVATE | MAP_ANONYMOUS;
		const int advice[] = {MADV_HUGEPAGE,  MADV_NOHUGEPAGE, MADV_DONTFORK,
				      MADV_DONTDUMP,  MADV_WIPEONFORK, MADV_RANDOM,
				      MADV_SEQUENTIAL};
		char *p;

		for (size_t i = 0; i < sizeof(advice) / sizeof(advice[0]); i++) {
			p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, anon, -1, 0);
			memset(p, 1, LEN);
			madvise(p + 4096, 2 * 4096, advice[i]); /* splits the VMA in three */
		}
		p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, anon | MAP_NORESERVE, -1, 0);
		mlock(p, 4096);
		p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		memset(p, 2, LEN);
		mmap(NULL, LEN, PROT_NONE, anon, -1, 0);
		mmap(NULL, LEN, PROT_READ | PROT_EXEC, anon, -1, 0);
		p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, anon | MAP_GROWSDOWN, -1, 0);
		p = mmap(NULL, LEN, PROT_READ, anon, -1, 0);
		syscall(SYS_mlock2, p, LEN, 1 /* MLOCK_ONFAULT */);
		if (pkey) {
			int key = (int)syscall(SYS_pkey_alloc, 0, 0);

			p = mmap(NULL, LEN, PROT_READ | PROT_WRITE, anon, -1, 0);
			if (key <= 0 ||
			    syscall(SYS_pkey_mprotect, p, LEN, PROT_READ | PROT_WRITE, key))
				_exit(77);
		}
		if (write(ready[1], "r", 1) != 1)
			_exit(1);
		read(hold, &b, 1);
		_exit(0);
	}
	close(ready[1]);
	if (read(ready[0], &b, 1) != 1) {
		int st;

		waitpid(pid, &st, 0);
		if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
			cr_skip_test("protection keys are not available on this CPU");
		cr_assert_fail("the subject could not set up its VMAs");
	}
	close(ready[0]);
	return pid;
}

static void assert_same(const struct haul_layout *a, const struct haul_layout *b)
{
	cr_assert_eq(a->n, b->n, "%zu VMAs from vm_flags, %zu from smaps", a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		const struct haul_vma *x = &a->v[i], *y = &b->v[i];

		cr_assert_eq(x->start, y->start);
		cr_assert_eq(x->end, y->end);
		cr_expect_eq(x->flags, y->flags,
			     "VMA %#llx-%#llx: flags %#x from vm_flags, %#x smaps",
			     (unsigned long long)x->start, (unsigned long long)x->end, x->flags,
			     y->flags);
		cr_expect_str_eq(x->uncarried, y->uncarried, "VMA %#llx-%#llx",
				 (unsigned long long)x->start, (unsigned long long)x->end);
	}
}

static void compare(bool pkey)
{
	struct haul_layout fast, slow;
	int hold[2];
	pid_t pid;

	if (!rst_vmflags_fast())
		cr_skip_test("no BPF task_vma iterator here (CAP_BPF, BTF): smaps is used");
	cr_assert_eq(pipe(hold), 0);
	pid = subject(hold[0], pkey);
	cr_assert_eq(rst_layout_read_flags(pid, &fast), 0);
	cr_assert_eq(haul_layout_read(pid, true, &slow), 0);
	assert_same(&fast, &slow);
	haul_layout_release(&fast);
	haul_layout_release(&slow);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(hold[0]);
	close(hold[1]);
}

Test(rst_vmflags, vm_flags_words_read_as_smaps_for_every_kind_of_vma, .timeout = 30)
{
	compare(false);
}

Test(rst_vmflags, a_protection_key_is_read_through_smaps_and_named, .timeout = 30)
{
	compare(true);
}

Test(rst_vmflags, haul_vmflags_smaps_turns_the_iterator_off, .timeout = 30)
{
	struct haul_layout l;

	setenv("HAUL_VMFLAGS", "smaps", 1);
	cr_assert_not(rst_vmflags_fast());
	cr_assert_eq(rst_layout_read_flags(getpid(), &l), 0);
	cr_assert_gt(l.n, 0);
	haul_layout_release(&l);
}

Test(rst_vmflags, a_process_that_is_gone_is_esrch, .timeout = 30)
{
	struct haul_layout l;
	pid_t pid = fork();

	cr_assert_geq(pid, 0);
	if (!pid)
		_exit(0);
	waitpid(pid, NULL, 0);
	cr_assert_eq(rst_layout_read_flags(pid, &l), -ESRCH);
}
