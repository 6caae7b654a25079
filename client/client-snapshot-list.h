/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* A domain's snapshots, each read whole: what list and prune work on. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-bus.h>

#include "client-objects.h"

typedef struct SnapshotList {
        SnapshotInfo *items;
        size_t n;
} SnapshotList;

void snapshot_list_done(SnapshotList *l);

/* ListSnapshots(flags) of the domain at domain_path (named domain in messages), then every
 * snapshot's properties (with want_json, also as JSON), in snapshotd's order; a snapshot
 * deleted between the two is left out. Logs its failures. */
int snapshot_list_load(sd_bus *bus, const char *domain, const char *domain_path, uint64_t flags, bool want_json,
                       SnapshotList *ret);
