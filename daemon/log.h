/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Logging for the daemon's own layers (never the protocol/codec code): one line to stderr
 * with a syslog priority prefix, which journald understands when run under systemd. */
#pragma once

#include <errno.h>
#include <stdarg.h>

#include "macro.h"

void log_set_max_level(int level);
void log_set_prefix_priority(int enabled);
int log_internal(int level, int error, const char *format, ...) _printf_(3, 4);

#define log_debug(...)   log_internal(7, 0, __VA_ARGS__)
#define log_info(...)    log_internal(6, 0, __VA_ARGS__)
#define log_notice(...)  log_internal(5, 0, __VA_ARGS__)
#define log_warning(...) log_internal(4, 0, __VA_ARGS__)
#define log_error(...)   log_internal(3, 0, __VA_ARGS__)
/* Logs with %m meaning strerror(-error) and returns error (< 0). */
#define log_error_errno(error, ...)   log_internal(3, (error), __VA_ARGS__)
#define log_warning_errno(error, ...) log_internal(4, (error), __VA_ARGS__)
#define log_oom() log_internal(3, -ENOMEM, "Out of memory.")
