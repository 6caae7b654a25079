/* SPDX-License-Identifier: LGPL-2.1-or-later */
#pragma once

#include "macro.h"
#include "qmp.h"

/* How often a cancelled save that has not ended is nudged (migration_cancel_nudge). */
#define MIGRATION_NUDGE_USEC (500 * USEC_PER_MSEC)

/* Sends migrate_cancel. */
int migration_cancel(Qmp *q);

/* Frees a save stuck in "cancelling" with the guest stopped (see migration-cancel.c). Safe to
 * send at any time: QEMU refuses it unless the save is cancelling. `cb` (may be NULL) learns
 * whether QEMU took it. */
int migration_cancel_nudge(Qmp *q, qmp_reply_fn cb, void *userdata, uint64_t *ret_id);
