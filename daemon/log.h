/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging for the daemon's own layers (never the protocol/codec code).
 *
 * Started by systemd with stderr connected to the journal ($JOURNAL_STREAM names it), each
 * message goes to journald natively, with structured fields: SNAPSHOTD_DOMAIN (taken from
 * the "Domain '<name>': " that starts every per-domain message), and for a job's outcome
 * line SNAPSHOTD_SNAPSHOT, SNAPSHOTD_JOB, SNAPSHOTD_RESULT and SNAPSHOTD_DURATION_USEC.
 * Otherwise: one plain line per message on stderr. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>

#include "macro.h"

void log_set_max_level(int level);
int log_get_max_level(void);
/* "debug", "info", "notice", "warning", "err"/"error", "crit", "alert", "emerg" or 0-7. */
int log_level_from_string(const char *s);
/* Looks at $JOURNAL_STREAM and stderr: native journal output when they match. */
void log_open(void);
/* Tests and --log-target: force one (journal falls back to stderr when journald is absent). */
void log_set_journal(bool journal);
int log_internal(int level, int error, const char *format, ...) _printf_(3, 4);

/* A job's outcome, one line: "Domain 'vm1': snapshot-create of 's1' done in 0.213 s (QEMU 0.150 s)."
 * error_name NULL for success; qemu_usec: how long QEMU had a command of it unanswered. */
void log_job_outcome(const char *domain, const char *job, const char *snapshot, const char *error_name,
                     const char *error_message, uint64_t duration_usec, uint64_t qemu_usec);

#define log_debug(...)   log_internal(7, 0, __VA_ARGS__)
#define log_info(...)    log_internal(6, 0, __VA_ARGS__)
#define log_notice(...)  log_internal(5, 0, __VA_ARGS__)
#define log_warning(...) log_internal(4, 0, __VA_ARGS__)
#define log_error(...)   log_internal(3, 0, __VA_ARGS__)
/* Logs with %m meaning strerror(-error) and returns error (< 0). */
#define log_error_errno(error, ...)   log_internal(3, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_internal(4, (error), __VA_ARGS__)
#define log_debug_errno(error, ...)   log_internal(7, (error), __VA_ARGS__)
#define log_oom() log_internal(3, -ENOMEM, "Out of memory.")
