/*
 * ctr_userns.c - a container's user namespace in the record
 * (src/restore/userns_ctr.c): its maps checked on restore, the process's
 * ids and the mount options' ids translated into the namespace.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "image.pb-c.h"
#include "restore/ctr.h"

/* runc's uidMappings/gidMappings 0 -> 100000 (65536 ids), plus 65534 -> 65534 */
static void record(Haul__Ctr__Container *c, Haul__Ctr__IdMap **m, uint32_t first_ns)
{
	static Haul__Ctr__IdMap a = HAUL__CTR__ID_MAP__INIT, b = HAUL__CTR__ID_MAP__INIT;

	haul__ctr__container__init(c);
	c->ns_flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID;
	a.ns_id = first_ns;
	a.host_id = 100000;
	a.count = 1000;
	b.ns_id = 65534;
	b.host_id = 65534;
	b.count = 1;
	m[0] = &a;
	m[1] = &b;
	c->uid_map = c->gid_map = m;
	c->n_uid_map = c->n_gid_map = 2;
}

Test(ctr_userns, translates_the_process_ids_into_the_namespace)
{
	static struct rst_ctr ctr;
	Haul__Ctr__Container c;
	Haul__Ctr__IdMap *m[2];
	Haul__Img__Creds in = HAUL__IMG__CREDS__INIT, out;
	uint32_t groups[] = {100005, 65534}, *ng = NULL;
	char why[256] = "";

	record(&c, m, 0);
	memset(&ctr, 0, sizeof(ctr));
	ctr.nsflags = c.ns_flags;
	cr_assert_eq(rst_ctr_prepare_userns(&c, &ctr, why, sizeof(why)), 0, "%s", why);
	in.ruid = in.euid = in.suid = in.fsuid = 100000;
	in.rgid = in.egid = in.sgid = 100000;
	in.fsgid = 100999;
	in.groups = groups;
	in.n_groups = 2;
	cr_assert_eq(rst_ctr_creds_in(&ctr, &in, &out, &ng), 0);
	cr_assert_eq(out.euid, 0);
	cr_assert_eq(out.fsgid, 999);
	cr_assert_eq(out.n_groups, 2);
	cr_assert_eq(out.groups[0], 5);
	cr_assert_eq(out.groups[1], 65534);
	free(ng);
	in.suid = 200000; /* not in the map: refused, never set as another id */
	cr_assert_eq(rst_ctr_creds_in(&ctr, &in, &out, &ng), -ERANGE);
	free(ng);
	/* no user namespace: the ids as they are */
	cr_assert_eq(rst_ctr_creds_in(NULL, &in, &out, &ng), 0);
	cr_assert_eq(out.suid, 200000);
}

Test(ctr_userns, translates_uid_and_gid_mount_options)
{
	static struct rst_ctr ctr;
	static struct rst_ctr_mount mounts[2];
	Haul__Ctr__Container c;
	Haul__Ctr__IdMap *m[2];
	char why[256] = "";

	record(&c, m, 0);
	memset(&ctr, 0, sizeof(ctr));
	ctr.nsflags = c.ns_flags;
	cr_assert_eq(rst_ctr_prepare_userns(&c, &ctr, why, sizeof(why)), 0);
	mounts[0].target = "/r/dev";
	mounts[0].data = strdup("mode=755,size=65536k,uid=100000,gid=100000");
	mounts[1].target = "/r/dev/pts";
	mounts[1].data = strdup("newinstance,ptmxmode=0666,mode=620,gid=100005");
	ctr.m = mounts;
	ctr.n = 2;
	cr_assert_eq(rst_ctr_userns_mount_data(&ctr, why, sizeof(why)), 0, "%s", why);
	cr_assert_str_eq(mounts[0].data, "mode=755,size=65536k,uid=0,gid=0");
	cr_assert_str_eq(mounts[1].data, "newinstance,ptmxmode=0666,mode=620,gid=5");
	free(mounts[0].data);
	free(mounts[1].data);
	mounts[0].data = strdup("mode=755");
	mounts[1].data = strdup("uid=5"); /* host uid 5: not the namespace's */
	cr_assert_eq(rst_ctr_userns_mount_data(&ctr, why, sizeof(why)), -EOPNOTSUPP);
	cr_assert(strstr(why, "/r/dev/pts"), "%s", why);
	free(mounts[0].data);
	free(mounts[1].data);
}

Test(ctr_userns, refuses_a_map_without_root_or_with_a_bad_line)
{
	static struct rst_ctr ctr;
	Haul__Ctr__Container c;
	Haul__Ctr__IdMap *m[2];
	char why[256] = "";

	record(&c, m, 1); /* 1 -> 100000: the namespace has no root to restore it */
	cr_assert_eq(rst_ctr_prepare_userns(&c, &ctr, why, sizeof(why)), -EOPNOTSUPP);
	cr_assert(strstr(why, "maps no id 0"), "%s", why);
	record(&c, m, 0);
	m[0]->count = 0;
	cr_assert_eq(rst_ctr_prepare_userns(&c, &ctr, why, sizeof(why)), -EBADMSG);
	m[0]->count = 1000;
	c.n_uid_map = 0;
	cr_assert_eq(rst_ctr_prepare_userns(&c, &ctr, why, sizeof(why)), -EBADMSG);
}
