/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What snapshotctl prints: error lines, times, tables, trees and JSON. */
#pragma once

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "client-exit.h"
#include "daemon/macro.h"     /* after jansson.h: provides json_decrefp */

/* "snapshotctl: <message>" on stderr. With an errno, %m in the format names it.
 * Both return -abs(error) (or -EINVAL for log_usage), so callers can "return log_...()". */
int log_error_errno(int error, const char *format, ...) _printf_(2, 3);
int log_usage(const char *format, ...) _printf_(1, 2);

/* A failed method call: "snapshotctl: <context>: <bus error message> (<error name>)", or
 * the errno text when the call failed locally. Notes the exit status the error maps to. */
int log_bus_error(const sd_bus_error *error, int r, const char *format, ...) _printf_(3, 4);

/* CreationTime (µs since the epoch) as "YYYY-MM-DD HH:MM:SS +ZZZZ" in local time, like virsh. */
int format_timestamp(uint64_t usec, char *buf, size_t size);

typedef struct Table Table;
int table_new(Table **ret, size_t n_columns, ...);      /* the column headers, n_columns of them */
int table_add_row(Table *t, ...);                       /* n_columns strings; NULL prints "-" */
void table_print(const Table *t);
Table *table_free(Table *t);
static inline void table_freep(Table **t) {
        table_free(*t);
}

/* Converts the value the message points at (any D-Bus type) to JSON. Object paths and
 * strings become strings, integers numbers, structs arrays, dicts objects. */
int json_from_bus_value(sd_bus_message *m, json_t **ret);

/* Converts an a{sv} property dictionary (a GetAll reply) to a JSON object. */
int json_from_properties(sd_bus_message *m, json_t **ret);

/* --json=MODE, for every verb that reads: one option for all of them (snapshotctl.c parses
 * it), one printer. */
typedef enum JsonMode {
        JSON_OFF,
        JSON_PRETTY,    /* two-space indents, one value per line */
        JSON_SHORT,     /* the whole document on one line */
} JsonMode;

extern JsonMode arg_json;

/* "pretty", "short", "off" (and NULL, a bare --json: pretty); -EINVAL otherwise. */
int json_mode_from_string(const char *s, JsonMode *ret);

/* Prints JSON in arg_json's mode (pretty when off) with a trailing newline. */
int json_print(json_t *j);
