/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What a CreateSnapshot / CreateSnapshotXML caller asked for, decoded from the a{sv}
 * options or the <domainsnapshot> document into one request. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "snapshot-def.h"

typedef struct DiskSpec {
        char *target;
        SnapshotLocation location;
        char *file;             /* as the caller wrote it; "" or NULL for the default name */
} DiskSpec;

typedef struct CreateRequest {
        char *name;             /* "" or NULL: generate */
        char *description;
        uint64_t flags;         /* SNAPSHOT_CREATE_* */
        SnapshotLocation memory;
        char *memory_file;
        DiskSpec *disks;
        size_t n_disks;
        bool quiesce_best_effort;
        uint32_t live_timeout;  /* seconds, 0: default */
} CreateRequest;

void create_request_clear(CreateRequest *req);

/* Reads an a{sv} (the message must be positioned at it) into req (name and description are
 * set by the caller). Unknown keys and wrong variant types are InvalidArgs; bad values
 * (unknown memory kind, duplicate disk targets) InvalidArgument. */
int create_options_read(sd_bus_message *m, CreateRequest *req, sd_bus_error *error);

/* Fills req from a parsed <domainsnapshot> and the flags of CreateSnapshotXML. */
int create_request_from_def(const SnapshotDef *def, uint64_t flags, CreateRequest *req, sd_bus_error *error);
