/*
 * common_cpuweight.c - haul's threads at a lower CPU weight and back
 * (common/cpuweight.h): every thread of the process moves, threads started
 * while lowered go back too, the kept thread never moves, and the same
 * weight twice does nothing.  Going back needs CAP_SYS_NICE (or a high
 * RLIMIT_NICE): without it the tests are skipped.  Each Criterion test runs
 * in its own process, so no nice outlives a test.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common/cpuweight.h"

struct helper {
	pthread_t th;
	pid_t tid;
	pthread_barrier_t up, done;
};

static void *helper_main(void *arg)
{
	struct helper *h = arg;

	h->tid = (pid_t)syscall(SYS_gettid);
	pthread_barrier_wait(&h->up);
	pthread_barrier_wait(&h->done);
	return NULL;
}

static void helper_start(struct helper *h)
{
	pthread_barrier_init(&h->up, NULL, 2);
	pthread_barrier_init(&h->done, NULL, 2);
	cr_assert_eq(pthread_create(&h->th, NULL, helper_main, h), 0);
	pthread_barrier_wait(&h->up);
}

static void helper_stop(struct helper *h)
{
	pthread_barrier_wait(&h->done);
	pthread_join(h->th, NULL);
	pthread_barrier_destroy(&h->up);
	pthread_barrier_destroy(&h->done);
}

static int nice_of(pid_t tid)
{
	int n = 0;

	cr_assert_eq(haul_cpuweight_thread_nice(tid, &n), 0, "cannot read the nice of %d", tid);
	return n;
}

static pid_t self(void)
{
	return (pid_t)syscall(SYS_gettid);
}

/* Lower @w by @nice, or skip the test where the process could not go back. */
static void lower_or_skip(struct haul_cpuweight *w, int nice)
{
	int ret = haul_cpuweight_set(w, nice);

	if (ret == -EPERM)
		cr_skip_test("no CAP_SYS_NICE: the nice could not be raised back");
	cr_assert_eq(ret, 0, "haul_cpuweight_set: %d", ret);
}

Test(common_cpuweight, lowers_every_thread_and_puts_them_back)
{
	struct haul_cpuweight w;
	struct helper h;
	int base;

	helper_start(&h);
	haul_cpuweight_init(&w, 0);
	base = nice_of(self());
	lower_or_skip(&w, 5);
	cr_assert_eq(nice_of(self()), base + 5);
	cr_assert_eq(nice_of(h.tid), base + 5);
	cr_assert_eq(haul_cpuweight_set(&w, 0), 0);
	cr_assert_eq(nice_of(self()), base);
	cr_assert_eq(nice_of(h.tid), base);
	helper_stop(&h);
}

Test(common_cpuweight, leaves_the_kept_thread_at_full_weight)
{
	struct haul_cpuweight w;
	struct helper h;
	int base;

	helper_start(&h);
	haul_cpuweight_init(&w, h.tid);
	base = nice_of(self());
	lower_or_skip(&w, 7);
	cr_assert_eq(nice_of(self()), base + 7);
	cr_assert_eq(nice_of(h.tid), base, "the kept thread was lowered");
	cr_assert_eq(haul_cpuweight_set(&w, 0), 0);
	helper_stop(&h);
}

Test(common_cpuweight, a_thread_started_while_lowered_goes_back_too)
{
	struct haul_cpuweight w;
	struct helper h;
	int base;

	haul_cpuweight_init(&w, 0);
	base = nice_of(self());
	lower_or_skip(&w, 4);
	helper_start(&h); /* inherits the lowered nice */
	cr_assert_eq(nice_of(h.tid), base + 4);
	cr_assert_eq(haul_cpuweight_set(&w, 0), 0);
	cr_assert_eq(nice_of(h.tid), base);
	helper_stop(&h);
}

Test(common_cpuweight, caps_the_nice_at_19)
{
	struct haul_cpuweight w;

	haul_cpuweight_init(&w, 0);
	lower_or_skip(&w, 40);
	cr_assert_eq(nice_of(self()), 19);
	cr_assert_eq(haul_cpuweight_set(&w, 0), 0);
}

Test(common_cpuweight, the_same_weight_again_changes_nothing)
{
	struct haul_cpuweight w;
	int base;

	haul_cpuweight_init(&w, 0);
	base = nice_of(self());
	cr_assert_eq(haul_cpuweight_set(&w, 0), 0);
	cr_assert_eq(nice_of(self()), base);
	lower_or_skip(&w, 3);
	/* a thread moved by someone else stays where it was put: no walk for the same value */
	cr_assert_eq(setpriority(PRIO_PROCESS, (id_t)self(), base + 1), 0);
	cr_assert_eq(haul_cpuweight_set(&w, 3), 0);
	cr_assert_eq(nice_of(self()), base + 1);
	cr_assert_eq(haul_cpuweight_set(&w, 0), 0);
}
