/* log: one-line log records, stamped with time, level and the VM they concern. On stderr;
 * under journald (stderr is the stream systemd named in JOURNAL_STREAM) as native journal
 * records instead, with the VM as the field UFFD_VM, so `journalctl UFFD_VM=web1` finds one
 * VM's lines. The daemon points stderr at its log file (--log); nothing here keeps state. */
#ifndef UFFD_LOG_H
#define UFFD_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

#define LOG_JOURNAL_SOCKET "/run/systemd/journal/socket"

/* Writes one record; vm may be NULL for host-wide records. Cannot fail (drops on EIO). */
void log_msg(enum log_level level, const char *vm, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes a printf-style one-line error into err[errlen] for a caller to show; does nothing
 * when err is NULL or errlen 0. Cannot fail. */
void err_set(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* True when stderr is the journal stream systemd set up for us (JOURNAL_STREAM is "DEV:INO"
 * of stderr): not after --log, nor in a child whose stderr was redirected. Cannot fail. */
bool log_to_journal(void);

/* Encodes one record in journald's native protocol into buf[len]: MESSAGE, PRIORITY,
 * SYSLOG_IDENTIFIER and, when vm is not NULL, UFFD_VM; each field KEY=value\n, or, when the
 * value holds a newline, KEY\n, its length as 64-bit little-endian, the value and \n.
 * Returns the encoded length, or -ENOSPC when it does not fit. */
int log_journal_encode(char *buf, size_t len, enum log_level level, const char *vm,
		       const char *text);

/* Sends one record as a datagram to the journal socket at path, without blocking. Returns 0,
 * or -errno (-EAGAIN when the journal does not keep up; the caller writes to stderr). */
int log_journal_send(const char *path, enum log_level level, const char *vm, const char *text);

#define log_err(vm, ...)  log_msg(LOG_ERR, vm, __VA_ARGS__)
#define log_warn(vm, ...) log_msg(LOG_WARN, vm, __VA_ARGS__)
#define log_info(vm, ...) log_msg(LOG_INFO, vm, __VA_ARGS__)

#endif
