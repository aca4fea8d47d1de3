/* cmd_check.c - `haul check`: placeholder until its owner lands it. */
#define LOG_PREFIX "check: "
#include <errno.h>

#include "common/log.h"
#include "haul/haul.h"

int haul_cmd_check(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	pr_err("'haul check' is not available in this build");
	return 2;
}
