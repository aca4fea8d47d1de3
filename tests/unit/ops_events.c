/*
 * ops_events.c - the --events writer (src/haul/events.c) on its own: one
 * line per event, each a JSON object carrying event, time and pid, strings
 * escaped; an fd that is not open for writing is refused before anything
 * starts; a destination that stops taking lines does not stop haul.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "haul/haul_int.h"

static char *slurp(const char *path)
{
	static char buf[8192];
	int fd = open(path, O_RDONLY);
	ssize_t n;

	cr_assert_geq(fd, 0);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	cr_assert_geq(n, 0);
	buf[n] = '\0';
	return buf;
}

Test(ops_events, writes_one_json_object_per_line_in_order)
{
	char path[] = "/tmp/haul-events-unit-XXXXXX";
	struct haul_mig_round r = {.seq = 1, .pages = 10, .wire_bytes = 40960, .mbps = 1.5};
	struct haul_mig_result res = {.err = -EIO, .phase = "switchover"};
	struct haul_events *ev;
	const char *want[] = {"started", "round", "frozen", "resumed", "rolled_back"};
	char *text, *line, *save;
	int fd = mkstemp(path), n = 0;

	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(res.why, sizeof(res.why), "state \"corrupt\"\n");
	cr_assert_eq(haul_events_open(path, 4242, &ev), 0);
	haul_events_started(ev, "10.0.0.2:7411", "pre-copy", 25);
	haul_events_round(ev, &r);
	haul_events_frozen(ev);
	haul_events_resumed(ev, 77, 12.5);
	haul_events_end(ev, &res);
	haul_events_free(ev);
	text = slurp(path);
	unlink(path);
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save), n++) {
		char head[64];

		cr_assert_lt(n, 5, "more lines than events: %s", line);
		snprintf(head, sizeof(head), "{\"event\":\"%s\",\"time\":", want[n]);
		cr_assert(!strncmp(line, head, strlen(head)), "line %d is %s", n, line);
		cr_assert(strstr(line, "\"pid\":4242"), "line %d has no pid: %s", n, line);
		cr_assert_eq(line[strlen(line) - 1], '}', "line %d is cut: %s", n, line);
	}
	cr_assert_eq(n, 5);
}

Test(ops_events, escapes_strings_and_names_the_exit_status)
{
	char path[] = "/tmp/haul-events-unit-XXXXXX";
	struct haul_mig_result res = {.err = -EIO, .phase = "switchover", .indoubt = true};
	struct haul_events *ev;
	int fd = mkstemp(path);
	char *text;

	cr_assert_geq(fd, 0);
	close(fd);
	snprintf(res.why, sizeof(res.why), "a \"quoted\" reason\\");
	cr_assert_eq(haul_events_open(path, 1, &ev), 0);
	haul_events_end(ev, &res);
	haul_events_free(ev);
	text = slurp(path);
	unlink(path);
	cr_assert(strstr(text, "\"event\":\"in_doubt\""), "%s", text);
	cr_assert(strstr(text, "\"exit_status\":3"), "%s", text);
	cr_assert(strstr(text, "\"why\":\"a \\\"quoted\\\" reason\\\\\"}"), "%s", text);
}

Test(ops_events, refuses_an_fd_that_is_not_open_for_writing)
{
	struct haul_events *ev = NULL;
	int fd = open("/dev/null", O_RDONLY);
	char num[16];

	cr_assert_eq(haul_events_open("987654", 1, &ev), -EBADF);
	snprintf(num, sizeof(num), "%d", fd);
	cr_assert_eq(haul_events_open(num, 1, &ev), -EBADF);
	close(fd);
	cr_assert_null(ev);
}

Test(ops_events, a_closed_reader_does_not_stop_the_writer)
{
	struct haul_mig_round r = {.seq = 1};
	struct haul_events *ev;
	int p[2];
	char num[16];

	cr_assert_eq(pipe(p), 0);
	snprintf(num, sizeof(num), "%d", p[1]);
	cr_assert_eq(haul_events_open(num, 1, &ev), 0);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	haul_events_frozen(ev); /* EPIPE: warned about once, then dropped */
	haul_events_round(ev, &r);
	haul_events_free(ev);
	close(p[1]);
}

Test(ops_events, a_tree_round_carries_its_process_count)
{
	char path[] = "/tmp/haul-events-unit-XXXXXX";
	struct haul_mig_round tree = {.seq = 2, .pages = 30, .nprocs = 3};
	struct haul_mig_round one = {.seq = 1, .pages = 10};
	struct haul_events *ev;
	int fd = mkstemp(path);
	char *text, *second;

	cr_assert_geq(fd, 0);
	close(fd);
	cr_assert_eq(haul_events_open(path, 1, &ev), 0);
	haul_events_round(ev, &one);
	haul_events_round(ev, &tree);
	haul_events_free(ev);
	text = slurp(path);
	unlink(path);
	second = strchr(text, '\n');
	cr_assert_not_null(second);
	*second++ = '\0';
	cr_assert_null(strstr(text, "\"processes\""), "one process has a count: %s", text);
	cr_assert(strstr(second, ",\"processes\":3}"), "no count in the tree's round: %s", second);
}
