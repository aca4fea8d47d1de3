/*
 * ctr_fchan.c - the pieces of `haul migrate --container` that need no
 * runtime: the file channel's record header, the tree scan that sends a
 * rootfs and then only what changed (read back from a socketpair), its
 * refusals, and the reader of runc's `state` output.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "haul/ctr_int.h"

Test(ctr_fchan, header_round_trips_and_rejects_garbage)
{
	struct fchan_hdr h = {.type = FCHAN_FILE,
			      .area = FCHAN_IMAGES,
			      .mode = 0644,
			      .uid = 7,
			      .gid = 8,
			      .path_len = 12,
			      .data_len = 1ull << 33,
			      .mtime_ns = -5};
	uint8_t b[FCHAN_HDR_LEN];
	struct fchan_hdr d;

	fchan_hdr_encode(&h, b);
	cr_assert_eq(fchan_hdr_decode(b, &d), 0);
	cr_assert(d.type == h.type && d.area == h.area && d.mode == h.mode && d.uid == 7 &&
		  d.gid == 8 && d.path_len == 12 && d.data_len == h.data_len && d.mtime_ns == -5);
	b[0] ^= 1;
	cr_assert_eq(fchan_hdr_decode(b, &d), -EBADMSG, "bad magic");
	b[0] ^= 1;
	b[5] = 9;
	cr_assert_eq(fchan_hdr_decode(b, &d), -EBADMSG, "unknown area");
	h.type = FCHAN_DIR; /* only FILE carries large data */
	fchan_hdr_encode(&h, b);
	cr_assert_eq(fchan_hdr_decode(b, &d), -EMSGSIZE);
	h.type = FCHAN_FILE;
	h.path_len = FCHAN_MAX_PATH + 1;
	fchan_hdr_encode(&h, b);
	cr_assert_eq(fchan_hdr_decode(b, &d), -EMSGSIZE);
}

Test(ctr_fchan, reads_runc_state_output)
{
	const char *s = "{\n  \"ociVersion\": \"1.0.2-dev\",\n  \"id\": \"c1\",\n  \"pid\": 4242,\n"
			"  \"status\": \"running\",\n  \"bundle\": \"/srv/b \\\"x\\\"\",\n"
			"  \"rootfs\": \"/srv/b/rootfs\"\n}";
	char v[64];

	cr_assert_eq(haul_json_flat(s, "pid", v, sizeof(v)), 0);
	cr_assert_str_eq(v, "4242");
	cr_assert_eq(haul_json_flat(s, "status", v, sizeof(v)), 0);
	cr_assert_str_eq(v, "running");
	cr_assert_eq(haul_json_flat(s, "bundle", v, sizeof(v)), 0);
	cr_assert_str_eq(v, "/srv/b \"x\"");
	cr_assert_eq(haul_json_flat(s, "owner", v, sizeof(v)), -ENOENT);
	cr_assert_eq(haul_json_flat(s, "rootfs", v, 4), -ENAMETOOLONG);
}

Test(ctr_fchan, container_ids_are_safe_file_names)
{
	cr_assert(haul_ctr_id_ok("ctr1234m"));
	cr_assert(haul_ctr_id_ok("a.b_c+d-e"));
	cr_assert(!haul_ctr_id_ok(""));
	cr_assert(!haul_ctr_id_ok("../etc"));
	cr_assert(!haul_ctr_id_ok("a/b"));
	cr_assert(!haul_ctr_id_ok(".hidden"));
}

/* Every record the peer of @fd sent until now: "TYPE:PATH" lines into @out. */
static void drain(int fd, char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
	for (;;) {
		uint8_t b[FCHAN_HDR_LEN];
		struct fchan_hdr h;
		char path[FCHAN_MAX_PATH + 1];
		uint64_t left;

		if (fchan_read_all(fd, b, sizeof(b), 0))
			return;
		cr_assert_eq(fchan_hdr_decode(b, &h), 0);
		cr_assert_eq(fchan_read_all(fd, path, h.path_len, 1000), 0);
		path[h.path_len] = '\0';
		for (left = h.data_len; left; left--) {
			char c;

			cr_assert_eq(fchan_read_all(fd, &c, 1, 1000), 0);
		}
		n += (size_t)snprintf(out + n, len - n, "%d:%s\n", h.type, path);
	}
}

Test(ctr_fchan, tree_sends_everything_then_only_changes)
{
	char root[] = "/tmp/haul-fchan-XXXXXX", p[256], why[512], got[8192];
	struct fchan_tree t = {0};
	struct fchan c = {.timeout_ms = 1000};
	int sv[2];

	cr_assert(mkdtemp(root));
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c.fd = sv[0];
	snprintf(p, sizeof(p), "%s/bin", root);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/bin/sh", root);
	close(open(p, O_WRONLY | O_CREAT, 0755));
	snprintf(p, sizeof(p), "%s/old", root);
	close(open(p, O_WRONLY | O_CREAT, 0644));
	snprintf(p, sizeof(p), "%s/link", root);
	cr_assert_eq(symlink("bin/sh", p), 0);
	snprintf(t.root, sizeof(t.root), "%s", root);
	snprintf(t.prefix, sizeof(t.prefix), "rootfs");

	cr_assert_eq(fchan_tree_sync(&t, &c, true, why, sizeof(why)), 0, "%s", why);
	drain(sv[1], got, sizeof(got));
	cr_assert_str_eq(got,
			 "2:rootfs\n2:rootfs/bin\n3:rootfs/bin/sh\n4:rootfs/link\n"
			 "3:rootfs/old\n",
			 "first scan: %s", got);

	/* one file written (size changes), one removed, one new */
	snprintf(p, sizeof(p), "%s/bin/sh", root);
	int fd = open(p, O_WRONLY | O_APPEND);
	cr_assert(write(fd, "x", 1) == 1);
	close(fd);
	snprintf(p, sizeof(p), "%s/old", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/new", root);
	close(open(p, O_WRONLY | O_CREAT, 0644));
	cr_assert_eq(fchan_tree_sync(&t, &c, true, why, sizeof(why)), 0, "%s", why);
	drain(sv[1], got, sizeof(got));
	/* the root's mtime changed with the create and the unlink: sent again as a DIR */
	cr_assert(strstr(got, "3:rootfs/bin/sh\n") && strstr(got, "3:rootfs/new\n") &&
			  strstr(got, "5:rootfs/old\n") && !strstr(got, "rootfs/link"),
		  "second scan: %s", got);

	/* a fifo is refused by name, before anything is sent */
	snprintf(p, sizeof(p), "%s/fifo", root);
	cr_assert_eq(mkfifo(p, 0600), 0);
	cr_assert_eq(fchan_tree_sync(&t, &c, true, why, sizeof(why)), -EOPNOTSUPP);
	cr_assert(strstr(why, "/fifo is a fifo"), "%s", why);
	drain(sv[1], got, sizeof(got));
	cr_assert_str_eq(got, "");

	fchan_tree_free(&t);
	close(sv[0]);
	close(sv[1]);
	cr_assert_eq(fchan_rm_rf(AT_FDCWD, root), 0);
}
