/*
 * opts_cli.c - the haul binary's option parser, end to end: every command
 * refuses a bad value with exit 2 and a message naming the option, and a
 * value with units means what it says on a real page server and tracker
 * (--timeout 1s drops an idle peer after a second, not a millisecond).
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "th_net.h"
#include "trk_drive.h"

static char dir[64], key[96];
static pid_t server = -1;
static struct td drv = {.to = -1, .from = -1};
static int server_fd = -1;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/haul-opts-%d", getpid());
	snprintf(key, sizeof(key), "%s/key", dir);
	mkdir(dir, 0700);
	cr_assert_eq(th_make_key(key), 0);
	if (access(th_haul_bin(), X_OK))
		cr_skip_test("no haul binary at %s", th_haul_bin());
}

static void teardown(void)
{
	th_kill(server, SIGKILL, 2000);
	td_stop(&drv);
	if (server_fd >= 0)
		close(server_fd);
	server = -1;
	server_fd = -1;
	th_sh("rm -rf %s", dir);
}

TestSuite(opts_cli, .init = setup, .fini = teardown, .timeout = 60);

/* Run `haul ARGS` through the shell; stdout and stderr into @out; its exit status. */
static int haul(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int haul(char *out, size_t cap, const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	size_t n = 0, k;
	FILE *f;
	int st, off;

	off = snprintf(cmd, sizeof(cmd), "%s ", th_haul_bin());
	va_start(ap, fmt);
	vsnprintf(cmd + off, sizeof(cmd) - off - 8, fmt, ap);
	va_end(ap);
	strcat(cmd, " 2>&1");
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	while (n + 1 < cap && (k = fread(out + n, 1, cap - 1 - n, f)))
		n += k;
	out[n] = '\0';
	while (fgetc(f) != EOF)
		;
	st = pclose(f);
	cr_log_info("%s -> %d: %s", cmd, WIFEXITED(st) ? WEXITSTATUS(st) : -1, out);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

Test(opts_cli, every_command_refuses_a_bad_value_naming_the_option)
{
	const struct {
		const char *args, *says;
	} cases[] = {
		{"migrate 1 --to 127.0.0.1:1 --key KEY --timeout 10x",
		 "migrate: --timeout: '10x' is not a duration (e.g. 500ms, 10s"},
		{"migrate 1 --to 127.0.0.1 --key KEY",
		 "migrate: --to: '127.0.0.1' is not HOST:PORT"},
		{"migrate 1 --to 127.0.0.1:1 --key KEY --downtime 0",
		 "migrate: --downtime: '0' is out of range"},
		{"migrate 1 --to 127.0.0.1:1 --key KEY --bandwidth fast",
		 "migrate: --bandwidth: 'fast' is not a rate"},
		{"migrate 1 --to 127.0.0.1:1 --key KEY --streams 65",
		 "migrate: --streams: '65' is out of range (expected from 1 to 64)"},
		{"migrate 1 --to 127.0.0.1:1 --key KEY --compress zstd",
		 "migrate: --compress: 'zstd' is not one of auto, lz4 or none"},
		{"pageserver --listen 127.0.0.1:0 --key KEY --idle-timeout forever",
		 "pageserver: --idle-timeout: 'forever' is not a duration"},
		{"pageserver --key KEY", "pageserver: --listen ADDR:PORT is required"},
		{"track 1 --interval 0", "track: --interval: '0' is out of range"},
		{"track 1 --tracker magic",
		 "track: --tracker: 'magic' is not one of uffd, soft-dirty"},
		{"track 1 --rounds 2x", "track: --rounds: '2x' is not an integer"},
		{"restore --images DIR --pid -3", "restore: --pid: '-3' is out of range"},
		{"restore --images DIR --pidns sometimes",
		 "restore: --pidns: 'sometimes' is not one of auto, always or never"},
		{"checkpoint 1 --images DIR --images DIR", "checkpoint: --images is given twice"},
		{"run --name", "run: --name needs a value (NAME)"},
		{"check --json", "check: unknown or ambiguous option '--json'"},
		{"version --bogus", "version: unknown or ambiguous option '--bogus'"},
		{"ps extra", "ps: unexpected argument 'extra'"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char args[512], out[4096], *p;

		snprintf(args, sizeof(args), "%s", cases[i].args);
		p = strstr(args, "KEY");
		if (p) {
			char rest[512];

			snprintf(rest, sizeof(rest), "%s", p + 3);
			snprintf(p, sizeof(args) - (size_t)(p - args), "%s%s", key, rest);
		}
		while ((p = strstr(args, "DIR")))
			memcpy(p, "/tm", 3); /* any path: refused before it is read */
		cr_expect_eq(haul(out, sizeof(out), "%s", args), 2, "haul %s exits 2: %s", args,
			     out);
		cr_expect(strstr(out, cases[i].says), "haul %s says '%s': %s", args, cases[i].says,
			  out);
	}
}

Test(opts_cli, help_of_each_command_exits_zero_and_shows_units)
{
	char out[8192];

	cr_assert_eq(haul(out, sizeof(out), "migrate --help"), 0);
	cr_expect(strstr(out, "--timeout TIME") && strstr(out, "(default 10s)"), "%s", out);
	cr_assert_eq(haul(out, sizeof(out), "pageserver --help"), 0);
	cr_expect(strstr(out, "--idle-timeout TIME") && strstr(out, "(default 60s)"), "%s", out);
	cr_assert_eq(haul(out, sizeof(out), "track --help"), 0);
	cr_expect(strstr(out, "--interval TIME") && strstr(out, "(default 1s)"), "%s", out);
}

/* `--timeout 1s` used to be read as 1 ms: an idle peer must be dropped after ~1 s. */
Test(opts_cli, pageserver_timeout_in_seconds_drops_an_idle_peer_after_a_second)
{
	char *argv[] = {(char *)th_haul_bin(), "pageserver", "--listen",
			"127.0.0.1:0",	       "--key",	     key,
			"--timeout",	       "1s",	     NULL};
	struct sockaddr_in sa = {.sin_family = AF_INET};
	char line[256], c;
	struct pollfd pfd;
	double t0, waited;
	int port = 0, s;

	server = th_spawn_pipe(NULL, argv, &server_fd);
	cr_assert_gt(server, 0);
	cr_assert_eq(th_wait_line(server_fd, "listening on", 10000, line, sizeof(line)), 0);
	cr_assert(sscanf(strrchr(line, ':') + 1, "%d", &port) == 1 && port > 0, "%s", line);
	s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(s, 0);
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
	t0 = now_ms();
	pfd = (struct pollfd){.fd = s, .events = POLLIN};
	cr_assert_eq(poll(&pfd, 1, 10000), 1, "the server never dropped the silent peer");
	waited = now_ms() - t0;
	cr_expect_leq(read(s, &c, 1), 0, "the server sent something to a silent peer");
	close(s);
	cr_expect_geq(waited, 800, "dropped after %.0f ms: '1s' was not read as a second", waited);
	cr_expect_leq(waited, 5000, "dropped after %.0f ms, long after the 1 s asked", waited);
}

Test(opts_cli, track_interval_takes_fractional_seconds)
{
	char bin[512], out[16384];
	const char *p;
	double elapsed = 0;
	int lines = 0;

	snprintf(bin, sizeof(bin), "%s/trk_target", th_progs_dir());
	cr_assert_eq(td_start(&drv, bin), 0, "%s did not start", bin);
	cr_assert_eq(
		haul(out, sizeof(out), "track %d --interval 0.05s --rounds 2 --json", (int)drv.pid),
		0, "%s", out);
	for (p = out; (p = strstr(p, "{\"round\":")); p++)
		lines++;
	cr_expect_eq(lines, 2, "two rounds: %s", out);
	p = strstr(out, "{\"round\":2,\"elapsed_ms\":");
	cr_assert(p, "%s", out);
	cr_expect(sscanf(p + strlen("{\"round\":2,\"elapsed_ms\":"), "%lf", &elapsed) == 1 &&
			  elapsed >= 45,
		  "round 2 came %.1f ms after round 1, not the 50 ms of '0.05s'", elapsed);
}
