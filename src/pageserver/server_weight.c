/*
 * server_weight.c - the page server yields the CPU to the processes being
 * migrated while they still run at their source.
 *
 * On a host that also runs workloads (or, in the tests, the source itself),
 * receiving and ingesting pre-copy rounds competes with them for the CPUs.
 * A source run with --precopy-nice N asks, in each RoundBegin, that the
 * target take nice +N while its process runs (cpuweight.c); the final round,
 * sent with the process frozen, asks for none, so the final round, the state
 * and the resume run at full weight.  One process serves every session:
 * it runs at the least nice any live session asks for, so one migration's
 * downtime is never done at another's lowered weight.  A new session's
 * restore stub is forked at full weight (server_session.c), since a child
 * inherits its parent's nice.
 */
#define LOG_PREFIX "ps: "
#include <stdbool.h>

#include "common/cpuweight.h"
#include "pageserver/server_int.h"

void ps_server_weigh(struct ps_server *s)
{
	uint32_t nice = 0;
	bool any = false;

	for (const struct ps_session *x = s->sessions; x; x = x->next) {
		if (x->failed || x->committed)
			continue;
		if (!any || x->nice < nice)
			nice = x->nice;
		any = true;
	}
	haul_cpuweight_set(&s->weight, any ? (int)nice : 0);
}
