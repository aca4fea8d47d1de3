/*
 * main.c - the `haul` command: a table of subcommands, in the manner of git.
 * `haul --version` prints the release (VERSION file) and git commit of the build.
 */
#include <stdio.h>
#include <string.h>

#include "common/log.h"
#include "haul/haul.h"
#include "haul_version.h"

struct haul_cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct haul_cmd cmds[] = {
	{"migrate", haul_cmd_migrate, "move a running process to another host (live migration)"},
	{"pageserver", haul_cmd_pageserver,
	 "target-side daemon: receive pages, restore on command"},
	{"checkpoint", haul_cmd_checkpoint, "dump a process to an image directory"},
	{"restore", haul_cmd_restore, "restore a process from an image directory"},
	{"track", haul_cmd_track, "watch a process's dirty pages round by round"},
	{"check", haul_cmd_check, "report the kernel features haul can use here"},
	{"run", haul_cmd_run, "start a workload in its own cgroup and PID namespace"},
	{"ps", haul_cmd_ps, "list workloads started with haul run"},
	{"version", haul_cmd_version, "print versions of haul, its wire and image formats"},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: haul <command> [options]\n\n"
		   "Live migration of Linux processes between hosts.\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(f, "  %-12s %s\n", cmds[i].name, cmds[i].summary);
	fprintf(f, "\nRun 'haul <command> --help' for a command's options.\n"
		   "HAUL_LOG=debug|info|warn|err sets how much is logged.\n"
		   "'haul --version' prints the version; 'man haul' has the reference.\n");
}

int main(int argc, char **argv)
{
	const char *base = argv[0] ? strrchr(argv[0], '/') : NULL;

	/* Run as `criu` (a symlink to haul first on PATH): the container engines' entry. */
	base = base ? base + 1 : argv[0];
	if (base && !strcmp(base, "criu"))
		return haul_criu_main(argc, argv);
	log_init("haul");
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("haul %s%s%s%s\n", HAUL_VERSION, HAUL_GIT[0] ? " (git " : "", HAUL_GIT,
		       HAUL_GIT[0] ? ")" : "");
		return 0;
	}
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(argv[1], cmds[i].name))
			return cmds[i].fn(argc - 1, argv + 1);
	pr_err("unknown command '%s'; run 'haul --help' for the list", argv[1]);
	return 2;
}
