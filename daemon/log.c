/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stdio.h>
#include <string.h>

#include "log.h"

static int max_level = 6;
static int prefix_priority = 0;

void log_set_max_level(int level) {
        max_level = level;
}

void log_set_prefix_priority(int enabled) {
        prefix_priority = enabled;
}

int log_internal(int level, int error, const char *format, ...) {
        char buf[2048];
        va_list ap;

        if (error > 0)
                error = -error;
        if (level > max_level)
                return error;

        /* %m means the error passed in, not whatever errno happens to be now. */
        errno = -error;
        va_start(ap, format);
        (void) vsnprintf(buf, sizeof(buf), format, ap);
        va_end(ap);

        if (prefix_priority)
                fprintf(stderr, "<%d>%s\n", level, buf);
        else
                fprintf(stderr, "%s\n", buf);
        return error;
}
