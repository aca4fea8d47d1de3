/* opts.c - the option parser of every haul command (src/haul/opts.c): types, units, refusals. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <string.h>

#include "haul/haul_int.h"

static bool flag;
static const char *str, *path, *hp;
static long long num;
static double ms;
static uint64_t size, rate;
static int mode;
static struct haul_opt_list many;

static const struct haul_opt_choice modes[] = {{"auto", 7}, {"lz4", 8}, {"none", 9}, {NULL, 0}};

static const struct haul_opt table[] = {
	{"flag", 'f', HAUL_OPT_FLAG, 0, &flag, NULL, "a flag", 0, 0, NULL},
	{"str", 0, HAUL_OPT_STR, 0, &str, "S", "text", 0, 0, NULL},
	{"path", 'p', HAUL_OPT_PATH, 0, &path, "FILE", "a file", 0, 0, NULL},
	{"count", 'n', HAUL_OPT_INT, HAUL_OPT_DEFAULT, &num, "N", "a count", 1, 64, NULL},
	{"timeout", 0, HAUL_OPT_DURATION, HAUL_OPT_DEFAULT, &ms, "TIME", "a wait", 1,
	 HAUL_OPT_HOUR_MS, NULL},
	{"size", 0, HAUL_OPT_SIZE, 0, &size, "SIZE", "a size", 0, 0, NULL},
	{"rate", 0, HAUL_OPT_RATE, 0, &rate, "RATE", "a rate", 0, 0, NULL},
	{"to", 0, HAUL_OPT_HOSTPORT, 0, &hp, "HOST:PORT", "a peer", 1, 65535, NULL},
	{"mode", 0, HAUL_OPT_ENUM, HAUL_OPT_DEFAULT, &mode, "MODE", "auto|lz4|none", 0, 0, modes},
	{"add", 'a', HAUL_OPT_STR, HAUL_OPT_REPEAT, &many, "X", "more of them", 0, 0, NULL},
	{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL},
};

static const struct haul_cmd_spec spec = {
	"demo", "[options] [ARG]", "intro\n", "outro\n", table, 0, 1, false};

static void reset(void)
{
	flag = false;
	str = path = hp = NULL;
	num = 4;
	ms = 25;
	size = rate = 0;
	mode = 7;
	haul_opt_list_release(&many);
}

/* Parse the NULL-terminated words after "demo". */
static int parse_words(const struct haul_cmd_spec *s, const char **words)
{
	char *argv[32] = {"demo"};
	int argc = 1;

	for (; *words && argc < 31; words++)
		argv[argc++] = (char *)*words;
	argv[argc] = NULL;
	return haul_opts_parse(s, argc, argv);
}

#define PARSE(...) parse_words(&spec, (const char *[]){__VA_ARGS__, NULL})

static void quiet(void)
{
	reset();
	cr_redirect_stderr();
	cr_redirect_stdout();
}

TestSuite(opts, .init = quiet, .fini = reset);

Test(opts, timeout_10s_is_ten_thousand_milliseconds)
{
	cr_assert_eq(PARSE("--timeout", "10s"), 3);
	cr_assert_float_eq(ms, 10000, 1e-9);
}

Test(opts, a_bare_duration_stays_milliseconds)
{
	cr_assert_eq(PARSE("--timeout", "10000"), 3);
	cr_assert_float_eq(ms, 10000, 1e-9);
}

Test(opts, durations_take_ms_s_m_h_and_fractions)
{
	double v;

	cr_assert_eq(haul_parse_duration_ms("500ms", &v), 0);
	cr_assert_float_eq(v, 500, 1e-9);
	cr_assert_eq(haul_parse_duration_ms("1.5s", &v), 0);
	cr_assert_float_eq(v, 1500, 1e-9);
	cr_assert_eq(haul_parse_duration_ms("2m", &v), 0);
	cr_assert_float_eq(v, 120000, 1e-9);
	cr_assert_eq(haul_parse_duration_ms("1h", &v), 0);
	cr_assert_float_eq(v, 3600000, 1e-9);
	cr_assert_eq(haul_parse_duration_ms("250us", &v), 0);
	cr_assert_float_eq(v, 0.25, 1e-9);
}

Test(opts, rejects_what_is_not_a_duration)
{
	double v;

	cr_assert_eq(haul_parse_duration_ms("10x", &v), -EINVAL);
	cr_assert_eq(haul_parse_duration_ms("", &v), -EINVAL);
	cr_assert_eq(haul_parse_duration_ms("-5s", &v), -EINVAL);
	cr_assert_eq(haul_parse_duration_ms("s", &v), -EINVAL);
	cr_assert_eq(haul_parse_duration_ms("inf", &v), -EINVAL);
	cr_assert_eq(haul_parse_duration_ms("10 s", &v), -EINVAL);
}

Test(opts, a_bad_duration_is_refused_naming_option_value_and_form)
{
	fflush(stderr);
	cr_assert_eq(PARSE("--timeout", "10x"), -EINVAL);
	cr_assert_eq(haul_opts_exit(-EINVAL), 2);
	fflush(stderr);
	cr_assert_stderr_eq_str(
		"haul: error: demo: --timeout: '10x' is not a duration (e.g. 500ms, "
		"10s, 2m; a bare number is ms)\n");
}

Test(opts, a_duration_out_of_range_names_the_range)
{
	cr_assert_eq(PARSE("--timeout", "2h"), -EINVAL);
	fflush(stderr);
	cr_assert_stderr_eq_str(
		"haul: error: demo: --timeout: '2h' is out of range (expected from 1ms to 3600s)\n");
}

Test(opts, integers_are_checked_against_their_range)
{
	cr_assert_eq(PARSE("--count", "64"), 3);
	cr_assert_eq(num, 64);
	cr_assert_eq(PARSE("-n", "1"), 3);
	cr_assert_eq(num, 1);
	cr_assert_eq(PARSE("--count", "65"), -EINVAL);
	cr_assert_eq(PARSE("--count", "0"), -EINVAL);
	cr_assert_eq(PARSE("--count", "3x"), -EINVAL);
	cr_assert_eq(PARSE("--count", ""), -EINVAL);
	cr_assert_eq(PARSE("--count", "99999999999999999999999"), -EINVAL);
	fflush(stderr);
	cr_assert_stderr_eq_str(
		"haul: error: demo: --count: '65' is out of range (expected from 1 to 64)\n"
		"haul: error: demo: --count: '0' is out of range (expected from 1 to 64)\n"
		"haul: error: demo: --count: '3x' is not an integer\n"
		"haul: error: demo: --count: '' is not an integer\n"
		"haul: error: demo: --count: '99999999999999999999999' is not an integer\n");
}

Test(opts, sizes_are_binary_unless_written_with_a_plain_b)
{
	uint64_t v;

	cr_assert_eq(haul_parse_size("4096", &v), 0);
	cr_assert_eq(v, 4096);
	cr_assert_eq(haul_parse_size("64K", &v), 0);
	cr_assert_eq(v, 65536);
	cr_assert_eq(haul_parse_size("64KiB", &v), 0);
	cr_assert_eq(v, 65536);
	cr_assert_eq(haul_parse_size("64KB", &v), 0);
	cr_assert_eq(v, 64000);
	cr_assert_eq(haul_parse_size("2M", &v), 0);
	cr_assert_eq(v, 2 << 20);
	cr_assert_eq(haul_parse_size("1G", &v), 0);
	cr_assert_eq(v, 1ULL << 30);
	cr_assert_eq(haul_parse_size("1.5GiB", &v), 0);
	cr_assert_eq(v, 3ULL << 29);
	cr_assert_eq(haul_parse_size("1T", &v), 0);
	cr_assert_eq(v, 1ULL << 40);
	cr_assert_eq(haul_parse_size("12B", &v), 0);
	cr_assert_eq(v, 12);
}

Test(opts, rejects_what_is_not_a_size)
{
	uint64_t v;

	cr_assert_eq(haul_parse_size("lots", &v), -EINVAL);
	cr_assert_eq(haul_parse_size("5Q", &v), -EINVAL);
	cr_assert_eq(haul_parse_size("-1K", &v), -EINVAL);
	cr_assert_eq(haul_parse_size("5KiBs", &v), -EINVAL);
	cr_assert_eq(haul_parse_size("99999999999T", &v), -EINVAL);
	cr_assert_eq(PARSE("--size", "5Q"), -EINVAL);
	fflush(stderr);
	cr_assert_stderr_eq_str("haul: error: demo: --size: '5Q' is not a size (e.g. 4096, 64K, "
				"2MiB, 1GB)\n");
}

Test(opts, rates_keep_tc_prefixes_and_take_binary_ones)
{
	uint64_t v;

	cr_assert_eq(haul_parse_rate("60MiB/s", &v), 0);
	cr_assert_eq(v, 60ULL << 20);
	cr_assert_eq(haul_parse_rate("500M/s", &v), 0);
	cr_assert_eq(v, 500000000);
	cr_assert_eq(haul_parse_rate("100mbit/s", &v), 0);
	cr_assert_eq(v, 12500000);
	cr_assert_eq(haul_parse_rate("1Mibit", &v), 0);
	cr_assert_eq(v, 131072);
	cr_assert_eq(PARSE("--rate", "60MiB/s"), 3);
	cr_assert_eq(rate, 60ULL << 20);
	cr_assert_eq(PARSE("--rate", "quick"), -EINVAL);
	fflush(stderr);
	cr_assert_stderr_eq_str("haul: error: demo: --rate: 'quick' is not a rate (e.g. 500M, "
				"60MiB/s, 1gbit)\n");
}

Test(opts, host_port_needs_a_host_and_a_port_in_range)
{
	cr_assert_eq(haul_parse_hostport("10.0.0.2:7070", 1, 65535), 0);
	cr_assert_eq(haul_parse_hostport("[::1]:7070", 1, 65535), 0);
	cr_assert_eq(haul_parse_hostport("host:0", 0, 0), 0);
	cr_assert_eq(haul_parse_hostport("host:0", 1, 65535), -EINVAL);
	cr_assert_eq(haul_parse_hostport("host:65536", 0, 0), -EINVAL);
	cr_assert_eq(haul_parse_hostport("10.0.0.2", 0, 0), -EINVAL);
	cr_assert_eq(haul_parse_hostport(":7070", 0, 0), -EINVAL);
	cr_assert_eq(haul_parse_hostport("host:", 0, 0), -EINVAL);
	cr_assert_eq(haul_parse_hostport("host:70x", 0, 0), -EINVAL);
	cr_assert_eq(haul_parse_hostport("::1:7070", 0, 0), -EINVAL);
	cr_assert_eq(haul_parse_hostport("[]:7070", 0, 0), -EINVAL);
	cr_assert_eq(PARSE("--to", "10.0.0.2:7070"), 3);
	cr_assert_str_eq(hp, "10.0.0.2:7070");
	cr_assert_eq(PARSE("--to", "10.0.0.2"), -EINVAL);
}

Test(opts, enums_store_the_value_of_the_choice_named)
{
	cr_assert_eq(PARSE("--mode", "none"), 3);
	cr_assert_eq(mode, 9);
	cr_assert_eq(PARSE("--mode", "fast"), -EINVAL);
	fflush(stderr);
	cr_assert_stderr_eq_str(
		"haul: error: demo: --mode: 'fast' is not one of auto, lz4 or none\n");
}

Test(opts, flags_paths_and_strings_are_stored)
{
	cr_assert_eq(PARSE("-f", "--path", "/tmp/x", "--str", "hello", "arg"), 6);
	cr_assert(flag);
	cr_assert_str_eq(path, "/tmp/x");
	cr_assert_str_eq(str, "hello");
	cr_assert_eq(PARSE("--path", ""), -EINVAL);
	cr_assert_eq(PARSE("--str", ""), -EINVAL);
}

Test(opts, a_repeatable_option_collects_every_value_in_order)
{
	cr_assert_eq(PARSE("--add", "a", "-a", "b", "--add=c"), 6);
	cr_assert_eq(many.n, 3);
	cr_assert_str_eq(many.v[0], "a");
	cr_assert_str_eq(many.v[1], "b");
	cr_assert_str_eq(many.v[2], "c");
}

Test(opts, a_value_option_given_twice_is_refused)
{
	cr_assert_eq(PARSE("--count", "2", "--count", "3"), -EINVAL);
	fflush(stderr);
	cr_assert_stderr_eq_str(
		"haul: error: demo: --count is given twice (now '3'); give it once\n");
}

Test(opts, unknown_options_and_missing_values_are_named)
{
	cr_assert_eq(PARSE("--bogus"), -EINVAL);
	cr_assert_eq(PARSE("-x"), -EINVAL);
	cr_assert_eq(PARSE("--count"), -EINVAL);
	fflush(stderr);
	cr_assert_stderr_eq_str(
		"haul: error: demo: unknown or ambiguous option '--bogus'; run 'haul demo --help' "
		"for the options\n"
		"haul: error: demo: unknown option '-x'; run 'haul demo --help' for the options\n"
		"haul: error: demo: --count needs a value (N)\n");
}

Test(opts, positional_arguments_are_counted)
{
	cr_assert_eq(PARSE("a", "b"), -EINVAL);
	fflush(stderr);
	cr_assert_stderr_eq_str(
		"haul: error: demo: unexpected argument 'b'; usage: haul demo [options] [ARG]\n");
}

Test(opts, a_required_option_is_asked_for)
{
	static const struct haul_opt req[] = {
		{"key", 'k', HAUL_OPT_PATH, HAUL_OPT_REQUIRED, &path, "FILE", "a key", 0, 0, NULL},
		{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL},
	};
	const struct haul_cmd_spec s = {"demo", "--key FILE", NULL, NULL, req, 0, 0, false};

	cr_assert_eq(parse_words(&s, (const char *[]){NULL}), -EINVAL);
	cr_assert_eq(parse_words(&s, (const char *[]){"-k", "/k", NULL}), 3);
	fflush(stderr);
	cr_assert_stderr_eq_str(
		"haul: error: demo: --key FILE is required; see 'haul demo --help'\n");
}

Test(opts, options_end_at_the_first_argument_when_asked)
{
	const struct haul_cmd_spec s = {"demo", "-- CMD", NULL, NULL, table, 1, -1, true};

	cr_assert_eq(parse_words(&s, (const char *[]){"-f", "sleep", "--count", "9", NULL}), 2);
	cr_assert(flag);
	cr_assert_eq(num, 4, "--count after the command belongs to the command");
}

Test(opts, help_is_generated_from_the_table_with_defaults)
{
	char buf[4096] = "";
	FILE *f = fmemopen(buf, sizeof(buf) - 1, "w");

	cr_assert(f);
	haul_opts_usage(&spec, f);
	fclose(f);
	cr_assert(strstr(buf, "usage: haul demo [options] [ARG]\n\nintro\n\n"), "%s", buf);
	cr_assert(strstr(buf, "  -n, --count N         a count (default 4)\n"), "%s", buf);
	cr_assert(strstr(buf, "  --timeout TIME        a wait (default 25ms)\n"), "%s", buf);
	cr_assert(strstr(buf, "  --mode MODE           auto|lz4|none (default auto)\n"), "%s", buf);
	cr_assert(strstr(buf, "  -h, --help            this help\n\noutro\n"), "%s", buf);
	for (const struct haul_opt *o = table; o->name; o++) {
		char want[64];

		snprintf(want, sizeof(want), "--%s", o->name);
		cr_assert(strstr(buf, want), "--help lacks %s", want);
	}
}

Test(opts, help_is_asked_and_exits_zero)
{
	int ret = PARSE("--help");

	cr_assert_eq(ret, HAUL_OPTS_HELP);
	cr_assert_eq(haul_opts_exit(ret), 0);
}
