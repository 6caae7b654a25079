/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Rolling back (or finishing) a job that a dead snapshotd left behind: see recovery.c. */
#pragma once

#include <stdbool.h>

typedef struct Domain Domain;
typedef struct Recovery Recovery;

/* Looks for the domain's journal and, when QEMU is reachable, starts recovering (the domain
 * is busy meanwhile). Returns 1 when a recovery started, 0 when nothing was to do. */
int domain_recover(Domain *d, bool qemu_reachable);
Recovery *recovery_free(Recovery *rc);
