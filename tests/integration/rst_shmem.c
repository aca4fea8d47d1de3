/*
 * rst_shmem.c - `haul checkpoint` + `haul restore` of a process whose data
 * lives in shared memory (issue 12): a shared anonymous object, a memfd
 * only mapped (its fd closed, sealed), a SysV segment, each mapped twice.
 * tests/progs/shm_workload keeps writing through both mappings; after the
 * restore its `verify` checks every page, that both mappings are still one
 * object (a write through one reads back through the other), the memfd's
 * name and seals, the SysV key, shmid, size and mode; a memfd held open
 * keeps its offset and the bytes no mapping shows; a write-sealed memfd
 * stays sealed and its mapping read-only.  A POSIX shm file (/dev/shm) is
 * mapped again where it exists, recreated from its pages where it does not,
 * and the restore refused by name where it exists but differs.  SysV semaphore sets
 * and message queues are refused by name at the precheck.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "th_net.h"
#include "th_rst.h"

static char dir[128], out[192], control[192];
static pid_t running[2]; /* the source and the restored copy, killed by cleanup() */
static int key;		 /* SysV key of this test: holds its PID */
static bool untouched;	 /* no verify before the checkpoint: pages stay out of the page tables */

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v ? v : def;
}

/* Start shm_workload --kind @kind (4 MiB) and wait for its first tick. */
static pid_t spawn(const char *kind)
{
	char skey[24];
	const char *const args[] = {"--kind",	 kind,	  "--mem", "4",	    "--key", skey,
				    "--control", control, "--tag", dir + 5, NULL};
	pid_t pid;

	key = 0x53000000 | (getpid() & 0xffffff);
	snprintf(skey, sizeof(skey), "%#x", key);
	snprintf(dir, sizeof(dir), "/tmp/haul-shm-%s-%d", kind, (int)getpid());
	snprintf(out, sizeof(out), "%s/out", dir);
	snprintf(control, sizeof(control), "%s/control", dir);
	mkdir(dir, 0755);
	pid = th_spawn_prog(out, "shm_workload", args);
	running[0] = pid;
	cr_assert(!th_wait_file(out, 0, "tick", 10000, NULL, 0),
		  "shm_workload %s did not start: %s", kind, th_slurp(out));
	return pid;
}

/* Run haul with @args; its exit status, stderr in dir/@log, stdout in dir/@log.out. */
static int haul(const char *args, const char *log)
{
	char cmd[1024];
	int st;

	snprintf(cmd, sizeof(cmd), "%s %s > %s/%s.out 2> %s/%s", env_or("HAUL_BIN", "build/haul"),
		 args, dir, log, dir, log);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *posix_file(void);

static void cleanup(void)
{
	char cmd[256];
	int id;

	for (int i = 0; i < 2; i++)
		if (running[i] > 0)
			kill(running[i], SIGKILL);
	if (running[0] > 0)
		waitpid(running[0], NULL, 0);
	/* the source's segment outlives it in this IPC namespace */
	if (key && (id = shmget(key, 0, 0)) >= 0)
		shmctl(id, IPC_RMID, NULL);
	if (dir[0])
		unlink(posix_file());
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (dir[0] && system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

/* Ask the workload to verify; true when it says ok (the failure is in @line). */
static bool verify(char *line, size_t len)
{
	size_t from = th_file_size(out);
	FILE *f = fopen(control, "w");

	if (!f)
		return false;
	fputs("verify\n", f);
	fclose(f);
	if (th_wait_file(out, from, "verify", 10000, line, len))
		return snprintf(line, len, "no answer: %s", th_slurp(out)), false;
	return strstr(line, "verify ok") != NULL;
}

/* /dev/shm/haul-shm-TAG of shm_workload --kind posix. */
static const char *posix_file(void)
{
	static char path[192];

	snprintf(path, sizeof(path), "/dev/shm/haul-shm-%s", dir + 5);
	return path;
}

/*
 * shm_workload @kind through `haul checkpoint` and `haul restore`, @between
 * them (may be NULL); it verifies after.  Restore's exit status.
 */
static int checkpoint_restore_with(const char *kind, void (*between)(void))
{
	char args[512], log[256], line[256];
	pid_t pid = spawn(kind);
	size_t from;
	FILE *f;

	if (!untouched)
		cr_assert(verify(line, sizeof(line)), "before the checkpoint: %s", line);
	snprintf(args, sizeof(args), "checkpoint %d --images %s/img", (int)pid, dir);
	snprintf(log, sizeof(log), "%s/ckpt.log", dir);
	cr_assert_eq(haul(args, "ckpt.log"), 0, "checkpoint failed: %s", th_slurp(log));
	waitpid(pid, NULL, 0);
	running[0] = 0;
	from = th_file_size(out);
	snprintf(args, sizeof(args), "restore --detach --images %s/img", dir);
	snprintf(log, sizeof(log), "%s/restore.log", dir);
	if (between)
		between();
	if (haul(args, "restore.log"))
		return 1;
	f = fopen(strcat(log, ".out"), "r");
	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%d", &pid), 1, "restore printed no pid");
	fclose(f);
	running[1] = pid;
	cr_assert(!th_wait_file(out, from, "tick", 10000, NULL, 0), "restored process: %s",
		  th_slurp(out));
	cr_assert(verify(line, sizeof(line)), "restored process: %s", line);
	return 0;
}

static void checkpoint_restore(const char *kind)
{
	char log[256];
	int rc = checkpoint_restore_with(kind, NULL);

	snprintf(log, sizeof(log), "%s/restore.log", dir); /* spawn() named dir */
	cr_assert_eq(rc, 0, "restore failed: %s", th_slurp(log));
}

static void remove_posix_file(void)
{
	cr_assert_eq(unlink(posix_file()), 0, "%s: %s", posix_file(), strerror(errno));
}

static void change_posix_file(void)
{
	cr_assert_eq(truncate(posix_file(), 100), 0, "%s: %s", posix_file(), strerror(errno));
}

Test(rst_shmem, shared_anonymous_object_mapped_twice_stays_one_object, .fini = cleanup,
     .timeout = 60)
{
	checkpoint_restore("anon");
}

Test(rst_shmem, closed_memfd_keeps_name_seals_content_and_both_mappings, .fini = cleanup,
     .timeout = 60)
{
	checkpoint_restore("memfd");
}

Test(rst_shmem, memfd_held_open_keeps_its_offset_and_the_bytes_no_mapping_shows, .fini = cleanup,
     .timeout = 60)
{
	checkpoint_restore("memfd-fd");
}

Test(rst_shmem, write_sealed_memfd_keeps_its_seals_and_stays_read_only, .fini = cleanup,
     .timeout = 60)
{
	checkpoint_restore("memfd-sealed");
}

Test(rst_shmem, posix_shm_file_present_on_restore_is_mapped_again, .fini = cleanup, .timeout = 60)
{
	checkpoint_restore("posix");
}

Test(rst_shmem, posix_shm_file_absent_on_restore_is_recreated_from_its_pages, .fini = cleanup,
     .timeout = 60)
{
	int rc = checkpoint_restore_with("posix", remove_posix_file);
	char log[256];
	struct stat st;

	snprintf(log, sizeof(log), "%s/restore.log", dir); /* spawn() named dir */
	cr_assert_eq(rc, 0, "restore failed: %s", th_slurp(log));
	cr_expect(strstr(th_slurp(log), "recreated from its mapped pages"), "%s", th_slurp(log));
	cr_assert_eq(stat(posix_file(), &st), 0);
	cr_expect_eq(st.st_mode & 0777, 0640, "mode %o", st.st_mode & 0777);
}

Test(rst_shmem, posix_shm_file_that_differs_on_restore_is_refused_by_name, .fini = cleanup,
     .timeout = 60)
{
	int rc = checkpoint_restore_with("posix", change_posix_file);
	char log[256];

	snprintf(log, sizeof(log), "%s/restore.log", dir);
	cr_assert_eq(rc, 1, "a restore over a changed file did not fail");
	cr_expect(strstr(th_slurp(log), "exists here and differs"), "%s", th_slurp(log));
}

Test(rst_shmem, write_sealed_memfd_held_open_and_mapped_keeps_seals_bytes_and_fd, .fini = cleanup,
     .timeout = 60)
{
	checkpoint_restore("memfd-sealed-fd");
}

/* pagemap shows only what the page tables map: the object's other pages must be read too */
Test(rst_shmem, memfd_pages_written_through_its_fd_and_never_mapped_in_are_kept, .fini = cleanup,
     .timeout = 60)
{
	untouched = true;
	checkpoint_restore("memfd-sealed");
}

Test(rst_shmem, sysv_segment_keeps_key_shmid_size_mode_and_both_attachments, .fini = cleanup,
     .timeout = 60)
{
	checkpoint_restore("sysv");
}

/* The precheck refuses @kind naming @what; the process runs on, untouched. */
static void refused(const char *kind, const char *what)
{
	char args[512], log[256], line[256];
	pid_t pid = spawn(kind);
	int rc;

	if (strstr(th_slurp(out), "setup failed"))
		cr_skip_test("no IPC namespace: %s", th_slurp(out));
	snprintf(args, sizeof(args), "checkpoint %d --images %s/img", (int)pid, dir);
	rc = haul(args, "ckpt.log");
	snprintf(log, sizeof(log), "%s/ckpt.log", dir);
	cr_expect_eq(rc, 1, "checkpoint exited %d: %s", rc, th_slurp(log));
	cr_expect(strstr(th_slurp(log), what), "the refusal does not say '%s': %s", what,
		  th_slurp(log));
	cr_expect_eq(kill(pid, 0), 0, "the refused process did not run on");
	cr_expect(verify(line, sizeof(line)), "%s", line);
}

Test(rst_shmem, sysv_semaphore_set_is_refused_by_name, .fini = cleanup, .timeout = 60)
{
	refused("sem", "may be using SysV semaphore set id");
}

Test(rst_shmem, sysv_message_queue_is_refused_by_name, .fini = cleanup, .timeout = 60)
{
	refused("msg", "may be using SysV message queue id");
}

/* The test itself maps the workload's object too (anon: through map_files; SysV: shmat). */
static void shared_with_us(const char *kind, const char *what)
{
	char args[512], log[256], line[256], path[128];
	unsigned long s, e;
	int shmid, fd;
	void *p;
	pid_t pid = spawn(kind);

	cr_assert(!th_wait_file(out, 0, "ready", 1000, line, sizeof(line)));
	cr_assert_eq(sscanf(strstr(line, "shmid="), "shmid=%d map=%lx-%lx", &shmid, &s, &e), 3,
		     "%s", line);
	if (shmid >= 0) {
		p = shmat(shmid, NULL, SHM_RDONLY);
		cr_assert_neq(p, (void *)-1, "shmat: %s", strerror(errno));
	} else {
		snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", (int)pid, s, e);
		fd = open(path, O_RDONLY);
		cr_assert_geq(fd, 0, "%s: %s", path, strerror(errno));
		p = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fd, 0);
		close(fd);
		cr_assert_neq(p, MAP_FAILED);
	}
	snprintf(args, sizeof(args), "checkpoint %d --images %s/img", (int)pid, dir);
	cr_expect_eq(haul(args, "ckpt.log"), 1, "checkpoint did not refuse");
	snprintf(log, sizeof(log), "%s/ckpt.log", dir);
	cr_expect(strstr(th_slurp(log), what), "the refusal does not say '%s': %s", what,
		  th_slurp(log));
	cr_expect_eq(kill(pid, 0), 0, "the refused process did not run on");
	cr_expect(verify(line, sizeof(line)), "%s", line);
	if (shmid >= 0)
		shmdt(p);
	else
		munmap(p, 4096);
}

Test(rst_shmem, shared_anonymous_memory_another_process_maps_is_refused_by_name, .fini = cleanup,
     .timeout = 60)
{
	shared_with_us("anon", "is also mapped by pid");
}

Test(rst_shmem, sysv_segment_another_process_attaches_is_refused_by_name, .fini = cleanup,
     .timeout = 60)
{
	shared_with_us("sysv", "attachments, 2 of them its own");
}
