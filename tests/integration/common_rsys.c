/*
 * common_rsys.c - injected system calls run inside a live process, and the
 * process carries on afterwards (its interrupted syscall restarts).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/rsys.h"
#include "common/vma.h"
#include "th_proc.h"

/* A child blocked in read(2) on @in; for each byte it gets it writes getpid() to @out. */
static pid_t spawn_echo(int *to_child, int *from_child)
{
	int a[2], b[2];
	pid_t pid;

	cr_assert_eq(pipe(a), 0);
	cr_assert_eq(pipe(b), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		char c;
		close(a[1]);
		close(b[0]);
		while (read(a[0], &c, 1) == 1) {
			pid_t me = getpid();
			if (write(b[1], &me, sizeof(me)) != sizeof(me))
				_exit(3);
		}
		_exit(0);
	}
	close(a[0]);
	close(b[1]);
	*to_child = a[1];
	*from_child = b[0];
	return pid;
}

static void ping(int to, int from, pid_t expect)
{
	pid_t got = 0;

	cr_assert_eq(write(to, "x", 1), 1);
	cr_assert_eq(read(from, &got, sizeof(got)), (ssize_t)sizeof(got));
	cr_assert_eq(got, expect);
}

Test(rsys, injected_calls_run_and_blocked_read_restarts, .timeout = 20)
{
	int to, from, status;
	pid_t pid = spawn_echo(&to, &from);
	struct rsys r;
	uint64_t args[6] = {0}, scratch;
	long ret;
	char buf[16] = "hello";

	ping(to, from, pid);
	/* let it block in read() again */
	cr_assert_eq(th_wait_sleeping(pid, 0, "pipe_read", 5000), 0,
		     "pid %d did not block in read() again", (int)pid);
	cr_assert_eq(rsys_seize(&r, pid), 0);
	cr_assert(r.in_syscall_restart, "the child was in read(), expected a rewound syscall");
	cr_assert_eq(rsys_call(&r, SYS_getpid, args, &ret), 0);
	cr_assert_eq(ret, pid);
	cr_assert_eq(rsys_scratch(&r, &scratch), 0);
	cr_assert_eq(rsys_write(pid, scratch, buf, sizeof(buf)), 0);
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(rsys_read(pid, scratch, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "hello");
	args[0] = 0xdead000; /* a bad fd number as close() argument gives -EBADF */
	cr_assert_eq(rsys_call(&r, SYS_close, args, &ret), 0);
	cr_assert_eq(ret, -EBADF);
	cr_assert_eq(rsys_release(&r), 0);

	/* The scratch mapping is gone and the child still answers. */
	struct haul_layout l;
	cr_assert_eq(haul_layout_read(pid, true, &l), 0);
	cr_assert_null(haul_layout_find(&l, scratch));
	haul_layout_release(&l);
	ping(to, from, pid);
	close(to);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(from);
}

Test(vma, layout_has_heap_stack_vdso_and_flags, .timeout = 10)
{
	struct haul_layout l;
	bool heap = false, stack = false, vdso = false;
	void *p = mmap(NULL, 1 << 21, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *m = malloc(1 << 16);

	cr_assert_neq(p, MAP_FAILED);
	cr_assert_eq(madvise(p, 1 << 21, MADV_HUGEPAGE), 0);
	m[0] = 1;
	cr_assert_eq(haul_layout_read(getpid(), true, &l), 0);
	for (size_t i = 0; i < l.n; i++) {
		heap |= !!(l.v[i].flags & HAUL_VMA_HEAP);
		stack |= (l.v[i].flags & (HAUL_VMA_STACK | HAUL_VMA_GROWSDOWN)) ==
			 (HAUL_VMA_STACK | HAUL_VMA_GROWSDOWN);
		vdso |= !!(l.v[i].flags & HAUL_VMA_VDSO);
		if (i)
			cr_assert_geq(l.v[i].start, l.v[i - 1].end);
	}
	cr_assert(heap && stack && vdso);
	const struct haul_vma *v = haul_layout_find(&l, (uint64_t)(uintptr_t)p);
	cr_assert_not_null(v);
	cr_assert(v->flags & HAUL_VMA_HUGEPAGE);
	cr_assert(v->flags & HAUL_VMA_ANON);
	cr_assert_eq(v->prot, PROT_READ | PROT_WRITE);
	haul_layout_release(&l);
	free(m);
	munmap(p, 1 << 21);
}
