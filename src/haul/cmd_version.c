/*
 * cmd_version.c - `haul --version` and `haul version [--json]`: which haul
 * this is, and what it can talk to.
 *
 * An orchestrator that pairs a source with a target needs more than the
 * release: the wire protocol version (both sides must match, Hello.version),
 * the capability bits this build offers (Hello.caps, from the Cap enum of
 * proto/wire.proto), the process image format (ProcessState.version, which
 * `haul restore` checks) and the kernel features probed on this host (the
 * same probes as `haul check`, each one running the real operation).
 * HAUL_VERSION and HAUL_GIT come from $(BUILD)/gen/haul_version.h, written by
 * src/haul/install.mk from the VERSION file and `git describe`.
 */
#define LOG_PREFIX "version: "
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "common/probe.h"
#include "common/wire.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "haul_version.h"
#include "restore/restore.h"

struct feature {
	const char *name;
	bool on;
};

static size_t probe_features(struct feature *f)
{
	const struct probe_cgroup *cg = probe_cgroup();
	uint64_t uffd = 0;
	size_t n = 0;

	f[n++] = (struct feature){"uffd_wp_async", probe_uffd_wp_async(NULL)};
	f[n++] = (struct feature){"pagemap_scan", probe_pagemap_scan()};
	f[n++] = (struct feature){"soft_dirty", probe_soft_dirty()};
	f[n++] = (struct feature){"pidfd_getfd", probe_pidfd_getfd()};
	f[n++] = (struct feature){"uffd_minor_shmem",
				  !probe_uffd_features(&uffd) && (uffd & UFFD_FEATURE_MINOR_SHMEM)};
	f[n++] = (struct feature){"cgroup2_freezer", cg->v2_freeze};
	f[n++] = (struct feature){"cgroup1_freezer", cg->v1_freezer[0] != '\0'};
	f[n++] = (struct feature){"io_uring", probe_io_uring()};
	f[n++] = (struct feature){"clone3_set_tid", probe_clone3_set_tid()};
	f[n++] = (struct feature){"time_ns", probe_time_ns()};
	return n;
}

/* "CAP_PAGE_REQ" -> "page_req" */
static void cap_name(const char *enum_name, char *out, size_t len)
{
	size_t i = 0;

	if (!strncmp(enum_name, "CAP_", 4))
		enum_name += 4;
	for (; enum_name[i] && i + 1 < len; i++)
		out[i] = tolower((unsigned char)enum_name[i]);
	out[i] = '\0';
}

static void print_caps(bool json)
{
	const ProtobufCEnumDescriptor *d = &haul__wire__cap__descriptor;
	char name[64];
	bool first = true;

	for (unsigned i = 0; i < d->n_values; i++) {
		if (!d->values[i].value)
			continue;
		cap_name(d->values[i].name, name, sizeof(name));
		printf(json ? "%s\"%s\"" : "%s%s", first ? "" : json ? "," : " ", name);
		first = false;
	}
}

static int print_json(void)
{
	struct feature f[16];
	size_t n = probe_features(f);

	printf("{\"version\":\"%s\",\"git\":\"%s\",\"wire_version\":%d,\"wire_caps\":[",
	       HAUL_VERSION, HAUL_GIT, WIRE_VERSION);
	print_caps(true);
	printf("],\"image_version\":%d,\"features\":{", rst_image_version());
	for (size_t i = 0; i < n; i++)
		printf("%s\"%s\":%s", i ? "," : "", f[i].name, f[i].on ? "true" : "false");
	printf("}}\n");
	return 0;
}

static int print_text(void)
{
	struct feature f[16];
	size_t n = probe_features(f);

	printf("haul %s%s%s%s\n", HAUL_VERSION, HAUL_GIT[0] ? " (git " : "", HAUL_GIT,
	       HAUL_GIT[0] ? ")" : "");
	printf("wire protocol %d, capabilities: ", WIRE_VERSION);
	print_caps(false);
	printf("\nprocess image format %d\nkernel features here:", rst_image_version());
	for (size_t i = 0; i < n; i++)
		printf(" %s%s", f[i].on ? "+" : "-", f[i].name);
	printf("\n");
	return 0;
}

int haul_cmd_version(int argc, char **argv)
{
	bool json = false;
	const struct haul_opt opts[] = {
		{"json", 0, HAUL_OPT_FLAG, 0, &json, NULL,
		 "one JSON object: version, git, wire_version, wire_caps,\nimage_version, features",
		 0, 0, NULL},
		{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL},
	};
	const struct haul_cmd_spec spec = {
		"version",
		"[--json]",
		"Print haul's version, the wire protocol version and capabilities it\n"
		"speaks, the process image format it writes and reads, and the kernel\n"
		"features probed on this host ('haul check' explains each).\n",
		NULL,
		opts,
		0,
		0,
		false};
	int ret = haul_opts_parse(&spec, argc, argv);

	if (ret < 0)
		return haul_opts_exit(ret);
	return json ? print_json() : print_text();
}
