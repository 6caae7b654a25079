/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Failpoints for tests: with the build option failpoints (on in debug builds, off in
 * release builds), SNAPSHOTD_FAILPOINT="name:action[,name:action...]" makes the daemon die
 * (abort: SIGKILL itself, as a crash would), fail (error) or stop moving (hang) when a job
 * reaches the named step, or (slow) take FAILPOINT_SLOW_USEC there: a disk write stuck
 * behind other data, on a worker thread. */
#pragma once

#include <stdbool.h>

#include "config.h"

typedef enum FailpointAction {
        FAILPOINT_NONE,
        FAILPOINT_ERROR,
        FAILPOINT_HANG,
        FAILPOINT_SLOW,
} FailpointAction;

#define FAILPOINT_SLOW_USEC (1500 * 1000)

#if ENABLE_FAILPOINTS
/* abort never returns; error and hang are for the caller to act on. */
FailpointAction failpoint(const char *name);
/* Whether a failpoint is set for name, without hitting it. */
bool failpoint_armed(const char *name);
/* For a worker's file write: -EIO for error, after a sleep for slow, else 0 (hang: as slow). */
int failpoint_io(const char *name);
#else
static inline FailpointAction failpoint(const char *name) {
        return FAILPOINT_NONE;
}
static inline bool failpoint_armed(const char *name) {
        return false;
}
static inline int failpoint_io(const char *name) {
        return 0;
}
#endif
