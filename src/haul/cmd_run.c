/* cmd_run.c - `haul run`: placeholder until its owner lands it. */
#define LOG_PREFIX "run: "
#include <errno.h>

#include "common/log.h"
#include "haul/haul.h"

int haul_cmd_run(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	pr_err("'haul run' is not available in this build");
	return 2;
}
