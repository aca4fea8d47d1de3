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
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/policy.h"
#include "haul/haul.h"
#include "pageserver/pageserver.h"
#include "restore/restore.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: haul pageserver --listen ADDR:PORT --key FILE [options]\n"
		"\n"
		"Receive processes from `haul migrate`: each migration is a live session,\n"
		"restored here as its pages arrive (several at once, even of the same PID:\n"
		"sessions are told apart by an id each migration picks).  Clients of the\n"
		"page-server protocol (lazy_bench, the tests) may also store pages here and\n"
		"fetch them back for lazy restore.\n"
		"\n"
		"  --listen ADDR:PORT  address to listen on (port 0: any free port);\n"
		"                      prints \"listening on ADDR:PORT\" once bound\n"
		"  --key FILE          shared secret, at least 32 random bytes, mode 0600, the\n"
		"                      same file on both sides (make one: head -c 32\n"
		"                      /dev/urandom > FILE; chmod 600 FILE).  The key is\n"
		"                      root-equivalent here: its holder can restore any\n"
		"                      process with any uid and memory, and create root-owned\n"
		"                      setuid files at paths it chooses.  Guard it like root's\n"
		"                      password.\n"
		"  --images DIR        keep stored pages in DIR (crash-safe image format),\n"
		"                      and load the images already there; default: memory\n"
		"  --encrypt           require clients to encrypt the page stream\n"
		"  --timeout MS        drop a peer that has not authenticated, or stalls\n"
		"                      mid-frame, for MS milliseconds (default %d)\n"
		"  --idle-timeout MS   close an authenticated connection that sent nothing for\n"
		"                      MS milliseconds (default %d; 0: never); lazy-restore\n"
		"                      and post-copy sessions wait on faults and are exempt\n"
		"  --once              exit after the first session ends\n"
		"  -h, --help          this help\n",
		PS_STALL_TIMEOUT_MS, PS_IDLE_TIMEOUT_MS);
}

int haul_cmd_pageserver(int argc, char **argv)
{
	static const struct option opts[] = {
		{"listen", required_argument, NULL, 'l'},
		{"key", required_argument, NULL, 'k'},
		{"images", required_argument, NULL, 'i'},
		{"encrypt", no_argument, NULL, 'e'},
		{"timeout", required_argument, NULL, 't'},
		{"once", no_argument, NULL, 'o'},
		{"idle-timeout", required_argument, NULL, 'I'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	struct ps_server_opts o = {0};
	const char *key = NULL;
	struct ps_server *s;
	char *end;
	int c, ret;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'l':
			o.listen = optarg;
			break;
		case 'k':
			key = optarg;
			break;
		case 'i':
			o.images_dir = optarg;
			break;
		case 'e':
			o.require_encrypt = true;
			break;
		case 't':
			o.stall_timeout_ms = (int)strtol(optarg, &end, 10);
			if (*end || o.stall_timeout_ms <= 0) {
				pr_err("--timeout '%s' is not a positive number of milliseconds",
				       optarg);
				return 2;
			}
			break;
		case 'I':
			o.idle_timeout_ms = (int)strtol(optarg, &end, 10);
			if (*end || !*optarg || o.idle_timeout_ms < 0) {
				pr_err("--idle-timeout '%s' is not a number of milliseconds (0: never)",
				       optarg);
				return 2;
			}
			if (!o.idle_timeout_ms)
				o.idle_timeout_ms = -1;
			break;
		case 'o':
			o.once = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc || !o.listen || !key) {
		pr_err("--listen and --key are required; see 'haul pageserver --help'");
		return 2;
	}
	ret = ps_key_load(key, o.key);
	if (ret)
		return 1;
	o.sink = &rst_live_sink;
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
