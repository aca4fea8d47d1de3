/*
 * converge.c - the pre-copy convergence model: after each round, is it time
 * to switch over, and does the workload need throttling to get there?
 *
 * Measured each round:
 *   bandwidth   bytes of pages sent / time to send them, summed over rounds
 *               (the big first round dominates: the streaming rate), plus a
 *               per-round latency (the shortest round seen: the cost of a
 *               round trip and the server's round barrier);
 *   dirty rate  bytes the scan found / time since the previous scan (the
 *               latest round only, so a throttle shows at once).
 * Expected downtime if we froze now:
 *   fixed (freeze + seize + state + restore) + latency
 *   + max(dirty rate * time since this round's scan, this round's bytes) / bandwidth
 * since everything written since the last scan must be sent frozen, and a
 * hot working set is rewritten whole however short the interval.
 * Switch over when that is within the target.  When a round does not shrink
 * below HAUL_MIG_SHRINK_PCT (50%) of the previous one, or the dirty rate already
 * exceeds the bandwidth (then none will: react at the first measured rate),
 * unless the rounds shrink steadily by under HAUL_MIG_CONVERGE_PCT and the
 * rate says they reach the target in a few more (converges_alone: a writer
 * paced by time gains nothing from a throttle but its stalls),
 * ask for a CPU throttle: 20%, then +10% every round
 * that still does not shrink, up to 99% (QEMU's auto-converge steps, but
 * decided after every round instead of every other sync), or at once the
 * throttle that the measured rate says is needed when that is more.  At --max-rounds,
 * switch over anyway and let the caller report the cost; and when what is
 * left to send costs under HAUL_MIG_FLOOR_MS or HAUL_MIG_FLOOR_PCT of the
 * fixed costs, switch even over the target (the fixed costs alone exceed
 * it: more rounds and throttling would gain little).  And when a round
 * finds HAUL_MIG_HOT_PCT (75%) or more of what the one before found in a
 * quarter of its interval or less, or a throttled round as much of what the
 * last one without a throttle found, the set is hot (rewritten whole in any
 * round, however short or slowed down): switch if the expected downtime is
 * at most HAUL_MIG_HOT_OVER_PCT (25%) over the target, since a throttle
 * would buy no more than that and add stalls the clients feel.  Further
 * over, the throttle steps on: a CPU-bound writer does slow down.
 *
 * A throttle is applied as a cpu.max quota per period (haul_conv_cpu_max).
 * What a client feels is the stretch of each period in which the quota is
 * spent and the workload does not run; so the period is chosen for that
 * stretch to stay under HAUL_MIG_THROTTLE_STALL_US (a slowdown, not stalls)
 * where the kernel's 1 ms minimum quota allows it (up to 80% of one busy
 * thread).  A deeper throttle needs longer stretches; they may grow up to
 * the downtime target (a throttle that stalls longer than the switchover it
 * buys is no gain), beyond which the throttle is lowered.  Where the cgroup2
 * freezer is at hand, such a throttle is instead a duty cycle of it
 * (haul_conv_duty, duty.c): 3 ms frozen, then running, up to 80%; deeper,
 * longer freezes, up to the downtime target too, but shorter than cpu.max's.
 * Pure arithmetic: no I/O, unit-tested in tests/unit/mig_converge.c.
 */
#include <math.h>
#include <stddef.h>

#include "common/policy.h"
#include "haul/haul_int.h"

void haul_conv_init(struct haul_conv *c, double target_ms, double fixed_ms, unsigned max_rounds)
{
	*c = (struct haul_conv){
		.target_ms = target_ms,
		.fixed_ms = fixed_ms,
		.max_rounds = max_rounds,
		.latency_s = -1,
	};
}

double haul_conv_downtime_ms(const struct haul_conv *c, double bytes)
{
	double send = c->bw > 0 ? bytes / c->bw : 0;

	return c->fixed_ms + ((c->latency_s > 0 ? c->latency_s : 0) + send) * 1e3;
}

/*
 * Rounds that shrink steadily but by less than half: at a dirty rate r over
 * a link of bandwidth b with a round latency L, each round finds d' = r (L +
 * d / b), which tends to d* = r L / (1 - r / b) by the ratio q = r / b.  They
 * reach the bytes that fit the target, d_t, on their own when d_t is clear of
 * d* and ln((d_t - d*) / (d - d*)) / ln q rounds are few; and only while this
 * round did shrink by about q (a hot set does not).
 */
static bool converges_alone(const struct haul_conv *c, uint64_t dirty)
{
	double q, lat, fixed_pt, fit, n;

	if (c->bw <= 0 || c->dirty_rate <= 0 || !c->prev_dirty ||
	    (double)dirty * 100 >= (double)c->prev_dirty * HAUL_MIG_CONVERGE_PCT)
		return false;
	q = c->dirty_rate / c->bw;
	if (q * 100 >= HAUL_MIG_CONVERGE_PCT)
		return false;
	lat = c->latency_s > 0 ? c->latency_s : 0;
	fixed_pt = c->dirty_rate * lat / (1 - q);
	fit = ((c->target_ms - c->fixed_ms) / 1e3 - lat) * c->bw;
	/* a margin, since the rounds only approach d* */
	if (fit <= fixed_pt * 1.25)
		return false;
	if (dirty <= fit)
		return true;
	n = log((fit - fixed_pt) / ((double)dirty - fixed_pt)) / log(q);
	return n <= HAUL_MIG_CONVERGE_ROUNDS && c->rounds + n < c->max_rounds;
}

enum haul_conv_action haul_conv_update(struct haul_conv *c, const struct haul_conv_sample *s)
{
	double final, floor;
	unsigned step;
	bool shrank, hot;

	c->rounds++;
	if (s->send_s > 0) {
		c->sum_bytes += s->dirty_bytes;
		c->sum_send_s += s->send_s;
		if (c->sum_send_s > 0 && c->sum_bytes > 0)
			c->bw = c->sum_bytes / c->sum_send_s;
	}
	if (c->rounds > 1 && s->send_s > 0) {
		/* a round's time, less what its bytes cost at the streaming rate */
		double lat = s->send_s - (c->bw > 0 ? s->dirty_bytes / c->bw : 0);

		if (lat < 0)
			lat = 0;
		if (c->latency_s < 0 || lat < c->latency_s)
			c->latency_s = lat;
	}
	/* round 1 sends every populated page: not a rate */
	if (c->rounds > 1 && s->scan_gap_s > 0)
		c->dirty_rate = s->dirty_bytes / s->scan_gap_s;
	/*
	 * What the frozen round will find: at least the rate times the time since
	 * the scan, and, because a hot set saturates (a longer interval finds
	 * hardly more pages), no less than this round found.  For a converging
	 * workload this costs one extra, small round; for a hot set it is exact.
	 */
	final = c->dirty_rate * s->since_scan_s;
	if (c->rounds > 1 && final < s->dirty_bytes)
		final = s->dirty_bytes;
	c->expected_ms = haul_conv_downtime_ms(c, final);

	/*
	 * A hot set: as much found after a quarter of the interval or less (no
	 * rate does that), or under a throttle as without one.
	 */
	hot = c->rounds > 2 && s->scan_gap_s > 0 && s->scan_gap_s * 4 <= c->prev_gap_s &&
	      s->dirty_bytes * 100 >= c->prev_dirty * HAUL_MIG_HOT_PCT;
	hot |= c->rounds > 1 && c->throttle_pct && c->free_dirty &&
	       s->dirty_bytes * 100 >= c->free_dirty * HAUL_MIG_HOT_PCT;
	c->prev_gap_s = s->scan_gap_s;
	shrank = c->rounds <= 2 || s->dirty_bytes * 100 < c->prev_dirty * HAUL_MIG_SHRINK_PCT;
	if (!shrank && c->rounds > 2 && converges_alone(c, s->dirty_bytes))
		shrank = true;
	/* dirtier than the link: no round can shrink, so do not wait for one to show it */
	if (c->rounds >= 2 && c->bw > 0 && c->dirty_rate >= c->bw)
		shrank = false;
	c->shrinking =
		c->rounds > 2 && s->dirty_bytes * 100 < c->prev_dirty * HAUL_MIG_CONVERGE_PCT;
	c->prev_dirty = s->dirty_bytes;
	if (c->rounds > 1 && c->expected_ms <= c->target_ms)
		return HAUL_CONV_SWITCH;
	/* the fixed costs alone exceed the target: more rounds cannot help */
	floor = c->fixed_ms * HAUL_MIG_FLOOR_PCT / 100;
	if (floor < HAUL_MIG_FLOOR_MS)
		floor = HAUL_MIG_FLOOR_MS;
	if (c->rounds > 1 && c->expected_ms - haul_conv_downtime_ms(c, 0) <= floor)
		return HAUL_CONV_SWITCH_FLOOR;
	/*
	 * A hot set is rewritten whole within any round however short or slowed
	 * down: a throttle would buy little and stall the workload (what its
	 * clients feel); switch when the expected downtime is at most
	 * HAUL_MIG_HOT_OVER_PCT over the target (further over, a CPU-bound
	 * writer does slow down under the throttle).
	 */
	if (hot && c->expected_ms * 100 <= c->target_ms * (100 + HAUL_MIG_HOT_OVER_PCT))
		return HAUL_CONV_SWITCH_HOT;
	if (!c->throttle_pct)
		c->free_dirty = s->dirty_bytes;
	if (c->rounds >= c->max_rounds)
		return HAUL_CONV_SWITCH_LIMIT;
	if (shrank) {
		c->stalls = 0;
		return HAUL_CONV_CONTINUE;
	}
	c->stalls++;
	if (c->throttle_pct >= HAUL_MIG_THROTTLE_MAX)
		return HAUL_CONV_CONTINUE;
	step = c->throttle_pct ? c->throttle_pct + HAUL_MIG_THROTTLE_STEP
			       : HAUL_MIG_THROTTLE_INITIAL;
	/*
	 * Jump straight to the throttle that brings the dirty rate under the
	 * shrink threshold, if that is more than a step (rounds of a large
	 * process last seconds: one step per round is too slow).  The rate
	 * scales with the CPU share left: unthrottled = rate / (1 - throttle).
	 */
	if (c->bw > 0 && c->dirty_rate > 0) {
		double free_rate = c->dirty_rate * 100 / (100 - c->throttle_pct);
		double need = 100 * (1 - c->bw * HAUL_MIG_SHRINK_PCT / 100 / free_rate);

		if (need > step)
			step = (unsigned)need;
	}
	c->throttle_pct = step;
	if (c->throttle_pct > HAUL_MIG_THROTTLE_MAX)
		c->throttle_pct = HAUL_MIG_THROTTLE_MAX;
	return HAUL_CONV_THROTTLE;
}

/*
 * The workload uses @cpus CPUs; a throttle of @pct leaves it f = cpus * (1 -
 * pct) CPUs.  With k = max(1, cpus) threads sharing the quota, each runs a
 * fraction g = f / k of each period and waits period * (1 - g) once the
 * quota is spent: S = period * (1 - g).  The quota f * period must be at
 * least the kernel's minimum m, so S >= m (1 - g) / (g k): a deep throttle
 * needs longer stretches.  S is the preferred HAUL_MIG_THROTTLE_STALL_US
 * when that suffices, else what the throttle needs, up to @stall_max_us;
 * beyond that the throttle is lowered to g = m / (m + k S).
 */
unsigned haul_conv_cpu_max(unsigned pct, double cpus, long stall_max_us, long *quota_us,
			   long *period_us)
{
	const double qmin = HAUL_MIG_THROTTLE_MIN_QUOTA_US;
	double k, g, S = HAUL_MIG_THROTTLE_STALL_US, need, period, quota, applied;

	if (cpus < 0.05)
		cpus = 0.05;
	if (pct > HAUL_MIG_THROTTLE_MAX)
		pct = HAUL_MIG_THROTTLE_MAX;
	if (stall_max_us < S)
		stall_max_us = (long)S;
	k = cpus > 1 ? cpus : 1;
	g = cpus * (100 - pct) / 100 / k;
	need = g > 0 ? qmin * (1 - g) / (g * k) : stall_max_us;
	if (need > S)
		S = need < stall_max_us ? need : stall_max_us;
	if (g < qmin / (qmin + k * S))
		g = qmin / (qmin + k * S);
	period = g < 1 ? S / (1 - g) : HAUL_MIG_THROTTLE_MAX_PERIOD_US;
	if (period > HAUL_MIG_THROTTLE_MAX_PERIOD_US)
		period = HAUL_MIG_THROTTLE_MAX_PERIOD_US;
	if (period < qmin)
		period = qmin;
	quota = g * k * period;
	if (quota < qmin)
		quota = qmin;
	*period_us = (long)(period + 0.5);
	*quota_us = (long)(quota + 0.5);
	applied = 100 * (1 - g * k / cpus) + 1e-6;
	if (applied < 0)
		applied = 0;
	return pct < applied ? pct : (unsigned)applied;
}

double haul_conv_throttle_stall_ms(long quota_us, long period_us, double cpus)
{
	double k = cpus > 1 ? cpus : 1, wait = period_us - quota_us / k;

	return wait > 0 ? wait / 1e3 : 0;
}

/*
 * The freezer has no minimum quota: frozen F, running R, the workload keeps
 * R / (F + R) of its time whatever CPUs it uses.  F is 3 ms and R = F (100 -
 * pct) / pct, down to the shortest run a thawed thread reliably gets a CPU
 * in; deeper, R stays at that and F grows, up to @stall_max_us (the downtime
 * target, as for cpu.max: a longer stop than the switchover it buys is no
 * gain), beyond which the throttle is lowered.
 */
unsigned haul_conv_duty(unsigned pct, long stall_max_us, long *frozen_us, long *run_us)
{
	double F = HAUL_MIG_DUTY_FROZEN_US, R, fmax, applied;

	if (pct > HAUL_MIG_THROTTLE_MAX)
		pct = HAUL_MIG_THROTTLE_MAX;
	if (!pct)
		pct = 1;
	R = F * (100 - pct) / pct;
	if (R < HAUL_MIG_DUTY_MIN_RUN_US) {
		/* the thaw's lag keeps the 4 ms target's margin whatever F is */
		fmax = stall_max_us - (HAUL_MIG_THROTTLE_STALL_US - HAUL_MIG_DUTY_FROZEN_US);
		R = HAUL_MIG_DUTY_MIN_RUN_US;
		F = R * pct / (100 - pct);
		if (F > fmax)
			F = fmax;
		if (F < HAUL_MIG_DUTY_FROZEN_US)
			F = HAUL_MIG_DUTY_FROZEN_US;
	}
	*frozen_us = (long)(F + 0.5);
	*run_us = (long)(R + 0.5);
	applied = 100.0 * *frozen_us / (*frozen_us + *run_us) + 0.5;
	return pct < applied ? pct : (unsigned)applied;
}

const char *haul_conv_action_name(enum haul_conv_action a)
{
	switch (a) {
	case HAUL_CONV_CONTINUE:
		return "continue";
	case HAUL_CONV_THROTTLE:
		return "throttle";
	case HAUL_CONV_SWITCH:
		return "switch";
	case HAUL_CONV_SWITCH_LIMIT:
		return "switch at round limit";
	case HAUL_CONV_SWITCH_FLOOR:
		return "switch at the fixed-cost floor";
	case HAUL_CONV_SWITCH_HOT:
		return "switch: a hot set the throttle does not shrink";
	}
	return "?";
}

bool haul_conv_hybrid_goes_on(struct haul_conv *c, enum haul_conv_action a)
{
	if (a != HAUL_CONV_THROTTLE || !c->shrinking)
		return false;
	c->throttle_pct = 0;
	return true;
}
