/* cmd_track.c - `haul track`: placeholder until its owner lands it. */
#define LOG_PREFIX "track: "
#include <errno.h>

#include "common/log.h"
#include "haul/haul.h"

int haul_cmd_track(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	pr_err("'haul track' is not available in this build");
	return 2;
}
