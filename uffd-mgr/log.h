/* log: one-line log records on stderr, stamped with time, level and the VM they concern.
 * The daemon points stderr at its log file (--log); nothing here keeps state. */
#ifndef UFFD_LOG_H
#define UFFD_LOG_H

#include <stddef.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Writes one record; vm may be NULL for host-wide records. Cannot fail (drops on EIO). */
void log_msg(enum log_level level, const char *vm, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes a printf-style one-line error into err[errlen] for a caller to show; does nothing
 * when err is NULL or errlen 0. Cannot fail. */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define log_err(vm, ...)  log_msg(LOG_ERR, vm, __VA_ARGS__)
#define log_warn(vm, ...) log_msg(LOG_WARN, vm, __VA_ARGS__)
#define log_info(vm, ...) log_msg(LOG_INFO, vm, __VA_ARGS__)

#endif
