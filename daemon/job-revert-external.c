/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Reverting to an external snapshot needs QEMU restarted on fresh overlays (and, with
 * memory, started with -incoming from the image): only a managed domain can be. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "domain.h"
#include "job-revert.h"
#include "macro.h"
#include "snapshot-bus.h"
#include "snapshot.h"

int revert_external_check(Domain *d, Snapshot *s, uint64_t flags, sd_bus_error *error) {
        return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                 "Reverting to external snapshot '%s' restarts QEMU, and domain '%s' is attached "
                                 "(its QEMU was started elsewhere); a managed domain can be reverted",
                                 snapshot_name(s), domain_name(d));
}

void revert_external_start(RevertJob *j) {
        revert_job_fail(j, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED, "Not reached");
}

void revert_external_on_event(RevertJob *j, const char *event, json_t *data) {
}

void revert_external_on_disconnect(RevertJob *j) {
}

void revert_external_clear(RevertExternal *e) {
        if (e->memory_fd > 0)
                close(e->memory_fd);
        strv_free(e->created);
}
