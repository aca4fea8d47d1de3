/*
 * rst_external.c - the rules for fds whose other end stays behind
 * (fd_extrules.c): which specs parse, which rule wins, the defaults per
 * kind, the refusals of a malformed or misplaced rule; and the image check
 * of an external endpoint and a pty end (their validate hooks).
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "restore/fd_int.h"
#include "restore/restore.h"

static void clear(void)
{
	rst_external_clear();
}

TestSuite(rst_external_rules, .fini = clear);

Test(rst_external_rules, every_documented_spec_parses_and_nothing_else)
{
	const char *good[] = {"null",	   "file:/var/log/x", "fd:0", "fd:17",
			      "reconnect", "journal",	      "tty"};
	const char *bad[] = {"",      "nul",   "file:", "file:rel/x", "fd:",
			     "fd:-1", "fd:3x", "fd:x",	"tty2",	      "reconnect:/x"};
	struct rst_ext_spec s;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_expect_eq(rst_ext_spec_parse(good[i], &s), 0, "'%s' refused", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(rst_ext_spec_parse(bad[i], &s), -EINVAL, "'%s' taken", bad[i]);
	cr_assert_eq(rst_ext_spec_parse("file:/a/b", &s), 0);
	cr_expect_eq(s.how, RST_EXT_FILE);
	cr_expect_str_eq(s.path, "/a/b");
	cr_assert_eq(rst_ext_spec_parse("fd:42", &s), 0);
	cr_expect_eq(s.how, RST_EXT_FD);
	cr_expect_eq(s.fd, 42);
}

Test(rst_external_rules, a_rule_for_the_fd_wins_over_one_for_its_kind_and_the_last_wins)
{
	cr_assert_eq(rst_external_add("pipe=null", false), 0);
	cr_assert_eq(rst_external_add("1=file:/tmp/one", true), 0);
	cr_expect_str_eq(rst_ext_rule_for(1, HAUL__IMG__EXTERNAL_KIND__EXT_PIPE), "file:/tmp/one");
	cr_expect_str_eq(rst_ext_rule_for(2, HAUL__IMG__EXTERNAL_KIND__EXT_PIPE), "null");
	cr_expect_null(rst_ext_rule_for(2, HAUL__IMG__EXTERNAL_KIND__EXT_FIFO));
	cr_assert_eq(rst_external_add("1=fd:5", true), 0);
	cr_expect_str_eq(rst_ext_rule_for(1, HAUL__IMG__EXTERNAL_KIND__EXT_UNIX), "fd:5");
	rst_external_clear();
	cr_expect_null(rst_ext_rule_for(1, HAUL__IMG__EXTERNAL_KIND__EXT_PIPE));
}

Test(rst_external_rules, malformed_or_misplaced_rules_are_refused)
{
	cr_expect_eq(rst_external_add("1", true), -EINVAL);
	cr_expect_eq(rst_external_add("=null", true), -EINVAL);
	cr_expect_eq(rst_external_add("one=null", true), -EINVAL);
	cr_expect_eq(rst_external_add("1=bogus", true), -EINVAL);
	cr_expect_eq(rst_external_add("socket=null", false), -EINVAL);
	/* reconnect and journal are for unix sockets, tty for terminals */
	cr_expect_eq(rst_external_add("pipe=reconnect", false), -EINVAL);
	cr_expect_eq(rst_external_add("unix=tty", false), -EINVAL);
	cr_expect_eq(rst_external_add("tty=journal", false), -EINVAL);
	cr_expect_null(rst_ext_rule_for(1, HAUL__IMG__EXTERNAL_KIND__EXT_PIPE));
}

Test(rst_external_rules, defaults_reconnect_sockets_give_terminals_ours_and_refuse_pipes)
{
	cr_expect_str_eq(rst_ext_default(HAUL__IMG__EXTERNAL_KIND__EXT_UNIX, "/run/x.sock"),
			 "reconnect");
	cr_expect_str_eq(rst_ext_default(HAUL__IMG__EXTERNAL_KIND__EXT_UNIX, RST_JOURNAL_STDOUT),
			 "journal");
	cr_expect_str_eq(rst_ext_default(HAUL__IMG__EXTERNAL_KIND__EXT_TTY, NULL), "tty");
	cr_expect_null(rst_ext_default(HAUL__IMG__EXTERNAL_KIND__EXT_PIPE, NULL));
	cr_expect_null(rst_ext_default(HAUL__IMG__EXTERNAL_KIND__EXT_FIFO, NULL));
}

Test(rst_external_rules, an_external_file_or_pty_end_without_its_part_is_refused_at_load)
{
	const struct rst_fd_ops *ext = rst_fd_ops_of(HAUL__IMG__FD_KIND__FD_EXTERNAL);
	const struct rst_fd_ops *pty = rst_fd_ops_of(HAUL__IMG__FD_KIND__FD_PTY);
	Haul__Img__FileObject f;
	Haul__Img__External e;
	Haul__Img__Pty y;
	char why[256] = "";

	cr_assert_not_null(ext);
	cr_assert_not_null(pty);
	haul__img__file_object__init(&f);
	f.id = 7;
	f.kind = HAUL__IMG__FD_KIND__FD_EXTERNAL;
	cr_expect_eq(ext->validate(&f, why, sizeof(why)), -EBADMSG);
	cr_expect(strstr(why, "file 7"), "said: %s", why);
	haul__img__external__init(&e);
	e.kind = HAUL__IMG__EXTERNAL_KIND__EXT_UNIX;
	e.peer = "unix socket connected to /run/x";
	e.spec = "reconnect";
	f.external = &e;
	/* a unix endpoint needs the path to reconnect to */
	cr_expect_eq(ext->validate(&f, why, sizeof(why)), -EBADMSG);
	e.path = "/run/x";
	e.has_sock_type = true;
	e.sock_type = 1;
	cr_expect_eq(ext->validate(&f, why, sizeof(why)), 0, "said: %s", why);
	f.external = NULL;
	f.kind = HAUL__IMG__FD_KIND__FD_PTY;
	cr_expect_eq(pty->validate(&f, why, sizeof(why)), -EBADMSG);
	haul__img__pty__init(&y);
	y.index = 3;
	f.pty = &y;
	cr_expect_eq(pty->validate(&f, why, sizeof(why)), 0, "said: %s", why);
}
