/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "macro.h"
#include "polkit.h"

int bus_authorize(sd_bus_message *m, const char *action, const char *domain, const char *snapshot,
                  sd_bus_error *error) {
        _cleanup_(sd_bus_creds_unrefp) sd_bus_creds *creds = NULL;
        uid_t uid;
        int r;

        /* Reading is open to everyone, like the properties: the policy's default for 'list'. */
        if (streq(action, SNAPSHOT_ACTION_LIST))
                return 1;

        r = sd_bus_query_sender_creds(m, SD_BUS_CREDS_EUID | SD_BUS_CREDS_AUGMENT, &creds);
        if (r >= 0)
                r = sd_bus_creds_get_euid(creds, &uid);
        if (r < 0)
                return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                         "Cannot identify the caller to authorize '%s': %s", action, strerror(-r));
        if (uid == 0)
                return 1;

        return sd_bus_error_setf(error, SD_BUS_ERROR_ACCESS_DENIED,
                                 "Not authorized to perform '%s': polkit could not be asked (this build answers only root)",
                                 action);
}
