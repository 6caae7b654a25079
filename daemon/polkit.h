/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Authorization of bus callers: asks polkitd, asynchronously, from sd-event.
 *
 * A method handler calls bus_authorize() after validating its arguments and before acting:
 *
 *         r = bus_authorize(m, SNAPSHOT_ACTION_CREATE, domain, snapshot, &manager->polkit, error);
 *         if (r <= 0)
 *                 return r;
 *
 * The first time, this starts the check and returns 0: the handler returns too, without
 * replying. When the verdict is in, the same message is put back into the bus's read queue,
 * so sd-bus looks the object up again and calls the handler again, which reads its
 * arguments again and calls bus_authorize() again; now it returns 1 (allowed) or < 0 with
 * error set (AccessDenied, InteractiveAuthorizationRequired, LimitsExceeded).
 *
 * Callers with uid 0 pass without polkit. For everyone else polkitd decides; when it
 * cannot be asked the caller is denied (fail closed). The check takes up to two bus round
 * trips: the caller's uid from the bus driver (remembered per unique name, so a caller's later
 * calls skip it, and a root caller's are decided at once: bus_authorize() returns 1 on the
 * first call), then polkit's CheckAuthorization (never cached: polkit decides every time). */
#pragma once

#include <stddef.h>
#include <systemd/sd-bus.h>

#define SNAPSHOT_ACTION_LIST    "org.example.snapshot1.list"
#define SNAPSHOT_ACTION_CREATE  "org.example.snapshot1.create"
#define SNAPSHOT_ACTION_REVERT  "org.example.snapshot1.revert"
#define SNAPSHOT_ACTION_DELETE  "org.example.snapshot1.delete"
#define SNAPSHOT_ACTION_MANAGE  "org.example.snapshot1.manage"

/* Checks in flight (and verdicts not yet picked up), per caller connection and in all.
 * More are refused with LimitsExceeded, so callers cannot fill the daemon's memory with
 * them. The total matches dbus-daemon's default max_replies_per_connection (128) on the
 * system bus, which bounds our calls to polkitd anyway. */
#define POLKIT_PENDING_PER_CALLER_MAX 16
#define POLKIT_PENDING_MAX            128

typedef struct PolkitRegistry PolkitRegistry;

/* domain and snapshot may be NULL; they go to polkit as details "domain" and "snapshot".
 * *registry is created on first use. */
int bus_authorize(sd_bus_message *m, const char *action, const char *domain, const char *snapshot,
                  PolkitRegistry **registry, sd_bus_error *error);

/* Drops every check without answering it. Accepts NULL. */
PolkitRegistry *polkit_registry_free(PolkitRegistry *reg);

/* Checks not yet decided: the daemon must not exit on idle while there are any. */
size_t polkit_registry_n_pending(const PolkitRegistry *reg);
