/*
 * cmd_checkpoint.c - `haul checkpoint PID --images DIR [--leave-running]`:
 * the stateful snapshot (with --leave-running) or stateful stop of a
 * process.  The work is haul_checkpoint_images() (checkpoint.c);
 * this file is the command line.
 */
#define LOG_PREFIX "checkpoint: "
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "restore/restore.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: haul checkpoint PID --images DIR [--leave-running]\n\n"
		   "Dump a running process into DIR as image DIR/<id>/ (id: its pid, host\n"
		   "pid, start time and boot: a new checkpoint of the same process replaces\n"
		   "its image atomically, other processes' images stay).  Without\n"
		   "--leave-running the process is killed once its image is safely on disk;\n"
		   "with it, it carries on.  Restore it with 'haul restore --images DIR'.\n");
}

int haul_cmd_checkpoint(int argc, char **argv)
{
	static const struct option opts[] = {
		{"images", required_argument, NULL, 'i'},
		{"leave-running", no_argument, NULL, 'l'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *dir = NULL;
	bool leave = false;
	struct rst_ckpt_stats st;
	struct haul_pid_lock lock;
	char why[PATH_MAX + 128];
	char *end;
	long pid;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "i:lh", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			dir = optarg;
			break;
		case 'l':
			leave = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1 || !dir) {
		usage(stderr);
		return 2;
	}
	pid = strtol(argv[optind], &end, 10);
	if (*end || pid <= 0) {
		pr_err("'%s' is not a PID", argv[optind]);
		return 2;
	}
	ret = haul_pid_lock(pid, "checkpointed", &lock, why, sizeof(why));
	if (ret) {
		pr_err("cannot checkpoint pid %ld: %s", pid, why);
		return 1;
	}
	ret = haul_checkpoint_images(pid, dir, leave, getenv("HAUL_FAULT"), &st);
	haul_pid_unlock(&lock);
	if (ret)
		return 1;
	printf("checkpointed pid %ld into %s/%s: %llu pages, %llu zero, stopped %.1f ms%s\n", pid,
	       dir, st.id, (unsigned long long)st.pages, (unsigned long long)st.zero_pages,
	       st.frozen_ns / 1e6, leave ? " (left running)" : "");
	return 0;
}
