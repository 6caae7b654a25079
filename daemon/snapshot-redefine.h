/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include <stdint.h>
#include <systemd/sd-bus.h>

#include "snapshot-def.h"

typedef struct Domain Domain;
typedef struct Snapshot Snapshot;

/* CreateSnapshotXML with REDEFINE: adds def (taken) as a snapshot record, or replaces the
 * record of the same name, without touching the domain. CURRENT makes it current. With
 * VALIDATE only checks (*ret = NULL). Errors are named in error. */
int domain_redefine_snapshot(Domain *d, SnapshotDef *def, uint64_t flags, Snapshot **ret, sd_bus_error *error);
