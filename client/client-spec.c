/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client-spec.h"
#include "daemon/macro.h"

void disk_spec_done(DiskSpec *d) {
        free(d->target);
        free(d->snapshot);
        free(d->file);
        *d = (DiskSpec) {};
}

void mem_spec_done(MemSpec *m) {
        free(m->snapshot);
        free(m->file);
        *m = (MemSpec) {};
}

int snapshot_mode_is_valid(const char *s) {
        return streq(s, "no") || streq(s, "internal") || streq(s, "external");
}

int spec_split(const char *s, char ***ret) {
        _cleanup_strv_free_ char **l = NULL;
        _cleanup_free_ char *buf = NULL;
        size_t n = 0, len = 0;

        l = calloc(1, sizeof(char *));
        buf = malloc(strlen(s) + 1);
        if (!l || !buf)
                return -ENOMEM;

        for (const char *p = s;; p++) {
                char **grown;

                if (*p == ',' && p[1] == ',') {
                        buf[len++] = ',';
                        p++;
                        continue;
                }
                if (*p != ',' && *p != '\0') {
                        buf[len++] = *p;
                        continue;
                }

                grown = reallocarray(l, n + 2, sizeof(char *));
                if (!grown)
                        return -ENOMEM;
                l = grown;
                l[n] = strndup(buf, len);
                if (!l[n])
                        return -ENOMEM;
                l[++n] = NULL;
                len = 0;

                if (*p == '\0')
                        break;
        }

        *ret = TAKE_PTR(l);
        return 0;
}

/* "key=value" when the text before the first '=' looks like a key (lower-case letters and
 * dashes); otherwise the element is a bare value, such as a path that contains '='. */
static int split_key(const char *element, char **ret_key, const char **ret_value) {
        const char *eq = strchr(element, '=');
        char *key;

        if (!eq || eq == element || strspn(element, "abcdefghijklmnopqrstuvwxyz-") != (size_t) (eq - element)) {
                *ret_key = NULL;
                *ret_value = element;
                return 0;
        }

        key = strndup(element, eq - element);
        if (!key)
                return -ENOMEM;
        *ret_key = key;
        *ret_value = eq + 1;
        return 1;
}

_printf_(2, 3) static int spec_error(char **ret_error, const char *format, ...) {
        va_list ap;

        va_start(ap, format);
        if (vasprintf(ret_error, format, ap) < 0)
                *ret_error = NULL;
        va_end(ap);
        return -EINVAL;
}

static int set_once(char **field, const char *value, const char *option, const char *key, const char *spec, char **ret_error) {
        char *copy;

        if (*field)
                return spec_error(ret_error, "%s '%s': '%s' given twice", option, spec, key);

        copy = strdup(value);
        if (!copy)
                return -ENOMEM;
        *field = copy;
        return 0;
}

static int check_mode(const char *value, const char *option, const char *spec, char **ret_error) {
        if (snapshot_mode_is_valid(value))
                return 0;

        return spec_error(ret_error, "%s '%s': snapshot must be one of no, internal, external, not '%s'",
                          option, spec, value);
}

int disk_spec_parse(const char *s, DiskSpec *ret, char **ret_error) {
        _cleanup_strv_free_ char **elements = NULL;
        DiskSpec d = {};
        int r;

        *ret_error = NULL;

        r = spec_split(s, &elements);
        if (r < 0)
                return r;

        for (size_t i = 0; elements[i]; i++) {
                _cleanup_free_ char *key = NULL;
                const char *value;

                r = split_key(elements[i], &key, &value);
                if (r < 0)
                        goto fail;

                if (i == 0) {
                        /* The first element is the disk target, as in virsh. */
                        if (key || isempty(value)) {
                                r = spec_error(ret_error, "--diskspec '%s': must start with the disk target (e.g. vda)", s);
                                goto fail;
                        }
                        d.target = strdup(value);
                        if (!d.target) {
                                r = -ENOMEM;
                                goto fail;
                        }
                        continue;
                }

                if (!key) {
                        r = spec_error(ret_error, "--diskspec '%s': expected key=value, got '%s' (keys: snapshot, file)",
                                       s, elements[i]);
                        goto fail;
                }

                if (streq(key, "snapshot")) {
                        r = check_mode(value, "--diskspec", s, ret_error);
                        if (r < 0)
                                goto fail;
                        r = set_once(&d.snapshot, value, "--diskspec", key, s, ret_error);
                } else if (streq(key, "file")) {
                        if (isempty(value)) {
                                r = spec_error(ret_error, "--diskspec '%s': empty file name", s);
                                goto fail;
                        }
                        r = set_once(&d.file, value, "--diskspec", key, s, ret_error);
                } else
                        r = spec_error(ret_error, "--diskspec '%s': unknown key '%s' (keys: snapshot, file)",
                                       s, key);
                if (r < 0)
                        goto fail;
        }

        if (d.file && d.snapshot && !streq(d.snapshot, "external")) {
                r = spec_error(ret_error, "--diskspec '%s': file= needs snapshot=external, not '%s'",
                               s, d.snapshot);
                goto fail;
        }

        *ret = d;
        return 0;

fail:
        disk_spec_done(&d);
        return r;
}

int mem_spec_parse(const char *s, MemSpec *ret, char **ret_error) {
        _cleanup_strv_free_ char **elements = NULL;
        MemSpec m = {};
        int r;

        *ret_error = NULL;

        if (isempty(s))
                return spec_error(ret_error, "--memspec '': give a file or snapshot=MODE");

        r = spec_split(s, &elements);
        if (r < 0)
                return r;

        for (size_t i = 0; elements[i]; i++) {
                _cleanup_free_ char *key = NULL;
                const char *value;

                r = split_key(elements[i], &key, &value);
                if (r < 0)
                        goto fail;

                if (!key) {
                        /* Only the first element may be a bare path: virsh's [file=]PATH. */
                        if (i > 0 || isempty(value)) {
                                r = spec_error(ret_error, "--memspec '%s': expected key=value, got '%s' (keys: file, snapshot)",
                                               s, elements[i]);
                                goto fail;
                        }
                        r = set_once(&m.file, value, "--memspec", "file", s, ret_error);
                } else if (streq(key, "file")) {
                        if (isempty(value)) {
                                r = spec_error(ret_error, "--memspec '%s': empty file name", s);
                                goto fail;
                        }
                        r = set_once(&m.file, value, "--memspec", key, s, ret_error);
                } else if (streq(key, "snapshot")) {
                        r = check_mode(value, "--memspec", s, ret_error);
                        if (r < 0)
                                goto fail;
                        r = set_once(&m.snapshot, value, "--memspec", key, s, ret_error);
                } else
                        r = spec_error(ret_error, "--memspec '%s': unknown key '%s' (keys: file, snapshot)",
                                       s, key);
                if (r < 0)
                        goto fail;
        }

        if (m.file && m.snapshot && !streq(m.snapshot, "external")) {
                r = spec_error(ret_error, "--memspec '%s': a file needs snapshot=external, not '%s'",
                               s, m.snapshot);
                goto fail;
        }
        if (!m.file && !m.snapshot) {
                r = spec_error(ret_error, "--memspec '%s': give a file or snapshot=MODE", s);
                goto fail;
        }

        *ret = m;
        return 0;

fail:
        mem_spec_done(&m);
        return r;
}
