/*
 * misuse_target - a plain process for the misuse tests (tests/integration/
 * misuse.c), meant to be started under another uid with setpriv.
 *
 * usage: misuse_target TAG [nondumpable]
 *
 * With "nondumpable" it clears its dumpable flag first (as a setuid program
 * or one that asks for it would): /proc/PID files then belong to root and
 * only CAP_SYS_PTRACE may attach.  It prints "ready uid=U dumpable=D" once
 * set up, then "tick N" every 50 ms, so a test sees whether it runs, and
 * where (a restored copy goes on counting).  TAG only marks its command
 * line, so that a test can find its copies.
 */
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct timespec ts = {0, 50 * 1000000L};
	unsigned long n = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: misuse_target TAG [nondumpable]\n");
		return 2;
	}
	if (argc > 2 && !strcmp(argv[2], "nondumpable") && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) {
		perror("prctl(PR_SET_DUMPABLE)");
		return 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("ready uid=%u dumpable=%d\n", (unsigned)getuid(),
	       prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	for (;;) {
		nanosleep(&ts, NULL);
		printf("tick %lu\n", ++n);
	}
}
