/*
 * rst_vmas.c - `haul checkpoint` + `haul restore` carry a VMA's every
 * attribute or refuse it by name (issue 15, after CRIU's zdtm maps04,
 * maps02, maps_file_prot, maps12, shmemfd-priv).  tests/progs/rst_vmas sets
 * the VMAs up, prints "ready", and on SIGUSR2 checks them in the restored
 * process ("pass" or "FAIL: what").
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/vma.h"
#include "image.pb-c.h"
#include "restore/restore.h"
#include "tracker/tracker.h"
#include "th_rst.h"

static char dir[128], out[192];
static pid_t running[2]; /* the source and the restored copy, killed by cleanup() */

static const char *env_or(const char *name, const char *def)
{
	const char *v = getenv(name);

	return v ? v : def;
}

/* Start rst_vmas @mode with only /dev/null and @out open; wait for "ready". */
static pid_t spawn(const char *mode)
{
	const char *const args[] = {dir, mode, NULL};
	pid_t pid;

	snprintf(dir, sizeof(dir), "/tmp/haul-vmas-%s-%d", mode, (int)getpid());
	snprintf(out, sizeof(out), "%s/out", dir);
	mkdir(dir, 0755);
	pid = th_spawn_prog(out, "rst_vmas", args);
	running[0] = pid;
	cr_assert(!th_wait_file(out, 0, "ready", 10000, NULL, 0), "rst_vmas %s did not start: %s",
		  mode, th_slurp(out));
	return pid;
}

/* Reap the source: its PID may be reused from here on, cleanup() must not kill it. */
static void reap(pid_t pid)
{
	waitpid(pid, NULL, 0);
	running[0] = 0;
}

/* Run haul with @args (a shell fragment); its exit status, stderr in @log, stdout in @log.out. */
static int haul(const char *args, const char *log)
{
	char cmd[1024];
	int st;

	snprintf(cmd, sizeof(cmd), "%s %s > %s/%s.out 2> %s/%s", env_or("HAUL_BIN", "build/haul"),
		 args, dir, log, dir, log);
	st = system(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void cleanup(void)
{
	char cmd[256];

	/* a failed test may leave either running: only ours, by PID (reaped ones are gone) */
	for (int i = 0; i < 2; i++)
		if (running[i] > 0)
			kill(running[i], SIGKILL);
	if (running[0] > 0)
		waitpid(running[0], NULL, 0); /* our child, killed: no wait */

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (dir[0] && system(cmd) != 0)
		cr_log_warn("cannot remove %s", dir);
}

/* Restore the image in dir/img detached, make the restored process check its VMAs. */
static void restore_and_check(void)
{
	char args[512], log[256];
	pid_t pid;
	FILE *f;

	snprintf(args, sizeof(args), "restore --detach --images %s/img", dir);
	cr_assert_eq(haul(args, "restore.log"), 0, "restore failed: %s",
		     th_slurp(strcat(strcpy(log, dir), "/restore.log")));
	f = fopen(strcat(strcpy(log, dir), "/restore.log.out"), "r");
	cr_assert_not_null(f);
	cr_assert_eq(fscanf(f, "%d", &pid), 1, "restore printed no pid: %s", th_slurp(log));
	fclose(f);
	running[1] = pid;
	cr_assert_eq(kill(pid, SIGUSR2), 0);
	cr_assert(!th_wait_file(out, 0, "pass", 10000, NULL, 0), "restored process: %s",
		  th_slurp(out));
	running[1] = 0; /* it exits by itself; not our child, its PID may be reused */
}

/* rst_vmas @mode through `haul checkpoint` (maybe --leave-running) and `haul restore`. */
static void checkpoint_restore(const char *mode, bool leave_running)
{
	char args[512];
	pid_t pid = spawn(mode);

	if (strstr(th_slurp(out), "guards=0") && !strcmp(mode, "guards"))
		cr_skip_test("MADV_GUARD_INSTALL needs Linux 6.13");
	snprintf(args, sizeof(args), "checkpoint %d --images %s/img%s", (int)pid, dir,
		 leave_running ? " --leave-running" : "");
	cr_assert_eq(haul(args, "ckpt.log"), 0, "checkpoint failed");
	if (leave_running)
		kill(pid, SIGKILL);
	reap(pid);
	restore_and_check();
}

/* zdtm maps04: process_vm_readv cannot read PROT_NONE; the image lacked the page. */
Test(rst_vmas, protnone_page_keeps_its_data, .fini = cleanup, .timeout = 60)
{
	checkpoint_restore("protnone", false);
}

/*
 * zdtm unlink_mmap00: a file deleted while mapped privately (a library an
 * upgrade replaced) was refused; now it comes back deleted, from its content.
 */
Test(rst_vmas, deleted_file_mapped_privately_comes_back_deleted_with_its_pages, .fini = cleanup,
     .timeout = 60)
{
	checkpoint_restore("deleted", false);
}

/* Its program deleted under it (upgraded): /proc/PID/exe is the deleted file again. */
Test(rst_vmas, deleted_executable_comes_back_deleted, .fini = cleanup, .timeout = 60)
{
	checkpoint_restore("exedel", false);
}

/* The same, its path taken by a new file since (the upgrade's): that one is left alone. */
Test(rst_vmas, deleted_file_mapped_privately_whose_path_is_taken_again, .fini = cleanup,
     .timeout = 60)
{
	char args[512], path[256];
	pid_t pid = spawn("deleted");

	snprintf(args, sizeof(args), "checkpoint %d --images %s/img", (int)pid, dir);
	cr_assert_eq(haul(args, "ckpt.log"), 0, "checkpoint failed");
	reap(pid);
	snprintf(path, sizeof(path), "%s/vmcases.deleted", dir);
	snprintf(args, sizeof(args), "echo new > %s", path);
	cr_assert_eq(system(args), 0);
	restore_and_check();
	cr_assert_str_eq(th_slurp(path), "new\n", "the new file at the path was touched");
	snprintf(args, sizeof(args), "test $(ls %s | grep -c vmcases.deleted) = 1", dir);
	cr_assert_eq(system(args), 0, "the file made again was left behind");
}

/* zdtm maps02: MAP_NORESERVE (VmFlags nr) was not recorded. */
Test(rst_vmas, noreserve_mapping_stays_noreserve, .fini = cleanup, .timeout = 60)
{
	checkpoint_restore("noreserve", false);
}

/* zdtm maps_file_prot: the file was reopened O_RDONLY for the read-only part. */
Test(rst_vmas, shared_file_mapping_can_still_be_made_writable, .fini = cleanup, .timeout = 60)
{
	checkpoint_restore("fileprot", false);
}

/* zdtm maps12: guard pages made the page copy fail with EFAULT. */
Test(rst_vmas, guard_pages_stay_guards_and_the_rest_keeps_its_data, .fini = cleanup, .timeout = 60)
{
	checkpoint_restore("guards", false);
}

/* /proc/PID/mem forces writes only into COW mappings: read-only shared memory failed. */
Test(rst_vmas, read_only_and_protnone_shared_memory_keep_data_and_protection, .fini = cleanup,
     .timeout = 60)
{
	checkpoint_restore("shmemprot", false);
}

Test(rst_vmas, mergeable_droppable_and_sealed_vmas_keep_their_vmflags, .fini = cleanup,
     .timeout = 60)
{
	checkpoint_restore("flags", false);
}

/* The tracker's rounds read the pages while the process runs: the same cases. */
Test(rst_vmas, checkpoint_leave_running_keeps_every_case, .fini = cleanup, .timeout = 60)
{
	checkpoint_restore("cases", true);
}

/* Write every page of the memory VMAs of @l (read from running @pid) not in @skip. */
static void send_pages(struct rst_target *t, pid_t pid, const struct haul_layout *l,
		       const struct haul_layout *skip)
{
	for (size_t i = 0; i < l->n; i++) {
		const struct haul_vma *v = &l->v[i];
		struct trk_range r = {v->start, haul_vma_pages(v)};
		void *buf;

		if (!haul_vma_is_memory(v) || (skip && haul_layout_find(skip, v->start)))
			continue;
		buf = malloc(r.npages * 4096);
		cr_assert_not_null(buf);
		/* guard pages read as zero: the restorer installs them again */
		cr_assert_eq(trk_read_pages(pid, &r, 1, buf, NULL), 0);
		cr_assert_eq(rst_target_pages(t, r.start, buf, (uint32_t)r.npages), 0);
		free(buf);
	}
}

/*
 * The switchover as migrate does it: @pid stopped, its state dumped into
 * *@state, its final layout (with VmFlags) read into @fin and applied to
 * @t, the pages of @fin outside @sent sent (@sent NULL: none); then @pid is
 * killed and reaped.
 */
static void switch_over(struct rst_target *t, pid_t pid, const struct haul_layout *sent,
			struct haul_layout *fin, uint8_t **state, size_t *len)
{
	struct rst_seized *sz;

	cr_assert_eq(rst_seize(pid, &sz), 0);
	cr_assert_eq(rst_dump_state(sz, state, len), 0);
	cr_assert_eq(haul_layout_read(pid, true, fin), 0);
	cr_assert_eq(rst_target_layout(t, fin), 0);
	if (sent)
		send_pages(t, pid, fin, sent);
	rst_kill_seized(sz);
	reap(pid);
}

/* Resume @t from @state (freed), make the restored process check its VMAs, free @t. */
static void resume_checked(struct rst_target *t, uint8_t *state, size_t len)
{
	char why[256];
	pid_t here;

	cr_assert_eq(rst_target_resume(t, state, len, &here, why, sizeof(why)), 0, "resume: %s",
		     why);
	running[1] = here;
	cr_assert_eq(kill(here, SIGUSR2), 0);
	cr_expect(!th_wait_file(out, 0, "pass", 10000, NULL, 0), "restored process: %s",
		  th_slurp(out));
	rst_target_wait(t);
	running[1] = 0;
	rst_target_free(t);
	free(state);
}

/*
 * What migrate does, without the network: a pre-copy layout from maps (no
 * VmFlags) with its pages, then the process grows a VMA, and the switchover
 * applies the state's layout, whose geometry differs (the diff path, not
 * same_geometry): VMAs made without their mmap-time flags are remade with
 * their pages, advice is added, and only the new VMA's pages are sent.
 */
Test(rst_vmas, switchover_layout_with_new_geometry_remakes_and_advises_kept_vmas, .fini = cleanup,
     .timeout = 60)
{
	struct rst_target_opts o = {.pidns = RST_PIDNS_AUTO};
	struct haul_layout pre, fin = {0};
	struct rst_target *t;
	uint8_t *state;
	size_t len;
	pid_t pid = spawn("cases-live");

	o.pid = pid;
	cr_assert_eq(rst_target_new(&o, &t), 0);
	cr_assert_eq(haul_layout_read(pid, false, &pre), 0);
	cr_assert_eq(rst_target_layout(t, &pre), 0);
	send_pages(t, pid, &pre, NULL);
	kill(pid, SIGUSR1);
	cr_assert(!th_wait_file(out, 0, "grown", 10000, NULL, 0), "%s", th_slurp(out));
	switch_over(t, pid, &pre, &fin, &state, &len);
	resume_checked(t, state, len);
	haul_layout_release(&pre);
	haul_layout_release(&fin);
}

/* Checkpoint of @mode must fail, name @why, and leave the process running. */
static void refused(const char *mode, const char *why)
{
	char args[512], log[256];
	pid_t pid = spawn(mode);
	int rc;

	snprintf(args, sizeof(args), "checkpoint %d --images %s/img", (int)pid, dir);
	rc = haul(args, "ckpt.log");
	snprintf(log, sizeof(log), "%s/ckpt.log", dir);
	cr_expect_eq(rc, 1, "checkpoint exited %d: %s", rc, th_slurp(log));
	cr_expect(strstr(th_slurp(log), why), "the refusal does not say '%s': %s", why,
		  th_slurp(log));
	cr_expect_eq(kill(pid, 0), 0, "the refused process did not run on");
	kill(pid, SIGUSR2);
	cr_expect(!th_wait_file(out, 0, "pass", 10000, NULL, 0), "%s", th_slurp(out));
	kill(pid, SIGKILL); /* gone already if it passed */
	reap(pid);
}

Test(rst_vmas, private_mapping_of_shared_memory_is_refused_by_name, .fini = cleanup, .timeout = 60)
{
	refused("shmempriv", "is a private mapping of shared memory /dev/zero");
}

Test(rst_vmas, device_mapping_is_refused_by_its_vmflag, .fini = cleanup, .timeout = 60)
{
	refused("perfring", "anon_inode:[perf_event] is a PFN mapping of a device");
}

/* Write DIR/@name: 8 pages, page i filled with @base + i, @extra bytes more. */
static void write_pages(const char *name, char base, size_t extra)
{
	char path[256], page[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	cr_assert_not_null(f, "%s", path);
	for (int i = 0; i < 8; i++) {
		memset(page, base + i, sizeof(page));
		cr_assert_eq(fwrite(page, 1, sizeof(page), f), sizeof(page));
	}
	for (size_t i = 0; i < extra; i++)
		fputc('x', f);
	cr_assert_eq(fclose(f), 0);
}

/* Put DIR/@name at DIR/mapped (a new inode), restore: refused, saying @why. */
static void restore_refused_over(const char *name, const char *why)
{
	char from[256], to[256], args[512], log[256];
	int rc;

	snprintf(from, sizeof(from), "%s/%s", dir, name);
	snprintf(to, sizeof(to), "%s/mapped", dir);
	cr_assert_eq(rename(from, to), 0);
	snprintf(args, sizeof(args), "restore --detach --images %s/img", dir);
	rc = haul(args, "restore.log");
	snprintf(log, sizeof(log), "%s/restore.log", dir);
	if (rc == 0) { /* the restored process runs: kill it */
		FILE *f = fopen(strcat(strcpy(args, log), ".out"), "r");
		pid_t pid;

		if (f && fscanf(f, "%d", &pid) == 1 && pid > 0)
			kill(pid, SIGKILL);
		if (f)
			fclose(f);
	}
	cr_expect_neq(rc, 0, "a restore over another %s/mapped succeeded: %s", dir, th_slurp(log));
	cr_expect(strstr(th_slurp(log), to) && strstr(th_slurp(log), why),
		  "the refusal does not name %s and say '%s': %s", to, why, th_slurp(log));
}

/*
 * A private file mapping carries only the pages the process wrote; the
 * rest come from the file at the restore.  A file replaced since the
 * checkpoint (a package upgraded) used to be mapped as it is now: the
 * process read the new file's pages beside its old copies.  Now another
 * size or other bytes are refused by name, the same inode or the same
 * bytes in another file are restored.
 */
Test(rst_vmas, private_file_mapping_of_a_replaced_file_is_refused_by_name, .fini = cleanup,
     .timeout = 90)
{
	char args[512], path[256], orig[256];
	struct stat st;
	pid_t pid = spawn("filepriv");

	snprintf(args, sizeof(args), "checkpoint %d --images %s/img", (int)pid, dir);
	cr_assert_eq(haul(args, "ckpt.log"), 0, "checkpoint failed");
	reap(pid);
	snprintf(path, sizeof(path), "%s/mapped", dir);
	snprintf(orig, sizeof(orig), "%s/mapped.orig", dir);
	cr_assert_eq(link(path, orig), 0);
	cr_assert_eq(stat(orig, &st), 0);

	write_pages("other", 'b', 0); /* same size, other bytes, a later mtime */
	restore_refused_over("other", "holds other bytes on the restoring host than at the source");
	write_pages("longer", 'a', 100);
	restore_refused_over("longer", "bytes on the restoring host and was 32768 at the source");

	/* the same bytes in a new inode (its mtime does not matter: the bytes do): restored */
	write_pages("copy", 'a', 0);
	snprintf(path, sizeof(path), "%s/copy", dir);
	cr_assert_eq(utimensat(AT_FDCWD, path, (struct timespec[2]){st.st_atim, st.st_mtim}, 0), 0);
	snprintf(args, sizeof(args), "mv %s %s/mapped", path, dir);
	cr_assert_eq(system(args), 0);
	restore_and_check();
}

/* The same inode passes whatever its times (the same host). */
Test(rst_vmas, private_file_mapping_of_the_same_file_touched_is_restored, .fini = cleanup,
     .timeout = 60)
{
	char args[512], path[256];
	pid_t pid = spawn("filepriv");

	snprintf(args, sizeof(args), "checkpoint %d --images %s/img", (int)pid, dir);
	cr_assert_eq(haul(args, "ckpt.log"), 0, "checkpoint failed");
	reap(pid);
	snprintf(path, sizeof(path), "%s/mapped", dir);
	cr_assert_eq(utimensat(AT_FDCWD, path, NULL, 0), 0);
	restore_and_check();
}

/* A copy of an ELF file with another mtime but the same build-id is the same file. */
Test(rst_vmas, private_file_mapping_of_an_elf_copy_with_its_build_id_is_restored, .fini = cleanup,
     .timeout = 60)
{
	char args[1024];
	pid_t pid = spawn("fileelf");

	snprintf(args, sizeof(args), "checkpoint %d --images %s/img", (int)pid, dir);
	cr_assert_eq(haul(args, "ckpt.log"), 0, "checkpoint failed");
	reap(pid);
	usleep(10000); /* a later mtime for the copy */
	snprintf(args, sizeof(args), "cp %s/mapped %s/copy && mv %s/copy %s/mapped", dir, dir, dir,
		 dir);
	cr_assert_eq(system(args), 0);
	restore_and_check();
}

/*
 * A file deleted during pre-copy (an upgrade while the migration runs):
 * the first layout maps the file, its written pages come (page 6 as a zero
 * page, as the tracker sends a copy of zeros), then the file is deleted and
 * the state's layout names it deleted.  The kept VMA turns into a
 * placeholder: every page of it is kept, and page 6 read the file's bytes
 * again before.
 */
Test(rst_vmas, file_deleted_during_pre_copy_keeps_every_page, .fini = cleanup, .timeout = 60)
{
	struct rst_target_opts o = {.pidns = RST_PIDNS_AUTO};
	struct haul_layout pre, fin = {0};
	const struct haul_vma *del = NULL;
	struct rst_target *t;
	uint8_t *state;
	size_t len;
	pid_t pid = spawn("latedel");

	o.pid = pid;
	cr_assert_eq(rst_target_new(&o, &t), 0);
	cr_assert_eq(haul_layout_read(pid, false, &pre), 0);
	cr_assert_eq(rst_target_layout(t, &pre), 0);
	send_pages(t, pid, &pre, NULL);
	for (size_t i = 0; i < pre.n && !del; i++)
		if (pre.v[i].path && strstr(pre.v[i].path, "vmcases.deleted") &&
		    pre.v[i].pgoff == 4 * 4096)
			del = &pre.v[i];
	cr_assert_not_null(del, "no rw- VMA of the file");
	/* page 6 (the second of the rw- VMA's pages 4-7) is a copy of zeros */
	cr_assert_eq(rst_target_pages(t, del->start + 2 * 4096, NULL, 1), 0);
	kill(pid, SIGUSR1);
	cr_assert(!th_wait_file(out, 0, "unlinked", 10000, NULL, 0), "%s", th_slurp(out));
	switch_over(t, pid, NULL, &fin, &state, &len);
	resume_checked(t, state, len);
	haul_layout_release(&pre);
	haul_layout_release(&fin);
}

/* rst_ghost_send_fn for the tests: straight into the target, as the page server's sink does. */
static int keep_ghost(void *arg, const void *blob, size_t len, bool *kept)
{
	int ret = rst_target_ghost_pre(arg, blob, len);

	*kept = ret == 1;
	return ret < 0 ? ret : 0;
}

enum ghost_touch {
	GHOST_LEFT,    /* nothing writes it after it was sent */
	GHOST_REWRITE, /* a write (of the same bytes) after it was sent */
	GHOST_WRITER,  /* open for writing from after it was sent through the dump */
};

/* The map_files link of the deleted file's first VMA in @l. */
static void deleted_link(pid_t pid, const struct haul_layout *l, char *mf, size_t len)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].path && strstr(l->v[i].path, "vmcases.deleted")) {
			snprintf(mf, len, "/proc/%d/map_files/%llx-%llx", (int)pid,
				 (unsigned long long)l->v[i].start,
				 (unsigned long long)l->v[i].end);
			return;
		}
	cr_assert_fail("no VMA of the deleted file");
}

/*
 * A migration's pre-copy without the network: the "deleted" case's file
 * goes to the target before the freeze (vma_ghost_pre.c), then @touch
 * happens to it; the state names it without its bytes exactly when
 * nothing could have written it since, and the restored process reads the
 * file's bytes either way.
 */
static void ghost_sent_before(const char *mode, enum ghost_touch touch, bool want_presented)
{
	struct rst_target_opts o = {.pidns = RST_PIDNS_AUTO};
	struct haul_layout pre, fin = {0};
	struct rst_dump_prep *prep = NULL;
	Haul__Img__ProcessState *ps;
	struct rst_target *t;
	struct rst_seized *sz;
	char mf[128], page[4096];
	int wfd = -1, fd;
	uint8_t *state;
	size_t len;
	pid_t pid = spawn(mode);

	o.pid = pid;
	cr_assert_eq(rst_target_new(&o, &t), 0);
	cr_assert_eq(haul_layout_read(pid, false, &pre), 0);
	cr_assert_eq(rst_target_layout(t, &pre), 0);
	send_pages(t, pid, &pre, NULL);
	cr_assert_eq(rst_dump_prepare(pid, &prep), 0);
	cr_assert_eq(rst_dump_prep_ghosts(prep, pid, &pre, keep_ghost, t), 0);
	deleted_link(pid, &pre, mf, sizeof(mf));
	if (touch != GHOST_LEFT) {
		fd = open(mf, O_RDWR | O_CLOEXEC);
		cr_assert_geq(fd, 0, "%s: %s", mf, strerror(errno));
		cr_assert_eq(pread(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
		if (touch == GHOST_REWRITE)
			cr_assert_eq(pwrite(fd, page, sizeof(page), 0), (ssize_t)sizeof(page));
		if (touch == GHOST_WRITER)
			wfd = fd;
		else
			close(fd);
	}
	cr_assert_eq(rst_seize(pid, &sz), 0);
	cr_assert_eq(rst_dump_state_prepared(sz, prep, &state, &len), 0);
	if (wfd >= 0)
		close(wfd);
	cr_assert_eq(haul_layout_read(pid, true, &fin), 0);
	cr_assert_eq(rst_target_layout(t, &fin), 0);
	rst_kill_seized(sz);
	reap(pid);
	ps = haul__img__process_state__unpack(NULL, len, state);
	cr_assert(ps && ps->n_mapped_ghosts >= 1);
	for (size_t i = 0; i < ps->n_mapped_ghosts; i++) {
		const Haul__Img__MappedGhost *m = ps->mapped_ghosts[i];
		/* only the vmcases file is touched (exedel's executable is not) */
		bool want = strstr(m->path, "vmcases.deleted") ? want_presented : true;

		cr_expect_eq(m->ghost->presented, want, "%s", m->path);
		cr_expect_eq(m->ghost->has_content, !want, "%s", m->path);
	}
	haul__img__process_state__free_unpacked(ps, NULL);
	resume_checked(t, state, len);
	rst_dump_prep_free(prep);
	haul_layout_release(&pre);
	haul_layout_release(&fin);
}

Test(rst_vmas, deleted_file_sent_before_the_freeze_leaves_the_state, .fini = cleanup, .timeout = 60)
{
	ghost_sent_before("deleted", GHOST_LEFT, true);
}

/* Its program deleted under it too: the file made ahead is fit to be /proc/PID/exe again. */
Test(rst_vmas, deleted_executable_sent_before_the_freeze_is_the_exe_again, .fini = cleanup,
     .timeout = 60)
{
	ghost_sent_before("exedel", GHOST_LEFT, true);
}

/* IN_MODIFY since it was sent: the state carries its bytes again. */
Test(rst_vmas, deleted_file_written_after_it_was_sent_goes_with_the_state, .fini = cleanup,
     .timeout = 60)
{
	ghost_sent_before("deleted", GHOST_REWRITE, false);
}

/* A writer at the dump (it might write through a shared mapping, unseen): the same. */
Test(rst_vmas, deleted_file_open_for_writing_at_the_dump_goes_with_the_state, .fini = cleanup,
     .timeout = 60)
{
	ghost_sent_before("deleted", GHOST_WRITER, false);
}
