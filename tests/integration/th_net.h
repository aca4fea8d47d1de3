/*
 * th_net.h - test helper: two "hosts" as network namespaces joined by veth,
 * and small process/file utilities for integration tests.
 *
 * Host A is 198.18.0.1, host B 198.18.0.2 (RFC 2544 benchmark space, only ever
 * inside the namespaces); names carry the test's tag and pid, so concurrent
 * tests never collide.  Everything returns 0 or -errno unless said otherwise.
 */
#ifndef HAUL_TESTS_TH_NET_H
#define HAUL_TESTS_TH_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define TH_IP_A "198.18.0.1"
#define TH_IP_B "198.18.0.2"

struct th_net {
	char a[48], b[48];   /* netns names */
	char va[16], vb[16]; /* veth ends: va in a, vb in b */
	bool made;
};

/*
 * Make the two namespaces and the link; @rate_mbit > 0 caps A->B (and B->A)
 * with a tbf qdisc.  -EOPNOTSUPP when `ip` or netns are unavailable.
 */
int th_net_create(struct th_net *n, const char *tag, unsigned rate_mbit);
/* Delete both namespaces (and so the veth). Safe to call twice. */
void th_net_destroy(struct th_net *n);
/* Take the link down (or up) on both ends. */
int th_net_link(struct th_net *n, bool up);

/* Run a shell command (printf format); returns its exit status or -errno. */
int th_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A shell command line: its stdout and stderr (at most @cap bytes) into @out, logged; its exit status. */
int th_run(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/*
 * fork + setns(@netns, NULL = stay) + exec @argv with stdout/stderr sent to
 * @out_path (appended; NULL = /dev/null) and stdin from /dev/null.  The
 * child is in a new process group.  Returns its pid or -errno.
 */
pid_t th_spawn(const char *netns, char *const argv[], const char *out_path);
/* Like th_spawn but stdout/stderr go to a pipe whose read end is *@fd. */
pid_t th_spawn_pipe(const char *netns, char *const argv[], int *fd);

/* Read lines from @fd until one contains @needle; 0, -ETIMEDOUT or -EPIPE (EOF). */
int th_wait_line(int fd, const char *needle, int timeout_ms, char *line, size_t len);
/*
 * The next line of output that a program which has exited (or is exiting)
 * left in @fd: 0, -EPIPE at EOF, or -ETIMEDOUT after TH_LINE_IDLE_MS without
 * a byte (another process may hold the pipe open).  Unlike th_wait_line with
 * a short timeout, a long line read on a loaded host is not cut off.
 */
#define TH_LINE_IDLE_MS 500
int th_read_line(int fd, char *line, size_t len);
/* Poll @path until a line after byte @from contains @needle (the last such line). */
int th_wait_file(const char *path, size_t from, const char *needle, int timeout_ms, char *line,
		 size_t len);
/* The size of @path now (0 when missing). */
size_t th_file_size(const char *path);

/* Send @sig to @pid and reap it if it is our child; wait up to @timeout_ms for it to go. */
void th_kill(pid_t pid, int sig, int timeout_ms);
/* Wait for our child @pid up to @timeout_ms; its exit status, or -ETIMEDOUT. */
int th_wait_exit(pid_t pid, int timeout_ms);

/* Live (not zombie) processes whose command line contains @tag; *@first gets one pid. */
int th_count_procs(const char *tag, pid_t *first);

/* Paths from the environment (tests/run.sh) or the default build. */
const char *th_haul_bin(void);
const char *th_progs_dir(void);

/* A 32-byte random key file at @path. */
int th_make_key(const char *path);

/* @path's lines on stderr, each prefixed with "@what: ". */
void th_show_file(const char *what, const char *path);
/* Wait up to @ms for a line with @needle in @path; else show the file and fail the test. */
void th_expect_line(const char *path, const char *needle, int ms);
/* The number in file @path (haul restore --detach prints the pid), or -1. */
pid_t th_read_pid_file(const char *path);

#endif
