/*
 * rst_res_validate.c - the checks of the per-process resources' parts of
 * an image at load (src/restore/res_*.c validate hooks, through
 * rst_res_validate) and of the pidfd, inotify and fanotify FileObjects
 * (fd_pidfd.c, fd_inotify.c, fd_fanotify.c): POSIX timers' ids, clocks,
 * notifications and threads; seccomp programs and the stacks that name
 * them; AppArmor labels (their form here, their profile loaded on this
 * host); scheduling policies; watches and marks.  Each refusal names the
 * record.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "common/vma.h"
#include "restore/fd_int.h"
#include "restore/res_int.h"
#include "restore/restore.h"

static char why[256];

static int check(const Haul__Img__ProcessState *ps)
{
	why[0] = '\0';
	return rst_res_validate(ps, why, sizeof(why));
}

/* Two timers (ids 0 and 2), the first signalling, the second silent. */
struct timers {
	Haul__Img__ProcessState ps;
	Haul__Img__PosixTimer a, c, *tp[2];
};

static void timers_init(struct timers *s)
{
	haul__img__process_state__init(&s->ps);
	haul__img__posix_timer__init(&s->a);
	haul__img__posix_timer__init(&s->c);
	s->a.id = 0;
	s->a.clockid = 1;
	s->a.notify = SIGEV_SIGNAL;
	s->a.signo = SIGALRM;
	s->a.value_ns = 100000000;
	s->a.interval_ns = 100000000;
	s->c.id = 2;
	s->c.clockid = 7;
	s->c.notify = SIGEV_NONE;
	s->tp[0] = &s->a;
	s->tp[1] = &s->c;
	s->ps.posix_timers = s->tp;
	s->ps.n_posix_timers = 2;
}

Test(rst_res_validate, timers_with_one_id_twice_a_bad_clock_or_signal_are_named)
{
	struct timers s;

	timers_init(&s);
	cr_assert_eq(check(&s.ps), 0, "%s", why);
	s.c.id = 0;
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "POSIX timer id 0 appears twice"), "%s", why);

	timers_init(&s);
	s.c.clockid = 12;
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "POSIX timer 1 (id 2) is malformed"), "%s", why);

	timers_init(&s);
	s.a.signo = 65;
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "POSIX timer 0 (id 0)"), "%s", why);

	timers_init(&s);
	s.a.notify = 2; /* SIGEV_THREAD: glibc's, never the kernel's */
	cr_assert_eq(check(&s.ps), -EBADMSG);
}

Test(rst_res_validate, a_timer_signalling_a_thread_the_image_lacks_is_named)
{
	struct timers s;

	timers_init(&s);
	s.a.notify = SIGEV_SIGNAL | 4; /* SIGEV_THREAD_ID */
	cr_assert_eq(check(&s.ps), -EBADMSG, "no thread given");
	s.a.has_thread = true;
	s.a.thread = 1; /* the image has no thread but the main one */
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "id 0"), "%s", why);
	s.a.thread = 0;
	cr_assert_eq(check(&s.ps), 0, "%s", why);
}

/* One filter of 2 instructions, named by the main thread's stack. */
struct sc {
	Haul__Img__ProcessState ps;
	Haul__Img__SeccompFilter f, *fp[1];
	Haul__Img__SeccompStack st, *sp[1];
	uint32_t idx[1];
	uint8_t prog[16];
};

static void sc_init(struct sc *s)
{
	haul__img__process_state__init(&s->ps);
	haul__img__seccomp_filter__init(&s->f);
	haul__img__seccomp_stack__init(&s->st);
	memset(s->prog, 0, sizeof(s->prog));
	s->f.prog.data = s->prog;
	s->f.prog.len = sizeof(s->prog);
	s->fp[0] = &s->f;
	s->idx[0] = 0;
	s->st.filter = s->idx;
	s->st.n_filter = 1;
	s->sp[0] = &s->st;
	s->ps.seccomp_filters = s->fp;
	s->ps.n_seccomp_filters = 1;
	s->ps.seccomp_stacks = s->sp;
	s->ps.n_seccomp_stacks = 1;
}

Test(rst_res_validate, seccomp_programs_of_a_bad_length_or_flags_are_named)
{
	struct sc s;

	sc_init(&s);
	cr_assert_eq(check(&s.ps), 0, "%s", why);
	s.f.prog.len = 12;
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "seccomp filter 0 is malformed (12 bytes"), "%s", why);
	s.f.prog.len = 0;
	cr_assert_eq(check(&s.ps), -EBADMSG);

	sc_init(&s);
	s.f.has_flags = true;
	s.f.flags = 1; /* TSYNC is the restorer's choice, never the image's */
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "flags 0x1"), "%s", why);
}

Test(rst_res_validate, seccomp_stacks_naming_a_missing_filter_or_thread_are_named)
{
	struct sc s;

	sc_init(&s);
	s.idx[0] = 1;
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "seccomp stack 0 names filter 1 of 1"), "%s", why);

	sc_init(&s);
	s.ps.n_threads = 1; /* two threads, one stack */
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "1 seccomp stacks for 2 threads"), "%s", why);

	sc_init(&s);
	s.st.has_strict = true;
	s.st.strict = true;
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "strict and has filters"), "%s", why);
	s.st.n_filter = 0;
	cr_assert_eq(check(&s.ps), 0, "%s", why);
}

/* A process with one fd, 3, on file 1 of KIND, whose kind's part is not set. */
struct one_fd {
	Haul__Img__ProcessState ps;
	Haul__Img__FileObject f, *fp[1];
	Haul__Img__FdEntry e, *ep[1];
};

static void one_fd_init(struct one_fd *s, Haul__Img__FdKind kind)
{
	haul__img__process_state__init(&s->ps);
	haul__img__file_object__init(&s->f);
	haul__img__fd_entry__init(&s->e);
	s->f.id = 1;
	s->f.kind = kind;
	s->e.fd = 3;
	s->e.file_id = 1;
	s->fp[0] = &s->f;
	s->ep[0] = &s->e;
	s->ps.files = s->fp;
	s->ps.n_files = 1;
	s->ps.fds = s->ep;
	s->ps.n_fds = 1;
}

static int fd_check(const struct one_fd *s)
{
	why[0] = '\0';
	return rst_fd_validate(&s->ps, why, sizeof(why));
}

Test(rst_res_validate, a_pidfd_without_its_part_or_on_no_pid_is_named)
{
	struct one_fd o;
	Haul__Img__PidfdFile p = HAUL__IMG__PIDFD_FILE__INIT;

	one_fd_init(&o, HAUL__IMG__FD_KIND__FD_PIDFD);
	cr_assert_eq(fd_check(&o), -EBADMSG);
	o.f.pidfd = &p;
	p.pid = 0;
	cr_assert_eq(fd_check(&o), -EBADMSG);
	cr_expect(strstr(why, "pidfd on pid 0"), "%s", why);
	p.pid = 42;
	cr_assert_eq(fd_check(&o), 0, "%s", why);
}

Test(rst_res_validate, inotify_watches_out_of_order_or_relative_are_named)
{
	struct one_fd o;
	Haul__Img__InotifyFile in = HAUL__IMG__INOTIFY_FILE__INIT;
	Haul__Img__InotifyWatch w1 = HAUL__IMG__INOTIFY_WATCH__INIT;
	Haul__Img__InotifyWatch w2 = HAUL__IMG__INOTIFY_WATCH__INIT, *wp[2] = {&w1, &w2};

	one_fd_init(&o, HAUL__IMG__FD_KIND__FD_INOTIFY);
	cr_assert_eq(fd_check(&o), -EBADMSG, "no inotify part");
	o.f.inotify = &in;
	in.watches = wp;
	in.n_watches = 2;
	w1.wd = 1;
	w1.mask = 0x100; /* IN_CREATE */
	w1.path = "/tmp";
	w2.wd = 2;
	w2.mask = 0x2; /* IN_MODIFY */
	w2.path = "/etc/passwd";
	cr_assert_eq(fd_check(&o), 0, "%s", why);
	w2.wd = 3;
	cr_assert_eq(fd_check(&o), -EBADMSG);
	cr_expect(strstr(why, "file 1 (inotify).watches[1]: wd 3"), "%s", why);
	w2.wd = 2;
	w2.path = "passwd";
	cr_assert_eq(fd_check(&o), -EBADMSG);
	w2.path = "/etc/passwd";
	w2.mask = 0x10000000; /* not an inotify_add_watch bit haul carries */
	cr_assert_eq(fd_check(&o), -EBADMSG);
}

Test(rst_res_validate, fanotify_permission_classes_and_bad_marks_are_named)
{
	struct one_fd o;
	Haul__Img__FanotifyFile fa = HAUL__IMG__FANOTIFY_FILE__INIT;
	Haul__Img__FanotifyMark m = HAUL__IMG__FANOTIFY_MARK__INIT, *mp[1] = {&m};

	one_fd_init(&o, HAUL__IMG__FD_KIND__FD_FANOTIFY);
	cr_assert_eq(fd_check(&o), -EBADMSG, "no fanotify part");
	o.f.fanotify = &fa;
	fa.marks = mp;
	fa.n_marks = 1;
	m.mask = 0x20; /* FAN_OPEN */
	m.path = "/tmp";
	cr_assert_eq(fd_check(&o), 0, "%s", why);
	fa.flags = 0x4; /* FAN_CLASS_CONTENT */
	cr_assert_eq(fd_check(&o), -EBADMSG);
	cr_expect(strstr(why, "file 1 (fanotify): a permission class"), "%s", why);
	fa.flags = 0;
	m.type = 3;
	cr_assert_eq(fd_check(&o), -EBADMSG);
	cr_expect(strstr(why, "file 1 (fanotify).marks[0]: type 3"), "%s", why);
	m.type = 1;
	m.mask = 0;
	cr_assert_eq(fd_check(&o), -EBADMSG, "a mark without masks");
}

/* A process of two threads: the main one confined by @main, the other by @thread. */
struct aa {
	Haul__Img__ProcessState ps;
	char *labels[2];
};

static void aa_init(struct aa *s, const char *main, const char *thread)
{
	haul__img__process_state__init(&s->ps);
	s->ps.pid = 42;
	s->ps.n_threads = 1;
	s->labels[0] = (char *)main;
	s->labels[1] = (char *)thread;
	s->ps.apparmor_labels = s->labels;
	s->ps.n_apparmor_labels = 2;
}

Test(rst_res_validate, apparmor_labels_of_the_wrong_count_or_form_are_named)
{
	static const char *const bad[] = {"a//&b", ":ns:a", "unconfined", "a\nb"};
	struct aa s;

	aa_init(&s, "", "");
	s.ps.n_threads = 2;
	cr_assert_eq(check(&s.ps), -EBADMSG);
	cr_expect(strstr(why, "2 AppArmor labels for 3 threads"), "%s", why);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aa_init(&s, "", bad[i]);
		cr_assert_eq(check(&s.ps), -EBADMSG, "%s", bad[i]);
		cr_expect(strstr(why, "AppArmor label 1 "), "%s", why);
	}
}

Test(rst_res_validate, unconfined_threads_need_no_apparmor_here)
{
	struct aa s;

	aa_init(&s, "", "");
	cr_assert_eq(check(&s.ps), 0, "%s", why);
	s.ps.n_apparmor_labels = 0;
	cr_assert_eq(check(&s.ps), 0, "%s", why);
}

Test(rst_res_validate, a_profile_this_host_lacks_is_refused_by_name)
{
	struct aa s;

	aa_init(&s, "", "haul-unit-no-such-profile");
	cr_assert_eq(check(&s.ps), -EOPNOTSUPP, "%s", why);
	if (access("/sys/kernel/security/apparmor", F_OK))
		cr_expect(strstr(why, "pid 42: AppArmor profile 'haul-unit-no-such-profile' cannot "
				      "be applied: AppArmor is not enabled on this host"),
			  "%s", why);
	else
		cr_expect(strstr(why, "pid 42: AppArmor profile 'haul-unit-no-such-profile' is not "
				      "loaded on this host: load it (apparmor_parser -r FILE)"),
			  "%s", why);
}

/* haul migrate: the target's check of SessionOpen.apparmor_profiles at the open (sink.c). */
Test(rst_res_validate, a_session_naming_a_profile_this_host_lacks_is_refused_by_name)
{
	char *none[] = {""}, *names[] = {"", "haul-unit-no-such-profile"};

	why[0] = '\0';
	cr_assert_eq(rst_apparmor_check_profiles(42, NULL, 0, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(rst_apparmor_check_profiles(42, none, 1, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(rst_apparmor_check_profiles(42, names, 2, why, sizeof(why)), -EOPNOTSUPP);
	if (access("/sys/kernel/security/apparmor", F_OK))
		cr_expect(strstr(why, "pid 42: AppArmor profile 'haul-unit-no-such-profile' cannot "
				      "be applied: AppArmor is not enabled on this host"),
			  "%s", why);
	else
		cr_expect(strstr(why, "pid 42: AppArmor profile 'haul-unit-no-such-profile' is not "
				      "loaded on this host: load it (apparmor_parser -r FILE) and "
				      "retry"),
			  "%s", why);
}

/* The source's set: each profile of its threads once; an unconfined test process has none. */
Test(rst_res_validate, an_unconfined_process_needs_no_profile_on_the_target)
{
	char raw[256], **names = NULL;
	size_t n = 1;

	if (!rst_apparmor_raw(getpid(), getpid(), raw, sizeof(raw)) && strcmp(raw, "unconfined"))
		cr_skip_test("this test runs confined (%s)", raw);
	cr_assert_eq(rst_apparmor_profiles(getpid(), &names, &n, why, sizeof(why)), 0, "%s", why);
	cr_expect_eq(n, 0);
	cr_expect_null(names);
	rst_apparmor_profiles_free(names, n);
	cr_assert_eq(rst_apparmor_profiles(-1, &names, &n, why, sizeof(why)), -ESRCH);
	cr_expect(strstr(why, "pid -1"), "%s", why);
}

/* A deleted file mapped privately: its content once per inode, for every VMA naming it. */
Test(rst_res_validate, mapped_ghosts_without_content_twice_or_missing_are_named)
{
	Haul__Img__ProcessState ps;
	Haul__Img__MappedGhost m[2], *mp[2] = {&m[0], &m[1]};
	Haul__Img__GhostFile g[2];
	Haul__Img__Vma v, *vp[1] = {&v};
	uint64_t ext[2] = {0, 4};
	uint8_t data[4] = "abc";

	haul__img__process_state__init(&ps);
	haul__img__vma__init(&v);
	v.start = 0x10000;
	v.end = 0x12000;
	v.flags = HAUL_VMA_FILE | HAUL_VMA_DELETED;
	v.dev = 8;
	v.ino = 9;
	v.path = "/usr/lib/libx.so";
	ps.vmas = vp;
	ps.n_vmas = 1;
	cr_assert_eq(check(&ps), -EBADMSG);
	cr_assert(strstr(why, "vmas[0]: maps deleted file /usr/lib/libx.so, whose content the "
			      "image lacks"),
		  "%s", why);

	for (int i = 0; i < 2; i++) {
		haul__img__mapped_ghost__init(&m[i]);
		haul__img__ghost_file__init(&g[i]);
		m[i].path = "/usr/lib/libx.so";
		m[i].ghost = &g[i];
		g[i].dev = 8;
		g[i].ino = 9;
		g[i].has_size = true;
		g[i].size = 8192;
		g[i].has_content = true;
		g[i].content.data = data;
		g[i].content.len = 4;
		g[i].extents = ext;
		g[i].n_extents = 2;
	}
	ps.mapped_ghosts = mp;
	ps.n_mapped_ghosts = 1;
	cr_assert_eq(check(&ps), 0, "%s", why);
	ps.n_mapped_ghosts = 2;
	cr_assert_eq(check(&ps), -EBADMSG);
	cr_assert(strstr(why, "mapped_ghosts[1] (/usr/lib/libx.so): a second one of its inode"),
		  "%s", why);
	ps.n_mapped_ghosts = 1;
	g[0].has_content = false;
	cr_assert_eq(check(&ps), -EBADMSG);
	cr_assert(strstr(why, "no content"), "%s", why);
	g[0].has_content = true;
	ext[1] = 5; /* more bytes than the content holds */
	cr_assert_eq(check(&ps), -EBADMSG);
	ext[1] = 4;
	m[0].path = "lib.so";
	cr_assert_eq(check(&ps), -EBADMSG);
	cr_assert(strstr(why, "not absolute"), "%s", why);
}

Test(rst_res_validate, scheduling_policies_of_the_wrong_count_policy_or_priority_are_named)
{
	Haul__Img__ProcessState ps;
	Haul__Img__SchedPolicy a, b, *pp[2] = {&a, &b};

	haul__img__process_state__init(&ps);
	haul__img__sched_policy__init(&a);
	haul__img__sched_policy__init(&b);
	a.policy = 2; /* SCHED_RR 3, as zdtm sched_policy00 */
	a.has_priority = true;
	a.priority = 3;
	a.has_reset_on_fork = a.reset_on_fork = true;
	b.policy = 3; /* SCHED_BATCH */
	ps.sched = pp;
	ps.n_sched = 1;
	cr_assert_eq(check(&ps), 0, "%s", why);
	ps.n_sched = 2;
	cr_expect_eq(check(&ps), -EBADMSG, "two policies for one thread accepted");
	cr_expect(strstr(why, "2 scheduling policies for 1 threads"), "%s", why);
	ps.n_sched = 1;
	a.priority = 0;
	cr_expect_eq(check(&ps), -EBADMSG, "SCHED_RR with priority 0 accepted");
	cr_expect(strstr(why, "thread 0"), "%s", why);
	a.priority = 3;
	a.policy = 6;
	cr_expect_eq(check(&ps), -EBADMSG, "SCHED_DEADLINE accepted");
	a.policy = 3;
	cr_expect_eq(check(&ps), -EBADMSG, "SCHED_BATCH with a real-time priority accepted");
	a.policy = 2;
	a.has_ioprio = true;
	a.ioprio = 3 << 13; /* class idle */
	cr_expect_eq(check(&ps), 0, "%s", why);
	a.ioprio = 4 << 13;
	cr_expect_eq(check(&ps), -EBADMSG, "I/O priority class 4 accepted");
	a.ioprio = 0;
	a.has_nice = true;
	a.nice = -21;
	cr_expect_eq(check(&ps), -EBADMSG, "nice -21 accepted");
}
