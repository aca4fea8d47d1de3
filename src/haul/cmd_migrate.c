/* cmd_migrate.c - `haul migrate`: placeholder until its owner lands it. */
#define LOG_PREFIX "migrate: "
#include <errno.h>

#include "common/log.h"
#include "haul/haul.h"

int haul_cmd_migrate(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	pr_err("'haul migrate' is not available in this build");
	return 2;
}
