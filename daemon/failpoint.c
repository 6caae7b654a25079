/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "failpoint.h"
#include "log.h"

#if ENABLE_FAILPOINTS
FailpointAction failpoint(const char *name) {
        const char *spec = getenv("SNAPSHOTD_FAILPOINT");
        size_t n = strlen(name);

        /* Read each time: tests set it per daemon start, and it is only read at job steps. */
        for (const char *p = spec; p && *p; ) {
                const char *end = strchr(p, ',');
                size_t len = end ? (size_t) (end - p) : strlen(p);

                if (len > n && strncmp(p, name, n) == 0 && p[n] == ':') {
                        const char *action = p + n + 1;
                        size_t alen = len - n - 1;

                        log_notice("Failpoint '%s' hit: %.*s.", name, (int) alen, action);
                        if (alen == 5 && strncmp(action, "abort", 5) == 0)
                                (void) raise(SIGKILL);
                        if (alen == 4 && strncmp(action, "hang", 4) == 0)
                                return FAILPOINT_HANG;
                        return FAILPOINT_ERROR;
                }
                p = end ? end + 1 : NULL;
        }
        return FAILPOINT_NONE;
}
#endif
