/*
 * rst_bad_image.c - `haul restore` on a corrupt image refuses it by name
 * and exits cleanly: an index naming a file VMA without a path (it used to
 * segfault in create_part), and a state that does not parse.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/pstore.h"

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

/* Commit an image of pid 4242 with @l and @state in dir. */
static void make_image(const struct haul_layout *l, const char *state)
{
	static uint8_t page[4096];
	struct pstore *s;
	struct pstore_proc *p;

	teardown();
	cr_assert_eq(pstore_open(dir, &s), 0);
	cr_assert_eq(pstore_proc_get(s, 4242, true, &p), 0);
	cr_assert_eq(pstore_set_layout(p, l), 0);
	cr_assert_eq(pstore_set_state(p, state, strlen(state)), 0);
	memset(page, 'x', sizeof(page));
	cr_assert_eq(pstore_put(p, l->v[0].start, page, 1), 0);
	cr_assert_eq(pstore_commit(p, 1), 0);
	pstore_close(s);
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
