/*
 * common_rsys.c - injected system calls run inside a live process, and the
 * process carries on afterwards (its interrupted syscall restarts); a batch
 * of them runs in one round trip there, and a SIGTRAP sent to the process
 * meanwhile is not lost.  A thread that has exited but is still listed is
 * taken as gone, not as a refusal.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/proc.h"
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

/* The scratch mapping (and its code page) are gone, the child still answers and exits. */
static void assert_released(pid_t pid, int to, int from, uint64_t scratch)
{
	struct haul_layout l;
	int status;

	cr_assert_eq(haul_layout_read(pid, true, &l), 0);
	cr_assert_null(haul_layout_find(&l, scratch));
	cr_assert_null(haul_layout_find(&l, scratch + RSYS_SCRATCH_CODE));
	haul_layout_release(&l);
	ping(to, from, pid);
	close(to);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(from);
}

Test(rsys, injected_calls_run_and_blocked_read_restarts, .timeout = 20)
{
	int to, from;
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

	assert_released(pid, to, from, scratch);
}

/* The echo child @pid seized in read(), with its scratch mapping and batch code. */
static void seize_for_batches(struct rsys *r, int to, int from, pid_t pid, uint64_t *scratch,
			      uint64_t *code)
{
	ping(to, from, pid);
	cr_assert_eq(th_wait_sleeping(pid, 0, "pipe_read", 5000), 0);
	cr_assert_eq(rsys_seize(r, pid), 0);
	cr_assert_eq(rsys_scratch(r, scratch), 0);
	cr_assert_eq(rsys_batch_code(r, code), 0);
	cr_assert_eq(*code, *scratch + RSYS_SCRATCH_CODE, "no batch code in a plain process");
}

/* @n calls of getpid, and one of close(bad fd) that may fail, in @r's batch. */
static void run_getpids(struct rsys *r, uint64_t code, uint64_t scratch, size_t n, pid_t pid)
{
	struct rsys_bcall c[33];
	size_t failed;

	cr_assert_leq(n, 32);
	for (size_t i = 0; i < n; i++)
		c[i] = (struct rsys_bcall){.name = "getpid", .nr = SYS_getpid};
	c[n] = (struct rsys_bcall){
		.name = "close", .nr = SYS_close, .args = {0xdead000}, .flags = RSYS_BMAYFAIL};
	cr_assert_eq(rsys_batch(r, code, scratch + RSYS_SCRATCH_TABLE, c, n + 1, &failed), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(c[i].ret, pid, "call %zu: %ld", i, c[i].ret);
	cr_assert_eq(c[n].ret, -EBADF);
}

Test(rsys, a_batch_in_a_live_process_is_one_round_trip_and_leaves_nothing, .timeout = 20)
{
	int to, from;
	pid_t pid = spawn_echo(&to, &from);
	uint64_t scratch, code;
	unsigned long calls;
	struct rsys r;

	seize_for_batches(&r, to, from, pid, &scratch, &code);
	calls = r.calls;
	run_getpids(&r, code, scratch, 32, pid);
	cr_assert_eq(r.calls, calls + 1, "33 calls took %lu round trips", r.calls - calls);
	cr_assert_eq(rsys_release(&r), 0);

	assert_released(pid, to, from, scratch);
}

Test(rsys, a_sigtrap_sent_during_a_batch_is_queued_again_not_lost, .timeout = 20)
{
	struct {
		uint64_t off;
		uint32_t flags; /* 0: the thread's own queue */
		int32_t nr;
	} pa = {0, 0, 4};
	siginfo_t si[4];
	int to, from, status, n;
	pid_t pid = spawn_echo(&to, &from);
	uint64_t scratch, code;
	struct rsys r;

	seize_for_batches(&r, to, from, pid, &scratch, &code);
	/* pending while the thread is stopped; the batch unblocks SIGTRAP, so it takes it */
	cr_assert_eq(syscall(SYS_tgkill, pid, pid, SIGTRAP), 0);
	run_getpids(&r, code, scratch, 8, pid);
	n = (int)ptrace(PTRACE_PEEKSIGINFO, pid, &pa, si);
	cr_assert_eq(n, 1, "%d signals queued to the thread after the batch, expected the SIGTRAP",
		     n);
	cr_assert_eq(si[0].si_signo, SIGTRAP);
	cr_assert_eq(si[0].si_code, SI_TKILL, "si_code %d: not the sender's", si[0].si_code);
	cr_assert_eq(si[0].si_pid, getpid());
	/* its default action would dump core: end the child here */
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	close(to);
	close(from);
}

static void *sleeper(void *arg)
{
	(void)arg;
	pause();
	return NULL;
}

/*
 * ptrace refuses a thread that has exited but is still listed (an exit
 * state) with EPERM, not ESRCH: a busy process's thread that just ended
 * then failed the tracker's and the dump's stops ("traced by someone
 * else?"; seen in the soft-dirty qemu test as its writers quit).  A main
 * thread that called pthread_exit stays a zombie while the others run:
 * such a thread, deterministically.
 */
Test(rsys, a_thread_that_exited_is_gone_not_a_refusal, .timeout = 20)
{
	pid_t pid = fork();
	char st = 0;
	int status;

	cr_assert_geq(pid, 0);
	if (pid == 0) {
		pthread_t t;

		if (pthread_create(&t, NULL, sleeper, NULL))
			_exit(1);
		pthread_exit(NULL);
	}
	for (int i = 0; i < 2000 && st != 'Z'; i++) {
		haul_proc_stat_field(pid, 3, &st, NULL);
		usleep(1000);
	}
	cr_assert_eq(st, 'Z', "the main thread did not become a zombie (state %c)", st);
	cr_assert_eq(ptrace(PTRACE_SEIZE, pid, 0, 0), -1);
	cr_assert_eq(errno, EPERM, "ptrace said %s", strerror(errno));
	cr_assert(rsys_thread_gone(pid));
	cr_assert_eq(rsys_seize_start(pid), -ESRCH);
	cr_assert_not(rsys_thread_gone(getpid()));
	kill(pid, SIGKILL);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
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
