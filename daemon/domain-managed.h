/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Managed domains: starting and stopping the QEMU snapshotd runs itself (domain-managed.c). */
#pragma once

#include <stdbool.h>

typedef struct Domain Domain;

/* Loads the images each disk runs on now (the config's, or what snapshots and reverts made). */
int domain_managed_init(Domain *d);
void domain_managed_done(Domain *d);

/* The disk now runs on file (after an external snapshot, a merge or a revert); persisted.
 * A no-op for attached domains. */
int domain_set_active_disk(Domain *d, const char *target, const char *file, const char *format);
const char *domain_active_disk_file(Domain *d, const char *target);

int domain_managed_argv(Domain *d, bool incoming, bool paused, char ***ret);
/* Starts QEMU (not waiting for it); incoming: -incoming defer; paused: -S. */
int domain_managed_spawn(Domain *d, bool incoming, bool paused);
/* Asks QEMU to end: gracefully (agent guest-shutdown, else ACPI power button) within the
 * config's shutdown timeout, else quit, else SIGKILL; force: quit at once. */
int domain_managed_stop(Domain *d, bool force);
/* Called when the managed QEMU has gone (child reaped, or QMP lost for one we did not start). */
void domain_managed_exited(Domain *d);
/* Whether this domain's QEMU process exists (our child, or one an earlier snapshotd started). */
bool domain_managed_alive(Domain *d);
/* Whether it runs as far as Start and Stop are concerned: QMP is up or the process exists. */
bool domain_managed_active(Domain *d);
/* QMP is lost or could not connect: when the process is gone too, the domain is shut off
 * (runtime files removed, waiters told); when it still exists, nothing happens here. */
void domain_managed_lost(Domain *d);
/* A Start, Stop or restart is under way (QEMU being started or waited for): exiting now
 * would leave a caller without an answer or a QEMU half stopped. */
bool domain_managed_busy(Domain *d);
