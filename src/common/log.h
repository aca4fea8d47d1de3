/*
 * log.h - messages for every module.
 *
 * Each .c file defines LOG_PREFIX ("ps: ", "trk: ", ...) before including
 * this header.  Messages are lowercase, name the subject first and carry no
 * final period: pr_err("cannot map %#lx-%#lx of pid %d: address in use", ...).
 * pr_err_r(ret, ...) appends strerror(-ret) for a -errno value.
 * Log once, where the failure is found; callers pass the error up.
 * Thread-safe: one write(2) per message.
 */
#ifndef HAUL_COMMON_LOG_H
#define HAUL_COMMON_LOG_H

#include <string.h>

enum log_level {
	LOG_ERR = 0,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG
};

#ifndef LOG_PREFIX
#define LOG_PREFIX ""
#endif

/* Messages above this level are dropped; HAUL_LOG=debug|info|warn|err sets it. */
extern int log_level;

void log_init(const char *progname);
void log_printf(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * The first error this thread logged since log_err_mark(), without the
 * "haul: error: " tag and the newline ("" when none): a server that refuses
 * a request names the cause its own log found, not only an errno.
 */
void log_err_mark(void);
const char *log_err_first(void);

#define pr_err(fmt, ...)  log_printf(LOG_ERR, LOG_PREFIX fmt "\n", ##__VA_ARGS__)
#define pr_warn(fmt, ...) log_printf(LOG_WARN, LOG_PREFIX fmt "\n", ##__VA_ARGS__)
#define pr_info(fmt, ...) log_printf(LOG_INFO, LOG_PREFIX fmt "\n", ##__VA_ARGS__)
#define pr_debug(fmt, ...)                                                                         \
	do {                                                                                       \
		if (log_level >= LOG_DEBUG)                                                        \
			log_printf(LOG_DEBUG, LOG_PREFIX fmt "\n", ##__VA_ARGS__);                 \
	} while (0)
#define pr_err_r(ret, fmt, ...)                                                                    \
	log_printf(LOG_ERR, LOG_PREFIX fmt ": %s\n", ##__VA_ARGS__, strerror(-(ret)))
#define pr_warn_r(ret, fmt, ...)                                                                   \
	log_printf(LOG_WARN, LOG_PREFIX fmt ": %s\n", ##__VA_ARGS__, strerror(-(ret)))

#endif
