/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "failpoint.h"
#include "log.h"

#if ENABLE_FAILPOINTS
/* The action named for name in SNAPSHOTD_FAILPOINT (not NUL-terminated: *len bytes), or NULL. */
static const char *failpoint_lookup(const char *name, size_t *len) {
        const char *spec = getenv("SNAPSHOTD_FAILPOINT");
        size_t n = strlen(name);

        /* Read each time: tests set it per daemon start, and it is only read at job steps. */
        for (const char *p = spec; p && *p; ) {
                const char *end = strchr(p, ',');
                size_t l = end ? (size_t) (end - p) : strlen(p);

                if (l > n && strncmp(p, name, n) == 0 && p[n] == ':') {
                        *len = l - n - 1;
                        return p + n + 1;
                }
                p = end ? end + 1 : NULL;
        }
        return NULL;
}

FailpointAction failpoint(const char *name) {
        size_t alen = 0;
        const char *action = failpoint_lookup(name, &alen);

        if (!action)
                return FAILPOINT_NONE;
        log_notice("Failpoint '%s' hit: %.*s.", name, (int) alen, action);
        if (alen == 5 && strncmp(action, "abort", 5) == 0)
                (void) raise(SIGKILL);
        if (alen == 4 && strncmp(action, "hang", 4) == 0)
                return FAILPOINT_HANG;
        if (alen == 4 && strncmp(action, "slow", 4) == 0)
                return FAILPOINT_SLOW;
        return FAILPOINT_ERROR;
}

int failpoint_io(const char *name) {
        switch (failpoint(name)) {
        case FAILPOINT_NONE:
                return 0;
        case FAILPOINT_ERROR:
                return -EIO;
        default:
                (void) usleep(FAILPOINT_SLOW_USEC);
                return 0;
        }
}

bool failpoint_armed(const char *name) {
        size_t alen;

        return failpoint_lookup(name, &alen) != NULL;
}
#endif
