/*
 * ctr_joinns.c - namespaces a container joins (runc's uts/ipc/pid
 * namespace paths; src/restore/joinns_ctr.c): which join_ns and external
 * options the criu entry point accepts and which it refuses by name, and
 * what a restore makes of the join_ns entries (the path kept, checked to
 * be a namespace of that kind; a shared IPC namespace needing one), and
 * of a joined PID namespace (external pid[INODE] at dump, inherit_fd
 * extRootPidNS at restore; src/restore/pidns_ctr.c).
 * Uses /proc/self/ns/{uts,ipc,pid}, which any process may open.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "haul/criu_int.h"
#include "restore/ctr.h"

/* The options runc 1.1 sets on `runc restore -d` of a container with uts and ipc paths. */
static void runc_restore_opts(Haul__Criu__Options *o, Haul__Criu__JoinNs *j,
			      Haul__Criu__JoinNs **js)
{
	haul__criu__options__init(o);
	o->has_images_dir_fd = true;
	o->images_dir_fd = 5;
	o->log_file = "restore.log";
	o->root = "/run/bundle/rootfs";
	o->has_manage_cgroups = o->has_notify_scripts = o->has_rst_sibling = true;
	o->manage_cgroups = o->notify_scripts = o->rst_sibling = true;
	o->config_file = "/etc/criu/haul-test-does-not-exist.conf";
	for (int i = 0; i < 2; i++) {
		haul__criu__join_ns__init(&j[i]);
		js[i] = &j[i];
	}
	j[0].ns = "uts";
	j[0].ns_file = "/proc/1234/ns/uts";
	j[1].ns = "ipc";
	j[1].ns_file = "/proc/1234/ns/ipc";
	o->join_ns = js;
	o->n_join_ns = 2;
}

Test(ctr_joinns, accepts_join_ns_of_uts_and_ipc_on_restore)
{
	Haul__Criu__JoinNs j[2], *js[2];
	Haul__Criu__Options o;
	char why[512] = "";

	runc_restore_opts(&o, j, js);
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_RESTORE, &o, why, sizeof(why)), 0,
		     "%s", why);
}

Test(ctr_joinns, refuses_join_ns_of_another_kind_naming_it_and_its_path)
{
	static const char *const kinds[] = {"mnt", "user", "time", "cgroup", "net", "pid", ""};
	Haul__Criu__JoinNs j[2], *js[2];
	Haul__Criu__Options o;
	char why[512] = "", want[128];

	runc_restore_opts(&o, j, js);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		j[1].ns = (char *)kinds[i];
		j[1].ns_file = "/run/ns/x";
		cr_assert_eq(
			criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_RESTORE, &o, why, sizeof(why)),
			-EOPNOTSUPP, "join_ns %s accepted", kinds[i]);
		snprintf(want, sizeof(want), "join_ns %s '/run/ns/x'", kinds[i]);
		cr_assert(strstr(why, want), "%s", why);
	}
}

Test(ctr_joinns, refuses_join_ns_with_a_relative_path_or_extra_options)
{
	Haul__Criu__JoinNs j[2], *js[2];
	Haul__Criu__Options o;
	char why[512] = "";

	runc_restore_opts(&o, j, js);
	j[0].ns_file = "ns/uts";
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_RESTORE, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "join_ns uts 'ns/uts'"), "%s", why);
	j[0].ns_file = "/proc/1234/ns/uts";
	j[0].extra_opt = "0,0";
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_RESTORE, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "with extra options"), "%s", why);
}

Test(ctr_joinns, refuses_join_ns_on_a_dump)
{
	Haul__Criu__JoinNs j[2], *js[2];
	Haul__Criu__Options o;
	char why[512] = "";

	runc_restore_opts(&o, j, js);
	o.has_pid = true;
	o.pid = 4242;
	o.rst_sibling = false;
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "'join_ns'"), "%s", why);
}

/* runc, for a pid namespace path in config.json: external pid[INODE]:extRootPidNS. */
static void pid_dump_opts(Haul__Criu__Options *o, char **external)
{
	haul__criu__options__init(o);
	o->has_images_dir_fd = o->has_pid = true;
	o->images_dir_fd = 5;
	o->pid = 4242;
	o->external = external;
	o->n_external = 1;
}

Test(ctr_joinns, accepts_an_external_pid_namespace_at_dump)
{
	char *external[1] = {"pid[4026532888]:extRootPidNS"};
	Haul__Criu__Options o;
	char why[512] = "";

	pid_dump_opts(&o, external);
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)), 0, "%s",
		     why);
}

Test(ctr_joinns, refuses_an_external_of_another_kind_or_without_a_key_naming_it)
{
	static char *const bad[] = {"pid[4026532888]", "ipc[4026532888]:extRootIpcNS",
				    "pid4026532888:k"};
	Haul__Criu__Options o;
	char why[512] = "", want[128];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *external[1] = {bad[i]};

		pid_dump_opts(&o, external);
		cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)),
			     -EOPNOTSUPP, "external %s accepted", bad[i]);
		snprintf(want, sizeof(want), "external '%s' is not supported", bad[i]);
		cr_assert(strstr(why, want), "%s", why);
	}
}

Test(ctr_joinns, dump_sees_the_pid_namespace_the_engine_names)
{
	char key[48];
	struct stat st;
	struct rst_ctr_ext ext[2] = {{"net[1]", "extRootNetNS"}, {key, "extRootPidNS"}};

	cr_assert_eq(stat("/proc/self/ns/pid", &st), 0);
	snprintf(key, sizeof(key), "pid[%llu]", (unsigned long long)st.st_ino);
	cr_assert(rst_ctr_pid_external(getpid(), ext, 2));
	cr_assert_not(rst_ctr_pid_external(getpid(), ext, 1));
	snprintf(key, sizeof(key), "pid[%llu]", (unsigned long long)st.st_ino + 1);
	cr_assert_not(rst_ctr_pid_external(getpid(), ext, 2));
}

/* A record of a container with its own uts and ipc namespaces and a root. */
struct record {
	Haul__Ctr__Container c;
	Haul__Ctr__Mount *m[1], root;
};

static Haul__Ctr__Container *record(struct record *r)
{
	haul__ctr__container__init(&r->c);
	haul__ctr__mount__init(&r->root);
	r->c.version = RST_CTR_VERSION;
	r->c.ns_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC;
	r->c.hostname = "ctr";
	r->root.mountpoint = "/";
	r->root.fstype = "ext4";
	r->root.kind = HAUL__CTR__MOUNT_KIND__MNT_ROOT;
	r->m[0] = &r->root;
	r->c.mounts = r->m;
	r->c.n_mounts = 1;
	return &r->c;
}

/* rst_ctr_prepare of @c with @n of @ext succeeds; @out is the caller's to check and release. */
static void prepared(const Haul__Ctr__Container *c, const struct rst_ctr_ext *ext, size_t n,
		     struct rst_ctr *out)
{
	char why[512] = "";

	cr_assert_eq(rst_ctr_prepare(c, "/tmp", "/r", ext, n, out, why, sizeof(why)), 0, "%s", why);
}

/* rst_ctr_prepare of @c with @n of @ext fails with @want, its reason holding @says (NULL: any). */
static void refused(const Haul__Ctr__Container *c, const struct rst_ctr_ext *ext, size_t n,
		    int want, const char *says)
{
	static struct rst_ctr out;
	char why[512] = "";
	int ret = rst_ctr_prepare(c, "/tmp", "/r", ext, n, &out, why, sizeof(why));

	cr_assert_eq(ret, want, "prepare said %d, not %d: %s", ret, want, why);
	cr_assert(!says || strstr(why, says), "%s", why);
	rst_ctr_release(&out);
}

Test(ctr_joinns, restore_keeps_the_paths_to_join)
{
	struct rst_ctr_ext ext[2] = {{RST_CTR_JOIN_KEY "uts", "/proc/self/ns/uts"},
				     {RST_CTR_JOIN_KEY "ipc", "/proc/self/ns/ipc"}};
	static struct rst_ctr out;
	struct record r;

	prepared(record(&r), ext, 2, &out);
	cr_assert_str_eq(out.utsns, "/proc/self/ns/uts");
	cr_assert_str_eq(out.ipcns, "/proc/self/ns/ipc");
	rst_ctr_release(&out);
	/* without join_ns: new namespaces, nothing to join */
	prepared(&r.c, ext, 0, &out);
	cr_assert_str_eq(out.utsns, "");
	cr_assert_str_eq(out.ipcns, "");
	rst_ctr_release(&out);
}

Test(ctr_joinns, restore_refuses_a_path_that_is_not_a_namespace_of_that_kind)
{
	static const struct {
		const char *path;
		int want;
		const char *says;
	} cases[] = {
		{"/proc/self/ns/ipc", -EINVAL,
		 "join_ns uts /proc/self/ns/ipc: not a namespace of that kind"},
		{"/dev/null", -EINVAL, NULL},
		{"/nonexistent/haul-test/ns/uts", -ENOENT,
		 "join_ns uts /nonexistent/haul-test/ns/uts"},
	};
	struct record r;

	record(&r);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct rst_ctr_ext ext[1] = {{RST_CTR_JOIN_KEY "uts", cases[i].path}};

		refused(&r.c, ext, 1, cases[i].want, cases[i].says);
	}
}

Test(ctr_joinns, restore_of_a_shared_ipc_namespace_needs_one_to_join)
{
	struct rst_ctr_ext ext[1] = {{RST_CTR_JOIN_KEY "ipc", "/proc/self/ns/ipc"}};
	static struct rst_ctr out;
	struct record r;

	record(&r);
	r.c.has_ipc_shared = r.c.ipc_shared = true;
	refused(&r.c, ext, 0, -EINVAL, "join_ns ipc");
	prepared(&r.c, ext, 1, &out);
	rst_ctr_release(&out);
}

Test(ctr_joinns, restore_refuses_a_join_with_a_user_namespace)
{
	struct rst_ctr_ext ext[1] = {{RST_CTR_JOIN_KEY "uts", "/proc/self/ns/uts"}};
	Haul__Ctr__IdMap map = HAUL__CTR__ID_MAP__INIT, *maps[1] = {&map};
	struct record r;

	record(&r)->ns_flags |= CLONE_NEWUSER;
	map.count = 65536;
	r.c.uid_map = r.c.gid_map = maps;
	r.c.n_uid_map = r.c.n_gid_map = 1;
	refused(&r.c, ext, 1, -EOPNOTSUPP,
		"join_ns uts /proc/self/ns/uts: the container has a user namespace");
}

Test(ctr_joinns, restore_keeps_the_pid_namespace_to_join)
{
	struct rst_ctr_ext ext[1] = {{RST_CTR_PID_KEY, "/proc/self/ns/pid"}};
	static struct rst_ctr out;
	struct record r;

	record(&r);
	r.c.has_pid_external = r.c.pid_external = true;
	prepared(&r.c, ext, 1, &out);
	cr_assert_str_eq(out.pidns, "/proc/self/ns/pid");
	rst_ctr_release(&out);
}

Test(ctr_joinns, restore_of_a_joined_pid_namespace_needs_one_to_join)
{
	struct record r;

	record(&r);
	r.c.has_pid_external = r.c.pid_external = true;
	refused(&r.c, NULL, 0, -EINVAL, "names none to join (inherit_fd " RST_CTR_PID_KEY ")");
}

Test(ctr_joinns, restore_refuses_a_pid_namespace_for_a_container_that_had_its_own)
{
	struct rst_ctr_ext ext[1] = {{RST_CTR_PID_KEY, "/proc/self/ns/pid"}};
	struct record r;

	refused(record(&r), ext, 1, -EINVAL, "had one of its own at checkpoint");
}

Test(ctr_joinns, restore_refuses_a_pid_namespace_path_of_another_kind)
{
	static const char *const paths[][2] = {
		{"/proc/self/ns/uts", "/proc/self/ns/uts) is another kind"},
		{"/nonexistent/haul-test/ns/pid", "is not open"},
	};
	struct record r;

	record(&r);
	r.c.has_pid_external = r.c.pid_external = true;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		struct rst_ctr_ext ext[1] = {{RST_CTR_PID_KEY, paths[i][0]}};

		refused(&r.c, ext, 1, -EINVAL, paths[i][1]);
	}
}
