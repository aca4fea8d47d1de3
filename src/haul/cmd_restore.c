/*
 * cmd_restore.c - `haul restore --images DIR`: bring a checkpointed process
 * back.  By default haul stays its ancestor and exits with the process's
 * exit status (128 + signal when killed), so scripts can wait on it;
 * --detach prints its PID and leaves it running.  The work is
 * rst_restore_images() (src/restore/image.c).
 */
#define LOG_PREFIX "restore: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"
#include "restore/restore.h"

static const char intro[] =
	"Restore a process checkpointed with 'haul checkpoint'.  With several images\n"
	"in DIR, --id (or --pid) says which; without, they are listed.  The image\n"
	"is only read, every page checked first: a damaged one is refused, naming\n"
	"the file and slot.  The process keeps its PID:\n"
	"in this PID namespace when the PID is free, else in a new one (--pidns\n"
	"never refuses instead).  Without --detach, waits and exits with its status.\n";

static const struct haul_opt_choice pidns_modes[] = {
	{"auto", RST_PIDNS_AUTO},
	{"always", RST_PIDNS_ALWAYS},
	{"never", RST_PIDNS_NEVER},
	{NULL, 0},
};

int haul_cmd_restore(int argc, char **argv)
{
	struct rst_target_opts o = {0};
	struct rst_target *t;
	const char *dir = NULL, *id = NULL;
	long long pid = 0;
	int pidns = RST_PIDNS_AUTO;
	struct haul_opt_list ext_fd = {0}, ext_kind = {0};
	const struct haul_opt opts[] = {
		{"images", 'i', HAUL_OPT_PATH, HAUL_OPT_REQUIRED, &dir, "DIR",
		 "the image directory of 'haul checkpoint'", 0, 0, NULL},
		{"id", 0, HAUL_OPT_STR, 0, &id, "ID", "restore the image of this id", 0, 0, NULL},
		{"pid", 'p', HAUL_OPT_INT, 0, &pid, "PID",
		 "restore the image of the process that had this PID", 1, INT_MAX, NULL},
		{"detach", 'd', HAUL_OPT_FLAG, 0, &o.detach, NULL,
		 "print the PID and leave the process running", 0, 0, NULL},
		{"pidns", 'n', HAUL_OPT_ENUM, HAUL_OPT_DEFAULT, &pidns, "MODE",
		 "auto|always|never: when to restore in a new\nPID namespace", 0, 0, pidns_modes},
		HAUL_OPTS_EXTERNAL(&ext_fd, &ext_kind),
		{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL},
	};
	const struct haul_cmd_spec spec = {"restore",
					   "--images DIR [--id ID] [--pid PID] [--detach]\n"
					   "                    [--pidns auto|always|never]",
					   intro,
					   NULL,
					   opts,
					   0,
					   0,
					   false};
	pid_t here;
	int ret;

	ret = haul_opts_parse_external(&spec, argc, argv, &ext_fd, &ext_kind);
	if (ret < 0)
		return haul_opts_exit(ret);
	o.pidns = (enum rst_pidns)pidns;
	haul_ckpt_netlock_use(); /* the lock its checkpoint left is lifted (ckpt_netlock.c) */
	ret = rst_restore_images(dir, id, (pid_t)pid, &o, &t, &here);
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
