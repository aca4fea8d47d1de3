/*
 * sigtrap_subject.c - a process whose SIGTRAP the restorer's batches must
 * not disturb (src/restore/target_batch.c): their blob ends in int3, whose
 * forced SIGTRAP would reset an ignored action or deliver a pending one.
 *   sigtrap_subject ignored|pending|caught OUT
 * ignored: SIGTRAP is SIG_IGN; pending: blocked and raised, so one is
 * queued; caught: a handler, unblocked.  Writes "ready" to OUT, then
 * sleeps in pause() until killed.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static void on_trap(int sig)
{
	(void)sig;
}

static int setup(const char *kind)
{
	sigset_t set;

	if (!strcmp(kind, "ignored"))
		return signal(SIGTRAP, SIG_IGN) == SIG_ERR ? -1 : 0;
	if (!strcmp(kind, "pending")) {
		sigemptyset(&set);
		sigaddset(&set, SIGTRAP);
		return sigprocmask(SIG_BLOCK, &set, NULL) || raise(SIGTRAP) ? -1 : 0;
	}
	if (!strcmp(kind, "caught"))
		return signal(SIGTRAP, on_trap) == SIG_ERR ? -1 : 0;
	return -1;
}

int main(int argc, char **argv)
{
	FILE *f;

	if (argc != 3 || setup(argv[1])) {
		fprintf(stderr, "usage: sigtrap_subject ignored|pending|caught OUT\n");
		return 2;
	}
	f = fopen(argv[2], "w");
	if (!f)
		return 1;
	fputs("ready\n", f);
	fclose(f);
	for (;;)
		pause();
}
