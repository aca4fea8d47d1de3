/*
 * th_rst.c - one-host checkpoint/restore helpers (th_rst.h), shared by the
 * rst_* and lazy_* tests instead of a copy in each.  Programs are started
 * with nothing but /dev/null and one output file open, since the restorer
 * refuses pipes and sockets it cannot carry; readiness is a line in that
 * file ("tick", printed once the program runs its loop), never a fixed sleep.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/rsys.h"
#include "th_net.h"
#include "th_proc.h"
#include "th_rst.h"

pid_t th_spawn_prog(const char *out, const char *prog, const char *const args[])
{
	const char *argv[16];
	char bin[512];
	int n = 0, tfd;
	pid_t pid;

	snprintf(bin, sizeof(bin), "%s/%s", th_progs_dir(), prog);
	argv[n++] = bin;
	for (int i = 0; args && args[i] && n < 15; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	/*
	 * Emptied here, before the fork: a wait for the program's ready line
	 * must not find the line an earlier run left in the same file.
	 */
	tfd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert_geq(tfd, 0, "cannot create %s", out);
	close(tfd);
	pid = fork();
	cr_assert_geq(pid, 0, "cannot fork for %s", prog);
	if (pid == 0) {
		int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		int nul = open("/dev/null", O_RDWR);

		/* Only files and /dev/null: a pipe from the test runner would be refused. */
		if (fd < 0 || nul < 0 || dup2(nul, 0) < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0)
			_exit(126);
		closefrom(3);
		execv(bin, (char *const *)argv);
		_exit(127);
	}
	return pid;
}

pid_t th_spawn_counter(const char *dir, const char *out, const char *iters, const char *mib,
		       const char *sleep_us)
{
	const char *args[] = {dir, iters, mib, sleep_us, NULL};

	return th_spawn_prog(out, "rst_counter", args);
}

/* Lines of @path that contain @needle. */
static int count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "r");
	char line[512];
	int n = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	return n;
}

void th_wait_ticking(const char *out, int ticks, int ms)
{
	int waited = 0;

	while (count_lines(out, "tick") < ticks && waited < ms) {
		usleep(5000);
		waited += 5;
	}
	cr_assert_geq(count_lines(out, "tick"), ticks,
		      "fewer than %d tick lines in %s within %d ms (did the program start?): %s",
		      ticks, out, ms, th_slurp(out));
}

void th_expected_final(const char *dir, const char *iters, const char *mib, char *line, size_t len)
{
	char out[600];
	int status;
	pid_t p;

	snprintf(out, sizeof(out), "%s/expected.out", dir);
	p = th_spawn_counter(dir, out, iters, mib, "0");
	cr_assert_eq(waitpid(p, &status, 0), p);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "undisturbed run failed: %s",
		  th_slurp(out));
	th_final_line(out, line, len);
}

void th_wait_counter(pid_t pid, const char *out, int ticks)
{
	(void)pid; /* wherever it is now is a fair dump point (issue 15) */
	th_wait_ticking(out, ticks, 10000);
}

char *th_slurp(const char *path)
{
	static char buf[1 << 20];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

const char *th_last_line(const char *s)
{
	const char *end = strrchr(s, '\n'), *p;

	if (!end)
		return "";
	for (p = end; p > s && p[-1] != '\n'; p--)
		;
	return p;
}

char *th_slurp_lines(const char *path)
{
	char *s = th_slurp(path), *nl = strrchr(s, '\n');

	if (nl)
		nl[1] = '\0';
	else
		s[0] = '\0';
	return s;
}

void th_final_line(const char *path, char *line, size_t len)
{
	const char *p = strstr(th_slurp(path), "final ");

	cr_assert(p, "no final line in %s: %s", path, th_slurp(path));
	snprintf(line, len, "%.*s", (int)strcspn(p, "\n"), p);
}

/*
 * The snapshot, then the process released (@kill_it false) or killed while
 * still seized (@kill_it true).  A released process runs on: its writes to
 * files the image names (an O_APPEND file grows, a MAP_SHARED file mapping
 * changes) land before the SIGKILL and the restored copy then repeats them,
 * which made rst_counter's final hash differ in about 1 run of 5 when it was
 * dumped outside nanosleep (issue 15).  haul checkpoint and haul migrate
 * never let the source run after the dump; checkpoint-kill tests must not
 * either.
 */
static int snap_take(pid_t pid, struct th_snap *s, bool kill_it)
{
	struct rst_seized *sz;
	int ret;

	memset(s, 0, sizeof(*s));
	ret = rst_seize(pid, &sz);
	if (ret)
		return ret;
	ret = rst_dump_state(sz, &s->state, &s->state_len);
	if (!ret)
		ret = haul_layout_read(pid, true, &s->l);
	if (!ret) {
		s->runs = calloc(s->l.n ? s->l.n : 1, sizeof(*s->runs));
		if (!s->runs)
			ret = -ENOMEM;
	}
	for (size_t i = 0; !ret && i < s->l.n; i++) {
		const struct haul_vma *v = &s->l.v[i];
		size_t len = v->end - v->start;
		struct th_snap_run *r = &s->runs[s->n];

		if (!haul_vma_is_memory(v) || !(v->prot & PROT_READ))
			continue;
		r->addr = v->start;
		r->npages = len >> 12;
		r->data = malloc(len);
		s->n++; /* counted now, so that th_snap_free frees it whatever follows */
		ret = r->data ? rsys_read(pid, v->start, r->data, len) : -ENOMEM;
	}
	if (kill_it && !ret)
		rst_kill_seized(sz);
	else
		rst_release(sz);
	return ret;
}

int th_snap_take(pid_t pid, struct th_snap *s)
{
	return snap_take(pid, s, false);
}

int th_snap_take_kill(pid_t pid, struct th_snap *s)
{
	return snap_take(pid, s, true);
}

void th_snap_free(struct th_snap *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->runs[i].data);
	free(s->runs);
	free(s->state);
	haul_layout_release(&s->l);
	memset(s, 0, sizeof(*s));
}

int th_snap_restore(const struct th_snap *s, pid_t pid, enum rst_pidns ns, struct rst_target **out,
		    char *why, size_t wl)
{
	struct rst_target_opts o = {.pid = pid, .pidns = ns};
	struct rst_target *t;
	pid_t here;
	int ret;

	ret = rst_target_new(&o, &t);
	if (ret)
		return ret;
	ret = rst_target_layout(t, &s->l);
	for (size_t i = 0; !ret && i < s->n; i++)
		ret = rst_target_pages(t, s->runs[i].addr, s->runs[i].data, s->runs[i].npages);
	if (!ret)
		ret = rst_target_resume(t, s->state, s->state_len, &here, why, wl);
	if (ret) {
		rst_target_free(t);
		return ret;
	}
	*out = t;
	return 0;
}
