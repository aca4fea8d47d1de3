/*
 * events.c - `haul migrate --events FD|FILE`: one JSON object per line for
 * an orchestrator (Incus, a Kubernetes operator) to follow a migration
 * without parsing the human-readable lines on stderr.
 *
 * Each event is one line, written with a single write(2) as soon as it
 * happens (no stdio buffer: a reader sees "frozen" while the process is
 * frozen, not at exit).  The sequence, documented in haul-migrate(1):
 *   started, round (one per round, the frozen one with "final": true),
 *   frozen, resumed, [memory_complete: post-copy], and exactly one of
 *   committed, rolled_back, in_doubt, lost.
 * Every object has "event", "time" (Unix seconds, ms precision) and "pid".
 * The end event mirrors the exit status (0, 1, 3, 4) so a reader never
 * needs both.  A destination that stops taking lines (EPIPE, disk full) is
 * warned about once and dropped: events never change how a migration goes.
 */
#define LOG_PREFIX "events: "
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"
#include "haul/haul_int.h"

struct haul_events {
	int fd;
	bool own;    /* opened here from a path: closed by haul_events_free() */
	bool broken; /* a write failed: stop writing */
	pid_t pid;
	char where[64]; /* "fd 3" or the path, for messages */
};

int haul_events_open(const char *spec, pid_t pid, struct haul_events **out)
{
	struct haul_events *ev;
	size_t digits = strspn(spec, "0123456789");

	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	ev->pid = pid;
	if (spec[0] && !spec[digits]) {
		ev->fd = atoi(spec);
		snprintf(ev->where, sizeof(ev->where), "fd %d", ev->fd);
		if (fcntl(ev->fd, F_GETFL) < 0 ||
		    (fcntl(ev->fd, F_GETFL) & O_ACCMODE) == O_RDONLY) {
			pr_err("--events %s: fd %d is not open for writing; open it in the shell "
			       "(e.g. 'haul migrate ... --events 3 3>events.jsonl') or give a "
			       "file path ('./%s' for a file of that name)",
			       spec, ev->fd, spec);
			free(ev);
			return -EBADF;
		}
	} else {
		ev->fd = open(spec, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
		if (ev->fd < 0) {
			int ret = -errno;

			pr_err_r(ret, "cannot open events file '%s'; give a writable path or an fd",
				 spec);
			free(ev);
			return ret;
		}
		ev->own = true;
		snprintf(ev->where, sizeof(ev->where), "%.63s", spec);
	}
	*out = ev;
	return 0;
}

void haul_events_free(struct haul_events *ev)
{
	if (!ev)
		return;
	if (ev->own)
		close(ev->fd);
	free(ev);
}

/* Append @s to @buf at *@o as a JSON string. */
static void put_str(char *buf, size_t len, size_t *o, const char *s)
{
	if (*o < len)
		buf[(*o)++] = '"';
	for (; s && *s && *o + 7 < len; s++) {
		if (*s == '"' || *s == '\\')
			*o += snprintf(buf + *o, len - *o, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			*o += snprintf(buf + *o, len - *o, "\\u%04x", *s);
		else
			buf[(*o)++] = *s;
	}
	if (*o < len)
		buf[(*o)++] = '"';
}

/*
 * Write {"event":@name,"time":T,"pid":P <fields>}: @fmt adds the fields
 * (each starting with a comma), then @str_key/@str_val one escaped string
 * (NULL: none).  One write; a line longer than the buffer is cut to a
 * closing brace (never happens with these fields).
 */
__attribute__((format(printf, 5, 6))) static void emit(struct haul_events *ev, const char *name,
						       const char *str_key, const char *str_val,
						       const char *fmt, ...)
{
	char buf[1024];
	struct timespec ts;
	size_t o;
	va_list ap;
	int n;

	if (!ev || ev->broken)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	n = snprintf(buf, sizeof(buf), "{\"event\":\"%s\",\"time\":%lld.%03ld,\"pid\":%d", name,
		     (long long)ts.tv_sec, ts.tv_nsec / 1000000, ev->pid);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	o = (size_t)n < sizeof(buf) - 128 ? (size_t)n : sizeof(buf) - 128;
	if (str_key) {
		o += snprintf(buf + o, sizeof(buf) - o, ",\"%s\":", str_key);
		put_str(buf, sizeof(buf) - 3, &o, str_val);
	}
	buf[o++] = '}';
	buf[o++] = '\n';
	for (size_t off = 0; off < o;) {
		ssize_t w = write(ev->fd, buf + off, o - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			pr_warn("cannot write events to %s (%s); the migration goes on without them",
				ev->where, w < 0 ? strerror(errno) : "short write");
			ev->broken = true;
			return;
		}
		off += w;
	}
}

void haul_events_started(struct haul_events *ev, const char *to, const char *mode,
			 double downtime_ms)
{
	char extra[160];

	snprintf(extra, sizeof(extra), ",\"mode\":\"%s\",\"downtime_target_ms\":%.3f", mode,
		 downtime_ms);
	emit(ev, "started", "to", to, "%s", extra);
}

void haul_events_round(struct haul_events *ev, const struct haul_mig_round *r)
{
	char procs[32] = "";

	/* a tree: the round is the sum over this many processes */
	if (r->nprocs)
		snprintf(procs, sizeof(procs), ",\"processes\":%u", r->nprocs);
	emit(ev, "round", NULL, NULL,
	     ",\"round\":%llu,\"pages\":%llu,\"bytes\":%llu,\"ms\":%.3f,\"mbps\":%.1f,"
	     "\"dirty_mbps\":%.1f,\"expected_downtime_ms\":%.3f,\"throttle_pct\":%u,\"final\":%s%s",
	     (unsigned long long)r->seq, (unsigned long long)r->pages,
	     (unsigned long long)r->wire_bytes, r->ms, r->mbps, r->dirty_mbps, r->expected_ms,
	     r->throttle_pct, r->final ? "true" : "false", procs);
}

void haul_events_frozen(struct haul_events *ev)
{
	emit(ev, "frozen", NULL, NULL, "%s", "");
}

void haul_events_resumed(struct haul_events *ev, pid_t target_pid, double downtime_ms)
{
	emit(ev, "resumed", NULL, NULL, ",\"target_pid\":%d,\"downtime_ms\":%.3f", target_pid,
	     downtime_ms);
}

void haul_events_memory_complete(struct haul_events *ev, double complete_ms, uint64_t served_pages)
{
	emit(ev, "memory_complete", NULL, NULL,
	     ",\"memory_complete_ms\":%.3f,\"served_pages\":%llu", complete_ms,
	     (unsigned long long)served_pages);
}

void haul_events_end(struct haul_events *ev, const struct haul_mig_result *r)
{
	const char *name = r->committed ? "committed"
			   : r->lost	? "lost"
			   : r->indoubt ? "in_doubt"
					: "rolled_back";
	int status = r->committed ? 0 : r->lost ? 4 : r->indoubt ? 3 : 1;
	char err[128];

	if (r->committed) {
		emit(ev, name, NULL, NULL,
		     ",\"exit_status\":0,\"target_pid\":%d,\"total_ms\":%.3f,\"downtime_ms\":%.3f,"
		     "\"rounds\":%u,\"bytes_sent\":%llu",
		     r->target_pid, r->total_ms, r->downtime_ms, r->rounds,
		     (unsigned long long)r->bytes_sent);
		return;
	}
	snprintf(err, sizeof(err), "%s", r->err ? strerror(-r->err) : "");
	emit(ev, name, "why", r->why[0] ? r->why : err,
	     ",\"exit_status\":%d,\"phase\":\"%s\",\"errno\":%d,\"total_ms\":%.3f", status,
	     r->phase ? r->phase : "", r->err < 0 ? -r->err : 0, r->total_ms);
}
