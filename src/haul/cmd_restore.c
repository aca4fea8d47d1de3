/*
 * cmd_restore.c - `haul restore --images DIR`: bring a checkpointed process
 * back.  By default haul stays its ancestor and exits with the process's
 * exit status (128 + signal when killed), so scripts can wait on it;
 * --detach prints its PID and leaves it running.  The work is
 * rst_restore_images() (src/restore/image.c).
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "haul/haul.h"
#include "restore/restore.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: haul restore --images DIR [--id ID] [--pid PID] [--detach]\n"
		   "                    [--pidns auto|always|never]\n\n"
		   "Restore a process checkpointed with 'haul checkpoint'.  With several images\n"
		   "in DIR, --id (or --pid) says which; without, they are listed.  The image\n"
		   "is only read, every page checked first: a damaged one is refused, naming\n"
		   "the file and slot.  The process keeps its PID:\n"
		   "in this PID namespace when the PID is free, else in a new one (--pidns\n"
		   "never refuses instead).  Without --detach, waits and exits with its status.\n");
}

int haul_cmd_restore(int argc, char **argv)
{
	static const struct option opts[] = {
		{"images", required_argument, NULL, 'i'},
		{"pid", required_argument, NULL, 'p'},
		{"id", required_argument, NULL, 'I'},
		{"detach", no_argument, NULL, 'd'},
		{"pidns", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct rst_target_opts o = {0};
	struct rst_target *t;
	const char *dir = NULL, *id = NULL;
	pid_t pid = 0, here;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "i:p:dn:h", opts, NULL)) != -1) {
		switch (c) {
		case 'i':
			dir = optarg;
			break;
		case 'I':
			id = optarg;
			break;
		case 'p':
			pid = atoi(optarg);
			break;
		case 'd':
			o.detach = true;
			break;
		case 'n':
			if (!strcmp(optarg, "auto"))
				o.pidns = RST_PIDNS_AUTO;
			else if (!strcmp(optarg, "always"))
				o.pidns = RST_PIDNS_ALWAYS;
			else if (!strcmp(optarg, "never"))
				o.pidns = RST_PIDNS_NEVER;
			else {
				pr_err("--pidns takes auto, always or never, not '%s'", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc || !dir) {
		usage(stderr);
		return 2;
	}
	ret = rst_restore_images(dir, id, pid, &o, &t, &here);
	if (ret)
		return 1;
	if (o.detach) {
		printf("%d\n", (int)here);
		fflush(stdout);
		rst_target_free(t);
		return 0;
	}
	ret = rst_target_wait(t);
	rst_target_free(t);
	return ret < 0 ? 1 : ret;
}
