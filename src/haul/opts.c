/*
 * opts.c - the one option parser of every `haul` command.
 *
 * Each command describes its options in a table (struct haul_opt): name,
 * type, where the value goes, range, help line.  haul_opts_parse() reads
 * argv with getopt_long built from that table, checks every value by its
 * type, and haul_opts_usage() prints --help from the same table, so the
 * parser and the help cannot drift apart (tests/extra/ops_man.sh then
 * holds the man pages to --help).
 *
 * Units: a duration is a number with ms, s, m or h (us for the odd
 * sub-millisecond); a bare number stays milliseconds, which every script
 * written before units wrote (`--downtime 50`, `--timeout 10000`).  A size
 * is bytes with K/M/G/T: binary (64K = 64KiB = 65536) unless written with
 * a plain B (64KB = 64000), as dd reads them.  A rate keeps tc's decimal
 * prefixes (500M = 500*10^6 bytes/s, 1gbit), with MiB/s for binary.
 *
 * A bad line is refused before anything runs: the message names the
 * option, the value given and what is expected, and the command exits 2,
 * as every usage error of haul does.  A value option given twice is an
 * error too (which one was meant?) unless the table says it repeats.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "haul/haul_int.h"

#define MAX_OPTS    40	  /* options of one command, --help included */
#define HELP_COLUMN 24	  /* where the help text of an option starts */
#define VAL_BASE    0x100 /* getopt value of table entry i: VAL_BASE + i */
#define VAL_HELP    (VAL_BASE - 1)

/* A non-negative finite number at the start of @s; @end after it. */
static int parse_number(const char *s, double *v, char **end)
{
	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s) && *s != '.')
		return -EINVAL; /* no sign, no "inf", no "nan" */
	errno = 0;
	*v = strtod(s, end);
	if (*end == s || errno || !isfinite(*v))
		return -EINVAL;
	return 0;
}

int haul_parse_duration_ms(const char *s, double *ms)
{
	static const struct {
		const char *unit;
		double ms;
	} units[] = {{"", 1},	 {"ms", 1},    {"us", 1e-3},	       {"s", 1e3},
		     {"m", 6e4}, {"min", 6e4}, {"h", HAUL_OPT_HOUR_MS}};
	char *end;
	double v;

	if (parse_number(s, &v, &end))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (!strcmp(end, units[i].unit)) {
			*ms = v * units[i].ms;
			return 0;
		}
	return -EINVAL;
}

/* K/M/G/T (any case) at @*p: 10^3.. or 2^10..; 1 when none.  Advances @*p. */
static double prefix(const char **p, bool binary)
{
	static const char pfx[] = "kmgt";
	const char *at = **p ? strchr(pfx, tolower((unsigned char)**p)) : NULL;
	double mul = 1;

	if (!at)
		return 1;
	for (const char *q = pfx; q <= at; q++)
		mul *= binary ? 1024 : 1000;
	(*p)++;
	return mul;
}

int haul_parse_size(const char *s, uint64_t *out)
{
	const char *p;
	char *end;
	double v, mul;
	bool binary;

	if (parse_number(s, &v, &end))
		return -EINVAL;
	p = end;
	/* 64K and 64KiB are binary; 64KB is decimal */
	binary = !(*p && p[1] && (p[1] == 'B' || p[1] == 'b') && !p[2]);
	mul = prefix(&p, binary);
	if (mul > 1 && (*p == 'i' || *p == 'I'))
		p++;
	if (*p == 'B' || *p == 'b')
		p++;
	if (*p || v * mul >= 18446744073709551616.0)
		return -EINVAL;
	*out = (uint64_t)(v * mul);
	return 0;
}

int haul_parse_rate(const char *s, uint64_t *out)
{
	const char *p;
	char *end;
	double v, mul;

	if (parse_number(s, &v, &end))
		return -EINVAL;
	p = end;
	/* tc's convention: decimal prefixes; MiB/s, Mibit for binary */
	mul = prefix(&p, (*p && (p[1] == 'i' || p[1] == 'I')));
	if (mul > 1 && (*p == 'i' || *p == 'I'))
		p++;
	if (!strcasecmp(p, "bit") || !strcasecmp(p, "bit/s") || !strcasecmp(p, "bps"))
		mul /= 8;
	else if (*p && strcasecmp(p, "b") && strcasecmp(p, "b/s") && strcmp(p, "/s"))
		return -EINVAL;
	if (v * mul >= 18446744073709551616.0)
		return -EINVAL;
	*out = (uint64_t)(v * mul);
	return 0;
}

int haul_parse_hostport(const char *s, long min_port, long max_port)
{
	const char *colon = strrchr(s, ':');
	char *end;
	long port;

	if (!colon || colon == s || !colon[1])
		return -EINVAL;
	if (s[0] == '[' && (colon - s < 3 || colon[-1] != ']'))
		return -EINVAL; /* [V6]:PORT */
	if (s[0] != '[' && strchr(s, ':') != colon)
		return -EINVAL; /* a bare IPv6 address: which colon is the port's? */
	if (!isdigit((unsigned char)colon[1]))
		return -EINVAL;
	errno = 0;
	port = strtol(colon + 1, &end, 10);
	if (*end || errno || port < 0 || port > 65535)
		return -EINVAL;
	if (min_port || max_port)
		if (port < min_port || port > max_port)
			return -EINVAL;
	return 0;
}

/* @ms as the user would write it: 25ms, 10s, 1.5s. */
static void fmt_duration(double ms, char *buf, size_t len)
{
	if (ms >= 1000)
		snprintf(buf, len, "%gs", ms / 1000);
	else
		snprintf(buf, len, "%gms", ms);
}

/* The value @o->dst holds, as --help shows a default; "" when it has none. */
static void fmt_value(const struct haul_opt *o, char *buf, size_t len)
{
	buf[0] = '\0';
	switch (o->type) {
	case HAUL_OPT_INT:
		snprintf(buf, len, "%lld", *(long long *)o->dst);
		break;
	case HAUL_OPT_DURATION:
		fmt_duration(*(double *)o->dst, buf, len);
		break;
	case HAUL_OPT_SIZE:
	case HAUL_OPT_RATE:
		snprintf(buf, len, "%llu", (unsigned long long)*(uint64_t *)o->dst);
		break;
	case HAUL_OPT_ENUM:
		for (const struct haul_opt_choice *c = o->choices; c->name; c++)
			if (c->value == *(int *)o->dst) {
				snprintf(buf, len, "%s", c->name);
				break;
			}
		break;
	case HAUL_OPT_STR:
	case HAUL_OPT_PATH:
	case HAUL_OPT_HOSTPORT:
		if (!(o->flags & HAUL_OPT_REPEAT) && *(const char **)o->dst)
			snprintf(buf, len, "%s", *(const char **)o->dst);
		break;
	case HAUL_OPT_FLAG:
		break;
	}
}

void haul_opts_usage(const struct haul_cmd_spec *spec, FILE *f)
{
	fprintf(f, "usage: haul %s%s%s\n", spec->name, spec->synopsis[0] ? " " : "",
		spec->synopsis);
	if (spec->intro)
		fprintf(f, "\n%s", spec->intro);
	fprintf(f, "\n");
	for (const struct haul_opt *o = spec->opts; o && o->name; o++) {
		char def[64], tag[64];
		const char *h = o->help, *nl;
		int n;

		if (o->short_name)
			n = snprintf(tag, sizeof(tag), "  -%c, --%s%s%s", o->short_name, o->name,
				     o->arg ? " " : "", o->arg ? o->arg : "");
		else
			n = snprintf(tag, sizeof(tag), "  --%s%s%s", o->name, o->arg ? " " : "",
				     o->arg ? o->arg : "");
		fprintf(f, "%s", tag);
		if (n + 2 > HELP_COLUMN)
			fprintf(f, "\n%*s", HELP_COLUMN, "");
		else
			fprintf(f, "%*s", HELP_COLUMN - n, "");
		while ((nl = strchr(h, '\n'))) {
			fprintf(f, "%.*s\n%*s", (int)(nl - h), h, HELP_COLUMN, "");
			h = nl + 1;
		}
		fmt_value(o, def, sizeof(def));
		if ((o->flags & HAUL_OPT_DEFAULT) && def[0])
			fprintf(f, "%s%s(default %s)\n", h, *h ? " " : "", def);
		else
			fprintf(f, "%s\n", h);
	}
	fprintf(f, "  -h, --help%*sthis help\n", HELP_COLUMN - 12, "");
	if (spec->outro)
		fprintf(f, "\n%s", spec->outro);
}

/* "expected 1 to 64", "expected at least 1ms" */
static void fmt_range(const struct haul_opt *o, char *buf, size_t len)
{
	char lo[32], hi[32];

	if (o->type == HAUL_OPT_DURATION) {
		fmt_duration(o->min, lo, sizeof(lo));
		fmt_duration(o->max, hi, sizeof(hi));
	} else {
		snprintf(lo, sizeof(lo), "%.0f", o->min);
		snprintf(hi, sizeof(hi), "%.0f", o->max);
	}
	if (o->max)
		snprintf(buf, len, "from %s to %s", lo, hi);
	else
		snprintf(buf, len, "at least %s", lo);
}

static bool in_range(const struct haul_opt *o, double v)
{
	if (!o->min && !o->max)
		return true;
	return v >= o->min && (!o->max || v <= o->max);
}

static int list_add(struct haul_opt_list *l, const char *v)
{
	const char **n = realloc(l->v, (l->n + 1) * sizeof(*n));

	if (!n)
		return -ENOMEM;
	n[l->n++] = v;
	l->v = n;
	return 0;
}

void haul_opt_list_release(struct haul_opt_list *l)
{
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* What a value of @o must look like, for a refusal. */
static const char *expected(const struct haul_opt *o)
{
	switch (o->type) {
	case HAUL_OPT_INT:
		return "is not an integer";
	case HAUL_OPT_DURATION:
		return "is not a duration (e.g. 500ms, 10s, 2m; a bare number is ms)";
	case HAUL_OPT_SIZE:
		return "is not a size (e.g. 4096, 64K, 2MiB, 1GB)";
	case HAUL_OPT_RATE:
		return "is not a rate (e.g. 500M, 60MiB/s, 1gbit)";
	case HAUL_OPT_HOSTPORT:
		return o->min ? "is not HOST:PORT (e.g. 10.0.0.2:7070, [::1]:7070)"
			      : "is not ADDR:PORT (e.g. 0.0.0.0:7070; port 0: any free)";
	case HAUL_OPT_PATH:
		return "is not a path";
	default:
		return "is empty";
	}
}

/* Store @arg into @o; 0 or -EINVAL, logged with the option named. */
static int set_value(const struct haul_cmd_spec *spec, const struct haul_opt *o, const char *arg)
{
	char range[96], *end;
	long long ll;
	uint64_t u;
	double d;
	int ret = 0;

	switch (o->type) {
	case HAUL_OPT_FLAG:
		*(bool *)o->dst = true;
		return 0;
	case HAUL_OPT_ENUM:
		for (const struct haul_opt_choice *c = o->choices; c->name; c++)
			if (!strcmp(arg, c->name)) {
				*(int *)o->dst = c->value;
				return 0;
			}
		range[0] = '\0';
		for (const struct haul_opt_choice *c = o->choices; c->name; c++)
			snprintf(range + strlen(range), sizeof(range) - strlen(range), "%s%s",
				 c == o->choices ? ""
				 : c[1].name	 ? ", "
						 : " or ",
				 c->name);
		pr_err("%s: --%s: '%s' is not one of %s", spec->name, o->name, arg, range);
		return -EINVAL;
	case HAUL_OPT_INT:
		errno = 0;
		ll = strtoll(arg, &end, 10);
		if (!*arg || *end || errno)
			ret = -EINVAL;
		d = (double)ll;
		if (!ret)
			*(long long *)o->dst = ll;
		break;
	case HAUL_OPT_DURATION:
		ret = haul_parse_duration_ms(arg, &d);
		if (!ret)
			*(double *)o->dst = d;
		break;
	case HAUL_OPT_SIZE:
	case HAUL_OPT_RATE:
		ret = o->type == HAUL_OPT_SIZE ? haul_parse_size(arg, &u)
					       : haul_parse_rate(arg, &u);
		d = (double)u;
		if (!ret)
			*(uint64_t *)o->dst = u;
		break;
	case HAUL_OPT_HOSTPORT:
		ret = haul_parse_hostport(arg, (long)o->min, (long)o->max);
		d = 0;
		break;
	case HAUL_OPT_PATH:
		ret = *arg && strlen(arg) < PATH_MAX ? 0 : -EINVAL;
		d = 0;
		break;
	case HAUL_OPT_STR:
		ret = *arg ? 0 : -EINVAL;
		d = 0;
		break;
	}
	if (ret) {
		pr_err("%s: --%s: '%s' %s", spec->name, o->name, arg, expected(o));
		return -EINVAL;
	}
	if (o->type != HAUL_OPT_HOSTPORT && !in_range(o, d)) {
		fmt_range(o, range, sizeof(range));
		pr_err("%s: --%s: '%s' is out of range (expected %s)", spec->name, o->name, arg,
		       range);
		return -EINVAL;
	}
	if (o->type == HAUL_OPT_STR || o->type == HAUL_OPT_PATH || o->type == HAUL_OPT_HOSTPORT) {
		if ((o->flags & HAUL_OPT_REPEAT) && list_add(o->dst, arg)) {
			pr_err("%s: --%s: no memory for another value", spec->name, o->name);
			return -EINVAL;
		}
		if (o->flags & HAUL_OPT_REPEAT)
			return 0;
		*(const char **)o->dst = arg;
	}
	return 0;
}

/* The table entry getopt_long answered @c for; NULL for --help. */
static const struct haul_opt *entry_of(const struct haul_cmd_spec *spec, int c)
{
	if (c >= VAL_BASE)
		return &spec->opts[c - VAL_BASE];
	for (const struct haul_opt *o = spec->opts; o && o->name; o++)
		if (o->short_name == c)
			return o;
	return NULL;
}

/* getopt_long's tables from @spec; false when the table is too long. */
static bool build(const struct haul_cmd_spec *spec, struct option *lo, char *so, size_t solen)
{
	size_t n = 0, s = 0;

	if (spec->stop_at_arg)
		so[s++] = '+';
	so[s++] = ':'; /* a missing value is ':', not '?' */
	for (const struct haul_opt *o = spec->opts; o && o->name; o++, n++) {
		if (n + 2 >= MAX_OPTS || s + 3 >= solen)
			return false;
		lo[n] = (struct option){o->name,
					o->type == HAUL_OPT_FLAG ? no_argument : required_argument,
					NULL, o->short_name ? o->short_name : (int)(VAL_BASE + n)};
		if (o->short_name) {
			so[s++] = o->short_name;
			if (o->type != HAUL_OPT_FLAG)
				so[s++] = ':';
		}
	}
	lo[n++] = (struct option){"help", no_argument, NULL, 'h'};
	lo[n] = (struct option){NULL, 0, NULL, 0};
	so[s++] = 'h';
	so[s] = '\0';
	return true;
}

/* The line after the options: positional count and required options. */
static int check_rest(const struct haul_cmd_spec *spec, int argc, char **argv, const bool *seen)
{
	int nargs = argc - optind;
	size_t i = 0;

	for (const struct haul_opt *o = spec->opts; o && o->name; o++, i++)
		if ((o->flags & HAUL_OPT_REQUIRED) && !seen[i]) {
			pr_err("%s: --%s %s is required; see 'haul %s --help'", spec->name, o->name,
			       o->arg ? o->arg : "", spec->name);
			return -EINVAL;
		}
	if (spec->max_args >= 0 && nargs > spec->max_args) {
		pr_err("%s: unexpected argument '%s'; usage: haul %s %s", spec->name,
		       argv[optind + spec->max_args], spec->name, spec->synopsis);
		return -EINVAL;
	}
	if (nargs < spec->min_args) {
		pr_err("%s: an argument is missing; usage: haul %s %s", spec->name, spec->name,
		       spec->synopsis);
		return -EINVAL;
	}
	return optind;
}

int haul_opts_parse(const struct haul_cmd_spec *spec, int argc, char **argv)
{
	struct option lo[MAX_OPTS];
	bool seen[MAX_OPTS] = {false};
	char so[2 * MAX_OPTS + 4];
	int c;

	if (!build(spec, lo, so, sizeof(so))) {
		pr_err("%s: too many options for the parser (at most %d)", spec->name,
		       MAX_OPTS - 2);
		return -EINVAL;
	}
	optind = 0; /* glibc: start afresh, also after an earlier parse */
	opterr = 0; /* the refusals below name the command and what to do */
	while ((c = getopt_long(argc, argv, so, lo, NULL)) != -1) {
		const struct haul_opt *o;
		size_t i;

		if (c == 'h') {
			haul_opts_usage(spec, stdout);
			return HAUL_OPTS_HELP;
		}
		if (c == '?') {
			if (optopt && optopt < VAL_BASE)
				pr_err("%s: unknown option '-%c'; run 'haul %s --help' for the "
				       "options",
				       spec->name, optopt, spec->name);
			else
				pr_err("%s: unknown or ambiguous option '%s'; run 'haul %s --help' "
				       "for the options",
				       spec->name, argv[optind - 1], spec->name);
			return -EINVAL;
		}
		o = c == ':' ? entry_of(spec, optopt) : entry_of(spec, c);
		if (!o)
			return -EINVAL; /* getopt_long answered with a value not in the table */
		i = (size_t)(o - spec->opts);
		if (c == ':') {
			pr_err("%s: --%s needs a value (%s)", spec->name, o->name,
			       o->arg ? o->arg : "?");
			return -EINVAL;
		}
		if (seen[i] && o->type != HAUL_OPT_FLAG && !(o->flags & HAUL_OPT_REPEAT)) {
			pr_err("%s: --%s is given twice (now '%s'); give it once", spec->name,
			       o->name, optarg);
			return -EINVAL;
		}
		seen[i] = true;
		if (set_value(spec, o, optarg))
			return -EINVAL;
	}
	return check_rest(spec, argc, argv, seen);
}

int haul_opts_exit(int ret)
{
	return ret == HAUL_OPTS_HELP ? 0 : 2;
}
