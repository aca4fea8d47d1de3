/*
 * val_procattr.c - the state validator (common/validate.h) checks the
 * process-attribute fields the restorer acts on: a cgroup path it would
 * create and write under a cgroup mount must be absolute and stay inside
 * it, and oom_score_adj must be one the kernel takes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/validate.h"

static char why[160];

/* A minimal valid ProcessState with one cgroup line and one thread. */
struct attr_state {
	Haul__Img__ProcessState ps;
	Haul__Img__Regs regs;
	Haul__Img__MmMap mm;
	Haul__Img__Creds creds;
	Haul__Img__Cgroup cg, *cgp[1];
	Haul__Img__ThreadState th, *thp[1];
	Haul__Img__Cgroup tcg, *tcgp[1];
};

static void attr_state_init(struct attr_state *s)
{
	memset(s, 0, sizeof(*s));
	haul__img__process_state__init(&s->ps);
	haul__img__regs__init(&s->regs);
	haul__img__mm_map__init(&s->mm);
	haul__img__creds__init(&s->creds);
	haul__img__cgroup__init(&s->cg);
	haul__img__cgroup__init(&s->tcg);
	haul__img__thread_state__init(&s->th);
	s->ps.kernel_release = "6.18.0";
	s->ps.arch = "x86_64";
	s->ps.pid = 100;
	s->ps.comm = "cat";
	s->ps.regs = &s->regs;
	s->mm.exe = "/usr/bin/cat";
	s->mm.start_stack = 0x7ffc00000000;
	s->ps.mm = &s->mm;
	s->ps.cwd = "/";
	s->ps.creds = &s->creds;
	s->cg.controllers = "cpu,cpuacct";
	s->cg.path = "/a/b";
	s->cgp[0] = &s->cg;
	s->ps.cgroups = s->cgp;
	s->ps.n_cgroups = 1;
	s->th.tid = 101;
	s->th.regs = &s->regs;
	s->tcg.controllers = "";
	s->tcg.path = "/t";
	s->tcgp[0] = &s->tcg;
	s->th.cgroups = s->tcgp;
	s->th.n_cgroups = 1;
	s->thp[0] = &s->th;
	s->ps.threads = s->thp;
	s->ps.n_threads = 1;
	s->ps.has_oom_score_adj = true;
	s->ps.oom_score_adj = 400;
}

Test(val_procattr, a_state_with_cgroups_and_an_oom_score_passes)
{
	struct attr_state s;

	attr_state_init(&s);
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), 0, "%s", why);
	s.cg.path = "/";
	s.cg.controllers = "name=systemd";
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), 0, "%s", why);
	s.cg.path = "/a..b/..c";
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), 0, "%s", why);
}

Test(val_procattr, refuses_a_cgroup_path_that_leaves_its_mount)
{
	static const char *const bad[] = {"../etc", "a/b", "/a/../../etc", "/..", "/a/.."};
	struct attr_state s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		attr_state_init(&s);
		s.cg.path = (char *)bad[i];
		cr_expect_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG, "%s", bad[i]);
		cr_expect(strstr(why, "cgroups[0].path"), "%s: %s", bad[i], why);
	}
	attr_state_init(&s);
	s.tcg.path = "/../x";
	cr_expect_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "threads[0].cgroups[0].path"), "%s", why);
}

Test(val_procattr, refuses_controllers_with_a_slash_and_an_oom_score_out_of_range)
{
	struct attr_state s;

	attr_state_init(&s);
	s.cg.controllers = "cpu/../x";
	cr_expect_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "cgroups[0].controllers"), "%s", why);
	attr_state_init(&s);
	s.ps.oom_score_adj = 1001;
	cr_expect_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "oom_score_adj"), "%s", why);
}
