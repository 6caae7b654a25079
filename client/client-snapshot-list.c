/* SPDX-License-Identifier: LGPL-2.1-or-later */

#include <errno.h>
#include <stdlib.h>

#include "client-bus.h"
#include "client-output.h"
#include "client-snapshot-list.h"
#include "snapshot-bus.h"

void snapshot_list_done(SnapshotList *l) {
        for (size_t i = 0; i < l->n; i++)
                snapshot_info_done(l->items + i);
        free(l->items);
        *l = (SnapshotList) {};
}

int snapshot_list_load(sd_bus *bus, const char *domain, const char *domain_path, uint64_t flags, bool want_json,
                       SnapshotList *ret) {
        _cleanup_(sd_bus_error_free) sd_bus_error error = SD_BUS_ERROR_NULL;
        _cleanup_(sd_bus_message_unrefp) sd_bus_message *reply = NULL;
        _cleanup_strv_free_ char **paths = NULL;
        _cleanup_(snapshot_list_done) SnapshotList l = {};
        size_t n = 0;
        int r;

        r = bus_call_method(bus, domain_path, SNAPSHOT_IFACE_DOMAIN, "ListSnapshots",
                            CALL_TIMEOUT_DEFAULT, &error, &reply, "t", flags);
        if (r < 0)
                return log_bus_error(&error, r, "Failed to list snapshots of domain '%s'", domain);

        r = bus_read_strv(reply, "ao", &paths);
        if (r < 0)
                return log_error_errno(r, "Failed to parse ListSnapshots reply: %m");

        while (paths[n])
                n++;
        l.items = calloc(n + 1, sizeof(SnapshotInfo));
        if (!l.items)
                return log_error_errno(ENOMEM, "Out of memory.");

        for (size_t i = 0; paths[i]; i++) {
                r = snapshot_info_load(bus, paths[i], want_json, /* missing_ok= */ true, l.items + l.n);
                if (r == -ENOENT)
                        continue;       /* deleted since ListSnapshots */
                if (r < 0)
                        return r;
                l.n++;
        }

        *ret = l;
        l = (SnapshotList) {};
        return 0;
}
