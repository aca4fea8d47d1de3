/*
 * ctr_predump.c - criu pre-dump rounds through haul's criu entry point,
 * without a container engine: PRE_DUMP and DUMP requests with parent_img
 * sent over a seqpacket socketpair to criu_swrk(), as runc sends them, for
 * a plain process (tests/progs/ctr_memcheck.c: memory that it rewrites,
 * replaces, zaps and verifies nonstop).  `haul restore` from the final
 * directory reads through its parents; the restored process finds 0 wrong
 * pages.  The tracker daemon is listed by `haul ps`, ends with its process
 * and after its idle timeout; then a dump with a parent takes every page.
 * Registry and images under /tmp/haul-predump-<pid>.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/criu_int.h"
#include "th_proc.h"
#include "th_rst.h"

static char dir[64];

static void setup(void)
{
	char run[96];

	snprintf(dir, sizeof(dir), "/tmp/haul-predump-%d", (int)getpid());
	mkdir(dir, 0755);
	snprintf(run, sizeof(run), "%s/run", dir);
	setenv("HAUL_RUN_DIR", run, 1);
	log_init("test");
}

static void teardown(void)
{
	char cmd[320];

	/* a daemon left by a failed test: its info file names it */
	snprintf(cmd, sizeof(cmd),
		 "for f in %s/run/.trackd/*.info; do [ -f \"$f\" ] && kill $(sed -n "
		 "'s/^daemon=//p' \"$f\"); done; rm -rf %s",
		 dir, dir);
	if (system(cmd))
		fprintf(stderr, "cannot clean %s\n", dir);
}

TestSuite(ctr_predump, .init = setup, .fini = teardown, .timeout = 120);

/* "TOKEN COUNTER BAD" of the status file once COUNTER > @min (within 20 s). */
static void status_after(const char *path, unsigned long min, unsigned long long *token,
			 unsigned long *counter, unsigned long *bad)
{
	for (int i = 0; i < 2000; i++) {
		FILE *f = fopen(path, "r");
		int n = f ? fscanf(f, "%llu %lu %lu", token, counter, bad) : 0;

		if (f)
			fclose(f);
		if (n == 3 && *counter > min)
			return;
		usleep(10 * 1000);
	}
	cr_assert_fail("%s never showed a counter above %lu", path, min);
}

/* A request on its way: the socket, criu_swrk's child, the images directory's fd. */
struct criu_call {
	int sock, dfd;
	pid_t child;
};

/*
 * Send one criu request of @type for @pid into @img (created) to criu_swrk
 * in a child, under HAUL_FAULT=@fault when not NULL.
 */
static void criu_send(struct criu_call *k, Haul__Criu__ReqType type, pid_t pid, const char *img,
		      const char *parent, bool leave, const char *fault)
{
	Haul__Criu__Request q = HAUL__CRIU__REQUEST__INIT;
	Haul__Criu__Options o = HAUL__CRIU__OPTIONS__INIT;
	uint8_t buf[65536];
	int sv[2], dfd;
	pid_t child;
	ssize_t n;

	mkdir(img, 0700);
	dfd = open(img, O_RDONLY | O_DIRECTORY);
	cr_assert_geq(dfd, 0);
	o.has_images_dir_fd = o.has_pid = true;
	o.images_dir_fd = dfd; /* ours, reached through /proc/<peer>/fd as runc's */
	o.pid = pid;
	o.log_file = "dump.log";
	o.has_track_mem = true;
	o.track_mem = !fault;
	o.parent_img = (char *)parent;
	o.has_leave_running = true;
	o.leave_running = leave;
	q.has_type = true;
	q.type = type;
	q.opts = &o;
	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		close(sv[0]);
		if (fault)
			setenv("HAUL_FAULT", fault, 1);
		_exit(criu_swrk(sv[1]) == 0 ? 0 : 1);
	}
	close(sv[1]);
	n = (ssize_t)haul__criu__request__get_packed_size(&q);
	haul__criu__request__pack(&q, buf);
	cr_assert_eq(send(sv[0], buf, n, 0), n);
	*k = (struct criu_call){sv[0], dfd, child};
}

/* The answer to @k; its child's wait status in *@status. */
static ssize_t criu_answer(struct criu_call *k, uint8_t *buf, size_t len, int *status)
{
	ssize_t n = recv(k->sock, buf, len, 0);

	close(k->sock);
	waitpid(k->child, status, 0);
	close(k->dfd);
	return n;
}

/* One criu request of @type for @pid into @img (created), answered by criu_swrk in a child. */
static bool criu_req(Haul__Criu__ReqType type, pid_t pid, const char *img, const char *parent,
		     bool leave)
{
	Haul__Criu__Response *r;
	struct criu_call k;
	uint8_t buf[65536];
	int status;
	ssize_t n;
	bool ok;

	criu_send(&k, type, pid, img, parent, leave, NULL);
	n = criu_answer(&k, buf, sizeof(buf), &status);
	cr_assert_gt(n, 0, "no answer to the criu request");
	r = haul__criu__response__unpack(NULL, n, buf);
	cr_assert_not_null(r);
	ok = r->has_success && r->success && r->type == type;
	haul__criu__response__free_unpacked(r, NULL);
	return ok;
}

static bool exists_glob(const char *pattern)
{
	glob_t g;
	bool any = glob(pattern, 0, NULL, &g) == 0 && g.gl_pathc > 0;

	globfree(&g);
	return any;
}

/* `haul restore --images @img --detach --pidns always`: the restored PID. */
static pid_t restore_detached(const char *img)
{
	const char *bin = getenv("HAUL_BIN");
	char cmd[512], out[4096] = "";
	size_t n;
	FILE *f;
	int pid = 0;

	snprintf(cmd, sizeof(cmd), "timeout 30 %s restore --images %s --detach --pidns always 2>&1",
		 bin ? bin : "build/haul", img);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	cr_assert_eq(pclose(f), 0, "haul restore from %s failed:\n%s", img, out);
	for (char *l = out; l && !pid; l = strchr(l, '\n'), l = l ? l + 1 : NULL)
		pid = atoi(l);
	cr_assert_gt(pid, 0, "no PID in the output of haul restore:\n%s", out);
	return pid;
}

static pid_t spawn_memcheck(const char *status)
{
	char out[128];
	const char *args[] = {status, "16", NULL};
	pid_t pid;

	snprintf(out, sizeof(out), "%s/memcheck.out", dir);
	pid = th_spawn_prog(out, "ctr_memcheck", args);
	cr_assert_eq(th_wait_comm(pid, "ctr_memcheck", 10000), 0);
	return pid;
}

Test(ctr_predump, restores_through_two_pre_dumps_with_intact_memory)
{
	char status[128], d1[96], d2[96], d3[96], pat[160], cmd[256], log[128];
	unsigned long long token, tok2;
	unsigned long c, bad, c2;
	pid_t pid, back;

	snprintf(status, sizeof(status), "%s/status", dir);
	snprintf(d1, sizeof(d1), "%s/d1", dir);
	snprintf(d2, sizeof(d2), "%s/d2", dir);
	snprintf(d3, sizeof(d3), "%s/d3", dir);
	pid = spawn_memcheck(status);
	status_after(status, 3, &token, &c, &bad);
	snprintf(log, sizeof(log), "%s/dump.log", d1);
	cr_assert(criu_req(HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP, pid, d1, NULL, false),
		  "the first pre-dump failed: %s", th_slurp(log));
	snprintf(cmd, sizeof(cmd), "%s ps | grep -q 'criu pre-dump *%d '",
		 getenv("HAUL_BIN") ? getenv("HAUL_BIN") : "build/haul", (int)pid);
	cr_assert_eq(system(cmd), 0, "haul ps does not list the tracker of pid %d", (int)pid);
	status_after(status, c + 3, &token, &c, &bad); /* it ran on, changing pages */
	cr_assert(criu_req(HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP, pid, d2, "../d1", false));
	status_after(status, c + 3, &token, &c, &bad);
	cr_assert(criu_req(HAUL__CRIU__REQ_TYPE__REQ_DUMP, pid, d3, "../d2", false));
	waitpid(pid, NULL, 0); /* killed by the dump once its image was durable */
	snprintf(pat, sizeof(pat), "%s/*/parent.img", d2);
	cr_assert(exists_glob(pat), "d2 names no parent");
	snprintf(pat, sizeof(pat), "%s/*/parent.img", d3);
	cr_assert(exists_glob(pat), "d3 names no parent");
	snprintf(log, sizeof(log), "%s/dump.log", d3);
	cr_assert(strstr(th_slurp(log), "only those written since the parent ../d2"), "%s",
		  th_slurp(log));
	/* its tracker ended with it */
	snprintf(pat, sizeof(pat), "%s/run/.trackd/%d-*.info", dir, (int)pid);
	for (int i = 0; i < 500 && exists_glob(pat); i++)
		usleep(10 * 1000);
	cr_assert_not(exists_glob(pat), "the tracker outlived pid %d", (int)pid);
	c = 0;
	{
		FILE *f = fopen(status, "r");

		cr_assert_not_null(f);
		cr_assert_eq(fscanf(f, "%llu %lu %lu", &tok2, &c, &bad), 3);
		fclose(f);
	}
	back = restore_detached(d3);
	status_after(status, c + 3, &tok2, &c2, &bad);
	kill(back, SIGKILL);
	cr_assert_eq(tok2, token, "another token after the restore: it restarted");
	cr_assert_eq(bad, 0, "%lu wrong pages after the restore through d2 and d1", bad);
}

Test(ctr_predump, a_tracker_that_timed_out_makes_the_next_dump_take_every_page)
{
	char status[128], d1[96], d2[96], pat[160], log[128];
	unsigned long long token, tok2;
	unsigned long c, bad, c2;
	pid_t pid, back;

	setenv("HAUL_TRACKD_IDLE_S", "1", 1);
	snprintf(status, sizeof(status), "%s/status", dir);
	snprintf(d1, sizeof(d1), "%s/d1", dir);
	snprintf(d2, sizeof(d2), "%s/d2", dir);
	pid = spawn_memcheck(status);
	status_after(status, 3, &token, &c, &bad);
	cr_assert(criu_req(HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP, pid, d1, NULL, false));
	snprintf(pat, sizeof(pat), "%s/run/.trackd/%d-*.info", dir, (int)pid);
	for (int i = 0; i < 1000 && exists_glob(pat); i++)
		usleep(10 * 1000);
	cr_assert_not(exists_glob(pat), "the tracker did not end after its 1 s idle timeout");
	unsetenv("HAUL_TRACKD_IDLE_S");
	cr_assert(criu_req(HAUL__CRIU__REQ_TYPE__REQ_DUMP, pid, d2, "../d1", false));
	waitpid(pid, NULL, 0);
	snprintf(log, sizeof(log), "%s/dump.log", d2);
	cr_assert(strstr(th_slurp(log), "every page is dumped"), "%s", th_slurp(log));
	snprintf(pat, sizeof(pat), "%s/*/parent.img", d2);
	cr_assert_not(exists_glob(pat), "d2 names a parent its tracker could not vouch for");
	{
		FILE *f = fopen(status, "r");

		cr_assert_not_null(f);
		cr_assert_eq(fscanf(f, "%llu %lu %lu", &tok2, &c, &bad), 3);
		fclose(f);
	}
	back = restore_detached(d2);
	status_after(status, c + 3, &tok2, &c2, &bad);
	kill(back, SIGKILL);
	cr_assert_eq(tok2, token);
	cr_assert_eq(bad, 0, "%lu wrong pages after the restore of a full dump", bad);
}
