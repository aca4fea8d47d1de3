/*
 * rst_exec - run a program with nothing but files on its fds, as haul
 * checkpoint requires: stdin, stdout and stderr from/to the given paths,
 * every other inherited fd closed (a test runner's pipes would be refused).
 *
 * usage: rst_exec IN OUT ERR PROGRAM [ARGS...]   (OUT and ERR are truncated)
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int in, out, err;

	if (argc < 5) {
		fprintf(stderr, "usage: %s IN OUT ERR PROGRAM [ARGS...]\n", argv[0]);
		return 2;
	}
	in = open(argv[1], O_RDONLY);
	out = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	err = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 ||
	    dup2(err, 2) < 0) {
		perror("rst_exec");
		return 2;
	}
	closefrom(3);
	execvp(argv[4], argv + 4);
	perror(argv[4]);
	return 127;
}
