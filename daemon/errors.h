/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Named D-Bus errors at the edge. Inside, code returns negative errno; where the caller needs
 * a named error, it fills an sd_bus_error with one of SNAPSHOT_ERROR_* (common/snapshot-bus.h),
 * whose errno comes from the map registered here. */
#pragma once

#include <systemd/sd-bus.h>

#include "snapshot-bus.h"

/* Registers the name ↔ errno map with sd-bus (idempotent). */
int errors_register(void);

/* Fills error from a QEMU/agent/transport failure: Failed with QEMU's text, unless a more
 * specific name applies (-ENOSPC → NoSpace, -ECANCELED → Aborted). Returns the errno (< 0). */
int errors_set_failed(sd_bus_error *error, int r, const char *what, const char *qemu_desc);
