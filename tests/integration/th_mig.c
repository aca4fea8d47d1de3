/*
 * th_mig.c - two-host migration fixture for the integration tests (th_mig.h).
 * The workload writes its tick lines to a file that survives the move (its
 * stdout is that file, opened O_APPEND), and carries a unique --tag in its
 * command line so that its copies can be counted on both hosts.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "th_mig.h"
#include "th_verify.h"

void th_mig_setup(struct th_mig *m, unsigned rate_mbit)
{
	char bin[512], line[256], p[128];
	struct stat st;
	int ret;

	memset(m, 0, sizeof(*m));
	m->ps_fd = -1;
	snprintf(m->dir, sizeof(m->dir), "/tmp/haul-mig-%d", getpid());
	snprintf(m->key, sizeof(m->key), "%s/key", m->dir);
	snprintf(m->out, sizeof(m->out), "%s/out", m->dir);
	snprintf(m->control, sizeof(m->control), "%s/control", m->dir);
	snprintf(m->json, sizeof(m->json), "%s/migrate.json", m->dir);
	snprintf(m->tag, sizeof(m->tag), "migtag%d", getpid());
	mkdir(m->dir, 0700);
	/* haul keeps measured switchover costs in its registry: keep tests' out of /run */
	snprintf(p, sizeof(p), "%s/run", m->dir);
	setenv("HAUL_RUN_DIR", p, 1);
	cr_assert_eq(th_make_key(m->key), 0);
	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	if (access(bin, X_OK))
		cr_skip_test("no haul binary at %s", bin);
	ret = th_net_create(&m->net, "mig", rate_mbit);
	if (ret == -EOPNOTSUPP)
		cr_skip_test("network namespaces or iproute2 are not available");
	cr_assert_eq(ret, 0, "cannot create the two-host network");
	snprintf(p, sizeof(p), "/run/netns/%s", m->net.a);
	stat(p, &st);
	m->net_a = st.st_ino;
	snprintf(p, sizeof(p), "/run/netns/%s", m->net.b);
	stat(p, &st);
	m->net_b = st.st_ino;
	{
		char *argv[] = {bin,	 "pageserver", "--listen", TH_IP_B ":" TH_MIG_PORT,
				"--key", m->key,       NULL};

		m->ps_pid = th_spawn_pipe(m->net.b, argv, &m->ps_fd);
	}
	cr_assert_gt(m->ps_pid, 0);
	cr_assert_eq(th_wait_line(m->ps_fd, "listening on", 5000, line, sizeof(line)), 0,
		     "the page server did not start");
}

void th_mig_teardown(struct th_mig *m)
{
	pid_t pid;

	for (int i = 0; i < 10 && th_count_procs(m->tag, &pid) > 0; i++) {
		kill(pid, SIGKILL);
		usleep(20000);
	}
	if (m->wl_pid > 0 && !m->wl_by_run)
		th_kill(m->wl_pid, SIGKILL, 2000);
	else if (m->wl_pid > 0)
		kill(m->wl_pid, SIGKILL); /* not our child: init reaps it */
	if (m->ps_pid > 0)
		th_kill(m->ps_pid, SIGKILL, 2000);
	if (m->ps_fd >= 0)
		close(m->ps_fd);
	/* a killed migration may leave its cgroup (thawed, empty): remove it */
	th_sh("for d in /sys/fs/cgroup/unified/haul/mig-* /sys/fs/cgroup/haul/mig-* "
	      "/sys/fs/cgroup/cpu/haul/mig-*; do [ -d \"$d\" ] && "
	      "! grep -q . \"$d/cgroup.procs\" 2>/dev/null && rmdir \"$d\"; done 2>/dev/null");
	th_sh("for d in /sys/fs/cgroup/unified/haul/migrun* /sys/fs/cgroup/haul/migrun*; do "
	      "[ -d \"$d\" ] && ! grep -q . \"$d/cgroup.procs\" 2>/dev/null && rmdir \"$d\"; "
	      "done 2>/dev/null");
	unsetenv("HAUL_RUN_DIR");
	th_state_free(m->before);
	m->before = NULL;
	th_net_destroy(&m->net);
	if (m->client[0])
		th_mig_svc_teardown(m);
	th_sh("rm -rf %s", m->dir);
}

void th_mig_workload(struct th_mig *m, int mem, int rate, int hot)
{
	char path[512], smem[16], srate[16], shot[16], sthr[16], srnd[24], fmap[96], sexit[16];
	int k = 17;
	char *argv[] = {path,
			"--mem",
			smem,
			"--rate",
			srate,
			"--hot",
			shot,
			"--threads",
			sthr,
			"--control",
			m->control,
			"--tag",
			m->tag,
			"--random",
			srnd,
			"--fork-on-move",
			m->fork_on_move ? "1" : "0",
			NULL,
			NULL,
			NULL,
			NULL,
			NULL,
			NULL,
			NULL,
			NULL,
			NULL};

	snprintf(path, sizeof(path), "%s/mig_workload", th_progs_dir());
	snprintf(smem, sizeof(smem), "%d", mem);
	snprintf(srate, sizeof(srate), "%d", rate);
	snprintf(shot, sizeof(shot), "%d", hot ? hot : mem);
	snprintf(sthr, sizeof(sthr), "%d", m->threads);
	snprintf(srnd, sizeof(srnd), "%lu", m->random_seed);
	if (m->filemap) {
		snprintf(fmap, sizeof(fmap), "%s/filemap", m->dir);
		argv[k++] = "--filemap";
		argv[k++] = fmap;
	}
	if (m->vmcases) {
		argv[k++] = "--vmcases";
		argv[k++] = m->dir;
	}
	if (m->world) {
		argv[k++] = "--world";
		argv[k++] = m->dir;
	}
	if (m->exit_on_move) {
		snprintf(sexit, sizeof(sexit), "%d", m->exit_on_move);
		argv[k++] = "--exit-on-move";
		argv[k++] = sexit;
	}
	m->wl_pid = th_spawn(m->net.a, argv, m->out);
	cr_assert_gt(m->wl_pid, 0);
	cr_assert_eq(th_wait_file(m->out, 0, "tick", 10000, NULL, 0), 0,
		     "the workload never started");
}

void th_mig_workload_run(struct th_mig *m, const char *name, int mem, int rate)
{
	char run[128], started[160];
	FILE *f;
	int ret;

	snprintf(run, sizeof(run), "%s/run", m->dir);
	setenv("HAUL_RUN_DIR", run, 1);
	snprintf(started, sizeof(started), "%s/started", m->dir);
	ret = th_sh("nsenter --net=/run/netns/%s %s run --name %s --log %s -- %s/mig_workload "
		    "--mem %d --rate %d --control %s --tag %s > %s 2>&1",
		    m->net.a, th_haul_bin(), name, m->out, th_progs_dir(), mem, rate, m->control,
		    m->tag, started);
	if (ret)
		th_sh("cat %s >&2", started);
	cr_assert_eq(ret, 0, "haul run failed");
	f = fopen(started, "r");
	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%*s %d", &m->wl_pid), 1);
	fclose(f);
	m->wl_by_run = true;
	cr_assert_eq(th_wait_file(m->out, 0, "tick", 10000, NULL, 0), 0,
		     "the workload never started");
}

pid_t th_mig_haul(struct th_mig *m, int *fd, const char *const extra[])
{
	static char bin[512], pid[16];
	const char *argv[32] = {bin, "migrate"};
	int n = 2;

	snprintf(bin, sizeof(bin), "%s", th_haul_bin());
	snprintf(pid, sizeof(pid), "%d", m->wl_pid);
	/* unless the caller names the process (a NAME, or --cgroup PATH), it is the pid */
	if (!extra || !extra[0] || (!strncmp(extra[0], "--", 2) && strcmp(extra[0], "--cgroup")))
		argv[n++] = pid;
	argv[n++] = "--to";
	argv[n++] = TH_IP_B ":" TH_MIG_PORT;
	argv[n++] = "--key";
	argv[n++] = m->key;
	argv[n++] = "--json";
	argv[n++] = m->json;
	for (int i = 0; extra && extra[i] && n < 31; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;
	return th_spawn_pipe(m->net.a, (char *const *)argv, fd);
}

pid_t th_mig_haul_stalled(struct th_mig *m, const char *fault, const char *const extra[], int *fd)
{
	pid_t pid;

	setenv("HAUL_FAULT", fault, 1);
	pid = th_mig_haul(m, fd, extra);
	unsetenv("HAUL_FAULT");
	cr_assert_gt(pid, 0);
	cr_assert_eq(th_wait_line(*fd, "stalled at", 30000, NULL, 0), 0, "haul never reached %s",
		     fault);
	return pid;
}

bool th_mig_ticking(struct th_mig *m, unsigned long net, int ms)
{
	char needle[64];
	size_t from = th_file_size(m->out);

	if (net)
		snprintf(needle, sizeof(needle), "net=%lu ", net);
	else
		snprintf(needle, sizeof(needle), "tick");
	return th_wait_file(m->out, from, needle, ms, NULL, 0) == 0;
}

long th_mig_seq(struct th_mig *m)
{
	char line[256];
	long seq = -1;

	if (!th_wait_file(m->out, 0, "tick", 10, line, sizeof(line)))
		sscanf(strstr(line, "seq="), "seq=%ld", &seq);
	return seq;
}

bool th_mig_verify(struct th_mig *m)
{
	size_t from = th_file_size(m->out);
	char line[256];
	FILE *f = fopen(m->control, "w");

	if (!f)
		return false;
	fputs("verify\n", f);
	fclose(f);
	if (th_wait_file(m->out, from, "verify", 10000, line, sizeof(line)))
		return false;
	return strstr(line, "verify ok") != NULL;
}

int th_mig_copies(struct th_mig *m)
{
	return th_count_procs(m->tag, NULL);
}

double th_mig_json(struct th_mig *m, const char *key)
{
	char text[65536], needle[64], *p;
	FILE *f = fopen(m->json, "r");
	size_t n;

	if (!f)
		return -1;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	snprintf(needle, sizeof(needle), "\"%s\": ", key);
	p = strstr(text, needle);
	return p ? atof(p + strlen(needle)) : -1;
}

long th_mig_final_round_pages(struct th_mig *m)
{
	char text[65536], *p, *end;
	FILE *f = fopen(m->json, "r");
	size_t n;
	long last = -1;

	if (!f)
		return -1;
	n = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[n] = '\0';
	p = strstr(text, "\"pages_per_round\": [");
	if (!p)
		return -1;
	p += strlen("\"pages_per_round\": [");
	end = strchr(p, ']');
	while (p && end && p < end) {
		last = strtol(p, &p, 10);
		p = strchr(p, ',');
		if (p)
			p++;
	}
	return last;
}

void th_mig_ticks(struct th_mig *m, int n, int ms)
{
	size_t from = th_file_size(m->out);

	for (int i = 0; i < n; i++) {
		char line[256];

		cr_assert_eq(th_wait_file(m->out, from, "tick", ms, line, sizeof(line)), 0,
			     "the workload printed %d of %d tick lines in %d ms; see %s", i, n, ms,
			     m->out);
		from = th_file_size(m->out);
	}
}

void th_mig_state_before(struct th_mig *m)
{
	th_state_free(m->before);
	m->before = NULL;
	cr_assert_eq(th_state_take(m->wl_pid, TH_VERIFY_LIVE, &m->before), 0,
		     "cannot read the state of the workload, pid %d", (int)m->wl_pid);
}

/* Log what @who wrote to @fd until it goes quiet or ends. */
static void dump_lines(int fd, const char *who)
{
	char line[512];

	while (fd >= 0 && th_read_line(fd, line, sizeof(line)) == 0)
		cr_log_info("%s: %s", who, line);
}

void th_mig_dump_output(int fd)
{
	dump_lines(fd, "haul");
}

int th_mig_migrate(struct th_mig *m, const char *const extra[], int timeout_ms)
{
	th_mig_state_before(m);
	return th_mig_run(m, extra, timeout_ms);
}

int th_mig_run(struct th_mig *m, const char *const extra[], int timeout_ms)
{
	int fd, st;
	pid_t pid;

	pid = th_mig_haul(m, &fd, extra);
	cr_assert_gt(pid, 0);
	st = th_wait_exit(pid, timeout_ms);
	if (st) {
		th_mig_dump_output(fd);
		dump_lines(m->ps_fd, "pageserver"); /* the target's side of the failure */
	}
	close(fd);
	if (st == -ETIMEDOUT)
		th_kill(pid, SIGKILL, 1000);
	return st;
}

void th_mig_assert_moved(struct th_mig *m, long seq_before)
{
	cr_assert(th_mig_ticking(m, m->net_b, 3000), "the workload does not tick in the target");
	cr_assert_not(th_mig_ticking(m, m->net_a, 300), "the source still ticks");
	cr_assert_gt(th_mig_seq(m), seq_before, "progress went backwards");
	cr_assert(th_mig_verify(m), "memory is not intact after the move");
	cr_assert_eq(th_mig_copies(m), 1, "not exactly one copy");
	if (!m->before)
		return;
	th_verify_same(m->before, (pid_t)th_mig_json(m, "target_pid"), TH_VERIFY_LIVE,
		       "mig_workload");
	th_state_free(m->before);
	m->before = NULL;
}
