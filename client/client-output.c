/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client-output.h"

static void log_prefix(void) {
        fputs("snapshotctl: ", stderr);
}

int log_error_errno(int error, const char *format, ...) {
        va_list ap;

        error = error < 0 ? -error : error;

        /* %m in the format names this error. */
        errno = error;
        log_prefix();
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputc('\n', stderr);

        return -error;
}

int log_usage(const char *format, ...) {
        va_list ap;

        log_prefix();
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);
        fputs("\nTry 'snapshotctl --help' for more information.\n", stderr);

        return -EINVAL;
}

int log_bus_error(const sd_bus_error *error, int r, const char *format, ...) {
        va_list ap;

        r = r < 0 ? -r : r;
        if (r == 0)
                r = EIO;

        log_prefix();
        va_start(ap, format);
        vfprintf(stderr, format, ap);
        va_end(ap);

        exit_status_note(exit_status_from_bus_error(error));

        if (sd_bus_error_is_set(error)) {
                if (!isempty(error->message))
                        fprintf(stderr, ": %s (%s)\n", error->message, error->name);
                else
                        fprintf(stderr, ": %s\n", error->name);
        } else
                fprintf(stderr, ": %s\n", strerror(r));

        return -r;
}

int format_timestamp(uint64_t usec, char *buf, size_t size) {
        time_t sec = (time_t) (usec / USEC_PER_SEC);
        struct tm tm;

        if (!localtime_r(&sec, &tm))
                return -EINVAL;
        if (strftime(buf, size, "%Y-%m-%d %H:%M:%S %z", &tm) == 0)
                return -ENOBUFS;
        return 0;
}

struct Table {
        size_t n_columns;
        size_t n_cells;
        char **cells;           /* headers first, then the rows, row by row */
};

Table *table_free(Table *t) {
        if (!t)
                return NULL;
        for (size_t i = 0; i < t->n_cells; i++)
                free(t->cells[i]);
        free(t->cells);
        free(t);
        return NULL;
}

static int table_add_cellsv(Table *t, va_list ap) {
        char **cells;

        cells = reallocarray(t->cells, t->n_cells + t->n_columns, sizeof(char *));
        if (!cells)
                return -ENOMEM;
        t->cells = cells;

        for (size_t i = 0; i < t->n_columns; i++) {
                const char *s = va_arg(ap, const char *);

                t->cells[t->n_cells] = strdup(s ?: "-");
                if (!t->cells[t->n_cells])
                        return -ENOMEM;
                t->n_cells++;
        }
        return 0;
}

int table_new(Table **ret, size_t n_columns, ...) {
        _cleanup_(table_freep) Table *t = NULL;
        va_list ap;
        int r;

        t = calloc(1, sizeof(Table));
        if (!t)
                return -ENOMEM;
        t->n_columns = n_columns;

        va_start(ap, n_columns);
        r = table_add_cellsv(t, ap);
        va_end(ap);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(t);
        return 0;
}

int table_add_row(Table *t, ...) {
        va_list ap;
        int r;

        va_start(ap, t);
        r = table_add_cellsv(t, ap);
        va_end(ap);
        return r;
}

/* Columns are aligned by characters, not bytes, so UTF-8 names line up. */
static size_t utf8_width(const char *s) {
        size_t n = 0;

        for (; *s; s++)
                if (((unsigned char) *s & 0xC0) != 0x80)
                        n++;
        return n;
}

void table_print(const Table *t) {
        size_t widths[t->n_columns], total = 1;

        for (size_t c = 0; c < t->n_columns; c++) {
                widths[c] = 0;
                for (size_t i = c; i < t->n_cells; i += t->n_columns) {
                        size_t w = utf8_width(t->cells[i]);
                        if (w > widths[c])
                                widths[c] = w;
                }
                total += widths[c] + (c == 0 ? 1 : 3);
        }

        for (size_t i = 0; i < t->n_cells; i++) {
                size_t c = i % t->n_columns;
                bool last = c == t->n_columns - 1;

                /* virsh's look: one leading space, three between columns, no trailing blanks. */
                printf(c == 0 ? " %s" : "   %s", t->cells[i]);
                if (!last)
                        printf("%*s", (int) (widths[c] - utf8_width(t->cells[i])), "");
                else
                        putchar('\n');

                if (i == t->n_columns - 1) {
                        for (size_t k = 0; k < total; k++)
                                putchar('-');
                        putchar('\n');
                }
        }
}

static int json_from_basic(sd_bus_message *m, char type, json_t **ret) {
        union {
                uint8_t y;
                int b;
                int16_t n;
                uint16_t q;
                int32_t i;
                uint32_t u;
                int64_t x;
                uint64_t t;
                double d;
                const char *s;
                int h;
        } v;
        json_t *j;
        int r;

        r = sd_bus_message_read_basic(m, type, &v);
        if (r < 0)
                return r;

        switch (type) {
        case SD_BUS_TYPE_BYTE:
                j = json_integer(v.y);
                break;
        case SD_BUS_TYPE_BOOLEAN:
                j = json_boolean(v.b);
                break;
        case SD_BUS_TYPE_INT16:
                j = json_integer(v.n);
                break;
        case SD_BUS_TYPE_UINT16:
                j = json_integer(v.q);
                break;
        case SD_BUS_TYPE_INT32:
                j = json_integer(v.i);
                break;
        case SD_BUS_TYPE_UINT32:
                j = json_integer(v.u);
                break;
        case SD_BUS_TYPE_INT64:
                j = json_integer(v.x);
                break;
        case SD_BUS_TYPE_UINT64:
                /* JSON numbers past 2^63 would not survive json_int_t; they are not expected
                 * here (times, sizes), so saturate rather than wrap. */
                j = json_integer(v.t > INT64_MAX ? INT64_MAX : (json_int_t) v.t);
                break;
        case SD_BUS_TYPE_DOUBLE:
                j = json_real(v.d);
                break;
        case SD_BUS_TYPE_UNIX_FD:
                j = json_integer(v.h);
                break;
        case SD_BUS_TYPE_STRING:
        case SD_BUS_TYPE_OBJECT_PATH:
        case SD_BUS_TYPE_SIGNATURE:
                j = json_string(v.s);
                break;
        default:
                return -EBADMSG;
        }
        if (!j)
                return -ENOMEM;

        *ret = j;
        return 0;
}

static int json_from_dict(sd_bus_message *m, const char *contents, json_t **ret) {
        _cleanup_(json_decrefp) json_t *o = NULL;
        _cleanup_free_ char *entry = NULL;
        int r;

        /* contents is "{KV...}": the entry's own signature is what lies between the braces. */
        entry = strndup(contents + 1, strlen(contents) - 2);
        if (!entry)
                return -ENOMEM;

        o = json_object();
        if (!o)
                return -ENOMEM;

        r = sd_bus_message_enter_container(m, SD_BUS_TYPE_ARRAY, contents);
        if (r < 0)
                return r;

        for (;;) {
                _cleanup_(json_decrefp) json_t *key = NULL, *value = NULL;
                _cleanup_free_ char *key_text = NULL;

                r = sd_bus_message_enter_container(m, SD_BUS_TYPE_DICT_ENTRY, entry);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;

                r = json_from_bus_value(m, &key);
                if (r < 0)
                        return r;
                if (json_is_string(key))
                        key_text = strdup(json_string_value(key));
                else
                        key_text = json_dumps(key, JSON_ENCODE_ANY);
                if (!key_text)
                        return -ENOMEM;

                r = json_from_bus_value(m, &value);
                if (r < 0)
                        return r;

                if (json_object_set_new(o, key_text, TAKE_PTR(value)) < 0)
                        return -ENOMEM;

                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;
        }

        r = sd_bus_message_exit_container(m);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(o);
        return 0;
}

int json_from_bus_value(sd_bus_message *m, json_t **ret) {
        _cleanup_(json_decrefp) json_t *a = NULL;
        const char *contents;
        char type;
        int r;

        r = sd_bus_message_peek_type(m, &type, &contents);
        if (r < 0)
                return r;
        if (r == 0)
                return -EBADMSG;

        switch (type) {
        case SD_BUS_TYPE_VARIANT:
                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;
                r = json_from_bus_value(m, ret);
                if (r < 0)
                        return r;
                return sd_bus_message_exit_container(m);

        case SD_BUS_TYPE_ARRAY:
                if (contents[0] == SD_BUS_TYPE_DICT_ENTRY_BEGIN)
                        return json_from_dict(m, contents, ret);
                __attribute__((fallthrough));
        case SD_BUS_TYPE_STRUCT:
                a = json_array();
                if (!a)
                        return -ENOMEM;

                r = sd_bus_message_enter_container(m, type, contents);
                if (r < 0)
                        return r;
                for (;;) {
                        json_t *e;

                        r = sd_bus_message_peek_type(m, NULL, NULL);
                        if (r < 0)
                                return r;
                        if (r == 0)
                                break;

                        r = json_from_bus_value(m, &e);
                        if (r < 0)
                                return r;
                        if (json_array_append_new(a, e) < 0)
                                return -ENOMEM;
                }
                r = sd_bus_message_exit_container(m);
                if (r < 0)
                        return r;

                *ret = TAKE_PTR(a);
                return 0;

        default:
                return json_from_basic(m, type, ret);
        }
}

int json_from_properties(sd_bus_message *m, json_t **ret) {
        return json_from_dict(m, "{sv}", ret);
}

JsonMode arg_json = JSON_OFF;

int json_mode_from_string(const char *s, JsonMode *ret) {
        if (!s || streq(s, "pretty"))
                *ret = JSON_PRETTY;
        else if (streq(s, "short"))
                *ret = JSON_SHORT;
        else if (streq(s, "off"))
                *ret = JSON_OFF;
        else
                return -EINVAL;
        return 0;
}

int json_print(json_t *j) {
        _cleanup_free_ char *s = NULL;

        /* JSON_COMPACT drops the blanks after ',' and ':' too: one line, nothing to spare. */
        s = json_dumps(j, (arg_json == JSON_SHORT ? JSON_COMPACT : JSON_INDENT(2)) | JSON_ENCODE_ANY);
        if (!s)
                return -ENOMEM;
        puts(s);
        return 0;
}
