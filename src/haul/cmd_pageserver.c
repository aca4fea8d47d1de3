/*
 * cmd_pageserver.c - `haul pageserver`: the target-side daemon.
 *
 * Parses the options, loads the key, starts the page server (src/pageserver)
 * with the restore sink from src/restore for live sessions, and prints
 * "listening on ADDR:PORT" on stdout once bound (scripts and tests wait for
 * that line).  Everything else is the server's.
 */
#define LOG_PREFIX "pageserver: "
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/ctr_int.h"
#include "haul/haul.h"
#include "haul/haul_int.h"
#include "haul/netlock.h"
#include "pageserver/pageserver.h"
#include "restore/restore.h"

static const char intro[] =
	"Receive processes from `haul migrate`: each migration is a live session,\n"
	"restored here as its pages arrive (several at once, even of the same PID:\n"
	"sessions are told apart by an id each migration picks).  Clients of the\n"
	"page-server protocol (lazy_bench, the tests) may also store pages here and\n"
	"fetch them back for lazy restore.  Durations take ms, s or m (a bare\n"
	"number is milliseconds).\n";

int haul_cmd_pageserver(int argc, char **argv)
{
	struct ps_server_opts o = {0};
	const char *key = NULL, *on_switch = NULL;
	double stall = PS_STALL_TIMEOUT_MS, idle = PS_IDLE_TIMEOUT_MS;
	struct haul_opt_list ext_fd = {0}, ext_kind = {0};
	const char *containers = NULL, *runtime = "runc", *rt_root = NULL, *files_listen = NULL;
	const char *podman = NULL;
	const struct haul_opt opts[] = {
		{"listen", 0, HAUL_OPT_HOSTPORT, HAUL_OPT_REQUIRED, &o.listen, "ADDR:PORT",
		 "address to listen on (port 0: any free port);\nprints \"listening on "
		 "ADDR:PORT\" once bound",
		 0, 0, NULL},
		{"key", 0, HAUL_OPT_PATH, HAUL_OPT_REQUIRED, &key, "FILE",
		 "shared secret, at least 32 random bytes, mode 0600, the\nsame file on both "
		 "sides (make one: head -c 32\n/dev/urandom > FILE; chmod 600 FILE).  The key "
		 "is\nroot-equivalent here: its holder can restore any\nprocess with any uid "
		 "and memory, and create root-owned\nsetuid files at paths it chooses.  Guard "
		 "it like root's\npassword.",
		 0, 0, NULL},
		{"images", 0, HAUL_OPT_PATH, 0, &o.images_dir, "DIR",
		 "keep stored pages in DIR (crash-safe image format),\nand load the images "
		 "already there; default: memory",
		 0, 0, NULL},
		{"encrypt", 0, HAUL_OPT_FLAG, 0, &o.require_encrypt, NULL,
		 "require clients to encrypt the page stream", 0, 0, NULL},
		{"timeout", 0, HAUL_OPT_DURATION, HAUL_OPT_DEFAULT, &stall, "TIME",
		 "drop a peer that has not authenticated, or stalls\nmid-frame, for this long", 1,
		 24 * HAUL_OPT_HOUR_MS, NULL},
		{"idle-timeout", 0, HAUL_OPT_DURATION, HAUL_OPT_DEFAULT, &idle, "TIME",
		 "close an authenticated connection that sent nothing for\nthis long (0: never); "
		 "lazy-restore and post-copy\nsessions wait on faults and are exempt",
		 0, 24 * HAUL_OPT_HOUR_MS, NULL},
		{"once", 0, HAUL_OPT_FLAG, 0, &o.once, NULL, "exit after the first session ends", 0,
		 0, NULL},
		{"on-switch", 0, HAUL_OPT_STR, 0, &on_switch, "CMD",
		 "run CMD (sh -c) here at each migration's switch:\nHAUL_SWITCH_PHASE=target-prepare "
		 "before the process\nis restored (failure refuses the restore: the source\nrolls "
		 "back), target-up once it runs, target-abort\nwhen it was not committed; with "
		 "HAUL_SIDE, HAUL_PID,\nHAUL_MIGRATION_ID, HAUL_ADDRESSES",
		 0, 0, NULL},
		{"containers", 0, HAUL_OPT_PATH, 0, &containers, "DIR",
		 "receive the runc containers haul migrate moves\n(haul-migrate(1)): their "
		 "files into DIR/<migration>/\n(the file channel, on --files-listen), restored "
		 "with\n'runc restore' under the same ID",
		 0, 0, NULL},
		{"runtime", 0, HAUL_OPT_STR, HAUL_OPT_DEFAULT, &runtime, "NAME",
		 "the runtime that restores containers (runc)", 0, 0, NULL},
		{"root", 0, HAUL_OPT_PATH, 0, &rt_root, "DIR",
		 "its state directory (runc --root; default runc's own)", 0, 0, NULL},
		{"podman", 0, HAUL_OPT_STR, 0, &podman, "CMD",
		 "restore podman's containers (haul migrate --podman)\nwith CMD (default "
		 "podman; a wrapper may add its\nglobal flags)",
		 0, 0, NULL},
		{"files-listen", 0, HAUL_OPT_HOSTPORT, 0, &files_listen, "ADDR:PORT",
		 "the file channel (default: --listen's address, its\nport + 1)", 1, 65535, NULL},
		HAUL_OPTS_EXTERNAL(&ext_fd, &ext_kind),
		{NULL, 0, 0, 0, NULL, NULL, NULL, 0, 0, NULL},
	};
	const struct haul_cmd_spec spec = {
		"pageserver", "--listen ADDR:PORT --key FILE [options]", intro, NULL, opts, 0, 0,
		false};
	struct ps_server *s;
	const char *fault;
	int ret;

	ret = haul_opts_parse_external(&spec, argc, argv, &ext_fd, &ext_kind);
	if (ret < 0)
		return haul_opts_exit(ret);
	o.stall_timeout_ms = (int)stall;
	o.idle_timeout_ms = idle > 0 && idle < 1 ? 1 : idle ? (int)idle : -1; /* 0: never */
	ret = ps_key_load(key, o.key);
	if (ret)
		return 1;
	/* the restore sink, with the network lock and the address move around it */
	o.sink = &haul_switch_sink;
	o.sink_arg = (void *)on_switch;
	/* network locks left by a page server or haul that died with its survivor */
	haul_netlock_reap();
	/* what this target restores, announced at session open (fd_caps.c) */
	fault = getenv("HAUL_FAULT");
	o.ncaps = rst_resource_caps(
		fault && !strncmp(fault, "caps-without:", 13) ? fault + 13 : NULL, &o.caps);
	ret = ps_server_new(&o, &s);
	if (ret) {
		if (ret == -EADDRINUSE)
			pr_err("something listens on %s already (another page server?): stop it "
			       "(ss -ltnp names it) or pick another --listen port",
			       o.listen);
		else
			pr_err_r(ret, "cannot start the page server on %s", o.listen);
		return 1;
	}
	if (containers) {
		char fl[160];
		const char *colon = strrchr(o.listen, ':');

		if (strcmp(runtime, "runc")) {
			pr_err("--runtime %s: only runc is supported", runtime);
			ps_server_free(s);
			return 2;
		}
		snprintf(fl, sizeof(fl), "%.*s:%d", (int)(colon - o.listen), o.listen,
			 ps_server_port(s) + 1);
		ret = haul_ctr_target_start(containers, files_listen ? files_listen : fl, o.key,
					    runtime, rt_root);
		if (ret) {
			ps_server_free(s);
			return 1;
		}
		if (podman)
			snprintf(haul_ctr_target.podman, sizeof(haul_ctr_target.podman), "%s",
				 podman);
	}
	{
		char shown[128];
		const char *colon = strrchr(o.listen, ':');

		snprintf(shown, sizeof(shown), "%.*s:%d", (int)(colon - o.listen), o.listen,
			 ps_server_port(s));
		printf("listening on %s\n", shown);
		fflush(stdout);
		pr_info("listening on %s%s%s%s", shown, o.images_dir ? ", images in " : "",
			o.images_dir ? o.images_dir : "",
			o.require_encrypt ? ", encryption required" : "");
	}
	ret = ps_server_run(s);
	ps_server_free(s);
	return ret ? 1 : 0;
}
