/*
 * rst_fd_kinds.c - the fd kind table (fd_kinds.c): every kind the image
 * format names has exactly one entry with the hooks the sequences call,
 * and an image naming a kind this haul does not know is refused when it is
 * validated (at load, before anything is created), the kind named; so are
 * a FileObject whose sub-message is another kind's, an fd naming no
 * FileObject and two fds with one number (fd_validate.c).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
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
		cr_expect_not_null(k->validate, "kind %s cannot be checked at load", k->name);
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

/* A one-process image with fd 3 on /dev/null (FileObject 7), as the restorer loads it. */
struct img {
	Haul__Img__ProcessState ps;
	Haul__Img__Regs regs;
	Haul__Img__MmMap mm;
	Haul__Img__Creds creds;
	Haul__Img__FileObject file, *filep[1];
	Haul__Img__RegFile reg;
	Haul__Img__EventfdFile efd;
	Haul__Img__FdEntry fd[2], *fdp[2];
};

static void img_init(struct img *s)
{
	haul__img__process_state__init(&s->ps);
	haul__img__regs__init(&s->regs);
	haul__img__mm_map__init(&s->mm);
	haul__img__creds__init(&s->creds);
	haul__img__file_object__init(&s->file);
	haul__img__reg_file__init(&s->reg);
	haul__img__eventfd_file__init(&s->efd);
	s->ps.version = RST_IMAGE_VERSION;
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
	s->file.id = 7;
	s->file.kind = HAUL__IMG__FD_KIND__FD_CHR;
	s->file.flags = O_RDWR;
	s->file.path = "/dev/null";
	s->reg.dev = 5;
	s->reg.ino = 4;
	s->file.reg = &s->reg;
	s->filep[0] = &s->file;
	s->ps.files = s->filep;
	s->ps.n_files = 1;
	for (int i = 0; i < 2; i++) {
		haul__img__fd_entry__init(&s->fd[i]);
		s->fd[i].fd = 3 + i;
		s->fd[i].file_id = 7;
		s->fdp[i] = &s->fd[i];
	}
	s->ps.fds = s->fdp;
	s->ps.n_fds = 2;
}

/* Packed and loaded as the restorer does: the common checks, then the fd records'. */
static int img_load(struct img *s, char *why, size_t wl)
{
	static uint8_t buf[4096];
	size_t len = haul__img__process_state__pack(&s->ps, buf);
	Haul__Img__ProcessState *ps = haul__img__process_state__unpack(NULL, len, buf);
	int ret;

	cr_assert_not_null(ps);
	ret = val_process_state(ps, why, wl);
	if (!ret)
		ret = rst_fd_validate(ps, why, wl);
	haul__img__process_state__free_unpacked(ps, NULL);
	return ret;
}

Test(rst_fd_kinds, a_kind_this_haul_does_not_know_is_refused_at_load_by_number)
{
	struct img s;
	char why[256] = "";

	img_init(&s);
	cr_assert_eq(img_load(&s, why, sizeof(why)), 0, "%s", why);
	/* A kind from a newer haul: on the wire it is just a number. */
	s.file.kind = (Haul__Img__FdKind)99;
	cr_assert_eq(img_load(&s, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "file 7") && strstr(why, "unknown kind 99"), "%s", why);
	cr_expect_null(rst_fd_ops_of((Haul__Img__FdKind)99));
}

Test(rst_fd_kinds, a_file_object_with_another_kinds_sub_message_is_refused_at_load)
{
	struct img s;
	char why[256] = "";

	img_init(&s);
	/* a character device carrying an eventfd's part instead of its own */
	s.file.reg = NULL;
	s.file.eventfd = &s.efd;
	cr_assert_eq(img_load(&s, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "file 7") && strstr(why, "reg part"), "%s", why);
	/* both: one kind part only */
	s.file.reg = &s.reg;
	cr_assert_eq(img_load(&s, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "file 7") && strstr(why, "2 kind parts"), "%s", why);
	/* none */
	s.file.reg = NULL;
	s.file.eventfd = NULL;
	cr_assert_eq(img_load(&s, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "file 7") && strstr(why, "0 kind parts"), "%s", why);
}

Test(rst_fd_kinds, an_fd_naming_no_file_object_or_a_number_used_twice_is_refused_at_load)
{
	struct img s;
	char why[256] = "";

	img_init(&s);
	s.fd[1].file_id = 8;
	cr_assert_eq(img_load(&s, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "fd 4") && strstr(why, "file_id: 8"), "%s", why);
	s.fd[1].file_id = 7;
	s.fd[1].fd = 3;
	cr_assert_eq(img_load(&s, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "fd: 3 appears twice"), "%s", why);
	s.fd[1].fd = 4;
	s.file.id = 0;
	cr_assert_eq(img_load(&s, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "files[0].id: 0"), "%s", why);
}
