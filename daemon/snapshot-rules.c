/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <errno.h>

#include "macro.h"
#include "snapshot-bus.h"
#include "snapshot-rules.h"

static const char *const domain_state_table[_DOMAIN_STATE_MAX] = {
        [DOMAIN_STATE_UNKNOWN] = "unknown",
        [DOMAIN_STATE_RUNNING] = "running",
        [DOMAIN_STATE_PAUSED] = "paused",
        [DOMAIN_STATE_SHUTOFF] = "shutoff",
};

const char *domain_state_to_string(DomainState s) {
        if (s < 0 || s >= _DOMAIN_STATE_MAX)
                return NULL;
        return domain_state_table[s];
}

static bool state_is_active(DomainState s) {
        return s == DOMAIN_STATE_RUNNING || s == DOMAIN_STATE_PAUSED;
}

static int unsupported(sd_bus_error *error, const char *msg) {
        return sd_bus_error_set(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED, msg);
}

int snapshot_rules_check_flags(uint64_t f, SnapshotLocation memory, DomainState state, sd_bus_error *error) {
        bool live = f & SNAPSHOT_CREATE_LIVE;
        bool has_memory_image;

        if (f & ~(uint64_t) SNAPSHOT_CREATE_ALL)
                return sd_bus_error_setf(error, SD_BUS_ERROR_INVALID_ARGS,
                                         "Unknown create flags 0x%llx",
                                         (unsigned long long) (f & ~(uint64_t) SNAPSHOT_CREATE_ALL));

        if (memory < SNAPSHOT_LOCATION_DEFAULT || memory >= _SNAPSHOT_LOCATION_MAX)
                return sd_bus_error_set(error, SNAPSHOT_ERROR_INVALID_ARGUMENT, "Unknown memory location");

        /* Rule 1: live excludes redefine — checked before redefine's own support. */
        if (live && (f & SNAPSHOT_CREATE_REDEFINE))
                return unsupported(error, "Options 'live' and 'redefine' cannot be combined");
        if (f & SNAPSHOT_CREATE_REDEFINE)
                return unsupported(error, "Option 'redefine' is not supported by this version of snapshotd");
        if (f & SNAPSHOT_CREATE_CURRENT)
                return unsupported(error, "Option 'current' needs 'redefine'");

        has_memory_image = IN_SET2(memory, SNAPSHOT_LOCATION_INTERNAL, SNAPSHOT_LOCATION_EXTERNAL);

        /* Rule 2 */
        if ((f & SNAPSHOT_CREATE_DISK_ONLY) && live)
                return unsupported(error, "Options 'live' and 'disk-only' cannot be combined: live needs an external memory image, disk-only has none");
        if ((f & SNAPSHOT_CREATE_DISK_ONLY) && has_memory_image)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                         "Option 'disk-only' excludes a memory image (memory '%s')",
                                         snapshot_location_to_string(memory));

        /* Rule 3 */
        if ((f & SNAPSHOT_CREATE_QUIESCE) && has_memory_image)
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_UNSUPPORTED,
                                         "Option 'quiesce' cannot be combined with a memory image (memory '%s'); it needs 'disk-only'",
                                         snapshot_location_to_string(memory));
        if ((f & SNAPSHOT_CREATE_QUIESCE) && live)
                return unsupported(error, "Options 'quiesce' and 'live' cannot be combined: quiesce needs 'disk-only'");
        if ((f & SNAPSHOT_CREATE_QUIESCE) && !(f & SNAPSHOT_CREATE_DISK_ONLY))
                return unsupported(error, "Option 'quiesce' needs 'disk-only'");

        /* Rule 1 */
        if (live && memory != SNAPSHOT_LOCATION_EXTERNAL)
                return unsupported(error, "Option 'live' needs an external memory image (memory 'external')");
        if (live && state == DOMAIN_STATE_SHUTOFF)
                return unsupported(error, "Option 'live' needs a running or paused domain, and the domain is shut off");

        return 0;
}

int snapshot_rules_check_create(const CreateCheck *c, CreatePlan *ret, sd_bus_error *error) {
        uint64_t f = c->flags;
        bool live = f & SNAPSHOT_CREATE_LIVE;
        CreatePlan p = {};
        int r;

        r = snapshot_rules_check_flags(f, c->memory, c->state, error);
        if (r < 0)
                return r;

        p.disk_only = (f & SNAPSHOT_CREATE_DISK_ONLY) || c->memory == SNAPSHOT_LOCATION_NO;

        if ((f & SNAPSHOT_CREATE_QUIESCE) && !c->agent_configured && !c->quiesce_best_effort)
                return unsupported(error, "Option 'quiesce' needs a guest agent, and none is configured for this domain");

        /* Everything past here talks to QEMU. */
        if (!state_is_active(c->state))
                return sd_bus_error_setf(error, SNAPSHOT_ERROR_OPERATION_INVALID,
                                         "Domain is %s: snapshots of an attached domain need its QEMU running",
                                         domain_state_to_string(c->state));

        /* Rule 7 */
        if ((f & SNAPSHOT_CREATE_ATOMIC) && !c->can_transaction)
                return unsupported(error, "Option 'atomic' needs QEMU's 'transaction' command, which this QEMU lacks");

        if (c->n_disks == 0 && p.disk_only)
                return sd_bus_error_set(error, SNAPSHOT_ERROR_INVALID_ARGUMENT,
                                        "A disk-only snapshot needs at least one disk to snapshot");

        p.memory = p.disk_only ? SNAPSHOT_LOCATION_NO :
                   c->memory == SNAPSHOT_LOCATION_DEFAULT ? SNAPSHOT_LOCATION_INTERNAL : c->memory;
        p.quiesce = f & SNAPSHOT_CREATE_QUIESCE;
        p.halt = f & SNAPSHOT_CREATE_HALT;
        p.use_transaction = c->can_transaction;
        p.validate_only = f & SNAPSHOT_CREATE_VALIDATE;

        /* Rule 5 */
        p.pause = (p.memory != SNAPSHOT_LOCATION_NO && !live) ||
                  (p.disk_only && c->n_disks > 1 && !c->can_transaction);
        /* Rule 6: a live save ends with QEMU pausing the guest, so it needs a resume too. */
        p.resume = c->state == DOMAIN_STATE_RUNNING && !p.halt && (p.pause || live);

        *ret = p;
        return 0;
}
