/*
 * log.c - the one place messages are formatted and written.
 *
 * Every message goes to stderr as "haul: <module prefix><text>", with "error: " or
 * "warning: " for those levels, in a single write(2) so that lines from threads and
 * forked children never interleave.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/log.h"

int log_level = LOG_INFO;
static const char *log_prog = "haul";
static _Thread_local char err_first[1024];
static _Thread_local bool err_armed;

void log_init(const char *progname)
{
	const char *env = getenv("HAUL_LOG");

	if (progname)
		log_prog = progname;
	if (!env)
		return;
	if (!strcmp(env, "debug"))
		log_level = LOG_DEBUG;
	else if (!strcmp(env, "info"))
		log_level = LOG_INFO;
	else if (!strcmp(env, "warn"))
		log_level = LOG_WARN;
	else if (!strcmp(env, "err"))
		log_level = LOG_ERR;
}

void log_printf(int level, const char *fmt, ...)
{
	static const char *const tag[] = {"error: ", "warning: ", "", "debug: "};
	char buf[2048];
	int saved = errno, n;
	va_list ap;

	if (level > log_level)
		return;
	n = snprintf(buf, sizeof(buf), "%s: %s", log_prog, tag[level]);
	va_start(ap, fmt);
	n += vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(buf)) {
		n = sizeof(buf) - 1;
		buf[n - 1] = '\n';
	}
	if (write(STDERR_FILENO, buf, n) < 0) {
		/* nowhere left to report it */
	}
	if (level == LOG_ERR && err_armed && !err_first[0]) {
		size_t skip = strlen(log_prog) + 2 + strlen(tag[LOG_ERR]);

		snprintf(err_first, sizeof(err_first), "%.*s", (int)(n - skip - 1), buf + skip);
	}
	errno = saved;
}

void log_err_mark(void)
{
	err_first[0] = 0;
	err_armed = true;
}

const char *log_err_first(void)
{
	return err_first;
}
