/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>
#include <string.h>

#include "errors.h"

static const sd_bus_error_map snapshot_error_map[] = {
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_OPERATION_UNSUPPORTED, EOPNOTSUPP),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_INVALID_ARGUMENT, EINVAL),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_NO_SUCH_DOMAIN, ENXIO),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_NO_SUCH_SNAPSHOT, ENOENT),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_SNAPSHOT_EXISTS, EEXIST),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_BUSY, EBUSY),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_OPERATION_INVALID, EBADFD),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_NO_SPACE, ENOSPC),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_AGENT_UNAVAILABLE, EHOSTDOWN),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_FAILED, EIO),
        SD_BUS_ERROR_MAP(SNAPSHOT_ERROR_ABORTED, ECANCELED),
        SD_BUS_ERROR_MAP_END
};

int errors_register(void) {
        int r;

        r = sd_bus_error_add_map(snapshot_error_map);
        return r < 0 ? r : 0;
}

int errors_set_failed(sd_bus_error *error, int r, const char *what, const char *qemu_desc) {
        const char *name;

        if (r >= 0)
                r = -EIO;

        switch (r) {
        case -ENOSPC:
        case -EDQUOT:
                name = SNAPSHOT_ERROR_NO_SPACE;
                break;
        case -ECANCELED:
                name = SNAPSHOT_ERROR_ABORTED;
                break;
        default:
                name = SNAPSHOT_ERROR_FAILED;
        }

        if (qemu_desc)
                return sd_bus_error_setf(error, name, "%s: %s", what, qemu_desc);
        return sd_bus_error_setf(error, name, "%s: %s", what, strerror(-r));
}
