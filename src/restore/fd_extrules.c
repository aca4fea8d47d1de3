/*
 * fd_extrules.c - what an fd whose other end stays behind becomes on the
 * target: the user's rules (--external-fd FD=SPEC, --external KIND=SPEC)
 * and the defaults.
 *
 * A SPEC is one of
 *   null         /dev/null, opened with the fd's access mode
 *   file:PATH    PATH, created if missing, written in append mode
 *   fd:N         fd N of the restoring haul (haul restore, haul pageserver),
 *                reopened through /proc (a pipe, FIFO, terminal or file;
 *                not a socket, which cannot be opened through /proc)
 *   reconnect    unix sockets: a new socket connected to the same path
 *   journal      reconnect, then the stream header journald expects
 *   tty          terminals: the restoring haul's terminal
 *   device       terminals: the same device again, by its path, which must
 *                name the same device number where it is restored
 * Lookup order: a rule for the fd number, a rule for its kind, the kind's
 * default.  Defaults: a unix socket reconnects (journal for
 * /run/systemd/journal/stdout, so a service's stdout goes on reaching the
 * journal); a virtual console or /dev/console is the same device again; any
 * other terminal becomes the restoring haul's; a pipe or FIFO has no
 * safe default (its bytes would go nowhere the user chose) and is refused
 * at the precheck, naming the fd, its other end and these options.
 *
 * The rules are the haul process's, set once from its command line before
 * any dump or restore (the dump and restore entry points are reached from
 * checkpoint, migrate and the page server's sink alike; threading a table
 * through each would touch all of them).  The dump records the spec the
 * source chose in the image; a rule of the restoring haul overrides it.
 */
#define LOG_PREFIX "external: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "restore/fd_int.h"
#include "restore/restore.h"

#define EXT_MAX_RULES 64

struct ext_rule {
	int fd;	  /* -1: a rule by kind */
	int kind; /* Haul__Img__ExternalKind, -1: a rule by fd */
	char *spec;
};

static struct ext_rule rules[EXT_MAX_RULES];
static size_t nrules;

static const char *const kind_names[] = {
	[HAUL__IMG__EXTERNAL_KIND__EXT_PIPE] = "pipe",
	[HAUL__IMG__EXTERNAL_KIND__EXT_FIFO] = "fifo",
	[HAUL__IMG__EXTERNAL_KIND__EXT_UNIX] = "unix",
	[HAUL__IMG__EXTERNAL_KIND__EXT_TTY] = "tty",
};

const char *rst_ext_kind_name(Haul__Img__ExternalKind k)
{
	if ((size_t)k < sizeof(kind_names) / sizeof(kind_names[0]) && kind_names[k])
		return kind_names[k];
	return "?";
}

int rst_ext_spec_parse(const char *s, struct rst_ext_spec *out)
{
	char *end;
	long n;

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (!strcmp(s, "null"))
		out->how = RST_EXT_NULL;
	else if (!strcmp(s, "reconnect"))
		out->how = RST_EXT_RECONNECT;
	else if (!strcmp(s, "journal"))
		out->how = RST_EXT_JOURNAL;
	else if (!strcmp(s, "tty"))
		out->how = RST_EXT_TTY;
	else if (!strcmp(s, "device"))
		out->how = RST_EXT_DEVICE;
	else if (!strncmp(s, "file:", 5) && s[5] == '/') {
		out->how = RST_EXT_FILE;
		out->path = s + 5;
	} else if (!strncmp(s, "fd:", 3) && s[3] >= '0' && s[3] <= '9') {
		errno = 0;
		n = strtol(s + 3, &end, 10);
		if (*end || errno || n < 0 || n > 1 << 20)
			return -EINVAL;
		out->how = RST_EXT_FD;
		out->fd = (int)n;
	} else {
		return -EINVAL;
	}
	return 0;
}

bool rst_ext_spec_fits(const struct rst_ext_spec *s, Haul__Img__ExternalKind k)
{
	if (s->how == RST_EXT_RECONNECT || s->how == RST_EXT_JOURNAL)
		return k == HAUL__IMG__EXTERNAL_KIND__EXT_UNIX;
	if (s->how == RST_EXT_TTY || s->how == RST_EXT_DEVICE)
		return k == HAUL__IMG__EXTERNAL_KIND__EXT_TTY;
	return true;
}

int rst_external_add(const char *rule, bool by_fd)
{
	const char *opt = by_fd ? "--external-fd" : "--external";
	const char *eq = strchr(rule, '=');
	struct rst_ext_spec s;
	struct ext_rule r = {.fd = -1, .kind = -1};
	char *end;

	if (!eq || eq == rule || rst_ext_spec_parse(eq + 1, &s)) {
		pr_err("%s '%s': expected %s=SPEC, SPEC one of null, file:/PATH, fd:N, reconnect, "
		       "journal, tty, device",
		       opt, rule, by_fd ? "FD" : "KIND");
		return -EINVAL;
	}
	if (by_fd) {
		long n = strtol(rule, &end, 10);

		if (end != eq || n < 0 || n > 1 << 20) {
			pr_err("%s '%s': FD must be an fd number", opt, rule);
			return -EINVAL;
		}
		r.fd = (int)n;
	} else {
		for (size_t k = 0; k < sizeof(kind_names) / sizeof(kind_names[0]); k++)
			if (strlen(kind_names[k]) == (size_t)(eq - rule) &&
			    !strncmp(rule, kind_names[k], eq - rule))
				r.kind = (int)k;
		if (r.kind < 0) {
			pr_err("%s '%s': KIND must be pipe, fifo, unix or tty", opt, rule);
			return -EINVAL;
		}
		if (!rst_ext_spec_fits(&s, (Haul__Img__ExternalKind)r.kind)) {
			pr_err("%s '%s': %s does not apply to a %s (reconnect and journal are for "
			       "unix, tty and device for tty)",
			       opt, rule, eq + 1, kind_names[r.kind]);
			return -EINVAL;
		}
	}
	if (nrules == EXT_MAX_RULES) {
		pr_err("%s '%s': more than %d rules", opt, rule, EXT_MAX_RULES);
		return -EINVAL;
	}
	r.spec = strdup(eq + 1);
	if (!r.spec)
		return -ENOMEM;
	rules[nrules++] = r;
	return 0;
}

void rst_external_clear(void)
{
	for (size_t i = 0; i < nrules; i++)
		free(rules[i].spec);
	nrules = 0;
}

const char *rst_ext_rule_for(int fd, Haul__Img__ExternalKind k)
{
	/* The last rule given wins, a rule by fd before a rule by kind. */
	for (size_t i = nrules; i-- > 0;)
		if (rules[i].fd == fd)
			return rules[i].spec;
	for (size_t i = nrules; i-- > 0;)
		if (rules[i].kind == (int)k)
			return rules[i].spec;
	return NULL;
}

const char *rst_ext_default(Haul__Img__ExternalKind k, const char *path)
{
	switch (k) {
	case HAUL__IMG__EXTERNAL_KIND__EXT_UNIX:
		return path && !strcmp(path, RST_JOURNAL_STDOUT) ? "journal" : "reconnect";
	case HAUL__IMG__EXTERNAL_KIND__EXT_TTY:
		return path && path[0] ? "device" : "tty";
	default:
		return NULL;
	}
}

void rst_ext_spec_describe(const char *spec, char *buf, size_t len)
{
	struct rst_ext_spec s;

	if (rst_ext_spec_parse(spec, &s)) {
		snprintf(buf, len, "'%s' (not a spec)", spec);
		return;
	}
	switch (s.how) {
	case RST_EXT_NULL:
		snprintf(buf, len, "/dev/null");
		break;
	case RST_EXT_FILE:
		snprintf(buf, len, "file %s (appended)", s.path);
		break;
	case RST_EXT_FD:
		snprintf(buf, len, "fd %d of the restoring haul", s.fd);
		break;
	case RST_EXT_RECONNECT:
		snprintf(buf, len, "a new connection to the same socket path");
		break;
	case RST_EXT_JOURNAL:
		snprintf(buf, len, "a new journald stream (the same path, a stream header)");
		break;
	case RST_EXT_TTY:
		snprintf(buf, len, "the restoring haul's terminal (/dev/null if it has none)");
		break;
	case RST_EXT_DEVICE:
		snprintf(buf, len, "the same terminal device, by its path");
		break;
	}
}
