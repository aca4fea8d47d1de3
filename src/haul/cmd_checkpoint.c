/*
 * cmd_checkpoint.c - `haul checkpoint PID --images DIR [--leave-running]`:
 * the stateful snapshot (with --leave-running) or stateful stop of a
 * process.  The work is haul_checkpoint_images() (checkpoint.c);
 * this file is the command line.
 */
#define LOG_PREFIX "checkpoint: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/injlog.h"
#include "common/log.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"
#include "restore/restore.h"

static const char intro[] =
	"Dump a running process into DIR as image DIR/<id>/ (id: its pid, host\n"
	"pid, start time and boot: a new checkpoint of the same process replaces\n"
	"its image atomically, other processes' images stay).  Without\n"
	"--leave-running the process is killed once its image is safely on disk;\n"
	"with it, it carries on.  A process with children is taken with all its\n"
	"descendants, as one image; --cgroup PATH takes every process of a cgroup\n"
	"(they must form one tree).  Restore it with 'haul restore --images DIR'.\n"
	"Their TCP sockets are locked (nftables) from the stop until that restore\n"
	"lifts the lock, so that no peer meets a closed port meanwhile.\n";

int haul_cmd_checkpoint(int argc, char **argv)
{
	const char *dir = NULL, *cgroup = NULL;
	bool leave = false, no_lock = false;
	struct haul_opt_list ext_fd = {0}, ext_kind = {0};
	const struct haul_opt opts[] = {
		{"images", 'i', HAUL_OPT_PATH, HAUL_OPT_REQUIRED, &dir, "DIR",
		 "the image directory", 0, 0, NULL},
		{"leave-running", 'l', HAUL_OPT_FLAG, 0, &leave, NULL,
		 "the process carries on after its checkpoint", 0, 0, NULL},
		{"cgroup", 'c', HAUL_OPT_PATH, 0, &cgroup, "PATH",
		 "every process of this cgroup (one tree), instead of PID", 0, 0, NULL},
		{"no-network-lock", 0, HAUL_OPT_FLAG, 0, &no_lock, NULL,
		 "take no network lock (hosts without nf_tables): a\npeer that sends before the "
		 "restore resets its\nconnection, which comes back closed",
		 0, 0, NULL},
		HAUL_OPTS_EXTERNAL(&ext_fd, &ext_kind),
		{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL},
	};
	const struct haul_cmd_spec spec = {"checkpoint",
					   "PID|--cgroup PATH --images DIR [--leave-running]\n"
					   "                       [--no-network-lock]",
					   intro,
					   NULL,
					   opts,
					   0,
					   1,
					   false};
	struct rst_ckpt_stats st;
	struct haul_pid_lock lock;
	char why[PATH_MAX + 128];
	char *end;
	long pid;
	int c, ret;

	c = haul_opts_parse(&spec, argc, argv);
	if (c < 0)
		return haul_opts_exit(c);
	if (haul_external_apply(&ext_fd, &ext_kind))
		return 2;
	if ((c >= argc) == !cgroup) {
		pr_err("name the process: a PID or --cgroup PATH, one of them");
		return 2;
	}
	if (cgroup) {
		pid_t root;

		if (haul_cgroup_tree_root(cgroup, &root))
			return 1;
		pid = root;
	} else {
		pid = strtol(argv[c], &end, 10);
		if (*end || pid <= 0) {
			pr_err("'%s' is not a PID", argv[c]);
			return 2;
		}
	}
	ret = haul_pid_lock(pid, "checkpointed", &lock, why, sizeof(why));
	if (ret) {
		pr_err("cannot checkpoint pid %ld: %s", pid, why);
		return 1;
	}
	/* the survivor that undoes injected calls if we die before the commit (injlog.h) */
	ret = injlog_open(getenv("HAUL_FAULT"), haul_reg_dir());
	if (ret) {
		pr_err_r(ret, "cannot start the injection journal for pid %ld", pid);
		haul_pid_unlock(&lock);
		return 1;
	}
	/* locks of images removed since, gone; this one's taken at the stop (ckpt_netlock.c) */
	haul_netlock_reap();
	if (!no_lock)
		haul_ckpt_netlock_use();
	/* if we die, the survivor takes its connections out of repair mode before it runs */
	rst_tcp_hold_watch(injlog_tcp_held, NULL);
	ret = haul_checkpoint_images(pid, dir, leave, getenv("HAUL_FAULT"), &st);
	rst_tcp_hold_watch(NULL, NULL);
	haul_ckpt_netlock_done();
	injlog_close();
	haul_pid_unlock(&lock);
	if (ret)
		return 1;
	printf("checkpointed pid %ld into %s/%s: %llu pages, %llu zero, stopped %.1f ms%s\n", pid,
	       dir, st.id, (unsigned long long)st.pages, (unsigned long long)st.zero_pages,
	       st.frozen_ns / 1e6, leave ? " (left running)" : "");
	return 0;
}
