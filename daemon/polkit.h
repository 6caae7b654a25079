/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Authorization of bus callers. Every method that changes something asks first.
 *
 * Returns 1 when the caller may go on, or < 0 with error set (AccessDenied). Root callers
 * are allowed without asking, as systemd's services do. Until the polkit client lands, every
 * other caller is denied (fail closed) for the actions that change something. */
#pragma once

#include <systemd/sd-bus.h>

#define SNAPSHOT_ACTION_LIST    "org.example.snapshot1.list"
#define SNAPSHOT_ACTION_CREATE  "org.example.snapshot1.create"
#define SNAPSHOT_ACTION_REVERT  "org.example.snapshot1.revert"
#define SNAPSHOT_ACTION_DELETE  "org.example.snapshot1.delete"
#define SNAPSHOT_ACTION_MANAGE  "org.example.snapshot1.manage"

int bus_authorize(sd_bus_message *m, const char *action, const char *domain, const char *snapshot,
                  sd_bus_error *error);
