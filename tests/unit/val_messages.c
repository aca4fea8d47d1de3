/*
 * val_messages.c - the validators (common/validate.h) accept real-looking
 * messages and refuse each bad field, naming it.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "common/validate.h"

#define PG 4096ull

static char why[160];

static struct haul_vma vmas[3];

static struct haul_layout good_layout(void)
{
	memset(vmas, 0, sizeof(vmas));
	vmas[0] = (struct haul_vma){.start = 0x400000,
				    .end = 0x401000,
				    .prot = 5,
				    .flags = HAUL_VMA_FILE,
				    .path = "/bin/true"};
	vmas[1] = (struct haul_vma){
		.start = 0x7f0000000000, .end = 0x7f0000100000, .prot = 3, .flags = HAUL_VMA_ANON};
	vmas[2] = (struct haul_vma){.start = 0xffffffffff600000ull,
				    .end = 0xffffffffff601000ull,
				    .prot = 4,
				    .flags = HAUL_VMA_VSYSCALL,
				    .path = "[vsyscall]"};
	return (struct haul_layout){vmas, 3};
}

Test(val, a_real_looking_layout_passes)
{
	struct haul_layout l = good_layout();

	cr_assert_eq(val_layout(&l, why, sizeof(why)), 0, "%s", why);
}

Test(val, a_file_vma_without_a_path_is_refused_by_name)
{
	struct haul_layout l = good_layout();

	vmas[0].path = NULL;
	cr_assert_eq(val_layout(&l, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "vmas[0]") && strstr(why, "no path"), "%s", why);
}

Test(val, vmas_out_of_order_overlapping_unaligned_or_past_task_size_are_refused)
{
	struct haul_layout l = good_layout();

	vmas[1].start = 0x400000; /* overlaps vmas[0] */
	cr_assert_eq(val_layout(&l, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "vmas[1]"), "%s", why);
	l = good_layout();
	vmas[1].end = 0x7f0000100800;
	cr_assert_eq(val_layout(&l, why, sizeof(why)), -EBADMSG);
	l = good_layout();
	vmas[1].end = VAL_TASK_SIZE + PG;
	cr_assert_eq(val_layout(&l, why, sizeof(why)), -EBADMSG);
	l = good_layout();
	vmas[2].flags = HAUL_VMA_SPECIAL; /* only [vsyscall] may lie above TASK_SIZE */
	cr_assert_eq(val_layout(&l, why, sizeof(why)), -EBADMSG);
	l = good_layout();
	vmas[1].prot = 0x10;
	cr_assert_eq(val_layout(&l, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "protection"), "%s", why);
}

Test(val, an_over_long_path_is_refused)
{
	struct haul_layout l = good_layout();
	char *p = malloc(VAL_MAX_STR + 1);

	memset(p, 'a', VAL_MAX_STR);
	p[0] = '/';
	p[VAL_MAX_STR] = '\0';
	vmas[0].path = p;
	cr_assert_eq(val_layout(&l, why, sizeof(why)), -EBADMSG);
	free(p);
}

Test(val, session_open_fields_are_checked)
{
	Haul__Wire__SessionOpen o = HAUL__WIRE__SESSION_OPEN__INIT;

	o.session_id = 1;
	o.pid = 42;
	o.nstreams = 4;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), 0, "%s", why);
	o.nstreams = 65;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "nstreams"), "%s", why);
	o.nstreams = 1;
	o.kind = 7;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), -EBADMSG);
	o.kind = HAUL__WIRE__SESSION_KIND__LIVE;
	o.has_boot_id = true;
	o.boot_id.len = 3;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "boot_id"), "%s", why);
}

Test(val, session_open_apparmor_profiles_are_bounded_profile_names)
{
	static char *const bad[] = {"", "unconfined", "a//&b", ":ns:a", "a\nb"};
	Haul__Wire__SessionOpen o = HAUL__WIRE__SESSION_OPEN__INIT;
	char *names[VAL_MAX_AA_PROFILES + 1], *one[1];
	char longest[VAL_MAX_AA_NAME + 1];

	o.session_id = 1;
	o.pid = 42;
	o.nstreams = 1;
	for (size_t i = 0; i <= VAL_MAX_AA_PROFILES; i++)
		names[i] = "haultest";
	o.apparmor_profiles = names;
	o.n_apparmor_profiles = VAL_MAX_AA_PROFILES;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), 0, "%s", why);
	o.n_apparmor_profiles = VAL_MAX_AA_PROFILES + 1;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "apparmor_profiles: 17 names"), "%s", why);
	o.apparmor_profiles = one;
	o.n_apparmor_profiles = 1;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		one[0] = bad[i];
		cr_assert_eq(val_session_open(&o, why, sizeof(why)), -EBADMSG, "'%s'", bad[i]);
		cr_expect(strstr(why, "apparmor_profiles[0]"), "%s", why);
	}
	memset(longest, 'p', VAL_MAX_AA_NAME - 1);
	longest[VAL_MAX_AA_NAME - 1] = '\0';
	one[0] = longest;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), 0, "%s", why);
	longest[VAL_MAX_AA_NAME - 1] = 'p';
	longest[VAL_MAX_AA_NAME] = '\0';
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), -EBADMSG);
	one[0] = "usr.sbin.nginx//hat";
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), 0, "%s", why);
}

Test(val, a_tree_session_names_another_live_session_and_never_carries_a_tree_too)
{
	Haul__Wire__SessionOpen o = HAUL__WIRE__SESSION_OPEN__INIT;
	uint8_t tree[4] = {8, 1, 16, 42};

	o.session_id = 0x102;
	o.pid = 42;
	o.nstreams = 1;
	o.has_tree = true;
	o.tree = (ProtobufCBinaryData){sizeof(tree), tree};
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), 0, "%s", why);
	o.has_tree_session = true;
	o.tree_session = 0x101;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "tree_session"), "%s", why);
	o.has_tree = false;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), 0, "%s", why);
	o.tree_session = 0x102;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), -EBADMSG);
	o.tree_session = 0x101;
	o.kind = HAUL__WIRE__SESSION_KIND__STORE;
	cr_assert_eq(val_session_open(&o, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "tree"), "%s", why);
}

Test(val, page_ranges_past_the_address_space_are_refused)
{
	Haul__Wire__PageReq q = HAUL__WIRE__PAGE_REQ__INIT;
	Haul__Wire__PageRange r = HAUL__WIRE__PAGE_RANGE__INIT, *rp = &r;
	Haul__Wire__Pages m = HAUL__WIRE__PAGES__INIT;
	Haul__Wire__State st = HAUL__WIRE__STATE__INIT;
	uint64_t stale[2] = {VAL_TASK_SIZE - PG, 2};

	q.addr = 0x10000;
	q.npages = 16;
	cr_assert_eq(val_page_req(&q, why, sizeof(why)), 0, "%s", why);
	q.addr = 0xfffffffffffff000ull;
	q.npages = 2;
	cr_assert_eq(val_page_req(&q, why, sizeof(why)), -EBADMSG);
	r.addr = VAL_TASK_SIZE - PG;
	r.npages = 1;
	m.n_ranges = 1;
	m.ranges = &rp;
	cr_assert_eq(val_pages(&m, why, sizeof(why)), 0, "%s", why);
	r.npages = 2;
	cr_assert_eq(val_pages(&m, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "ranges[0]"), "%s", why);
	st.n_stale = 2;
	st.stale = stale;
	cr_assert_eq(val_stale(&st, 16, why, sizeof(why)), -EBADMSG);
	stale[1] = 1;
	cr_assert_eq(val_stale(&st, 16, why, sizeof(why)), 0, "%s", why);
}

/* A minimal ProcessState that passes; tests break one field each. */
struct pstate {
	Haul__Img__ProcessState ps;
	Haul__Img__Regs regs;
	Haul__Img__MmMap mm;
	Haul__Img__Creds creds;
	Haul__Img__SigAction sa, *sap[1];
	Haul__Img__Rlimit rl, *rlp[1];
};

static void pstate_init(struct pstate *s)
{
	haul__img__process_state__init(&s->ps);
	haul__img__regs__init(&s->regs);
	haul__img__mm_map__init(&s->mm);
	haul__img__creds__init(&s->creds);
	haul__img__sig_action__init(&s->sa);
	haul__img__rlimit__init(&s->rl);
	s->ps.kernel_release = "6.18.0";
	s->ps.arch = "x86_64";
	s->ps.pid = 100;
	s->ps.comm = "cat";
	s->ps.regs = &s->regs;
	s->mm.exe = "/usr/bin/cat";
	s->mm.start_stack = 0x7ffc00000000;
	s->ps.mm = &s->mm;
	s->ps.cwd = "/";
	s->ps.umask = 022;
	s->ps.creds = &s->creds;
	s->sa.signo = 10;
	s->sap[0] = &s->sa;
	s->ps.sigactions = s->sap;
	s->ps.n_sigactions = 1;
	s->rl.resource = 7;
	s->rlp[0] = &s->rl;
	s->ps.rlimits = s->rlp;
	s->ps.n_rlimits = 1;
}

Test(val, a_minimal_process_state_passes_and_round_trips_as_a_blob)
{
	struct pstate s;
	uint8_t buf[4096];
	size_t n;

	pstate_init(&s);
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), 0, "%s", why);
	n = haul__img__process_state__pack(&s.ps, buf);
	cr_assert_eq(val_state_blob(buf, n, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(val_state_blob(buf, n / 2, why, sizeof(why)), -EBADMSG);
}

Test(val, each_bad_process_state_field_is_named)
{
	struct pstate s;

	pstate_init(&s);
	s.sa.signo = 65;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "sigactions[0].signo"), "%s", why);
	pstate_init(&s);
	s.rl.resource = 99;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "rlimits[0]"), "%s", why);
	pstate_init(&s);
	s.ps.cwd = "";
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	pstate_init(&s);
	s.mm.brk = 0xffff800000000000ull;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "mm"), "%s", why);
	pstate_init(&s);
	s.ps.has_pdeathsig = true;
	s.ps.pdeathsig = 77;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	pstate_init(&s);
	/* a job-control stop is restored with kill(): only a signal that stops */
	s.ps.has_job_stop_signal = true;
	s.ps.job_stop_signal = SIGKILL;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "job_stop_signal"), "%s", why);
	s.ps.job_stop_signal = SIGTTOU;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), 0, "%s", why);
	pstate_init(&s);
	s.ps.auxv.len = 24;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "auxv"), "%s", why);
}

/* The fd records (FileObject, FdEntry) are the restorer's: tests/unit/rst_fd_validate.c. */

/* Vma.guards are installed with madvise at resume: only page-aligned runs inside their VMA. */
Test(val, guard_pages_outside_their_vma_or_unaligned_are_refused)
{
	Haul__Img__Vma v = HAUL__IMG__VMA__INIT, *vp = &v;
	Haul__Img__GuardRange g = HAUL__IMG__GUARD_RANGE__INIT, *gp = &g;
	struct pstate s;

	pstate_init(&s);
	v.start = 0x7f0000000000;
	v.end = 0x7f0000010000;
	v.prot = 3;
	v.flags = HAUL_VMA_ANON | HAUL_VMA_GUARD;
	v.guards = &gp;
	v.n_guards = 1;
	s.ps.vmas = &vp;
	s.ps.n_vmas = 1;
	g.start = 0x7f0000001000;
	g.end = 0x7f0000003000;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), 0, "%s", why);
	g.end = 0x7f0000011000;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "guard pages"), "%s", why);
	g.end = 0x7f0000002800;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
	g.end = g.start;
	cr_assert_eq(val_process_state(&s.ps, why, sizeof(why)), -EBADMSG);
}

Test(val, an_image_index_must_fit_its_pages_file)
{
	Haul__Wire__ImageIndex idx = HAUL__WIRE__IMAGE_INDEX__INIT;
	Haul__Wire__PageRun r = HAUL__WIRE__PAGE_RUN__INIT, *rp = &r;

	idx.pid = 7;
	idx.nslots = 4;
	r.addr = 0x10000;
	r.npages = 4;
	r.slot = 0;
	idx.runs = &rp;
	idx.n_runs = 1;
	cr_assert_eq(val_image_index(&idx, 7, 4, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(val_image_index(&idx, 8, 4, why, sizeof(why)), -EBADMSG);
	cr_assert_eq(val_image_index(&idx, 7, 3, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "nslots"), "%s", why);
	idx.nslots = 1ull << 40; /* would cost a 128 GiB bitmap */
	cr_assert_eq(val_image_index(&idx, 7, 4, why, sizeof(why)), -EBADMSG);
	idx.nslots = 4;
	r.slot = 2;
	cr_assert_eq(val_image_index(&idx, 7, 4, why, sizeof(why)), -EBADMSG);
	cr_assert(strstr(why, "runs[0]"), "%s", why);
	r.slot = UINT64_MAX; /* zero pages: no slots */
	cr_assert_eq(val_image_index(&idx, 7, 4, why, sizeof(why)), 0, "%s", why);
}

Test(val, tree_fields_encode_as_design_md_says)
{
	Haul__Wire__SessionOpen o = HAUL__WIRE__SESSION_OPEN__INIT;
	static const uint8_t member[] = {0x90, 0x01, 0x82, 0x02}, root[] = {0x8a, 0x01, 0x02, 8, 1};
	uint8_t tree[2] = {8, 1}, buf[256];
	size_t n;

	o.session_id = 0x103;
	o.pid = 42;
	o.nstreams = 1;
	o.has_tree_session = true;
	o.tree_session = 0x102;
	n = haul__wire__session_open__pack(&o, buf);
	cr_assert(memmem(buf, n, member, sizeof(member)), "tree_session is not 90 01 82 02");
	o.has_tree_session = false;
	o.has_tree = true;
	o.tree = (ProtobufCBinaryData){sizeof(tree), tree};
	n = haul__wire__session_open__pack(&o, buf);
	cr_assert(memmem(buf, n, root, sizeof(root)), "tree is not 8a 01 LEN <Tree>");
}
