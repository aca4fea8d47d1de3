/* cmd_pageserver.c - `haul pageserver`: placeholder until its owner lands it. */
#define LOG_PREFIX "pageserver: "
#include <errno.h>

#include "common/log.h"
#include "haul/haul.h"

int haul_cmd_pageserver(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	pr_err("'haul pageserver' is not available in this build");
	return 2;
}
