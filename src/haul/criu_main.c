/*
 * criu_main.c - haul's criu-compatible entry point: `haul` run under the
 * name `criu` (a symlink criu -> haul, installed by `make install` in
 * $(LIBEXECDIR)/haul/criu-compat, a directory the operator puts first on
 * PATH for the container engine).
 *
 * Only what the engines really execute is served:
 *   criu -V | --version    "Version: 3.17" (runc and go-criu need >= 3.0
 *                          and read "Version: X.Y"), then haul's own line;
 *   criu check [--feature NAME]...
 *                          an honest answer per feature (table below);
 *   criu swrk FD           the RPC service on the seqpacket socket FD
 *                          (criu_swrk.c), which runc and crun use for
 *                          everything else.
 * Any other criu command (dump, restore, page-server, lazy-pages, ...) is
 * refused with its name and the haul command that does the job.  The
 * version is the CRIU interface level haul answers for, not a CRIU release;
 * the name and haul's own version follow it on the next line.
 */
#define LOG_PREFIX "criu: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/probe.h"
#include "haul/criu_int.h"
#include "haul/haul.h"
#include "haul_version.h"

/* A feature of `criu check --feature`: why it is (not) there, NULL when it is. */
struct criu_feature {
	const char *name;
	const char *(*why_not)(void);
};

static const char *no_reason(void)
{
	return NULL;
}

static const char *timens_missing(void)
{
	return probe_time_ns() ? NULL : "the kernel has no time namespaces";
}

static const char *set_tid_missing(void)
{
	return probe_clone3_set_tid() ? NULL : "clone3() cannot choose the PID here";
}

/* pre-dump rounds: haul's tracker (uffd write-protect here, else hashing) never lacks */
static const char *mem_track_missing(void)
{
	return NULL;
}

static const char *no_lazy(void)
{
	return "criu's lazy-pages daemon protocol is not supported (haul migrate "
	       "--postcopy is haul's own)";
}

/* a container's user namespace, a child of the engine's (userns_ctr.c) */
static const char *userns_missing(void)
{
	return NULL;
}

static const struct criu_feature features[] = {
	{"mnt_id", no_reason},
	{"timens", timens_missing},
	{"clone3_set_tid", set_tid_missing},
	{"ns_pid", no_reason},
	{"cgroupns", no_reason},
	{"mem_dirty_track", mem_track_missing},
	{"uffd", no_lazy},
	{"uffd-noncoop", no_lazy},
	{"lazy_pages", no_lazy},
	{"userns", userns_missing},
};

static int criu_version(void)
{
	printf("Version: %d.%d\nhaul %s%s%s%s (criu-compatible entry point)\n", CRIU_COMPAT_MAJOR,
	       CRIU_COMPAT_MINOR, HAUL_VERSION, HAUL_GIT[0] ? " (git " : "", HAUL_GIT,
	       HAUL_GIT[0] ? ")" : "");
	return 0;
}

/* `criu check`: what a checkpoint and a restore need here, or the features asked for. */
static int criu_check(int argc, char **argv)
{
	int bad = 0, asked = 0;

	for (int i = 1; i < argc; i++) {
		const char *name = NULL;

		if (!strcmp(argv[i], "--feature") && i + 1 < argc)
			name = argv[++i];
		else if (!strncmp(argv[i], "--feature=", 10))
			name = argv[i] + 10;
		else if (!strcmp(argv[i], "--all") || !strcmp(argv[i], "--extra") ||
			 !strcmp(argv[i], "--experimental"))
			continue;
		else {
			pr_err("'criu check %s' is not understood by haul's criu entry point; it "
			       "knows --feature NAME",
			       argv[i]);
			return 2;
		}
		asked++;
		size_t k;

		for (k = 0; k < sizeof(features) / sizeof(features[0]); k++)
			if (!strcmp(features[k].name, name))
				break;
		if (k == sizeof(features) / sizeof(features[0])) {
			printf("%s is NOT supported: haul's criu entry point does not know this "
			       "feature\n",
			       name);
			bad++;
			continue;
		}
		const char *why = features[k].why_not();

		if (why) {
			printf("%s is NOT supported: %s\n", name, why);
			bad++;
		} else {
			printf("%s is supported\n", name);
		}
	}
	if (asked)
		return bad ? 1 : 0;
	if (!probe_clone3_set_tid()) {
		printf("clone3 with set_tid does not work here: restored processes cannot keep "
		       "their PIDs\n");
		return 1;
	}
	printf("Looks good.\n");
	return 0;
}

static void criu_usage(FILE *f)
{
	fprintf(f, "usage: criu -V | --version\n"
		   "       criu check [--feature NAME]...\n"
		   "       criu swrk FD\n\n"
		   "haul's criu-compatible entry point for container engines (runc, crun).\n"
		   "Checkpoint and restore go through the RPC of 'criu swrk'; 'man haul-criu'\n"
		   "lists the requests and options served and those refused.\n");
}

int haul_criu_main(int argc, char **argv)
{
	log_init("haul-criu");
	if (argc < 2) {
		criu_usage(stderr);
		return 1;
	}
	if (!strcmp(argv[1], "-V") || !strcmp(argv[1], "--version"))
		return criu_version();
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		criu_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "check"))
		return criu_check(argc - 1, argv + 1);
	if (!strcmp(argv[1], "swrk")) {
		char *end;
		long fd;

		if (argc != 3) {
			pr_err("usage: criu swrk FD (the seqpacket socket of the caller)");
			return 1;
		}
		fd = strtol(argv[2], &end, 10);
		if (*end || fd < 0 || fd > INT32_MAX) {
			pr_err("'%s' is not a file descriptor", argv[2]);
			return 1;
		}
		return criu_swrk((int)fd) ? 1 : 0;
	}
	pr_err("'criu %s' is not supported by haul's criu entry point: it serves 'criu swrk' "
	       "(runc, crun), 'check' and '--version'; use 'haul checkpoint' / 'haul restore' "
	       "directly",
	       argv[1]);
	return 1;
}
