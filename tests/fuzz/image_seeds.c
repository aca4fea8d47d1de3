/*
 * image_seeds.c - write a seed corpus for image_fuzz into the directory
 * given as argv[1]: the real process state of a child (dumped as haul
 * checkpoint does; needs ptrace, so root or a permissive yama), and the
 * index.img body of a committed image holding it with its layout and a few
 * pages, in image_fuzz's input format (mode byte first).  Without ptrace,
 * the index seed is written with a small opaque state instead.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pstore.h"
#include "restore/restore.h"

static void put(const char *dir, const char *name, uint8_t mode, uint8_t arg, const void *p,
		size_t n)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "wb");
	if (!f || fputc(mode, f) == EOF || (!(mode & 1) && fputc(arg, f) == EOF) ||
	    fwrite(p, 1, n, f) != n) {
		perror(path);
		exit(1);
	}
	fclose(f);
}

/* The state of a paused child, or NULL. */
static uint8_t *child_state(size_t *len)
{
	struct rst_seized *sz;
	uint8_t *blob = NULL;
	pid_t pid = fork();

	if (pid == 0) {
		/* nothing inherited that the dump would refuse (pipes shared with others) */
		int null = open("/dev/null", O_RDWR);

		for (int fd = 0; fd < 1024; fd++)
			if (fd != null)
				close(fd);
		for (int fd = 0; fd < 3; fd++)
			dup2(null, fd);
		for (;;)
			pause();
	}
	if (pid < 0)
		return NULL;
	usleep(20000);
	if (!rst_seize(pid, &sz)) {
		if (rst_dump_state(sz, &blob, len))
			blob = NULL;
		rst_release(sz);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return blob;
}

int main(int argc, char **argv)
{
	static uint8_t pages[4 * 4096], body[1 << 20];
	struct haul_vma v[2] = {
		{.start = 0x10000, .end = 0x50000, .prot = 3, .flags = 2},
		{.start = 0x80000, .end = 0x90000, .prot = 1, .flags = 4, .path = "/etc/hostname"}};
	struct haul_layout l = {v, 2};
	char tmp[64], path[160];
	struct pstore *s;
	struct pstore_proc *p;
	uint8_t *state;
	size_t slen = 0;
	ssize_t n;
	int fd;

	if (argc != 2)
		return 2;
	log_level = LOG_ERR;
	state = child_state(&slen);
	if (state)
		put(argv[1], "state", 1, 0, state, slen);
	snprintf(tmp, sizeof(tmp), "/tmp/haul-image-seeds-%d", (int)getpid());
	mkdir(tmp, 0700);
	memset(pages, 'x', sizeof(pages));
	memset(pages + 4096, 0, 4096);
	if (pstore_open(tmp, &s) || pstore_proc_get(s, 4242, true, &p) ||
	    pstore_set_layout(p, &l) ||
	    pstore_set_state(p, state ? (void *)state : "state", state ? slen : 5) ||
	    pstore_put(p, 0x10000, pages, 4) || pstore_commit(p, 1))
		return 1;
	pstore_close(s);
	snprintf(path, sizeof(path), "%s/4242/index.img", tmp);
	fd = open(path, O_RDONLY);
	n = fd >= 0 ? pread(fd, body, sizeof(body), 32) : -1;
	if (n <= 0)
		return 1;
	close(fd);
	put(argv[1], "index", 0, 4, body, (size_t)n);
	snprintf(path, sizeof(path), "rm -rf %s", tmp);
	free(state);
	return system(path) ? 1 : 0;
}
