/*
 * ctr_criu.c - haul's criu entry point without a container: which options
 * of runc's requests are accepted and which refused by name, the RPC over
 * a seqpacket socketpair (version, features, refusals), the stats-dump
 * framing podman reads, and the container record checks of a restore.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "haul/criu_int.h"
#include "restore/ctr.h"

/* The options runc 1.1 sets on a plain `runc checkpoint`. */
static void runc_dump_opts(Haul__Criu__Options *o, Haul__Criu__MountMapping **ext)
{
	static Haul__Criu__MountMapping m = HAUL__CRIU__MOUNT_MAPPING__INIT;

	haul__criu__options__init(o);
	o->has_images_dir_fd = o->has_pid = o->has_leave_running = true;
	o->images_dir_fd = 5;
	o->pid = 4242;
	o->has_log_level = true;
	o->log_level = 4;
	o->log_file = "dump.log";
	o->root = "/run/bundle/rootfs";
	o->has_manage_cgroups = o->has_notify_scripts = true;
	o->manage_cgroups = o->notify_scripts = true;
	o->has_shell_job = o->has_tcp_established = o->has_ext_unix_sk = true;
	o->has_file_locks = o->has_auto_dedup = o->has_lazy_pages = true;
	o->has_empty_ns = true;
	o->empty_ns = CLONE_NEWNET;
	o->has_orphan_pts_master = true;
	o->orphan_pts_master = true;
	o->config_file = "/etc/criu/haul-test-does-not-exist.conf";
	o->freeze_cgroup = "/sys/fs/cgroup/freezer/ctr";
	m.key = "/proc/keys";
	m.value = "/dev/null";
	ext[0] = &m;
	o->n_ext_mnt = 1;
	o->ext_mnt = ext;
}

Test(ctr_criu, accepts_what_runc_sets_on_a_plain_checkpoint)
{
	Haul__Criu__Options o;
	Haul__Criu__MountMapping *ext[1];
	char why[512] = "";

	runc_dump_opts(&o, ext);
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)), 0, "%s",
		     why);
}

Test(ctr_criu, refuses_an_unimplemented_option_by_its_name)
{
	Haul__Criu__Options o;
	Haul__Criu__MountMapping *ext[1];
	char why[512] = "";

	runc_dump_opts(&o, ext);
	o.ext_unix_sk = true;
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "'ext_unix_sk'"), "%s", why);
	runc_dump_opts(&o, ext);
	o.tcp_established = true; /* carried, under the network lock */
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)), 0, "%s",
		     why);
	runc_dump_opts(&o, ext);
	o.has_lazy_pages = o.lazy_pages = true;
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "pre-dump option 'lazy_pages'"), "%s", why);
}

/* runc checkpoint --pre-dump [--parent-path P] and the final --parent-path P. */
Test(ctr_criu, accepts_what_runc_sets_on_pre_dumps_and_a_final_dump_with_a_parent)
{
	Haul__Criu__Options o;
	Haul__Criu__MountMapping *ext[1];
	char why[512] = "";

	runc_dump_opts(&o, ext);
	o.n_ext_mnt = 0; /* runc sends no mounts with a pre-dump */
	o.has_track_mem = o.track_mem = true;
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP, &o, why, sizeof(why)), 0,
		     "%s", why);
	o.parent_img = "../pre1";
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP, &o, why, sizeof(why)), 0,
		     "%s", why);
	runc_dump_opts(&o, ext);
	o.has_track_mem = o.track_mem = true;
	o.parent_img = "../pre2";
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)), 0, "%s",
		     why);
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_RESTORE, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
}

Test(ctr_criu, refuses_options_of_the_other_request)
{
	Haul__Criu__Options o;
	Haul__Criu__MountMapping *ext[1];
	char why[512] = "";

	runc_dump_opts(&o, ext);
	o.has_rst_sibling = o.rst_sibling = true; /* a restore option in a dump */
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "'rst_sibling'"), "%s", why);
}

Test(ctr_criu, refuses_values_it_does_not_implement)
{
	Haul__Criu__Options o;
	Haul__Criu__MountMapping *ext[1];
	char why[512] = "";

	runc_dump_opts(&o, ext);
	o.empty_ns = CLONE_NEWNET | CLONE_NEWPID;
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "empty_ns"), "%s", why);
	runc_dump_opts(&o, ext);
	o.has_manage_cgroups_mode = true;
	o.manage_cgroups_mode = HAUL__CRIU__CGROUP_MODE__CG_FULL;
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	runc_dump_opts(&o, ext);
	o.config_file = "/proc/self/status"; /* exists: it would be ignored silently */
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "/proc/self/status"), "%s", why);
	runc_dump_opts(&o, ext);
	o.has_pid = false;
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
}

Test(ctr_criu, refuses_an_option_number_it_does_not_know)
{
	/* field 1 (images_dir_fd) = 3, then field 60 (varint) = 1: a newer criu's option */
	const uint8_t wire[] = {0x08, 0x03, 0xe0, 0x03, 0x01};
	Haul__Criu__Options *o = haul__criu__options__unpack(NULL, sizeof(wire), wire);
	char why[512] = "";

	cr_assert_not_null(o);
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_RESTORE, o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "option number 60"), "%s", why);
	haul__criu__options__free_unpacked(o, NULL);
}

/* Serve one request in a child, return its response. */
static Haul__Criu__Response *ask(const Haul__Criu__Request *q)
{
	uint8_t buf[65536];
	int sv[2];
	pid_t child;
	ssize_t n;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	child = fork();
	cr_assert_geq(child, 0);
	if (child == 0) {
		close(sv[0]);
		_exit(criu_swrk(sv[1]) == 0 ? 0 : 1);
	}
	close(sv[1]);
	n = (ssize_t)haul__criu__request__get_packed_size(q);
	haul__criu__request__pack(q, buf);
	cr_assert_eq(send(sv[0], buf, n, 0), n);
	n = recv(sv[0], buf, sizeof(buf), 0);
	cr_assert_gt(n, 0);
	close(sv[0]);
	waitpid(child, NULL, 0);
	return haul__criu__response__unpack(NULL, n, buf);
}

/* The response R refuses with ERR and a message naming WHAT; frees it. */
static void assert_refused(Haul__Criu__Response *r, int err, const char *what)
{
	cr_assert_not_null(r);
	cr_assert(r->has_success && !r->success);
	cr_assert_eq(r->cr_errno, err);
	cr_assert(r->cr_errmsg && strstr(r->cr_errmsg, what), "%s", r->cr_errmsg);
	haul__criu__response__free_unpacked(r, NULL);
}

/* Ask a request of TYPE with nothing else set. */
static Haul__Criu__Response *ask_type(Haul__Criu__ReqType type)
{
	Haul__Criu__Request q = HAUL__CRIU__REQUEST__INIT;

	q.has_type = true;
	q.type = type;
	return ask(&q);
}

Test(ctr_criu, answers_version_as_criu_3)
{
	Haul__Criu__Response *r;

	r = ask_type(HAUL__CRIU__REQ_TYPE__REQ_VERSION);
	cr_assert_not_null(r);
	cr_assert(r->has_success && r->success);
	cr_assert_eq(r->type, HAUL__CRIU__REQ_TYPE__REQ_VERSION);
	cr_assert_not_null(r->version);
	cr_assert_eq(r->version->major, 3);
	cr_assert(r->version->has_minor);
	haul__criu__response__free_unpacked(r, NULL);
}

Test(ctr_criu, says_it_tracks_memory_but_has_no_lazy_pages)
{
	Haul__Criu__Request q = HAUL__CRIU__REQUEST__INIT;
	Haul__Criu__Features f = HAUL__CRIU__FEATURES__INIT;
	Haul__Criu__Response *r;

	q.has_type = true;
	q.type = HAUL__CRIU__REQ_TYPE__REQ_FEATURE_CHECK;
	f.has_mem_track = f.mem_track = true;
	q.features = &f;
	r = ask(&q);
	cr_assert_not_null(r);
	cr_assert(r->success);
	cr_assert_not_null(r->features);
	cr_assert(r->features->has_mem_track);
	cr_assert(r->features->mem_track); /* runc then allows --pre-dump */
	cr_assert_not(r->features->has_lazy_pages);
	haul__criu__response__free_unpacked(r, NULL);
}

Test(ctr_criu, refuses_other_requests_naming_them)
{
	assert_refused(ask_type(HAUL__CRIU__REQ_TYPE__REQ_PAGE_SERVER), EOPNOTSUPP, "PAGE_SERVER");
}

Test(ctr_criu, refuses_a_pre_dump_without_images_before_touching_anything)
{
	assert_refused(ask_type(HAUL__CRIU__REQ_TYPE__REQ_PRE_DUMP), EINVAL, "images_dir_fd");
}

Test(ctr_criu, refuses_a_dump_option_over_rpc_before_touching_anything)
{
	Haul__Criu__Request q = HAUL__CRIU__REQUEST__INIT;
	Haul__Criu__Options o;
	Haul__Criu__MountMapping *ext[1];
	char dir[] = "/tmp/ctr_criu.XXXXXX";
	int dfd;

	cr_assert_not_null(mkdtemp(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	runc_dump_opts(&o, ext);
	o.images_dir_fd = dfd; /* an fd of the caller, reached through /proc/<peer>/fd */
	o.log_file = NULL;
	o.pid = getpid();
	o.has_shell_job = o.shell_job = true;
	q.has_type = true;
	q.type = HAUL__CRIU__REQ_TYPE__REQ_DUMP;
	q.opts = &o;
	assert_refused(ask(&q), EOPNOTSUPP, "'shell_job'");
	close(dfd);
	rmdir(dir);
}

Test(ctr_criu, writes_stats_dump_in_criu_framing)
{
	char dir[] = "/tmp/ctr_criu.XXXXXX", path[64];
	uint8_t buf[256];
	Haul__Criu__StatsFile *sf;
	int dfd, fd;
	ssize_t n;

	cr_assert_not_null(mkdtemp(dir));
	dfd = open(dir, O_PATH | O_DIRECTORY);
	cr_assert_eq(criu_stats_write(dfd, 1500, 20000, 20000, 100, 28), 0);
	snprintf(path, sizeof(path), "%s/stats-dump", dir);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	cr_assert_gt(n, 12);
	cr_assert_eq(buf[0] | buf[1] << 8 | buf[2] << 16 | (uint32_t)buf[3] << 24, 0x55105940u);
	cr_assert_eq(buf[4] | buf[5] << 8 | buf[6] << 16 | (uint32_t)buf[7] << 24, 0x57093306u);
	cr_assert_eq((ssize_t)(buf[8] | buf[9] << 8) + 12, n);
	sf = haul__criu__stats_file__unpack(NULL, n - 12, buf + 12);
	cr_assert_not_null(sf);
	cr_assert_not_null(sf->dump);
	cr_assert_eq(sf->dump->frozen_time, 1500);
	cr_assert_eq(sf->dump->pages_written, 100);
	cr_assert_eq(sf->dump->pages_scanned, 128);
	cr_assert(sf->dump->has_pages_skipped_parent && sf->dump->has_pages_lazy);
	haul__criu__stats_file__free_unpacked(sf, NULL);
	unlink(path);
	close(dfd);
	rmdir(dir);
}

/* A record of one external mount and a root. */
static void record(Haul__Ctr__Container *c, Haul__Ctr__Mount **m, Haul__Ctr__Mount *root,
		   Haul__Ctr__Mount *ext)
{
	haul__ctr__container__init(c);
	haul__ctr__mount__init(root);
	haul__ctr__mount__init(ext);
	c->version = RST_CTR_VERSION;
	c->ns_flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS;
	c->hostname = "ctr";
	root->mountpoint = "/";
	root->fstype = "ext4";
	root->kind = HAUL__CTR__MOUNT_KIND__MNT_ROOT;
	ext->mountpoint = "/proc/keys";
	ext->fstype = "devtmpfs";
	ext->kind = HAUL__CTR__MOUNT_KIND__MNT_EXTERNAL;
	ext->ext_key = "/dev/null";
	m[0] = root;
	m[1] = ext;
	c->mounts = m;
	c->n_mounts = 2;
}

Test(ctr_criu, restore_maps_an_external_mount_through_the_engines_key)
{
	Haul__Ctr__Container c;
	Haul__Ctr__Mount *m[2], root, ext;
	struct rst_ctr_ext map = {"/dev/null", "/dev/null"};
	struct rst_ctr out;
	char why[512] = "";

	record(&c, m, &root, &ext);
	cr_assert_eq(rst_ctr_prepare(&c, "/tmp", "/run/criu-root", &map, 1, &out, why, sizeof(why)),
		     0, "%s", why);
	cr_assert_eq(out.n, 1);
	cr_assert_str_eq(out.m[0].target, "/run/criu-root/proc/keys");
	cr_assert_str_eq(out.m[0].from, "/dev/null");
	rst_ctr_release(&out);
}

Test(ctr_criu, restore_refuses_an_external_mount_the_engine_does_not_name)
{
	Haul__Ctr__Container c;
	Haul__Ctr__Mount *m[2], root, ext;
	struct rst_ctr out;
	char why[512] = "";

	record(&c, m, &root, &ext);
	cr_assert_eq(rst_ctr_prepare(&c, "/tmp", "/run/criu-root", NULL, 0, &out, why, sizeof(why)),
		     -ENOENT);
	cr_assert(strstr(why, "/dev/null"), "%s", why);
	rst_ctr_release(&out);
}

Test(ctr_criu, restore_refuses_a_record_of_another_version_or_namespace)
{
	Haul__Ctr__Container c;
	Haul__Ctr__Mount *m[2], root, ext;
	struct rst_ctr out;
	char why[512] = "";

	record(&c, m, &root, &ext);
	c.version = RST_CTR_VERSION + 1;
	cr_assert_eq(rst_ctr_prepare(&c, "/tmp", "/r", NULL, 0, &out, why, sizeof(why)), -EPROTO);
	record(&c, m, &root, &ext);
	c.ns_flags |= CLONE_NEWUSER;
	cr_assert_eq(rst_ctr_prepare(&c, "/tmp", "/r", NULL, 0, &out, why, sizeof(why)), -EPROTO);
}

Test(ctr_criu, writes_an_inventory_criu_refuses_to_read_as_its_own)
{
	char dir[] = "/tmp/ctr_criu.XXXXXX", path[64];
	uint8_t buf[64];
	Haul__Criu__Inventory *inv;
	int dfd, fd;
	ssize_t n;

	cr_assert_not_null(mkdtemp(dir));
	dfd = open(dir, O_PATH | O_DIRECTORY);
	cr_assert_eq(criu_inventory_write(dfd), 0);
	snprintf(path, sizeof(path), "%s/inventory.img", dir);
	fd = open(path, O_RDONLY);
	n = read(fd, buf, sizeof(buf));
	close(fd);
	cr_assert_gt(n, 8);
	cr_assert_eq(buf[0] | buf[1] << 8 | buf[2] << 16 | (uint32_t)buf[3] << 24, 0x58313116u);
	inv = haul__criu__inventory__unpack(NULL, n - 8, buf + 8);
	cr_assert_not_null(inv);
	cr_assert_neq(inv->img_version, 2, "CRIU's own image version would make CRIU misread it");
	haul__criu__inventory__free_unpacked(inv, NULL);
	unlink(path);
	close(dfd);
	rmdir(dir);
}

Test(ctr_criu, restore_refuses_a_record_path_that_leaves_the_root)
{
	Haul__Ctr__Container c;
	Haul__Ctr__Mount *m[2], root, ext;
	struct rst_ctr_ext map = {"/dev/null", "/dev/null"};
	struct rst_ctr out;
	char why[512] = "";

	record(&c, m, &root, &ext);
	ext.mountpoint = "/proc/../../etc";
	cr_assert_eq(rst_ctr_prepare(&c, "/tmp", "/r", &map, 1, &out, why, sizeof(why)), -EBADMSG);
	rst_ctr_release(&out);
	record(&c, m, &root, &ext);
	ext.mountpoint = "/proc/..";
	cr_assert_eq(rst_ctr_prepare(&c, "/tmp", "/r", &map, 1, &out, why, sizeof(why)), -EBADMSG);
	rst_ctr_release(&out);
}

/* runc, for a network namespace path in config.json: external net[INODE]:extRootNetNS. */
Test(ctr_criu, accepts_runcs_external_network_namespace_and_refuses_other_externals)
{
	Haul__Criu__Options o;
	Haul__Criu__MountMapping *ext[1];
	char *external[1] = {"net[4026532999]:extRootNetNS"};
	char why[512] = "";

	runc_dump_opts(&o, ext);
	o.external = external;
	o.n_external = 1;
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)), 0, "%s",
		     why);
	external[0] = "mnt[/data]:data";
	cr_assert_eq(criu_opts_check(HAUL__CRIU__REQ_TYPE__REQ_DUMP, &o, why, sizeof(why)),
		     -EOPNOTSUPP);
	cr_assert(strstr(why, "external 'mnt[/data]:data'"), "%s", why);
}

Test(ctr_criu, restore_joins_the_engines_network_namespace_and_needs_it_named)
{
	Haul__Ctr__Container c;
	Haul__Ctr__Mount *m[2], root, ext;
	struct rst_ctr_ext map[2] = {{"/dev/null", "/dev/null"},
				     {RST_CTR_NET_KEY, "/proc/1234/fd/7"}};
	struct rst_ctr out;
	char why[512] = "";

	record(&c, m, &root, &ext);
	c.ns_flags |= CLONE_NEWNET;
	c.has_net_external = c.net_external = true;
	cr_assert_eq(rst_ctr_prepare(&c, "/tmp", "/r", map, 2, &out, why, sizeof(why)), 0, "%s",
		     why);
	cr_assert_str_eq(out.netns, "/proc/1234/fd/7");
	rst_ctr_release(&out);
	/* the namespace was the engine's and the engine names none now: refused by name */
	cr_assert_eq(rst_ctr_prepare(&c, "/tmp", "/r", map, 1, &out, why, sizeof(why)), -EINVAL);
	cr_assert(strstr(why, RST_CTR_NET_KEY), "%s", why);
	rst_ctr_release(&out);
	/* a namespace of its own (not external): made, whatever the engine passes */
	c.net_external = false;
	cr_assert_eq(rst_ctr_prepare(&c, "/tmp", "/r", map, 2, &out, why, sizeof(why)), 0, "%s",
		     why);
	cr_assert_str_eq(out.netns, "");
	rst_ctr_release(&out);
}
