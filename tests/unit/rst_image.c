/*
 * rst_image.c - the restorer's checks that need no process: image parsing,
 * clock offsets, options refused before anything is forked, and the images
 * directory (atomic switch, leftovers of failed checkpoints, identity).
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "image.pb-c.h"
#include "restore/imgdir_int.h"
#include "restore/restore.h"

static uint64_t now_ns(clockid_t c)
{
	struct timespec ts;

	clock_gettime(c, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* A minimal valid ProcessState with the given clocks, packed into *@buf. */
static size_t pack_state(uint64_t mono, uint64_t boot, uint8_t **buf)
{
	Haul__Img__ProcessState ps = HAUL__IMG__PROCESS_STATE__INIT;
	Haul__Img__Regs regs = HAUL__IMG__REGS__INIT;
	Haul__Img__MmMap mm = HAUL__IMG__MM_MAP__INIT;
	Haul__Img__Creds creds = HAUL__IMG__CREDS__INIT;
	size_t n;

	ps.version = 1;
	ps.kernel_release = "test";
	ps.arch = "x86_64";
	ps.pid = 42;
	ps.comm = "unit";
	ps.regs = &regs;
	mm.exe = "/bin/true";
	ps.mm = &mm;
	ps.creds = &creds;
	ps.cwd = "/";
	ps.monotonic_ns = mono;
	ps.boottime_ns = boot;
	n = haul__img__process_state__get_packed_size(&ps);
	*buf = malloc(n);
	cr_assert(*buf);
	return haul__img__process_state__pack(&ps, *buf);
}

Test(rst_image, clock_offsets_reject_a_corrupt_state)
{
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0x01, 0x02};
	int64_t m, b;

	cr_expect_eq(rst_image_clock_offsets(junk, sizeof(junk), &m, &b), -EBADMSG);
}

Test(rst_image, clock_offsets_make_clocks_continue_from_the_dump)
{
	uint64_t mono = now_ns(CLOCK_MONOTONIC) + 3600ULL * 1000000000ULL;
	uint64_t boot =
		now_ns(CLOCK_BOOTTIME) > 5000000000ULL ? now_ns(CLOCK_BOOTTIME) - 5000000000ULL : 0;
	int64_t m, b;
	uint8_t *buf;
	size_t n = pack_state(mono, boot, &buf);

	cr_assert_eq(rst_image_clock_offsets(buf, n, &m, &b), 0);
	/* One hour ahead, five seconds behind, give or take the time this test takes. */
	cr_expect(m > 3599LL * 1000000000LL && m <= 3600LL * 1000000000LL, "mono offset %lld",
		  (long long)m);
	cr_expect(b <= -5LL * 1000000000LL && b > -6LL * 1000000000LL, "boot offset %lld",
		  (long long)b);
	free(buf);
}

Test(rst_image, target_refuses_lazy_and_bad_pids_before_forking)
{
	struct rst_target_opts o = {.pid = 1234, .lazy = true};
	struct rst_target *t = NULL;

	cr_expect_eq(rst_target_new(&o, &t), -EOPNOTSUPP);
	cr_expect_null(t);
	o.lazy = false;
	o.pid = 0;
	cr_expect_eq(rst_target_new(&o, &t), -EINVAL);
	o.pid = -5;
	cr_expect_eq(rst_target_new(&o, &t), -EINVAL);
	cr_expect_null(t);
}

Test(rst_image, precheck_of_a_missing_process_says_it_is_gone)
{
	char why[256];

	/* PIDs above pid_max never exist. */
	cr_expect_eq(rst_dump_precheck(0x7ffffff0, why, sizeof(why)), -ESRCH);
	cr_expect(strstr(why, "gone"), "%s", why);
}

/* The 16 bytes of our boot_id, or false when /proc does not say. */
static bool our_boot_id(uint8_t id[16])
{
	unsigned b[16];
	char text[64];
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "re");
	bool ok;

	if (!f)
		return false;
	ok = fgets(text, sizeof(text), f) &&
	     sscanf(text, "%2x%2x%2x%2x-%2x%2x-%2x%2x-%2x%2x-%2x%2x%2x%2x%2x%2x", &b[0], &b[1],
		    &b[2], &b[3], &b[4], &b[5], &b[6], &b[7], &b[8], &b[9], &b[10], &b[11], &b[12],
		    &b[13], &b[14], &b[15]) == 16;
	fclose(f);
	for (int i = 0; ok && i < 16; i++)
		id[i] = (uint8_t)b[i];
	return ok;
}

Test(rst_image, session_clocks_from_another_host_continue_the_source_clocks)
{
	struct ps_session_info info = {.has_clocks = true, .has_boot_id = true};
	int64_t mono, boot, now_m, now_b;

	/* A source an hour ahead of us, in a time namespace of its own. */
	memset(info.boot_id, 0xab, sizeof(info.boot_id));
	info.clock_monotonic_ns = (int64_t)now_ns(CLOCK_MONOTONIC) + 3600000000000LL;
	info.clock_boottime_ns = (int64_t)now_ns(CLOCK_BOOTTIME) + 3600000000000LL;
	info.timens_monotonic_ns = 5;
	rst_session_clock_offsets(&info, &mono, &boot);
	now_m = (int64_t)now_ns(CLOCK_MONOTONIC);
	now_b = (int64_t)now_ns(CLOCK_BOOTTIME);
	/* our clock + offset = the source's now, within the time this test took */
	cr_expect_leq(llabs(now_m + mono - info.clock_monotonic_ns), 100000000LL);
	cr_expect_leq(llabs(now_b + boot - info.clock_boottime_ns), 100000000LL);
}

Test(rst_image, session_clocks_on_the_same_host_are_the_process_offsets)
{
	struct ps_session_info info = {.has_clocks = true, .has_boot_id = true};
	int64_t mono, boot;

	if (!our_boot_id(info.boot_id))
		cr_skip_test("no /proc/sys/kernel/random/boot_id");
	info.clock_monotonic_ns = (int64_t)now_ns(CLOCK_MONOTONIC) + 777; /* one-way estimate */
	info.clock_boottime_ns = (int64_t)now_ns(CLOCK_BOOTTIME) + 777;
	info.timens_monotonic_ns = -42;
	info.timens_boottime_ns = 7;
	rst_session_clock_offsets(&info, &mono, &boot);
	cr_expect_eq(mono, -42);
	cr_expect_eq(boot, 7);
}

Test(rst_image, session_without_clocks_keeps_ours)
{
	struct ps_session_info info = {0};
	int64_t mono = 1, boot = 1;

	rst_session_clock_offsets(&info, &mono, &boot);
	cr_expect_eq(mono, 0);
	cr_expect_eq(boot, 0);
}

/* ---- the images directory: atomic switch, leftovers, identity ---------------------------- */

static char imgdir[64];

static void imgdir_make(void)
{
	snprintf(imgdir, sizeof(imgdir), "/tmp/rst-imgdir-%d-XXXXXX", getpid());
	cr_assert_not_null(mkdtemp(imgdir));
}

static void imgdir_remove(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", imgdir);
	cr_assert_eq(system(cmd), 0);
}

/* Entries of imgdir whose name starts with @prefix. */
static int count_entries(const char *prefix)
{
	DIR *d = opendir(imgdir);
	struct dirent *de;
	int n = 0;

	cr_assert_not_null(d);
	while ((de = readdir(d)))
		n += !strncmp(de->d_name, prefix, strlen(prefix)) && strcmp(de->d_name, ".") &&
		     strcmp(de->d_name, "..");
	closedir(d);
	return n;
}

/* One checkpoint of ourselves known as @own whose image holds DIR/<id>/<own>/mark = @mark. */
static void write_image(pid_t own, const char *mark, char *id, size_t len)
{
	struct rst_imgdir_tx tx;
	char path[PATH_MAX + 32];
	FILE *f;

	cr_assert_eq(rst_imgdir_begin(imgdir, getpid(), own, &tx), 0);
	snprintf(path, sizeof(path), "%s/%d", tx.path, (int)own);
	cr_assert_eq(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/%d/mark", tx.path, (int)own);
	f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(mark, f);
	fclose(f);
	cr_assert_eq(rst_imgdir_switch(&tx, NULL), 0);
	snprintf(id, len, "%s", tx.id);
	rst_imgdir_end(&tx);
}

static void read_mark(const char *id, pid_t own, char *buf, size_t len)
{
	char path[PATH_MAX];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s/%d/mark", imgdir, id, (int)own);
	f = fopen(path, "r");
	cr_assert_not_null(f, "%s is missing", path);
	cr_assert_not_null(fgets(buf, (int)len, f));
	fclose(f);
}

Test(rst_image, a_new_image_of_the_same_process_replaces_the_old_and_leaves_nothing)
{
	char id[96], id2[96], mark[16];

	imgdir_make();
	write_image(1, "old", id, sizeof(id));
	write_image(1, "new", id2, sizeof(id2));
	cr_assert_str_eq(id, id2);
	read_mark(id, 1, mark, sizeof(mark));
	cr_assert_str_eq(mark, "new");
	cr_assert_eq(count_entries(""), 1);
	imgdir_remove();
}

Test(rst_image, a_failed_checkpoint_leaves_the_old_image_and_no_partial_files)
{
	struct rst_imgdir_tx tx;
	char id[96], mark[16];

	imgdir_make();
	write_image(1, "old", id, sizeof(id));
	cr_assert_eq(rst_imgdir_begin(imgdir, getpid(), 1, &tx), 0);
	cr_assert_eq(count_entries(RST_IMGDIR_TMP), 1);
	rst_imgdir_end(&tx); /* failed before the switch */
	cr_assert_eq(count_entries(RST_IMGDIR_TMP), 0);
	read_mark(id, 1, mark, sizeof(mark));
	cr_assert_str_eq(mark, "old");
	imgdir_remove();
}

Test(rst_image, leftovers_of_a_killed_checkpoint_go_at_the_next_one_a_live_ones_stay)
{
	struct rst_imgdir_tx live, next;
	char path[PATH_MAX];

	imgdir_make();
	/* A checkpoint that died: its tmp directory is there, nobody holds its lock. */
	snprintf(path, sizeof(path), "%s/%sdead-XXXXXX", imgdir, RST_IMGDIR_TMP);
	cr_assert_not_null(mkdtemp(path));
	cr_assert_eq(rst_imgdir_begin(imgdir, getpid(), 1, &live), 0);
	cr_assert_eq(count_entries(RST_IMGDIR_TMP), 1); /* the dead one went */
	cr_assert_eq(rst_imgdir_begin(imgdir, getpid(), 2, &next), 0);
	cr_assert_eq(count_entries(RST_IMGDIR_TMP), 2); /* the live one stays */
	rst_imgdir_end(&next);
	rst_imgdir_end(&live);
	cr_assert_eq(count_entries(RST_IMGDIR_TMP), 0);
	imgdir_remove();
}

Test(rst_image, restore_takes_the_only_image_and_asks_which_of_several)
{
	char id1[96], id2[96], store[PATH_MAX], want[PATH_MAX];
	pid_t found = 0;

	imgdir_make();
	cr_assert_eq(rst_imgdir_find(imgdir, NULL, 0, store, sizeof(store), &found), -ENOENT);
	write_image(1, "a", id1, sizeof(id1));
	cr_assert_eq(rst_imgdir_find(imgdir, NULL, 0, store, sizeof(store), &found), 0);
	snprintf(want, sizeof(want), "%s/%s", imgdir, id1);
	cr_assert_str_eq(store, want);
	cr_assert_eq(found, 1);
	/* Another process, PID 7 in its own namespace: its own image, none replaced. */
	write_image(7, "b", id2, sizeof(id2));
	cr_assert_str_neq(id1, id2);
	cr_assert_eq(rst_imgdir_find(imgdir, NULL, 0, store, sizeof(store), &found), -EINVAL);
	cr_assert_eq(rst_imgdir_find(imgdir, id2, 0, store, sizeof(store), &found), 0);
	cr_assert_eq(found, 7);
	cr_assert_eq(rst_imgdir_find(imgdir, NULL, 1, store, sizeof(store), &found), 0);
	snprintf(want, sizeof(want), "%s/%s", imgdir, id1);
	cr_assert_str_eq(store, want);
	cr_assert_eq(rst_imgdir_find(imgdir, "nope", 0, store, sizeof(store), &found), -ENOENT);
	imgdir_remove();
}

Test(rst_image, restore_reads_a_page_servers_directory_by_pid)
{
	char path[PATH_MAX], store[PATH_MAX];
	pid_t found = 0;

	imgdir_make();
	snprintf(path, sizeof(path), "%s/42", imgdir);
	cr_assert_eq(mkdir(path, 0700), 0);
	cr_assert_eq(rst_imgdir_find(imgdir, NULL, 0, store, sizeof(store), &found), 0);
	cr_assert_str_eq(store, imgdir);
	cr_assert_eq(found, 42);
	cr_assert_eq(rst_imgdir_find(imgdir, "42", 0, store, sizeof(store), &found), 0);
	cr_assert_eq(rst_imgdir_find(imgdir, NULL, 43, store, sizeof(store), &found), -ENOENT);
	imgdir_remove();
}
