/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A tiny TAP-style harness: each check prints "ok"/"not ok" and the process exits non-zero
 * when any failed. */
#pragma once

#include <stdio.h>
#include <string.h>

static int unit_failures;
static int unit_checks;

#define CHECK(cond, ...)                                                        \
        do {                                                                    \
                unit_checks++;                                                  \
                if (!(cond)) {                                                  \
                        unit_failures++;                                        \
                        printf("not ok %d - %s:%d: %s: ", unit_checks,          \
                               __FILE__, __LINE__, #cond);                      \
                        printf(__VA_ARGS__);                                    \
                        printf("\n");                                           \
                }                                                               \
        } while (0)

#define CHECK_STREQ(a, b)                                                       \
        do {                                                                    \
                const char *_a = (a), *_b = (b);                                \
                CHECK(_a && _b && strcmp(_a, _b) == 0, "'%s' != '%s'",         \
                      _a ? _a : "(null)", _b ? _b : "(null)");                  \
        } while (0)

static inline int unit_done(const char *name) {
        printf("# %s: %d checks, %d failed\n", name, unit_checks, unit_failures);
        return unit_failures ? 1 : 0;
}
