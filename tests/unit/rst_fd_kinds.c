/*
 * rst_fd_kinds.c - the fd kind table (fd_kinds.c): every kind the image
 * format names has exactly one entry with the hooks the sequences call,
 * and an image naming a kind this haul does not know is refused when it is
 * validated (at load, before anything is created), the kind named.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "common/validate.h"
#include "restore/fd_int.h"
#include "restore/restore_int.h"

Test(rst_fd_kinds, every_image_kind_has_one_entry_with_its_hooks)
{
	const ProtobufCEnumDescriptor *d = &haul__img__fd_kind__descriptor;
	size_t n = 0;

	for (unsigned i = 0; i < d->n_values; i++) {
		const struct rst_fd_ops *k = rst_fd_ops_of((Haul__Img__FdKind)d->values[i].value);

		cr_assert_not_null(k, "kind %s has no entry in the table", d->values[i].name);
		cr_expect_eq((int)k->kind, d->values[i].value);
		cr_expect(k->name && k->name[0], "kind %s has no name", d->values[i].name);
		cr_expect_not_null(k->match, "kind %s cannot be classified", k->name);
		cr_expect_not_null(k->restore, "kind %s cannot be restored", k->name);
		cr_expect(k->version >= 1 && k->version <= RST_IMAGE_VERSION,
			  "kind %s has version %u", k->name, k->version);
	}
	for (size_t i = 0; rst_fd_kinds[i]; i++, n++)
		for (size_t j = 0; j < i; j++) {
			cr_expect_neq(rst_fd_kinds[i]->kind, rst_fd_kinds[j]->kind,
				      "kind %s is in the table twice", rst_fd_kinds[i]->name);
			cr_expect_str_neq(rst_fd_kinds[i]->name, rst_fd_kinds[j]->name);
		}
	cr_expect_eq(n, d->n_values, "the table has %zu kinds, the image format %u", n,
		     d->n_values);
}

Test(rst_fd_kinds, a_kind_this_haul_does_not_know_is_refused_at_load_by_number)
{
	Haul__Img__ProcessState ps;
	Haul__Img__Regs regs;
	Haul__Img__MmMap mm;
	Haul__Img__Creds creds;
	Haul__Img__Fd fd, *fdp[1] = {&fd};
	uint8_t buf[1024];
	char why[256] = "";
	size_t len;

	haul__img__process_state__init(&ps);
	haul__img__regs__init(&regs);
	haul__img__mm_map__init(&mm);
	haul__img__creds__init(&creds);
	haul__img__fd__init(&fd);
	ps.kernel_release = "6.18.0";
	ps.arch = "x86_64";
	ps.pid = 100;
	ps.comm = "cat";
	ps.regs = &regs;
	mm.exe = "/usr/bin/cat";
	mm.start_stack = 0x7ffc00000000;
	ps.mm = &mm;
	ps.cwd = "/";
	ps.creds = &creds;
	fd.fd = 3;
	fd.kind = HAUL__IMG__FD_KIND__FD_CHR;
	fd.path = "/dev/null";
	ps.fds = fdp;
	ps.n_fds = 1;
	len = haul__img__process_state__pack(&ps, buf);
	cr_assert_eq(val_state_blob(buf, len, why, sizeof(why)), 0, "%s", why);
	/* A kind from a newer haul: on the wire it is just a number. */
	fd.kind = (Haul__Img__FdKind)99;
	len = haul__img__process_state__pack(&ps, buf);
	cr_assert_eq(val_state_blob(buf, len, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "fd 3") && strstr(why, "unknown kind 99"), "%s", why);
	cr_expect_null(rst_fd_ops_of((Haul__Img__FdKind)99));
}
