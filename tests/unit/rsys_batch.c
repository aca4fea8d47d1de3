/*
 * rsys_batch.c - the table of a batch of injected calls (common/rsys.h):
 * its byte layout, how results come back (the first failure that may not
 * fail, a call that may, a call left out), and the blob itself, run here
 * in our own process on a copy whose final int3 is a ret: it makes the
 * calls in order, writes each result, stops at the first failure and
 * leaves in r12 the entries not done.  No root, no ptrace.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/rsys.h"

/* An unknown system call number: fails with ENOSYS. */
#define BAD_NR 0x7fff

static struct rsys_bcall call(long nr, uint64_t a0, uint32_t flags)
{
	struct rsys_bcall c = {.name = "test", .nr = nr, .flags = flags};

	c.args[0] = a0;
	return c;
}

Test(rsys_batch, an_entry_is_nr_flags_six_args_and_a_not_run_result_in_64_bytes)
{
	struct rsys_bcall c = {.nr = 257, .flags = RSYS_BMAYFAIL, .args = {1, 2, 3, 4, 5, 6}};
	uint8_t t[2 * RSYS_BENTRY_SIZE];
	uint32_t nr, flags;
	uint64_t a[6];
	int64_t ret;

	cr_assert_eq(RSYS_BENTRY_SIZE, 64);
	memset(t, 0xaa, sizeof(t));
	rsys_batch_encode(&c, 1, t);
	memcpy(&nr, t, 4);
	memcpy(&flags, t + 4, 4);
	memcpy(a, t + 8, 48);
	memcpy(&ret, t + 56, 8);
	cr_assert_eq(nr, 257);
	cr_assert_eq(flags, RSYS_BMAYFAIL);
	for (int i = 0; i < 6; i++)
		cr_assert_eq(a[i], (uint64_t)i + 1);
	cr_assert_eq(ret, RSYS_BNOT_RUN);
	cr_assert_eq(t[RSYS_BENTRY_SIZE], 0xaa, "wrote past its entries");
}

static void set_ret(uint8_t *t, size_t i, int64_t v)
{
	memcpy(t + i * RSYS_BENTRY_SIZE + 56, &v, 8);
}

Test(rsys_batch, results_come_back_and_all_done_is_success)
{
	struct rsys_bcall c[3] = {call(1, 0, 0), call(2, 0, 0), call(3, 0, 0)};
	uint8_t t[3 * RSYS_BENTRY_SIZE];
	size_t failed = 99;

	rsys_batch_encode(c, 3, t);
	set_ret(t, 0, 0);
	set_ret(t, 1, 7);
	set_ret(t, 2, 0x7f0000000000);
	cr_assert_eq(rsys_batch_decode(c, 3, t, &failed), 0);
	cr_assert_eq(c[1].ret, 7);
	cr_assert_eq(c[2].ret, 0x7f0000000000, "an address is not an error");
	cr_assert_eq(failed, 99, "failed was set on success");
}

Test(rsys_batch, the_first_failure_is_named_by_index_and_errno)
{
	struct rsys_bcall c[4] = {call(1, 0, 0), call(2, 0, 0), call(3, 0, 0), call(4, 0, 0)};
	uint8_t t[4 * RSYS_BENTRY_SIZE];
	size_t failed = 99;

	rsys_batch_encode(c, 4, t);
	set_ret(t, 0, 0);
	set_ret(t, 1, -EPERM);
	cr_assert_eq(rsys_batch_decode(c, 4, t, &failed), -EPERM);
	cr_assert_eq(failed, 1);
	cr_assert_eq(c[2].ret, RSYS_BNOT_RUN, "a call after the failure ran");
}

Test(rsys_batch, a_call_that_may_fail_does_not_stop_the_list)
{
	struct rsys_bcall c[2] = {call(1, 0, RSYS_BMAYFAIL), call(2, 0, 0)};
	uint8_t t[2 * RSYS_BENTRY_SIZE];
	size_t failed = 99;

	rsys_batch_encode(c, 2, t);
	set_ret(t, 0, -ENOMEM);
	set_ret(t, 1, 0);
	cr_assert_eq(rsys_batch_decode(c, 2, t, &failed), 0);
	cr_assert_eq(c[0].ret, -ENOMEM);
}

Test(rsys_batch, a_call_left_out_without_a_failure_is_a_protocol_error)
{
	struct rsys_bcall c[2] = {call(1, 0, 0), call(2, 0, 0)};
	uint8_t t[2 * RSYS_BENTRY_SIZE];
	size_t failed = 99;

	rsys_batch_encode(c, 2, t);
	set_ret(t, 0, 0);
	cr_assert_eq(rsys_batch_decode(c, 2, t, &failed), -EPROTO);
	cr_assert_eq(failed, 1);
}

/* The blob, made to return instead of trapping; *@left: r12 at its end. */
static void run_blob(void *table, size_t n, uint64_t *left)
{
	uint8_t *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC,
			     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	uint64_t r12;

	if (code == MAP_FAILED)
		cr_skip_test("cannot map executable memory here (W^X policy?)");
	memcpy(code, RSYS_BATCH_CODE, sizeof(RSYS_BATCH_CODE));
	cr_assert_eq(code[sizeof(RSYS_BATCH_CODE) - 1], 0xcc, "the blob does not end in int3");
	code[sizeof(RSYS_BATCH_CODE) - 1] = 0xc3; /* ret */
	/* below the red zone, as a call from inline asm must be */
	__asm__ volatile("sub $128, %%rsp\n\t"
			 "mov %1, %%rbx\n\t"
			 "mov %2, %%r12\n\t"
			 "call *%3\n\t"
			 "add $128, %%rsp\n\t"
			 "mov %%r12, %0"
			 : "=r"(r12)
			 : "r"(table), "r"((uint64_t)n), "r"(code)
			 : "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
			   "r12", "memory", "cc");
	*left = r12;
	munmap(code, 4096);
}

Test(rsys_batch, the_blob_runs_every_call_in_order_and_writes_each_result)
{
	struct rsys_bcall c[3] = {call(SYS_getpid, 0, 0), call(SYS_gettid, 0, 0),
				  call(SYS_getppid, 0, 0)};
	uint8_t t[3 * RSYS_BENTRY_SIZE];
	uint64_t left = 99;
	size_t failed;

	rsys_batch_encode(c, 3, t);
	run_blob(t, 3, &left);
	cr_assert_eq(left, 0, "%llu entries left", (unsigned long long)left);
	cr_assert_eq(rsys_batch_decode(c, 3, t, &failed), 0);
	cr_assert_eq(c[0].ret, getpid());
	cr_assert_eq(c[1].ret, (long)syscall(SYS_gettid));
	cr_assert_eq(c[2].ret, getppid());
}

Test(rsys_batch, the_blob_stops_at_the_first_failure_and_leaves_its_index)
{
	struct rsys_bcall c[3] = {call(SYS_getpid, 0, 0), call(BAD_NR, 0, 0),
				  call(SYS_getppid, 0, 0)};
	uint8_t t[3 * RSYS_BENTRY_SIZE];
	uint64_t left = 99;
	size_t failed = 99;

	rsys_batch_encode(c, 3, t);
	run_blob(t, 3, &left);
	cr_assert_eq(3 - left, 1, "stopped at %llu", (unsigned long long)(3 - left));
	cr_assert_eq(rsys_batch_decode(c, 3, t, &failed), -ENOSYS);
	cr_assert_eq(failed, 1);
	cr_assert_eq(c[2].ret, RSYS_BNOT_RUN, "the call after the failure ran");
}

Test(rsys_batch, the_blob_goes_on_past_a_call_that_may_fail)
{
	struct rsys_bcall c[2] = {call(BAD_NR, 0, RSYS_BMAYFAIL), call(SYS_getpid, 0, 0)};
	uint8_t t[2 * RSYS_BENTRY_SIZE];
	uint64_t left = 99;
	size_t failed;

	rsys_batch_encode(c, 2, t);
	run_blob(t, 2, &left);
	cr_assert_eq(left, 0);
	cr_assert_eq(rsys_batch_decode(c, 2, t, &failed), 0);
	cr_assert_eq(c[0].ret, -ENOSYS);
	cr_assert_eq(c[1].ret, getpid());
}
