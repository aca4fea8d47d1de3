/*
 * rst_threads - a multi-threaded workload for checkpoint/restore.
 *
 * usage: rst_threads ITERATIONS
 * Three workers (named w0..w2) each run ITERATIONS steps: under a shared
 * mutex they add to their own slot and to a common counter and signal a
 * condition variable; they keep a thread-local sum, and sleep 1 ms.  The
 * main thread waits on the condition variable for progress, printing
 * "tick N", then joins the workers (which needs each worker's clear-tid
 * futex wake).  Every worker checks at the end that its TID and its name
 * are what they were.  The last line, "final <hash>", depends only on
 * ITERATIONS; problems print "ERROR ...".
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define NW 3

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static uint64_t slot[NW], total, results[NW];
static unsigned long long iters;
static __thread uint64_t tls;

static void *worker(void *arg)
{
	int k = (int)(intptr_t)arg;
	pid_t tid = syscall(SYS_gettid);
	char name[16], got[16] = "";

	snprintf(name, sizeof(name), "w%d", k);
	prctl(PR_SET_NAME, name);
	for (unsigned long long i = 0; i < iters; i++) {
		struct timespec ts = {0, 1000000};

		pthread_mutex_lock(&mu);
		slot[k] = slot[k] * 6364136223846793005ULL + i + (uint64_t)k;
		total++;
		pthread_cond_signal(&cv);
		pthread_mutex_unlock(&mu);
		tls += i * (uint64_t)(k + 1);
		nanosleep(&ts, NULL);
	}
	if (syscall(SYS_gettid) != tid)
		printf("ERROR worker %d changed tid %d -> %ld\n", k, (int)tid, syscall(SYS_gettid));
	prctl(PR_GET_NAME, got);
	if (strcmp(got, name))
		printf("ERROR worker %d lost its name: '%s'\n", k, got);
	results[k] = tls;
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t th[NW];
	uint64_t h = 1469598103934665603ULL, seen = 0;

	if (argc != 2)
		return 2;
	iters = strtoull(argv[1], NULL, 10);
	for (int k = 0; k < NW; k++)
		if (pthread_create(&th[k], NULL, worker, (void *)(intptr_t)k))
			return 2;
	pthread_mutex_lock(&mu);
	while (total < NW * iters) {
		pthread_cond_wait(&cv, &mu);
		if (total / 300 != seen / 300) {
			printf("tick %llu\n", (unsigned long long)total);
			fflush(stdout);
		}
		seen = total;
	}
	pthread_mutex_unlock(&mu);
	for (int k = 0; k < NW; k++)
		pthread_join(th[k], NULL);
	for (int k = 0; k < NW; k++) {
		h = (h ^ slot[k]) * 1099511628211ULL;
		h = (h ^ results[k]) * 1099511628211ULL;
	}
	h = (h ^ total) * 1099511628211ULL;
	printf("final %016llx %llu\n", (unsigned long long)h, (unsigned long long)total);
	return 0;
}
