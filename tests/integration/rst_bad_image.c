/*
 * rst_bad_image.c - `haul restore` on a corrupt image refuses it by name
 * and exits cleanly: an index naming a file VMA without a path (it used to
 * segfault in create_part), a state that does not parse, a state of an
 * older image version (both numbers named) and a state whose fd records
 * are wrong (a FileObject carrying another kind's part, an fd naming no
 * FileObject): refused at load, before any process is created.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pstore.h"
#include "image.pb-c.h"
#include "restore/restore_int.h"

static char dir[64];

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/haul-bad-image-%d", (int)getpid());
	log_init("test");
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* Commit an image of pid 4242 with @l and @state (@len bytes) in dir. */
static void make_image_len(const struct haul_layout *l, const void *state, size_t len)
{
	static uint8_t page[4096];
	struct pstore *s;
	struct pstore_proc *p;

	teardown();
	cr_assert_eq(pstore_open(dir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 4242, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, l), 0);
	cr_assert_eq(pstore_set_state(p, state, len), 0);
	memset(page, 'x', sizeof(page));
	cr_assert_eq(pstore_put(p, l->v[0].start, page, 1), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	pstore_close(s);
}

static void make_image(const struct haul_layout *l, const char *state)
{
	make_image_len(l, state, strlen(state));
}

/* `haul restore --images dir`: its exit status (-1: killed by a signal); output in @out. */
static int restore(char *out, size_t len)
{
	const char *bin = getenv("HAUL_BIN");
	char cmd[256];
	size_t n;
	FILE *f;
	int st;

	snprintf(cmd, sizeof(cmd), "timeout 20 %s restore --images %s 2>&1",
		 bin ? bin : "build/haul", dir);
	f = popen(cmd, "r");
	cr_assert_not_null(f);
	n = fread(out, 1, len - 1, f);
	out[n] = '\0';
	st = pclose(f);
	return WIFEXITED(st) && WEXITSTATUS(st) < 128 ? WEXITSTATUS(st) : -1;
}

TestSuite(rst_bad_image, .init = setup, .fini = teardown, .timeout = 60);

Test(rst_bad_image, file_vma_without_a_path_is_refused_by_name)
{
	struct haul_vma v[2] = {{.start = 0x10000, .end = 0x20000, .prot = 3, .flags = 2},
				{.start = 0x40000, .end = 0x50000, .prot = 1, .flags = 4}};
	struct haul_layout l = {v, 2};
	char out[4096];
	int st;

	make_image(&l, "state");
	st = restore(out, sizeof(out));
	cr_assert(st > 0 && st < 124, "haul restore exited %d: %s", st, out);
	cr_assert(strstr(out, "vmas[1]") && strstr(out, "no path"), "no field named: %s", out);
}

Test(rst_bad_image, a_state_that_does_not_parse_is_refused)
{
	struct haul_vma v = {.start = 0x10000, .end = 0x20000, .prot = 3, .flags = 2};
	struct haul_layout l = {&v, 1};
	char out[4096];
	int st;

	make_image(&l, "not a process state");
	st = restore(out, sizeof(out));
	cr_assert(st > 0 && st < 124, "haul restore exited %d: %s", st, out);
	cr_assert(strstr(out, "corrupt"), "no reason given: %s", out);
}

/*
 * A ProcessState of @version that passes the common checks, with fd 3 on
 * FileObject 7 (a character device): @eventfd_part gives it an eventfd's
 * part instead of its own, @file_id is what fd 3 names.
 */
static size_t pack_state(uint32_t version, bool eventfd_part, uint32_t file_id, uint8_t *buf)
{
	Haul__Img__ProcessState ps = HAUL__IMG__PROCESS_STATE__INIT;
	Haul__Img__Regs regs = HAUL__IMG__REGS__INIT;
	Haul__Img__MmMap mm = HAUL__IMG__MM_MAP__INIT;
	Haul__Img__Creds creds = HAUL__IMG__CREDS__INIT;
	Haul__Img__FileObject f = HAUL__IMG__FILE_OBJECT__INIT, *fp = &f;
	Haul__Img__RegFile reg = HAUL__IMG__REG_FILE__INIT;
	Haul__Img__EventfdFile efd = HAUL__IMG__EVENTFD_FILE__INIT;
	Haul__Img__FdEntry e = HAUL__IMG__FD_ENTRY__INIT, *ep = &e;

	ps.version = version;
	ps.kernel_release = "6.18.0";
	ps.arch = "x86_64";
	ps.pid = 4242;
	ps.comm = "cat";
	ps.regs = &regs;
	mm.exe = "/usr/bin/cat";
	ps.mm = &mm;
	ps.cwd = "/";
	ps.creds = &creds;
	f.id = 7;
	f.kind = HAUL__IMG__FD_KIND__FD_CHR;
	f.path = "/dev/null";
	if (eventfd_part)
		f.eventfd = &efd;
	else
		f.reg = &reg;
	ps.files = &fp;
	ps.n_files = 1;
	e.fd = 3;
	e.file_id = file_id;
	ps.fds = &ep;
	ps.n_fds = 1;
	cr_assert_lt(haul__img__process_state__get_packed_size(&ps), 4096);
	return haul__img__process_state__pack(&ps, buf);
}

Test(rst_bad_image, an_image_of_an_older_version_is_refused_naming_both_versions)
{
	struct haul_vma v = {.start = 0x10000, .end = 0x20000, .prot = 3, .flags = 2};
	struct haul_layout l = {&v, 1};
	uint8_t buf[4096];
	char out[4096];
	int st;

	make_image_len(&l, buf, pack_state(3, false, 7, buf));
	st = restore(out, sizeof(out));
	cr_assert(st > 0 && st < 124, "haul restore exited %d: %s", st, out);
	char want[96];

	snprintf(want, sizeof(want), "image version 3, this haul restores version %d",
		 RST_IMAGE_VERSION);
	cr_assert(strstr(out, want), "%s", out);
}

Test(rst_bad_image, a_file_object_with_another_kinds_part_or_an_fd_naming_none_is_refused)
{
	struct haul_vma v = {.start = 0x10000, .end = 0x20000, .prot = 3, .flags = 2};
	struct haul_layout l = {&v, 1};
	uint8_t buf[4096];
	char out[4096];
	int st;

	make_image_len(&l, buf, pack_state(RST_IMAGE_VERSION, true, 7, buf));
	st = restore(out, sizeof(out));
	cr_assert(st > 0 && st < 124, "haul restore exited %d: %s", st, out);
	cr_assert(strstr(out, "file 7") && strstr(out, "reg part"), "%s", out);

	make_image_len(&l, buf, pack_state(RST_IMAGE_VERSION, false, 8, buf));
	st = restore(out, sizeof(out));
	cr_assert(st > 0 && st < 124, "haul restore exited %d: %s", st, out);
	cr_assert(strstr(out, "fd 3") && strstr(out, "file_id: 8"), "%s", out);
}
